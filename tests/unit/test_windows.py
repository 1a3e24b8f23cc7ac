"""Calling windows: local hours in the callee's zone(s), across DST changes and zone sets."""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from db.windows import (
    ALWAYS_OPEN,
    SEARCH_SPAN,
    CallingWindow,
    WindowError,
    always_open,
    resolve_zones,
    window_from_settings,
)
from opendeep.settings import Settings

pytestmark = pytest.mark.unit

UTC = dt.UTC
WEEKDAYS = frozenset(range(5))
MON_SAT = frozenset(range(6))
EVERY_DAY = frozenset(range(7))


utc = functools.partial(dt.datetime, tzinfo=UTC)
"""``utc(2026, 3, 29, 1)``: an aware UTC datetime."""


def window(
    start: str, end: str, zones: tuple[str, ...], days: frozenset[int] = EVERY_DAY
) -> CallingWindow:
    end_time = dt.time.max if end == "24:00" else dt.time.fromisoformat(end)
    return CallingWindow(dt.time.fromisoformat(start), end_time, days, zones)


PARIS = ("Europe/Paris",)
NEW_YORK = ("America/New_York",)


# -- contains / next_open in one zone, across DST ----------------------------------------------


def test_paris_window_skips_sunday_and_opens_monday_at_nine_summer_time() -> None:
    w = window("09:00", "20:00", PARIS, MON_SAT)
    # Saturday 28 March 2026, 20:30 CET; the clocks go forward on Sunday 29 March.
    assert w.next_open(utc(2026, 3, 28, 19, 30)) == utc(2026, 3, 30, 7, 0)


def test_paris_every_day_window_opens_at_nine_cest_on_the_spring_change_day() -> None:
    w = window("09:00", "20:00", PARIS)
    assert w.next_open(utc(2026, 3, 28, 20, 0)) == utc(2026, 3, 29, 7, 0)
    assert w.contains(utc(2026, 3, 29, 7, 0))
    assert not w.contains(utc(2026, 3, 29, 6, 59, 59))


def test_paris_every_day_window_opens_at_nine_cet_on_the_autumn_change_day() -> None:
    w = window("09:00", "20:00", PARIS)
    assert w.next_open(utc(2026, 10, 24, 19, 0)) == utc(2026, 10, 25, 8, 0)
    assert not w.contains(utc(2026, 10, 25, 7, 30))  # 08:30 CET


def test_window_starting_in_the_spring_gap_opens_when_clocks_jump_into_it() -> None:
    # 02:30 does not exist in Paris on 29 March 2026: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
    w = window("02:30", "03:30", PARIS)
    assert not w.contains(utc(2026, 3, 29, 0, 59, 59))
    assert w.next_open(utc(2026, 3, 28, 23, 0)) == utc(2026, 3, 29, 1, 0)


def test_window_inside_the_repeated_autumn_hour_is_open_twice() -> None:
    # 25 October 2026: 03:00 CEST falls back to 02:00 CET at 01:00 UTC; 02:00–02:30 happens twice.
    w = window("02:00", "02:30", PARIS)
    assert w.contains(utc(2026, 10, 25, 0, 15))  # 02:15 CEST
    assert not w.contains(utc(2026, 10, 25, 0, 45))  # 02:45 CEST
    assert w.next_open(utc(2026, 10, 25, 0, 31)) == utc(2026, 10, 25, 1, 0)  # 02:00 CET
    assert w.contains(utc(2026, 10, 25, 1, 29))
    assert w.next_open(utc(2026, 10, 25, 1, 30)) == utc(2026, 10, 26, 1, 0)


def test_window_starting_inside_the_repeated_hour_opens_on_both_readings() -> None:
    # 02:30 CEST is 00:30 UTC; the clock falls back at 01:00 UTC and reads 02:30 CET at 01:30.
    w = window("02:30", "02:45", PARIS)
    assert w.next_open(utc(2026, 10, 25, 0, 0)) == utc(2026, 10, 25, 0, 30)
    assert w.next_open(utc(2026, 10, 25, 0, 50)) == utc(2026, 10, 25, 1, 30)


def test_new_york_window_across_spring_forward() -> None:
    w = window("09:00", "17:00", NEW_YORK)
    assert w.next_open(utc(2026, 3, 7, 23, 0)) == utc(2026, 3, 8, 13, 0)  # 09:00 EDT
    assert w.next_open(utc(2026, 3, 6, 23, 0)) == utc(2026, 3, 7, 14, 0)  # 09:00 EST


def test_new_york_window_across_fall_back() -> None:
    w = window("09:00", "17:00", NEW_YORK)
    assert w.next_open(utc(2026, 10, 31, 23, 0)) == utc(2026, 11, 1, 14, 0)  # 09:00 EST
    assert w.contains(utc(2026, 11, 1, 21, 59))  # 16:59 EST
    assert not w.contains(utc(2026, 11, 1, 22, 0))


def test_new_york_window_in_the_spring_gap_opens_at_the_jump() -> None:
    w = window("02:15", "04:00", NEW_YORK)
    assert w.next_open(utc(2026, 3, 8, 5, 0)) == utc(2026, 3, 8, 7, 0)  # 03:00 EDT


def test_next_open_returns_at_itself_when_already_open() -> None:
    w = window("09:00", "20:00", PARIS, MON_SAT)
    at = utc(2026, 6, 3, 10, 17, 3)
    assert w.next_open(at) == at


def test_next_open_accepts_any_aware_zone_and_returns_utc() -> None:
    w = window("09:00", "20:00", PARIS)
    at = dt.datetime(2026, 6, 3, 6, 0, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    result = w.next_open(at)
    assert result == utc(2026, 6, 3, 7, 0)
    assert result.tzinfo is UTC


def test_end_is_exclusive_but_time_max_means_end_of_day() -> None:
    w = window("09:00", "20:00", ("UTC",))
    assert not w.contains(utc(2026, 6, 3, 20, 0))
    whole = window("00:00", "24:00", ("UTC",))
    assert whole.contains(utc(2026, 6, 3, 23, 59, 59, 999999))


def test_always_open_is_open_at_every_instant_in_every_zone() -> None:
    multi = always_open(("Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/Paris"))
    for at in (utc(2026, 3, 29, 1, 0), utc(2026, 10, 25, 1, 0), utc(2026, 1, 1)):
        assert ALWAYS_OPEN.contains(at)
        assert multi.contains(at)
        assert multi.next_open(at) == at


# -- several zones -------------------------------------------------------------------------


def test_two_zone_window_is_the_intersection_of_local_hours() -> None:
    w = window("09:00", "17:00", ("America/New_York", "America/Los_Angeles"), WEEKDAYS)
    monday_9_et = utc(2026, 3, 2, 14, 0)
    assert not w.contains(monday_9_et)  # 06:00 in Los Angeles
    assert w.next_open(monday_9_et) == utc(2026, 3, 2, 17, 0)  # 12:00 ET = 09:00 PT
    assert w.contains(utc(2026, 3, 2, 21, 59))  # 16:59 ET
    assert not w.contains(utc(2026, 3, 2, 22, 0))  # 17:00 ET


def test_two_zone_window_across_their_staggered_dst_changes() -> None:
    # New York springs forward at 07:00 UTC, Los Angeles three hours later; Sunday is allowed.
    w = window("09:00", "17:00", ("America/New_York", "America/Los_Angeles"))
    assert w.next_open(utc(2026, 3, 8, 0, 0)) == utc(2026, 3, 8, 16, 0)  # 12:00 EDT, 09:00 PDT


def test_number_with_several_zones_gets_their_intersection() -> None:
    zones = resolve_zones(None, "+12085550100")  # Idaho: Boise (Mountain) and Los Angeles
    assert zones == ("America/Boise", "America/Los_Angeles")
    w = window("09:00", "20:00", zones, WEEKDAYS)
    # Monday 2 March 2026, 09:00 MST = 16:00 UTC is 08:00 in Los Angeles: wait an hour.
    assert w.next_open(utc(2026, 3, 2, 16, 0)) == utc(2026, 3, 2, 17, 0)
    assert not w.contains(utc(2026, 3, 3, 3, 0))  # 20:00 MST


def test_window_whose_zones_never_overlap_is_refused() -> None:
    with pytest.raises(WindowError, match="never opens"):
        window("09:00", "12:00", ("Asia/Tokyo", "America/New_York"))


def test_window_whose_zones_overlap_only_on_disallowed_days_is_refused() -> None:
    # Kiritimati (UTC+14) is a day ahead of Honolulu (UTC−10): their Mondays never meet.
    with pytest.raises(WindowError, match="never opens"):
        window("00:00", "24:00", ("Pacific/Kiritimati", "Pacific/Honolulu"), frozenset({0}))


# -- validation ----------------------------------------------------------------------------


def test_unknown_zone_is_refused_by_name() -> None:
    with pytest.raises(WindowError, match="unknown time zone 'Mars/Base'"):
        window("09:00", "20:00", ("Mars/Base",))


@pytest.mark.parametrize("bad", ["", "../../etc/passwd", "/abs/path", "Europe/"])
def test_malformed_zone_keys_are_refused(bad: str) -> None:
    with pytest.raises(WindowError, match="unknown time zone"):
        window("09:00", "20:00", (bad,))


def test_a_bare_string_of_zones_is_refused() -> None:
    with pytest.raises(WindowError, match="tuple of IANA keys"):
        CallingWindow(dt.time(9), dt.time(20), EVERY_DAY, "Europe/Paris")  # type: ignore[arg-type]


def test_no_zones_is_refused() -> None:
    with pytest.raises(WindowError, match="at least one time zone"):
        window("09:00", "20:00", ())


@pytest.mark.parametrize(("start", "end"), [("20:00", "09:00"), ("09:00", "09:00")])
def test_start_not_before_end_is_refused(start: str, end: str) -> None:
    with pytest.raises(WindowError, match="must be before its end"):
        window(start, end, PARIS)


def test_empty_days_are_refused() -> None:
    with pytest.raises(WindowError, match="at least one allowed day"):
        window("09:00", "20:00", PARIS, frozenset())


def test_days_outside_monday_to_sunday_are_refused() -> None:
    with pytest.raises(WindowError, match="weekdays"):
        window("09:00", "20:00", PARIS, frozenset({7}))


def test_zone_aware_clock_times_are_refused() -> None:
    with pytest.raises(WindowError, match="wall-clock"):
        CallingWindow(dt.time(9, tzinfo=UTC), dt.time(20), EVERY_DAY, PARIS)


def test_window_error_is_a_value_error() -> None:
    assert issubclass(WindowError, ValueError)


def test_naive_datetimes_are_refused() -> None:
    w = window("09:00", "20:00", PARIS)
    naive = dt.datetime(2026, 6, 3, 10, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        w.contains(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        w.next_open(naive)


def test_days_and_zones_are_stored_immutable_and_deduplicated() -> None:
    w = CallingWindow(dt.time(9), dt.time(20), {0, 1}, ["UTC", "UTC"])  # type: ignore[arg-type]
    assert w.days == frozenset({0, 1})
    assert w.zones == ("UTC",)


# -- helpers -------------------------------------------------------------------------------


def test_describe_is_human_readable() -> None:
    assert (
        window("09:00", "20:00", PARIS, MON_SAT).describe() == "09:00–20:00 Mon–Sat, Europe/Paris"
    )
    assert (
        window(
            "08:30", "24:00", ("America/New_York", "America/Chicago"), frozenset({0, 2, 4, 5})
        ).describe()
        == "08:30–24:00 Mon, Wed, Fri–Sat, America/New_York + America/Chicago"
    )


def test_describe_abbreviates_long_zone_lists() -> None:
    zones = resolve_zones(None, "+18005550100")
    text = window("00:00", "24:00", zones).describe()
    assert f"+ {len(zones) - 3} more zones" in text


def test_resolve_zones_prefers_the_tasks_zone() -> None:
    assert resolve_zones("Europe/Paris", "+14155550100") == ("Europe/Paris",)
    assert resolve_zones(" Asia/Tokyo ", "+14155550100") == ("Asia/Tokyo",)


def test_resolve_zones_refuses_an_unknown_task_zone() -> None:
    with pytest.raises(WindowError, match="unknown time zone 'Mars/Base'"):
        resolve_zones("Mars/Base", "+14155550100")


def test_resolve_zones_falls_back_to_the_numbers_zones_then_utc() -> None:
    assert resolve_zones(None, "+14155550100") == ("America/Los_Angeles",)
    assert resolve_zones("", "+33142685300") == ("Europe/Paris",)
    assert resolve_zones(None, "+80012345678") == ("UTC",)


def test_window_from_settings_uses_the_default_hours_and_days() -> None:
    s = Settings(
        _env_file=None,
        calling_window_start="08:00",
        calling_window_end="24:00",
        calling_days="mon-fri",
    )
    w = window_from_settings(s, ("Europe/Paris",))
    assert (w.start, w.end, w.days, w.zones) == (dt.time(8), dt.time.max, WEEKDAYS, PARIS)


# -- properties ----------------------------------------------------------------------------

DST_ZONES = [
    "Europe/Paris",
    "America/New_York",
    "America/Los_Angeles",
    "Australia/Sydney",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "Asia/Kolkata",  # half-hour offset, no DST
    "UTC",
]
QUARTER = dt.timedelta(minutes=15)


@st.composite
def windows(draw: st.DrawFn) -> CallingWindow:
    """Single-zone windows on quarter-hour boundaries (all these zones' offsets are quarters)."""
    start_q = draw(st.integers(0, 95))
    end_q = draw(st.integers(start_q + 1, 96))
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    tz = draw(st.sampled_from(DST_ZONES))
    end = dt.time.max if end_q == 96 else dt.time(end_q // 4, 15 * (end_q % 4))
    return CallingWindow(dt.time(start_q // 4, 15 * (start_q % 4)), end, days, (tz,))


# Instants within a few days of the 2026 DST changes (and some ordinary ones).
AROUND = [
    utc(2026, 3, 8, 7),
    utc(2026, 11, 1, 6),
    utc(2026, 3, 29, 1),
    utc(2026, 10, 25, 1),
    utc(2026, 4, 5, 16),
    utc(2026, 10, 4, 16),
    utc(2026, 6, 15),
]
instants = st.builds(
    lambda base, seconds: base + dt.timedelta(seconds=seconds),
    st.sampled_from(AROUND),
    st.integers(-4 * 86400, 4 * 86400),
)


@settings(max_examples=100, deadline=None)
@given(w=windows(), at=instants)
def test_next_open_is_the_earliest_open_instant_at_or_after(
    w: CallingWindow, at: dt.datetime
) -> None:
    opened = w.next_open(at)
    assert opened >= at
    assert opened <= at + SEARCH_SPAN
    assert w.contains(opened)
    if opened > at:
        assert not w.contains(at)
        # Every opening lies on a UTC quarter hour here, so sampling quarters misses none.
        probe = at.replace(minute=at.minute - at.minute % 15, second=0) + QUARTER
        while probe < opened:
            assert not w.contains(probe), f"open at {probe} before {opened}"
            probe += QUARTER


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    at=instants,
    zones=st.lists(st.sampled_from(DST_ZONES), min_size=2, max_size=3, unique=True),
)
def test_multi_zone_next_open_is_open_in_every_zone(
    data: st.DataObject, at: dt.datetime, zones: list[str]
) -> None:
    # Wide windows mostly overlap across zones; narrow ones are mostly refused as never open.
    start_h = data.draw(st.integers(0, 12))
    end_h = data.draw(st.integers(start_h + 4, 24))
    days = data.draw(st.frozensets(st.integers(0, 6), min_size=1))
    end = dt.time.max if end_h == 24 else dt.time(end_h)
    try:
        w = CallingWindow(dt.time(start_h), end, days, tuple(zones))
    except WindowError:
        assume(False)
        return
    try:
        opened = w.next_open(at)
    except WindowError:
        return  # a window that opens only in some seasons may stay shut for 14 days
    assert opened >= at
    for key in zones:
        local = opened.astimezone(zoneinfo.ZoneInfo(key))
        assert local.weekday() in days
        assert dt.time(start_h) <= local.time()
        assert end == dt.time.max or local.time() < end
