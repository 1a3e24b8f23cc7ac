"""Questions the AI asked a task's creator (human in the loop), and the front's answers.

Arbitration (DESIGN.md §2): the HitlRequest row decides races. The front's guarded
``PENDING → ANSWERED`` and the TaskActor's guarded ``PENDING → TIMED_OUT`` are both
``UPDATE … WHERE status = 'PENDING' AND version = v``, so exactly one matches; the loser
re-reads. An answer that finds ``TIMED_OUT`` becomes ``ANSWERED_LATE``.

Who copies an answer into ``tasks.collected_info``: while a task is IN_PROGRESS or ANALYZING
its TaskActor is the only writer of the task row (DESIGN.md §2), so an answer given then —
in time (ANSWERED) or late (ANSWERED_LATE) — is written to the HITL row only, and the
TaskActor copies it into collected_info (deduplicated by ``request_id``, see
:func:`answers_to_collect`) when it sees it. A waiting task has no actor, so a late answer
to a PENDING_USER_INFO (or RETRY_SCHEDULED / PENDING) task is copied by the front, in the same
transaction that answers the row — and a PENDING_USER_INFO task moves to RETRY_SCHEDULED,
due now, moved into its calling window. Lock order is task row, then HITL row (as in a
cancel), so two transactions never wait on each other in a cycle.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import Database
from db.models import HitlRequest, Task
from db.repo import _input
from db.repo._core import ConflictError, append_event, move_task, update_row
from db.repo._shared import (
    load_question,
    load_task,
    local_time,
    move_question,
    retry_stale,
    short,
    task_window,
)
from db.repo.views import QuestionView
from db.shapes import CollectedInfo, utcnow
from db.states import (
    TERMINAL_TASK_STATUSES,
    WAITING_TASK_STATUSES,
    EventKind,
    HitlStatus,
    TaskStatus,
)

MAX_ANSWER_CHARS: Final = 4_000
MAX_ANSWERED_BY_CHARS: Final = 100
MAX_LIST: Final = 500


@dataclass(frozen=True, slots=True)
class AnswerResult:
    """What an answer did: the question now, and the task's status and due time after it."""

    question: QuestionView
    task_status: TaskStatus
    next_action_time: dt.datetime | None
    """When the task will be called again, if this answer scheduled (or found) a callback."""

    @property
    def late(self) -> bool:
        """Whether the answer came after the call stopped waiting (ANSWERED_LATE)."""
        return self.question.status is HitlStatus.ANSWERED_LATE


def _titled(rows: Iterable[Any]) -> list[QuestionView]:
    return [QuestionView.of(row, title) for row, title in rows]


async def list_open_questions(db: Database, tenant_id: uuid.UUID) -> list[QuestionView]:
    """The tenant's questions still waiting for an answer (PENDING), oldest first."""
    query = (
        sa.select(HitlRequest, Task.title)
        .join(Task, Task.id == HitlRequest.task_id)
        .where(
            HitlRequest.tenant_id == tenant_id,
            Task.tenant_id == tenant_id,
            HitlRequest.status == HitlStatus.PENDING,
        )
        .order_by(HitlRequest.asked_at, HitlRequest.id)
        .limit(MAX_LIST)
    )
    async with db.read() as session:
        return _titled(await session.execute(query))


async def list_questions(
    db: Database, tenant_id: uuid.UUID, *, task_id: uuid.UUID | None = None
) -> list[QuestionView]:
    """The tenant's questions in every status (of one task, if given), newest first."""
    query = (
        sa.select(HitlRequest, Task.title)
        .join(Task, Task.id == HitlRequest.task_id)
        .where(HitlRequest.tenant_id == tenant_id, Task.tenant_id == tenant_id)
        .order_by(HitlRequest.asked_at.desc(), HitlRequest.id)
        .limit(MAX_LIST)
    )
    if task_id is not None:
        query = query.where(HitlRequest.task_id == task_id)
    async with db.read() as session:
        return _titled(await session.execute(query))


def _refuse_closed(row: HitlRequest) -> None:
    if row.status in (HitlStatus.ANSWERED, HitlStatus.ANSWERED_LATE):
        raise ConflictError("this question was already answered")
    if row.status in (HitlStatus.CANCELLED, HitlStatus.EXPIRED):
        raise ConflictError("this question expired")


async def _answer_in_time(
    session: AsyncSession, row: HitlRequest, task: Task, answer: str, who: str
) -> AnswerResult:
    now = utcnow()
    await move_question(
        session, row, HitlStatus.ANSWERED, answer=answer, answered_at=now, answered_by=who
    )
    await append_event(
        session,
        task_id=task.id,
        tenant_id=task.tenant_id,
        call_id=row.call_id,
        kind=EventKind.USER_INFO_PROVIDED,
        message=f"{who} answered “{short(row.question)}”",
        data={"request_id": str(row.id), "answered_by": who},
        at=now,
    )
    return AnswerResult(QuestionView.of(row, task.title), task.status, task.next_action_time)


async def _collect_late(
    session: AsyncSession, task: Task, info: dict[str, Any], who: str, now: dt.datetime
) -> None:
    """Copy a late answer into a waiting task; a PENDING_USER_INFO task is called back now."""
    collected = [*task.collected_info, info]
    if task.status is not TaskStatus.PENDING_USER_INFO:
        await update_row(session, task, collected_info=collected, updated_at=now)
        return
    window = task_window(task)
    due = window.next_open(now)
    await move_task(
        session,
        task,
        TaskStatus.RETRY_SCHEDULED,
        event=EventKind.RETRY_SCHEDULED,
        message=f"Callback scheduled for {local_time(due, window.zones)}: {who} answered",
        data={"next_action_time": due.isoformat(), "reason": "late answer"},
        now=now,
        next_action_time=due,
        collected_info=collected,
    )


async def _answer_late(
    session: AsyncSession, row: HitlRequest, task: Task, answer: str, who: str
) -> AnswerResult:
    now = utcnow()
    await append_event(
        session,
        task_id=task.id,
        tenant_id=task.tenant_id,
        call_id=row.call_id,
        kind=EventKind.USER_INFO_PROVIDED_LATE,
        message=f"{who} answered “{short(row.question)}” after the call stopped waiting",
        data={"request_id": str(row.id), "answered_by": who},
        at=now,
    )
    if task.status in WAITING_TASK_STATUSES:
        info = CollectedInfo(question=row.question, answer=answer, at=now, request_id=str(row.id))
        await _collect_late(session, task, info.model_dump(mode="json"), who, now)
    await move_question(
        session, row, HitlStatus.ANSWERED_LATE, answer=answer, answered_at=now, answered_by=who
    )
    return AnswerResult(QuestionView.of(row, task.title), task.status, task.next_action_time)


async def answer_question(
    db: Database,
    tenant_id: uuid.UUID,
    request_id: uuid.UUID,
    answer: str,
    *,
    answered_by: str,
) -> AnswerResult:
    """Answer one of the tenant's questions (the arbitration rules are in the module doc).

    PENDING → ANSWERED; TIMED_OUT → ANSWERED_LATE (and a PENDING_USER_INFO task is called
    back now); already answered or expired → ConflictError; empty or over 4,000 characters
    → InvalidInputError; another tenant's question → NotFoundError.
    """
    text = _input.text(answer, "answer", max_chars=MAX_ANSWER_CHARS)
    who = _input.text(answered_by, "answered_by", max_chars=MAX_ANSWERED_BY_CHARS)

    async def unit(session: AsyncSession) -> AnswerResult:
        row = await load_question(session, tenant_id, request_id)
        _refuse_closed(row)
        task = await load_task(session, tenant_id, row.task_id)
        if task.status in TERMINAL_TASK_STATUSES:
            # Nobody will call back for a finished task; an answer would be silently lost.
            raise ConflictError(f"this question expired: the task is {task.status.value.lower()}")
        if row.status is HitlStatus.PENDING:
            return await _answer_in_time(session, row, task, text, who)
        return await _answer_late(session, row, task, text, who)

    return await retry_stale(db, unit, f"answer question {request_id}")


def answers_to_collect(
    collected_info: Sequence[dict[str, Any]], rows: Iterable[HitlRequest]
) -> list[dict[str, Any]]:
    """``collected_info`` plus the answered rows it lacks (by request id), for the TaskActor."""
    have = {item.get("request_id") for item in collected_info}
    merged = list(collected_info)
    answered = (HitlStatus.ANSWERED, HitlStatus.ANSWERED_LATE)
    for row in sorted(rows, key=lambda r: (r.answered_at or r.asked_at, str(r.id))):
        if row.status in answered and row.answer is not None and str(row.id) not in have:
            info = CollectedInfo(
                question=row.question,
                answer=row.answer,
                at=row.answered_at or row.asked_at,
                request_id=str(row.id),
            )
            merged.append(info.model_dump(mode="json"))
            have.add(str(row.id))
    return merged
