"""Weekly windows: text such as ``Mon 09:00-18:00`` or ``Fri 22:00-Mon 06:00`` ⇄ seconds of week.

Seconds of the week count from Monday 00:00 (= 0) to Sunday 24:00 (= 604 800), read in the
configured time zone. A window is half-open, ``[start, end)``, so ``Mon 08:00-12:00`` and
``Mon 12:00-16:00`` touch without overlapping. A window that runs past Sunday 24:00 wraps to
Monday and is stored as two segments (``resource_plans`` keeps ranges inside ``[0, 604800)``).

Accepted forms (days are ``Mon``…``Sun`` or full names, any case; ``-`` or ``–``):

* ``Mon 09:00-18:00`` — one day; ``Mon 22:00-06:00`` ends the next morning; ``24:00`` is the
  end of a day.
* ``Fri 22:00-Mon 06:00`` — from one day to another, wrapping over the week boundary if needed.
* ``always`` — the whole week.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, tzinfo

from domain.errors import InvalidInput

DAY = 86_400
WEEK = 7 * DAY
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_TIME = r"(\d{1,2}):(\d{2})(?::(\d{2}))?"
_DAY = r"([A-Za-z]+)"
_SAME_DAY = re.compile(rf"^{_DAY}\s+{_TIME}\s*[-–]\s*{_TIME}$")
_TWO_DAYS = re.compile(rf"^{_DAY}\s+{_TIME}\s*[-–]\s*{_DAY}\s+{_TIME}$")


def _day_index(name: str, text: str) -> int:
    lowered = name.lower()
    for index, (short, full) in enumerate(zip(DAYS, _FULL, strict=True)):
        if lowered in (short.lower(), full):
            return index
    raise InvalidInput(f"unknown day {name!r} in {text!r}; use Mon…Sun", field="window")


def _seconds(hours: str, minutes: str, seconds: str | None, text: str) -> int:
    h, m, s = int(hours), int(minutes), int(seconds or 0)
    if m > 59 or s > 59 or h > 24 or (h == 24 and (m or s)):
        raise InvalidInput(f"invalid time {hours}:{minutes} in {text!r}", field="window")
    return h * 3600 + m * 60 + s


@dataclass(frozen=True, order=True)
class WeekWindow:
    """A span of the week: ``start`` in ``[0, WEEK)`` and ``length`` in ``(0, WEEK]``."""

    start: int
    length: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < WEEK:
            raise InvalidInput(f"start {self.start} is outside [0, {WEEK})", field="window")
        if not 0 < self.length <= WEEK:
            raise InvalidInput(
                f"length {self.length} must be more than 0 and at most a week", field="window"
            )

    @classmethod
    def parse(cls, text: str) -> WeekWindow:
        cleaned = " ".join(text.strip().split())
        if not cleaned:
            raise InvalidInput("empty window; e.g. 'Mon 09:00-18:00'", field="window")
        if cleaned.lower() in ("always", "all week"):
            return cls(0, WEEK)
        if match := _TWO_DAYS.match(cleaned):
            d1 = _day_index(match[1], text)
            t1 = _seconds(match[2], match[3], match[4], text)
            d2 = _day_index(match[5], text)
            t2 = _seconds(match[6], match[7], match[8], text)
            start, end = d1 * DAY + t1, d2 * DAY + t2
        elif match := _SAME_DAY.match(cleaned):
            d1 = _day_index(match[1], text)
            t1 = _seconds(match[2], match[3], match[4], text)
            t2 = _seconds(match[5], match[6], match[7], text)
            if t1 == t2:
                raise InvalidInput(f"{text!r} is an empty window", field="window")
            start = d1 * DAY + t1
            # "Mon 22:00-06:00" ends on Tuesday morning.
            end = d1 * DAY + t2 if t2 > t1 else (d1 + 1) * DAY + t2
        else:
            raise InvalidInput(
                f"cannot read {text!r}; use 'Mon 09:00-18:00' or 'Fri 22:00-Mon 06:00'",
                field="window",
            )
        if end == start:
            raise InvalidInput(f"{text!r} is an empty window", field="window")
        if start == WEEK:  # "Sun 24:00-…" starts at Monday 00:00
            start = 0
            end -= WEEK
        length = (end - start) % WEEK
        return cls(start, length or WEEK)

    @property
    def end(self) -> int:
        """End in seconds from Monday 00:00; above WEEK when the window wraps."""
        return self.start + self.length

    def segments(self) -> list[tuple[int, int]]:
        """Half-open ranges inside ``[0, WEEK)``: one, or two when the window wraps."""
        if self.end <= WEEK:
            return [(self.start, self.end)]
        return [(self.start, WEEK), (0, self.end - WEEK)]

    def contains(self, second: int) -> bool:
        return any(a <= second < b for a, b in self.segments())

    def overlaps(self, other: WeekWindow) -> bool:
        return any(a < d and c < b for a, b in self.segments() for c, d in other.segments())

    def __str__(self) -> str:
        return format_span(self.start, self.end)


def _clock(second_of_day: int) -> str:
    h, rest = divmod(second_of_day, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}" + (f":{s:02d}" if s else "")


def format_span(start: int, end: int) -> str:
    """Human form of ``[start, end)``, e.g. ``Mon 08:00–12:00``; ``end`` may exceed WEEK."""
    if end - start >= WEEK:
        return "always"
    d1, t1 = divmod(start, DAY)
    # An end exactly at midnight reads as 24:00 of the previous day.
    d2, t2 = divmod(end - 1, DAY)
    t2 += 1
    if d1 == d2:
        return f"{DAYS[d1]} {_clock(t1)}–{_clock(t2)}"
    return f"{DAYS[d1]} {_clock(t1)}–{DAYS[d2 % 7]} {_clock(t2)}"


def window_from_segments(segments: list[tuple[int, int]]) -> WeekWindow:
    """Rebuild the window of a plan group from its stored segments (inverse of ``segments``)."""
    ordered = sorted(segments)
    if len(ordered) == 1:
        a, b = ordered[0]
        return WeekWindow(a, b - a)
    if len(ordered) == 2 and ordered[0][0] == 0 and ordered[1][1] == WEEK:
        (_, wrapped_end), (start, _) = ordered
        return WeekWindow(start, WEEK - start + wrapped_end)
    raise InvalidInput(f"segments {segments} do not form one weekly window", field="window")


def second_of_week(at: datetime, zone: tzinfo) -> int:
    """Seconds since Monday 00:00 of ``at``'s week, read in ``zone``."""
    if at.tzinfo is None:
        raise InvalidInput("a naive datetime has no instant; give a time zone", field="at")
    local = at.astimezone(zone)
    return local.weekday() * DAY + local.hour * 3600 + local.minute * 60 + local.second
