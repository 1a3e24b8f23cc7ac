"""System functions of the human in the loop and of the analysis/policy step."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa

from db.engine import Database
from db.messages import CallMessageKind as K
from db.models import DncNumber, HitlRequest, TaskEvent
from db.repo import hitl, system, tasks
from db.repo._core import ConflictError, StaleVersionError
from db.states import (
    CallOutcome,
    CallStatus,
    EventKind,
    HitlStatus,
    TaskStatus,
)
from tests.integration._system_flow import (
    LEASE,
    OWNER,
    Messages,
    after,
    analysing,
    ask,
    at,
    claimed,
    decision,
    dialing,
    finish,
)
from tests.integration._system_rows import (
    NOW,
    add_task,
    add_tenant,
    call_row,
    events,
    kinds,
    question_row,
    settings,
    task_row,
)

pytestmark = pytest.mark.integration


# -- HITL --------------------------------------------------------------------------------------


async def test_a_question_is_visible_at_once_and_its_answer_reaches_the_poll(
    database: Database,
) -> None:
    tenant = await add_tenant(database)
    task_id = await claimed(database, tenant)
    call = await system.create_call(
        database, task_id=task_id, call_id=uuid.uuid4(), owner=OWNER, now=NOW
    )
    outbox = Messages(database, call.id)
    await outbox.send(K.ANSWERED)
    request_id = await ask(outbox)

    (open_question,) = await hitl.list_open_questions(database, tenant)
    assert open_question.id == request_id
    assert (await system.load_task_snapshot(database, task_id)).open_question is not None
    assert (await events(database, task_id))[-1].kind is EventKind.USER_INFO_REQUESTED
    assert await system.pending_answer(database, request_id) is None

    await hitl.answer_question(database, tenant, request_id, "AB-123", answered_by="alice")

    assert await system.pending_answer(database, request_id) == "AB-123"
    assert await system.resolve_hitl_timeout(database, request_id, now=at(20)) is (
        HitlStatus.ANSWERED
    )


async def test_timeout_racing_an_answer_exactly_one_wins(database: Database) -> None:
    tenant = await add_tenant(database)
    task_id = await claimed(database, tenant)
    call = await system.create_call(
        database, task_id=task_id, call_id=uuid.uuid4(), owner=OWNER, now=NOW
    )
    outbox = Messages(database, call.id)
    await outbox.send(K.ANSWERED)
    winners = []
    for i in range(20):
        request_id = await ask(outbox, f"Question {i}?")
        timing_out = system.resolve_hitl_timeout(database, request_id, now=at(30))
        answering = hitl.answer_question(
            database, tenant, request_id, f"answer {i}", answered_by="bob"
        )
        if i % 2:  # either side starts first, the answer by a varying head start
            timeout, answer = await asyncio.gather(timing_out, answering)
        else:
            answer, timeout = await asyncio.gather(answering, after(i % 3 * 0.0005, timing_out))
        row = await question_row(database, request_id)
        if timeout is HitlStatus.TIMED_OUT:
            assert answer.late and row.status is HitlStatus.ANSWERED_LATE
        else:
            assert timeout is HitlStatus.ANSWERED
            assert not answer.late and row.status is HitlStatus.ANSWERED
        winners.append(timeout)
    async with database.read() as session:
        timeouts = await session.scalar(
            sa.select(sa.func.count())
            .select_from(TaskEvent)
            .where(TaskEvent.kind == EventKind.USER_INFO_TIMEOUT)
        )
    assert timeouts == winners.count(HitlStatus.TIMED_OUT)


async def test_pending_questions_time_out_when_the_call_ends(database: Database) -> None:
    task_id, call_id = await dialing(database)
    outbox = Messages(database, call_id)
    await outbox.send(K.ANSWERED)
    first, second = await ask(outbox), await ask(outbox, "And the date?")

    assert await system.hitl_on_callee_hangup(database, call_id, now=at(40)) == 2
    third = await ask(outbox, "One more?")
    await outbox.end("answered", "callee_hung_up")

    for request_id in (first, second, third):
        assert (await question_row(database, request_id)).status is HitlStatus.TIMED_OUT
    assert (await kinds(database, task_id)).count(EventKind.USER_INFO_TIMEOUT) == 3


# -- analysis and policy -------------------------------------------------------------------------


async def test_success_completes_the_task_and_releases_it(database: Database) -> None:
    task_id, call_id = await analysing(database)

    assert await finish(database, task_id, call_id, CallOutcome.SUCCESS) is TaskStatus.COMPLETED

    row = await task_row(database, task_id)
    assert (row.owner, row.lease_expires_at, row.finished_at) == (None, None, NOW)
    assert (row.outcome, row.result_summary, row.current_attempt_count) == (
        CallOutcome.SUCCESS,
        "summary of SUCCESS",
        1,
    )
    assert (await call_row(database, call_id)).outcome is CallOutcome.SUCCESS
    assert (await kinds(database, task_id))[-2:] == [EventKind.ANALYZED, EventKind.COMPLETED]


async def test_a_failed_attempt_schedules_a_retry_that_is_claimed_again(
    database: Database,
) -> None:
    task_id, call_id = await analysing(database)

    status = await finish(database, task_id, call_id, CallOutcome.FAILED_NO_ANSWER)

    row = await task_row(database, task_id)
    assert (status, row.next_action_time, row.owner) == (
        TaskStatus.RETRY_SCHEDULED,
        at(300),
        None,
    )
    assert (await kinds(database, task_id))[-1] is EventKind.RETRY_SCHEDULED
    again = await system.claim_due_tasks(
        database,
        owner=OWNER,
        now=at(300),
        limit=5,
        lease_seconds=LEASE,
        global_max_active=10,
        settings=settings(),
    )
    assert [(c.task_id, c.attempt_number) for c in again] == [(task_id, 2)]


async def test_do_not_call_fails_the_task_and_lists_the_number(database: Database) -> None:
    tenant = await add_tenant(database)
    task_id, call_id = await analysing(database, tenant=tenant, phone="+14155550177")
    sibling = await add_task(database, tenant, phone="+14155550177")

    status = await finish(database, task_id, call_id, CallOutcome.DO_NOT_CALL)

    assert status is TaskStatus.FAILED
    assert (await kinds(database, task_id))[-3:] == [
        EventKind.ANALYZED,
        EventKind.DNC_ADDED,
        EventKind.FAILED,
    ]
    async with database.read() as session:
        listed = await session.scalars(
            sa.select(DncNumber.phone).where(DncNumber.tenant_id == tenant)
        )
        assert list(listed) == ["+14155550177"]
    await system.claim_due_tasks(
        database,
        owner=OWNER,
        now=NOW,
        limit=5,
        lease_seconds=LEASE,
        global_max_active=10,
        settings=settings(),
    )
    assert (await task_row(database, sibling)).status is TaskStatus.FAILED


async def test_a_late_answer_turns_waiting_into_a_callback(database: Database) -> None:
    tenant = await add_tenant(database)
    task_id, call_id = await dialing(database, tenant=tenant)
    outbox = Messages(database, call_id)
    await outbox.send(K.ANSWERED)
    request_id = await ask(outbox)
    assert await system.resolve_hitl_timeout(database, request_id, now=at(20)) is (
        HitlStatus.TIMED_OUT
    )
    await outbox.end("answered", "user_info_timeout")
    await hitl.answer_question(database, tenant, request_id, "AB-123", answered_by="alice")
    waiting = await decision(database, task_id, CallOutcome.NEEDS_USER_INFO)
    assert waiting.status is TaskStatus.PENDING_USER_INFO

    with pytest.raises(StaleVersionError, match="answer_ready"):
        await finish(database, task_id, call_id, CallOutcome.NEEDS_USER_INFO, decision=waiting)
    snap = await system.load_task_snapshot(database, task_id)
    assert snap.late_answer_ready
    status = await finish(
        database, task_id, call_id, CallOutcome.NEEDS_USER_INFO, answer_ready=True
    )

    row = await task_row(database, task_id)
    assert (status, row.next_action_time) == (TaskStatus.RETRY_SCHEDULED, NOW)
    assert [i["answer"] for i in row.collected_info] == ["AB-123"]
    assert row.current_attempt_count == 0  # waiting for information is progress, not failure


async def test_a_cancel_requested_during_the_call_wins_over_a_retry(database: Database) -> None:
    tenant = await add_tenant(database)
    task_id, call_id = await analysing(database, tenant=tenant)
    await tasks.request_cancel(database, tenant, task_id, by="alice")

    status = await finish(database, task_id, call_id, CallOutcome.FAILED_BUSY)

    assert status is TaskStatus.CANCELLED
    row = await task_row(database, task_id)
    assert (row.status, row.owner, row.next_action_time) == (TaskStatus.CANCELLED, None, None)
    assert (await kinds(database, task_id))[-1] is EventKind.CANCELLED


async def test_cancel_active_task_honours_the_request_only(database: Database) -> None:
    tenant = await add_tenant(database)
    task_id, call_id = await dialing(database, tenant=tenant)
    outbox = Messages(database, call_id)
    await outbox.send(K.ANSWERED)
    request_id = await ask(outbox)
    with pytest.raises(ConflictError, match="not asked to cancel"):
        await system.cancel_active_task(database, task_id, owner=OWNER, now=NOW)
    await tasks.request_cancel(database, tenant, task_id, by="alice")

    await system.cancel_active_task(database, task_id, owner=OWNER, now=NOW)
    await outbox.end("answered", "cancelled")  # the polite goodbye finished after the cancel

    row = await task_row(database, task_id)
    assert (row.status, row.owner, row.finished_at) == (TaskStatus.CANCELLED, None, NOW)
    assert (await question_row(database, request_id)).status is HitlStatus.CANCELLED
    assert (await call_row(database, call_id)).status is CallStatus.ENDED
    assert (await kinds(database, task_id))[-2:] == [EventKind.CANCELLED, EventKind.CALL_ENDED]


async def test_defer_task_hands_a_claimed_task_back(database: Database) -> None:
    task_id = await claimed(database)

    await system.defer_task(
        database, task_id, owner=OWNER, now=NOW, next_action_time=at(60), reason="No call slot"
    )

    row = await task_row(database, task_id)
    assert (row.status, row.next_action_time, row.owner, row.lease_expires_at) == (
        TaskStatus.RETRY_SCHEDULED,
        at(60),
        None,
        None,
    )
    assert (await events(database, task_id))[-1].message == "No call slot"


async def test_waiting_for_information_expires_into_failure(database: Database) -> None:
    tenant = await add_tenant(database)
    old = await add_task(
        database, tenant, status=TaskStatus.PENDING_USER_INFO, updated_at=at(-8 * 86400)
    )
    recent = await add_task(
        database, tenant, status=TaskStatus.PENDING_USER_INFO, updated_at=at(-86400)
    )
    async with database.write() as session:
        question = HitlRequest(
            id=uuid.uuid4(),
            task_id=old,
            tenant_id=tenant,
            question="Which date?",
            timeout_seconds=10,
            status=HitlStatus.TIMED_OUT,
            asked_at=at(-8 * 86400),
        )
        session.add(question)

    assert await system.expire_pending_user_info(database, now=NOW, expiry_seconds=7 * 86400) == 1

    row = await task_row(database, old)
    assert (row.status, row.finished_at) == (TaskStatus.FAILED, NOW)
    assert await kinds(database, old) == [EventKind.EXPIRED]
    assert (await events(database, old))[0].message == (
        "No answer from the task's creator within 7 days"
    )
    assert (await question_row(database, question.id)).status is HitlStatus.EXPIRED
    assert (await task_row(database, recent)).status is TaskStatus.PENDING_USER_INFO
