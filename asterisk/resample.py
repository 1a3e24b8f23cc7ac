"""Streaming 8 ↔ 24 kHz resampling: a stateful polyphase FIR (Kaiser-windowed sinc) in numpy.

Every call returns exactly 3× (or ⅓ of) the samples it was given, delayed by a fixed number of
samples; soxr is not used because at 20 ms frames it releases audio in bursts, which is jitter.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided

__all__ = ["FACTOR", "TAPS", "Downsampler3", "Upsampler3", "design_lowpass"]

FACTOR = 3
TAPS = 145  # odd, so the group delay is a whole number of 24 kHz samples (72 = 3 ms)
_CUTOFF = 4000.0 / 24000.0  # the 8 kHz Nyquist, as a fraction of the 24 kHz rate
_KAISER_BETA = 9.0  # ≈ 90 dB stop band; 145 taps then give a ≈ 950 Hz transition around 4 kHz

FloatArray = npt.NDArray[np.float64]
Int16Array = npt.NDArray[np.int16]


def design_lowpass(
    taps: int = TAPS, cutoff: float = _CUTOFF, beta: float = _KAISER_BETA
) -> FloatArray:
    """Kaiser-windowed sinc low-pass with unit DC gain; `cutoff` in cycles per sample."""
    n = np.arange(taps, dtype=np.float64) - (taps - 1) / 2
    h: FloatArray = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(taps, beta)
    return h / float(h.sum())


def _to_int16(y: FloatArray) -> Int16Array:
    return np.clip(np.rint(y), -32768, 32767).astype(np.int16)


def _as_samples(pcm: npt.NDArray[np.integer]) -> FloatArray:
    if pcm.ndim != 1:
        raise ValueError("expected a one-dimensional array of samples")
    return pcm.astype(np.float64)


class Upsampler3:
    """8 → 24 kHz: each call returns exactly 3× its input samples; state carries across calls."""

    __slots__ = ("_coeffs", "_history", "_span")

    def __init__(self) -> None:
        h = design_lowpass(TAPS)
        self._span = -(-TAPS // FACTOR)  # input samples under the filter for each output phase
        padded = np.zeros(self._span * FACTOR)
        padded[:TAPS] = h * FACTOR  # ×3 restores the gain lost to the two zeros between samples
        # Column p holds phase p's taps, reversed so a window of oldest→newest inputs dots with it;
        # the zero-stuffed samples are never multiplied.
        self._coeffs = np.ascontiguousarray(padded.reshape(self._span, FACTOR)[::-1])
        self._history = np.zeros(self._span - 1)

    @property
    def delay_samples(self) -> int:
        """Fixed delay, in output (24 kHz) samples."""
        return (TAPS - 1) // 2

    def process(self, pcm: npt.NDArray[np.integer]) -> Int16Array:
        """Upsample int16 samples; returns 3 × len(pcm) int16 samples."""
        x = _as_samples(pcm)
        if x.size == 0:
            return np.zeros(0, dtype=np.int16)
        buf = np.concatenate((self._history, x))
        step = buf.strides[0]
        windows = as_strided(buf, shape=(x.size, self._span), strides=(step, step), writeable=False)
        y = windows @ self._coeffs  # (n, 3): row n holds outputs 3n, 3n+1, 3n+2
        self._history = buf[x.size :].copy()
        return _to_int16(y.reshape(-1))

    def reset(self) -> None:
        """Forget the past (a new stream)."""
        self._history[:] = 0


class Downsampler3:
    """24 → 8 kHz: input length must be a multiple of 3; returns exactly ⅓ of it."""

    __slots__ = ("_history", "_phases")

    def __init__(self) -> None:
        h = design_lowpass(TAPS)
        # Output k = Σ h[j]·x[3k − j]; split j = 3m + p so each phase p is a short convolution of
        # one column of the input (viewed as rows of 3), and only every third output is computed.
        self._phases = tuple(np.ascontiguousarray(h[p::FACTOR]) for p in range(FACTOR))
        self._history = np.zeros(TAPS - 1)  # 144 = 48 whole rows of 3

    @property
    def delay_samples(self) -> int:
        """Fixed delay, in output (8 kHz) samples."""
        return (TAPS - 1) // 2 // FACTOR

    def process(self, pcm: npt.NDArray[np.integer]) -> Int16Array:
        """Downsample int16 samples (a multiple of 3 of them); returns len(pcm) // 3 samples."""
        x = _as_samples(pcm)
        if x.size % FACTOR:
            raise ValueError(f"{x.size} samples is not a multiple of {FACTOR}")
        if x.size == 0:
            return np.zeros(0, dtype=np.int16)
        n = x.size // FACTOR
        buf = np.concatenate((self._history, x))
        rows = buf.reshape(-1, FACTOR)  # rows[i] = buf[3i : 3i + 3]; output k ends on x[3k]
        h0, h1, h2 = self._phases
        y = np.convolve(rows[:, 0], h0, "valid")
        y += np.convolve(rows[:, 2], h1, "valid")[:n]  # x[3k − 3m − 1] sits in column 2
        y += np.convolve(rows[:, 1], h2, "valid")[:n]  # x[3k − 3m − 2] sits in column 1
        self._history = buf[x.size :].copy()
        return _to_int16(y)

    def reset(self) -> None:
        """Forget the past (a new stream)."""
        self._history[:] = 0
