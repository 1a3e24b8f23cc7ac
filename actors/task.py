"""TaskActor: the one writer of an active task's lifecycle (DESIGN.md §2, §4).

One detached actor ``task:<id>`` per task that is ``IN_PROGRESS`` or ``ANALYZING``. It takes the
lease over, finds or places the task's call, persists every message the CallActor reports
(exactly once, by ``seq``), keeps lease and call heartbeat fresh, forwards the creator's HITL
answer into the live call, honours a cancel request, runs the post-call analysis and the
policy, and exits (``ray.actor.exit_actor()``) once the task waits or is finished: waiting
tasks are rows, not actors.

Starting. Ray runs an async actor's ``__init__`` on the actor's running event loop (checked on
Ray 2.60: ``asyncio.get_running_loop()`` succeeds there and tasks created there run), so
``__init__`` stores its arguments and schedules the work as one tracked background task. A
restart (``max_restarts=-1``) re-runs ``__init__`` and so resumes by itself from the database,
without anyone calling in; ``start()``, ``report()`` and ``nudge()`` also (re)start the work if
it is not running, so nothing depends on the loop-in-``__init__`` detail.

Owner label. ``<label>#<incarnation>``: the Supervisor's label says which namespace and Ray
cluster the actor lives in, the incarnation which start of it holds the lease.
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
from ray.exceptions import AsyncioActorExit, RayError
from sqlalchemy.exc import SQLAlchemyError

from actors.call_spec import CallSpec
from actors.task_analysis import Analyse, conclude_call
from actors.task_call import (
    CallNotPlacedError,
    build_brief,
    call_alive,
    find_call,
    free_call_slots,
    kill_actor,
    place_call,
)
from actors.task_clock import Clock
from ai.analysis import Analyser
from db.engine import Database, open_database
from db.messages import CallMessage, CallMessageKind, HitlRequested
from db.repo._core import ConflictError, NotFoundError, RepoError
from db.repo.accounts import get_tenant
from db.repo.snapshots import TaskSnapshot, load_task_snapshot
from db.repo.system import (
    apply_call_event,
    cancel_active_task,
    create_call,
    defer_task,
    note_task_event,
    pending_answer,
    recover_vanished_call,
    renew_lease,
    resolve_hitl_timeout,
    take_over_lease,
)
from db.states import ACTIVE_TASK_STATUSES, EventKind, HitlStatus, TaskStatus
from db.windows import zone
from opendeep.logging import setup_logging
from opendeep.settings import Settings

__all__ = ["TaskActor", "TaskActorRemote"]

log = logging.getLogger(__name__)

HITL_POLL: Final = 0.1  # s between looks at an open question's row (a nudge looks at once)
ROW_POLL_MIN: Final = 0.5  # s at least between looks at the task row (cancel) during a call
NO_SLOT_RETRY: Final = 10.0  # s before a task deferred for want of a call slot is due again
CANCEL_GRACE: Final = 60.0  # s for a cancelled call to end politely before it is cut
MAX_CRASHES: Final = 3  # unexpected failures of the work before the actor gives up and exits
CRASH_PAUSE: Final = 2.0  # s before the work is tried again after an unexpected failure


class LeaseLostError(RuntimeError):
    """Another owner holds the task now (or it left the active states): stop working on it."""


class TaskActor:
    """Drives one active task through its call, the analysis and the policy, then exits."""

    def __init__(
        self,
        task_id: uuid.UUID | str,
        settings: Settings,
        namespace: str,
        owner: str,
        *,
        clock: Clock | None = None,
        analyse: Analyse | None = None,
        exit_when_done: bool = True,
    ) -> None:
        setup_logging(settings.log_level)
        self._task_id = uuid.UUID(str(task_id))
        self._settings = settings
        self._namespace = namespace
        self._owner = f"{owner}#{uuid.uuid4().hex[:8]}"
        self._clock = clock or Clock()
        self._analyse = analyse
        self._gemini: Analyser | None = None
        self._exit_when_done = exit_when_done
        self._db: Database | None = None
        self._main: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._lease_lost = asyncio.Event()
        self._ended: set[uuid.UUID] = set()
        self._handles: dict[uuid.UUID, Any] = {}
        self._question: uuid.UUID | None = None
        self._forwarded: set[uuid.UUID] = set()
        self._phase = "created"
        self._finished = False
        self._crashes = 0
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # built outside an event loop (a unit test): start() starts the work
        self._ensure_started()

    # -- the remote interface ----------------------------------------------------------------
    async def start(self) -> bool:
        """Make sure the work runs; ``False`` when this actor is finishing (create a new one)."""
        self._ensure_started()
        return not self._finished

    async def report(self, msg: dict[str, Any]) -> None:
        """Persist one CallActor message exactly once (duplicates are dropped) and react."""
        self._ensure_started()
        message = CallMessage.model_validate(msg)
        try:
            await apply_call_event(
                self._database(),
                call_id=message.call_id,
                seq=message.seq,
                kind=message.kind,
                payload=message.payload,
                now=self._clock.now(),
            )
        except (NotFoundError, ConflictError, ValueError) as exc:
            # Nothing to persist it to (or it contradicts the rows): retrying cannot help.
            log.error("task %s: message %s dropped: %s", self._task_id, message.kind, exc)
            return
        if isinstance(message.payload, HitlRequested):
            self._question = message.payload.request_id
        elif message.kind is CallMessageKind.ENDED:
            self._ended.add(message.call_id)
        self._wake.set()

    async def resolve_hitl_timeout(self, request_id: str) -> str:
        """The call's timer fired: ``TIMED_OUT`` unless the answer won (then it is forwarded)."""
        self._ensure_started()
        rid = uuid.UUID(request_id)
        status = await resolve_hitl_timeout(self._database(), rid, now=self._clock.now())
        if status is HitlStatus.ANSWERED:
            self._question = rid  # the watcher forwards it at once
            self._wake.set()
        return status.value

    async def nudge(self) -> None:
        """Look at the database now (a new answer, a cancel request) instead of at the next poll."""
        self._ensure_started()
        self._wake.set()

    async def status(self) -> dict[str, Any]:
        """Where the work is (for the Supervisor, tests and operators)."""
        return {
            "task_id": str(self._task_id),
            "owner": self._owner,
            "phase": self._phase,
            "finished": self._finished,
            "crashes": self._crashes,
            "question": str(self._question) if self._question else None,
            "calls": [str(c) for c in self._handles],
        }

    async def close(self) -> None:
        """Stop the work and every background task; close the database connections."""
        main, self._main = self._main, None
        current = asyncio.current_task()
        pending = [t for t in (main, *self._tasks) if t is not None and t is not current]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        await self._release()

    # -- starting and stopping ---------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._finished or (self._main is not None and not self._main.done()):
            return
        self._main = asyncio.get_running_loop().create_task(
            self._run(), name=f"task-{self._task_id}"
        )
        self._main.add_done_callback(self._main_done)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("task %s: %s failed", self._task_id, task.get_name(), exc_info=exc)

    def _main_done(self, task: asyncio.Task[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is not None and not isinstance(exc, AsyncioActorExit):
            log.error("task %s: work stopped", self._task_id, exc_info=exc)

    def _database(self) -> Database:
        if self._db is None:
            # One pooled connection (two at a burst) per TaskActor: its units of work are short
            # and mostly one at a time; a NullPool would fork a PostgreSQL backend per poll.
            self._db = open_database(self._settings.resolved_database_url, pool_size=1)
        return self._db

    async def _release(self) -> None:
        gemini, self._gemini = self._gemini, None
        if gemini is not None:
            self._analyse = None
            await gemini.close()
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    async def _run(self) -> None:
        """The actor's top loop: do the work, then exit; an unexpected failure is retried."""
        try:
            await self._work()
        except LeaseLostError as exc:
            log.warning("task %s: stopping: %s", self._task_id, exc)
        except Exception as exc:  # the actor's top loop: log, record, try again a few times
            self._crashes += 1
            log.exception(
                "task %s: work failed (%d of %d)", self._task_id, self._crashes, MAX_CRASHES
            )
            await self._note_failure(exc)
            await self._stop_helpers()
            if self._crashes < MAX_CRASHES:
                self._phase = "retrying"
                await asyncio.sleep(CRASH_PAUSE)
                self._main = None
                self._ensure_started()
                return
        await self._finish()

    async def _stop_helpers(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _finish(self) -> None:
        self._finished = True
        self._phase = "finished"
        await self._stop_helpers()
        await self._release()
        log.info("task %s: no longer active here; actor exits", self._task_id)
        if self._exit_when_done:
            ray.actor.exit_actor()  # type: ignore[no-untyped-call]  # ray leaves it unannotated

    async def _note_failure(self, exc: Exception) -> None:
        try:
            await note_task_event(
                self._database(),
                self._task_id,
                owner=self._owner,
                kind=EventKind.TECHNICAL_FAILURE,
                message=f"Internal error while working on the task ({type(exc).__name__}); "
                + ("retrying" if self._crashes < MAX_CRASHES else "left for the supervisor"),
                data={"error": type(exc).__name__, "attempt": self._crashes},
                now=self._clock.now(),
            )
        except (RepoError, SQLAlchemyError, ValueError, OSError) as note_exc:
            log.warning("task %s: could not record the failure: %s", self._task_id, note_exc)

    # -- the work ----------------------------------------------------------------------------
    async def _work(self) -> None:
        """Take the lease, then step the task until it leaves the active states."""
        self._phase = "taking over"
        db = self._database()
        try:
            snap = await take_over_lease(
                db,
                self._task_id,
                owner=self._owner,
                now=self._clock.now(),
                lease_seconds=self._settings.heartbeat_lease,
            )
        except (ConflictError, NotFoundError) as exc:
            log.info("task %s: nothing to do: %s", self._task_id, exc)
            return
        self._lease_lost.clear()
        self._spawn(self._keep_lease(), f"lease-{self._task_id}")
        while snap.status in ACTIVE_TASK_STATUSES:
            self._check_lease()
            await self._step(snap)
            snap = await load_task_snapshot(db, self._task_id)
            if snap.status in ACTIVE_TASK_STATUSES and snap.owner != self._owner:
                raise LeaseLostError(f"taken over by {snap.owner}")

    async def _step(self, snap: TaskSnapshot) -> None:
        """One move of an active task: analyse, watch its call, cancel, or dial."""
        if snap.status is TaskStatus.ANALYZING:
            await self._conclude(snap)
        elif snap.current_call is not None:
            await self._follow_call(snap)
        elif snap.cancel_requested:
            await self._cancel(snap)
        else:
            await self._dial(snap)

    def _check_lease(self) -> None:
        if self._lease_lost.is_set():
            raise LeaseLostError("the lease could not be renewed")

    async def _keep_lease(self) -> None:
        """Renew the lease and the live call's heartbeat every lease/3 until it fails."""
        every = self._settings.heartbeat_lease / 3
        while True:
            await asyncio.sleep(every)
            try:
                ok = await renew_lease(
                    self._database(),
                    self._task_id,
                    owner=self._owner,
                    now=self._clock.now(),
                    lease_seconds=self._settings.heartbeat_lease,
                )
            except Exception:  # this helper's top loop: a passing database error must not end it
                log.exception("task %s: lease renewal failed; retrying", self._task_id)
                continue
            if not ok:
                self._lease_lost.set()
                self._wake.set()
                return

    async def _cancel(self, snap: TaskSnapshot) -> None:
        self._phase = "cancelling"
        await cancel_active_task(
            self._database(), self._task_id, owner=self._owner, now=self._clock.now()
        )

    async def _conclude(self, snap: TaskSnapshot) -> None:
        if snap.cancel_requested:
            await self._cancel(snap)
            return
        self._phase = "analysing"
        status = await conclude_call(
            self._database(),
            self._task_id,
            owner=self._owner,
            settings=self._settings,
            analyse=self._analyser(),
            now=self._clock.now,
        )
        log.info("task %s: analysed; now %s", self._task_id, status)

    def _analyser(self) -> Analyse:
        if self._analyse is None:
            self._gemini = Analyser(self._settings)
            self._analyse = self._gemini.analyse
        return self._analyse

    # -- dialing -------------------------------------------------------------------------------
    async def _dial(self, snap: TaskSnapshot) -> None:
        """Place the task's next call, or defer the task when it cannot be placed now."""
        self._phase = "dialing"
        now = self._clock.now()
        if not snap.window.contains(now):
            opens = snap.window.next_open(now)
            await self._defer(
                snap, opens, f"Outside the calling window — next try {_local(opens, snap)}"
            )
            return
        if await free_call_slots() < 1:
            await self._defer_no_slot(snap, "No free call slot")
            return
        tenant = await get_tenant(self._database(), snap.tenant_id)
        call_id = uuid.uuid4()
        spec = CallSpec.for_task(
            call_id=call_id,
            number=snap.phone,
            namespace=self._namespace,
            brief=build_brief(snap, on_behalf_of=tenant.name),
        )
        try:
            handle = await place_call(spec, self._settings)
        except CallNotPlacedError as exc:
            await self._defer_no_slot(snap, str(exc))
            return
        try:
            await create_call(
                self._database(),
                task_id=self._task_id,
                call_id=call_id,
                owner=self._owner,
                now=self._clock.now(),
            )
        except ConflictError as exc:  # cancel requested or lease lost meanwhile: re-read
            log.info("task %s: not dialing: %s", self._task_id, exc)
            await kill_actor(handle)
            return
        self._handles[call_id] = handle
        await handle.start.remote()
        log.info("task %s: call %s started", self._task_id, call_id)

    async def _defer_no_slot(self, snap: TaskSnapshot, why: str) -> None:
        due = snap.window.next_open(self._clock.now() + dt.timedelta(seconds=NO_SLOT_RETRY))
        await self._defer(snap, due, f"{why} — next try {_local(due, snap)}")

    async def _defer(self, snap: TaskSnapshot, due: dt.datetime, reason: str) -> None:
        await defer_task(
            self._database(),
            self._task_id,
            owner=self._owner,
            now=self._clock.now(),
            next_action_time=due,
            reason=reason,
        )

    # -- following a live call -------------------------------------------------------------------
    async def _follow_call(self, snap: TaskSnapshot) -> None:
        """Watch the live call until it ends; a call whose actor is gone is closed (RECOVERED)."""
        call = snap.current_call
        assert call is not None
        handle = self._handles.get(call.id) or await find_call(call.id, self._namespace)
        if handle is None or (call.id not in self._handles and await call_alive(handle) is False):
            await self._recover(call.id)
            return
        self._handles[call.id] = handle
        if snap.open_question is not None:
            self._question = snap.open_question.id
        self._phase = "in call"
        await self._watch(call.id, handle)

    async def _recover(self, call_id: uuid.UUID) -> None:
        self._phase = "recovering"
        recovered = await recover_vanished_call(
            self._database(), self._task_id, call_id, owner=self._owner, now=self._clock.now()
        )
        log.warning("task %s: call %s lost (recorded: %s)", self._task_id, call_id, recovered)

    async def _watch(self, call_id: uuid.UUID, handle: Any) -> None:
        """Until the call ends: forward answers, honour a cancel, notice a vanished CallActor."""
        loop = asyncio.get_running_loop()
        poll_every = max(self._settings.scheduler_tick, ROW_POLL_MIN)
        check_every = self._settings.heartbeat_lease / 3
        next_poll, next_check = loop.time() + poll_every, loop.time() + check_every
        cancel_sent: float | None = None
        while call_id not in self._ended:
            self._check_lease()
            wait = min(next_poll, next_check) - loop.time()
            if self._question is not None:
                wait = min(wait, HITL_POLL)
            await self._sleep(wait)
            if call_id in self._ended:
                return
            if self._question is not None:
                await self._forward_answer(handle)
            if loop.time() >= next_poll:
                next_poll = loop.time() + poll_every
                snap = await load_task_snapshot(self._database(), self._task_id)
                if snap.current_call is None or snap.current_call.id != call_id:
                    return  # ended (seen in the rows: e.g. delivered to an earlier incarnation)
                await self._track_question(snap, handle)
                if snap.cancel_requested and cancel_sent is None:
                    cancel_sent = loop.time()
                    await self._ask_cancel(handle)
            if loop.time() >= next_check:
                next_check = loop.time() + check_every
                if await self._call_gone(call_id, handle, cancel_sent):
                    return

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _track_question(self, snap: TaskSnapshot, handle: Any) -> None:
        """Follow the rows: a question seen PENDING is watched; one no longer PENDING is let go."""
        question = snap.open_question
        if question is not None and question.id not in self._forwarded:
            self._question = question.id
        elif question is None and self._question is not None:
            await self._forward_answer(handle)  # ANSWERED just now: forward it before letting go
            self._question = None

    async def _forward_answer(self, handle: Any) -> None:
        """Forward the creator's answer to the open question into the call (once)."""
        question = self._question
        if question is None:
            return
        if question in self._forwarded:
            self._question = None
            return
        answer = await pending_answer(self._database(), question)
        if answer is None:
            return
        self._forwarded.add(question)
        self._question = None
        try:
            injected = await handle.provide_user_info.remote(str(question), answer)
        except RayError as exc:
            log.warning("task %s: answer to %s not delivered: %s", self._task_id, question, exc)
            return
        log.info(
            "task %s: answer to %s forwarded (injected: %s)", self._task_id, question, injected
        )

    async def _ask_cancel(self, handle: Any) -> None:
        self._phase = "cancelling call"
        try:
            await handle.cancel.remote("cancelled by the task's creator")
        except RayError as exc:
            log.warning("task %s: cancel not delivered: %s", self._task_id, exc)

    async def _call_gone(self, call_id: uuid.UUID, handle: Any, cancel_sent: float | None) -> bool:
        """Whether the call had to be closed here: its actor died, or a cancel never ended it."""
        overdue = cancel_sent is not None and (
            asyncio.get_running_loop().time() - cancel_sent > CANCEL_GRACE
        )
        if overdue:
            log.error("task %s: call %s ignored the cancel; cutting it", self._task_id, call_id)
            await kill_actor(handle)
        elif await call_alive(handle) is not False:
            return False
        if call_id in self._ended:
            return True
        await self._recover(call_id)
        return True


def _local(at: dt.datetime, snap: TaskSnapshot) -> str:
    key = snap.window.zones[0]
    return f"{at.astimezone(zone(key)):%a %H:%M} {key}"


TaskActorRemote = ray.remote(TaskActor)
"""The actor class; create it with ``TaskActorRemote.options(**task_actor_options(id, ns))``."""
