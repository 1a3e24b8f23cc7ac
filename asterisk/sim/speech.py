"""Speech for simulated callees: each line rendered once, cached in memory and on disk.

``espeak-ng --stdout`` renders the line when the binary is installed; otherwise a synthetic
speech-like signal stands in: a glottal pulse train (harmonics of a drifting pitch) shaped by
moving vowel formants, under a syllable-rate envelope with pauses between words. It is loud
(about -18 dBFS RMS while voiced) and has speech's rhythm, so an energy VAD and a voice-activity
stand-in react to it as to a person. Rendering happens before a line is spoken, never on the
20 ms path.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import subprocess
import tempfile
import threading
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["SpeechRenderer", "beep", "read_wav", "synthetic_speech", "write_wav"]

log = logging.getLogger(__name__)

Int16Array = npt.NDArray[np.int16]
_SECONDS_PER_SYLLABLE = 0.2
_WORD_GAP = 0.06
_VOWELS = set("aeiouyAEIOUY")
# F1, F2, F3 (Hz) of a few vowels: the formant targets syllables move between.
_VOWEL_FORMANTS = (
    (730, 1090, 2440),
    (270, 2290, 3010),
    (300, 870, 2240),
    (530, 1840, 2480),
    (570, 840, 2410),
    (660, 1720, 2410),
)
_ESPEAK_TIMEOUT = 20.0


def _syllables(word: str) -> int:
    count, previous = 0, False
    for char in word:
        vowel = char in _VOWELS
        count += vowel and not previous
        previous = vowel
    return max(1, count)


def synthetic_speech(text: str, rate: int) -> Int16Array:
    """A deterministic speech-like rendering of ``text`` at ``rate`` Hz."""
    words = [w for w in text.split() if w] or ["uh"]
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big"))
    plan: list[tuple[float, bool]] = []  # (seconds, voiced)
    for word in words:
        for _ in range(_syllables(word)):
            plan.append((_SECONDS_PER_SYLLABLE * rng.uniform(0.8, 1.2), True))
        plan.append((_WORD_GAP * (4 if word[-1] in ".,?!;:" else 1), False))
    total = int(sum(seconds for seconds, _ in plan) * rate) + 1
    envelope = np.zeros(total)
    formant_track = np.zeros((total, 3))
    pos = 0
    for seconds, voiced in plan:
        n = int(seconds * rate)
        if voiced and n > 0:
            envelope[pos : pos + n] = np.sin(np.pi * np.arange(n) / n) ** 0.6
            formant_track[pos : pos + n] = _VOWEL_FORMANTS[int(rng.integers(len(_VOWEL_FORMANTS)))]
        pos += n
    formant_track[pos:] = _VOWEL_FORMANTS[0]
    # Smooth formant jumps over ~30 ms so vowels glide like speech.
    kernel = np.ones(max(1, int(0.03 * rate))) / max(1, int(0.03 * rate))
    formants = np.stack([np.convolve(formant_track[:, i], kernel, "same") for i in range(3)], 1)
    t = np.arange(total) / rate
    f0 = 120 + 15 * np.sin(2 * np.pi * 0.7 * t) - 10 * t / max(t[-1], 1e-9)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    signal = np.zeros(total)
    top = min(rate / 2 * 0.9, 3800.0)
    for k in range(1, int(top / 100) + 1):
        freq = k * f0
        gain = sum(1.0 / (1.0 + ((freq - formants[:, j]) / (60 + 40 * j)) ** 2) for j in range(3))
        signal += np.where(freq < top, gain / k**0.5, 0.0) * np.sin(k * phase)
    signal *= envelope
    signal += rng.normal(0, 0.02, total) * envelope  # breath
    peak = np.max(np.abs(signal)) or 1.0
    return np.asarray(np.clip(signal / peak * 0.6 * 32767, -32768, 32767), dtype=np.int16)


def beep(seconds: float, rate: int, freq: float = 1000.0) -> Int16Array:
    """A plain tone (a voicemail beep) at about -6 dBFS."""
    t = np.arange(int(seconds * rate)) / rate
    return np.asarray(np.sin(2 * np.pi * freq * t) * 16000, dtype=np.int16)


def _resample(pcm: Int16Array, src: int, dst: int) -> Int16Array:
    """Band-limited enough for a simulated callee (windowed-sinc low-pass + interpolation)."""
    if src == dst or pcm.size == 0:
        return pcm
    x = pcm.astype(np.float64)
    if dst < src:
        cutoff = 0.45 * dst / src
        n = np.arange(-32, 33)
        taps = np.sinc(2 * cutoff * n) * np.kaiser(n.size, 8.0)
        x = np.convolve(x, taps / taps.sum(), "same")
    out_len = round(pcm.size * dst / src)
    positions = np.arange(out_len) * (src / dst)
    y = np.interp(positions, np.arange(pcm.size), x)
    return np.asarray(np.clip(np.rint(y), -32768, 32767), dtype=np.int16)


def _normalize(pcm: Int16Array, peak: float = 0.6) -> Int16Array:
    """Scale to a fixed peak so every engine speaks at the same level."""
    top = float(np.max(np.abs(pcm.astype(np.float64)))) if pcm.size else 0.0
    if top == 0.0:
        return pcm
    return np.asarray(np.rint(pcm * (peak * 32767 / top)), dtype=np.int16)


def read_wav(data: bytes) -> tuple[Int16Array, int]:
    """Mono 16-bit samples and the rate of a WAV file's bytes (the first channel if several)."""
    with wave.open(io.BytesIO(data), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError("only 16-bit WAV is supported")
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        channels = wav.getnchannels()
        return np.asarray(frames[::channels], dtype=np.int16), wav.getframerate()


def write_wav(path: Path, pcm: Int16Array | bytes, rate: int) -> None:
    """Write mono 16-bit PCM as a WAV file."""
    data = pcm if isinstance(pcm, bytes) else np.asarray(pcm, dtype="<i2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(data)


class SpeechRenderer:
    """Renders callee lines once per (engine, voice, rate, text), then serves them from cache."""

    def __init__(self, cache_dir: Path | None = None, *, use_espeak: bool | None = None) -> None:
        self._cache_dir = cache_dir or Path(tempfile.gettempdir()) / "opendeep-sim-speech"
        espeak = shutil.which("espeak-ng")
        self._espeak = espeak if use_espeak is not False else None
        if use_espeak and espeak is None:
            raise RuntimeError("espeak-ng was requested but is not installed")
        self._memory: dict[str, Int16Array] = {}
        self._lock = threading.Lock()

    @property
    def engine(self) -> str:
        """``espeak-ng`` or ``synthetic``."""
        return "espeak-ng" if self._espeak else "synthetic"

    def render(self, text: str, rate: int, voice: str = "en-us") -> Int16Array:
        """The line as int16 samples at ``rate`` (blocking; call it off the event loop)."""
        key = hashlib.sha256(f"{self.engine}|{voice}|{rate}|{text}".encode()).hexdigest()
        with self._lock:
            cached = self._memory.get(key)
        if cached is not None:
            return cached
        path = self._cache_dir / f"{key}.wav"
        pcm: Int16Array | None = None
        if path.exists():
            try:
                pcm, file_rate = read_wav(path.read_bytes())
                pcm = _resample(pcm, file_rate, rate)
            except (OSError, ValueError, EOFError, wave.Error) as exc:
                log.warning("speech cache file %s unreadable (%s); rendering again", path, exc)
                pcm = None
        if pcm is None:
            pcm = self._render_fresh(text, rate, voice)
            try:
                write_wav(path, pcm, rate)
            except OSError as exc:
                log.warning("cannot write speech cache %s: %s", path, exc)
        with self._lock:
            self._memory[key] = pcm
        return pcm

    def _render_fresh(self, text: str, rate: int, voice: str) -> Int16Array:
        if self._espeak is not None:
            try:
                out = subprocess.run(  # noqa: S603 -- fixed binary, text passed as one argument
                    [self._espeak, "--stdout", "-v", voice, text],
                    capture_output=True,
                    check=True,
                    timeout=_ESPEAK_TIMEOUT,
                )
                pcm, src_rate = read_wav(out.stdout)
                return _normalize(_resample(pcm, src_rate, rate))
            except (OSError, subprocess.SubprocessError, ValueError, wave.Error) as exc:
                log.warning("espeak-ng failed (%s); using the synthetic voice", exc)
        return synthetic_speech(text, rate)
