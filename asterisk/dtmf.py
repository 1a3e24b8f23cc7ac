"""In-band DTMF: tone generation and a Goertzel detector with twist, energy and debounce checks."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided

__all__ = ["COL_FREQS", "DIGITS", "ROW_FREQS", "DtmfDetector", "generate"]

DIGITS = "123A456B789C*0#D"  # row-major over ROW_FREQS × COL_FREQS
ROW_FREQS = (697.0, 770.0, 852.0, 941.0)
COL_FREQS = (1209.0, 1336.0, 1477.0, 1633.0)
MIN_TONE_MS = 70
MIN_GAP_MS = 50
_RAMP_MS = 2  # raised-cosine edges keep the tone's spectrum narrow (no clicks, no splatter)

Int16Array = npt.NDArray[np.int16]


def _pair(digit: str) -> tuple[float, float]:
    index = DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if index < 0:
        raise ValueError(f"not a DTMF digit: {digit!r} (expected one of {DIGITS})")
    return ROW_FREQS[index // 4], COL_FREQS[index % 4]


def generate(
    digits: str,
    *,
    rate: int = 8000,
    tone_ms: int = 80,
    gap_ms: int = 60,
    amplitude: float = 0.35,
) -> Int16Array:
    """Tones for `digits`, each `tone_ms` of its row+column pair then `gap_ms` of silence.

    `amplitude` is each of the two tones' peak as a fraction of full scale (0.35 ≈ −9 dBFS).
    """
    if not digits:
        raise ValueError("no digits to generate")
    if tone_ms < MIN_TONE_MS or gap_ms < MIN_GAP_MS:
        raise ValueError(f"DTMF needs tones ≥ {MIN_TONE_MS} ms and gaps ≥ {MIN_GAP_MS} ms")
    if not 0 < amplitude <= 0.5:
        raise ValueError("amplitude must be within (0, 0.5] so the two tones never clip")
    pairs = [_pair(d) for d in digits]  # validate everything before rendering anything
    tone_len = rate * tone_ms // 1000
    gap = np.zeros(rate * gap_ms // 1000)
    t = np.arange(tone_len) / rate
    ramp_len = min(rate * _RAMP_MS // 1000, tone_len // 2)
    envelope = np.ones(tone_len)
    if ramp_len:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp_len) / ramp_len)
        envelope[:ramp_len] = ramp
        envelope[tone_len - ramp_len :] = ramp[::-1]
    parts: list[npt.NDArray[np.float64]] = []
    for low, high in pairs:
        tone = np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)
        parts += [tone * envelope * (amplitude * 32767), gap]
    return np.rint(np.concatenate(parts)).astype(np.int16)


class DtmfDetector:
    """Streaming DTMF detector: feed int16 audio in any chunk sizes, get each pressed digit once.

    Goertzel powers of the 8 DTMF frequencies over 20 ms windows every 10 ms (computed for all
    windows of a chunk in one matrix product, which gives the same |X(f)|² as the per-sample
    recursion at numpy speed). A window holds a digit when exactly one row and one column tone
    stand out, above a floor, with acceptable twist, carrying most of the window's energy. A digit
    is reported once after ≥ 40 ms present, and the detector re-arms after ≥ 30 ms of no digit.
    """

    WINDOW_MS = 20
    HOP_MS = 10
    PRESENT_MS = 40
    ABSENT_MS = 30
    MIN_AMPLITUDE = 0.01  # per tone, fraction of full scale (−40 dBFS)
    NORMAL_TWIST_DB = 8.0  # column tone louder than row tone
    REVERSE_TWIST_DB = 4.0  # row tone louder than column tone
    PEAK_RATIO = 2.0  # strongest tone of a group vs. the runner-up (amplitude, ≈ 6 dB)
    MIN_ENERGY_SHARE = 0.6  # the two tones' share of the window's energy (rejects speech)

    __slots__ = ("_absent", "_armed", "_basis", "_buf", "_candidate", "_hop", "_run", "_window")

    def __init__(self, rate: int = 8000) -> None:
        self._window = rate * self.WINDOW_MS // 1000
        self._hop = rate * self.HOP_MS // 1000
        freqs = np.array(ROW_FREQS + COL_FREQS)
        phase = 2 * np.pi * np.outer(np.arange(self._window), freqs) / rate
        # cos and sin bases side by side: one real matmul yields re and im for all 8 frequencies.
        self._basis = np.ascontiguousarray(np.hstack((np.cos(phase), np.sin(phase))))
        self._buf = np.zeros(0)
        self._candidate: str | None = None
        self._run = 0
        self._absent = 0
        self._armed = True

    def feed(self, pcm: npt.NDArray[np.integer]) -> list[str]:
        """Consume samples; return the digits whose tones completed the presence test."""
        buf = np.concatenate((self._buf, pcm.astype(np.float64) / 32768.0))
        count = 0 if buf.size < self._window else (buf.size - self._window) // self._hop + 1
        if count == 0:
            self._buf = buf
            return []
        step = buf.strides[0]
        windows = as_strided(
            buf, shape=(count, self._window), strides=(step * self._hop, step), writeable=False
        )
        found: list[str] = []
        for digit in self._classify(windows):
            if self._step(digit) and digit is not None:
                found.append(digit)
        self._buf = buf[count * self._hop :].copy()
        return found

    def reset(self) -> None:
        """Forget partial audio and debounce state."""
        self._buf = np.zeros(0)
        self._candidate, self._run, self._absent, self._armed = None, 0, 0, True

    def _classify(self, windows: npt.NDArray[np.float64]) -> list[str | None]:
        """The digit each window holds, or None."""
        proj = windows @ self._basis
        amp = 2.0 / self._window * np.hypot(proj[:, :8], proj[:, 8:])  # per-tone peak amplitude
        energy = np.einsum("ij,ij->i", windows, windows)
        rows, cols = np.sort(amp[:, :4], axis=1), np.sort(amp[:, 4:], axis=1)
        low, high = rows[:, -1], cols[:, -1]
        loud = np.minimum(low, high) >= self.MIN_AMPLITUDE
        twist_db = 20.0 * np.log10(np.where(loud, high, 1.0) / np.where(loud, low, 1.0))
        tone_energy = (low * low + high * high) * self._window / 2.0
        ok = (
            loud
            & (twist_db >= -self.REVERSE_TWIST_DB)
            & (twist_db <= self.NORMAL_TWIST_DB)
            & (low >= self.PEAK_RATIO * rows[:, -2])
            & (high >= self.PEAK_RATIO * cols[:, -2])
            & (tone_energy >= self.MIN_ENERGY_SHARE * energy)
        )
        index = amp[:, :4].argmax(axis=1) * 4 + amp[:, 4:].argmax(axis=1)
        pairs = zip(index.tolist(), ok.tolist(), strict=True)
        return [DIGITS[k] if good else None for k, good in pairs]

    def _step(self, digit: str | None) -> bool:
        """Advance the debounce state by one hop; True when `digit` should be reported now."""
        if digit is None:
            self._candidate, self._run = None, 0
            self._absent += 1
            if self._absent * self.HOP_MS >= self.ABSENT_MS:
                self._armed = True
            return False
        self._absent = 0
        if digit == self._candidate:
            self._run += 1
        else:
            self._candidate, self._run = digit, 1
        # A window spans HOP_MS more than its start: `run` windows cover run·hop + (window − hop).
        present_ms = self._run * self.HOP_MS + self.WINDOW_MS - self.HOP_MS
        if self._armed and present_ms >= self.PRESENT_MS:
            self._armed = False
            return True
        return False
