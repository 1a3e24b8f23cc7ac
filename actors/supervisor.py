"""Supervisor: claims due tasks and hands each to its TaskActor; reconciles; expires waits.

One detached, restartable actor named ``supervisor`` per namespace (DESIGN.md §2). Every tick
(``scheduler_tick`` ≤ 1 s, or at once on ``wake()``) it:

1. claims due tasks (:func:`db.repo.system.claim_due_tasks`: calling windows, tenant caps, dial
   rate, the destination cap and the DNC list are all decided in that one transaction, which
   moves each claimed task to ``IN_PROGRESS`` with this supervisor as owner and a lease) and
   hands each to its TaskActor (``task:<id>``, got or created, then ``start()``ed);
2. sweeps for active tasks whose lease expired and hands them to their TaskActor again, which
   takes the lease over (**reconcile**): a TaskActor that died is re-created, one that a crash
   left idle is restarted;
3. expires ``PENDING_USER_INFO`` tasks past their limit.

It never writes an active task's lifecycle: the claim is its only task write besides the expiry
sweep (a waiting task). Its state is the database: ``__init__`` only stores the settings and
schedules the loop, so a restart (``max_restarts=-1``) resumes by itself and its first sweep is
the reconcile. Its owner label is stable per namespace and Ray cluster plus an incarnation:
``supervisor:<namespace>@<ray session>#<hex>``; a lease whose label names another cluster is
left to that cluster's supervisor for a grace period before it is taken over here.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Coroutine
from typing import Any, Final

import ray
from ray.exceptions import RayError

from actors.options import task_actor_options
from actors.task import TaskActorRemote
from actors.task_clock import Clock
from db.engine import Database, open_database
from db.repo.snapshots import TaskSnapshot
from db.repo.system import (
    claim_due_tasks,
    expire_pending_user_info,
    find_expired_leases,
    load_task_snapshot,
)
from opendeep.logging import setup_logging
from opendeep.settings import Settings

__all__ = ["Supervisor", "SupervisorRemote", "home_of"]

log = logging.getLogger(__name__)

CLAIM_BATCH: Final = 50  # tasks claimed per query at most
START_WINDOW: Final = 8  # TaskActors being started at once at most (each is a new process)
SWEEP_BATCH: Final = 100  # expired leases looked at per sweep
EXPIRY_EVERY: Final = (
    30.0  # s between PENDING_USER_INFO expiry sweeps (a quarter of a short expiry)
)
START_TIMEOUT: Final = 60.0  # s for a TaskActor to be placed and answer start()
HAND_OVER_TRIES: Final = 5  # a TaskActor that is just exiting answers "finishing": try again
FOREIGN_GRACE_LEASES: Final = 3.0  # leases an expired foreign lease waits for its own cluster
"""(and, with a live call, until that call must be over: see ``Supervisor._may_reconcile``)."""


def home_of(owner: str | None) -> str | None:
    """The ``<namespace>@<ray session>`` an owner label names (``None`` for other labels)."""
    if not owner or "@" not in owner:
        return None
    return owner.split("@", 1)[1].split("#", 1)[0]


class Supervisor:
    """The scheduling loop of one namespace: claim, hand over, reconcile, expire."""

    def __init__(
        self,
        settings: Settings,
        namespace: str,
        *,
        clock: Clock | None = None,
        home: str | None = None,
        start_window: int = START_WINDOW,
    ) -> None:
        setup_logging(settings.log_level)
        self._settings = settings
        self._namespace = namespace
        self._clock = clock or Clock()
        self._start_window = start_window
        self._home = home or f"{namespace}@{ray.get_runtime_context().get_session_name()}"
        self._incarnation = uuid.uuid4().hex[:8]
        self.owner = f"supervisor:{self._home}#{self._incarnation}"
        self._db: Database | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handing: set[uuid.UUID] = set()
        self._recently_handed: dict[uuid.UUID, float] = {}
        """Task -> loop time until which a fresh hand-over is not repeated by the sweep."""
        self._wake = asyncio.Event()
        self._draining = False
        self._last_expiry = float("-inf")
        self._figures = {"ticks": 0, "claimed": 0, "handed": 0, "reconciled": 0, "expired": 0}
        self._errors = 0
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # built outside an event loop (a unit test): start() starts the loop
        self._ensure_started()

    # -- the remote interface ------------------------------------------------------------------
    async def start(self) -> None:
        """Make sure the scheduling loop runs (idempotent)."""
        self._ensure_started()

    async def wake(self) -> None:
        """Tick now (a task was created or became due)."""
        self._ensure_started()
        self._wake.set()

    async def drain(self) -> None:
        """Stop claiming new tasks; reconcile and expiry sweeps go on (``opendeep up`` Ctrl-C)."""
        self._draining = True
        self._wake.set()

    async def status(self) -> dict[str, Any]:
        """What the loop has done, for operators and tests."""
        return {
            "owner": self.owner,
            "namespace": self._namespace,
            "draining": self._draining,
            "running": self._loop_task is not None and not self._loop_task.done(),
            "handing_over": len(self._handing),
            "errors": self._errors,
            **self._figures,
        }

    async def close(self) -> None:
        """Stop the loop and hand-overs in flight; close the database connections."""
        loop_task, self._loop_task = self._loop_task, None
        pending = [t for t in (loop_task, *self._tasks) if t is not None]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    # -- the loop ------------------------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(
                self._loop(), name="supervisor"
            )

    def _database(self) -> Database:
        if self._db is None:
            self._db = open_database(self._settings.resolved_database_url, pool_size=2)
        return self._db

    async def _loop(self) -> None:
        log.info(
            "supervisor %s: scheduling (tick %.2f s)", self.owner, self._settings.scheduler_tick
        )
        while True:
            try:
                await self.tick()
            except Exception:  # the actor's top loop: log, count, carry on next tick
                self._errors += 1
                log.exception("supervisor %s: tick failed", self.owner)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.scheduler_tick)
            self._wake.clear()

    async def tick(self) -> None:
        """One round: claim and hand over, reconcile expired leases, expire long waits."""
        self._figures["ticks"] += 1
        if not self._draining:
            await self._claim()
        await self._reconcile()
        loop = asyncio.get_running_loop()
        expiry = self._settings.pending_user_info_expiry_seconds
        if loop.time() - self._last_expiry >= min(EXPIRY_EVERY, expiry / 4):
            self._last_expiry = loop.time()
            self._figures["expired"] += await expire_pending_user_info(
                self._database(),
                now=self._clock.now(),
                expiry_seconds=self._settings.pending_user_info_expiry_seconds,
            )

    async def _claim(self) -> None:
        """Claim as many due tasks as there is room to start TaskActors for, and hand them over.

        Claims follow the actors' start-up (about one a second per core here, DESIGN.md §9):
        a task waiting as a due row costs nothing, while a claimed one holds a lease its actor
        must take over in time and counts against the tenant's concurrency.
        """
        s = self._settings
        while (room := min(CLAIM_BATCH, self._start_window - len(self._handing))) > 0:
            claimed = await claim_due_tasks(
                self._database(),
                owner=self.owner,
                now=self._clock.now(),
                limit=room,
                lease_seconds=s.heartbeat_lease,
                global_max_active=s.max_concurrent_calls,
                settings=s,
            )
            self._figures["claimed"] += len(claimed)
            for task in claimed:
                self._hand_over(task.task_id)
            if len(claimed) < room:
                return

    async def _reconcile(self) -> None:
        """Hand tasks whose lease expired to their TaskActor again (it takes the lease over)."""
        db, now = self._database(), self._clock.now()
        loop = asyncio.get_running_loop()
        for task_id in await find_expired_leases(db, now=now, limit=SWEEP_BATCH):
            if task_id in self._handing or self._recently_handed.get(task_id, -1e9) > loop.time():
                continue  # being started, or started a moment ago and busy coming up
            snap = await load_task_snapshot(db, task_id)
            if not self._may_reconcile(snap, now):
                continue
            log.warning(
                "supervisor: lease of task %s (owner %s) expired: reconciling", task_id, snap.owner
            )
            self._figures["reconciled"] += 1
            self._hand_over(task_id)

    def _may_reconcile(self, snap: TaskSnapshot, now: dt.datetime) -> bool:
        """Whether an expired lease is this supervisor's to reconcile now.

        Ours (same namespace and Ray cluster), or nobody's: at once. Another cluster's: only
        once its supervisor had time to do it; and while the task has a live call, only once
        that call must be over (its CallActor lives in that cluster, where no TaskActor of ours
        can see it: taking the task earlier could dial the callee while that call goes on).
        """
        home = home_of(snap.owner)
        if home is None or home == self._home or snap.lease_expires_at is None:
            return True
        s = self._settings
        grace = FOREIGN_GRACE_LEASES * s.heartbeat_lease
        if snap.current_call is not None:
            grace = max(grace, s.ring_timeout + s.connect_timeout + s.max_call_duration)
        return (now - snap.lease_expires_at).total_seconds() >= grace

    # -- handing a task to its actor -----------------------------------------------------------
    def _hand_over(self, task_id: uuid.UUID) -> None:
        if task_id in self._handing:
            return
        self._handing.add(task_id)
        self._spawn(self._start_task_actor(task_id), f"hand-over-{task_id}")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._errors += 1
            log.error("supervisor: %s failed", task.get_name(), exc_info=exc)

    async def _start_task_actor(self, task_id: uuid.UUID) -> None:
        """Get or create ``task:<id>`` and start it; retried while an old one is exiting."""
        try:
            for attempt in range(HAND_OVER_TRIES):
                handle = await asyncio.to_thread(self._task_actor, task_id)
                try:
                    if await asyncio.wait_for(handle.start.remote(), START_TIMEOUT):
                        self._figures["handed"] += 1
                        self._cool_down(task_id)
                        return
                except (RayError, TimeoutError) as exc:
                    log.info("supervisor: task:%s not started (%s); retrying", task_id, exc)
                await asyncio.sleep(0.1 * (attempt + 1))
            log.error("supervisor: task:%s could not be started; its lease will expire", task_id)
        finally:
            self._handing.discard(task_id)

    def _cool_down(self, task_id: uuid.UUID) -> None:
        """A started TaskActor gets one lease to take its lease over before a sweep re-checks."""
        now = asyncio.get_running_loop().time()
        self._recently_handed = {t: u for t, u in self._recently_handed.items() if u > now}
        self._recently_handed[task_id] = now + self._settings.heartbeat_lease

    def _task_actor(self, task_id: uuid.UUID) -> Any:
        """The TaskActor of ``task_id`` (created if none lives). Blocking: run in a thread."""
        options = task_actor_options(task_id, self._namespace)
        return TaskActorRemote.options(**options, get_if_exists=True).remote(
            task_id,
            self._settings,
            self._namespace,
            f"task:{task_id}@{self._home}",
            clock=self._clock,
        )


SupervisorRemote = ray.remote(Supervisor)
"""The actor class; create it with ``SupervisorRemote.options(**supervisor_options(ns))``."""
