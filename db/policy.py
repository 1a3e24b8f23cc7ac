"""The retry policy (DESIGN.md §3 "Policy") as a pure function of one call's outcome.

The TaskActor calls :func:`decide` after the post-call analysis and writes the returned
status, next action time, attempt count and event in one transaction. Nothing here reads a
clock or a database: every input, ``now`` included, is in :class:`PolicyInput`, so the policy
is tested exhaustively without either. Imports only the standard library and our ``db``
modules that do the same.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from db.shapes import require_aware
from db.states import CallOutcome, EventKind, TaskStatus
from db.windows import CallingWindow, WindowError, zone

_O = CallOutcome

_NOT_COUNTED: Final = frozenset({_O.RESCHEDULE_REQUESTED, _O.NEEDS_USER_INFO})
_TERMINAL_FAILURES: Final = frozenset({_O.WRONG_NUMBER, _O.DO_NOT_CALL})

_LABELS: Final = {
    _O.SUCCESS: "Objective met",
    _O.INCOMPLETE: "Call did not finish the job",
    _O.FAILED_NO_ANSWER: "No answer",
    _O.FAILED_BUSY: "Busy",
    _O.FAILED_CONGESTION: "Network congestion",
    _O.FAILED_VOICEMAIL: "Reached voicemail",
    _O.FAILED_REJECTED: "Call rejected",
    _O.RESCHEDULE_REQUESTED: "Callee asked for a callback",
    _O.NEEDS_USER_INFO: "Needs information from the task's creator",
    _O.WRONG_NUMBER: "Wrong number",
    _O.DO_NOT_CALL: "Callee asked not to be called again",
    _O.FAILED_TECHNICAL: "Technical failure",
}


@dataclass(frozen=True, slots=True)
class PolicyInput:
    """Everything :func:`decide` needs about the task, the call just analysed, and the clock."""

    outcome: CallOutcome
    counted_attempts: int
    """Calls counted against ``max_attempts`` before this call."""
    total_calls: int
    """All calls of the task, this one included."""
    max_attempts: int
    max_calls: int
    """Hard cap on all calls of the task (``settings.max_calls_per_task``)."""
    requested_time: dt.datetime | None
    """Callback time asked for by the callee or found by the analysis (aware)."""
    answer_ready: bool
    """A late HITL answer is already collected: NEEDS_USER_INFO calls back at once."""
    now: dt.datetime
    window: CallingWindow
    backoff: tuple[float, ...]
    """Retry delays in seconds, indexed by counted attempts; the last one repeats."""
    horizon: float
    """How far ahead of ``now`` a retry may be scheduled, in seconds."""

    def __post_init__(self) -> None:
        # Stored in UTC so every later comparison and message works on one clock.
        object.__setattr__(self, "now", require_aware(self.now, "policy 'now'"))
        if self.requested_time is not None:
            requested = require_aware(self.requested_time, "requested callback time")
            object.__setattr__(self, "requested_time", requested)
        object.__setattr__(self, "backoff", tuple(self.backoff))
        if self.counted_attempts < 0 or self.total_calls < 1:
            raise ValueError(
                "counted_attempts must be >= 0 and total_calls >= 1 (it includes this call)"
            )
        if self.max_attempts < 1 or self.max_calls < 1:
            raise ValueError("max_attempts and max_calls must be at least 1")
        if not self.backoff or any(step <= 0 for step in self.backoff):
            raise ValueError("backoff needs one or more positive delays in seconds")
        if self.horizon <= 0:
            raise ValueError("the retry horizon must be positive")


@dataclass(frozen=True, slots=True)
class Decision:
    """What the TaskActor writes after a call: new status, when to act next, and why.

    ``event`` is the kind of the task event that records the move: ``COMPLETED``,
    ``FAILED``, ``RETRY_SCHEDULED``, ``RESCHEDULED_BY_CALLEE`` (every RESCHEDULE_REQUESTED
    retry, even one that fell back to backoff), or ``USER_INFO_REQUESTED`` for a move to
    ``PENDING_USER_INFO``: at that moment the task starts asking its creator for information
    (the in-call HITL events, with their request ids, are written separately as they happen,
    and the timeout may never have occurred when the analysis found the missing fact).
    ``DO_NOT_CALL``'s ``DNC_ADDED`` event is the DNC writer's, not the policy's.
    """

    status: TaskStatus
    next_action_time: dt.datetime | None
    counted_attempts: int
    """Counted attempts after this call."""
    reason: str
    event: EventKind


def counts_as_attempt(outcome: CallOutcome) -> bool:
    """Whether a call with this outcome counts against ``max_attempts`` (progress does not)."""
    return outcome not in _NOT_COUNTED


def pending_user_info_expired(since: dt.datetime, now: dt.datetime, expiry_seconds: float) -> bool:
    """Whether a task waiting for its creator's answer since ``since`` has waited too long."""
    since = require_aware(since, "pending-user-info start")
    now = require_aware(now, "'now'")
    return (now - since).total_seconds() >= expiry_seconds


def validate_retry_time(
    t: dt.datetime, *, now: dt.datetime, window: CallingWindow, horizon: float
) -> dt.datetime:
    """Place a wanted retry time: strictly after ``now``, within the horizon, in the window.

    A time past the horizon is clamped to it. Raises ``ValueError`` for a time not in the
    future and :class:`WindowError` if the window has no opening before the horizon.
    """
    t = require_aware(t, "retry time")
    now = require_aware(now, "'now'")
    if t <= now:
        raise ValueError(f"retry time {t.isoformat()} is not in the future")
    return _place(t, now=now, window=window, horizon=horizon)


def decide(inp: PolicyInput) -> Decision:
    """Apply the retry policy to one analysed call (see the module and DESIGN.md §3)."""
    counted = inp.counted_attempts + (1 if counts_as_attempt(inp.outcome) else 0)
    label = _LABELS[inp.outcome]
    closed = _closing_decision(inp, counted, label)
    if closed is not None:
        return closed
    try:
        if inp.outcome is _O.NEEDS_USER_INFO:
            return _needs_user_info(inp, counted, label)
        if inp.outcome is _O.RESCHEDULE_REQUESTED:
            return _reschedule(inp, counted, label)
        return _backoff_retry(inp, counted, label)
    except WindowError as exc:
        return _fail(counted, f"{label} — cannot schedule a retry: {exc}")


def _closing_decision(inp: PolicyInput, counted: int, label: str) -> Decision | None:
    """The terminal decision for this call, or ``None`` when the task goes on."""
    if inp.outcome is _O.SUCCESS:
        return Decision(TaskStatus.COMPLETED, None, counted, label, EventKind.COMPLETED)
    if inp.outcome in _TERMINAL_FAILURES:
        return _fail(counted, f"{label} — task closed")
    if counts_as_attempt(inp.outcome) and counted >= inp.max_attempts:
        return _fail(counted, f"{label} — giving up after {counted} of {inp.max_attempts} attempts")
    if inp.total_calls >= inp.max_calls:
        # Also for NEEDS_USER_INFO: waiting for an answer is pointless with no call left.
        return _fail(
            counted, f"{label} — stopping: {inp.total_calls} of {inp.max_calls} calls made (cap)"
        )
    return None


def _backoff_retry(inp: PolicyInput, counted: int, label: str) -> Decision:
    due = _place(_backoff_time(inp, counted), now=inp.now, window=inp.window, horizon=inp.horizon)
    attempt = f"attempt {counted + 1} of {inp.max_attempts}"
    return _retry(due, counted, f"{label} — retry at {_local(due, inp)} ({attempt})")


def _needs_user_info(inp: PolicyInput, counted: int, label: str) -> Decision:
    if not inp.answer_ready:
        return Decision(
            TaskStatus.PENDING_USER_INFO,
            None,
            counted,
            f"{label} — waiting for the answer, then calling back",
            EventKind.USER_INFO_REQUESTED,
        )
    due = _place(inp.now, now=inp.now, window=inp.window, horizon=inp.horizon)
    reason = f"{label} — answer already in, calling back at {_local(due, inp)}"
    return _retry(due, counted, reason)


def _reschedule(inp: PolicyInput, counted: int, label: str) -> Decision:
    now = inp.now
    wanted = inp.requested_time
    limit = now + dt.timedelta(seconds=inp.horizon)
    if wanted is None or wanted <= now:
        note = "no time given" if wanted is None else "the requested time has passed"
        wanted, why = _backoff_time(inp, max(counted, 1)), f"{note}, using backoff"
    elif wanted > limit:
        why = f"requested time is past the {_span(inp.horizon)} horizon, clamped to it"
    else:
        why = "as requested"
    due = _place(wanted, now=now, window=inp.window, horizon=inp.horizon)
    reason = f"{label} — retry at {_local(due, inp)} ({why}; not counted as an attempt)"
    return Decision(
        TaskStatus.RETRY_SCHEDULED, due, counted, reason, EventKind.RESCHEDULED_BY_CALLEE
    )


def _retry(due: dt.datetime, counted: int, reason: str) -> Decision:
    return Decision(TaskStatus.RETRY_SCHEDULED, due, counted, reason, EventKind.RETRY_SCHEDULED)


def _fail(counted: int, reason: str) -> Decision:
    return Decision(TaskStatus.FAILED, None, counted, reason, EventKind.FAILED)


def _backoff_time(inp: PolicyInput, counted: int) -> dt.datetime:
    """``now`` plus the backoff step for ``counted`` attempts (1-based; the last step repeats)."""
    step = inp.backoff[min(max(counted, 1), len(inp.backoff)) - 1]
    return inp.now + dt.timedelta(seconds=step)


def _place(
    t: dt.datetime, *, now: dt.datetime, window: CallingWindow, horizon: float
) -> dt.datetime:
    """Clamp ``t`` (>= ``now``) to the horizon and move it to the window's next opening.

    If that opening lies past the horizon, the latest opening before the horizon is used
    instead, so a placed time is always in the window and never beyond the horizon.
    """
    now = require_aware(now, "'now'")
    limit = now + dt.timedelta(seconds=horizon)
    opened = window.next_open(min(require_aware(t, "retry time"), limit))
    if opened <= limit:
        return opened
    latest = _latest_opening(window, after=now, limit=limit)
    if latest is None:
        raise WindowError(
            f"calling window {window.describe()} does not open before the "
            f"{_span(horizon)} retry horizon"
        )
    return latest


def _latest_opening(
    window: CallingWindow, *, after: dt.datetime, limit: dt.datetime
) -> dt.datetime | None:
    """The last window opening in ``(after, limit]``, walking forward opening by opening."""
    latest: dt.datetime | None = None
    probe = after
    while probe < limit:
        try:
            opened = window.next_open(probe)
        except WindowError:
            break
        if opened > limit:
            break
        if opened > after:
            latest = opened
        probe = _first_closed_after(window, opened, limit)
    return latest


def _first_closed_after(
    window: CallingWindow, opened: dt.datetime, limit: dt.datetime
) -> dt.datetime:
    """An instant after ``opened`` at which the window is shut (or ``limit``), by bisection."""
    step = dt.timedelta(hours=1)
    end = opened + step
    while end < limit and window.contains(end):
        end += step
    if end >= limit:
        return limit
    lo, hi = opened, end  # open at lo, shut at hi
    while hi - lo > dt.timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        lo, hi = (mid, hi) if window.contains(mid) else (lo, mid)
    return hi


def _local(t: dt.datetime, inp: PolicyInput) -> str:
    """``t`` on the callee's clock (the window's first zone), with the date when not today."""
    key = inp.window.zones[0]
    local = t.astimezone(zone(key))
    today = inp.now.astimezone(zone(key)).date()
    shown = local.strftime("%H:%M") if local.date() == today else local.strftime("%a %d %b %H:%M")
    return f"{shown} {key}"


def _span(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    if days and not rest:
        return f"{days}-day"
    hours, rest = divmod(int(seconds), 3600)
    if hours and not rest:
        return f"{hours}-hour"
    return f"{int(seconds)}-second"
