"""The worker writes the bytecode of its workflow modules, whatever PYTHONDONTWRITEBYTECODE says."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from workflows.sandbox import ensure_bytecode, module_files

MODULE = "class FakeWorkflow:\n    pass\n\n\nclass OtherWorkflow:\n    pass\n"


@pytest.fixture
def fake_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # as with PYTHONDONTWRITEBYTECODE=1
    source = tmp_path / "qf_fake_workflows.py"
    source.write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield source
    sys.modules.pop("qf_fake_workflows", None)


def test_the_bytecode_of_each_workflow_module_is_written_once(fake_module: Path) -> None:
    module = importlib.import_module("qf_fake_workflows")
    cached = Path(importlib.util.cache_from_source(str(fake_module)))
    assert not cached.exists()  # the import itself wrote nothing
    classes = [module.FakeWorkflow, module.OtherWorkflow]
    assert module_files(classes) == [fake_module]
    assert ensure_bytecode(classes) == []
    assert cached.read_bytes().startswith(importlib.util.MAGIC_NUMBER)


def test_a_module_whose_cache_cannot_be_written_is_reported(fake_module: Path) -> None:
    # A file where the cache folder would go: the folder cannot be made (even by root).
    (fake_module.parent / "__pycache__").write_text("not a folder")
    module = importlib.import_module("qf_fake_workflows")
    assert ensure_bytecode([module.FakeWorkflow]) == [fake_module]
