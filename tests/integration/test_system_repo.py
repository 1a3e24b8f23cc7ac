"""System functions of leases, calls and CallActor messages, reconcile, and the whole lifecycle."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from db.engine import Database
from db.messages import CallMessageKind as K
from db.policy import Decision
from db.repo import system, tasks
from db.repo._core import ConflictError
from db.states import (
    CallOutcome,
    CallStatus,
    EndReason,
    EventKind,
    IllegalTransitionError,
    TaskStatus,
)
from tests.integration._system_flow import (
    LEASE,
    OWNER,
    Messages,
    at,
    claimed,
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
    settings,
    task_row,
)

pytestmark = pytest.mark.integration


# -- leases ------------------------------------------------------------------------------------


async def test_renew_lease_only_by_its_owner_and_beats_the_live_calls_heartbeat(
    database: Database,
) -> None:
    task_id, call_id = await dialing(database)

    assert not await system.renew_lease(
        database, task_id, owner="someone-else", now=at(10), lease_seconds=LEASE
    )
    assert (await task_row(database, task_id)).lease_expires_at == at(30)
    assert await system.renew_lease(database, task_id, owner=OWNER, now=at(10), lease_seconds=LEASE)

    assert (await task_row(database, task_id)).lease_expires_at == at(40)
    assert (await call_row(database, call_id)).heartbeat_at == at(10)


async def test_expired_leases_are_found_and_taken_over(database: Database) -> None:
    task_id, call_id = await dialing(database)
    assert await system.find_expired_leases(database, now=at(29), limit=10) == []
    assert await system.find_expired_leases(database, now=at(31), limit=10) == [task_id]

    snap = await system.take_over_lease(
        database, task_id, owner="task:1@restarted", now=at(31), lease_seconds=LEASE
    )

    assert (snap.owner, snap.lease_expires_at) == ("task:1@restarted", at(61))
    assert snap.current_call is not None and snap.current_call.id == call_id
    assert await system.find_expired_leases(database, now=at(31), limit=10) == []
    assert not await system.renew_lease(
        database, task_id, owner=OWNER, now=at(32), lease_seconds=LEASE
    )
    with pytest.raises(ConflictError):
        await system.create_call(
            database, task_id=task_id, call_id=uuid.uuid4(), owner=OWNER, now=at(32)
        )


async def test_take_over_refuses_a_task_that_is_not_active(database: Database) -> None:
    task_id = await add_task(database, await add_tenant(database))
    with pytest.raises(ConflictError):
        await system.take_over_lease(database, task_id, owner=OWNER, now=NOW, lease_seconds=LEASE)


# -- calls -------------------------------------------------------------------------------------


async def test_create_call_counts_the_call_and_needs_a_live_lease(database: Database) -> None:
    task_id = await claimed(database, phone="+14155550142")
    call_id = uuid.uuid4()
    with pytest.raises(ConflictError):
        await system.create_call(
            database, task_id=task_id, call_id=call_id, owner="intruder", now=NOW
        )
    with pytest.raises(ConflictError):
        await system.create_call(
            database, task_id=task_id, call_id=call_id, owner=OWNER, now=at(31)
        )

    call = await system.create_call(
        database, task_id=task_id, call_id=call_id, owner=OWNER, now=NOW
    )
    again = await system.create_call(
        database, task_id=task_id, call_id=call_id, owner=OWNER, now=NOW
    )

    assert again == call
    assert (call.status, call.attempt_number, call.destination) == (
        CallStatus.DIALING,
        1,
        "+14155550142",
    )
    row = await task_row(database, task_id)
    assert (row.total_calls, row.status, row.version) == (1, TaskStatus.IN_PROGRESS, 3)
    with pytest.raises(ConflictError, match="live call"):
        await system.create_call(
            database, task_id=task_id, call_id=uuid.uuid4(), owner=OWNER, now=NOW
        )


async def test_create_call_is_refused_once_a_cancel_was_requested(database: Database) -> None:
    tenant = await add_tenant(database)
    task_id = await claimed(database, tenant)
    await tasks.request_cancel(database, tenant, task_id, by="alice")
    with pytest.raises(ConflictError, match="cancel"):
        await system.create_call(
            database, task_id=task_id, call_id=uuid.uuid4(), owner=OWNER, now=NOW
        )


async def test_replayed_call_messages_are_applied_exactly_once(database: Database) -> None:
    task_id, call_id = await dialing(database)
    turn = {"speaker": "agent", "text": "Hello, I am an AI assistant", "start_ms": 0, "end_ms": 900}
    tool = {"name": "send_dtmf", "arguments": {"digits": "1"}, "result": "ok", "at": at(4)}
    script: list[tuple[K, dict[str, Any]]] = [
        (K.ORIGINATED, {"at": at(1)}),
        (K.ANSWERED, {"at": at(5)}),
        (K.TRANSCRIPT_TURN, {"turn": turn}),
        (K.TOOL_CALL, {"record": tool}),
        (K.DTMF_SENT, {"digits": "1", "at": at(6)}),
        (K.DTMF_RECEIVED, {"digit": "5", "at": at(7)}),
        (K.AMD_VERDICT, {"verdict": "HUMAN", "cause": "HUMAN-1-1", "at": at(6)}),
        (K.TRANSCRIPT_TURN, {"turn": {**turn, "speaker": "callee", "text": "Hi"}}),
        (K.ENDED, {"telephony_result": "answered", "end_reason": "completed", "at": at(80)}),
    ]

    async def deliver(seq: int) -> bool:
        kind, payload = script[seq - 1]
        return await system.apply_call_event(
            database, call_id=call_id, seq=seq, kind=kind, payload=payload, now=NOW
        )

    for seq in range(1, len(script) + 1):
        # The CallActor retries a delivery it is unsure of: three copies race, one applies.
        results = await asyncio.gather(deliver(seq), deliver(seq), deliver(seq))
        assert sorted(results) == [False, False, True]
    assert not any([await deliver(seq) for seq in range(1, len(script) + 1)])

    call = await call_row(database, call_id)
    assert (call.status, call.last_seq, len(call.transcript), len(call.tool_calls)) == (
        CallStatus.ENDED,
        len(script),
        2,
        1,
    )
    assert (call.answered_at, call.originated_at, call.ended_at) == (at(5), at(1), at(80))
    assert await kinds(database, task_id) == [
        EventKind.DIAL_STARTED,
        EventKind.CALL_ANSWERED,
        EventKind.DTMF_SENT,
        EventKind.DTMF_RECEIVED,
        EventKind.CALL_ENDED,
    ]
    assert (await events(database, task_id))[-1].message == "Call ended (completed) after 1m 15s"
    assert (await task_row(database, task_id)).status is TaskStatus.ANALYZING


async def test_renewals_heartbeats_and_messages_racing_never_deadlock(database: Database) -> None:
    task_id, call_id = await dialing(database)
    turn = {"speaker": "callee", "text": "Hello?", "start_ms": 0, "end_ms": 400}

    async def message(seq: int) -> bool:
        return await system.apply_call_event(
            database,
            call_id=call_id,
            seq=seq,
            kind=K.TRANSCRIPT_TURN,
            payload={"turn": turn},
            now=NOW,
        )

    work = [message(seq) for seq in range(1, 21)]
    work += [
        system.renew_lease(database, task_id, owner=OWNER, now=at(i), lease_seconds=LEASE)
        for i in range(20)
    ]
    work += [system.heartbeat_call(database, call_id, now=at(i)) for i in range(20)]
    results = await asyncio.gather(*work)

    assert all(results[20:])
    applied = sum(results[:20])  # a seq that arrives after a higher one is a duplicate
    assert len((await call_row(database, call_id)).transcript) == applied >= 1


async def test_unanswered_call_records_its_cause_and_the_task_goes_to_analysis(
    database: Database,
) -> None:
    task_id, call_id = await dialing(database)
    outbox = Messages(database, call_id)

    await outbox.end("no_answer", "not_answered", originate_reason=3, hangup_cause=19)

    call = await call_row(database, call_id)
    assert (call.status, call.hangup_cause, call.originate_reason, call.end_reason) == (
        CallStatus.NOT_ANSWERED,
        19,
        3,
        EndReason.NOT_ANSWERED,
    )
    last = (await events(database, task_id))[-1]
    assert (last.kind, last.message) == (EventKind.CALL_NOT_ANSWERED, "No answer (cause 19)")
    assert (await task_row(database, task_id)).status is TaskStatus.ANALYZING


async def test_machine_verdict_is_recorded_with_a_voicemail_event(database: Database) -> None:
    task_id, call_id = await dialing(database)
    outbox = Messages(database, call_id)
    await outbox.send(K.ANSWERED)
    await outbox.send(K.AMD_VERDICT, verdict="MACHINE", cause="LONGGREETING-2000-2000")

    call = await call_row(database, call_id)
    assert (call.amd_verdict, call.amd_cause) == ("MACHINE", "LONGGREETING-2000-2000")
    assert (await events(database, task_id))[-1].message == (
        "Answering machine detected (LONGGREETING-2000-2000)"
    )


async def test_a_bad_message_is_refused_and_writes_nothing(database: Database) -> None:
    task_id, call_id = await dialing(database)
    outbox = Messages(database, call_id)
    with pytest.raises(ValueError, match="digit"):
        await outbox.send(K.DTMF_RECEIVED, digit="x")
    await outbox.send(K.ANSWERED)
    with pytest.raises(IllegalTransitionError):
        await outbox.send(K.ANSWERED)  # answered twice under two seqs: a CallActor bug

    assert (await call_row(database, call_id)).last_seq == 2
    assert await kinds(database, task_id) == [EventKind.DIAL_STARTED, EventKind.CALL_ANSWERED]


# -- reconcile and lifecycle ---------------------------------------------------------------------


async def test_a_vanished_call_fails_as_a_technical_error_and_is_analysed(
    database: Database,
) -> None:
    task_id, call_id = await dialing(database)
    snap = await system.take_over_lease(
        database, task_id, owner="restarted", now=at(40), lease_seconds=LEASE
    )
    assert snap.current_call is not None

    assert await system.recover_vanished_call(
        database, task_id, call_id, owner="restarted", now=at(41)
    )
    assert not await system.recover_vanished_call(
        database, task_id, call_id, owner="restarted", now=at(42)
    )

    call = await call_row(database, call_id)
    assert (call.status, call.end_reason) == (CallStatus.FAILED, EndReason.TECHNICAL_ERROR)
    assert (await task_row(database, task_id)).status is TaskStatus.ANALYZING
    assert (await kinds(database, task_id))[-1] is EventKind.RECOVERED
    assert (
        await system.find_calls_without_heartbeat(database, now=at(500), max_age_seconds=60) == []
    )


async def test_calls_without_a_heartbeat_are_found(database: Database) -> None:
    _, call_id = await dialing(database)
    assert await system.find_calls_without_heartbeat(database, now=at(59), max_age_seconds=60) == []
    assert await system.find_calls_without_heartbeat(database, now=at(61), max_age_seconds=60) == [
        call_id
    ]
    assert await system.heartbeat_call(database, call_id, now=at(61))
    assert await system.find_calls_without_heartbeat(database, now=at(62), max_age_seconds=60) == []


async def test_illegal_moves_raise_and_write_nothing(database: Database) -> None:
    task_id, call_id = await dialing(database)
    before = (await task_row(database, task_id)).version, len(await events(database, task_id))

    with pytest.raises(ConflictError, match="not ANALYZING"):
        await finish(database, task_id, call_id, CallOutcome.SUCCESS)
    await Messages(database, call_id).end("busy", "not_answered", hangup_cause=17)
    after_end = (await task_row(database, task_id)).version, len(await events(database, task_id))
    assert after_end == (before[0] + 1, before[1] + 1)
    bogus = Decision(TaskStatus.IN_PROGRESS, NOW, 1, "bogus", EventKind.SCHEDULED)
    with pytest.raises(IllegalTransitionError):
        await finish(database, task_id, call_id, CallOutcome.FAILED_BUSY, decision=bogus)
    with pytest.raises(ConflictError, match="only a claimed task defers"):
        await system.defer_task(
            database, task_id, owner=OWNER, now=NOW, next_action_time=at(60), reason="no"
        )
    with pytest.raises(ConflictError):
        await system.begin_analysis(database, task_id, owner="intruder", call_id=call_id, now=NOW)

    row = await task_row(database, task_id)
    assert (row.version, len(await events(database, task_id))) == after_end
    assert (row.status, (await call_row(database, call_id)).outcome) == (TaskStatus.ANALYZING, None)


async def test_every_status_change_writes_its_event(database: Database) -> None:
    """A whole life — no answer, retry, answered, success — checked after every step."""
    tenant = await add_tenant(database)
    task_id = await add_task(database, tenant)
    seen = [(TaskStatus.PENDING, 0)]

    async def step() -> None:
        row, evs = await task_row(database, task_id), await events(database, task_id)
        status_changed = row.status is not seen[-1][0]
        assert not status_changed or len(evs) > seen[-1][1], f"no event for {row.status}"
        seen.append((row.status, len(evs)))

    for attempt, result in ((1, "no_answer"), (2, "answered")):
        now = at(0 if attempt == 1 else 300)
        await system.claim_due_tasks(
            database,
            owner=OWNER,
            now=now,
            limit=1,
            lease_seconds=LEASE,
            global_max_active=10,
            settings=settings(),
        )
        await step()
        call = await system.create_call(
            database, task_id=task_id, call_id=uuid.uuid4(), owner=OWNER, now=now
        )
        await step()
        outbox = Messages(database, call.id)
        if result == "answered":
            await outbox.send(K.ANSWERED)
            await step()
        await outbox.end(result, "completed" if result == "answered" else "not_answered")
        await step()
        await system.begin_analysis(database, task_id, owner=OWNER, call_id=call.id, now=now)
        outcome = CallOutcome.SUCCESS if result == "answered" else CallOutcome.FAILED_NO_ANSWER
        await finish(database, task_id, call.id, outcome)
        await step()
    assert [s for s, _ in seen] == [
        TaskStatus.PENDING,
        *[TaskStatus.IN_PROGRESS] * 2,
        TaskStatus.ANALYZING,
        TaskStatus.RETRY_SCHEDULED,
        *[TaskStatus.IN_PROGRESS] * 3,
        TaskStatus.ANALYZING,
        TaskStatus.COMPLETED,
    ]
