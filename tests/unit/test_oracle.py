from datetime import UTC, datetime, timedelta
from uuid import uuid4

from tests.oracle import Running, candidates, victims

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def job(
    gpu: int, priority: int = 100, minutes: int = 0, best_effort: bool = False, cpu: int = 0
) -> Running:
    return Running(uuid4(), gpu, cpu, priority, best_effort, T0 + timedelta(minutes=minutes))


def test_greedy_prefix_over_evicts_but_the_reverse_pass_spares() -> None:
    big, small1, small2 = job(4, minutes=0), job(1, minutes=1), job(1, minutes=2)
    # victim order: small2 (newest), small1, big; the prefix to free 4 is all three
    assert victims([big, small1, small2], 1000, 4, 0) == {big.id}


def test_best_effort_then_priority_then_newest_first() -> None:
    old_low, new_low = job(1, 100, 0), job(1, 100, 5)
    be_high = job(1, 10_000, 0, best_effort=True)
    normal = job(1, 1000, 9)
    assert candidates([old_low, normal, new_low, be_high], 1000) == [be_high, new_low, old_low]
    assert victims([old_low, normal, new_low, be_high], 1000, 2, 0) == {be_high.id, new_low.id}


def test_nobody_when_not_enough_and_cpu_counts_too() -> None:
    assert victims([job(1), job(1)], 1000, 3, 0) is None
    assert victims([job(2, cpu=1), job(0, cpu=8, minutes=1)], 1000, 2, 8) is not None
    assert victims([job(2, cpu=1)], 1000, 2, 8) is None
    assert victims([job(2)], 100, 1, 0) is None  # equal priority is not a candidate
