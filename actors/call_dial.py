"""The dial phase of a call: Originate through the PbxGateway, then wait for the call's fate.

The AudioSocket listener is already open (its address goes into the Originate). The phase ends
with the accepted AudioSocket connection (the call is answered: a connection may come before
``CallAnswered``) or with an :class:`~actors.call_state.Ending` (DESIGN.md §4):

- Originate refused (or no PbxGateway) → ``failed`` / ``technical_error``;
- ``CallNotAnswered`` → its result, Reason and cause / ``not_answered``;
- answered but no connection within ``connect_timeout`` (or hung up before one came) → AMI
  hangup, ``answered`` / ``not_connected``;
- fate unknown (the AMI link dropped in flight) → the listener stays open until ring + connect
  timeouts have passed: a connection means answered, silence means ``unknown`` /
  ``technical_error``;
- ``cancel()`` while dialing → AMI hangup, end reason ``cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayError

from actors.call_spec import CallSpec
from actors.call_state import Ending, PbxState
from actors.options import PBX_NAME
from asterisk.ami_results import AckStatus, OriginateAck, OriginateRequest
from asterisk.audiosocket import AudioSocketConnection, AudioSocketServer
from db.states import EndReason, TelephonyResult
from opendeep.settings import Settings

__all__ = ["DialOutcome", "Dialer", "get_pbx"]

log = logging.getLogger(__name__)

RING_SLACK = 5.0  # s past the ring timeout to wait for any sign of the call before giving up
CANCEL_SETTLE = 2.0  # s to wait for AMI to say what became of a call we hung up while ringing
ORIGINATE_TIMEOUT = 15.0  # s for the PbxGateway to answer originate() (it waits ≤ 5 s for AMI)


async def get_pbx(namespace: str) -> Any:
    """The PbxGateway's handle (ValueError when there is none); the lookup blocks, so off-loop."""
    return await asyncio.to_thread(ray.get_actor, PBX_NAME, namespace=namespace)


@dataclass(slots=True)
class DialOutcome:
    """How the dial phase ended: a connection, or an ending. Times are ``time.monotonic()``."""

    connection: AudioSocketConnection | None = None
    ending: Ending | None = None
    originate_sent_at: float | None = None
    connected_at: float | None = None


class Dialer:
    """Places one call and waits for its fate; see the module docstring for the rules."""

    def __init__(
        self,
        spec: CallSpec,
        settings: Settings,
        *,
        server: AudioSocketServer,
        pbx_state: PbxState,
        cancelled: asyncio.Event,
        on_queued: Callable[[float], None] | None = None,
    ) -> None:
        self._spec = spec
        self._on_queued = on_queued
        self._settings = settings
        self._server = server
        self._state = pbx_state
        self._cancelled = cancelled
        self._pbx: Any = None
        self.outcome = DialOutcome()
        self.ack: OriginateAck | None = None

    def request(self) -> OriginateRequest:
        """The Originate for this call, pointing Asterisk at our listener."""
        s = self._settings
        host, port = self._server.address
        return OriginateRequest(
            call_id=self._spec.call_id,
            number=self._spec.number,
            audiosocket_host=host,
            audiosocket_port=port,
            ring_timeout=s.ring_timeout,
            form=s.originate_form,
            dial_template=s.dial_template,
            context=s.dialplan_context,
            exten=s.dialplan_exten,
        )

    async def run(self) -> DialOutcome:
        """Originate, then wait for a connection or an ending."""
        ack_status = await self._originate()
        if ack_status is AckStatus.REFUSED:
            self.outcome.ending = Ending(TelephonyResult.FAILED, EndReason.TECHNICAL_ERROR)
            return self.outcome
        if ack_status is AckStatus.UNKNOWN:
            self._state.unknown = True
        await self._wait_for_fate()
        return self.outcome

    async def _originate(self) -> AckStatus:
        try:
            self._pbx = await get_pbx(self._spec.namespace)
        except ValueError:
            log.error(
                "call %s: no PbxGateway in namespace %s", self._spec.call_id, self._spec.namespace
            )
            return AckStatus.REFUSED
        request = self.request()
        self.outcome.originate_sent_at = time.monotonic()
        try:
            self.ack = await asyncio.wait_for(
                self._pbx.originate.remote(request), ORIGINATE_TIMEOUT
            )
        except (RayError, TimeoutError) as exc:
            # The gateway may have sent it before failing: never re-send, settle by listening.
            log.warning("call %s: originate() failed (%s); fate unknown", self._spec.call_id, exc)
            return AckStatus.UNKNOWN
        assert self.ack is not None
        if self.ack.status is AckStatus.REFUSED:
            log.warning("call %s: Originate refused: %s", self._spec.call_id, self.ack.message)
        elif self.ack.status is AckStatus.QUEUED and self._on_queued is not None:
            self._on_queued(self.outcome.originate_sent_at or time.monotonic())
        return self.ack.status

    def _deadline(self, answered_at: float | None) -> float:
        s, sent = self._settings, self.outcome.originate_sent_at or time.monotonic()
        if answered_at is not None:
            return answered_at + s.connect_timeout
        if self._state.unknown:
            return sent + s.ring_timeout + s.connect_timeout
        return sent + s.ring_timeout + RING_SLACK

    async def _wait_for_fate(self) -> None:
        state, answered_at = self._state, None
        connecting = asyncio.get_running_loop().create_task(self._server.wait_connected(1e9))
        try:
            while True:
                state.changed.clear()  # before looking: an event from now on wakes _wait
                if self._server.connection is not None:
                    self.outcome.connection = self._server.connection
                    self.outcome.connected_at = time.monotonic()
                    return
                if state.answered and answered_at is None:
                    answered_at = time.monotonic()
                ending = self._decide(answered_at)
                if ending is not None:
                    await self._hangup_if_needed(ending)
                    self.outcome.ending = ending
                    return
                if self._cancelled.is_set():
                    self.outcome.ending = await self._cancel()
                    return
                await self._wait(connecting, self._deadline(answered_at) - time.monotonic())
        finally:
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, TimeoutError):
                await connecting

    def _decide(self, answered_at: float | None) -> Ending | None:
        """An ending if the call's fate is settled without a connection, else None."""
        state = self._state
        if state.not_answered is not None and not state.answered:
            event = state.not_answered
            return Ending(
                TelephonyResult(event.result.value),
                EndReason.NOT_ANSWERED,
                originate_reason=event.reason,
                hangup_cause=event.cause,
            )
        if state.hung_up is not None:  # answered, then gone before AudioSocket connected
            return Ending(
                TelephonyResult.ANSWERED,
                EndReason.NOT_CONNECTED,
                originate_reason=4,
                hangup_cause=state.hung_up.cause,
            )
        if time.monotonic() < self._deadline(answered_at):
            return None
        if answered_at is not None:
            return Ending(TelephonyResult.ANSWERED, EndReason.NOT_CONNECTED, originate_reason=4)
        return Ending(TelephonyResult.UNKNOWN, EndReason.TECHNICAL_ERROR)

    async def _wait(self, connecting: asyncio.Task[Any], timeout: float) -> None:  # noqa: ASYNC109
        if timeout <= 0:
            return
        changed = asyncio.ensure_future(self._state.changed.wait())
        cancel = asyncio.ensure_future(self._cancelled.wait())
        try:
            await asyncio.wait(
                {connecting, changed, cancel}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (changed, cancel):
                task.cancel()

    async def _hangup_if_needed(self, ending: Ending) -> None:
        if ending.end_reason is EndReason.NOT_ANSWERED or ending.hangup_cause is not None:
            return  # the PBX already ended it
        await self.hangup_over_ami()

    async def hangup_over_ami(self, cause: int = 16) -> None:
        """Ask the PbxGateway to hang the channel up (logged, never raised)."""
        if self._pbx is None:
            return
        try:
            await asyncio.wait_for(self._pbx.hangup.remote(self._spec.call_id, cause), 6.0)
        except (RayError, TimeoutError) as exc:
            log.warning("call %s: AMI hangup failed: %s", self._spec.call_id, exc)

    async def _cancel(self) -> Ending:
        """Cancelled while dialing: hang up, then take the PBX's word for what happened."""
        await self.hangup_over_ami()
        deadline = time.monotonic() + CANCEL_SETTLE
        state = self._state
        while state.not_answered is None and state.hung_up is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._server.connection is not None:
                break
            await state.wait_changed(remaining)
        if state.not_answered is not None:
            event = state.not_answered
            return Ending(
                TelephonyResult(event.result.value),
                EndReason.CANCELLED,
                originate_reason=event.reason,
                hangup_cause=event.cause,
            )
        result = TelephonyResult.ANSWERED if state.answered else TelephonyResult.UNKNOWN
        cause = state.hung_up.cause if state.hung_up else None
        return Ending(result, EndReason.CANCELLED, hangup_cause=cause)
