"""The stereo recording: callee left, agent right, on one timeline."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from actors.call_conversation import apology_audio
from actors.recorder import StereoRecorder

pytestmark = pytest.mark.unit


def _frame(value: int, samples: int = 160) -> bytes:
    return np.full(samples, value, dtype="<i2").tobytes()


def test_two_channels_stay_aligned_when_the_callee_sends_nothing(tmp_path: Path) -> None:
    rec = StereoRecorder(tmp_path / "r" / "call.wav", 8000, started_at=100.0)
    for n in range(250):  # 5 s of agent frames every 20 ms, in the order they happen
        rec.agent(_frame(1000), 100.0 + n * 0.02)
        if 100 <= n < 150:  # the callee talks only from 2 s to 3 s
            rec.callee(_frame(-500), 100.0 + n * 0.02 + 0.003)
    path = rec.close()
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    assert abs(len(data) - 5 * 8000) <= 160
    left, right = data[:, 0], data[:, 1]
    assert (right == 1000).mean() > 0.99
    assert (left[: 8000 * 2 - 160] == 0).all()
    assert (left[8000 * 2 + 160 : 8000 * 3 - 160] == -500).all()
    assert (left[8000 * 3 + 160 :] == 0).all()


def test_a_long_call_is_flushed_as_it_goes(tmp_path: Path) -> None:
    rec = StereoRecorder(tmp_path / "call.wav", 24000, started_at=0.0)
    for n in range(500):
        rec.agent(_frame(1, 480), n * 0.02)
        rec.callee(_frame(2, 480), n * 0.02)
    assert len(rec._agent.data) < 24000 * 2 * 2  # at most ~2 s held in memory
    rec.close()
    with wave.open(str(tmp_path / "call.wav")) as wav:
        assert wav.getnframes() == 500 * 480


def test_the_spoken_apology_ships_and_fits_both_rates() -> None:
    wide, narrow = apology_audio(24_000), apology_audio(8_000)
    # Seconds of speech, not the ~1 s fallback chime; the 8 kHz version has a third of the samples.
    assert 2.0 < len(wide) / 48_000 < 8.0
    assert abs(len(narrow) * 3 - len(wide)) <= 6
