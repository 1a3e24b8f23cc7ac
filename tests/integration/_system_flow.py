"""Flows the system-function tests share: a claimed task, a dialing call, a CallActor outbox."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

from db.engine import Database
from db.messages import CallMessageKind as K
from db.policy import Decision, PolicyInput, decide
from db.repo import system
from db.states import CallOutcome, TaskStatus
from tests.integration._system_rows import NOW, add_task, add_tenant, settings

_T = TypeVar("_T")

OWNER = "task:1@cluster-a"
LEASE = 30.0


def at(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


async def claimed(db: Database, tenant: uuid.UUID | None = None, **values: Any) -> uuid.UUID:
    """A task claimed by OWNER (IN_PROGRESS, lease until NOW + 30 s)."""
    tenant = tenant or await add_tenant(db)
    task_id = await add_task(db, tenant, **values)
    got = await system.claim_due_tasks(
        db,
        owner=OWNER,
        now=NOW,
        limit=1,
        lease_seconds=LEASE,
        global_max_active=100,
        settings=settings(),
    )
    assert [c.task_id for c in got] == [task_id]
    return task_id


async def dialing(db: Database, **values: Any) -> tuple[uuid.UUID, uuid.UUID]:
    """A claimed task with its first call DIALING: (task id, call id)."""
    task_id = await claimed(db, **values)
    call = await system.create_call(db, task_id=task_id, call_id=uuid.uuid4(), owner=OWNER, now=NOW)
    return task_id, call.id


class Messages:
    """A CallActor's outbox: numbers messages like the real one (seq from 1)."""

    def __init__(self, db: Database, call_id: uuid.UUID) -> None:
        self.db, self.call_id, self.seq = db, call_id, 0

    async def send(self, kind: K, **payload: Any) -> bool:
        self.seq += 1
        payload.setdefault("at", at(self.seq))
        return await system.apply_call_event(
            self.db, call_id=self.call_id, seq=self.seq, kind=kind, payload=payload, now=NOW
        )

    async def end(self, result: str = "answered", reason: str = "completed", **more: Any) -> bool:
        return await self.send(K.ENDED, telephony_result=result, end_reason=reason, **more)


async def analysing(db: Database, **values: Any) -> tuple[uuid.UUID, uuid.UUID]:
    """A task whose call was answered and ended: ANALYZING."""
    task_id, call_id = await dialing(db, **values)
    outbox = Messages(db, call_id)
    await outbox.send(K.ANSWERED)
    await outbox.end()
    return task_id, call_id


async def decision(
    db: Database, task_id: uuid.UUID, outcome: CallOutcome, *, answer_ready: bool = False
) -> Decision:
    snap = await system.load_task_snapshot(db, task_id)
    return decide(
        PolicyInput(
            outcome=outcome,
            counted_attempts=snap.current_attempt_count,
            total_calls=snap.total_calls,
            max_attempts=snap.max_attempts,
            max_calls=10,
            requested_time=None,
            answer_ready=answer_ready,
            now=NOW,
            window=snap.window,
            backoff=snap.backoff,
            horizon=30 * 86400,
        )
    )


async def finish(
    db: Database, task_id: uuid.UUID, call_id: uuid.UUID, outcome: CallOutcome, **kw: Any
) -> TaskStatus:
    return await system.finish_analysis(
        db,
        task_id,
        owner=OWNER,
        call_id=call_id,
        outcome=outcome,
        summary=f"summary of {outcome.value}",
        analysis_json={"outcome": outcome.value},
        decision=kw.pop("decision", None) or await decision(db, task_id, outcome, **kw),
        now=NOW,
    )


async def ask(outbox: Messages, question: str = "What is the booking reference?") -> uuid.UUID:
    request_id = uuid.uuid4()
    await outbox.send(
        K.HITL_REQUESTED,
        request_id=request_id,
        question=question,
        recipient_message="One moment please",
        timeout_seconds=10,
    )
    return request_id


async def after(delay: float, work: Awaitable[_T]) -> _T:
    await asyncio.sleep(delay)
    return await work
