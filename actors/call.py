"""CallActor: one Ray actor per live call (DESIGN.md §2, §4).

It opens its AudioSocket listener, asks the PbxGateway to dial, bridges the answered call to an
OpenAI Realtime session (tools, barge-in, HITL mailbox), reports every step to its owner as
numbered messages, and ends with ``Ended`` (telephony result, end reason, usage, figures,
recording path). It never touches the database: no SQLAlchemy is imported here (a test keeps it
so), because memory per call is a headline figure.

Life: ``start()`` returns at once and the call runs in one tracked background task. When the
call is over and the owner has accepted ``Ended`` (retried while the owner restarts, for at
most ``REPORT_LINGER`` seconds), the actor closes everything and exits itself with
``ray.actor.exit_actor()``: the owner never has to kill it, and a detached actor that stayed
would hold its call slot forever. ``close()`` is the explicit cleanup for anyone who stops a
call early.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from typing import Any

import ray
from ray.exceptions import AsyncioActorExit

from actors.call_conversation import Conversation, warm_up_sdk
from actors.call_dial import Dialer, get_pbx
from actors.call_figures import CallClock, build_figures
from actors.call_report import CallReporter
from actors.call_spec import CallSpec
from actors.call_state import Ending, PbxState, Phase
from actors.call_tools import EndMode, EndRequest
from actors.recorder import StereoRecorder
from asterisk.ami_results import AmdResult, CallEvent
from asterisk.audiosocket import AudioSocketConnection, AudioSocketServer
from db.messages import AmdReported, Answered, CallMessageKind, Ended, Originated
from db.shapes import utcnow
from db.states import AmdVerdict, EndReason, TelephonyResult
from opendeep.logging import register_secrets, setup_logging
from opendeep.settings import Settings

__all__ = ["CallActor", "CallActorRemote"]

log = logging.getLogger(__name__)

REPORT_LINGER = 300.0  # s to keep retrying Ended for a missing owner before exiting anyway
HANGUP_CAUSE_WAIT = 1.0  # s for AMI's Hangup (with its cause) to follow the AudioSocket's end
REASON_ANSWERED = 4  # OriginateResponse Reason of an answered call
# Benchmarks compare with OPENDEEP_CALL_GC_FREEZE=0; it is not a user setting.


class CallActor:
    """One live call: dial, converse, report, exit."""

    def __init__(
        self,
        spec: CallSpec,
        settings: Settings,
        *,
        frames_per_append: int = 1,
        exit_when_done: bool = True,
    ) -> None:
        setup_logging(settings.log_level)
        register_secrets(
            [
                settings.ami_secret.get_secret_value(),
                settings.openai_api_key.get_secret_value() if settings.openai_api_key else None,
            ]
        )
        self._spec = spec
        self._settings = settings
        self._frames_per_append = frames_per_append
        self._exit_when_done = exit_when_done
        self._phase = Phase.CREATED
        self._pbx = PbxState()
        self._reporter = CallReporter(spec.call_id, spec.owner_name, spec.namespace)
        self._clock = CallClock.start(spec.asked_at)
        self._cancel = asyncio.Event()
        self._main: asyncio.Task[None] | None = None
        self._server: AudioSocketServer | None = None
        self._conversation: Conversation | None = None
        self._ending: Ending | None = None
        self._closed = False

    # -- the remote interface -------------------------------------------------------------------
    async def start(self) -> None:
        """Place the call in the background; returns at once (a second call does nothing)."""
        if self._main is None:
            self._main = asyncio.get_running_loop().create_task(
                self._run(), name=f"call-{self._spec.call_id}"
            )
            self._main.add_done_callback(self._main_done)

    async def on_pbx_event(self, event: CallEvent) -> None:
        """An AMI event about this call, pushed by the PbxGateway."""
        self._pbx.apply(event)
        if isinstance(event, AmdResult):
            self._reporter.report(
                CallMessageKind.AMD_VERDICT,
                AmdReported(
                    verdict=AmdVerdict(event.status.value), cause=event.cause[:100], at=utcnow()
                ),
            )
            if self._pbx.machine and self._conversation is not None:
                self._conversation.on_amd()

    async def provide_user_info(self, request_id: str, answer: str) -> bool:
        """The creator's answer to a pending question; False if nothing waits for it."""
        conversation = self._conversation
        return conversation is not None and conversation.provide_user_info(request_id, answer)

    async def cancel(self, reason: str = "cancelled") -> None:
        """End the call politely: a short goodbye if connected, then hang up (``cancelled``)."""
        log.info("call %s: cancel requested (%s)", self._spec.call_id, reason)
        self._cancel.set()
        if self._conversation is not None:
            self._conversation.request_end(EndRequest(EndReason.CANCELLED, EndMode.SAY_GOODBYE))

    async def status(self) -> dict[str, Any]:
        """Where the call is, for the owner's reconcile (and the pid, for benchmarks)."""
        ending = self._ending
        return {
            "call_id": str(self._spec.call_id),
            "phase": self._phase.value,
            "seq": self._reporter.seq,
            "delivered_seq": self._reporter.delivered_seq,
            "end_reason": ending.end_reason.value if ending else None,
            "pid": os.getpid(),
        }

    async def close(self) -> None:
        """Stop everything now (an unfinished call is dropped) and release sockets and tasks."""
        main = self._main
        if main is not None and not main.done() and main is not asyncio.current_task():
            main.cancel()
            await asyncio.wait([main])
        await self._release()

    # -- the call -------------------------------------------------------------------------------
    async def _run(self) -> None:
        if self._settings.call_gc_freeze:
            # Everything imported so far lives as long as the process: keep it out of the
            # collector's way, so a full collection during the call scans only the call's objects.
            gc.collect()
            gc.freeze()
        try:
            ending = await self._place_call()
        except Exception:  # the actor's top loop: whatever broke, the owner still gets Ended
            log.exception("call %s: failed", self._spec.call_id)
            ending = Ending(
                TelephonyResult.ANSWERED if self._clock.answered else TelephonyResult.UNKNOWN,
                EndReason.TECHNICAL_ERROR,
            )
        await self._end(ending)

    async def _place_call(self) -> Ending:
        s = self._settings
        if self._cancel.is_set():
            return Ending(TelephonyResult.FAILED, EndReason.CANCELLED)
        self._server = await AudioSocketServer.start(
            self._spec.call_id,
            bind_host=s.audiosocket_bind_host,
            advertise_host=s.advertise_host,
            allowed_peers=s.allowed_peers,
        )
        self._phase = Phase.DIALING
        dialer = Dialer(
            self._spec,
            s,
            server=self._server,
            pbx_state=self._pbx,
            cancelled=self._cancel,
            on_queued=self._originated,
        )
        # While it rings the loop is idle: import the SDK now, not after the callee answered.
        warming = asyncio.get_running_loop().run_in_executor(None, warm_up_sdk)
        warming.add_done_callback(_log_warm_up)
        outcome = await dialer.run()
        self._clock.originate_sent = outcome.originate_sent_at
        if outcome.connection is None:
            assert outcome.ending is not None
            return outcome.ending
        return await self._converse(outcome.connection, outcome.connected_at)

    async def _converse(
        self, connection: AudioSocketConnection, connected_at: float | None
    ) -> Ending:
        self._clock.connected = self._clock.answered = connected_at
        self._phase = Phase.CONNECTED
        self._reporter.report(CallMessageKind.ANSWERED, Answered(at=utcnow()))
        conversation = self._conversation = Conversation(
            self._spec,
            self._settings,
            connection,
            self._reporter,
            self._pbx,
            answered_at=connected_at or self._clock.started_mono,
            recording=self._recorder,
            frames_per_append=self._frames_per_append,
        )
        if self._cancel.is_set():
            conversation.request_end(EndRequest(EndReason.CANCELLED, EndMode.SAY_GOODBYE))
        reason = await conversation.run()
        self._phase = Phase.ENDING
        return Ending(
            TelephonyResult.ANSWERED,
            reason,
            originate_reason=REASON_ANSWERED,
            hangup_cause=await self._hangup_cause(),
        )

    def _originated(self, sent_at: float) -> None:
        """Asterisk queued the Originate: the owner hears it while the phone rings."""
        at = self._clock.wall(sent_at)
        self._reporter.report(CallMessageKind.ORIGINATED, Originated(at=at))

    def _recorder(self, rate: int) -> StereoRecorder | None:
        if not self._settings.recording:
            return None
        path = self._settings.recordings_dir.resolve() / f"{self._spec.call_id}.wav"
        return StereoRecorder(path, rate, self._clock.connected or self._clock.started_mono)

    async def _hangup_cause(self) -> int | None:
        """The cause AMI reports for the hangup (it follows the AudioSocket's end closely)."""
        if self._pbx.hung_up is None:
            await self._pbx.wait_changed(HANGUP_CAUSE_WAIT)
        return self._pbx.hung_up.cause if self._pbx.hung_up is not None else None

    # -- the end --------------------------------------------------------------------------------
    async def _end(self, ending: Ending) -> None:
        """Report Ended, wait until the owner has it, clean up, exit."""
        self._ending = ending
        self._phase = Phase.ENDING
        self._clock.ended = time.monotonic()
        conversation = self._conversation
        recording = (
            conversation.recorder.close() if conversation and conversation.recorder else None
        )
        message = self._reporter.report(
            CallMessageKind.ENDED,
            Ended(
                telephony_result=ending.telephony_result,
                end_reason=ending.end_reason,
                originate_reason=ending.originate_reason,
                hangup_cause=ending.hangup_cause,
                usage=conversation.usage if conversation else None,
                figures=build_figures(self._clock, conversation.bridge if conversation else None),
                recording_path=str(recording) if recording else None,
                at=utcnow(),
            ),
        )
        log.info(
            "call %s: ended: %s / %s",
            self._spec.call_id,
            ending.telephony_result.value,
            ending.end_reason.value,
        )
        if self._server is not None:  # nothing more to accept while we wait for the owner
            await self._server.close()
            self._server = None
        if not await self._reporter.wait_delivered(message.seq, REPORT_LINGER):
            log.error("call %s: owner never took Ended; exiting anyway", self._spec.call_id)
        self._phase = Phase.ENDED
        await self._forget_at_pbx()
        await self._release()
        if self._exit_when_done:
            ray.actor.exit_actor()  # type: ignore[no-untyped-call]  # ray leaves it unannotated

    async def _forget_at_pbx(self) -> None:
        try:
            pbx = await get_pbx(self._spec.namespace)
            pbx.forget.remote(self._spec.call_id)  # fire and forget: the gateway drops the route
        except ValueError:
            pass

    async def _release(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            await self._server.close()
        await self._reporter.close()

    def _main_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, AsyncioActorExit):
            log.error("call %s: main task failed", self._spec.call_id, exc_info=exc)


def _log_warm_up(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("Realtime SDK warm-up failed", exc_info=exc)


CallActorRemote = ray.remote(CallActor)
"""The actor class; create it with ``CallActorRemote.options(**call_actor_options(id, ns))``."""
