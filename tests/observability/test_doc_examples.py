"""The examples of docs/en/frontend_integration.md, run against a real stack so they cannot rot.

Each block fenced ```python title="example" runs in order in one namespace, like the cells of
a notebook, with top-level await. The page promises them ``project_id`` (alice is a member
there), ``pool``, and the ``QF_*`` variables that say where Temporal is.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from settings import get_settings
from tests.stack import Stack

PAGE = Path(__file__).resolve().parents[2] / "docs" / "en" / "frontend_integration.md"
EXAMPLE = re.compile(r'^```python title="example"\n(.*?)^```$', re.DOTALL | re.MULTILINE)
BLOCK_TIMEOUT = 90.0


def examples() -> list[str]:
    return EXAMPLE.findall(PAGE.read_text())


def test_the_page_has_examples() -> None:
    assert len(examples()) >= 8  # a broken fence would otherwise run nothing


async def test_frontend_examples_run(
    stack: Stack, temporal_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = temporal_env.client.service_client.config.target_host
    monkeypatch.setenv("QF_TEMPORAL_ADDRESS", address)
    monkeypatch.setenv("QF_TEMPORAL_NAMESPACE", temporal_env.client.namespace)
    monkeypatch.setenv("QF_TASK_QUEUE", stack.settings.task_queue)
    monkeypatch.setenv("QF_WORKFLOW_ID_PREFIX", stack.settings.workflow_id_prefix)
    monkeypatch.setenv("QF_JOB_POLL_SECONDS", "5")
    get_settings.cache_clear()
    namespace: dict[str, Any] = {
        "__name__": "frontend_integration",
        "project_id": stack.world.team.p_id,
        "pool": stack.world.pool,
    }
    for number, code in enumerate(examples(), start=1):
        compiled = compile(
            code,
            f"{PAGE.name} example {number}",
            "exec",
            flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            dont_inherit=True,
        )
        result = eval(compiled, namespace)  # exec() would drop the coroutine of an await
        if inspect.iscoroutine(result):
            await asyncio.wait_for(result, timeout=BLOCK_TIMEOUT)
    get_settings.cache_clear()
