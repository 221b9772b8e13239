from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidInput
from domain.weekwindow import (
    DAY,
    WEEK,
    WeekWindow,
    format_span,
    second_of_week,
    window_from_segments,
)


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("Mon 09:00-18:00", [(9 * 3600, 18 * 3600)]),
        ("mon 09:00 – 18:00", [(9 * 3600, 18 * 3600)]),
        ("Sunday 22:00-24:00", [(WEEK - 2 * 3600, WEEK)]),
        ("Mon 22:00-06:00", [(22 * 3600, DAY + 6 * 3600)]),
        ("Wed 08:00-Fri 17:30", [(2 * DAY + 8 * 3600, 4 * DAY + 17 * 3600 + 1800)]),
        ("Fri 22:00-Mon 06:00", [(4 * DAY + 22 * 3600, WEEK), (0, 6 * 3600)]),
        ("Sun 18:00-Mon 00:00", [(6 * DAY + 18 * 3600, WEEK)]),
        ("always", [(0, WEEK)]),
    ],
)
def test_parse_segments(text: str, segments: list[tuple[int, int]]) -> None:
    assert WeekWindow.parse(text).segments() == segments


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "Mon",
        "Mon 09:00",
        "Mon 09:00-09:00",
        "Xyz 09:00-10:00",
        "Mon 25:00-26:00",
        "Mon 09:60-10:00",
        "Mon 24:30-10:00",
        "Mon 9-10",
        "Mon 09:00-Mon 09:00",
    ],
)
def test_bad_windows_are_typed_errors_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidInput) as err:
        WeekWindow.parse(text)
    assert err.value.field == "window"


def test_human_form() -> None:
    assert str(WeekWindow.parse("Mon 08:00-12:00")) == "Mon 08:00–12:00"
    assert str(WeekWindow.parse("Fri 22:00-Mon 06:00")) == "Fri 22:00–Mon 06:00"
    assert str(WeekWindow.parse("Sun 22:00-24:00")) == "Sun 22:00–24:00"
    assert format_span(0, WEEK) == "always"


def test_adjacent_windows_do_not_overlap() -> None:
    a, b = WeekWindow.parse("Mon 08:00-12:00"), WeekWindow.parse("Mon 12:00-16:00")
    assert not a.overlaps(b)
    assert a.overlaps(WeekWindow.parse("Mon 11:59-13:00"))
    wrapped = WeekWindow.parse("Sun 23:00-Mon 01:00")
    assert wrapped.overlaps(WeekWindow.parse("Mon 00:30-02:00"))
    assert not wrapped.overlaps(WeekWindow.parse("Mon 01:00-02:00"))


def test_second_of_week_in_a_time_zone() -> None:
    monday_utc = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)  # a Monday
    assert second_of_week(monday_utc, UTC) == 0
    # 00:00 UTC Monday is 19:00 Sunday in New York (EST, UTC-5).
    assert second_of_week(monday_utc, ZoneInfo("America/New_York")) == 6 * DAY + 19 * 3600
    with pytest.raises(InvalidInput):
        second_of_week(datetime(2026, 11, 30), UTC)


windows = st.builds(WeekWindow, st.integers(0, WEEK - 1), st.integers(1, WEEK))


@given(windows)
def test_segments_round_trip_and_cover_the_length(window: WeekWindow) -> None:
    segments = window.segments()
    assert sum(b - a for a, b in segments) == window.length
    assert all(0 <= a < b <= WEEK for a, b in segments)
    rebuilt = window_from_segments(segments)
    assert rebuilt.segments() == segments


@given(windows, st.integers(0, WEEK - 1))
def test_contains_matches_segments(window: WeekWindow, second: int) -> None:
    offset = (second - window.start) % WEEK
    assert window.contains(second) == (offset < window.length)


@given(windows)
def test_text_round_trip(window: WeekWindow) -> None:
    # Minute-aligned windows read back from their human form exactly.
    aligned = WeekWindow(
        window.start - window.start % 60, max(60, window.length - window.length % 60)
    )
    parsed = WeekWindow.parse(str(aligned))
    if aligned.length == WEEK:  # a whole week from any start is "always"
        assert parsed.length == WEEK
    else:
        assert parsed.segments() == aligned.segments()
