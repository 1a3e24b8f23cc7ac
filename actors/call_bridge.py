"""The audio bridge of a live call: AudioSocket ⇄ Realtime, the 20 ms pacer, and barge-in.

Two pumps, one writer per socket (DESIGN.md §4): inbound AudioSocket frames are converted and
queued as ``input_audio_buffer.append`` (the RealtimeSession's send task is the socket's only
writer); model audio deltas are converted into the :class:`PlayoutBuffer`, and the
:class:`Pacer` writes exactly one 20 ms frame per tick to the AudioSocket, silence when idle.

Barge-in (:meth:`CallBridge.barge_in`) is one method: clear the playout at once, truncate each
item that was cut at what the callee really heard (``min(played_ms, audio_ms)``), cancel the
response in progress and ignore its late deltas. Items marked protected (the greeting with the
AI disclosure, the goodbye, DTMF tones) are never cut.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from actors.recorder import StereoRecorder
from ai.events import OutputAudioDelta
from ai.realtime import AudioConverter, RealtimeSession
from asterisk.audiosocket import AudioSocketConnection
from asterisk.codec import Kind, frame_bytes
from asterisk.playout import Pacer, PlayoutBuffer

__all__ = ["AgentItem", "CallBridge", "Samples"]

log = logging.getLogger(__name__)

SAMPLE_WINDOW = 30_000  # latency samples kept per figure (10 min of 20 ms frames)
IDLE_POLL = 0.02  # s between looks at the playout while waiting for it to drain
TIMELINE_WINDOW = 3_000  # appended chunks remembered to map the VAD's ms to arrival times


class Samples:
    """A bounded window of latency samples in seconds."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: deque[float] = deque(maxlen=SAMPLE_WINDOW)

    def add(self, seconds: float) -> None:
        """Record one sample."""
        self.values.append(seconds)


@dataclass(slots=True)
class AgentItem:
    """One assistant audio item (or a tone we play) on its way to the callee."""

    item_id: str
    response_id: str | None
    protected: bool = False
    is_tone: bool = False
    model_bytes: int = 0  # audio received from the model, in the session format
    wire_bytes: int = 0  # the same audio as pushed into the playout, at the call's rate
    flushed: bool = False
    interrupted: bool = False
    first_played: float | None = None
    last_played: float | None = None
    transcript: str | None = None
    finished: bool = False  # fully played or cut; its turn may be reported


AgentTurnSink = Callable[[AgentItem], None]
DtmfSink = Callable[[str, float], None]


class CallBridge:
    """Both audio directions of one call, and the playout-side half of the conversation."""

    def __init__(
        self,
        connection: AudioSocketConnection,
        converter: AudioConverter,
        kind: Kind,
        *,
        on_agent_turn: AgentTurnSink,
        on_dtmf: DtmfSink,
        recorder: StereoRecorder | None = None,
        frames_per_append: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind = kind
        self.frame_size = frame_bytes(kind)
        self._conn = connection
        self._session: RealtimeSession | None = None
        self._converter = converter
        self._recorder = recorder
        self._on_agent_turn = on_agent_turn
        self._on_dtmf = on_dtmf
        self._frames_per_append = max(1, frames_per_append)
        self._clock = clock
        self.buffer = PlayoutBuffer(self.frame_size)
        self.pacer = Pacer(self.buffer, self._send_frame, name=f"pacer-{connection.call_id}")
        self._items: dict[str, AgentItem] = {}
        self._cancelled: set[str] = set()
        self._protect_next = False
        self._protected_responses: set[str] = set()
        self.active_response: str | None = None
        self._speech_seen = 0
        self._barge_at: float | None = None
        self._v2v_from: float | None = None
        self._timeline: deque[tuple[float, float, float]] = deque(maxlen=TIMELINE_WINDOW)
        self._appended_ms = 0.0
        self._tones = 0
        self._kind_mismatch = False
        self.first_agent_frame_at: float | None = None
        self.inbound_forward = Samples()
        self.barge_in_latency = Samples()
        self.voice_to_voice = Samples()
        self.barge_ins = 0
        self.truncations: list[tuple[str, int]] = []

    # -- life cycle ------------------------------------------------------------------------
    def attach(self, session: RealtimeSession) -> None:
        """The Realtime session is up: inbound audio and barge-in go to it from now on."""
        self._session = session

    def start_pacer(self) -> None:
        """Start ticking (silence until the model speaks): Asterisk needs a frame every 20 ms."""
        if not self.pacer.running:
            self.pacer.start()

    async def pump_inbound(self) -> None:
        """Forward the callee's audio to the model until the callee hangs up (EOF)."""
        session = self._session
        if session is None:
            raise RuntimeError("attach the Realtime session before pumping audio into it")
        pending = bytearray()
        arrivals: list[float] = []
        conn, to_model, clock = self._conn, self._converter, self._clock
        bytes_per_ms = to_model.model_bytes_per_ms
        while (frame := await conn.recv()) is not None:
            now = clock()
            if frame.kind is Kind.DTMF:
                self._on_dtmf(chr(frame.payload[0]), now)
                continue
            if frame.kind is not self.kind:
                self._note_kind_mismatch(frame.kind)
                continue
            if self._recorder is not None:
                self._recorder.callee(frame.payload, now)
            pending += to_model.to_model(frame.payload)
            arrivals.append(now)
            if len(arrivals) < self._frames_per_append:
                continue
            session.append_audio(bytes(pending))
            sent = clock()
            for arrived in arrivals:
                self.inbound_forward.add(sent - arrived)
            chunk_ms = len(pending) / bytes_per_ms
            self._timeline.append((self._appended_ms, chunk_ms, arrivals[0]))
            self._appended_ms += chunk_ms
            pending.clear()
            arrivals.clear()

    def _note_kind_mismatch(self, kind: Kind) -> None:
        if not self._kind_mismatch:
            self._kind_mismatch = True
            log.warning(
                "call %s: callee sends %s on a %s call; ignoring it",
                self._conn.call_id,
                kind.name,
                self.kind.name,
            )

    async def close(self) -> None:
        """Stop the pacer (no frame is sent after this returns)."""
        await self.pacer.close()

    # -- model audio ----------------------------------------------------------------------
    def on_response_created(self, response_id: str) -> None:
        """A response started; it is protected if one was asked for."""
        self.active_response = response_id
        if self._protect_next:
            self._protect_next = False
            self._protected_responses.add(response_id)

    def on_response_done(self, response_id: str | None) -> None:
        """A response ended: its items are complete (flushed), whatever its status."""
        if response_id is not None and response_id == self.active_response:
            self.active_response = None
        for item in self._items.values():
            if item.response_id == response_id and not item.flushed:
                self.on_audio_done(item.item_id)

    def on_audio_delta(self, event: OutputAudioDelta) -> None:
        """Queue a chunk of the agent's voice (late chunks of a cancelled response are dropped)."""
        if event.response_id in self._cancelled:
            return
        audio = binascii.a2b_base64(event.delta)
        item = self._items.get(event.item_id)
        if item is None:
            protected = event.response_id in self._protected_responses
            item = self._items[event.item_id] = AgentItem(
                event.item_id, event.response_id, protected=protected
            )
        item.model_bytes += len(audio)
        pcm = self._converter.from_model(audio)
        if pcm:
            item.wire_bytes += len(pcm)
            self.buffer.push(pcm, event.item_id)

    def on_audio_done(self, item_id: str) -> None:
        """The item's audio is complete: pad its tail into a whole frame."""
        item = self._items.get(item_id)
        if item is None or item.flushed:
            return
        item.flushed = True
        self.buffer.flush(item_id)
        self._check_finished(item)

    def on_transcript(self, item_id: str, transcript: str) -> None:
        """What the agent said in an item; reported once the item finished playing (or was cut)."""
        item = self._items.get(item_id)
        if item is None:  # a text-only item (no audio arrived): nothing to wait for
            item = self._items[item_id] = AgentItem(item_id, None, flushed=True, finished=True)
        item.transcript = transcript
        self._maybe_report(item)

    def protect_next_response(self) -> None:
        """The next response (greeting, goodbye) plays in full, whatever the callee does."""
        self._protect_next = True

    def protect_active(self) -> None:
        """Protect the response in progress and its queued audio (the goodbye before end_call)."""
        if self.active_response is not None:
            self._protected_responses.add(self.active_response)
        for item in self._items.values():
            if not item.finished:
                item.protected = True

    def play_tones(self, pcm: bytes) -> None:
        """Queue generated audio (DTMF tones, the apology chime) after what is queued; protected."""
        self._tones += 1
        label = f"tone-{self._tones}"
        item = self._items[label] = AgentItem(label, None, protected=True, is_tone=True)
        item.wire_bytes = len(pcm)
        self.buffer.push(pcm, label)
        self.on_audio_done(label)

    def drop_playout(self) -> None:
        """Discard everything queued (before the apology after a lost session)."""
        self.pacer.interrupt()
        self._converter.reset_output()
        for item in self._items.values():
            if not item.finished:
                item.interrupted = item.finished = True

    @property
    def idle(self) -> bool:
        """Nothing being generated and nothing left to play."""
        return self.active_response is None and self.buffer.queued_ms == 0

    async def wait_idle(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until the model is done and the playout drained; False after ``timeout`` s."""
        deadline = self._clock() + timeout
        while not self.idle:
            if self._clock() >= deadline:
                return False
            await asyncio.sleep(IDLE_POLL)
        return True

    # -- barge-in -------------------------------------------------------------------------
    def barge_in(self) -> bool:
        """The callee started talking: stop the agent at once; False if a protected item plays."""
        now = self._clock()
        cut = [i for i in self._items.values() if not i.finished and self._unplayed(i)]
        if any(item.protected for item in cut):
            return False
        active = self.active_response
        session = self._session
        if active is not None and active not in self._protected_responses and session:
            self._cancelled.add(active)
            session.cancel_response()
        if not cut:
            return bool(active)
        self.pacer.interrupt()
        self._converter.reset_output()
        self._barge_at = now
        self.barge_ins += 1
        for item in cut:
            heard = min(self.buffer.played_ms(item.item_id), self._model_ms(item))
            if session is not None:
                session.truncate(item.item_id, heard)
            self.truncations.append((item.item_id, heard))
            item.interrupted = item.flushed = item.finished = True
            self._maybe_report(item)
        return True

    def _unplayed(self, item: AgentItem) -> bool:
        return not item.flushed or self.buffer.played_ms(item.item_id) < self._wire_ms(item)

    def _wire_ms(self, item: AgentItem) -> int:
        return item.wire_bytes * 20 // self.frame_size

    def _model_ms(self, item: AgentItem) -> int:
        return item.model_bytes // self._converter.model_bytes_per_ms

    def mark_speech_stopped(self, audio_end_ms: int) -> None:
        """The callee stopped at ``audio_end_ms`` of appended audio: time the reply from there."""
        for start, length, arrived in reversed(self._timeline):
            if start <= audio_end_ms:
                self._v2v_from = arrived + (min(audio_end_ms - start, length)) / 1000
                return

    # -- the wire ---------------------------------------------------------------------------
    def _send_frame(self, frame: bytes) -> None:
        """Pacer tick: write the frame, then account for it (speech or silence)."""
        self._conn.send_audio(frame)
        now = self._clock()
        if self._recorder is not None:
            self._recorder.agent(frame, now)
        speech = self.pacer.stats.speech_frames
        if speech == self._speech_seen:
            if self._barge_at is not None:
                self.barge_in_latency.add(now - self._barge_at)
                self._barge_at = None
            return
        self._speech_seen = speech
        self._on_speech_frame(now)

    def _on_speech_frame(self, now: float) -> None:
        if self.first_agent_frame_at is None:
            self.first_agent_frame_at = now
        if self._v2v_from is not None:
            self.voice_to_voice.add(now - self._v2v_from)
            self._v2v_from = None
        label = self.buffer.current_utterance
        item = self._items.get(label) if label is not None else None
        if item is None:
            return
        if item.first_played is None:
            item.first_played = now
        item.last_played = now
        self._check_finished(item)

    def _check_finished(self, item: AgentItem) -> None:
        if item.finished or not item.flushed:
            return
        if self.buffer.played_ms(item.item_id) >= self._wire_ms(item):
            item.finished = True
            self.buffer.forget(item.item_id)
            self._maybe_report(item)

    def _maybe_report(self, item: AgentItem) -> None:
        if not item.finished:
            return
        if item.is_tone:
            self._items.pop(item.item_id, None)
        elif item.transcript is not None:
            self._on_agent_turn(item)
            self._items.pop(item.item_id, None)  # reported once
