"""Energy voice activity detection on the appended audio, shaped like the API's server_vad.

Pure and byte-free: :class:`EnergyVad` is fed int16 samples and returns start/stop events in
audio time (milliseconds of audio appended since the session began), never wall time, so its
verdicts do not depend on how fast or in what batches the client appends. Frames are 10 ms;
speech starts after ``min_speech_ms`` of frames above the threshold and stops after
``silence_duration_ms`` below a lower one (hysteresis), as server_vad does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["FRAME_MS", "EnergyVad", "VadEvent", "threshold_dbfs", "voiced_span_ms"]

Int16Array = npt.NDArray[np.int16]
FRAME_MS = 10
_FULL_SCALE = 32768.0
_HYSTERESIS_DB = 6.0


def threshold_dbfs(threshold: float) -> float:
    """The server_vad ``threshold`` (0–1, default 0.5) as a frame RMS level: 0.5 → -40 dBFS."""
    return -60.0 + 40.0 * threshold


def _frame_db(frames: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    db: npt.NDArray[np.float64] = 20.0 * np.log10(np.maximum(rms, 1e-9) / _FULL_SCALE)
    return db


def voiced_span_ms(pcm: Int16Array, rate: int, threshold: float = 0.5) -> tuple[int, int]:
    """First and last millisecond of a recording's frames above the threshold ((0, 0) if none)."""
    step = rate * FRAME_MS // 1000
    whole = pcm[: pcm.size // step * step].astype(np.float64).reshape(-1, step)
    if whole.size == 0:
        return 0, 0
    loud = np.flatnonzero(_frame_db(whole) >= threshold_dbfs(threshold))
    if loud.size == 0:
        return 0, 0
    return int(loud[0]) * FRAME_MS, (int(loud[-1]) + 1) * FRAME_MS


@dataclass(frozen=True, slots=True)
class VadEvent:
    """Speech started or stopped.

    ``ms`` is what the API reports (``audio_start_ms`` including the prefix padding, or
    ``audio_end_ms`` including the silence that ended the turn); ``voice_start_ms`` and
    ``voice_end_ms`` bound the voiced audio itself.
    """

    kind: Literal["started", "stopped"]
    ms: int
    voice_start_ms: int
    voice_end_ms: int


class EnergyVad:
    """Frame-RMS VAD with hysteresis; feed it samples, get start/stop events."""

    __slots__ = (
        "_carry",
        "_off_db",
        "_on_db",
        "_pos_ms",
        "_prefix_ms",
        "_rate",
        "_run_ms",
        "_run_start",
        "_silence_ms",
        "_speaking",
        "_start_ms",
        "_step",
        "_voice_end",
        "_voice_start",
    )

    def __init__(
        self,
        rate: int,
        *,
        threshold: float = 0.5,
        prefix_padding_ms: int = 300,
        silence_duration_ms: int = 500,
        min_speech_ms: int = 80,
        offset_ms: int = 0,
    ) -> None:
        if rate % 100:
            raise ValueError(f"rate {rate} is not a whole number of samples per 10 ms")
        self._rate = rate
        self._step = rate * FRAME_MS // 1000
        self._on_db = threshold_dbfs(threshold)
        self._off_db = self._on_db - _HYSTERESIS_DB
        self._prefix_ms = prefix_padding_ms
        self._silence_ms = max(FRAME_MS, silence_duration_ms)
        self._start_ms = max(FRAME_MS, min_speech_ms)
        self._carry = np.zeros(0, dtype=np.int16)
        self._pos_ms = offset_ms
        self._speaking = False
        self._run_start: int | None = None
        self._run_ms = 0
        self._voice_start = 0
        self._voice_end = 0

    @property
    def position_ms(self) -> int:
        """Milliseconds of audio judged so far (whole frames)."""
        return self._pos_ms

    @property
    def speaking(self) -> bool:
        """Whether speech is in progress."""
        return self._speaking

    def feed(self, pcm: Int16Array) -> list[VadEvent]:
        """Judge more samples; returns the events they caused, in order."""
        data = np.concatenate((self._carry, pcm)) if self._carry.size else pcm
        whole = data.size // self._step * self._step
        self._carry = data[whole:].copy()
        if whole == 0:
            return []
        levels = _frame_db(data[:whole].astype(np.float64).reshape(-1, self._step))
        events: list[VadEvent] = []
        for level in levels.tolist():
            event = self._frame(level)
            if event is not None:
                events.append(event)
        return events

    def _frame(self, level: float) -> VadEvent | None:
        start, self._pos_ms = self._pos_ms, self._pos_ms + FRAME_MS
        if self._speaking:
            if level >= self._off_db:
                self._voice_end = self._pos_ms
                return None
            if self._pos_ms - self._voice_end >= self._silence_ms:
                self._speaking = False
                return VadEvent("stopped", self._pos_ms, self._voice_start, self._voice_end)
            return None
        if level >= self._on_db:
            if self._run_start is None:
                self._run_start, self._run_ms = start, 0
            self._run_ms += FRAME_MS
            if self._run_ms >= self._start_ms:
                self._speaking = True
                self._voice_start, self._voice_end = self._run_start, self._pos_ms
                self._run_start = None
                padded = max(0, self._voice_start - self._prefix_ms)
                return VadEvent("started", padded, self._voice_start, self._voice_end)
        elif level < self._off_db:
            self._run_start = None  # a quiet frame breaks a run; frames in between do not
        return None

    def force_stop(self) -> VadEvent | None:
        """End speech now (a manual commit); returns the stop event if speech was on."""
        if not self._speaking:
            self._run_start = None
            return None
        self._speaking = False
        return VadEvent("stopped", self._pos_ms, self._voice_start, self._voice_end)
