"""A brute-force oracle for victim selection (DESIGN §5), independent of the SQL.

The SQL ranks candidates, keeps the shortest prefix that frees ``need``, then walks it backwards
sparing what is not needed. Walking backwards and sparing whenever the rest still suffices picks,
among all subsets of the prefix that free ``need``, the one whose set of *spared* victims is
largest when read as a binary number with the last-ranked victim as the most significant bit.
The oracle finds that subset by enumerating every subset — no greedy step of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import combinations
from uuid import UUID


@dataclass(frozen=True)
class Running:
    id: UUID
    gpu: int
    cpu: int
    priority: int
    best_effort: bool
    started_at: datetime


def candidates(running: list[Running], preemptor_priority: int) -> list[Running]:
    eligible = [r for r in running if r.best_effort or r.priority < preemptor_priority]
    # best effort first, lowest priority, most recently started, then id
    eligible.sort(key=lambda r: str(r.id))
    eligible.sort(key=lambda r: r.started_at, reverse=True)
    eligible.sort(key=lambda r: r.priority)
    eligible.sort(key=lambda r: not r.best_effort)
    return eligible


def frees(jobs: list[Running] | tuple[Running, ...], need_gpu: int, need_cpu: int) -> bool:
    return sum(j.gpu for j in jobs) >= need_gpu and sum(j.cpu for j in jobs) >= need_cpu


def shortest_prefix(ranked: list[Running], need_gpu: int, need_cpu: int) -> list[Running] | None:
    for k in range(len(ranked) + 1):
        if frees(ranked[:k], need_gpu, need_cpu):
            return ranked[:k]
    return None


def victims(
    running: list[Running], preemptor_priority: int, need_gpu: int, need_cpu: int
) -> set[UUID] | None:
    """The victim set, or None when all candidates together cannot free ``need``."""
    prefix = shortest_prefix(candidates(running, preemptor_priority), need_gpu, need_cpu)
    if prefix is None:
        return None
    best: tuple[int, set[UUID]] | None = None
    for size in range(len(prefix) + 1):
        for kept in combinations(range(len(prefix)), size):
            if not frees([prefix[i] for i in kept], need_gpu, need_cpu):
                continue
            spared_mask = sum(1 << i for i in range(len(prefix)) if i not in kept)
            if best is None or spared_mask > best[0]:
                best = (spared_mask, {prefix[i].id for i in kept})
    assert best is not None  # the whole prefix frees need
    return best[1]
