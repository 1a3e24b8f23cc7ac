"""Outbound playout: a buffer cutting audio into exact frames, and the 20 ms deadline clock."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["Pacer", "PacerStats", "PacingClock", "PlayoutBuffer", "percentile"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Frame:
    data: bytes
    utterance: str
    audio_bytes: int  # bytes of real audio in `data`; the rest is padding silence


class PlayoutBuffer:
    """Cuts arbitrary byte chunks into exact frames and remembers what each utterance played."""

    __slots__ = (
        "_frame_bytes",
        "_frame_ms",
        "_frames",
        "_open",
        "_partial",
        "_played",
        "_queued_bytes",
        "_silence",
        "current_utterance",
    )

    def __init__(self, frame_bytes: int, *, frame_ms: int = 20) -> None:
        if frame_bytes <= 0 or frame_bytes % 2 or frame_ms <= 0:
            raise ValueError("frame_bytes must be a positive even number and frame_ms positive")
        self._frame_bytes = frame_bytes
        self._frame_ms = frame_ms
        self._silence = bytes(frame_bytes)
        self._frames: deque[_Frame] = deque()
        self._partial = bytearray()
        self._open: str | None = None  # utterance pushed and not yet flushed
        self._queued_bytes = 0
        self._played: dict[str, int] = {}  # utterance -> real audio bytes handed to the wire
        self.current_utterance: str | None = None
        """The utterance whose audio was last handed to the wire (None before any)."""

    @property
    def frame_bytes(self) -> int:
        """Size of every frame `pop` returns."""
        return self._frame_bytes

    @property
    def silence(self) -> bytes:
        """One frame of silence."""
        return self._silence

    @property
    def queued_ms(self) -> int:
        """Milliseconds of audio waiting, whole frames and the held partial frame."""
        return self._ms(self._queued_bytes + len(self._partial))

    @property
    def speaking(self) -> bool:
        """True between an utterance's first push and its flush (or a clear)."""
        return self._open is not None

    def push(self, chunk: bytes, utterance: str) -> None:
        """Append audio of `utterance`; a new utterance first pads and queues the previous tail."""
        if self._open is not None and utterance != self._open:
            self.flush(self._open)
        self._open = utterance
        partial = self._partial
        partial += chunk
        size = self._frame_bytes
        whole = len(partial) - len(partial) % size
        for start in range(0, whole, size):
            self._frames.append(_Frame(bytes(partial[start : start + size]), utterance, size))
        self._queued_bytes += whole
        del partial[:whole]

    def flush(self, utterance: str) -> None:
        """The end of `utterance`: pad its held partial frame with silence and queue it."""
        if self._open != utterance:
            return
        self._open = None
        real = len(self._partial)
        if not real:
            return
        data = bytes(self._partial) + self._silence[real:]
        self._frames.append(_Frame(data, utterance, real))
        self._queued_bytes += self._frame_bytes
        self._partial.clear()

    def pop(self) -> bytes | None:
        """The next whole frame (counted as played), or None when no whole frame is queued."""
        if not self._frames:
            return None
        frame = self._frames.popleft()
        self._queued_bytes -= self._frame_bytes
        self._played[frame.utterance] = self._played.get(frame.utterance, 0) + frame.audio_bytes
        self.current_utterance = frame.utterance
        return frame.data

    def clear(self) -> None:
        """Barge-in: drop everything queued, including the partial frame, at once."""
        self._frames.clear()
        self._partial.clear()
        self._open = None
        self._queued_bytes = 0

    def played_ms(self, utterance: str) -> int:
        """Milliseconds of `utterance` handed to the wire so far (padding excluded)."""
        return self._ms(self._played.get(utterance, 0))

    def forget(self, utterance: str) -> None:
        """Drop the played count of a finished utterance (keeps a long call's memory flat)."""
        self._played.pop(utterance, None)

    def _ms(self, nbytes: int) -> int:
        return nbytes * self._frame_ms // self._frame_bytes


class PacingClock:
    """One tick per period on a monotonic deadline; re-anchors when late instead of bursting.

    A sleep that overshoots by less than a period keeps the grid (the next tick comes that much
    sooner, so the long-run rate stays exact). A tick that was already due before we slept (our
    own loop overran) or is late by more than a period moves the grid to now: catching up would
    put frames on the wire back to back, and Asterisk plays them the moment they arrive.
    """

    __slots__ = ("_deadline", "_now", "_sleep", "period", "re_anchors")

    def __init__(
        self,
        period: float = 0.020,
        *,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if period <= 0:
            raise ValueError("period must be positive")
        self.period = period
        self.re_anchors = 0
        self._now = now
        self._sleep = sleep
        self._deadline: float | None = None

    async def wait_next(self) -> float:
        """Sleep until the next deadline (the first tick is immediate); returns lateness in s."""
        now = self._now()
        if self._deadline is None:
            self._deadline = now
            return 0.0
        self._deadline += self.period
        delay = self._deadline - now
        if delay > 0:
            await self._sleep(delay)
            now = self._now()
        lateness = max(0.0, now - self._deadline)
        if delay < 0 or lateness > self.period:
            self._deadline = now
            self.re_anchors += 1
        return lateness

    def now(self) -> float:
        """The clock's time source (virtual in tests)."""
        return self._now()

    def reset(self) -> None:
        """Forget the grid; the next `wait_next` ticks at once and anchors anew."""
        self._deadline = None


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(0, math.ceil(q / 100.0 * len(ordered)) - 1)
    return ordered[rank]


@dataclass(slots=True)
class PacerStats:
    """What the pacer did, for the call's figures; samples are kept in bounded windows."""

    ticks: int = 0
    speech_frames: int = 0
    silence_frames: int = 0
    underruns: int = 0  # ticks with speech under way but no whole frame ready
    interrupts: int = 0
    re_anchors: int = 0
    max_lateness: float = 0.0
    max_interval_error: float = 0.0
    lateness: deque[float] = field(default_factory=lambda: deque(maxlen=30_000))
    interval_error: deque[float] = field(default_factory=lambda: deque(maxlen=30_000))

    def summary(self) -> dict[str, float]:
        """p50/p99/max of lateness and interval error (ms) plus the counters."""
        late, err = list(self.lateness), list(self.interval_error)
        return {
            "ticks": self.ticks,
            "speech_frames": self.speech_frames,
            "silence_frames": self.silence_frames,
            "underruns": self.underruns,
            "interrupts": self.interrupts,
            "re_anchors": self.re_anchors,
            "lateness_p50_ms": percentile(late, 50) * 1e3,
            "lateness_p99_ms": percentile(late, 99) * 1e3,
            "lateness_max_ms": self.max_lateness * 1e3,
            "interval_error_p50_ms": percentile(err, 50) * 1e3,
            "interval_error_p99_ms": percentile(err, 99) * 1e3,
            "interval_error_max_ms": self.max_interval_error * 1e3,
        }


class Pacer:
    """Each clock tick sends one frame: the next buffered one, or silence (never nothing)."""

    def __init__(
        self,
        buffer: PlayoutBuffer,
        send: Callable[[bytes], None],
        *,
        clock: PacingClock | None = None,
        name: str = "pacer",
    ) -> None:
        self.buffer = buffer
        self.clock = clock if clock is not None else PacingClock()
        self.stats = PacerStats()
        self._send = send
        self._name = name
        self._last_tick: float | None = None
        self._task: asyncio.Task[None] | None = None

    def interrupt(self) -> None:
        """Barge-in: drop all queued audio; the very next tick sends silence."""
        self.buffer.clear()
        self.stats.interrupts += 1

    async def tick(self) -> None:
        """Wait for the next deadline and send exactly one frame."""
        anchors = self.clock.re_anchors
        lateness = await self.clock.wait_next()
        now = self.clock.now()
        stats = self.stats
        stats.ticks += 1
        stats.lateness.append(lateness)
        stats.max_lateness = max(stats.max_lateness, lateness)
        stats.re_anchors += self.clock.re_anchors - anchors
        if self._last_tick is not None:
            error = abs(now - self._last_tick - self.clock.period)
            stats.interval_error.append(error)
            stats.max_interval_error = max(stats.max_interval_error, error)
        self._last_tick = now
        frame = self.buffer.pop()
        if frame is None:
            if self.buffer.speaking:
                stats.underruns += 1
            stats.silence_frames += 1
            frame = self.buffer.silence
        else:
            stats.speech_frames += 1
        self._send(frame)

    async def run(self, max_ticks: int | None = None) -> None:
        """Tick until cancelled (or `max_ticks` ticks)."""
        self.clock.reset()
        self._last_tick = None
        count = 0
        while max_ticks is None or count < max_ticks:
            await self.tick()
            count += 1

    def start(self) -> None:
        """Run the pacer as a tracked background task; a failure is logged."""
        if self._task is not None:
            raise RuntimeError("pacer already started")
        self._task = asyncio.get_running_loop().create_task(self.run(), name=self._name)
        self._task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s stopped: %r", self._name, task.exception(), exc_info=task.exception())

    @property
    def running(self) -> bool:
        """True while the background task runs."""
        return self._task is not None and not self._task.done()

    async def close(self) -> None:
        """Stop ticking (no more frames are sent after this returns)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # wait() neither raises the task's error (already logged by _on_done) nor hides our own
        # cancellation.
        await asyncio.wait([task])
