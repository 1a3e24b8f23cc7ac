"""One response of the scripted agent, streamed like the API streams it.

Speech goes out as ``response.output_audio.delta`` in bursts: ``chunk_ms`` of audio per delta,
one delta every ``chunk_ms / speed`` of wall time (``speed`` 20 sends a 5-second sentence in
a quarter of a second), with the transcript in ``response.output_audio_transcript.delta`` pieces
alongside. Then come the function calls, then ``response.done`` with usage. A cancel (the
client's ``response.cancel``, or the VAD hearing the callee with ``interrupt_response``) stops
the deltas at once and ends the response ``cancelled``; ``drop_after`` aborts the TCP socket
after that many deltas, ``hang_after`` stops sending until cancelled.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from openai import BaseModel as SdkModel
from openai.types.realtime.conversation_item import ConversationItem

from ai.sim import outbound as out
from ai.sim.conversation import Conversation, ItemState, text_tokens
from ai.sim.records import AgentLine, ResponseRecord, SessionLog, ToolCallMade
from ai.sim.script import Plan, ToolCallSpec
from ai.sim.voice import AgentVoice, OutputFormat, RenderedSpeech

__all__ = ["ActiveResponse", "ResponseHost", "StreamSettings"]

log = logging.getLogger(__name__)

CancelReason = Literal["turn_detected", "client_cancelled"]


class ResponseHost(Protocol):
    """What a response needs from its session."""

    conversation: Conversation
    log: SessionLog

    def send(self, event: SdkModel) -> None:
        """Queue one server event."""

    def drop(self) -> None:
        """Abort the TCP connection once everything queued so far is written."""

    def check_tool(self, tool: ToolCallSpec) -> bool:
        """Whether the session declared this tool (False: the call is skipped)."""


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """How a response streams and what its input costs."""

    fmt: OutputFormat
    voice: str
    chunk_ms: int
    speed: float
    prompt_tokens: int
    cached_tokens: int
    metadata: dict[str, str] | None = None


class ActiveResponse:
    """A response in flight; :meth:`start` sends ``response.created`` and runs the stream."""

    def __init__(
        self,
        host: ResponseHost,
        plan: Plan,
        settings: StreamSettings,
        voice: AgentVoice,
        on_done: Callable[[ActiveResponse], None],
    ) -> None:
        self.id = out.new_id("resp")
        self.record = ResponseRecord(self.id, fired=list(plan.fired))
        self._host = host
        self._plan = plan
        self._settings = settings
        self._voice = voice
        self._on_done = on_done
        self._stop = asyncio.Event()
        self._reason: CancelReason | None = None
        self._output: list[ConversationItem] = []
        self._audio_item: ItemState | None = None
        self._out_text = 0
        self._out_audio_ms = 0.0
        self.task: asyncio.Task[None] | None = None
        text, audio = host.conversation.input_tokens()
        self._input = (settings.prompt_tokens + text, audio)

    @property
    def input_total(self) -> int:
        """Input tokens of this response (the next one finds them cached)."""
        return sum(self._input)

    def start(self) -> asyncio.Task[None]:
        """Announce the response and stream it in a task."""
        self._host.send(out.response_created(out.response(self.id, "in_progress")))
        self._host.log.responses.append(self.record)
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"sim-{self.id}")
        return self.task

    def cancel(self, reason: CancelReason) -> None:
        """Stop streaming; the response ends ``cancelled``."""
        if self._reason is None:
            self._reason = reason
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        """Whether a cancel was asked."""
        return self._reason is not None

    async def _run(self) -> None:
        try:
            if self._plan.say:
                speech = await asyncio.to_thread(
                    self._voice.render, self._plan.say, self._settings.voice, self._settings.fmt
                )
                if not self.cancelled and not await self._speak(speech):
                    return  # the socket was dropped: nothing more is sent
            elif self._plan.drop_after is not None:
                self._host.drop()
                return
            if not self.cancelled:
                for tool in self._plan.tools:
                    self._call(tool, len(self._output))
            self._finish()
        finally:
            self._on_done(self)

    # -- speech ----------------------------------------------------------------------------
    async def _speak(self, speech: RenderedSpeech) -> bool:
        """Stream one sentence; False if the socket was dropped mid-way."""
        host, rid, index = self._host, self.id, len(self._output)
        item_id = out.new_id("item")
        self._audio_item = ItemState(item_id, "assistant")
        previous = host.conversation.add(self._audio_item)
        pending = out.assistant_item(item_id, "in_progress", None)
        host.send(out.output_item_added(rid, index, pending))
        host.send(out.item_added(pending, previous))
        host.send(out.content_part_added(rid, item_id, index))
        chunks = speech.chunks(self._settings.chunk_ms)
        pieces = _transcript_pieces(speech.text, len(chunks))
        sent_text: list[str] = []
        for number, chunk in enumerate(chunks):
            if self.cancelled:
                break
            if self._plan.drop_after is not None and number >= self._plan.drop_after:
                self._record_line(speech, "dropped", "".join(sent_text))
                host.drop()
                return False
            if self._plan.hang_after is not None and number >= self._plan.hang_after:
                await self._stop.wait()
                break
            if pieces[number]:
                host.send(out.transcript_delta(rid, item_id, index, pieces[number]))
                sent_text.append(pieces[number])
            host.send(out.audio_delta(rid, item_id, index, base64.b64encode(chunk).decode()))
            self._audio_item.audio_ms += len(chunk) / speech.bytes_per_ms
            with contextlib.suppress(TimeoutError):
                gap = self._settings.chunk_ms / 1000 / self._settings.speed
                await asyncio.wait_for(self._stop.wait(), gap)
        transcript = "".join(sent_text).strip()
        status: out.ItemStatus = "incomplete" if self.cancelled else "completed"
        self._audio_item.text = transcript
        host.send(out.audio_done(rid, item_id, index))
        host.send(out.transcript_done(rid, item_id, index, transcript))
        host.send(out.content_part_done(rid, item_id, index, transcript))
        final = out.assistant_item(item_id, status, transcript)
        host.send(out.output_item_done(rid, index, final))
        host.send(out.item_done(final, previous))
        self._output.append(final)
        self._out_text += text_tokens(transcript)
        self._out_audio_ms += self._audio_item.audio_ms
        self._record_line(speech, "cancelled" if self.cancelled else "completed", transcript)
        return True

    def _record_line(self, speech: RenderedSpeech, status: str, transcript: str) -> None:
        assert self._audio_item is not None
        self._host.log.said.append(
            AgentLine(
                response_id=self.id,
                item_id=self._audio_item.item_id,
                text=transcript if status != "completed" else speech.text,
                audio_ms=speech.duration_ms,
                sent_ms=self._audio_item.audio_ms,
                status=status,
            )
        )

    # -- tools -----------------------------------------------------------------------------
    def _call(self, tool: ToolCallSpec, index: int) -> None:
        host = self._host
        if not host.check_tool(tool):
            return
        item_id, call_id = out.new_id("item"), out.new_id("call")
        arguments = json.dumps(tool.arguments)
        state = ItemState(item_id, "function_call", arguments, call_id=call_id, name=tool.name)
        previous = host.conversation.add(state)
        pending = out.function_call_item(item_id, call_id, tool.name, "", "in_progress")
        host.send(out.output_item_added(self.id, index, pending))
        host.send(out.item_added(pending, previous))
        host.send(out.function_call_arguments_delta(self.id, item_id, index, call_id, arguments))
        host.send(
            out.function_call_arguments_done(
                self.id, item_id, index, call_id, name=tool.name, arguments=arguments
            )
        )
        final = out.function_call_item(item_id, call_id, tool.name, arguments, "completed")
        host.send(out.output_item_done(self.id, index, final))
        host.send(out.item_done(final, previous))
        self._output.append(final)
        self._out_text += text_tokens(arguments)
        host.log.tool_calls.append(ToolCallMade(call_id, tool.name, dict(tool.arguments)))

    # -- the end ---------------------------------------------------------------------------
    def _finish(self) -> None:
        input_text, input_audio = self._input
        usage = out.Usage(
            input_text=input_text,
            input_audio=input_audio,
            cached=self._settings.cached_tokens,
            output_text=self._out_text,
            output_audio=int(self._out_audio_ms // 50),
        )
        status: Literal["completed", "cancelled"] = "cancelled" if self.cancelled else "completed"
        body = out.response(
            self.id,
            status,
            output=self._output,
            usage=usage,
            reason=self._reason,
            metadata=self._settings.metadata,
        )
        self._host.send(out.response_done(body))
        self.record.status, self.record.reason = status, self._reason
        self.record.usage = _usage_dict(usage)


def _usage_dict(usage: out.Usage) -> dict[str, int]:
    return {
        "input_text_tokens": usage.input_text,
        "input_audio_tokens": usage.input_audio,
        "cached_tokens": min(usage.cached, usage.input_text + usage.input_audio),
        "output_text_tokens": usage.output_text,
        "output_audio_tokens": usage.output_audio,
    }


def _transcript_pieces(text: str, chunks: int) -> list[str]:
    """The text split over ``chunks`` deltas, word by word, ahead of the audio like the API."""
    if chunks <= 0:
        return []
    words = text.split()
    pieces = [""] * chunks
    for position, word in enumerate(words):
        slot = min(chunks - 1, position * chunks // max(1, len(words)))
        pieces[slot] += (" " if position else "") + word
    return pieces
