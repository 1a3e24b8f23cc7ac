"""A task from creation to a terminal or waiting state, through the real actors and world.

Each test creates a task through the repository, lets the Supervisor claim it and the
TaskActor drive it through real CallActors against the simulated PBX and Realtime stand-in,
and checks the final state, the calls and the exact event trail.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest

from db.repo import dnc
from db.states import CallOutcome, CallStatus, EndReason, TaskStatus
from tests.e2e._lifecycle import (
    BUSY,
    CALL_ME_THURSDAY,
    DO_NOT_CALL,
    DONE,
    LIFECYCLE_WORLD,
    MACHINE,
    NO_ANSWER,
    RESCHEDULE_TOOL,
    VOICEMAIL,
    Lifecycle,
    MakeLifecycle,
    _done,
    lifecycle_fixture,  # noqa: F401 -- registers the fixture
    make_lifecycle_fixture,  # noqa: F401 -- registers the fixture
)

pytestmark = [pytest.mark.e2e, pytest.mark.world(LIFECYCLE_WORLD)]

LA = ZoneInfo("America/Los_Angeles")
ANSWERED_CALL = ["CALL_ANSWERED", "CALL_ENDED", "ANALYZED"]
UNANSWERED_CALL = ["CALL_NOT_ANSWERED", "ANALYZED"]


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_success_on_the_first_call_completes_the_task(
    make_lifecycle: MakeLifecycle, backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    run = await make_lifecycle(url=url)
    task_id = await run.add_task(DONE)
    detail = await run.wait_status(task_id, TaskStatus.COMPLETED, TaskStatus.FAILED)
    assert detail.task.status is TaskStatus.COMPLETED
    assert detail.task.outcome is CallOutcome.SUCCESS
    assert [e.kind.value for e in detail.events] == [
        "TASK_CREATED",
        "DIAL_STARTED",
        *ANSWERED_CALL,
        "COMPLETED",
    ]
    (call,) = detail.calls
    assert call.status is CallStatus.ENDED
    assert call.end_reason is EndReason.COMPLETED
    assert call.outcome is CallOutcome.SUCCESS
    assert [t.text for t in call.transcript if t.speaker.value == "callee"][:1] == ["Hello?"]
    assert detail.task.current_attempt_count == 1 and detail.task.total_calls == 1
    assert run.originates(detail.calls) == {str(call.id): 1}


async def test_no_answer_three_times_fails_after_three_counted_attempts(
    lifecycle: Lifecycle,
) -> None:
    task_id = await lifecycle.add_task(NO_ANSWER)
    detail = await lifecycle.wait_status(
        task_id, TaskStatus.FAILED, TaskStatus.COMPLETED, within=90
    )
    assert detail.task.status is TaskStatus.FAILED
    assert [e.kind.value for e in detail.events] == [
        "TASK_CREATED",
        "DIAL_STARTED",
        *UNANSWERED_CALL,
        "RETRY_SCHEDULED",
        "DIAL_STARTED",
        *UNANSWERED_CALL,
        "RETRY_SCHEDULED",
        "DIAL_STARTED",
        *UNANSWERED_CALL,
        "FAILED",
    ]
    assert [c.outcome for c in detail.calls] == [CallOutcome.FAILED_NO_ANSWER] * 3
    assert detail.task.current_attempt_count == 3 and detail.task.total_calls == 3
    retries = [e for e in detail.events if e.kind.value == "RETRY_SCHEDULED"]
    assert re.fullmatch(
        r"No answer — retry at \d\d:\d\d America/Los_Angeles \(attempt 2 of 3\)", retries[0].message
    )
    assert retries[1].message.endswith("(attempt 3 of 3)")
    assert detail.events[-1].message == "No answer — giving up after 3 of 3 attempts"
    for before, after in zip(detail.calls, detail.calls[1:], strict=False):
        assert before.ended_at is not None
        assert (after.created_at - before.ended_at).total_seconds() >= 1.0  # the backoff
    assert lifecycle.dialed(NO_ANSWER) == 3


async def test_busy_then_answered_completes_on_the_second_call(lifecycle: Lifecycle) -> None:
    task_id = await lifecycle.add_task(BUSY)
    await lifecycle.wait_event(task_id, "CALL_NOT_ANSWERED")
    lifecycle.use_scenario(_done(BUSY, "answers-now"))
    detail = await lifecycle.wait_status(task_id, TaskStatus.COMPLETED, TaskStatus.FAILED)
    assert detail.task.status is TaskStatus.COMPLETED
    assert [e.kind.value for e in detail.events] == [
        "TASK_CREATED",
        "DIAL_STARTED",
        *UNANSWERED_CALL,
        "RETRY_SCHEDULED",
        "DIAL_STARTED",
        *ANSWERED_CALL,
        "COMPLETED",
    ]
    busy, answered = detail.calls
    assert busy.outcome is CallOutcome.FAILED_BUSY and busy.hangup_cause == 17
    assert answered.outcome is CallOutcome.SUCCESS
    retry = next(e for e in detail.events if e.kind.value == "RETRY_SCHEDULED")
    assert re.fullmatch(
        r"Busy — retry at \d\d:\d\d America/Los_Angeles \(attempt 2 of 3\)", retry.message
    )
    assert detail.task.current_attempt_count == 2


@pytest.mark.parametrize(
    ("number", "settings", "detected"),
    [
        (VOICEMAIL, {}, []),
        (
            MACHINE,
            {"originate_form": "context", "dialplan_context": "opendeep-outbound-amd"},
            ["VOICEMAIL_DETECTED"],
        ),
    ],
    ids=["model-ends-voicemail", "amd-machine"],
)
async def test_voicemail_schedules_a_retry(
    make_lifecycle: MakeLifecycle, number: str, settings: dict[str, str], detected: list[str]
) -> None:
    run = await make_lifecycle(retry_backoff="1h", **settings)
    task_id = await run.add_task(number)
    detail = await run.wait_status(
        task_id, TaskStatus.RETRY_SCHEDULED, TaskStatus.FAILED, TaskStatus.COMPLETED
    )
    assert detail.task.status is TaskStatus.RETRY_SCHEDULED
    kinds = [e.kind.value for e in detail.events]
    assert kinds == [
        "TASK_CREATED",
        "DIAL_STARTED",
        "CALL_ANSWERED",
        *detected,
        "CALL_ENDED",
        "ANALYZED",
        "RETRY_SCHEDULED",
    ]
    (call,) = detail.calls
    assert call.outcome is CallOutcome.FAILED_VOICEMAIL
    assert call.end_reason is EndReason.VOICEMAIL
    assert detail.events[-1].message.startswith("Reached voicemail — retry at ")
    assert detail.task.next_action_time is not None
    wait = (detail.task.next_action_time - call.ended_at).total_seconds() if call.ended_at else 0
    assert 3590 < wait < 3610


async def test_callee_asking_for_thursday_after_3_is_called_back_then(lifecycle: Lifecycle) -> None:
    task_id = await lifecycle.add_task(CALL_ME_THURSDAY)
    detail = await lifecycle.wait_status(
        task_id, TaskStatus.RETRY_SCHEDULED, TaskStatus.FAILED, TaskStatus.COMPLETED
    )
    assert detail.task.status is TaskStatus.RETRY_SCHEDULED
    assert [e.kind.value for e in detail.events] == [
        "TASK_CREATED",
        "DIAL_STARTED",
        *ANSWERED_CALL,
        "RESCHEDULED_BY_CALLEE",
    ]
    (call,) = detail.calls
    assert call.outcome is CallOutcome.RESCHEDULE_REQUESTED
    due = detail.task.next_action_time
    assert due is not None and call.ended_at is not None
    local = due.astimezone(LA)
    assert (local.weekday(), local.hour, local.minute) == (3, 15, 0)  # Thursday 15:00 there
    assert dt.timedelta(0) < due - call.ended_at <= dt.timedelta(days=7)
    assert detail.task.current_attempt_count == 0  # a requested callback is not an attempt
    assert "(as requested; not counted as an attempt)" in detail.events[-1].message


async def test_reschedule_call_tool_sets_the_next_call(lifecycle: Lifecycle) -> None:
    task_id = await lifecycle.add_task(RESCHEDULE_TOOL)
    detail = await lifecycle.wait_status(
        task_id, TaskStatus.RETRY_SCHEDULED, TaskStatus.FAILED, TaskStatus.COMPLETED
    )
    assert [e.kind.value for e in detail.events] == [
        "TASK_CREATED",
        "DIAL_STARTED",
        *ANSWERED_CALL,
        "RESCHEDULED_BY_CALLEE",
    ]
    (call,) = detail.calls
    assert [t.name for t in call.tool_calls] == ["reschedule_call", "end_call"]
    due = detail.task.next_action_time
    assert due is not None
    # "tomorrow" is the day after the one the tool was called on (the call may cross midnight)
    local, asked = due.astimezone(LA), call.tool_calls[0].at.astimezone(LA)
    assert (local.hour, local.minute) == (10, 0)
    assert local.date() == asked.date() + dt.timedelta(days=1)


async def test_do_not_call_fails_the_task_and_lists_the_number(lifecycle: Lifecycle) -> None:
    task_id = await lifecycle.add_task(DO_NOT_CALL)
    detail = await lifecycle.wait_status(
        task_id, TaskStatus.FAILED, TaskStatus.COMPLETED, TaskStatus.RETRY_SCHEDULED
    )
    assert detail.task.status is TaskStatus.FAILED
    assert [e.kind.value for e in detail.events] == [
        "TASK_CREATED",
        "DIAL_STARTED",
        *ANSWERED_CALL,
        "DNC_ADDED",
        "FAILED",
    ]
    assert detail.task.outcome is CallOutcome.DO_NOT_CALL
    assert await dnc.is_dnc(lifecycle.db, lifecycle.tenant_id, DO_NOT_CALL)
    assert detail.events[-2].message == f"{DO_NOT_CALL} added to the do-not-call list"
