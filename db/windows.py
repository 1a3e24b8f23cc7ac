"""Calling windows: the local hours and days a callee may be rung, in one or more time zones.

A window is open at an instant when, in **every** one of its zones, the local wall-clock time
falls on an allowed weekday and within ``[start, end)`` (DESIGN.md §3: where a number maps to
several zones, the window is their intersection). Membership is always judged on the local
wall clock, so DST gaps and repeated hours need no special rules in :meth:`CallingWindow.contains`;
:meth:`CallingWindow.next_open` finds the earliest open instant by checking only the instants
where some zone's window can begin. Imports only the standard library and our own ``db``
modules that do the same.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, Protocol

from db.phone import zones_for_number
from db.shapes import require_aware

SEARCH_SPAN: Final = dt.timedelta(days=14)
"""How far ahead :meth:`CallingWindow.next_open` looks before declaring a window shut."""

_DAY_NAMES: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_ALL_DAYS: Final = frozenset(range(7))
# One week in winter and one in summer: a multi-zone window that opens in neither never opens.
_PROBE_INSTANTS: Final = (
    dt.datetime(2026, 1, 5, tzinfo=dt.UTC),
    dt.datetime(2026, 7, 6, tzinfo=dt.UTC),
)
_DESCRIBE_MAX_ZONES: Final = 3


class WindowError(ValueError):
    """A calling window that is malformed or can never open."""


class WindowDefaults(Protocol):
    """What :func:`window_from_settings` reads; ``opendeep.settings.Settings`` provides it."""

    @property
    def window_start(self) -> dt.time:
        """Default local start of the calling window."""

    @property
    def window_end(self) -> dt.time:
        """Default local end of the calling window (``time.max`` = end of day)."""

    @property
    def calling_weekdays(self) -> tuple[int, ...]:
        """Default allowed weekdays (Monday = 0)."""


def zone(key: str) -> zoneinfo.ZoneInfo:
    """The ``ZoneInfo`` for an IANA key, or :class:`WindowError` naming the unknown zone."""
    try:
        return zoneinfo.ZoneInfo(key)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise WindowError(f"unknown time zone {key!r}") from exc


@dataclass(frozen=True, slots=True)
class CallingWindow:
    """Allowed local hours ``[start, end)`` on ``days`` (Monday = 0), in every one of ``zones``.

    ``end == datetime.time.max`` means "until the end of the day" (inclusive), so
    ``00:00–time.max`` on all days is always open.
    """

    start: dt.time
    end: dt.time
    days: frozenset[int]
    zones: tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.zones, str):
            # tuple("Europe/Paris") would silently become twelve one-letter "zones".
            raise WindowError(f"zones must be a tuple of IANA keys, not the string {self.zones!r}")
        # Accept any iterables for days/zones but store the declared immutable types.
        object.__setattr__(self, "days", frozenset(self.days))
        object.__setattr__(self, "zones", tuple(dict.fromkeys(self.zones)))
        if not self.zones:
            raise WindowError("a calling window needs at least one time zone")
        for key in self.zones:
            zone(key)
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise WindowError("calling window hours are local wall-clock times, without a zone")
        if not self.start < self.end:
            raise WindowError(
                f"calling window start {_clock(self.start)} must be before its end "
                f"{_clock(self.end)}"
            )
        if not self.days:
            raise WindowError("a calling window needs at least one allowed day")
        if not self.days <= _ALL_DAYS:
            raise WindowError(f"weekdays must be 0 (Monday) to 6 (Sunday), got {sorted(self.days)}")
        if len(self.zones) > 1 and not any(self._search(t) for t in _PROBE_INSTANTS):
            raise WindowError(
                f"calling window {self.describe()} never opens: the zones' local hours "
                "never overlap on an allowed day"
            )

    def contains(self, at: dt.datetime) -> bool:
        """Whether the window is open at the aware instant ``at`` (in every zone)."""
        at = require_aware(at, "calling window instant")
        return all(self._open_in(at, zone(key)) for key in self.zones)

    def next_open(self, at: dt.datetime) -> dt.datetime:
        """The earliest aware-UTC instant ``>= at`` at which the window is open.

        Raises :class:`WindowError` if it does not open within ``SEARCH_SPAN`` (14 days).
        """
        at = require_aware(at, "calling window instant")
        found = self._search(at)
        if found is None:
            raise WindowError(
                f"calling window {self.describe()} does not open within "
                f"{SEARCH_SPAN.days} days of {at.isoformat()}"
            )
        return found

    def describe(self) -> str:
        """Human summary, e.g. ``"09:00–20:00 Mon–Sat, Europe/Paris"``."""
        zones = " + ".join(self.zones[:_DESCRIBE_MAX_ZONES])
        if len(self.zones) > _DESCRIBE_MAX_ZONES:
            zones += f" + {len(self.zones) - _DESCRIBE_MAX_ZONES} more zones"
        return f"{_clock(self.start)}–{_clock(self.end)} {_describe_days(self.days)}, {zones}"

    # -- internals ---------------------------------------------------------------------------

    def _open_in(self, at: dt.datetime, tz: zoneinfo.ZoneInfo) -> bool:
        local = at.astimezone(tz)
        if local.weekday() not in self.days:
            return False
        clock = local.time()
        return self.start <= clock and (clock < self.end or self.end == dt.time.max)

    def _search(self, at: dt.datetime) -> dt.datetime | None:
        if self.contains(at):
            return at
        stop = at + SEARCH_SPAN
        candidates = sorted(
            {c for key in self.zones for c in self._entry_candidates(zone(key), at, stop)}
        )
        for candidate in candidates:
            if at < candidate <= stop and self.contains(candidate):
                return candidate
        return None

    def _entry_candidates(
        self, tz: zoneinfo.ZoneInfo, lo: dt.datetime, hi: dt.datetime
    ) -> Iterator[dt.datetime]:
        """Instants in one zone where its window may begin (a superset of the real ones).

        Between two UTC-offset changes the local clock runs forward continuously, so the
        zone's window can only begin where the clock reaches ``start`` (either reading of an
        ambiguous or missing wall time) or where the offset jumps (a DST change can skip into
        the window, or repeat an hour that falls back into it).
        """
        first = lo.astimezone(tz).date() - dt.timedelta(days=1)
        last = hi.astimezone(tz).date() + dt.timedelta(days=1)
        day = first
        while day <= last:
            if day.weekday() in self.days:
                wall = dt.datetime.combine(day, self.start, tzinfo=tz)
                yield wall.astimezone(dt.UTC)
                yield wall.replace(fold=1).astimezone(dt.UTC)
            day += dt.timedelta(days=1)
        yield from _offset_changes(tz, lo - dt.timedelta(days=1), hi + dt.timedelta(days=1))


def _offset_changes(
    tz: zoneinfo.ZoneInfo, lo: dt.datetime, hi: dt.datetime
) -> Iterator[dt.datetime]:
    """UTC instants in ``[lo, hi]`` where ``tz`` changes its UTC offset (to the second)."""
    step = dt.timedelta(hours=12)  # real zones never change offset twice within 12 hours
    left = lo
    while left < hi:
        right = min(left + step, hi)
        if _offset(tz, left) != _offset(tz, right):
            yield _bisect_change(tz, left, right)
        left = right


def _bisect_change(tz: zoneinfo.ZoneInfo, left: dt.datetime, right: dt.datetime) -> dt.datetime:
    """The first whole second in ``(left, right]`` with ``right``'s offset."""
    target = _offset(tz, right)
    lo_s, hi_s = 0, int((right - left).total_seconds())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _offset(tz, left + dt.timedelta(seconds=mid)) == target:
            hi_s = mid
        else:
            lo_s = mid
    return left + dt.timedelta(seconds=hi_s)


def _offset(tz: zoneinfo.ZoneInfo, at: dt.datetime) -> dt.timedelta | None:
    return at.astimezone(tz).utcoffset()


def _clock(t: dt.time) -> str:
    if t == dt.time.max:
        return "24:00"
    return t.strftime("%H:%M:%S" if t.second or t.microsecond else "%H:%M")


def _describe_days(days: Iterable[int]) -> str:
    ordered = sorted(days)
    runs: list[list[int]] = []
    for d in ordered:
        if runs and runs[-1][-1] == d - 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    parts = [
        _DAY_NAMES[r[0]] if len(r) == 1 else f"{_DAY_NAMES[r[0]]}–{_DAY_NAMES[r[-1]]}" for r in runs
    ]
    return ", ".join(parts)


def resolve_zones(task_zone: str | None, e164: str) -> tuple[str, ...]:
    """The zones a task's window applies in: the task's own zone, else the number's zones.

    A blank ``task_zone`` counts as not given. When ``phonenumbers`` maps the number to no
    zone (or to none our tz database knows), the window falls back to ``("UTC",)`` so the
    task stays callable; the task's creator can set an explicit zone to do better.
    """
    if task_zone is not None and task_zone.strip():
        key = task_zone.strip()
        zone(key)
        return (key,)
    zones = tuple(z for z in zones_for_number(e164) if _is_known_zone(z))
    return zones or ("UTC",)


def _is_known_zone(key: str) -> bool:
    try:
        zone(key)
    except WindowError:
        return False
    return True


def window_from_settings(settings: WindowDefaults, zones: Iterable[str]) -> CallingWindow:
    """The default calling window from settings, applied in ``zones``."""
    return CallingWindow(
        start=settings.window_start,
        end=settings.window_end,
        days=frozenset(settings.calling_weekdays),
        zones=tuple(zones),
    )


def always_open(zones: Iterable[str] = ("UTC",)) -> CallingWindow:
    """A window open at every instant (00:00–24:00, every day): the simulated-PBX default."""
    return CallingWindow(start=dt.time.min, end=dt.time.max, days=_ALL_DAYS, zones=tuple(zones))


ALWAYS_OPEN: Final = always_open()
"""A window open at every instant, in UTC."""
