"""The user-facing task repository on SQLite and real PostgreSQL: create, list, read, cancel,
refusals that write nothing, and tenant isolation."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
import zoneinfo

import pytest

from db.engine import Database
from db.phone import NumberRefusedError
from db.repo import accounts, dnc, hitl, tasks
from db.repo._core import ConflictError, InvalidInputError, NotFoundError
from db.repo.views import TaskView
from db.shapes import utcnow
from db.states import EventKind, HitlStatus, TaskStatus
from db.windows import WindowError
from tests.integration import _rows

pytestmark = pytest.mark.integration

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
US_PHONE = "+1 415 555 0100"


async def _create(db: Database, tenant_id: uuid.UUID, **values: object) -> TaskView:
    args: dict[str, object] = {
        "objective": "Move my dentist appointment to next week",
        "phone": US_PHONE,
        "settings": _rows.settings(),
        **values,
    }
    return await tasks.create_task(db, tenant_id, **args)  # type: ignore[arg-type]


def _next_weekday(weekday: int, hour: int, *, after: dt.datetime) -> dt.datetime:
    """The first ``weekday`` at ``hour``:00 Paris time at least a week after ``after``."""
    day = (after + dt.timedelta(days=7)).astimezone(PARIS).date()
    while day.weekday() != weekday:
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(hour), tzinfo=PARIS)


# -- creating -------------------------------------------------------------------------------


async def test_a_created_task_is_pending_due_now_with_its_event(database: Database) -> None:
    tenant = await _rows.tenant(database, "acme")
    before = utcnow()
    task = await _create(database, tenant.id, callee_name="Dr. Smile", context="Patient: Ann")
    assert task.status is TaskStatus.PENDING and task.tenant_id == tenant.id
    assert task.phone == "+14155550100"
    assert task.title == "Move my dentist appointment to next week"
    assert task.max_attempts == 3 and task.retry_backoff == (300.0, 1800.0, 7200.0)
    assert task.next_action_time is not None and before <= task.next_action_time <= utcnow()
    assert (task.window_start, task.window_end) == (dt.time.min, dt.time.max)  # tenant's
    detail = await tasks.get_task(database, tenant.id, task.id)
    assert [e.kind for e in detail.events] == [EventKind.TASK_CREATED]
    message = detail.events[0].message
    assert message.startswith("Task created: call +1 415 555 0100 — scheduled for ")
    assert message.endswith("America/Los_Angeles")


async def test_a_scheduled_task_is_due_at_its_time_in_the_callees_zone(database: Database) -> None:
    tenant = await _rows.tenant(database, "acme")
    at = _next_weekday(2, 15, after=utcnow())  # a Wednesday, 15:00 in Paris
    task = await _create(
        database,
        tenant.id,
        phone="+33 1 42 68 53 00",
        timezone="Europe/Paris",
        window=(dt.time(9), dt.time(18), [0, 1, 2, 3, 4]),
        at=at,
        title="Dentist",
        max_attempts=5,
    )
    assert task.next_action_time == at and task.timezone == "Europe/Paris"
    assert task.window_days == (0, 1, 2, 3, 4) and task.max_attempts == 5
    detail = await tasks.get_task(database, tenant.id, task.id)
    expected = f"scheduled for {at:%Y-%m-%d} 15:00 Europe/Paris"
    assert expected in detail.events[0].message


async def test_a_time_outside_the_window_moves_to_its_next_opening(database: Database) -> None:
    tenant = await _rows.tenant(database, "acme")
    saturday = _next_weekday(5, 10, after=utcnow())
    task = await _create(
        database,
        tenant.id,
        phone="+33 1 42 68 53 00",
        window=(dt.time(9), dt.time(18), [0, 1, 2, 3, 4]),
        at=saturday,
    )
    monday_nine = dt.datetime.combine(
        saturday.date() + dt.timedelta(days=2), dt.time(9), tzinfo=PARIS
    )
    assert task.next_action_time == monday_nine
    detail = await tasks.get_task(database, tenant.id, task.id)
    assert "first opening of its calling window" in detail.events[0].message


async def test_a_past_time_means_as_soon_as_possible(database: Database) -> None:
    tenant = await _rows.tenant(database, "acme")
    task = await _create(database, tenant.id, at=utcnow() - dt.timedelta(days=3))
    assert task.next_action_time is not None
    assert task.next_action_time >= utcnow() - dt.timedelta(seconds=5)


BAD_INPUTS: list[tuple[str, dict[str, object], type[Exception], str]] = [
    ("invalid number", {"phone": "not a number"}, NumberRefusedError, "not a phone number"),
    ("too short", {"phone": "+1 415 555 01"}, NumberRefusedError, "too short"),
    ("too long", {"phone": "+1 415 555 010000"}, NumberRefusedError, "wrong number of digits"),
    ("emergency", {"phone": "+1 911"}, NumberRefusedError, "emergency"),
    ("emergency FR", {"phone": "+33 112"}, NumberRefusedError, "emergency"),
    ("short code", {"phone": "+1 611"}, NumberRefusedError, "short code"),
    ("premium", {"phone": "+1 900 555 0100"}, NumberRefusedError, "premium"),
    ("country", {"phone": "+44 20 7946 0000"}, NumberRefusedError, "may not be called"),
    ("empty objective", {"objective": "   "}, InvalidInputError, "objective may not be empty"),
    ("100 KB objective", {"objective": "x" * 100_000}, InvalidInputError, "too long"),
    ("long context", {"context": "c" * 8_001}, InvalidInputError, "context is too long"),
    ("long title", {"title": "t" * 201}, InvalidInputError, "title is too long"),
    ("unknown zone", {"timezone": "Mars/Olympus_Mons"}, WindowError, "unknown time zone"),
    ("no hours", {"window": (dt.time(9), dt.time(9), [0])}, WindowError, "before its end"),
    ("no days", {"window": (dt.time(9), dt.time(17), [])}, WindowError, "at least one"),
    ("naive at", {"at": dt.datetime(2030, 1, 1, 9)}, InvalidInputError, "timezone-aware"),
    ("far at", {"at": utcnow() + dt.timedelta(days=800)}, InvalidInputError, "too far"),
    ("zero attempts", {"max_attempts": 0}, InvalidInputError, "max attempts"),
    ("too many attempts", {"max_attempts": 11}, InvalidInputError, "max attempts"),
    ("language", {"language": "english please"}, InvalidInputError, "language"),
]


@pytest.mark.parametrize(
    ("values", "error", "message"),
    [pytest.param(v, e, m, id=name) for name, v, e, m in BAD_INPUTS],
)
async def test_bad_input_is_refused_clearly_and_nothing_is_written(
    database: Database, values: dict[str, object], error: type[Exception], message: str
) -> None:
    tenant = await _rows.tenant(database, "acme")
    before = await _rows.counts(database)
    with pytest.raises(error, match=message) as caught:
        await _create(database, tenant.id, **values)
    assert isinstance(caught.value, ValueError)
    assert await _rows.counts(database) == before == (0, 0)


async def test_a_number_on_the_dnc_list_is_refused_and_nothing_is_written(
    database: Database,
) -> None:
    tenant = await _rows.tenant(database, "acme")
    await dnc.add_dnc(database, tenant.id, "+1 (415) 555-0100", reason="asked us to stop")
    assert await dnc.is_dnc(database, tenant.id, "+14155550100")
    with pytest.raises(dnc.DoNotCallError, match="do-not-call"):
        await _create(database, tenant.id)
    assert await _rows.counts(database) == (0, 0)
    other = await _rows.tenant(database, "other")
    assert not await dnc.is_dnc(database, other.id, US_PHONE)  # DNC lists are per tenant
    await _create(database, other.id)


async def test_unknown_tenant_or_foreign_creator_is_not_found(database: Database) -> None:
    a, b = await _rows.tenant(database, "a"), await _rows.tenant(database, "b")
    b_user = await accounts.create_user(database, tenant_id=b.id, username="bee", password="pw")
    with pytest.raises(NotFoundError):
        await _create(database, uuid.uuid4())
    with pytest.raises(NotFoundError):
        await _create(database, a.id, created_by=b_user.id)
    assert await _rows.counts(database) == (0, 0)
    task = await _create(database, b.id, created_by=b_user.id)
    assert task.created_by == b_user.id


# -- reading --------------------------------------------------------------------------------


async def test_list_is_newest_first_filtered_and_paged(database: Database) -> None:
    tenant = await _rows.tenant(database, "acme")
    made = [await _create(database, tenant.id, title=f"t{i}") for i in range(5)]
    await tasks.request_cancel(database, tenant.id, made[1].id, by="alice")
    listed = await tasks.list_tasks(database, tenant.id)
    assert [t.title for t in listed] == ["t4", "t3", "t2", "t1", "t0"]
    page = await tasks.list_tasks(database, tenant.id, limit=2, offset=1)
    assert [t.title for t in page] == ["t3", "t2"]
    cancelled = await tasks.list_tasks(database, tenant.id, status=TaskStatus.CANCELLED)
    assert [t.id for t in cancelled] == [made[1].id]
    assert await tasks.count_tasks(database, tenant.id) == 5
    assert await tasks.count_tasks(database, tenant.id, status=TaskStatus.PENDING) == 4
    with pytest.raises(InvalidInputError):
        await tasks.list_tasks(database, tenant.id, limit=0)


async def test_get_returns_calls_events_and_questions_in_order(database: Database) -> None:
    tenant = await _rows.tenant(database, "acme")
    task_id = await _rows.insert_task(database, tenant.id, TaskStatus.IN_PROGRESS)
    call_id = await _rows.insert_call(database, task_id)
    first = await _rows.insert_question(database, task_id, HitlStatus.ANSWERED, call_id=call_id)
    second = await _rows.insert_question(database, task_id, call_id=call_id, question="And?")
    detail = await tasks.get_task(database, tenant.id, task_id)
    assert detail.task.status is TaskStatus.IN_PROGRESS
    assert [c.id for c in detail.calls] == [call_id]
    assert detail.calls[0].transcript[0].text == "Hello"
    assert [q.id for q in detail.questions] == [first, second]
    assert detail.questions[1].task_title == detail.task.title
    assert detail.questions[1].deadline == detail.questions[1].asked_at + dt.timedelta(seconds=10)
    with pytest.raises(NotFoundError):
        await tasks.get_task(database, tenant.id, uuid.uuid4())


# -- cancelling -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status", [TaskStatus.PENDING, TaskStatus.RETRY_SCHEDULED, TaskStatus.PENDING_USER_INFO]
)
async def test_cancelling_a_waiting_task_cancels_it_at_once(
    database: Database, status: TaskStatus
) -> None:
    tenant = await _rows.tenant(database, "acme")
    task_id = await _rows.insert_task(database, tenant.id, status)
    timed_out = await _rows.insert_question(database, task_id, HitlStatus.TIMED_OUT)
    view = await tasks.request_cancel(database, tenant.id, task_id, by="alice")
    assert view.status is TaskStatus.CANCELLED and view.finished_at is not None
    assert view.next_action_time is None and view.version == 2
    assert (await _rows.question_row(database, timed_out)).status is HitlStatus.EXPIRED
    assert await _rows.event_kinds(database, task_id) == [EventKind.CANCELLED]
    with pytest.raises(ConflictError, match="already cancelled"):
        await tasks.request_cancel(database, tenant.id, task_id, by="alice")


@pytest.mark.parametrize("status", [TaskStatus.IN_PROGRESS, TaskStatus.ANALYZING])
async def test_cancelling_an_active_task_only_flags_it_and_is_idempotent(
    database: Database, status: TaskStatus
) -> None:
    tenant = await _rows.tenant(database, "acme")
    task_id = await _rows.insert_task(database, tenant.id, status)
    pending = await _rows.insert_question(database, task_id)
    first = await tasks.request_cancel(database, tenant.id, task_id, by="alice")
    assert first.status is status and first.cancel_requested_at is not None
    second = await tasks.request_cancel(database, tenant.id, task_id, by="bob")
    assert second.cancel_requested_at == first.cancel_requested_at
    assert second.version == first.version == 2
    assert await _rows.event_kinds(database, task_id) == [EventKind.CANCEL_REQUESTED]
    # The live call's question is the TaskActor's to close, not the front's.
    assert (await _rows.question_row(database, pending)).status is HitlStatus.PENDING


@pytest.mark.parametrize("status", [TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED])
async def test_cancelling_a_finished_task_is_a_conflict(
    database: Database, status: TaskStatus
) -> None:
    tenant = await _rows.tenant(database, "acme")
    task_id = await _rows.insert_task(database, tenant.id, status)
    with pytest.raises(ConflictError, match=f"already {status.value.lower()}"):
        await tasks.request_cancel(database, tenant.id, task_id, by="alice")
    assert (await _rows.task_row(database, task_id)).version == 1


async def test_a_cancel_racing_another_writer_re_reads_and_decides_again(
    database: Database,
) -> None:
    tenant = await _rows.tenant(database, "acme")
    ids = [await _rows.insert_task(database, tenant.id, TaskStatus.PENDING) for _ in range(10)]
    results = await asyncio.gather(
        *(tasks.request_cancel(database, tenant.id, i, by=f"u{n}") for i in ids for n in (1, 2)),
        return_exceptions=True,
    )
    conflicts = [r for r in results if isinstance(r, ConflictError)]
    done = [r for r in results if isinstance(r, TaskView)]
    assert len(done) == 10 and len(conflicts) == 10  # one cancel per task wins
    for task_id in ids:
        assert await _rows.event_kinds(database, task_id) == [EventKind.CANCELLED]


# -- tenant isolation -----------------------------------------------------------------------


async def test_tenant_a_can_never_read_list_cancel_or_answer_tenant_bs_rows(
    database: Database,
) -> None:
    a, b = await _rows.tenant(database, "a"), await _rows.tenant(database, "b")
    b_waiting = (await _create(database, b.id, title="B's secret")).id
    b_active = await _rows.insert_task(database, b.id, TaskStatus.IN_PROGRESS)
    b_question = await _rows.insert_question(database, b_active)
    b_late = await _rows.insert_question(database, b_waiting, HitlStatus.TIMED_OUT)
    await _create(database, a.id, title="A's own")
    before = await _rows.snapshot(database, b.id)

    for task_id in (b_waiting, b_active):
        with pytest.raises(NotFoundError) as caught:
            await tasks.get_task(database, a.id, task_id)
        assert str(caught.value) == f"no task {task_id}"  # same as a missing id
        with pytest.raises(NotFoundError):
            await tasks.request_cancel(database, a.id, task_id, by="mallory")
        with pytest.raises(NotFoundError):
            await dnc.add_dnc(database, a.id, "+14155550199", reason="x", task_id=task_id)
        assert await hitl.list_questions(database, a.id, task_id=task_id) == []
    for request_id in (b_question, b_late):
        with pytest.raises(NotFoundError):
            await hitl.answer_question(database, a.id, request_id, "42", answered_by="mallory")
    assert [t.title for t in await tasks.list_tasks(database, a.id)] == ["A's own"]
    assert await tasks.count_tasks(database, a.id) == 1
    assert await hitl.list_open_questions(database, a.id) == []
    assert await hitl.list_questions(database, a.id) == []
    assert await dnc.list_dnc(database, a.id) == []

    assert await _rows.snapshot(database, b.id) == before
    assert len(await hitl.list_open_questions(database, b.id)) == 1
