from uuid import uuid4

import pytest

from domain.errors import InvalidInput
from domain.models import (
    TRANSITIONS,
    AddPlan,
    AffinityConfig,
    CommitConfig,
    CreateProject,
    CreateStorage,
    JobStatus,
    SubmitJob,
    parse,
)


def test_bad_job_requests_name_the_field() -> None:
    base = {"project_id": str(uuid4()), "submitted_by": str(uuid4()), "gpu": 1}
    cases = {
        "gpu": {**base, "gpu": -1},
        "cpu": {**base, "cpu": 10**9},
        "pool": {**base, "pool": "Not A Pool!"},
        "project_id": {**base, "project_id": "nope"},
        "name": {**base, "name": "x" * 201},
    }
    for field, data in cases.items():
        with pytest.raises(InvalidInput) as err:
            parse(SubmitJob, data)
        assert err.value.field == field, (field, err.value)
    with pytest.raises(InvalidInput, match="at least one GPU or one CPU"):
        parse(SubmitJob, {**base, "gpu": 0})
    with pytest.raises(InvalidInput, match="Extra inputs"):
        parse(SubmitJob, {**base, "priority": 3})


def test_plan_window_is_validated_before_the_database() -> None:
    with pytest.raises(InvalidInput) as err:
        parse(
            AddPlan,
            {
                "project_id": str(uuid4()),
                "resource_owner_id": str(uuid4()),
                "resource_type": "GPU",
                "quantity": 2,
                "window": "Mon 10:00-10:00",
            },
        )
    assert err.value.field == "window"
    with pytest.raises(InvalidInput) as err:
        parse(
            AddPlan,
            {
                "project_id": str(uuid4()),
                "resource_owner_id": str(uuid4()),
                "resource_type": "TPU",
                "quantity": 2,
                "window": "always",
            },
        )
    assert err.value.field == "resource_type"


def test_storage_affinity_allows_only_scheduling_hints() -> None:
    ok = AffinityConfig.model_validate(
        {
            "nodeSelector": {"gpu.nvidia.com/class": "a100"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        }
    )
    assert ok.to_json()["nodeSelector"] == {"gpu.nvidia.com/class": "a100"}
    for bad in (
        {"hostPath": "/"},
        {"securityContext": {"privileged": True}},
        {"nodeSelector": {"bad key!": "x"}},
        {"affinity": {"hostNetwork": True}},
    ):
        with pytest.raises(InvalidInput):
            parse(CreateStorage, {"owner_id": str(uuid4()), "name": "data", "affinity_config": bad})


def test_project_names_and_config_schema() -> None:
    with pytest.raises(InvalidInput) as err:
        parse(CreateProject, {"name": "../etc", "owner_id": str(uuid4())})
    assert err.value.field == "name"
    with pytest.raises(InvalidInput) as err:
        parse(
            CommitConfig,
            {
                "project_id": str(uuid4()),
                "author_id": str(uuid4()),
                "message": "m",
                "content": {"limits": {"max_gpus": 3}},
            },
        )
    assert err.value.field == "content.limits.max_gpus"


def test_state_machine_shape() -> None:
    finals = {s for s in JobStatus if s.final}
    assert all(a not in finals for a, _ in TRANSITIONS)
    assert all((s, JobStatus.CANCELLED) in TRANSITIONS for s in JobStatus if not s.final)
    assert (JobStatus.PREEMPTED, JobStatus.PENDING) in TRANSITIONS
    assert (JobStatus.RUNNING, JobStatus.PENDING) not in TRANSITIONS
