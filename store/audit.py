"""Checks of the database's own bookkeeping, for tests, the demo and operators."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from store.base import Repository, all_rows


@dataclass(frozen=True)
class CounterMismatch:
    what: str
    counted: tuple[int, int]
    expected: tuple[int, int]

    def __str__(self) -> str:
        return (
            f"{self.what}: {self.counted[0]} GPU / {self.counted[1]} CPU counted, "
            f"{self.expected[0]} / {self.expected[1]} in use"
        )


class AuditStore(Repository):
    def counter_mismatches(
        self, *, pool: str | None = None, root: str | None = None
    ) -> list[CounterMismatch]:
        """Pool and subtree counters that differ from their active jobs plus saga holds
        (restrict to one pool / the tree under one top-level project name)."""
        with self.db.connection() as conn:
            pools = all_rows(conn, "audit_pool_counters", {"pool": pool})
            projects = all_rows(conn, "audit_project_counters", {"root": root})
        found = [_mismatch(f"pool {r['name']}", r) for r in pools]
        found += [_mismatch(f"project {r['name']} ({r['path']})", r) for r in projects]
        return [m for m in found if m is not None]


def _mismatch(what: str, row: dict[str, Any]) -> CounterMismatch | None:
    counted = (int(row["gpu_in_use"]), int(row["cpu_in_use"]))
    expected = (int(row["gpu_expected"]), int(row["cpu_expected"]))
    return None if counted == expected else CounterMismatch(what, counted, expected)
