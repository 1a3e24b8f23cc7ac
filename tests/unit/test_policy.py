"""The retry policy of DESIGN.md §3: one decision per analysed call, as a pure function."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import zoneinfo
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from db.policy import (
    Decision,
    PolicyInput,
    counts_as_attempt,
    decide,
    pending_user_info_expired,
    validate_retry_time,
)
from db.states import CallOutcome, EventKind, TaskStatus, transition_task
from db.windows import CallingWindow, WindowError

pytestmark = pytest.mark.unit

UTC = dt.UTC
DAY = 86400.0
PARIS_WINDOW = CallingWindow(dt.time(9), dt.time(20), frozenset(range(6)), ("Europe/Paris",))
BACKOFF = (300.0, 1800.0, 7200.0)
# Friday 27 March 2026, 15:30 in Paris (CET, UTC+1).
FRIDAY_AFTERNOON = dt.datetime(2026, 3, 27, 14, 30, tzinfo=UTC)

RETRYABLE = [
    CallOutcome.INCOMPLETE,
    CallOutcome.FAILED_NO_ANSWER,
    CallOutcome.FAILED_BUSY,
    CallOutcome.FAILED_CONGESTION,
    CallOutcome.FAILED_VOICEMAIL,
    CallOutcome.FAILED_REJECTED,
    CallOutcome.FAILED_TECHNICAL,
]


utc = functools.partial(dt.datetime, tzinfo=UTC)
"""``utc(2026, 3, 29, 1)``: an aware UTC datetime."""


def make(outcome: CallOutcome, **overrides: Any) -> PolicyInput:
    fields: dict[str, Any] = {
        "outcome": outcome,
        "counted_attempts": 0,
        "total_calls": 1,
        "max_attempts": 3,
        "max_calls": 10,
        "requested_time": None,
        "answer_ready": False,
        "now": FRIDAY_AFTERNOON,
        "window": PARIS_WINDOW,
        "backoff": BACKOFF,
        "horizon": 30 * DAY,
    }
    fields.update(overrides)
    return PolicyInput(**fields)


# -- counting --------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", list(CallOutcome))
def test_every_outcome_counts_as_an_attempt_except_progress(outcome: CallOutcome) -> None:
    progress = {CallOutcome.RESCHEDULE_REQUESTED, CallOutcome.NEEDS_USER_INFO}
    assert counts_as_attempt(outcome) is (outcome not in progress)


# -- terminal outcomes -----------------------------------------------------------------------


def test_success_completes_the_task() -> None:
    d = decide(make(CallOutcome.SUCCESS))
    assert d == Decision(TaskStatus.COMPLETED, None, 1, "Objective met", EventKind.COMPLETED)


def test_success_on_the_last_allowed_attempt_still_completes() -> None:
    d = decide(make(CallOutcome.SUCCESS, counted_attempts=2, total_calls=10))
    assert (d.status, d.counted_attempts) == (TaskStatus.COMPLETED, 3)


@pytest.mark.parametrize("outcome", [CallOutcome.WRONG_NUMBER, CallOutcome.DO_NOT_CALL])
def test_wrong_number_and_do_not_call_fail_at_once(outcome: CallOutcome) -> None:
    d = decide(make(outcome))
    assert (d.status, d.next_action_time, d.event) == (TaskStatus.FAILED, None, EventKind.FAILED)
    assert d.counted_attempts == 1


# -- backoff retries -------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", RETRYABLE)
def test_failed_call_retries_after_the_first_backoff_step(outcome: CallOutcome) -> None:
    d = decide(make(outcome))
    assert d.status is TaskStatus.RETRY_SCHEDULED
    assert d.event is EventKind.RETRY_SCHEDULED
    assert d.next_action_time == FRIDAY_AFTERNOON + dt.timedelta(minutes=5)
    assert d.counted_attempts == 1


def test_retry_reason_names_the_local_time_zone_and_attempt() -> None:
    d = decide(make(CallOutcome.FAILED_BUSY))
    assert d.reason == "Busy — retry at 15:35 Europe/Paris (attempt 2 of 3)"


def test_backoff_step_follows_counted_attempts_and_the_last_step_repeats() -> None:
    second = decide(make(CallOutcome.FAILED_NO_ANSWER, counted_attempts=1, total_calls=2))
    assert second.next_action_time == FRIDAY_AFTERNOON + dt.timedelta(minutes=30)
    late = decide(
        make(
            CallOutcome.FAILED_NO_ANSWER,
            counted_attempts=6,
            total_calls=7,
            max_attempts=9,
            max_calls=20,
        )
    )
    assert late.next_action_time == FRIDAY_AFTERNOON + dt.timedelta(hours=2)


def test_backoff_landing_outside_the_window_moves_to_the_next_opening() -> None:
    saturday_evening = utc(2026, 3, 28, 18, 58)  # 19:58 CET; Sunday is not allowed
    d = decide(make(CallOutcome.FAILED_BUSY, now=saturday_evening))
    assert d.next_action_time == utc(2026, 3, 30, 7, 0)  # Monday 09:00 CEST
    assert "Mon 30 Mar 09:00 Europe/Paris" in d.reason


def test_last_counted_attempt_fails_the_task() -> None:
    d = decide(make(CallOutcome.FAILED_NO_ANSWER, counted_attempts=2, total_calls=3))
    assert (d.status, d.counted_attempts, d.event) == (TaskStatus.FAILED, 3, EventKind.FAILED)
    assert d.next_action_time is None
    assert "3 of 3 attempts" in d.reason


@pytest.mark.parametrize(
    "outcome", [*RETRYABLE, CallOutcome.RESCHEDULE_REQUESTED, CallOutcome.NEEDS_USER_INFO]
)
def test_hard_cap_on_total_calls_fails_every_going_on_outcome(outcome: CallOutcome) -> None:
    d = decide(make(outcome, total_calls=10, max_calls=10, answer_ready=True))
    assert d.status is TaskStatus.FAILED
    assert "10 of 10 calls" in d.reason


def test_retry_that_cannot_fit_before_the_horizon_fails_with_a_reason() -> None:
    saturday_late = utc(2026, 3, 28, 19, 30)  # 20:30 CET: shut until Monday
    d = decide(make(CallOutcome.FAILED_BUSY, now=saturday_late, horizon=3600.0))
    assert d.status is TaskStatus.FAILED
    assert "cannot schedule a retry" in d.reason
    assert "horizon" in d.reason


# -- callee asked for a callback -------------------------------------------------------------


def test_reschedule_uses_the_requested_time_and_does_not_count() -> None:
    monday_10 = utc(2026, 3, 30, 8, 0)  # 10:00 CEST
    d = decide(make(CallOutcome.RESCHEDULE_REQUESTED, requested_time=monday_10, counted_attempts=2))
    assert d == Decision(
        TaskStatus.RETRY_SCHEDULED,
        monday_10,
        2,
        d.reason,
        EventKind.RESCHEDULED_BY_CALLEE,
    )
    assert "as requested" in d.reason


def test_reschedule_outside_the_window_moves_into_it() -> None:
    sunday_noon = utc(2026, 3, 29, 10, 0)
    d = decide(make(CallOutcome.RESCHEDULE_REQUESTED, requested_time=sunday_noon))
    assert d.next_action_time == utc(2026, 3, 30, 7, 0)


@pytest.mark.parametrize("requested", [None, FRIDAY_AFTERNOON, utc(2026, 3, 1)])
def test_reschedule_without_a_future_time_falls_back_to_backoff(
    requested: dt.datetime | None,
) -> None:
    d = decide(make(CallOutcome.RESCHEDULE_REQUESTED, requested_time=requested))
    assert d.next_action_time == FRIDAY_AFTERNOON + dt.timedelta(minutes=5)
    assert d.event is EventKind.RESCHEDULED_BY_CALLEE
    assert "backoff" in d.reason


def test_reschedule_beyond_the_horizon_is_clamped_inside_it_and_the_window() -> None:
    d = decide(
        make(
            CallOutcome.RESCHEDULE_REQUESTED,
            requested_time=FRIDAY_AFTERNOON + dt.timedelta(days=90),
        )
    )
    limit = FRIDAY_AFTERNOON + dt.timedelta(days=30)  # a Sunday: the window is shut
    assert d.next_action_time is not None
    assert FRIDAY_AFTERNOON < d.next_action_time <= limit
    assert PARIS_WINDOW.contains(d.next_action_time)
    assert d.next_action_time == utc(2026, 4, 25, 7, 0)  # the last opening before it
    assert "horizon" in d.reason


def test_reschedule_is_allowed_even_after_all_counted_attempts() -> None:
    d = decide(
        make(CallOutcome.RESCHEDULE_REQUESTED, counted_attempts=3, total_calls=4, max_attempts=3)
    )
    assert d.status is TaskStatus.RETRY_SCHEDULED


# -- needs user info -------------------------------------------------------------------------


def test_needs_user_info_waits_for_the_creator() -> None:
    d = decide(make(CallOutcome.NEEDS_USER_INFO, counted_attempts=1, total_calls=2))
    assert d.status is TaskStatus.PENDING_USER_INFO
    assert d.next_action_time is None
    assert d.counted_attempts == 1
    assert d.event is EventKind.USER_INFO_REQUESTED


def test_needs_user_info_with_the_answer_in_calls_back_now_when_open() -> None:
    d = decide(make(CallOutcome.NEEDS_USER_INFO, answer_ready=True))
    assert (d.status, d.next_action_time) == (TaskStatus.RETRY_SCHEDULED, FRIDAY_AFTERNOON)
    assert d.event is EventKind.RETRY_SCHEDULED
    assert d.counted_attempts == 0


def test_needs_user_info_with_the_answer_in_waits_for_the_window() -> None:
    saturday_late = utc(2026, 3, 28, 19, 30)
    d = decide(make(CallOutcome.NEEDS_USER_INFO, answer_ready=True, now=saturday_late))
    assert d.next_action_time == utc(2026, 3, 30, 7, 0)


# -- validate_retry_time ---------------------------------------------------------------------


def test_validate_retry_time_keeps_a_good_time() -> None:
    t = FRIDAY_AFTERNOON + dt.timedelta(hours=1)
    assert validate_retry_time(t, now=FRIDAY_AFTERNOON, window=PARIS_WINDOW, horizon=DAY) == t


def test_validate_retry_time_refuses_the_past_and_now() -> None:
    for t in (FRIDAY_AFTERNOON, FRIDAY_AFTERNOON - dt.timedelta(seconds=1)):
        with pytest.raises(ValueError, match="not in the future"):
            validate_retry_time(t, now=FRIDAY_AFTERNOON, window=PARIS_WINDOW, horizon=DAY)


def test_validate_retry_time_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        validate_retry_time(
            dt.datetime(2026, 4, 1, 10), now=FRIDAY_AFTERNOON, window=PARIS_WINDOW, horizon=DAY
        )
    with pytest.raises(ValueError, match="timezone-aware"):
        validate_retry_time(
            FRIDAY_AFTERNOON, now=dt.datetime(2026, 4, 1), window=PARIS_WINDOW, horizon=DAY
        )


def test_validate_retry_time_clamps_to_the_horizon() -> None:
    t = validate_retry_time(
        FRIDAY_AFTERNOON + dt.timedelta(days=5),
        now=FRIDAY_AFTERNOON,
        window=PARIS_WINDOW,
        horizon=3600.0,
    )
    assert t == FRIDAY_AFTERNOON + dt.timedelta(hours=1)


def test_validate_retry_time_raises_when_no_opening_fits_the_horizon() -> None:
    with pytest.raises(WindowError, match="horizon"):
        validate_retry_time(
            utc(2026, 3, 29, 12),
            now=utc(2026, 3, 28, 19, 30),
            window=PARIS_WINDOW,
            horizon=3600.0,
        )


# -- expiry and input checks -----------------------------------------------------------------


def test_pending_user_info_expires_exactly_at_the_expiry() -> None:
    since = utc(2026, 3, 1)
    week = 7 * DAY
    assert not pending_user_info_expired(since, since + dt.timedelta(days=7, seconds=-1), week)
    assert pending_user_info_expired(since, since + dt.timedelta(days=7), week)
    assert pending_user_info_expired(since, since + dt.timedelta(days=30), week)


def test_pending_user_info_expiry_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        pending_user_info_expired(dt.datetime(2026, 3, 1), utc(2026, 3, 9), 7 * DAY)


@pytest.mark.parametrize(
    "overrides",
    [
        {"now": dt.datetime(2026, 3, 27, 14, 30)},
        {"requested_time": dt.datetime(2026, 3, 30, 10)},
        {"counted_attempts": -1},
        {"total_calls": 0},
        {"max_attempts": 0},
        {"max_calls": 0},
        {"backoff": ()},
        {"backoff": (300.0, 0.0)},
        {"horizon": 0.0},
    ],
)
def test_policy_input_refuses_bad_values(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make(CallOutcome.FAILED_BUSY, **overrides)


# -- properties ------------------------------------------------------------------------------

ZONES = ["Europe/Paris", "America/New_York", "America/Los_Angeles", "Australia/Sydney", "UTC"]
AROUND_DST = [
    utc(2026, 3, 8, 7),
    utc(2026, 11, 1, 6),
    utc(2026, 3, 29, 1),
    utc(2026, 10, 25, 1),
    utc(2026, 4, 5, 16),
    utc(2026, 6, 15),
]


@st.composite
def windows(draw: st.DrawFn) -> CallingWindow:
    """Single-zone windows, and two-zone US windows that always overlap."""
    start_h = draw(st.integers(0, 22))
    end_h = draw(st.integers(start_h + 1, 24))
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    end = dt.time.max if end_h == 24 else dt.time(end_h, draw(st.sampled_from([0, 30])))
    zones = draw(
        st.one_of(
            st.sampled_from(ZONES).map(lambda z: (z,)),
            st.just(("America/New_York", "America/Chicago")),
        )
    )
    if end_h - start_h < 2 and len(zones) > 1:
        end = dt.time.max
    return CallingWindow(dt.time(start_h), end, days, zones)


nows = st.builds(
    lambda base, s: base + dt.timedelta(seconds=s),
    st.sampled_from(AROUND_DST),
    st.integers(-3 * 86400, 3 * 86400),
)


@st.composite
def policy_inputs(draw: st.DrawFn) -> PolicyInput:
    max_attempts = draw(st.integers(1, 6))
    max_calls = draw(st.integers(1, 12))
    counted = draw(st.integers(0, max_attempts - 1))
    now = draw(nows)
    requested = draw(
        st.one_of(
            st.none(),
            st.integers(-2 * 86400, 90 * 86400).map(lambda s: now + dt.timedelta(seconds=s)),
        )
    )
    return PolicyInput(
        outcome=draw(st.sampled_from(list(CallOutcome))),
        counted_attempts=counted,
        total_calls=draw(st.integers(counted + 1, max(counted + 1, max_calls))),
        max_attempts=max_attempts,
        max_calls=max_calls,
        requested_time=requested,
        answer_ready=draw(st.booleans()),
        now=now,
        window=draw(windows()),
        backoff=tuple(draw(st.lists(st.floats(1.0, 3 * 86400.0), min_size=1, max_size=4))),
        horizon=draw(st.floats(DAY, 60 * DAY)),
    )


def _check_decision(inp: PolicyInput, d: Decision) -> None:
    transition_task(TaskStatus.ANALYZING, d.status)  # the TaskActor can always apply it
    assert d.counted_attempts <= inp.max_attempts
    assert d.counted_attempts == inp.counted_attempts + int(counts_as_attempt(inp.outcome))
    assert d.reason
    if d.status is TaskStatus.RETRY_SCHEDULED:
        due = d.next_action_time
        assert due is not None
        assert due.tzinfo is UTC
        due_now = inp.outcome is CallOutcome.NEEDS_USER_INFO and inp.answer_ready
        assert due >= inp.now if due_now else due > inp.now
        assert due <= inp.now + dt.timedelta(seconds=inp.horizon)
        assert inp.window.contains(due)
        assert inp.total_calls < inp.max_calls
    else:
        assert d.next_action_time is None


@settings(max_examples=200, deadline=None)
@given(inp=policy_inputs())
def test_retry_times_are_in_the_future_within_the_horizon_and_inside_the_window(
    inp: PolicyInput,
) -> None:
    _check_decision(inp, decide(inp))


@settings(max_examples=100, deadline=None)
@given(
    outcomes=st.lists(st.sampled_from(list(CallOutcome)), min_size=1, max_size=40),
    window=windows(),
    start=nows,
    caps=st.tuples(st.integers(1, 5), st.integers(1, 12)),
    answers_late=st.booleans(),
)
def test_a_random_run_of_calls_respects_both_caps(
    outcomes: list[CallOutcome],
    window: CallingWindow,
    start: dt.datetime,
    caps: tuple[int, int],
    answers_late: bool,
) -> None:
    max_attempts, max_calls = caps
    now, counted = start, 0
    for calls, outcome in enumerate(outcomes, start=1):
        inp = PolicyInput(
            outcome=outcome,
            counted_attempts=counted,
            total_calls=calls,
            max_attempts=max_attempts,
            max_calls=max_calls,
            requested_time=now + dt.timedelta(hours=3),
            answer_ready=answers_late,
            now=now,
            window=window,
            backoff=BACKOFF,
            horizon=30 * DAY,
        )
        d = decide(inp)
        _check_decision(inp, d)
        counted = d.counted_attempts
        assert calls <= max_calls
        assert counted <= max_attempts
        if d.status is TaskStatus.RETRY_SCHEDULED:
            assert d.next_action_time is not None
            now = d.next_action_time + dt.timedelta(minutes=2)  # the call takes a while
        elif d.status is TaskStatus.PENDING_USER_INFO:
            # The creator answers a day later; the front schedules the callback due now.
            now = window.next_open(now + dt.timedelta(days=1))
        else:
            break


def test_decision_and_input_are_immutable() -> None:
    d = decide(make(CallOutcome.SUCCESS))
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.status = TaskStatus.FAILED  # type: ignore[misc]


def test_times_in_other_zones_are_accepted_and_decisions_come_back_in_utc() -> None:
    paris_now = FRIDAY_AFTERNOON.astimezone(zoneinfo.ZoneInfo("Europe/Paris"))
    d = decide(make(CallOutcome.FAILED_BUSY, now=paris_now))
    assert d.next_action_time == FRIDAY_AFTERNOON + dt.timedelta(minutes=5)
    assert d.next_action_time is not None
    assert d.next_action_time.tzinfo is UTC
