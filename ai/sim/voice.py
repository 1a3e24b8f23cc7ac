"""The scripted agent's voice: sentences rendered once, in the session's output format.

Speech comes from :class:`asterisk.sim.speech.SpeechRenderer` (espeak-ng, else the synthetic
voice), rendered at 24 kHz for ``audio/pcm`` or 8 kHz for ``audio/pcmu``, trimmed to start with
the voice (model audio has no lead-in), and laid on a faint noise floor (about -56 dBFS) so the
agent's audio is never digital silence: what a simulated callee hears of it can then be told
apart, frame by frame, from the silence a client sends between responses.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from asterisk.g711 import ulaw_encode
from asterisk.sim.speech import SpeechRenderer

__all__ = ["AgentVoice", "OutputFormat", "RenderedSpeech"]

Int16Array = npt.NDArray[np.int16]
OutputFormat = Literal["pcm", "pcmu"]
_TRIM_LEVEL = 160  # ≈ -46 dBFS: quieter samples at the edges are the renderer's lead-in/out
_TAIL_MS = 60


@dataclass(frozen=True, slots=True)
class RenderedSpeech:
    """One sentence in one output format."""

    text: str
    audio: bytes
    fmt: OutputFormat

    @property
    def bytes_per_ms(self) -> int:
        """48 for 24 kHz pcm16, 8 for µ-law."""
        return 48 if self.fmt == "pcm" else 8

    @property
    def duration_ms(self) -> float:
        """Length of the audio."""
        return len(self.audio) / self.bytes_per_ms

    def chunks(self, chunk_ms: int) -> list[bytes]:
        """The audio cut into ``chunk_ms`` pieces (whole samples; the last may be shorter)."""
        size = max(1, chunk_ms) * self.bytes_per_ms
        return [self.audio[i : i + size] for i in range(0, len(self.audio), size)]


class AgentVoice:
    """Renders and caches the agent's sentences (blocking: call from a worker thread)."""

    def __init__(self, renderer: SpeechRenderer, *, noise_floor_dbfs: float | None = -56.0) -> None:
        self._renderer = renderer
        self._noise_rms = (
            None if noise_floor_dbfs is None else 32768 * 10 ** (noise_floor_dbfs / 20)
        )
        self._cache: dict[tuple[str, str, OutputFormat], RenderedSpeech] = {}
        self._rendering: dict[tuple[str, str, OutputFormat], threading.Lock] = {}
        self._lock = threading.Lock()

    @property
    def engine(self) -> str:
        """``espeak-ng`` or ``synthetic``."""
        return self._renderer.engine

    def render(self, text: str, voice: str, fmt: OutputFormat) -> RenderedSpeech:
        """The sentence as audio bytes in ``fmt``."""
        key = (text, voice, fmt)
        with self._lock:
            cached = self._cache.get(key)
            key_lock = self._rendering.setdefault(key, threading.Lock())
        if cached is not None:
            return cached
        with key_lock:  # a pre-render and a response asking at once render the sentence once
            with self._lock:
                cached = self._cache.get(key)
            if cached is not None:
                return cached
            rate = 24000 if fmt == "pcm" else 8000
            pcm = self._shape(self._renderer.render(text, rate, voice), text, rate)
            audio = pcm.astype("<i2").tobytes() if fmt == "pcm" else ulaw_encode(pcm)
            speech = RenderedSpeech(text, audio, fmt)
            with self._lock:
                self._cache[key] = speech
            return speech

    def _shape(self, pcm: Int16Array, text: str, rate: int) -> Int16Array:
        loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > _TRIM_LEVEL)
        if loud.size:
            end = min(pcm.size, int(loud[-1]) + rate * _TAIL_MS // 1000)
            pcm = pcm[int(loud[0]) : end]
        if self._noise_rms is None or pcm.size == 0:
            return pcm
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
        noise = np.random.default_rng(seed).normal(0.0, self._noise_rms, pcm.size)
        floor = np.where(noise >= 0, np.maximum(noise, 24.0), np.minimum(noise, -24.0))
        mixed = pcm.astype(np.float64) + floor
        return np.asarray(np.clip(np.rint(mixed), -32768, 32767), dtype=np.int16)
