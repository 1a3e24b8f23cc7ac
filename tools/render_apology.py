"""Render the spoken apology a call plays when its voice AI is lost (a build-time step).

The CallActor cannot speak once its Realtime session is gone, so the sentence is rendered
ahead of time with espeak-ng and shipped as ``actors/assets/apology-en.wav`` (24 kHz, 16-bit
mono). Run it again after changing ``ai.prompts.TECHNICAL_PROBLEM_APOLOGY``:

    .venv/bin/python tools/render_apology.py
"""

from __future__ import annotations

import io
import subprocess
import wave
from pathlib import Path

import numpy as np

from ai.prompts import TECHNICAL_PROBLEM_APOLOGY

OUT = Path(__file__).resolve().parents[1] / "actors" / "assets" / "apology-en.wav"
RATE = 24_000


def main() -> None:
    """Render, resample to 24 kHz, normalise, and write the WAV."""
    raw = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "165", "--stdout", TECHNICAL_PROBLEM_APOLOGY],
        check=True,
        capture_output=True,
    ).stdout
    with wave.open(io.BytesIO(raw)) as wav:
        rate = wav.getframerate()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)
    # A one-off offline conversion: linear interpolation is plenty for speech at this step.
    n_out = int(len(pcm) * RATE / rate)
    resampled = np.interp(np.arange(n_out) * rate / RATE, np.arange(len(pcm)), pcm)
    resampled *= 0.5 * 32767 / max(1.0, float(np.abs(resampled).max()))
    voiced = np.flatnonzero(np.abs(resampled) > 300)  # trim espeak's leading/trailing silence
    resampled = resampled[max(0, voiced[0] - RATE // 20) : voiced[-1] + RATE // 5]
    n_out = len(resampled)
    # A faint dither (about -72 dBFS) so pauses between words are not digital silence: the
    # simulated callee (and tests) can then tell the whole apology apart from our idle frames.
    resampled += np.random.default_rng(7).uniform(-8, 8, n_out)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(OUT), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(resampled.astype("<i2").tobytes())
    print(f"wrote {OUT} ({n_out / RATE:.1f} s)")


if __name__ == "__main__":
    main()
