"""Weekly GPU/CPU plans: non-overlapping per project and resource, enforced by the database."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any
from uuid import UUID, uuid4

from domain.errors import NotFound, PlanConflict
from domain.models import AddPlan, Plan, ResourceType
from domain.weekwindow import format_span, second_of_week, window_from_segments
from store.base import Repository, all_rows
from store.db import Database
from store.queries import q


def _plan(row: dict[str, Any]) -> Plan:
    segments = [(int(a), int(b)) for a, b in row["segments"]]
    return Plan(
        plan_group=row["plan_group"],
        project_id=row["project_id"],
        resource_owner_id=row["resource_owner_id"],
        resource_type=ResourceType(row["resource_type"]),
        quantity=row["quantity"],
        window=str(window_from_segments(segments)),
        segments=segments,
    )


class PlanStore(Repository):
    def __init__(self, db: Database, zone: tzinfo) -> None:
        super().__init__(db)
        self.zone = zone

    def add(self, request: AddPlan) -> Plan:
        """Write the plan (two rows, atomically, when it wraps past Sunday 24:00).

        An overlap raises :class:`PlanConflict` naming the existing window, e.g.
        ``overlaps GPU plan Mon 08:00–12:00 (4 GPU)``; nothing is written.
        """
        window = request.week_window
        group = uuid4()
        params = {
            "plan_group": group,
            "project_id": request.project_id,
            "resource_owner_id": request.resource_owner_id,
            "resource_type": request.resource_type.value,
            "quantity": request.quantity,
        }
        try:
            with self.db.connection() as conn:
                for lower, upper in window.segments():
                    conn.execute(q("plan_insert"), {**params, "lower": lower, "upper": upper})
        except PlanConflict as exc:
            raise PlanConflict(
                f"{request.resource_type.value} plan {window} {self._overlap_text(request)}",
                window=str(window),
            ) from exc
        return Plan(
            plan_group=group,
            project_id=request.project_id,
            resource_owner_id=request.resource_owner_id,
            resource_type=request.resource_type,
            quantity=request.quantity,
            window=str(window),
            segments=window.segments(),
        )

    def _overlap_text(self, request: AddPlan) -> str:
        found: dict[UUID, str] = {}
        with self.db.connection() as conn:
            for lower, upper in request.week_window.segments():
                for row in all_rows(
                    conn,
                    "plan_overlapping",
                    {
                        "project_id": request.project_id,
                        "resource_type": request.resource_type.value,
                        "lower": lower,
                        "upper": upper,
                    },
                ):
                    existing = window_from_segments([(int(a), int(b)) for a, b in row["segments"]])
                    found[row["plan_group"]] = (
                        f"{row['resource_type']} plan {existing} "
                        f"({row['quantity']} {row['resource_type']})"
                    )
        if not found:  # removed in the meantime; the constraint still said no
            return "overlaps an existing plan"
        return "overlaps " + " and ".join(found.values())

    def for_project(self, project_id: UUID) -> list[Plan]:
        with self.db.connection() as conn:
            return [_plan(r) for r in all_rows(conn, "plan_list", {"project_id": project_id})]

    def project_of(self, plan_group: UUID) -> UUID:
        with self.db.connection() as conn:
            row = conn.execute(q("plan_group_project"), {"plan_group": plan_group}).fetchone()
        if row is None:
            raise NotFound(f"no plan {plan_group}")
        return UUID(str(row["project_id"]))

    def remove(self, plan_group: UUID) -> int:
        with self.db.connection() as conn:
            removed = conn.execute(q("plan_delete_group"), {"plan_group": plan_group}).rowcount
        if not removed:
            raise NotFound(f"no plan {plan_group}")
        return removed

    def quota_at(self, project_id: UUID, at: datetime) -> list[dict[str, Any]]:
        """The plans in force at ``at`` on the project's path, with subtree usage."""
        sow = second_of_week(at, self.zone)
        with self.db.connection() as conn:
            rows = all_rows(conn, "plan_quota_at", {"project_id": project_id, "sow": sow})
        for row in rows:
            row["window"] = format_span(row.pop("lower"), row.pop("upper"))
        return rows
