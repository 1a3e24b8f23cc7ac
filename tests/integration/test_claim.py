"""claim_due_tasks on SQLite and PostgreSQL: what is due, windows, DNC, and every cap."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from db.engine import Database
from db.repo.claim import ClaimedTask, claim_due_tasks
from db.states import EventKind, TaskStatus
from tests.integration._system_rows import (
    NOW,
    add_dnc,
    add_past_call,
    add_task,
    add_tasks,
    add_tenant,
    events,
    kinds,
    settings,
    statuses,
    task_row,
    task_values,
)

pytestmark = pytest.mark.integration

PARIS_DAYTIME = (dt.time(9), dt.time(20), range(6))


async def claim(
    db: Database,
    *,
    now: dt.datetime = NOW,
    limit: int = 50,
    global_max_active: int = 1000,
    cap: int = 3,
    owner: str = "supervisor-1",
) -> list[ClaimedTask]:
    return await claim_due_tasks(
        db,
        owner=owner,
        now=now,
        limit=limit,
        lease_seconds=30,
        global_max_active=global_max_active,
        settings=settings(destination_daily_cap=cap),
    )


def ids(claimed: list[ClaimedTask]) -> set[uuid.UUID]:
    return {c.task_id for c in claimed}


def phone(i: int) -> str:
    return f"+1415555{i:04d}"


async def test_claims_only_due_claimable_tasks_not_asked_to_cancel(database: Database) -> None:
    tenant = await add_tenant(database)
    due_pending = await add_task(database, tenant, phone=phone(1))
    due_retry = await add_task(
        database, tenant, phone=phone(2), status=TaskStatus.RETRY_SCHEDULED, total_calls=1
    )
    future = await add_task(database, tenant, next_action_time=NOW + dt.timedelta(seconds=1))
    cancel_asked = await add_task(database, tenant, cancel_requested_at=NOW)
    unscheduled = await add_task(database, tenant, next_action_time=None)
    waiting = await add_task(database, tenant, status=TaskStatus.PENDING_USER_INFO)

    claimed = await claim(database)

    assert ids(claimed) == {due_pending, due_retry}
    states = await statuses(database, [future, cancel_asked, unscheduled, waiting])
    assert set(states.values()) == {TaskStatus.PENDING, TaskStatus.PENDING_USER_INFO}
    assert await claim(database) == []


async def test_claim_moves_to_in_progress_with_owner_lease_version_and_event(
    database: Database,
) -> None:
    tenant = await add_tenant(database)
    task_id = await add_task(
        database,
        tenant,
        phone="+14155550100",
        status=TaskStatus.RETRY_SCHEDULED,
        total_calls=1,
        current_attempt_count=1,
    )

    (claimed,) = await claim(database, owner="sup-A")

    row = await task_row(database, task_id)
    assert row.status is TaskStatus.IN_PROGRESS
    assert (row.owner, row.lease_expires_at) == ("sup-A", NOW + dt.timedelta(seconds=30))
    assert row.version == 2 == claimed.version
    assert row.total_calls == 1  # a call is counted when the TaskActor creates it
    assert claimed.attempt_number == 2
    assert claimed.due_at == NOW - dt.timedelta(minutes=1)
    (event,) = await events(database, task_id)
    assert event.kind is EventKind.DIAL_STARTED
    assert event.message == "Dialing +14155550100 (attempt 2 of 3)"
    assert event.at == NOW
    assert event.data == {"attempt_number": 2, "owner": "sup-A"}


async def test_claims_longest_due_first_up_to_the_limit(database: Database) -> None:
    tenant = await add_tenant(database)
    rows = [
        task_values(tenant, phone=phone(i), next_action_time=NOW - dt.timedelta(minutes=i))
        for i in range(1, 11)
    ]
    task_ids = await add_tasks(database, rows)

    claimed = await claim(database, limit=4)

    assert [c.task_id for c in claimed] == task_ids[:-5:-1]


async def test_outside_the_window_defers_to_its_opening_without_a_status_change(
    database: Database,
) -> None:
    tenant = await add_tenant(database)
    early = dt.datetime(2026, 3, 4, 6, 30, tzinfo=dt.UTC)  # 07:30 in Paris
    by_zone = await add_task(
        database, tenant, timezone="Europe/Paris", window=PARIS_DAYTIME, next_action_time=early
    )
    by_number = await add_task(
        database,
        tenant,
        timezone=None,
        phone="+33142685300",
        window=PARIS_DAYTIME,
        next_action_time=early,
    )

    assert await claim(database, now=early) == []

    for task_id in (by_zone, by_number):
        row = await task_row(database, task_id)
        assert row.status is TaskStatus.PENDING
        assert row.next_action_time == dt.datetime(2026, 3, 4, 8, 0, tzinfo=dt.UTC)
        assert row.version == 2
        (event,) = await events(database, task_id)
        assert event.kind is EventKind.DEFERRED
        assert event.message == "Outside the calling window — next try 09:00 Europe/Paris"
    sunday = dt.datetime(2026, 3, 8, 12, tzinfo=dt.UTC)
    await add_task(
        database,
        tenant,
        timezone="Europe/Paris",
        window=PARIS_DAYTIME,
        next_action_time=sunday,
        phone=phone(7),
    )
    assert await claim(database, now=sunday) == []
    last = (await events(database, by_zone))[-1]
    assert last.message == "Outside the calling window — next try Mon 09:00 Europe/Paris"
    assert len(await claim(database, now=dt.datetime(2026, 3, 9, 8, tzinfo=dt.UTC))) == 3


async def test_a_number_on_the_tenants_dnc_list_fails_the_task(database: Database) -> None:
    tenant, other = await add_tenant(database), await add_tenant(database)
    await add_dnc(database, tenant, "+14155550100")
    listed = await add_task(database, tenant, phone="+14155550100")
    not_listed_there = await add_task(database, other, phone="+14155550100")

    claimed = await claim(database)

    assert ids(claimed) == {not_listed_there}
    row = await task_row(database, listed)
    assert (row.status, row.next_action_time, row.finished_at) == (TaskStatus.FAILED, None, NOW)
    (event,) = await events(database, listed)
    assert event.kind is EventKind.FAILED
    assert "is on the do-not-call list" in event.message


async def test_global_cap_counts_tasks_in_progress(database: Database) -> None:
    tenant = await add_tenant(database)
    for i in range(2):
        await add_task(
            database, tenant, phone=phone(90 + i), status=TaskStatus.IN_PROGRESS, owner="x"
        )
    await add_tasks(database, [task_values(tenant, phone=phone(i)) for i in range(5)])

    assert len(await claim(database, global_max_active=3)) == 1
    assert await claim(database, global_max_active=3) == []
    assert len(await claim(database, global_max_active=10)) == 4


async def test_tenant_concurrency_cap_leaves_its_tasks_due_and_serves_other_tenants(
    database: Database,
) -> None:
    busy = await add_tenant(database, concurrent=2)
    other = await add_tenant(database)
    # The busy tenant's backlog is due first; the other tenant must still get its turn.
    await add_tasks(
        database,
        [
            task_values(busy, phone=phone(i), next_action_time=NOW - dt.timedelta(hours=1))
            for i in range(20)
        ],
    )
    mine = await add_task(database, other, phone=phone(50))

    claimed = await claim(database, limit=5)

    by_tenant = [c.tenant_id for c in claimed]
    assert by_tenant.count(busy) == 2
    assert mine in ids(claimed)
    assert await claim(database, limit=5) == []  # busy is at its cap; its tasks stay due
    remaining = await statuses(database, [c.task_id for c in claimed])
    assert set(remaining.values()) == {TaskStatus.IN_PROGRESS}


async def test_dial_rate_counts_dial_started_events_of_the_last_minute(database: Database) -> None:
    tenant = await add_tenant(database, rate=3)
    await add_tasks(database, [task_values(tenant, phone=phone(i)) for i in range(8)])

    assert len(await claim(database)) == 3
    assert await claim(database, now=NOW + dt.timedelta(seconds=59)) == []
    assert len(await claim(database, now=NOW + dt.timedelta(seconds=61))) == 3


async def test_daily_quota_counts_claims_of_the_last_24_hours(database: Database) -> None:
    tenant = await add_tenant(database, quota=4, rate=3)
    await add_tasks(database, [task_values(tenant, phone=phone(i)) for i in range(10)])

    first = await claim(database)
    second = await claim(database, now=NOW + dt.timedelta(minutes=2))
    third = await claim(database, now=NOW + dt.timedelta(hours=23))
    fourth = await claim(database, now=NOW + dt.timedelta(hours=24, seconds=1))

    assert [len(first), len(second), len(third), len(fourth)] == [3, 1, 0, 3]


async def test_destination_cap_spans_tenants_and_defers_to_when_a_slot_frees(
    database: Database,
) -> None:
    a, b = await add_tenant(database), await add_tenant(database)
    number = "+14155550123"
    old = await add_task(database, a, phone=number, status=TaskStatus.ANALYZING, owner="x")
    await add_past_call(database, old, created_at=NOW - dt.timedelta(hours=20))
    await add_past_call(database, old, created_at=NOW - dt.timedelta(hours=30))  # too old
    rows = [
        task_values(t, phone=number, next_action_time=NOW - dt.timedelta(minutes=10 - i))
        for i, t in enumerate([a, b, a, b])
    ]
    task_ids = await add_tasks(database, rows)

    claimed = await claim(database, cap=3)

    assert [c.task_id for c in claimed] == task_ids[:2]  # 1 call today + 2 claims = 3
    for deferred in task_ids[2:]:
        row = await task_row(database, deferred)
        assert row.status is TaskStatus.PENDING
        assert row.next_action_time == NOW + dt.timedelta(hours=4)  # the 20-hour-old call
        (event,) = await events(database, deferred)
        assert event.kind is EventKind.DEFERRED
        assert "Daily limit of 3 calls to +14155550123" in event.message


async def test_destination_cap_skips_exempt_tenants(database: Database) -> None:
    regular = await add_tenant(database)
    exempt = await add_tenant(database, exempt=True)
    number = "+14155550123"
    capped = [task_values(regular, phone=number) for _ in range(2)]
    free = [task_values(exempt, phone=number) for _ in range(3)]
    await add_tasks(database, capped + free)

    claimed = await claim(database, cap=1)

    assert [c.tenant_id for c in claimed].count(exempt) == 3
    assert [c.tenant_id for c in claimed].count(regular) == 1


async def test_claims_without_a_call_yet_count_against_the_destination_cap(
    database: Database,
) -> None:
    tenant = await add_tenant(database)
    number = "+14155550123"
    await add_task(database, tenant, phone=number)
    assert len(await claim(database, cap=1)) == 1
    later = await add_task(database, tenant, phone=number)

    a_minute_later = NOW + dt.timedelta(minutes=1)
    assert await claim(database, cap=1, now=a_minute_later) == []

    # The pending claim will dial about now: its slot frees 24 hours from now.
    row = await task_row(database, later)
    assert row.next_action_time == a_minute_later + dt.timedelta(hours=24)
    assert await kinds(database, later) == [EventKind.DEFERRED]


async def test_every_claimed_task_gets_exactly_one_event_per_change(database: Database) -> None:
    tenant = await add_tenant(database, concurrent=5)
    await add_dnc(database, tenant, phone(3))
    rows: list[dict[str, Any]] = [task_values(tenant, phone=phone(i)) for i in range(12)]
    task_ids = await add_tasks(database, rows)

    claimed = await claim(database)

    assert len(claimed) == 5
    for task_id in task_ids:
        row = await task_row(database, task_id)
        expected = {
            TaskStatus.IN_PROGRESS: [EventKind.DIAL_STARTED],
            TaskStatus.FAILED: [EventKind.FAILED],
            TaskStatus.PENDING: [],
        }[row.status]
        assert await kinds(database, task_id) == expected
        assert row.version == (1 if row.status is TaskStatus.PENDING else 2)
