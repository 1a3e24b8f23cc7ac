"""A call's stereo recording: the callee on the left channel, the agent on the right.

Both sides are recorded as they crossed the AudioSocket wire (signed 16-bit at the call's rate).
Each frame is placed by its arrival time on one shared timeline, so a callee that sends nothing
(Asterisk sends no frames for a silent dialplan channel) leaves silence, not a shift. Audio is
flushed to the WAV file about once a second, so a long call never sits in memory.
"""

from __future__ import annotations

import logging
import wave
from pathlib import Path

import numpy as np

__all__ = ["StereoRecorder"]

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0


class _Track:
    """One channel: samples placed on the timeline, the flushed part dropped."""

    __slots__ = ("base", "data", "rate")

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.base = 0  # sample index of data[0] on the call's timeline
        self.data = bytearray()

    @property
    def end(self) -> int:
        return self.base + len(self.data) // 2

    def place(self, pcm: bytes, position: int) -> None:
        """Append ``pcm``; pad with silence first when it arrives more than a frame late."""
        gap = position - self.end
        if gap > len(pcm) // 2:
            self.data += bytes(2 * (gap - len(pcm) // 2))
        self.data += pcm

    def take(self, samples: int) -> bytes:
        """The next ``samples`` samples (silence past the end), removed from the track."""
        size = 2 * samples
        out = bytes(self.data[:size])
        del self.data[:size]
        self.base += samples
        return out + bytes(size - len(out))


class StereoRecorder:
    """Writes a two-channel 16-bit WAV: left = callee, right = agent."""

    def __init__(self, path: Path, rate: int, started_at: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.rate = rate
        self._t0 = started_at
        self._callee = _Track(rate)
        self._agent = _Track(rate)
        self._wav: wave.Wave_write | None = wave.open(str(path), "wb")  # noqa: SIM115
        self._wav.setnchannels(2)
        self._wav.setsampwidth(2)
        self._wav.setframerate(rate)
        self._flush_every = int(rate * FLUSH_SECONDS)

    def _position(self, at: float) -> int:
        return max(0, round((at - self._t0) * self.rate))

    def callee(self, pcm: bytes, at: float) -> None:
        """A frame the callee sent, received at monotonic time ``at``."""
        self._callee.place(pcm, self._position(at))
        self._maybe_flush()

    def agent(self, pcm: bytes, at: float) -> None:
        """A frame we sent to the callee at monotonic time ``at``."""
        self._agent.place(pcm, self._position(at))
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        ready = min(self._callee.end, self._agent.end) - self._callee.base
        # The agent track never stops (the pacer sends silence), the callee's may: don't wait
        # for it forever, or a silent callee would keep everything in memory.
        ahead = max(self._callee.end, self._agent.end) - self._callee.base
        if ready >= self._flush_every or ahead >= 3 * self._flush_every:
            self._write(max(ready, ahead - self._flush_every))

    def _write(self, samples: int) -> None:
        if self._wav is None or samples <= 0:
            return
        left = np.frombuffer(self._callee.take(samples), dtype="<i2")
        right = np.frombuffer(self._agent.take(samples), dtype="<i2")
        stereo = np.empty(2 * samples, dtype="<i2")
        stereo[0::2], stereo[1::2] = left, right
        self._wav.writeframes(stereo.tobytes())

    def close(self) -> Path:
        """Write what is left and close the file; returns its path."""
        if self._wav is not None:
            self._write(max(self._callee.end, self._agent.end) - self._callee.base)
            self._wav.close()
            self._wav = None
            log.info("recording written: %s", self.path)
        return self.path
