# The two promises of the README: `make demo` and `make test`, on a fresh machine
# with only Python 3.11, pip and gcc.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint typecheck pytest demo bench faults clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest -q

test: lint typecheck pytest

demo: install
	$(BIN)/python starter.py demo

bench: install
	$(BIN)/python -m bench.run_all

# The fault experiments at their full sizes (docs/en/reliability.md; `make test` runs them
# small). One JSON line per experiment — what was injected, what held — goes to FAULTS_REPORT.
FAULTS_REPORT ?= .quotaflow/faults-report.jsonl
faults: install
	mkdir -p $(dir $(FAULTS_REPORT))
	QF_FAULTS_SCALE=full QF_FAULTS_REPORT=$(FAULTS_REPORT) $(BIN)/pytest -q tests/faults --durations=0

clean:
	rm -rf .quotaflow .pytest_cache .mypy_cache .ruff_cache
