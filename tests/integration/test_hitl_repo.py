"""HITL answers on SQLite and real PostgreSQL: in time, late, refused, and racing the
timeout (DESIGN.md §2 "HITL arbitration")."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import Awaitable, Callable

import pytest
import sqlalchemy as sa

from db.engine import Database
from db.models import HitlRequest, Task
from db.repo import calls, hitl
from db.repo._core import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    StaleVersionError,
    append_event,
    move_task,
)
from db.repo._shared import move_question
from db.shapes import CollectedInfo, utcnow
from db.states import EventKind, HitlStatus, TaskStatus
from db.windows import CallingWindow
from tests.integration import _rows

pytestmark = pytest.mark.integration

RACES = 25

Timeout = Callable[[Database, uuid.UUID], Awaitable[bool]]


async def _minimal_timeout(db: Database, request_id: uuid.UUID) -> bool:
    """The TaskActor's side, reduced to its guarded move: True when the timeout won."""
    async with db.write() as session:
        row = await session.get(HitlRequest, request_id)
        assert row is not None
        if row.status is not HitlStatus.PENDING:
            return False
        try:
            await move_question(session, row, HitlStatus.TIMED_OUT)
        except StaleVersionError:
            return False
        await append_event(
            session,
            task_id=row.task_id,
            tenant_id=row.tenant_id,
            kind=EventKind.USER_INFO_TIMEOUT,
            message="timed out",
        )
        return True


async def _system_timeout(db: Database, request_id: uuid.UUID) -> bool:
    """The real system function (db.repo.calls): True when the timeout won."""
    outcome = await calls.resolve_hitl_timeout(db, request_id, now=utcnow())
    return outcome is HitlStatus.TIMED_OUT


async def _jitter() -> None:
    await asyncio.sleep(random.random() * 0.003)


async def _setup(
    db: Database, task_status: TaskStatus, hitl_status: HitlStatus = HitlStatus.PENDING
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    tenant = await _rows.tenant(db, f"t-{uuid.uuid4().hex[:8]}")
    task_id = await _rows.insert_task(db, tenant.id, task_status)
    call_id = await _rows.insert_call(db, task_id)
    request_id = await _rows.insert_question(db, task_id, hitl_status, call_id=call_id)
    return tenant.id, task_id, request_id


# -- in time --------------------------------------------------------------------------------


async def test_an_answer_in_time_answers_the_row_and_leaves_the_task_to_its_actor(
    database: Database,
) -> None:
    tenant_id, task_id, request_id = await _setup(database, TaskStatus.IN_PROGRESS)
    [open_question] = await hitl.list_open_questions(database, tenant_id)
    assert open_question.id == request_id and open_question.task_title == "a in_progress task"
    assert open_question.deadline == open_question.asked_at + dt.timedelta(seconds=10)

    result = await hitl.answer_question(
        database, tenant_id, request_id, "  Order 4711  ", answered_by="alice"
    )
    assert not result.late and result.task_status is TaskStatus.IN_PROGRESS
    row = await _rows.question_row(database, request_id)
    assert row.status is HitlStatus.ANSWERED and row.answer == "Order 4711"
    assert row.answered_by == "alice" and row.answered_at is not None and row.version == 2
    task = await _rows.task_row(database, task_id)
    # The task row is its TaskActor's while active: the front did not touch it.
    assert task.version == 1 and task.collected_info == []
    assert await _rows.event_kinds(database, task_id) == [EventKind.USER_INFO_PROVIDED]
    assert await hitl.list_open_questions(database, tenant_id) == []
    [listed] = await hitl.list_questions(database, tenant_id, task_id=task_id)
    assert listed.status is HitlStatus.ANSWERED and listed.answer == "Order 4711"


async def test_a_second_answer_is_a_conflict(database: Database) -> None:
    tenant_id, _, request_id = await _setup(database, TaskStatus.IN_PROGRESS)
    await hitl.answer_question(database, tenant_id, request_id, "4711", answered_by="alice")
    with pytest.raises(ConflictError, match="already answered"):
        await hitl.answer_question(database, tenant_id, request_id, "4712", answered_by="bob")
    assert (await _rows.question_row(database, request_id)).answer == "4711"


@pytest.mark.parametrize("status", [HitlStatus.EXPIRED, HitlStatus.CANCELLED])
async def test_an_expired_question_cannot_be_answered(
    database: Database, status: HitlStatus
) -> None:
    tenant_id, _, request_id = await _setup(database, TaskStatus.FAILED, status)
    with pytest.raises(ConflictError, match="this question expired"):
        await hitl.answer_question(database, tenant_id, request_id, "4711", answered_by="alice")


@pytest.mark.parametrize(("answer", "message"), [("   ", "empty"), ("x" * 4_001, "too long")])
async def test_an_empty_or_too_long_answer_is_refused(
    database: Database, answer: str, message: str
) -> None:
    tenant_id, task_id, request_id = await _setup(database, TaskStatus.IN_PROGRESS)
    with pytest.raises(InvalidInputError, match=message):
        await hitl.answer_question(database, tenant_id, request_id, answer, answered_by="alice")
    assert (await _rows.question_row(database, request_id)).status is HitlStatus.PENDING
    assert await _rows.event_kinds(database, task_id) == []


async def test_an_unknown_question_is_not_found(database: Database) -> None:
    tenant_id, _, _ = await _setup(database, TaskStatus.IN_PROGRESS)
    with pytest.raises(NotFoundError):
        await hitl.answer_question(database, tenant_id, uuid.uuid4(), "x", answered_by="alice")


# -- late -----------------------------------------------------------------------------------


async def _set_window(db: Database, task_id: uuid.UUID, start: dt.time, end: dt.time) -> None:
    async with db.write() as session:
        await session.execute(
            sa.update(Task)
            .where(Task.id == task_id)
            .values(timezone="UTC", window_start=start, window_end=end)
        )


async def test_a_late_answer_calls_a_waiting_task_back_now(database: Database) -> None:
    tenant_id, task_id, request_id = await _setup(
        database, TaskStatus.PENDING_USER_INFO, HitlStatus.TIMED_OUT
    )
    before = utcnow()
    result = await hitl.answer_question(
        database, tenant_id, request_id, "Order 4711", answered_by="alice"
    )
    assert result.late and result.task_status is TaskStatus.RETRY_SCHEDULED
    assert result.next_action_time is not None
    assert before <= result.next_action_time <= utcnow()  # always-open window: due now
    task = await _rows.task_row(database, task_id)
    assert task.status is TaskStatus.RETRY_SCHEDULED and task.next_action_time == (
        result.next_action_time
    )
    [info] = [CollectedInfo.model_validate(i) for i in task.collected_info]
    assert (info.answer, info.request_id) == ("Order 4711", str(request_id))
    assert info.question == "What is the order number?"
    assert (await _rows.question_row(database, request_id)).status is HitlStatus.ANSWERED_LATE
    assert await _rows.event_kinds(database, task_id) == [
        EventKind.USER_INFO_PROVIDED_LATE,
        EventKind.RETRY_SCHEDULED,
    ]


async def test_a_late_answer_outside_the_window_is_due_at_its_next_opening(
    database: Database,
) -> None:
    tenant_id, task_id, request_id = await _setup(
        database, TaskStatus.PENDING_USER_INFO, HitlStatus.TIMED_OUT
    )
    now = utcnow()
    # A one-hour window that opens about twelve hours from now (UTC), every day.
    opens = (now + dt.timedelta(hours=12)).replace(minute=0, second=0, microsecond=0)
    await _set_window(database, task_id, opens.time(), (opens + dt.timedelta(hours=1)).time())
    result = await hitl.answer_question(database, tenant_id, request_id, "4711", answered_by="a")
    window = CallingWindow(
        opens.time(), (opens + dt.timedelta(hours=1)).time(), frozenset(range(7)), ("UTC",)
    )
    assert result.next_action_time == opens
    assert window.contains(result.next_action_time)


@pytest.mark.parametrize("status", [TaskStatus.IN_PROGRESS, TaskStatus.ANALYZING])
async def test_a_late_answer_to_an_active_task_only_answers_the_row(
    database: Database, status: TaskStatus
) -> None:
    tenant_id, task_id, request_id = await _setup(database, status, HitlStatus.TIMED_OUT)
    result = await hitl.answer_question(database, tenant_id, request_id, "4711", answered_by="a")
    assert result.late and result.task_status is status
    task = await _rows.task_row(database, task_id)
    assert task.status is status and task.version == 1 and task.collected_info == []
    assert (await _rows.question_row(database, request_id)).status is HitlStatus.ANSWERED_LATE


async def test_a_late_answer_to_a_scheduled_task_joins_its_info_and_keeps_the_time(
    database: Database,
) -> None:
    tenant_id, task_id, request_id = await _setup(
        database, TaskStatus.RETRY_SCHEDULED, HitlStatus.TIMED_OUT
    )
    due = (await _rows.task_row(database, task_id)).next_action_time
    result = await hitl.answer_question(database, tenant_id, request_id, "4711", answered_by="a")
    task = await _rows.task_row(database, task_id)
    assert result.task_status is TaskStatus.RETRY_SCHEDULED and task.next_action_time == due
    assert [i["answer"] for i in task.collected_info] == ["4711"]


@pytest.mark.parametrize("status", [TaskStatus.FAILED, TaskStatus.CANCELLED])
@pytest.mark.parametrize("question", [HitlStatus.TIMED_OUT, HitlStatus.PENDING])
async def test_an_answer_for_a_finished_task_is_refused(
    database: Database, status: TaskStatus, question: HitlStatus
) -> None:
    tenant_id, task_id, request_id = await _setup(database, status, question)
    with pytest.raises(ConflictError, match="expired"):
        await hitl.answer_question(database, tenant_id, request_id, "4711", answered_by="a")
    assert (await _rows.question_row(database, request_id)).status is question
    assert await _rows.event_kinds(database, task_id) == []


def test_answers_to_collect_adds_each_answered_row_once() -> None:
    now = utcnow()
    rows = [
        HitlRequest(
            id=uuid.uuid4(),
            question=f"q{i}",
            status=status,
            answer=f"a{i}",
            asked_at=now,
            answered_at=now + dt.timedelta(seconds=i),
        )
        for i, status in enumerate(
            [HitlStatus.ANSWERED, HitlStatus.ANSWERED_LATE, HitlStatus.TIMED_OUT]
        )
    ]
    first = hitl.answers_to_collect([], rows)
    assert [i["answer"] for i in first] == ["a0", "a1"]
    assert hitl.answers_to_collect(first, rows) == first


# -- races ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "resolve_timeout", [_minimal_timeout, _system_timeout], ids=["minimal", "system"]
)
async def test_an_answer_racing_the_timeout_exactly_one_wins(
    database: Database, resolve_timeout: Timeout
) -> None:
    outcomes = {"answer": 0, "timeout": 0}
    for _ in range(RACES):
        tenant_id, task_id, request_id = await _setup(database, TaskStatus.IN_PROGRESS)

        async def answer(t: uuid.UUID = tenant_id, r: uuid.UUID = request_id) -> hitl.AnswerResult:
            await _jitter()
            return await hitl.answer_question(database, t, r, "4711", answered_by="alice")

        async def time_out(r: uuid.UUID = request_id) -> bool:
            await _jitter()
            return await resolve_timeout(database, r)

        answered, timed_out = await asyncio.gather(answer(), time_out())
        row = await _rows.question_row(database, request_id)
        kinds = await _rows.event_kinds(database, task_id)
        if timed_out:
            # The timeout won; the answer arrived after it and counts as late.
            assert answered.late and row.status is HitlStatus.ANSWERED_LATE
            assert kinds == [EventKind.USER_INFO_TIMEOUT, EventKind.USER_INFO_PROVIDED_LATE]
            outcomes["timeout"] += 1
        else:
            assert not answered.late and row.status is HitlStatus.ANSWERED
            assert kinds == [EventKind.USER_INFO_PROVIDED]
            outcomes["answer"] += 1
        assert row.answer == "4711"
    assert sum(outcomes.values()) == RACES


async def test_two_answers_racing_exactly_one_wins(database: Database) -> None:
    for _ in range(RACES):
        tenant_id, task_id, request_id = await _setup(database, TaskStatus.IN_PROGRESS)

        async def answer(text: str, t: uuid.UUID = tenant_id, r: uuid.UUID = request_id) -> str:
            await _jitter()
            await hitl.answer_question(database, t, r, text, answered_by=text)
            return text

        results = await asyncio.gather(answer("a"), answer("b"), return_exceptions=True)
        winners = [r for r in results if isinstance(r, str)]
        losers = [r for r in results if isinstance(r, ConflictError)]
        assert len(winners) == 1 and len(losers) == 1, results
        assert (await _rows.question_row(database, request_id)).answer == winners[0]
        assert await _rows.event_kinds(database, task_id) == [EventKind.USER_INFO_PROVIDED]


async def _expire(db: Database, task_id: uuid.UUID, request_id: uuid.UUID) -> bool:
    """A minimal PENDING_USER_INFO expiry sweep: task → FAILED, question → EXPIRED."""
    await _jitter()
    try:
        async with db.write() as session:
            task = await session.get(Task, task_id)
            row = await session.get(HitlRequest, request_id)
            assert task is not None and row is not None
            if task.status is not TaskStatus.PENDING_USER_INFO:
                return False
            await move_task(
                session, task, TaskStatus.FAILED, event=EventKind.EXPIRED, message="expired"
            )
            await move_question(session, row, HitlStatus.EXPIRED)
            return True
    except StaleVersionError:
        return False


async def test_a_late_answer_racing_the_expiry_sweep_exactly_one_wins(
    database: Database,
) -> None:
    for _ in range(RACES):
        tenant_id, task_id, request_id = await _setup(
            database, TaskStatus.PENDING_USER_INFO, HitlStatus.TIMED_OUT
        )

        async def answer(t: uuid.UUID = tenant_id, r: uuid.UUID = request_id) -> object:
            await _jitter()
            return await hitl.answer_question(database, t, r, "4711", answered_by="alice")

        answered, expired = await asyncio.gather(
            answer(), _expire(database, task_id, request_id), return_exceptions=True
        )
        task = await _rows.task_row(database, task_id)
        row = await _rows.question_row(database, request_id)
        if expired is True:
            assert isinstance(answered, ConflictError), answered
            assert (task.status, row.status) == (TaskStatus.FAILED, HitlStatus.EXPIRED)
        else:
            assert expired is False and isinstance(answered, hitl.AnswerResult), answered
            assert (task.status, row.status) == (
                TaskStatus.RETRY_SCHEDULED,
                HitlStatus.ANSWERED_LATE,
            )
