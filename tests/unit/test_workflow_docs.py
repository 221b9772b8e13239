from pathlib import Path

from workflows.docs import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "en" / "workflows.md"


def test_workflows_doc_is_current() -> None:
    assert DOC.read_text() == render(), (
        "docs/en/workflows.md is stale: run `python -m workflows.docs > docs/en/workflows.md`"
    )


def test_doc_names_every_message() -> None:
    text = render()
    for name in (
        "`submit`",
        "`cancel`",
        "`describe`",
        "`admitted`",
        "`pod_ended`",
        "`saga`",
        "`wake`",
        "QfStatus",
        "JobRequest",
        "CancelRequest",
        "PreemptionResult",
    ):
        assert name in text
