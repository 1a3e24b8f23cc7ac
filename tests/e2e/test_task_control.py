"""When a task may be called, and how a creator stops it: calling windows and cancel."""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from actors.task_clock import Clock
from db.repo import tasks
from db.shapes import utcnow
from db.states import CallStatus, EndReason, TaskStatus
from db.windows import CallingWindow
from tests.e2e._lifecycle import (
    DONE,
    LIFECYCLE_WORLD,
    LONG_TALK,
    Lifecycle,
    MakeLifecycle,
    lifecycle_fixture,  # noqa: F401 -- registers the fixture
    make_lifecycle_fixture,  # noqa: F401 -- registers the fixture
)

pytestmark = [pytest.mark.e2e, pytest.mark.world(LIFECYCLE_WORLD)]

PARIS = ZoneInfo("Europe/Paris")
NINE, FIVE = dt.time(9), dt.time(17)
START_UP = 20.0  # seconds the clock stands before the opening while the actors start


async def test_due_task_outside_its_window_waits_for_the_window(
    make_lifecycle: MakeLifecycle,
) -> None:
    # The task is due now (or at its window's next opening); the system's clock stands before
    # the *following* opening, so the task is due while its window is shut. The task is added
    # 2.5 s before that opening, however long the actors took to start (a loaded machine can
    # take several seconds), so the claim always meets a shut window.
    window = CallingWindow(start=NINE, end=FIVE, days=frozenset(range(7)), zones=("Europe/Paris",))
    due = window.next_open(utcnow())
    opening = dt.datetime.combine(due.astimezone(PARIS).date() + dt.timedelta(days=1), NINE, PARIS)
    run = await make_lifecycle(clock=Clock.standing_at(opening - dt.timedelta(seconds=START_UP)))
    lead = (opening - run.clock.now()).total_seconds()
    assert lead > 2.5, f"the actors took {START_UP - lead:.1f} s to start; raise START_UP"
    await asyncio.sleep(lead - 2.5)
    task_id = await run.add_task(
        DONE, timezone="Europe/Paris", window=(NINE, FIVE, tuple(range(7)))
    )
    detail = await run.wait_status(task_id, TaskStatus.COMPLETED, TaskStatus.FAILED)
    assert detail.task.status is TaskStatus.COMPLETED
    assert [e.kind.value for e in detail.events] == [
        "TASK_CREATED",
        "DEFERRED",
        "DIAL_STARTED",
        "CALL_ANSWERED",
        "CALL_ENDED",
        "ANALYZED",
        "COMPLETED",
    ]
    deferred, dialed = detail.events[1], detail.events[2]
    assert deferred.message == "Outside the calling window — next try 09:00 Europe/Paris"
    assert deferred.at < opening <= dialed.at
    (call,) = detail.calls
    assert call.created_at >= opening  # nobody was called before the window opened


async def test_cancel_during_a_live_call_ends_it_politely(lifecycle: Lifecycle) -> None:
    task_id = await lifecycle.add_task(LONG_TALK)
    await lifecycle.wait_event(task_id, "CALL_ANSWERED")
    view = await tasks.request_cancel(lifecycle.db, lifecycle.tenant_id, task_id, by="alex")
    assert view.status is TaskStatus.IN_PROGRESS  # an active task is only flagged
    # No nudge: the TaskActor sees the flag on its own poll, as after `opendeep task cancel`.
    detail = await lifecycle.wait_status(
        task_id, TaskStatus.CANCELLED, TaskStatus.COMPLETED, within=30
    )
    assert detail.task.status is TaskStatus.CANCELLED
    assert [e.kind.value for e in detail.events] == [
        "TASK_CREATED",
        "DIAL_STARTED",
        "CALL_ANSWERED",
        "CANCEL_REQUESTED",
        "CALL_ENDED",
        "CANCELLED",
    ]
    (call,) = detail.calls
    assert call.status is CallStatus.ENDED
    assert call.end_reason is EndReason.CANCELLED
    requested = detail.events[3].at
    assert call.ended_at is not None and (call.ended_at - requested).total_seconds() < 8
    record = lifecycle.pbx.calls[str(call.id)]
    assert "Yes, fine." not in [line.text for line in record.said]  # cut short, not finished
