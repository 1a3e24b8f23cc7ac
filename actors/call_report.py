"""The CallActor's report channel to its owner: numbered messages, delivered in order, never lost.

Every message is a :class:`db.messages.CallMessage` whose ``seq`` grows by one from 1. One
delivery task sends them to the owner actor (``task:<id>``, found by name) one at a time, in
order, as JSON-able dicts (``owner.report.remote(msg_json)``). While the owner is missing or
restarting, delivery retries with capped exponential backoff and looks the owner up again on
every retry; the call goes on meanwhile. The owner drops any ``seq`` it has already applied, so a
message delivered twice (the owner applied it, then died before answering) is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import ray
from ray.exceptions import RayError

from db.messages import CallMessage, CallMessageKind, CallPayload

__all__ = ["CallReporter", "OwnerUnavailableError"]

log = logging.getLogger(__name__)

BACKOFF_MIN = 0.05  # s before the first retry: a restarting owner is usually back within ~1 s
BACKOFF_MAX = 2.0  # s between retries at most
CALL_TIMEOUT = 10.0  # s for one owner call before it counts as failed and is retried

Resolver = Callable[[str, str], Awaitable[Any]]
"""``(name, namespace) -> actor handle``; raises ValueError when no such actor exists."""


class OwnerUnavailableError(RuntimeError):
    """The owner could not be reached in the time allowed."""


async def _resolve_by_name(name: str, namespace: str) -> Any:
    # ray.get_actor is a blocking GCS lookup: keep it off the event loop.
    return await asyncio.to_thread(ray.get_actor, name, namespace=namespace)


class CallReporter:
    """Numbers a call's messages and delivers them, in order, to its owner actor."""

    def __init__(
        self,
        call_id: uuid.UUID,
        owner_name: str,
        namespace: str,
        *,
        resolve: Resolver = _resolve_by_name,
        backoff_min: float = BACKOFF_MIN,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        self.call_id = call_id
        self.owner_name = owner_name
        self.namespace = namespace
        self._resolve = resolve
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._handle: Any = None
        self._pending: deque[CallMessage] = deque()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._seq = 0
        self.delivered_seq = 0
        """The highest seq the owner has accepted."""
        self.retries = 0
        """Failed delivery attempts (each is retried)."""

    @property
    def seq(self) -> int:
        """The seq of the last message reported (0 before any)."""
        return self._seq

    @property
    def undelivered(self) -> int:
        """Messages reported but not yet accepted by the owner."""
        return len(self._pending)

    def report(self, kind: CallMessageKind, payload: CallPayload) -> CallMessage:
        """Number ``payload`` and queue it for delivery; never blocks."""
        self._seq += 1
        message = CallMessage.of(self.call_id, self._seq, kind, payload)
        self._pending.append(message)
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._deliver_loop(), name=f"call-report-{self.call_id}"
            )
            self._task.add_done_callback(self._task_done)
        return message

    async def wait_delivered(self, seq: int, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until the owner accepted message ``seq``; False if not within ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.delivered_seq < seq:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), remaining)
            except TimeoutError:
                return self.delivered_seq >= seq
        return True

    async def ask(self, method: str, *args: Any, timeout: float) -> Any:  # noqa: ASYNC109
        """Call ``owner.<method>(*args)`` and return its result, retrying until ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = self._backoff_min
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise OwnerUnavailableError(f"{self.owner_name} did not answer {method}")
            try:
                handle = await self._owner()
                return await asyncio.wait_for(getattr(handle, method).remote(*args), remaining)
            except (ValueError, RayError, TimeoutError) as exc:
                self._handle = None
                log.info("call %s: %s.%s failed (%s)", self.call_id, self.owner_name, method, exc)
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
            delay = min(delay * 2, self._backoff_max)

    async def close(self) -> None:
        """Stop delivering (whatever is still pending stays undelivered)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    # -- delivery ------------------------------------------------------------------------------
    async def _owner(self) -> Any:
        if self._handle is None:
            self._handle = await self._resolve(self.owner_name, self.namespace)
        return self._handle

    async def _deliver_loop(self) -> None:
        delay = self._backoff_min
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            message = self._pending[0]
            if await self._deliver(message):
                self._pending.popleft()
                self.delivered_seq = message.seq
                self._progress.set()
                delay = self._backoff_min
                continue
            self.retries += 1
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self._backoff_max)

    async def _deliver(self, message: CallMessage) -> bool:
        """One attempt; False (and the owner looked up again next time) when it failed."""
        try:
            handle = await self._owner()
            await asyncio.wait_for(
                handle.report.remote(message.model_dump(mode="json")), CALL_TIMEOUT
            )
        except ValueError:
            self._handle = None
            if self.retries % 20 == 0:
                log.info("call %s: owner %s not found yet", self.call_id, self.owner_name)
            return False
        except (RayError, TimeoutError) as exc:
            self._handle = None
            log.info(
                "call %s: delivering seq %d to %s failed (%s); retrying",
                self.call_id,
                message.seq,
                self.owner_name,
                type(exc).__name__,
            )
            return False
        return True

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("call %s: report delivery stopped", self.call_id, exc_info=exc)
