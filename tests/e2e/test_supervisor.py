"""The Supervisor and the TaskActors under failure and load: nothing lost, nothing dialed twice."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import ray
from ray.exceptions import RayError

from actors.supervisor import home_of
from db.repo import tasks
from db.repo.system import claim_due_tasks
from db.repo.views import TaskDetail
from db.states import TaskStatus
from tests.e2e._lifecycle import (
    DONE,
    LIFECYCLE_WORLD,
    LONG_TALK,
    QUICK,
    Lifecycle,
    MakeLifecycle,
    lifecycle_fixture,  # noqa: F401 -- registers the fixture
    make_lifecycle_fixture,  # noqa: F401 -- registers the fixture
)

pytestmark = [pytest.mark.e2e, pytest.mark.world(LIFECYCLE_WORLD)]

ONE_GOOD_CALL = [
    "TASK_CREATED",
    "DIAL_STARTED",
    "CALL_ANSWERED",
    "CALL_ENDED",
    "ANALYZED",
    "COMPLETED",
]


async def _status_after_restart(
    handle: Any, old_owner: str, within: float = 30.0
) -> dict[str, Any]:
    """The supervisor's status once its restarted incarnation answers."""
    deadline = time.monotonic() + within
    while True:
        try:
            status: dict[str, Any] = await asyncio.wait_for(handle.status.remote(), 5)
            if status["owner"] != old_owner:
                return status
        except (RayError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the supervisor did not come back")
        await asyncio.sleep(0.1)


def _story(detail: TaskDetail) -> str:
    """The task's trail and calls, for a failure message."""
    lines = [f"{e.at:%H:%M:%S.%f} {e.kind.value}: {e.message}" for e in detail.events]
    lines += [
        f"call {c.attempt_number}: {c.status.value} {c.telephony_result} {c.end_reason} "
        f"{c.outcome} created {c.created_at:%H:%M:%S.%f} answered {c.answered_at} "
        f"ended {c.ended_at}"
        for c in detail.calls
    ]
    return "\n".join(lines)


def _assert_dialed_once(run: Lifecycle, detail: TaskDetail) -> None:
    assert len(detail.calls) == 1
    assert run.originates(detail.calls) == {str(detail.calls[0].id): 1}


async def test_supervisor_killed_mid_call_restarts_and_loses_nothing(lifecycle: Lifecycle) -> None:
    talking = await lifecycle.add_task(LONG_TALK)
    await lifecycle.wait_event(talking, "CALL_ANSWERED")
    (supervisor,) = lifecycle.supervisors
    before = await supervisor.status.remote()
    await asyncio.to_thread(ray.kill, supervisor, no_restart=False)
    later = await lifecycle.add_task(DONE)  # created while the supervisor is down
    after = await _status_after_restart(supervisor, before["owner"])
    assert home_of(after["owner"]) == home_of(before["owner"])  # same home, new incarnation
    for task_id in (talking, later):
        detail = await lifecycle.wait_status(task_id, TaskStatus.COMPLETED, TaskStatus.FAILED)
        assert [e.kind.value for e in detail.events] == ONE_GOOD_CALL
        _assert_dialed_once(lifecycle, detail)
    assert lifecycle.dialed(LONG_TALK) == 1 and lifecycle.dialed(DONE) == 1


async def test_task_actor_killed_mid_call_restarts_and_the_result_lands(
    lifecycle: Lifecycle,
) -> None:
    task_id = await lifecycle.add_task(LONG_TALK)
    await lifecycle.wait_event(task_id, "CALL_ANSWERED")
    actor = await lifecycle.task_actor(task_id)
    owner = (await actor.status.remote())["owner"]
    await asyncio.to_thread(ray.kill, actor, no_restart=False)
    detail = await lifecycle.wait_status(
        task_id, TaskStatus.COMPLETED, TaskStatus.FAILED, within=60
    )
    assert detail.task.status is TaskStatus.COMPLETED
    assert [e.kind.value for e in detail.events] == ONE_GOOD_CALL
    _assert_dialed_once(lifecycle, detail)
    (call,) = detail.calls
    callee = [t.text for t in call.transcript if t.speaker.value == "callee"]
    assert callee[-1] == "Yes, fine."  # what was said after the restart was persisted too
    assert owner.startswith(f"task:{task_id}@")


async def test_claim_whose_claimer_died_is_reconciled(lifecycle: Lifecycle) -> None:
    # A supervisor incarnation of this namespace claims the task and dies before handing it
    # over: its lease expires and the living supervisor's sweep hands the task to its actor.
    await lifecycle.supervisors[0].drain.remote()  # the living supervisor claims nothing new
    task_id = await lifecycle.add_task(QUICK)
    session = ray.get_runtime_context().get_session_name()
    dead = f"supervisor:{lifecycle.namespace}@{session}#deadbeef"
    settings = lifecycle.settings
    claimed = await claim_due_tasks(
        lifecycle.db,
        owner=dead,
        now=lifecycle.clock.now(),
        limit=1,
        lease_seconds=settings.heartbeat_lease,
        global_max_active=10,
        settings=settings,
    )
    assert [c.task_id for c in claimed] == [task_id]
    detail = await lifecycle.wait_status(
        task_id, TaskStatus.COMPLETED, TaskStatus.FAILED, within=30
    )
    assert [e.kind.value for e in detail.events] == ONE_GOOD_CALL
    assert detail.events[1].data["owner"] == dead
    status = await lifecycle.supervisors[0].status.remote()
    assert status["reconciled"] >= 1 and status["claimed"] == 0
    _assert_dialed_once(lifecycle, detail)


async def test_tenant_concurrency_cap_holds_with_20_due_tasks(
    make_lifecycle: MakeLifecycle,
) -> None:
    cap = 4
    run = await make_lifecycle(tenant={"max_concurrent_calls": cap})
    ids = [await run.add_task(QUICK) for _ in range(20)]
    busiest = 0
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        busy = await tasks.count_tasks(run.db, run.tenant_id, status=TaskStatus.IN_PROGRESS)
        busiest = max(busiest, busy)
        done = await tasks.count_tasks(run.db, run.tenant_id, status=TaskStatus.COMPLETED)
        if done == len(ids):
            break
        await asyncio.sleep(0.05)
    assert busiest == cap  # the cap was reached and never exceeded
    details = [await run.detail(task_id) for task_id in ids]
    assert all(d.task.status is TaskStatus.COMPLETED for d in details)
    calls = [c for d in details for c in d.calls]
    assert len(calls) == 20 and run.dialed(QUICK) == 20
    assert set(run.originates(calls).values()) == {1}
    # From the rows alone: never more than `cap` calls of the tenant at once.
    edges = sorted(
        [(c.created_at, 1) for c in calls] + [(c.ended_at, -1) for c in calls if c.ended_at]
    )
    live = peak = 0
    for _, step in edges:
        live += step
        peak = max(peak, live)
    assert peak <= cap


@pytest.mark.postgres
async def test_two_supervisors_on_one_postgres_never_dial_a_task_twice(
    make_lifecycle: MakeLifecycle, pg_url: str
) -> None:
    run = await make_lifecycle(url=pg_url, supervisor=False)
    first = await run.start_supervisor()
    second = await run.start_supervisor(f"{run.namespace}-b")
    ids = [await run.add_task(QUICK) for _ in range(6)]
    await asyncio.gather(first.wake.remote(), second.wake.remote())
    details = [
        await run.wait_status(task_id, TaskStatus.COMPLETED, TaskStatus.FAILED, within=120)
        for task_id in ids
    ]
    owners = set()
    for detail in details:
        assert [e.kind.value for e in detail.events] == ONE_GOOD_CALL, _story(detail)
        _assert_dialed_once(run, detail)
        owners.add(detail.events[1].data["owner"])
    assert run.dialed(QUICK) == 6
    names = {(await s.status.remote())["owner"] for s in (first, second)}
    assert owners <= names
