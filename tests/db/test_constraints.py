"""Every constraint of the schema, exercised on a real PostgreSQL."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from domain.errors import (
    CapacityExceeded,
    IllegalTransition,
    InvalidInput,
    PlanConflict,
    TopologyError,
)
from domain.models import AddPlan, JobStatus, ResourceType, parse
from store import Store
from store.errors import translated
from tests.db.helpers import assert_counters_consistent, count, status_of
from tests.factories import seed


def sql(store: Store, statement: str, params: tuple[object, ...] = ()) -> None:
    with store.db.connection() as conn:
        conn.execute(statement, params)


def test_overlapping_plan_is_refused_and_names_the_window(store: Store) -> None:
    w = seed(store)
    w.plan(w.team, 4, "Mon 08:00-12:00")
    with pytest.raises(PlanConflict) as err:
        w.plan(w.team, 2, "Mon 11:00-13:00")
    assert "overlaps GPU plan Mon 08:00–12:00 (4 GPU)" in str(err.value)
    assert count(store.db, "resource_plans") == 1


def test_adjacent_windows_and_other_resources_are_allowed(store: Store) -> None:
    w = seed(store)
    w.plan(w.team, 4, "Mon 08:00-12:00")
    w.plan(w.team, 4, "Mon 12:00-16:00")  # [a,b) then [b,c)
    w.plan(w.team, 64, "Mon 08:00-12:00", resource=ResourceType.CPU)
    w.plan(w.root, 8, "Mon 08:00-12:00")  # another project
    assert count(store.db, "resource_plans") == 4


def test_window_crossing_the_week_boundary_is_two_rows_written_atomically(store: Store) -> None:
    w = seed(store)
    w.plan(w.team, 4, "Fri 22:00-Mon 06:00")
    plans = store.plans.for_project(w.team.p_id)
    assert len(plans) == 1 and len(plans[0].segments) == 2
    assert plans[0].window == "Fri 22:00–Mon 06:00"
    assert count(store.db, "resource_plans") == 2
    # Overlapping only the Monday half is refused, and the message shows the whole window.
    with pytest.raises(PlanConflict, match="Fri 22:00–Mon 06:00"):
        w.plan(w.team, 1, "Mon 05:00-07:00")
    # A wrapped plan whose *second* half overlaps writes neither half.
    w.plan(w.root, 2, "Mon 01:00-02:00")
    with pytest.raises(PlanConflict):
        w.plan(w.root, 2, "Sun 20:00-Mon 01:30")
    assert count(store.db, "resource_plans") == 3
    assert store.plans.remove(plans[0].plan_group) == 2


@pytest.mark.parametrize("bounds", ["[-1,10)", "[0,604801)", "[5,5)", "[10,)"])
def test_week_window_bounds_are_checked_by_the_database(store: Store, bounds: str) -> None:
    w = seed(store)
    with pytest.raises(InvalidInput), translated():
        sql(
            store,
            "INSERT INTO resource_plans (plan_group, project_id, resource_owner_id, "
            "resource_type, quantity, week_window) VALUES (%s, %s, %s, 'GPU', 1, %s)",
            (uuid.uuid4(), w.team.p_id, w.admin.id, bounds),
        )


def test_plan_quantity_must_be_positive(store: Store) -> None:
    w = seed(store)
    with pytest.raises(InvalidInput):
        parse(
            AddPlan,
            {
                "project_id": w.team.p_id,
                "resource_owner_id": w.admin.id,
                "resource_type": "GPU",
                "quantity": 0,
                "window": "always",
            },
        )
    with pytest.raises(InvalidInput), translated():
        sql(
            store,
            "INSERT INTO resource_plans (plan_group, project_id, resource_owner_id, "
            "resource_type, quantity, week_window) VALUES (%s,%s,%s,'GPU',0,'[0,10)')",
            (uuid.uuid4(), w.team.p_id, w.admin.id),
        )


def test_only_uuid_v4_ids(store: Store) -> None:
    w = seed(store)
    with pytest.raises(InvalidInput), translated():
        sql(
            store,
            "INSERT INTO projects (p_id, name, owner_id) VALUES (uuidv7(), 'x', %s)",
            (w.admin.id,),
        )


def test_path_is_maintained_and_guarded_by_the_database(store: Store) -> None:
    w = seed(store)
    child = w.project("child", w.team)
    assert child.path == f"{w.team.path}.p{child.p_id.hex}"
    # Writing a path by hand that disagrees with the parent is refused at statement end.
    with pytest.raises(TopologyError), translated():
        sql(
            store,
            "UPDATE projects SET path = %s::ltree WHERE p_id = %s",
            (f"p{child.p_id.hex}", child.p_id),
        )
    # Moving a node without its children is refused too.
    with pytest.raises(TopologyError), translated():
        sql(
            store,
            "UPDATE projects SET parent_id = NULL, path = qf_project_label(p_id) WHERE p_id = %s",
            (w.team.p_id,),
        )


def test_storage_affinity_envelope_is_checked_by_the_database(store: Store) -> None:
    w = seed(store)
    for bad in (
        '{"hostPath": {"path": "/"}}',
        '{"nodeSelector": "x"}',
        '"scalar"',
        '{"affinity": {"hostNetwork": true}}',
        '{"tolerations": {}}',
    ):
        with pytest.raises(InvalidInput), translated():
            sql(
                store,
                "INSERT INTO storages (owner_id, name, affinity_config) "
                "VALUES (%s, 'data', %s::jsonb)",
                (w.admin.id, bad),
            )
    sql(
        store,
        "INSERT INTO storages (owner_id, name, affinity_config) VALUES (%s, 'data', "
        '\'{"nodeSelector": {"a": "b"}, "tolerations": []}\')',
        (w.admin.id,),
    )


def test_illegal_transitions_are_refused_by_the_database(store: Store) -> None:
    w = seed(store)
    job = w.submit()
    for target in ("RUNNING", "SUCCEEDED", "PREEMPTED", "PREEMPTING"):
        with pytest.raises(IllegalTransition), translated():
            sql(store, "UPDATE jobs SET status = %s WHERE id = %s", (target, job.id))
    with pytest.raises(IllegalTransition), translated():
        sql(
            store,
            "INSERT INTO jobs (id, project_id, pool, submitted_by, priority_class, "
            "priority_value, preemption_policy, required_gpu, required_cpu, status) "
            "VALUES (gen_random_uuid(), %s, 'main', %s, 'normal', 1, 'Never', 1, 0, "
            "'RUNNING')",
            (w.team.p_id, w.alice.id),
        )
    # The store names the current status when a guarded transition does not apply.
    with pytest.raises(IllegalTransition, match="is PENDING"):
        store.queue.transition(
            job.id, JobStatus.SUCCEEDED, from_statuses=[JobStatus.RUNNING], reason="x", actor="t"
        )
    assert status_of(store.db, job.id) == "PENDING"
    store.queue.transition(
        job.id, JobStatus.CANCELLED, from_statuses=[JobStatus.PENDING], reason="user", actor="alice"
    )
    with pytest.raises(IllegalTransition), translated():  # final states are final
        sql(store, "UPDATE jobs SET status = 'PENDING' WHERE id = %s", (job.id,))


def test_every_transition_writes_its_event_in_the_same_transaction(store: Store) -> None:
    w = seed(store)
    job = w.submit()
    with store.db.connection() as conn:
        conn.execute("UPDATE jobs SET status='CANCELLED', status_reason='r' WHERE id=%s", (job.id,))
        conn.rollback()  # neither the transition nor its event survives
    assert [e.to_status for e in store.queue.events(job.id)] == [JobStatus.PENDING]
    store.queue.claim("main", 1)
    store.queue.transition(
        job.id,
        JobStatus.RUNNING,
        from_statuses=[JobStatus.ADMITTED],
        reason="pod running",
        actor="watcher",
    )
    events = store.queue.events(job.id)
    assert [(e.from_status, e.to_status) for e in events] == [
        (None, JobStatus.PENDING),
        (JobStatus.PENDING, JobStatus.ADMITTED),
        (JobStatus.ADMITTED, JobStatus.RUNNING),
    ]
    assert events[-1].reason == "pod running" and events[-1].actor == "watcher"


def test_job_events_are_append_only(store: Store) -> None:
    w = seed(store)
    job = w.submit()
    with pytest.raises(IllegalTransition), translated():
        sql(store, "UPDATE job_events SET reason = 'x' WHERE job_id = %s", (job.id,))
    with pytest.raises(IllegalTransition), translated():
        sql(store, "DELETE FROM job_events WHERE job_id = %s", (job.id,))


def test_pool_capacity_is_enforced_by_the_database(store: Store) -> None:
    w = seed(store, gpus=2)
    a, b = w.submit(gpu=2), w.submit(gpu=1)
    sql(store, "UPDATE jobs SET status = 'ADMITTED' WHERE id = %s", (a.id,))
    # Bypassing the claim does not bypass the bound.
    with pytest.raises(CapacityExceeded, match="capacity exceeded: GPU 3/2"), translated():
        sql(store, "UPDATE jobs SET status = 'ADMITTED' WHERE id = %s", (b.id,))
    assert status_of(store.db, b.id) == "PENDING"
    assert_counters_consistent(store.db)


def test_lowering_capacity_below_usage_is_allowed_but_admits_nothing(store: Store) -> None:
    from domain.models import SetPool

    w = seed(store, gpus=4)
    running = [w.submit(gpu=2), w.submit(gpu=2)]
    assert len(store.queue.claim("main", 10).admitted) == 2
    store.catalog.set_pool(SetPool(name="main", gpu_capacity=2, cpu_capacity=64))
    waiting = w.submit(gpu=1)
    assert store.queue.claim("main", 10).admitted == []
    store.queue.transition(
        running[0].id,
        JobStatus.CANCELLED,
        from_statuses=[JobStatus.ADMITTED],
        reason="x",
        actor="t",
    )
    store.queue.transition(
        running[1].id,
        JobStatus.CANCELLED,
        from_statuses=[JobStatus.ADMITTED],
        reason="x",
        actor="t",
    )
    assert store.queue.claim("main", 10).admitted == [waiting.id]


def test_sqlstate_mapping_marks_retryable(store: Store) -> None:
    from domain.errors import TransientError
    from store.errors import redact, translate

    err = translate(psycopg.errors.DeadlockDetected("deadlock detected"))
    assert isinstance(err, TransientError) and err.retryable
    assert not translate(psycopg.errors.CheckViolation("x")).retryable
    assert (
        redact("postgresql://u:s3cret@h/db password=hunter2")
        == "postgresql://u:***@h/db password=***"
    )
