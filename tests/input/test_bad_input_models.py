"""hypothesis-generated invalid input for every request model: always a typed error naming the
field, never a pydantic ValidationError or a crash."""

from __future__ import annotations

import re
import string
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import InvalidInput
from domain.models import (
    AddPlan,
    CommitConfig,
    CreateGroup,
    CreatePriorityClass,
    CreateProject,
    CreateStorage,
    CreateUser,
    GrantRole,
    SetPool,
    SubmitJob,
    parse,
)
from workflows.shared import CancelRequest, ConfigRequest, JobRequest

U = str(uuid4())

# Valid examples: each case replaces one field with something invalid.
VALID: dict[type, dict[str, Any]] = {
    CreateUser: {"username": "alice"},
    CreateGroup: {"name": "ml"},
    CreateProject: {"name": "team", "owner_id": U},
    GrantRole: {"principal_id": U, "project_id": U, "role": "member"},
    CreateStorage: {"owner_id": U, "name": "data"},
    CreatePriorityClass: {"name": "batch", "value": 10},
    SetPool: {"name": "main", "gpu_capacity": 8, "cpu_capacity": 64},
    AddPlan: {
        "project_id": U,
        "resource_owner_id": U,
        "resource_type": "GPU",
        "quantity": 4,
        "window": "Mon 09:00-18:00",
    },
    CommitConfig: {"project_id": U, "author_id": U, "content": {}, "message": "m"},
    SubmitJob: {"project_id": U, "submitted_by": U, "gpu": 1},
    JobRequest: {"job_id": U, "project_id": U, "actor": "alice", "gpu": 1},
    CancelRequest: {"actor": "alice"},
    ConfigRequest: {"op": "commit", "request_id": U, "project_id": U, "actor": "alice"},
}

huge_ints = st.one_of(st.integers(max_value=-1), st.integers(min_value=10**8, max_value=2**62))
USERNAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,62})$")
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$")


def refused_by(pattern: re.Pattern[str]) -> st.SearchStrategy[str]:
    """Strings the pattern refuses even after the model strips surrounding whitespace."""
    return st.one_of(
        st.just(""),
        st.text(min_size=64, max_size=300, alphabet=string.ascii_lowercase),
        st.text(max_size=20),
    ).filter(lambda s: not pattern.fullmatch(s.strip()))


bad_labels = refused_by(USERNAME)
bad_dns = refused_by(DNS_LABEL)
bad_uuids = st.one_of(st.just("not-a-uuid"), st.text(max_size=30), st.integers())
oversized = st.text(min_size=2_001, max_size=12_000)
bad_windows = st.one_of(
    st.just(""),
    st.just("Mon 10:00-10:00"),
    st.just("Xyz 01:00-02:00"),
    st.just("Mon 25:00-26:00"),
    st.text(max_size=40).filter(lambda s: "-" not in s),
)

# (model, field, strategy of invalid values)
CASES: list[tuple[type, str, st.SearchStrategy[Any]]] = [
    (CreateUser, "username", bad_labels),
    (CreateGroup, "name", bad_labels),
    (CreateProject, "name", st.one_of(st.just(""), st.just("../etc"), oversized)),
    (CreateProject, "owner_id", bad_uuids),
    (
        GrantRole,
        "role",
        st.text(max_size=10).filter(lambda s: s not in ("viewer", "member", "admin")),
    ),
    (
        CreateStorage,
        "affinity_config",
        st.sampled_from(
            [
                {"hostPath": "/"},
                {"securityContext": {"privileged": True}},
                {"nodeSelector": "x"},
                {"tolerations": [{"effect": "Sometimes"}]},
                {"affinity": {"hostNetwork": True}},
            ]
        ),
    ),
    (CreatePriorityClass, "value", st.integers(min_value=10**9 + 1)),
    (CreatePriorityClass, "min_runtime_seconds", huge_ints),
    (SetPool, "gpu_capacity", huge_ints),
    (SetPool, "cpu_capacity", huge_ints),
    (SetPool, "name", bad_dns),
    (AddPlan, "quantity", st.one_of(st.integers(max_value=0), st.integers(min_value=10**7 + 1))),
    (AddPlan, "window", bad_windows),
    (AddPlan, "resource_type", st.text(max_size=5).filter(lambda s: s not in ("GPU", "CPU"))),
    (
        CommitConfig,
        "content",
        st.sampled_from(
            [
                {"limits": {"max_gpu_per_job": -1}},
                {"defaults": {"pool": "Bad Pool"}},
                {"unknown": 1},
                {"annotations": {"k" * 64: "v"}},
            ]
        ),
    ),
    (CommitConfig, "message", st.one_of(st.just(""), oversized)),
    (SubmitJob, "gpu", st.one_of(st.integers(max_value=-1), st.integers(min_value=4097))),
    (SubmitJob, "cpu", st.one_of(st.integers(max_value=-1), st.integers(min_value=65_537))),
    (SubmitJob, "pool", bad_dns.filter(lambda s: s != "")),
    (SubmitJob, "priority_class", bad_dns.filter(lambda s: s != "")),
    (SubmitJob, "name", oversized),
    (SubmitJob, "run_seconds", st.floats(max_value=-0.001) | st.floats(min_value=4e7)),
    (SubmitJob, "project_id", bad_uuids),
    (JobRequest, "gpu", st.integers(min_value=4097)),
    (JobRequest, "actor", st.one_of(st.just(""), st.text(min_size=201, max_size=400))),
    (CancelRequest, "reason", oversized),
    (
        ConfigRequest,
        "op",
        st.text(max_size=8).filter(lambda s: s not in ("commit", "tag", "revert")),
    ),
]


@pytest.mark.parametrize(
    ("model", "field", "values"), CASES, ids=[f"{m.__name__}.{f}" for m, f, _ in CASES]
)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_invalid_field_is_a_typed_error_naming_it(
    model: type, field: str, values: st.SearchStrategy[Any], data: st.DataObject
) -> None:
    value = data.draw(values)
    with pytest.raises(InvalidInput) as err:
        parse(model, {**VALID[model], field: value})
    assert err.value.field is not None
    assert err.value.field.split(".")[0] == field, (err.value.field, value)
    assert err.value.reason


@pytest.mark.parametrize("model", list(VALID), ids=lambda m: m.__name__)
def test_valid_examples_are_valid_and_extra_fields_are_refused(model: type) -> None:
    parse(model, VALID[model])
    with pytest.raises(InvalidInput) as err:
        parse(model, {**VALID[model], "sneaky_extra": 1})
    assert err.value.field == "sneaky_extra"


def test_zero_resources_and_non_v4_ids() -> None:
    with pytest.raises(InvalidInput, match="at least one GPU or one CPU"):
        parse(SubmitJob, {**VALID[SubmitJob], "gpu": 0})
    with pytest.raises(InvalidInput, match="version 4"):
        parse(SubmitJob, {**VALID[SubmitJob], "id": "01970000-0000-7000-8000-000000000000"})
