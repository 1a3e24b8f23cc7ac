"""A simulated callee on an answered call: Asterisk's side of the AudioSocket connection.

Like Asterisk, it connects to the address the Originate gave, sends the UUID frame, then streams
20 ms slin frames in real time (speech from the scenario's script, silence between lines; nothing
at all for a silent callee) and never sends a hangup frame: when it hangs up it just closes the
socket. It applies Asterisk's rule that an AudioSocket with no frame in either direction for
``silence_hangup`` seconds is closed. It records the arrival time and size of every frame we
send, the audio (for a WAV), DTMF tones heard in that audio, and what it said and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from asterisk import codec
from asterisk.dtmf import DtmfDetector
from asterisk.playout import PacingClock
from asterisk.sim.capture import CapturedMessage
from asterisk.sim.scenarios import Callee, PbxOptions, Step
from asterisk.sim.speech import SpeechRenderer, beep, write_wav

__all__ = ["CallRecord", "CalleeSession", "FrameArrival", "SaidLine"]

log = logging.getLogger(__name__)

Int16Array = npt.NDArray[np.int16]
FRAME_S = 0.020
_VOICE_RMS = 300.0  # ≈ -40 dBFS: louder frames count as the agent speaking
_TURN_END_SILENCE = 0.6  # seconds of quiet after speech that end the agent's turn
_POLL_S = 0.05
_DTMF_TONE_S = 0.1
_DTMF_GAP_S = 0.25


@dataclass(frozen=True, slots=True)
class FrameArrival:
    """One frame OpenDeep sent, as the callee received it."""

    t: float  # event-loop monotonic time of the read that delivered it
    kind: int
    size: int


@dataclass(frozen=True, slots=True)
class SaidLine:
    """One line the callee spoke: loop times of its first and last frame."""

    text: str
    start: float
    end: float
    cut: bool = False


@dataclass(slots=True)
class CallRecord:
    """Everything the simulated PBX saw of one call (keyed by the Originate's ChannelId)."""

    call_id: str
    number: str
    scenario: str
    form: str
    originated_at: float
    rate: int | None = None
    audiosocket_uuid: str | None = None
    audiosocket_address: str | None = None
    outcome: str = "dialing"
    ended_by: str | None = None
    connected_at: float | None = None
    ended_at: float | None = None
    frames: list[FrameArrival] = field(default_factory=list)
    heard: bytearray = field(default_factory=bytearray)
    dtmf_heard: list[str] = field(default_factory=list)
    dtmf_via_ami: list[str] = field(default_factory=list)
    said: list[SaidLine] = field(default_factory=list)
    pressed: list[str] = field(default_factory=list)
    ami_log: list[CapturedMessage] = field(default_factory=list)
    protocol_errors: list[str] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def write_wav(self, path: Path) -> None:
        """Write what the callee heard (our audio) as a mono WAV at the call's rate."""
        if self.rate is None:
            raise ValueError(f"call {self.call_id} never had audio")
        write_wav(path, bytes(self.heard), self.rate)

    def audio_arrivals(self) -> list[float]:
        """Arrival times of our audio frames (to judge pacing)."""
        return [f.t for f in self.frames if codec.is_audio(codec.Kind(f.kind))]


class CalleeSession:
    """Runs one answered callee over AudioSocket until someone hangs up."""

    def __init__(
        self,
        record: CallRecord,
        callee: Callee,
        options: PbxOptions,
        renderer: SpeechRenderer,
        on_press: Callable[[str, int | None], None],
    ) -> None:
        self.record = record
        self._callee = callee
        self._options = options
        self._renderer = renderer
        self._on_press = on_press  # (digit, None) at DTMF begin, (digit, ms) at its end
        self._rate = record.rate or 8000
        self._kind = codec.Kind.SLIN_24K if self._rate == 24000 else codec.Kind.SLIN_8K
        self._lines: dict[str, Int16Array] = {}
        self._utterance: Int16Array | None = None
        self._pos = 0
        self._spoken = asyncio.Event()
        self._control: list[bytes] = []
        self._ended: asyncio.Future[str] | None = None
        self._last_frame = 0.0
        self._last_voice = 0.0
        self._voice_seen = False
        self._digit_heard = asyncio.Event()
        self._dtmf_mark = 0
        self._detector = DtmfDetector(self._rate)

    async def prepare(self) -> None:
        """Render every line of the script off the event loop (never on the 20 ms path)."""
        for step in self._callee.script:
            if step.say is not None and step.say not in self._lines:
                self._lines[step.say] = await asyncio.to_thread(
                    self._renderer.render, step.say, self._rate, self._callee.voice
                )

    def end(self, who: str) -> None:
        """End the call now (first caller wins): us, callee, silence or ami."""
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(who)

    async def run(self, host: str, port: int, audiosocket_uuid: uuid.UUID) -> str:
        """Connect, talk, and return who ended the call (``noserver`` if nobody listened)."""
        loop = asyncio.get_running_loop()
        self._ended = loop.create_future()
        await self.prepare()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), self._options.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            log.info(
                "call %s: AudioSocket %s:%d unreachable (%s)", self.record.call_id, host, port, exc
            )
            return "noserver"
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.record.connected_at = self._last_frame = loop.time()
        self._control.append(codec.encode_uuid(audiosocket_uuid))
        tasks = [
            loop.create_task(self._send_loop(writer), name="callee-send"),
            loop.create_task(self._receive_loop(reader), name="callee-receive"),
            loop.create_task(self._script(), name="callee-script"),
            loop.create_task(self._watchdog(), name="callee-watchdog"),
        ]
        for task in tasks:
            task.add_done_callback(self._task_done)
        try:
            return await self._ended
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()  # Asterisk never sends a hangup frame: it just closes
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("call %s: %s failed", self.record.call_id, task.get_name(), exc_info=exc)
            self.end("callee")

    # -- audio out -------------------------------------------------------------------------
    async def _send_loop(self, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        clock = PacingClock(FRAME_S, now=loop.time)  # re-anchors when late: never bursts
        silence = bytes(self._rate // 50 * 2)
        while True:
            await clock.wait_next()
            now = loop.time()
            if self._control:
                control, self._control = self._control, []
                writer.write(b"".join(control))
                self._last_frame = now
            if not self._callee.silent:
                chunk = self._next_chunk(self._rate // 50)
                writer.write(codec.encode_audio(self._kind, chunk or silence))
                self._last_frame = now

    def _next_chunk(self, samples: int) -> bytes | None:
        if self._utterance is None:
            return None
        part = self._utterance[self._pos : self._pos + samples]
        self._pos += samples
        if self._pos >= self._utterance.size:
            self._utterance = None
            self._spoken.set()
        if part.size < samples:
            part = np.concatenate((part, np.zeros(samples - part.size, dtype=np.int16)))
        return part.astype("<i2").tobytes()

    async def _play(self, pcm: Int16Array, cut_after: float | None = None) -> bool:
        """Speak ``pcm``; True if it was cut short."""
        self._spoken.clear()
        self._pos, self._utterance = 0, pcm
        if self._callee.silent:
            return False
        try:
            await asyncio.wait_for(self._spoken.wait(), cut_after)
        except TimeoutError:
            self._utterance = None
            return True
        return False

    # -- audio in --------------------------------------------------------------------------
    async def _receive_loop(self, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        decoder = codec.Decoder(expect_uuid_first=False)
        while True:
            data = await reader.read(65536)
            if not data:
                self.end("us")
                return
            now = loop.time()
            try:
                frames = decoder.feed(data)
            except codec.AudioSocketProtocolError as exc:
                self.record.protocol_errors.append(str(exc))
                self.end("us")  # Asterisk ends the AudioSocket on a bad frame
                return
            for frame in frames:
                if self._on_frame(frame, now):
                    self.end("us")
                    return

    def _on_frame(self, frame: codec.Frame, now: float) -> bool:
        """Record one of our frames; True when it is a hangup."""
        self._last_frame = now
        self.record.frames.append(FrameArrival(now, int(frame.kind), len(frame.payload)))
        if frame.kind is codec.Kind.HANGUP:
            return True
        if frame.kind is self._kind:
            self.record.heard += frame.payload
            pcm = np.frombuffer(frame.payload, dtype="<i2")
            if pcm.size and float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) > _VOICE_RMS:
                self._last_voice, self._voice_seen = now, True
            digits = self._detector.feed(pcm)
            if digits:
                self.record.dtmf_heard.extend(digits)
                self._digit_heard.set()
        elif codec.is_audio(frame.kind):
            self._error(f"got {frame.kind.name} frames on a {self._kind.name} call")
        else:
            self._error(f"got a {frame.kind.name} frame, which only a PBX may send")
        return False

    def _error(self, text: str) -> None:
        if text not in self.record.protocol_errors:
            log.warning("call %s: %s", self.record.call_id, text)
            self.record.protocol_errors.append(text)

    async def _watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        limit = self._options.silence_hangup
        while True:
            idle = loop.time() - self._last_frame
            if idle >= limit:
                self.end("silence")
                return
            await asyncio.sleep(min(0.05, limit - idle))

    # -- the script ------------------------------------------------------------------------
    async def _script(self) -> None:
        for step in self._callee.script:
            if not await self._step(step):
                self.end("callee")
                return
        if self._callee.after_script == "hangup":
            self.end("callee")
            return
        await asyncio.sleep(self._callee.max_hold)
        self.end("callee")

    async def _step(self, step: Step) -> bool:
        """Perform one step; False when the callee hangs up."""
        loop = asyncio.get_running_loop()
        if step.say is not None:
            start, cut = loop.time(), True  # stays True if the call ends mid-line
            try:
                cut = await self._play(self._lines[step.say], step.cut_after)
            finally:
                self.record.said.append(SaidLine(step.say, start, loop.time(), cut))
        elif step.pause is not None:
            await asyncio.sleep(step.pause)
        elif step.listen is not None:
            await self._listen(step.listen)
        elif step.wait_dtmf is not None:
            heard = await self._wait_dtmf(step.wait_dtmf, step.timeout)
            return heard or step.on_timeout == "continue"
        elif step.press is not None:
            await self._press(step.press)
        elif step.beep is not None:
            await self._play(beep(step.beep, self._rate))
        elif step.hangup:
            return False
        return True

    async def _listen(self, limit: float) -> None:
        """Wait until the agent has spoken and then been quiet, or ``limit`` seconds."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        self._voice_seen = False
        while loop.time() - start < limit:
            if self._voice_seen and loop.time() - self._last_voice >= _TURN_END_SILENCE:
                return
            await asyncio.sleep(_POLL_S)

    async def _wait_dtmf(self, digits: str, limit: float) -> bool:
        """Wait for ``digits`` among the tones heard since the last menu choice.

        Like a real IVR, keys pressed while the menu is still playing count (type-ahead).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            heard = "".join(self.record.dtmf_heard[self._dtmf_mark :])
            if digits in heard:
                self._dtmf_mark = len(self.record.dtmf_heard)
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._digit_heard.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._digit_heard.wait(), remaining)

    async def _press(self, digits: str) -> None:
        for digit in digits:
            self._on_press(digit, None)
            await asyncio.sleep(_DTMF_TONE_S)
            self._on_press(digit, round(_DTMF_TONE_S * 1000))
            self._control.append(codec.encode_dtmf(digit))
            self.record.pressed.append(digit)
            await asyncio.sleep(_DTMF_GAP_S)
