"""The AMI client: originate calls, hang up, play DTMF, and report each call's fate as typed events.

``originate`` returns as soon as Asterisk replied to the action ("Originate successfully queued"
or an error); the call's result comes later through ``on_event`` (see
:mod:`asterisk.ami_results`). The client keeps one AMI connection alive: a Ping every
``ping_interval`` that must be answered within ``ping_timeout`` (so a half-open connection is
noticed), and reconnection with capped exponential backoff when it drops.

**An Originate is never sent twice.** Nothing is re-sent after a reconnect (see
:mod:`asterisk.ami_connection`). A call whose Originate was in flight when the connection dropped
(no reply yet, or queued without ``OriginateResponse``) is reported :class:`OriginateUnknown` and
stays tracked: events about it after the reconnect (its legs' ``Newstate``/``Hangup``) still settle
it. Its owner keeps the AudioSocket listener open through ring + connect timeouts meanwhile.

``on_event`` is called on the event loop, in order, and must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from panoramisk.message import Message

from asterisk.ami_connection import ActionFields, AmiConnection
from asterisk.ami_results import (
    AckStatus,
    AmiActionRefusedError,
    AmiAuthenticationError,
    AmiConnectionLostError,
    AmiError,
    AmiNotConnectedError,
    AmiTimeoutError,
    CallEvent,
    OriginateAck,
    OriginateRequest,
)
from asterisk.ami_router import CallRouter

__all__ = ["DTMF_DIGITS", "AmiClient"]

log = logging.getLogger(__name__)

DTMF_DIGITS = frozenset("0123456789*#ABCD")


class AmiClient:
    """One supervised AMI connection to Asterisk (or the simulated PBX) for originating calls."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        secret: str,
        on_event: Callable[[CallEvent], None] | None = None,
        connect_timeout: float = 5.0,
        action_timeout: float = 5.0,
        ping_interval: float = 10.0,
        ping_timeout: float | None = None,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        settle_grace: float = 1.0,
        originate_slack: float = 30.0,
    ) -> None:
        self._host, self._port = host, port
        self._username = username
        self._secret = secret
        self._on_event = on_event
        self._connect_timeout = connect_timeout
        self._action_timeout = action_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout if ping_timeout is not None else action_timeout
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._originate_slack = originate_slack
        self._router = CallRouter(settle_grace=settle_grace)
        self._conn: AmiConnection | None = None
        self._ready = asyncio.Event()
        self._lost = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._ids = itertools.count(1)
        self.reconnects = 0
        """How many times the connection was re-established after a drop."""

    def __repr__(self) -> str:
        return f"AmiClient({self._username}@{self._host}:{self._port}, connected={self.connected})"

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while logged in on a live connection."""
        return self._ready.is_set() and self._conn is not None and self._conn.is_open

    @property
    def pending_actions(self) -> int:
        """Actions written and still waiting for Asterisk's reply (0 after a drop)."""
        conn = self._conn
        return len(conn.pending) if conn is not None else 0

    @property
    def tracked_calls(self) -> int:
        """Calls whose events are still being collected."""
        return len(self._router)

    async def connect(self) -> None:
        """Connect and log in once (raises on failure), then keep the connection alive."""
        if self._closing:
            raise AmiError("client is closed")
        if self._tasks:
            raise AmiError("already connected")
        await self._open_and_login()
        self._spawn(self._supervise(), "ami-client-supervisor")
        self._spawn(self._ping_loop(), "ami-client-ping")
        self._spawn(self._settle_loop(), "ami-client-settle")

    async def wait_connected(self, within: float) -> None:
        """Wait until logged in (after a reconnect, say); raise AmiTimeoutError if not in time."""
        try:
            await asyncio.wait_for(self._ready.wait(), within)
        except TimeoutError as exc:
            raise AmiTimeoutError(f"not connected to AMI within {within} s") from exc

    async def close(self) -> None:
        """Log off, close the socket and stop every background task."""
        if self._closing:
            return
        self._closing = True
        conn, self._conn = self._conn, None
        self._ready.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if conn is not None and conn.is_open:
            try:
                await asyncio.wait_for(conn.send({"Action": "Logoff"}), 1.0)
            except (TimeoutError, AmiError) as exc:
                log.debug("AMI Logoff not acknowledged (%s); closing anyway", exc)
            conn.close()
        self._emit(self._router.connection_lost())

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("AMI task %s failed", task.get_name(), exc_info=task.exception())

    async def _open_and_login(self) -> None:
        conn = AmiConnection(
            host=self._host, port=self._port, on_event=self._on_ami_event, on_lost=self._on_lost
        )
        try:
            await conn.open(self._connect_timeout)
            await conn.login(self._username, self._secret, self._connect_timeout)
        except TimeoutError as exc:
            conn.close()
            raise AmiTimeoutError(
                f"AMI at {self._host}:{self._port} did not answer within {self._connect_timeout} s"
            ) from exc
        except BaseException:
            conn.close()
            raise
        try:  # Asterisk says FullyBooted right after login once it has finished starting
            await asyncio.wait_for(conn.fully_booted.wait(), self._connect_timeout)
        except TimeoutError:
            log.warning("AMI at %s:%d sent no FullyBooted; going on", self._host, self._port)
        if not conn.is_open:  # dropped while we waited: its loss went unreported
            raise AmiConnectionLostError(f"AMI at {self._host}:{self._port} closed after login")
        self._conn = conn
        self._ready.set()
        log.info("AMI logged in as %r on %s:%d", self._username, self._host, self._port)

    def _on_lost(self, conn: AmiConnection, exc: object) -> None:
        if conn is not self._conn:
            return  # an old or never-adopted connection
        self._ready.clear()
        if not self._closing:
            log.warning("AMI connection to %s:%d lost (%s)", self._host, self._port, exc or "EOF")
            self._lost.set()
        self._emit(self._router.connection_lost())

    async def _supervise(self) -> None:
        while not self._closing:
            await self._lost.wait()
            self._lost.clear()
            await self._reconnect()

    async def _reconnect(self) -> None:
        delay = self._reconnect_min
        while not self._closing:
            try:
                await self._open_and_login()
            except AmiAuthenticationError as exc:  # someone changed the secret: say so loudly
                log.error("AMI reconnect refused: %s; next try in %.1f s", exc, delay)
            except (OSError, AmiError) as exc:
                log.warning(
                    "AMI reconnect to %s:%d failed: %s; next try in %.1f s",
                    self._host,
                    self._port,
                    exc,
                    delay,
                )
            else:
                self.reconnects += 1
                return
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self._reconnect_max)

    async def _ping_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self._ping_interval)
            conn = self._conn
            if conn is None or not self.connected:
                continue
            try:
                await asyncio.wait_for(conn.send({"Action": "Ping"}), self._ping_timeout)
            except TimeoutError:
                log.warning(
                    "AMI gave no Pong within %.1f s: treating the connection as dead",
                    self._ping_timeout,
                )
                conn.abort()
            except AmiError as exc:
                log.debug("AMI ping skipped: %s", exc)

    async def _settle_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            deadline = self._router.next_deadline()
            wait = 1.0 if deadline is None else min(1.0, max(0.0, deadline - loop.time()))
            with contextlib.suppress(TimeoutError):  # a deadline (or the purge) is due
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()
            self._emit(self._router.poll(loop.time()))

    # -- events ------------------------------------------------------------------------------
    def _on_ami_event(self, message: Message) -> None:
        event = {str(k): v for k, v in message.items() if str(k).lower() != "content"}
        self._emit(self._router.feed(event, asyncio.get_running_loop().time()))
        self._wake.set()

    def feed_event(self, event: Mapping[str, Any]) -> None:
        """Route one raw AMI event as if it came from the socket (replays, tests)."""
        self._emit(self._router.feed(event, asyncio.get_running_loop().time()))
        self._wake.set()

    def _emit(self, events: list[CallEvent]) -> None:
        for event in events:
            log.info("call %s: %s", event.call_id, type(event).__name__)
            if self._on_event is None:
                continue
            try:
                self._on_event(event)
            except Exception:  # a consumer's bug must not stop the event stream; logged
                log.exception("on_event failed for %r", event)

    # -- actions -----------------------------------------------------------------------------
    async def _action(self, fields: ActionFields) -> Message:
        conn = self._conn
        if conn is None or not self.connected:
            raise AmiNotConnectedError(f"not connected to AMI at {self._host}:{self._port}")
        try:
            reply = await asyncio.wait_for(conn.send(fields), self._action_timeout)
        except TimeoutError as exc:
            raise AmiTimeoutError(
                f"no reply to {fields['Action']} within {self._action_timeout} s"
            ) from exc
        if reply.get("Response") not in ("Success", "Goodbye"):
            raise AmiActionRefusedError(f"{fields['Action']}: {reply.get('Message') or 'Error'}")
        return reply

    async def originate(self, req: OriginateRequest) -> OriginateAck:
        """Send one Originate (``Async: true``) and return Asterisk's reply to the action.

        Raises AmiNotConnectedError when there is no connection (nothing was sent). Never
        re-sends: a reply lost to a drop or a timeout gives ``AckStatus.UNKNOWN`` and an
        :class:`OriginateUnknown` event.
        """
        conn = self._conn
        if conn is None or not self.connected:
            raise AmiNotConnectedError(f"not connected to AMI at {self._host}:{self._port}")
        if req.call_id in self._router:
            raise ValueError(f"call {req.call_id} was already originated")
        loop = asyncio.get_running_loop()
        action_id = f"od-originate-{next(self._ids)}-{req.call_id.hex[:12]}"
        expect_by = loop.time() + req.ring_timeout + self._originate_slack
        self._router.track(req.call_id, action_id, loop.time(), expect_by=expect_by)
        try:
            future = conn.send(req.action_fields(action_id))
        except AmiNotConnectedError:
            self._router.forget(req.call_id)  # nothing was written
            raise
        log.info(
            "call %s: Originate sent (%s form, ring %.0f s)",
            req.call_id,
            req.form,
            req.ring_timeout,
        )
        try:
            reply = await asyncio.wait_for(asyncio.shield(future), self._action_timeout)
        except (TimeoutError, AmiConnectionLostError) as exc:
            log.warning(
                "call %s: no reply to Originate (%s); its fate is unknown",
                req.call_id,
                type(exc).__name__,
            )
            self._emit(self._router.mark_unknown(req.call_id))
            return OriginateAck(req.call_id, action_id, AckStatus.UNKNOWN, str(exc))
        message = str(reply.get("Message") or "")
        if reply.get("Response") == "Success":
            return OriginateAck(req.call_id, action_id, AckStatus.QUEUED, message)
        self._router.forget(req.call_id)
        log.warning("call %s: Originate refused: %s", req.call_id, message)
        return OriginateAck(req.call_id, action_id, AckStatus.REFUSED, message)

    def forget(self, call_id: uuid.UUID) -> None:
        """Stop tracking a call whose owner is done with it."""
        self._router.forget(call_id)

    def _channel_of(self, call_id: uuid.UUID) -> str:
        channel = self._router.channel_of(call_id)
        if channel is None:
            raise AmiError(f"no channel known for call {call_id}")
        return channel

    async def hangup(self, call_id: uuid.UUID, cause: int = 16) -> None:
        """Hang up the call's originated channel with a Q.850 cause."""
        channel = self._channel_of(call_id)
        await self._action({"Action": "Hangup", "Channel": channel, "Cause": str(cause)})

    async def play_dtmf(self, call_id: uuid.UUID, digit: str, *, duration_ms: int = 250) -> None:
        """Send one DTMF digit to the callee out of band (AMI ``PlayDTMF``)."""
        if len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        channel = self._channel_of(call_id)
        await self._action(
            {
                "Action": "PlayDTMF",
                "Channel": channel,
                "Digit": digit.upper(),
                "Duration": str(duration_ms),
            }
        )
