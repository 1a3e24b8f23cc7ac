"""The connected phase of a call: the Realtime session, its events, transcripts, and the ending.

:class:`Conversation` opens the session once the AudioSocket is up (the pacer already sends
silence, so Asterisk's 2-second rule never fires while the socket opens), lets the agent greet
first, dispatches the typed server events through one table, and ends the call in one of the
:class:`~actors.call_tools.EndMode` ways. It returns the end reason; the shell reports ``Ended``.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import math
import time
import wave
from collections.abc import Callable
from importlib import resources
from typing import Any

import numpy as np

from actors.call_bridge import AgentItem, CallBridge
from actors.call_report import CallReporter
from actors.call_spec import CallSpec
from actors.call_state import PbxState
from actors.call_tools import EndMode, EndRequest, ToolRunner
from actors.recorder import StereoRecorder
from ai.events import (
    FunctionCallArgumentsDone,
    InputAudioTranscriptionCompleted,
    OutputAudioDelta,
    OutputAudioDone,
    OutputAudioTranscriptDone,
    ResponseCreated,
    ResponseDone,
    ServerEvent,
    SpeechStarted,
    SpeechStopped,
)
from ai.prompts import build_session_update, dtmf_note, voicemail_instructions
from ai.realtime import AudioConverter, RealtimeError, RealtimeSession
from asterisk.audiosocket import AudioSocketConnection
from asterisk.codec import SAMPLE_RATES, Kind, is_audio
from asterisk.resample import Downsampler3
from db.messages import CallMessageKind, DtmfReceived, TranscriptTurnAdded
from db.shapes import Speaker, TranscriptTurn, Usage, utcnow
from db.states import EndReason
from opendeep.settings import Settings

__all__ = ["Conversation", "apology_audio", "apology_chime"]

log = logging.getLogger(__name__)

AMD_GRACE = 1.0  # s to let an AMD verdict sent just before the AudioSocket connected arrive
REQUEST_STALE = 5.0  # s after which a response.create with no response.created counts as lost
KIND_WAIT = 0.2  # s to learn the audio kind from the callee's first frame before assuming it
GOODBYE_CAP = 15.0  # s a goodbye may take to finish playing before we hang up anyway
SAY_GOODBYE_CAP = 10.0  # s for the model to produce and play a goodbye we asked for
APOLOGY_CAP = 8.0  # s for the spoken apology (or the chime) to play
GOODBYE_INSTRUCTIONS = (
    "The call has to end now: say goodbye in one short, polite sentence, and nothing else."
)


def warm_up_sdk() -> None:
    """Import the Realtime SDK (~0.4 s of CPU) ahead of need: run in a thread while it rings."""
    import openai.resources.realtime  # noqa: F401, PLC0415
    import websockets.asyncio.client  # noqa: F401, PLC0415


@functools.cache
def apology_audio(rate: int) -> bytes:
    """The pre-rendered spoken apology (``TECHNICAL_PROBLEM_APOLOGY``) at ``rate`` (8 or 24 kHz).

    Rendered at build time by ``tools/render_apology.py`` and shipped with the package, since
    no voice is left to speak once the Realtime session is gone. Falls back to the chime when
    the asset is missing or unreadable, so a call still ends politely.
    """
    try:
        data = resources.files("actors").joinpath("assets/apology-en.wav").read_bytes()
        with wave.open(io.BytesIO(data)) as wav:
            if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (24_000, 1, 2):
                raise ValueError("apology asset must be 24 kHz 16-bit mono")
            pcm: bytes = wav.readframes(wav.getnframes())
    except (OSError, ValueError, wave.Error) as exc:
        log.warning("spoken apology unavailable (%s); playing the chime instead", exc)
        return apology_chime(rate)
    if rate == 24_000:
        return pcm
    samples = np.frombuffer(pcm[: len(pcm) // 6 * 6], dtype="<i2")
    narrow: bytes = Downsampler3().process(samples).astype("<i2").tobytes()
    return narrow


def apology_chime(rate: int) -> bytes:
    """A soft three-note descending chime (~1 s): the language-free "sorry, we must hang up".

    Generated, not recorded: it needs no text-to-speech asset, no language or voice to match,
    and it works when nothing else does. A spoken apology per language and voice (rendered at
    build time) would be friendlier; until then the chime plus the hang-up is the polite end.
    """
    parts = []
    for freq in (880.0, 740.0, 587.0):
        t = np.arange(int(rate * 0.22)) / rate
        envelope = np.minimum(1.0, np.minimum(t / 0.01, (t[-1] - t) / 0.06))
        parts += [np.sin(2 * math.pi * freq * t) * envelope * 6000, np.zeros(int(rate * 0.08))]
    parts.append(np.zeros(int(rate * 0.2)))
    return np.concatenate(parts).astype("<i2").tobytes()


class Conversation:
    """Runs a connected call to its end; returns the end reason."""

    def __init__(
        self,
        spec: CallSpec,
        settings: Settings,
        connection: AudioSocketConnection,
        reporter: CallReporter,
        pbx_state: PbxState,
        *,
        answered_at: float,
        recording: Callable[[int], StereoRecorder | None],
        frames_per_append: int = 1,
    ) -> None:
        self._spec = spec
        self._settings = settings
        self._conn = connection
        self._reporter = reporter
        self._pbx = pbx_state
        self._answered_at = answered_at
        self._recording = recording
        self._frames_per_append = frames_per_append
        self._end: asyncio.Future[EndRequest] = asyncio.get_running_loop().create_future()
        self._session: RealtimeSession | None = None
        self._tools: ToolRunner | None = None
        self.bridge: CallBridge | None = None
        self.recorder: StereoRecorder | None = None
        self.usage = Usage()
        self._requested = False  # a response.create is in flight (no response.created yet)
        self._requested_at = 0.0
        self._deferred: tuple[bool, str | None] | None = None
        self._speech: dict[str, list[float]] = {}
        self._voicemail_armed = False
        self._vad_silence_ms = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers: dict[type[ServerEvent], Callable[[Any], None]] = {
            SpeechStarted: self._on_speech_started,
            SpeechStopped: self._on_speech_stopped,
            InputAudioTranscriptionCompleted: self._on_callee_transcript,
            ResponseCreated: self._on_response_created,
            OutputAudioDelta: self._on_audio_delta,
            OutputAudioDone: self._on_audio_done,
            OutputAudioTranscriptDone: self._on_agent_transcript,
            FunctionCallArgumentsDone: self._on_function_call,
            ResponseDone: self._on_response_done,
        }

    # -- public -------------------------------------------------------------------------------
    def request_end(self, request: EndRequest) -> None:
        """End the call (the first request wins)."""
        if not self._end.done():
            log.info("call %s: ending: %s (%s)", self._spec.call_id, request.reason, request.mode)
            self._end.set_result(request)

    def provide_user_info(self, request_id: str, answer: str) -> bool:
        """Forward the creator's answer to the HITL mailbox."""
        return self._tools is not None and self._tools.provide_user_info(request_id, answer)

    def on_amd(self) -> None:
        """AMD said MACHINE mid-call: leave the voicemail message, or hang up at once."""
        if not self._spec.brief.voicemail_message:
            self.request_end(EndRequest(EndReason.VOICEMAIL, EndMode.NOW))
        elif self._session is not None and not self._voicemail_armed:
            self._arm_voicemail(self._session)

    async def run(self) -> EndReason:
        """Bridge the call until it ends; returns why it ended."""
        kind = await self._audio_kind()
        self._conn.set_audio_kind(kind)
        self.recorder = self._recording(SAMPLE_RATES[kind])
        converter = AudioConverter(kind, self._settings.realtime_8k_format)
        self.bridge = CallBridge(
            self._conn,
            converter,
            kind,
            on_agent_turn=self._on_agent_turn,
            on_dtmf=self._on_dtmf,
            recorder=self.recorder,
            frames_per_append=self._frames_per_append,
        )
        self.bridge.start_pacer()  # silence from the first tick: Asterisk's 2 s rule
        try:
            request = await self._converse(converter)
            await self._finish(request)
            return request.reason
        finally:
            await self._close()

    # -- setup --------------------------------------------------------------------------------
    async def _audio_kind(self) -> Kind:
        """The callee's first audio frame says the rate; else the Originate form decides."""
        deadline = time.monotonic() + KIND_WAIT
        # The connection's reader sets audio_kind on the first audio frame; it has no event.
        while self._conn.audio_kind is None and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        kind = self._conn.audio_kind
        if kind is not None and is_audio(kind):
            return kind
        # App form: AudioSocket() streams slin 8 kHz; the sample dialplan asks for c(slin24).
        return Kind.SLIN_8K if self._settings.originate_form == "app" else Kind.SLIN_24K

    async def _open_session(self, converter: AudioConverter) -> RealtimeSession:
        s, brief = self._settings, self._spec.brief
        update = build_session_update(
            brief,
            call_id=self._spec.call_id,
            voice=brief.voice or s.realtime_voice,
            audio_format=converter.session_format,
        )
        vad = update["session"]["audio"]["input"].get("turn_detection") or {}
        self._vad_silence_ms = int(vad.get("silence_duration_ms", 0))
        api_key = s.openai_api_key.get_secret_value() if s.openai_api_key else "sim"
        return await RealtimeSession.connect(
            api_key=api_key,
            model=s.realtime_model,
            base_url=s.realtime_base_url,
            session_update=update,
            audio_format=converter.session_format,
        )

    def _expects_amd(self) -> bool:
        # The sample dialplan runs AMD() in a context named *-amd, before AudioSocket() connects.
        s = self._settings
        return s.originate_form == "context" and s.dialplan_context.endswith("-amd")

    async def _converse(self, converter: AudioConverter) -> EndRequest:
        assert self.bridge is not None
        if self._expects_amd() and self._pbx.amd is None:
            # Its UserEvent left before the connection did, but travels AMI → gateway → us:
            # wait a moment so a machine never hears our greeting.
            deadline = time.monotonic() + AMD_GRACE
            while self._pbx.amd is None and time.monotonic() < deadline:
                await self._pbx.wait_changed(deadline - time.monotonic())
        if self._pbx.machine and not self._spec.brief.voicemail_message:
            return EndRequest(EndReason.VOICEMAIL, EndMode.NOW)
        try:
            session = self._session = await self._open_session(converter)
        except RealtimeError as exc:
            log.error("call %s: Realtime session failed: %s", self._spec.call_id, exc)
            return EndRequest(EndReason.TECHNICAL_ERROR, EndMode.APOLOGY)
        self.bridge.attach(session)
        self._tools = ToolRunner(
            self._spec,
            self._settings,
            session,
            self.bridge,
            self._reporter,
            respond=self.respond,
            request_end=self.request_end,
        )
        if self._pbx.machine:
            self._arm_voicemail(session)
        else:
            self.bridge.protect_next_response()  # the greeting carries the AI disclosure
            self._send_response(None)
        inbound = self._spawn(self.bridge.pump_inbound(), "inbound")
        events = self._spawn(self._dispatch(session), "realtime-events")
        limit = self._spawn(asyncio.sleep(self._settings.max_call_duration), "max-duration")
        await asyncio.wait({self._end, inbound, events, limit}, return_when=asyncio.FIRST_COMPLETED)
        if self._end.done():
            return self._end.result()
        if inbound.done():
            return EndRequest(EndReason.CALLEE_HUNG_UP, EndMode.NOW)
        if events.done():
            log.warning(
                "call %s: Realtime session lost: %s", self._spec.call_id, session.end_reason
            )
            return EndRequest(EndReason.TECHNICAL_ERROR, EndMode.APOLOGY)
        return EndRequest(EndReason.MAX_DURATION, EndMode.SAY_GOODBYE)

    def _arm_voicemail(self, session: RealtimeSession) -> None:
        # No greeting: the machine's greeting plays first; the VAD answers after its beep.
        self._voicemail_armed = True
        session.add_user_text(voicemail_instructions(self._spec.brief), respond=False)

    # -- responses: one at a time ---------------------------------------------------------------
    def respond(self, instructions: str | None = None) -> None:
        """Ask the model to speak; deferred while a response is in flight (merged if several)."""
        bridge = self.bridge
        if self._requested and time.monotonic() - self._requested_at > REQUEST_STALE:
            self._requested = False  # refused (an error event) or lost: don't wait forever
        if self._requested or (bridge is not None and bridge.active_response is not None):
            previous = self._deferred[1] if self._deferred else None
            self._deferred = (True, instructions or previous)
            return
        self._send_response(instructions)

    def _send_response(self, instructions: str | None) -> None:
        if self._session is None:
            return
        self._requested, self._requested_at = True, time.monotonic()
        self._session.create_response(instructions)

    # -- event dispatch -------------------------------------------------------------------------
    async def _dispatch(self, session: RealtimeSession) -> None:
        handlers = self._handlers
        async for event in session.events():
            handler = handlers.get(type(event))
            if handler is not None:
                handler(event)

    def _on_speech_started(self, event: SpeechStarted) -> None:
        assert self.bridge is not None
        self._speech[event.item_id] = [time.monotonic(), 0.0]
        self.bridge.barge_in()

    def _on_speech_stopped(self, event: SpeechStopped) -> None:
        assert self.bridge is not None
        times = self._speech.setdefault(event.item_id, [time.monotonic(), 0.0])
        times[1] = time.monotonic()
        # audio_end_ms includes the silence that ended the turn: the voice stopped earlier.
        self.bridge.mark_speech_stopped(event.audio_end_ms - self._vad_silence_ms)

    def _on_callee_transcript(self, event: InputAudioTranscriptionCompleted) -> None:
        now = time.monotonic()
        start, end = self._speech.pop(event.item_id, [now, now])
        self._report_turn(Speaker.CALLEE, event.transcript, start, end or now, interrupted=False)

    def _on_response_created(self, event: ResponseCreated) -> None:
        assert self.bridge is not None
        self._requested = False
        self.bridge.on_response_created(event.response.id or "")

    def _on_audio_delta(self, event: OutputAudioDelta) -> None:
        assert self.bridge is not None
        self.bridge.on_audio_delta(event)

    def _on_audio_done(self, event: OutputAudioDone) -> None:
        assert self.bridge is not None
        self.bridge.on_audio_done(event.item_id)

    def _on_agent_transcript(self, event: OutputAudioTranscriptDone) -> None:
        assert self.bridge is not None
        self.bridge.on_transcript(event.item_id, event.transcript)

    def _on_function_call(self, event: FunctionCallArgumentsDone) -> None:
        assert self._tools is not None
        self._tools.handle(event)

    def _on_response_done(self, event: ResponseDone) -> None:
        assert self.bridge is not None
        response = event.response
        if response.usage is not None:
            self.usage = self.usage + response.usage.to_usage()
        self._requested = False
        self.bridge.on_response_done(response.id)
        if self._deferred is not None and self.bridge.active_response is None:
            _, instructions = self._deferred
            self._deferred = None
            self._send_response(instructions)

    # -- transcript and DTMF ---------------------------------------------------------------------
    def _offset_ms(self, at: float) -> int:
        return max(0, round((at - self._answered_at) * 1000))

    def _report_turn(
        self, speaker: Speaker, text: str, start: float, end: float, *, interrupted: bool
    ) -> None:
        turn = TranscriptTurn(
            speaker=speaker,
            text=text,
            start_ms=self._offset_ms(start),
            end_ms=max(self._offset_ms(end), self._offset_ms(start)),
            interrupted=interrupted,
        )
        self._reporter.report(CallMessageKind.TRANSCRIPT_TURN, TranscriptTurnAdded(turn=turn))

    def _on_agent_turn(self, item: AgentItem) -> None:
        now = time.monotonic()
        start = item.first_played or now
        end = (item.last_played + 0.02) if item.last_played is not None else start
        text = item.transcript or ""
        self._report_turn(Speaker.AGENT, text, start, end, interrupted=item.interrupted)

    def _on_dtmf(self, digit: str, at: float) -> None:
        self._reporter.report(CallMessageKind.DTMF_RECEIVED, DtmfReceived(digit=digit, at=utcnow()))
        self._report_turn(Speaker.CALLEE, f"[pressed {digit}]", at, at + 0.1, interrupted=False)
        if self._session is not None:
            self._session.add_user_text(dtmf_note(digit), respond=False)
            self.respond(None)

    # -- the ending -----------------------------------------------------------------------------
    async def _finish(self, request: EndRequest) -> None:
        """Play what the ending needs (goodbye, apology), then send the hangup frame."""
        bridge = self.bridge
        assert bridge is not None
        if self._tools is not None:
            self._tools.on_call_ending()
        if request.mode is EndMode.NOW or self._conn.closed:
            return await self._hangup()
        if request.mode is EndMode.APOLOGY or self._session is None:
            bridge.active_response = None  # the session is gone: nothing more will come
            bridge.drop_playout()
            bridge.play_tones(apology_audio(SAMPLE_RATES[bridge.kind]))
            await self._while_connected(bridge.wait_idle(APOLOGY_CAP))
        elif request.mode is EndMode.SAY_GOODBYE:
            if bridge.active_response is not None:
                bridge.barge_in()  # stop mid-sentence: the goodbye comes next
            bridge.protect_next_response()
            self._deferred = None
            self._requested = False
            self._send_response(GOODBYE_INSTRUCTIONS)
            await self._while_connected(self._goodbye_played(bridge))
        else:
            await self._while_connected(bridge.wait_idle(GOODBYE_CAP))
        await self._hangup()

    async def _goodbye_played(self, bridge: CallBridge) -> None:
        deadline = time.monotonic() + SAY_GOODBYE_CAP
        # Two sources change these (the event dispatch and the pacer): poll at the frame rate.
        while (self._requested or not bridge.idle) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    async def _while_connected(self, wait: Any) -> None:
        """Await ``wait`` unless the callee hangs up first."""
        waiting = asyncio.ensure_future(wait)
        closed = asyncio.ensure_future(self._conn.wait_closed())
        try:
            await asyncio.wait({waiting, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiting, closed):
                task.cancel()

    async def _hangup(self) -> None:
        if self.bridge is not None:
            await self.bridge.close()  # no frame after the hangup frame
        if not self._conn.closed:
            await self._conn.hangup()

    async def _close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._tools is not None:
            await self._tools.close()
        if self.bridge is not None:
            await self.bridge.close()
        if self._session is not None:
            await self._session.close()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{name}-{self._spec.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("call %s: %s failed", self._spec.call_id, task.get_name(), exc_info=exc)
