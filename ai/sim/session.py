"""One Realtime session of the stand-in: a receive loop, one sender, and the session's state.

Every client message is parsed against the GA shapes (:mod:`ai.sim.protocol`); a bad one is
answered with an ``error`` event, logged at ERROR and counted, and the session goes on, as the
API does. Appended audio runs through the energy VAD; a finished utterance becomes a committed
user item, its transcript (the scenario's callee line) and, with ``create_response``, a
response of the scripted agent. Only the sender task writes to the socket.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from openai import BaseModel as SdkModel
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ai.sim import outbound as out
from ai.sim import protocol as p
from ai.sim.conversation import Conversation, ItemKind, ItemState
from ai.sim.records import (
    CalleeUtterance,
    SessionLog,
    StandInStats,
    TextItem,
    ToolOutput,
    Truncation,
)
from ai.sim.responder import ActiveResponse, StreamSettings
from ai.sim.script import (
    AgentScript,
    CalleeLineDone,
    ScriptedAgent,
    TextReceived,
    ToolCallSpec,
    ToolOutputReceived,
)
from ai.sim.session_config import SessionConfig
from ai.sim.transcripts import CalleeTranscriber, Heard
from ai.sim.vad import EnergyVad, VadEvent
from ai.sim.validate import parse_client_event
from ai.sim.voice import AgentVoice
from asterisk.g711 import ulaw_decode

__all__ = ["Binding", "SessionContext", "StandInSession"]

log = logging.getLogger(__name__)

_DROP = object()
_MIN_COMMIT_MS = 100


@dataclass(frozen=True, slots=True)
class Binding:
    """What a session learns from its call id: the scenario's name, script and callee lines."""

    scenario: str | None
    script: AgentScript
    transcriber: CalleeTranscriber


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What every session shares with its stand-in."""

    stats: StandInStats
    voice: AgentVoice
    bind: Callable[[str | None, bool], Awaitable[Binding | None]]
    """(call id, final) → the binding; None while the call is unknown and ``final`` is False."""
    register: Callable[[SessionLog], None]
    chunk_ms: int
    speed: float
    session_limit: float


class StandInSession:
    """Serves one websocket connection until it closes."""

    def __init__(self, ws: ServerConnection, context: SessionContext, model: str) -> None:
        self._ws = ws
        self._ctx = context
        self.config = SessionConfig(model)
        self.log = SessionLog(session_id=self.config.session_id, model=model)
        self.conversation = Conversation()
        self._outbox: asyncio.Queue[object] = asyncio.Queue()
        self._vad: EnergyVad | None = None
        self._speech_item: str | None = None
        self._uncommitted_ms = 0.0
        self._binding: Binding | None = None
        self._agent: ScriptedAgent | None = None
        self._active: ActiveResponse | None = None
        self._owed_response = False
        self._last_input_total = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers: dict[type[p.ClientEvent], Callable[[Any], Awaitable[None]]] = {
            p.SessionUpdate: self._session_update,
            p.InputAudioBufferAppend: self._append,
            p.InputAudioBufferCommit: self._commit,
            p.InputAudioBufferClear: self._clear,
            p.OutputAudioBufferClear: self._output_clear,
            p.ConversationItemCreate: self._item_create,
            p.ConversationItemTruncate: self._truncate,
            p.ConversationItemDelete: self._item_delete,
            p.ConversationItemRetrieve: self._item_retrieve,
            p.ResponseCreate: self._response_create,
            p.ResponseCancel: self._response_cancel,
        }

    # -- the connection --------------------------------------------------------------------
    async def run(self, *, beta_header: bool) -> None:
        """Greet with ``session.created``, then serve client events until the socket closes."""
        self._ctx.register(self.log)
        sender = self._spawn(self._sender(), "sender")
        self._spawn(self._expire(self._ctx.session_limit), "expiry")
        self.send(out.session_created(self.config.effective()))
        if beta_header:
            self._refuse(
                p.ClientEventError(
                    "beta-style Realtime connection: the 'OpenAI-Beta: realtime=v1' header "
                    "selects the beta protocol; GA clients must not send it",
                    code="beta_shape",
                    param="OpenAI-Beta",
                )
            )
        try:
            async for message in self._ws:
                await self._receive(message)
        except ConnectionClosed:
            pass
        finally:
            self.log.closed.set()
            for task in list(self._tasks):
                if task is not sender:
                    task.cancel()
            sender.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _receive(self, message: str | bytes) -> None:
        try:
            event = parse_client_event(message)
        except p.ClientEventError as exc:
            self._refuse(exc)
            return
        self.log.events_in[event.type] += 1
        try:
            await self._handlers[type(event)](event)
        except p.ClientEventError as exc:
            exc.event_id = exc.event_id or event.event_id
            self._refuse(exc)
        except Exception as exc:  # the session's top loop: log it, tell the client, go on
            log.exception("stand-in session %s failed on %s", self.log.session_id, event.type)
            self.send(out.error(f"internal error: {exc}", kind="server_error"))

    def send(self, event: SdkModel) -> None:
        """Queue a server event for the sender task (the only writer of the socket)."""
        self.log.events_out[str(getattr(event, "type", "?"))] += 1
        self._outbox.put_nowait(out.encode(event))

    def drop(self) -> None:
        """Abort the TCP connection after what is queued: a provider dropping mid-response."""
        self._ctx.stats.drops += 1
        self.log.dropped = True
        self._outbox.put_nowait(_DROP)

    async def _sender(self) -> None:
        while True:
            item = await self._outbox.get()
            if item is _DROP:
                log.info("stand-in session %s: dropping the TCP connection", self.log.session_id)
                self._ws.transport.abort()
                return
            if isinstance(item, tuple):
                await self._ws.close(*item)
                return
            try:
                await self._ws.send(str(item))
            except ConnectionClosed:
                return

    async def _expire(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.send(
            out.error(
                f"Your session hit the maximum duration of {seconds:g} seconds.",
                code="session_expired",
            )
        )
        self._outbox.put_nowait((1001, "session expired"))

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(f"sim-{self.log.session_id}-{name}")
        return self._track(task, name)

    def _track(self, task: asyncio.Task[Any], name: str) -> asyncio.Task[Any]:
        """Keep a task until it ends and log its failure (no orphan tasks, no silent errors)."""
        self._tasks.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._tasks.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                log.error("stand-in task %s failed", name, exc_info=finished.exception())

        task.add_done_callback(done)
        return task

    def _refuse(self, exc: p.ClientEventError) -> None:
        stats = self._ctx.stats
        if exc.protocol:
            stats.protocol_errors += 1
            log.error("stand-in session %s: protocol error: %s", self.log.session_id, exc.message)
        else:
            stats.request_errors += 1
            log.warning("stand-in session %s: refused: %s", self.log.session_id, exc.message)
        self.log.errors.append(exc.message)
        self.send(out.error(exc.message, code=exc.code, param=exc.param, event_id=exc.event_id))

    # -- session.update --------------------------------------------------------------------
    async def _session_update(self, event: p.SessionUpdate) -> None:
        before = self.config.snapshot()
        self.config.apply(event.session, voice_fixed=self.conversation.has_assistant_audio())
        if self.config.snapshot() != before:
            self._vad = None  # rebuilt for the new format or turn detection
        config, record = self.config, self.log
        record.input_format, record.output_format = config.input_format, config.output_format
        record.voice, record.instructions = config.voice, config.instructions
        record.tools = sorted(config.tools)
        record.turn_detection = config.turn_detection_dict()
        record.transcription = config.transcription
        if config.call_id and record.call_id is None:
            record.call_id = config.call_id
            self._ctx.register(record)
        self.send(out.session_updated(config.effective()))
        if config.call_id:
            await self._bind(final=False)

    async def _bind(self, *, final: bool) -> ScriptedAgent | None:
        """The agent of this call, once the call id leads to a scenario (or ``final``)."""
        if self._agent is not None:
            return self._agent
        binding = await self._ctx.bind(self.config.call_id, final)
        if binding is None:
            return None  # the call is not known yet: decide later
        self._binding, self._agent = binding, ScriptedAgent(binding.script)
        self.log.scenario = binding.scenario
        self.config.script = binding.script
        self._spawn(self._prerender(binding.script), "prerender")
        if binding.script.session_limit is not None:
            self._spawn(self._expire(binding.script.session_limit), "script-expiry")
        return self._agent

    async def _agent_now(self) -> ScriptedAgent:
        """The agent, bound now (the generic one if the call is still unknown)."""
        agent = await self._bind(final=True)
        assert agent is not None  # final binding always yields an agent
        return agent

    async def _prerender(self, script: AgentScript) -> None:
        for text in script.says():
            await asyncio.to_thread(
                self._ctx.voice.render, text, script.voice, self.config.output_format
            )

    # -- input audio -----------------------------------------------------------------------
    async def _append(self, event: p.InputAudioBufferAppend) -> None:
        try:
            data = base64.b64decode(event.audio, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise p.ClientEventError("audio is not valid base64", param="audio") from exc
        if self.config.input_format == "pcm":
            if len(data) % 2:
                raise p.ClientEventError(
                    f"{len(data)} bytes is not whole 16-bit samples (audio/pcm)", param="audio"
                )
            pcm = np.frombuffer(data, dtype="<i2").astype(np.int16)
        else:
            pcm = ulaw_decode(data)
        if self.config.vad is not None and self._vad is None:
            self._vad = self.config.new_vad(offset_ms=int(self.log.audio_in_ms))
        ms = pcm.size * 1000 / self.config.input_rate
        self.log.audio_in_ms += ms
        self._uncommitted_ms += ms
        if self._vad is None or self.config.vad is None:
            return
        for vad_event in self._vad.feed(pcm):
            await self._on_vad(vad_event)

    async def _on_vad(self, event: VadEvent) -> None:
        if event.kind == "started":
            self._speech_item = out.new_id("item")
            self.send(out.speech_started(event.ms, self._speech_item))
            vad = self.config.vad
            if self._active is not None and vad is not None and vad.interrupt_response:
                self._active.cancel("turn_detected")
            return
        item_id = self._speech_item or out.new_id("item")
        self._speech_item = None
        self.send(out.speech_stopped(event.ms, item_id))
        await self._commit_utterance(item_id, event.voice_start_ms, event.voice_end_ms, event.ms)
        vad = self.config.vad
        if vad is not None and vad.create_response:
            await self._auto_response()

    async def _commit_utterance(
        self, item_id: str, voice_start: int, voice_end: int, end_ms: int
    ) -> None:
        audio_ms = max(0, end_ms - voice_start)
        previous = self.conversation.add(ItemState(item_id, "user_audio", audio_ms=audio_ms))
        self._uncommitted_ms = 0.0
        self.send(out.input_committed(item_id, previous))
        item = out.user_audio_item(item_id)
        self.send(out.item_added(item, previous))
        self.send(out.item_done(item, previous))
        agent = await self._agent_now()
        assert self._binding is not None
        heard: Heard = self._binding.transcriber.hear(voice_start, voice_end)
        state = self.conversation.get(item_id)
        if state is not None:
            state.text = heard.transcript
        self.log.heard.append(
            CalleeUtterance(item_id, voice_start, end_ms, heard.transcript, heard.line)
        )
        if self.config.transcription:
            self.send(out.transcription_completed(item_id, heard.transcript, audio_ms))
        if heard.complete and heard.line is not None:
            agent.notice(CalleeLineDone(heard.line, heard.transcript))

    async def _commit(self, event: p.InputAudioBufferCommit) -> None:
        stop = self._vad.force_stop() if self._vad is not None else None
        if stop is not None:
            item_id = self._speech_item or out.new_id("item")
            self._speech_item = None
            await self._commit_utterance(item_id, stop.voice_start_ms, stop.voice_end_ms, stop.ms)
            return
        if self._uncommitted_ms < _MIN_COMMIT_MS:
            raise p.ClientEventError(
                f"buffer too small: expected at least {_MIN_COMMIT_MS}ms of audio, "
                f"but buffer only has {self._uncommitted_ms:.2f}ms of audio",
                code="input_audio_buffer_commit_empty",
                protocol=False,
            )
        end = int(self.log.audio_in_ms)
        start = end - int(self._uncommitted_ms)
        await self._commit_utterance(out.new_id("item"), start, end, end)

    async def _clear(self, event: p.InputAudioBufferClear) -> None:
        if self._vad is not None:
            self._vad.force_stop()
        self._speech_item = None
        self._uncommitted_ms = 0.0
        self.send(out.input_cleared())

    async def _output_clear(self, event: p.OutputAudioBufferClear) -> None:
        raise p.ClientEventError(
            "output_audio_buffer.clear is only for WebRTC/SIP sessions; on a websocket the "
            "client owns playout (cancel the response and truncate the item instead)",
            param="type",
        )

    # -- conversation items ----------------------------------------------------------------
    async def _item_create(self, event: p.ConversationItemCreate) -> None:
        item = event.item
        previous_id = event.previous_item_id
        if previous_id not in (None, "root") and previous_id not in self.conversation:
            raise p.ClientEventError(
                f"previous_item_id {previous_id!r} does not exist",
                code="item_not_found",
                param="previous_item_id",
                protocol=False,
            )
        item_id = item.id or out.new_id("item")
        if item_id in self.conversation:
            raise p.ClientEventError(
                f"item id {item_id!r} already exists", param="item.id", protocol=False
            )
        if isinstance(item, p.FunctionCallOutput):
            self._function_output(item_id, item)
            return
        if isinstance(item, p.FunctionCall):
            call_id = item.call_id or out.new_id("call")
            state = ItemState(item_id, "function_call", item.arguments, call_id=call_id)
            state.name = item.name
            echo = out.function_call_item(item_id, call_id, item.name, item.arguments, "completed")
        else:
            text = item.text()
            state = self._message_state(item_id, item, text)
            echo = _echo_message(item_id, item.role, text)
            if text and item.role in {"user", "system"}:
                self.log.texts.append(TextItem(item.role, text))
                (await self._agent_now()).notice(TextReceived(item.role, text))
        previous = self.conversation.add(state)
        self.send(out.item_added(echo, previous))
        self.send(out.item_done(echo, previous))

    def _message_state(self, item_id: str, item: p.Message, text: str) -> ItemState:
        if item.role == "assistant":
            return ItemState(item_id, "assistant", text)
        kind: ItemKind = "system" if item.role == "system" else "user_text"
        return ItemState(item_id, kind, text)

    def _function_output(self, item_id: str, item: p.FunctionCallOutput) -> None:
        call = self.conversation.function_call(item.call_id)
        if call is None:
            raise p.ClientEventError(
                f"Tool call ID '{item.call_id}' not found in conversation.",
                code="item_not_found",
                param="item.call_id",
                protocol=False,
            )
        name = call.name or ""
        self.log.tool_outputs.append(ToolOutput(item.call_id, name, item.output))
        if self._agent is not None:
            made = next((c for c in self.log.tool_calls if c.call_id == item.call_id), None)
            arguments = dict(made.arguments) if made is not None else {}
            self._agent.notice(ToolOutputReceived(name, item.output, arguments))
        state = ItemState(item_id, "function_call_output", item.output, call_id=item.call_id)
        previous = self.conversation.add(state)
        echo = out.function_call_output_item(item_id, item.call_id, item.output)
        self.send(out.item_added(echo, previous))
        self.send(out.item_done(echo, previous))

    async def _truncate(self, event: p.ConversationItemTruncate) -> None:
        item = self.conversation.get(event.item_id)
        if item is None or item.kind != "assistant":
            raise p.ClientEventError(
                f"no assistant audio item {event.item_id!r} to truncate",
                code="item_not_found",
                param="item_id",
                protocol=False,
            )
        if event.content_index != 0:
            raise p.ClientEventError(
                f"item {event.item_id!r} has one audio part (content_index 0)",
                param="content_index",
                protocol=False,
            )
        if event.audio_end_ms > item.audio_ms + 1:
            raise p.ClientEventError(
                f"Audio content of {item.audio_ms:.0f}ms is already shorter than "
                f"{event.audio_end_ms}ms",
                param="audio_end_ms",
                protocol=False,
            )
        item.truncated_ms = event.audio_end_ms
        self.log.truncations.append(
            Truncation(event.item_id, 0, event.audio_end_ms, item.audio_ms, item.text)
        )
        self.send(out.item_truncated(event.item_id, 0, event.audio_end_ms))

    async def _item_delete(self, event: p.ConversationItemDelete) -> None:
        if not self.conversation.delete(event.item_id):
            raise p.ClientEventError(
                f"item {event.item_id!r} does not exist",
                code="item_not_found",
                param="item_id",
                protocol=False,
            )
        self.send(out.item_deleted(event.item_id))

    async def _item_retrieve(self, event: p.ConversationItemRetrieve) -> None:
        raise p.ClientEventError(
            "conversation.item.retrieve is valid GA but not simulated by the stand-in",
            code="not_simulated",
            param="type",
            protocol=False,
        )

    # -- responses -------------------------------------------------------------------------
    async def _response_create(self, event: p.ResponseCreate) -> None:
        if self._active is not None:
            raise p.ClientEventError(
                f"Conversation already has an active response in progress: {self._active.id}. "
                "Wait until the response is finished before creating a new one.",
                code="conversation_already_has_active_response",
                protocol=False,
            )
        params = event.response or p.ResponseParams()
        if params.output_modalities is not None and params.output_modalities != ["audio"]:
            raise p.ClientEventError(
                "the stand-in answers with audio only (output_modalities=['audio'])",
                param="response.output_modalities",
                protocol=False,
            )
        if params.instructions:
            self.log.texts.append(TextItem("instructions", params.instructions))
        await self._start_response(params.instructions, params.metadata)

    async def _response_cancel(self, event: p.ResponseCancel) -> None:
        active = self._active
        if active is None or (event.response_id is not None and event.response_id != active.id):
            raise p.ClientEventError(
                "Cancellation failed: no active response found",
                code="response_cancel_not_active",
                protocol=False,
            )
        active.cancel("client_cancelled")

    async def _auto_response(self) -> None:
        """A response the server creates itself (turn detection); later if one is active."""
        if self._active is not None:
            self._owed_response = True
            return
        await self._start_response(None)

    async def _start_response(
        self, instructions: str | None, metadata: dict[str, str] | None = None
    ) -> None:
        agent = await self._agent_now()
        if self._active is not None:  # another response began while the call was being bound
            self._owed_response = True
            return
        plan = agent.plan(instructions)
        if plan is None:
            return  # a silent model: not even response.created
        script = self.config.script
        settings = StreamSettings(
            fmt=self.config.output_format,
            voice=script.voice if script is not None else "en-gb",
            chunk_ms=self._ctx.chunk_ms,
            speed=plan.speed or self._ctx.speed,
            prompt_tokens=self.config.prompt_tokens(),
            cached_tokens=self._last_input_total,
            metadata=metadata,
        )
        active = ActiveResponse(self, plan, settings, self._ctx.voice, self._response_finished)
        self._active = active
        self._ctx.stats.responses += 1
        self._last_input_total = active.input_total
        self._track(active.start(), "response")

    def _response_finished(self, active: ActiveResponse) -> None:
        if self._active is active:
            self._active = None
        if active.cancelled:
            self._ctx.stats.cancelled_responses += 1
        if self._owed_response and not self.log.dropped:
            self._owed_response = False
            self._spawn(self._auto_response(), "owed-response")

    def check_tool(self, tool: ToolCallSpec) -> bool:
        """Whether the client declared ``tool``; a script calling anything else is a bug."""
        declared = self.config.tools.get(tool.name)
        if declared is None:
            self._ctx.stats.script_errors += 1
            log.error(
                "stand-in session %s: the script calls %r, which the session did not declare "
                "(declared: %s); the call is skipped",
                self.log.session_id,
                tool.name,
                sorted(self.config.tools),
            )
            return False
        required = (declared.parameters or {}).get("required") or []
        missing = [name for name in required if name not in tool.arguments]
        if missing:
            self._ctx.stats.script_errors += 1
            log.error("stand-in: the script's %s call lacks %s", tool.name, missing)
        return True


def _echo_message(item_id: str, role: str, text: str) -> Any:
    if role == "assistant":
        return out.assistant_item(item_id, "completed", text)
    if role == "system":
        return out.system_item(item_id, text)
    return out.user_text_item(item_id, text)
