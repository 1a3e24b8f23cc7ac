"""User-facing task functions: create, list, read, cancel. Always tenant-scoped.

Bad input raises a ValueError subclass with a message meant for the person who typed it
(InvalidInputError, db.phone.NumberRefusedError, db.windows.WindowError) before anything is
written. Another tenant's task id behaves exactly like a missing one (NotFoundError).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import Database
from db.models import Call, HitlRequest, Task, TaskEvent, Tenant, User
from db.phone import normalize_destination
from db.repo import _input
from db.repo._core import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    append_event,
    move_task,
    update_row,
)
from db.repo._shared import (
    load_task,
    local_time,
    move_question,
    pretty_phone,
    retry_stale,
    short,
)
from db.repo.accounts import WindowSpec, checked_window
from db.repo.dnc import refuse_dnc
from db.repo.views import CallView, EventView, QuestionView, TaskDetail, TaskSummary, TaskView
from db.shapes import utcnow
from db.states import (
    ACTIVE_TASK_STATUSES,
    TERMINAL_TASK_STATUSES,
    EventKind,
    HitlStatus,
    TaskStatus,
)
from db.windows import CallingWindow, resolve_zones
from opendeep.settings import Settings

MAX_OBJECTIVE_CHARS: Final = 4_000
MAX_CONTEXT_CHARS: Final = 8_000
MAX_TITLE_CHARS: Final = 200
DERIVED_TITLE_CHARS: Final = 80
MAX_CALLEE_NAME_CHARS: Final = 200
MAX_VOICE_CHARS: Final = 50
MAX_VOICEMAIL_CHARS: Final = 1_000
MAX_ACTOR_CHARS: Final = 100
MAX_SCHEDULE_AHEAD: Final = dt.timedelta(days=366)
MAX_LIST_LIMIT: Final = 500
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$")


@dataclass(frozen=True, slots=True)
class _Checked:
    """The text fields of a new task, validated."""

    objective: str
    context: str
    title: str
    callee_name: str | None
    language: str
    voice: str | None
    voicemail_message: str | None


def _check_text(
    *,
    objective: str,
    context: str,
    title: str | None,
    callee_name: str | None,
    language: str,
    voice: str | None,
    voicemail_message: str | None,
) -> _Checked:
    goal = _input.text(objective, "objective", max_chars=MAX_OBJECTIVE_CHARS)
    lang = _input.text(language, "language", max_chars=16)
    if not _LANGUAGE.match(lang):
        raise InvalidInputError(f"not a language tag: {lang!r} (use e.g. en, fr, pt-BR)")
    named = _input.optional_text(title, "title", max_chars=MAX_TITLE_CHARS)
    return _Checked(
        objective=goal,
        context=_input.text(context, "context", max_chars=MAX_CONTEXT_CHARS, required=False),
        title=named or short(goal, DERIVED_TITLE_CHARS),
        callee_name=_input.optional_text(
            callee_name, "callee name", max_chars=MAX_CALLEE_NAME_CHARS
        ),
        language=lang,
        voice=_input.optional_text(voice, "voice", max_chars=MAX_VOICE_CHARS),
        voicemail_message=_input.optional_text(
            voicemail_message, "voicemail message", max_chars=MAX_VOICEMAIL_CHARS
        ),
    )


def _check_at(at: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    if at is None:
        return now
    when = _input.aware(at, "scheduled time")
    if when - now > MAX_SCHEDULE_AHEAD:
        raise InvalidInputError(
            f"scheduled time {when:%Y-%m-%d} is too far ahead (at most a year from now)"
        )
    return max(when, now)  # a time in the past means "as soon as possible"


async def _tenant_for(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFoundError(f"no tenant {tenant_id}")
    return tenant


async def _check_creator(
    session: AsyncSession, tenant_id: uuid.UUID, created_by: uuid.UUID | None
) -> None:
    if created_by is None:
        return
    user = await session.get(User, created_by)
    if user is None or user.tenant_id != tenant_id:
        raise NotFoundError(f"no user {created_by} in this tenant")


def _created_message(task: Task, window: CallingWindow, requested: dt.datetime) -> str:
    when = local_time(task.next_action_time or requested, window.zones)
    message = f"Task created: call {pretty_phone(task.phone)} — scheduled for {when}"
    if task.next_action_time != requested:
        message += f" (the first opening of its calling window {window.describe()})"
    return message


async def create_task(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    objective: str,
    phone: str,
    context: str = "",
    title: str | None = None,
    callee_name: str | None = None,
    language: str = "en",
    voice: str | None = None,
    timezone: str | None = None,
    window: WindowSpec | None = None,
    at: dt.datetime | None = None,
    max_attempts: int | None = None,
    voicemail_message: str | None = None,
    created_by: uuid.UUID | None = None,
    settings: Settings,
) -> TaskView:
    """Validate and write a new PENDING task with its TASK_CREATED event, or write nothing.

    It is due at ``at`` (aware; ``None`` = now; a past time = now), moved forward into its
    calling window when that is closed then, so the scheduler never claims it only to defer.
    """
    now = utcnow()
    fields = _check_text(
        objective=objective,
        context=context,
        title=title,
        callee_name=callee_name,
        language=language,
        voice=voice,
        voicemail_message=voicemail_message,
    )
    requested = _check_at(at, now)
    attempts = _input.limit(
        settings.max_attempts if max_attempts is None else max_attempts,
        "max attempts",
        high=settings.max_calls_per_task,
    )
    async with db.write() as session:
        tenant = await _tenant_for(session, tenant_id)
        await _check_creator(session, tenant_id, created_by)
        e164 = normalize_destination(phone, allowed_countries=tenant.allowed_countries)
        await refuse_dnc(session, tenant_id, e164)
        calling = _calling_window(tenant, window, timezone, e164)
        task = Task(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            created_by=created_by,
            phone=e164,
            timezone=timezone.strip() if timezone and timezone.strip() else None,
            window_start=calling.start,
            window_end=calling.end,
            window_days=sorted(calling.days),
            retry_backoff=list(settings.backoff_seconds),
            max_attempts=attempts,
            next_action_time=calling.next_open(requested),
            **dataclasses.asdict(fields),
            **_fresh(now),
        )
        return await _insert(session, task, calling, requested)


def _calling_window(
    tenant: Tenant, window: WindowSpec | None, timezone: str | None, e164: str
) -> CallingWindow:
    """The task's window (else the tenant's) in the callee's zone(s); WindowError if bad."""
    start, end, days = checked_window(
        window or (tenant.window_start, tenant.window_end, tenant.window_days)
    )
    return CallingWindow(
        start=start, end=end, days=frozenset(days), zones=resolve_zones(timezone, e164)
    )


async def _insert(
    session: AsyncSession, task: Task, calling: CallingWindow, requested: dt.datetime
) -> TaskView:
    """Write the new task and its TASK_CREATED event in the caller's transaction."""
    session.add(task)
    await session.flush()
    await append_event(
        session,
        task_id=task.id,
        tenant_id=task.tenant_id,
        kind=EventKind.TASK_CREATED,
        message=_created_message(task, calling, requested),
        data=_created_data(task, calling),
        at=task.created_at,
    )
    return TaskView.of(task)


def _fresh(now: dt.datetime) -> dict[str, Any]:
    """The columns every new task starts with."""
    return {
        "status": TaskStatus.PENDING,
        "current_attempt_count": 0,
        "total_calls": 0,
        "collected_info": [],
        "created_at": now,
        "updated_at": now,
    }


def _created_data(task: Task, window: CallingWindow) -> dict[str, object]:
    return {
        "phone": task.phone,
        "next_action_time": task.next_action_time.isoformat() if task.next_action_time else None,
        "zones": list(window.zones),
        "window": window.describe(),
        "max_attempts": task.max_attempts,
    }


# -- reading --------------------------------------------------------------------------------


async def list_tasks(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    status: TaskStatus | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[TaskSummary]:
    """The tenant's tasks, newest first, optionally of one status."""
    _input.limit(limit, "limit", high=MAX_LIST_LIMIT)
    _input.limit(offset, "offset", low=0)
    query = (
        sa.select(Task)
        .where(Task.tenant_id == tenant_id)
        .order_by(Task.created_at.desc(), Task.id.desc())
        .limit(limit)
        .offset(offset)
    )
    async with db.read() as session:
        if status is not None:
            query = query.where(Task.status == TaskStatus(status))
        rows = await session.scalars(query)
        return [TaskSummary.of(r) for r in rows]


async def count_tasks(
    db: Database, tenant_id: uuid.UUID, *, status: TaskStatus | None = None
) -> int:
    """How many tasks the tenant has (of one status, if given)."""
    query = sa.select(sa.func.count()).select_from(Task).where(Task.tenant_id == tenant_id)
    if status is not None:
        query = query.where(Task.status == TaskStatus(status))
    async with db.read() as session:
        return int(await session.scalar(query) or 0)


async def get_task(db: Database, tenant_id: uuid.UUID, task_id: uuid.UUID) -> TaskDetail:
    """A task with its calls, events and questions; NotFoundError if not the tenant's."""
    async with db.read() as session:
        task = await load_task(session, tenant_id, task_id)
        calls = await session.scalars(
            sa.select(Call)
            .where(Call.task_id == task.id, Call.tenant_id == tenant_id)
            .order_by(Call.attempt_number, Call.created_at)
        )
        events = await session.scalars(
            sa.select(TaskEvent)
            .where(TaskEvent.task_id == task.id, TaskEvent.tenant_id == tenant_id)
            .order_by(TaskEvent.id)
        )
        questions = await session.scalars(
            sa.select(HitlRequest)
            .where(HitlRequest.task_id == task.id, HitlRequest.tenant_id == tenant_id)
            .order_by(HitlRequest.asked_at, HitlRequest.id)
        )
        return TaskDetail(
            task=TaskView.of(task),
            calls=tuple(CallView.of(c) for c in calls),
            events=tuple(EventView.of(e) for e in events),
            questions=tuple(QuestionView.of(q, task.title) for q in questions),
        )


# -- cancelling -----------------------------------------------------------------------------


async def _close_questions(session: AsyncSession, task: Task) -> None:
    """Questions of a task being cancelled: TIMED_OUT → EXPIRED, a stray PENDING → CANCELLED."""
    rows = await session.scalars(
        sa.select(HitlRequest).where(
            HitlRequest.task_id == task.id,
            HitlRequest.status.in_([HitlStatus.TIMED_OUT, HitlStatus.PENDING]),
        )
    )
    for row in list(rows):
        target = HitlStatus.EXPIRED if row.status is HitlStatus.TIMED_OUT else HitlStatus.CANCELLED
        await move_question(session, row, target)


async def _request_cancel_active(session: AsyncSession, task: Task, who: str) -> TaskView:
    if task.cancel_requested_at is None:
        now = utcnow()
        await update_row(session, task, cancel_requested_at=now, updated_at=now)
        await append_event(
            session,
            task_id=task.id,
            tenant_id=task.tenant_id,
            kind=EventKind.CANCEL_REQUESTED,
            message=f"Cancel requested by {who}: the call in progress will end politely",
            data={"by": who},
            at=now,
        )
    return TaskView.of(task)


async def request_cancel(
    db: Database, tenant_id: uuid.UUID, task_id: uuid.UUID, *, by: str
) -> TaskView:
    """Cancel a task: a waiting one at once, an active one by flag (its TaskActor ends it).

    Idempotent while the cancel is pending; a finished task is a ConflictError.
    """
    who = _input.text(by, "who cancels", max_chars=MAX_ACTOR_CHARS)

    async def unit(session: AsyncSession) -> TaskView:
        task = await load_task(session, tenant_id, task_id)
        if task.status in TERMINAL_TASK_STATUSES:
            raise ConflictError(
                f"task {task_id} is already {task.status.value.lower()}; nothing to cancel"
            )
        if task.status in ACTIVE_TASK_STATUSES:
            return await _request_cancel_active(session, task, who)
        now = utcnow()
        # Task row before HITL rows: the same lock order as a late answer, so no deadlock.
        await move_task(
            session,
            task,
            TaskStatus.CANCELLED,
            event=EventKind.CANCELLED,
            message=f"Cancelled by {who}",
            data={"by": who},
            now=now,
            cancel_requested_at=task.cancel_requested_at or now,
            finished_at=now,
            next_action_time=None,
        )
        await _close_questions(session, task)
        return TaskView.of(task)

    return await retry_stale(db, unit, f"cancel task {task_id}")
