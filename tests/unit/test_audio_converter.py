"""AudioConverter: AudioSocket slin <-> Realtime session audio, exact sample counts, round trips."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from ai.realtime import AudioConverter
from asterisk.codec import Kind
from asterisk.g711 import ulaw_encode

pytestmark = pytest.mark.unit

FRAME_8K = 320  # bytes of 20 ms slin at 8 kHz
FRAME_24K = 960


def _tone(freq: float, samples: int, rate: int) -> npt.NDArray[np.int16]:
    t = np.arange(samples) / rate
    return np.rint(0.3 * 32767 * np.sin(2 * np.pi * freq * t + 0.3)).astype(np.int16)


def _snr_db(reference: npt.NDArray[np.float64], signal: npt.NDArray[np.float64]) -> float:
    noise = float(np.sum((signal - reference) ** 2))
    return float(10 * np.log10(float(np.sum(reference**2)) / max(noise, 1e-12)))


def _chunks(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        for size in sizes:
            out.append(data[i : i + size])
            i += size
    return [c for c in out if c]


def test_session_format_follows_the_audiosocket_kind_and_the_setting() -> None:
    assert AudioConverter(Kind.SLIN_24K, "pcmu").session_format == "pcm24k"
    assert AudioConverter(Kind.SLIN_24K, "pcm24k").session_format == "pcm24k"
    assert AudioConverter(Kind.SLIN_8K, "pcmu").session_format == "pcmu"
    assert AudioConverter(Kind.SLIN_8K, "pcm24k").session_format == "pcm24k"
    assert AudioConverter(Kind.SLIN_8K, "pcmu").model_bytes_per_ms == 8
    assert AudioConverter(Kind.SLIN_8K, "pcm24k").model_bytes_per_ms == 48


@pytest.mark.parametrize("kind", [Kind.SLIN_16K, Kind.SLIN_48K, Kind.DTMF])
def test_other_kinds_are_refused_up_front(kind: Kind) -> None:
    with pytest.raises(ValueError, match="unsupported AudioSocket kind"):
        AudioConverter(kind, "pcmu")


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown realtime 8 kHz format"):
        AudioConverter(Kind.SLIN_8K, "opus")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "fmt"), [(Kind.SLIN_8K, "pcmu"), (Kind.SLIN_8K, "pcm24k"), (Kind.SLIN_24K, "pcmu")]
)
def test_odd_byte_frames_are_refused(kind: Kind, fmt: str) -> None:
    with pytest.raises(ValueError, match="whole 16-bit samples"):
        AudioConverter(kind, fmt).to_model(b"\x00" * 321)  # type: ignore[arg-type]


def test_24k_passes_through_both_ways_and_carries_a_split_sample() -> None:
    conv = AudioConverter(Kind.SLIN_24K, "pcmu")
    frame = _tone(440, 480, 24000).tobytes()
    assert conv.to_model(frame) is frame  # no copy on the hot path
    assert conv.from_model(frame) is frame
    assert conv.from_model(frame[:101]) == frame[:100]
    assert conv.from_model(frame[101:201]) == frame[100:200]
    conv.from_model(b"\x01")
    conv.reset_output()
    assert conv.from_model(frame[:2]) == frame[:2]


def test_8k_pcmu_counts_and_round_trip() -> None:
    conv = AudioConverter(Kind.SLIN_8K, "pcmu")
    pcm = _tone(440, 8000, 8000)
    frames = [pcm[i : i + 160].tobytes() for i in range(0, pcm.size, 160)]
    encoded = [conv.to_model(f) for f in frames]
    assert {len(e) for e in encoded} == {160}
    assert b"".join(encoded) == ulaw_encode(pcm)
    decoded = b"".join(conv.from_model(e) for e in _chunks(b"".join(encoded), [1, 77, 160, 3]))
    assert len(decoded) == FRAME_8K * len(frames)
    back = np.frombuffer(decoded, dtype="<i2").astype(np.float64)
    assert _snr_db(pcm.astype(np.float64), back) > 35  # µ-law's ~38 dB


def test_8k_pcm24k_upsamples_each_frame_to_exactly_three_times() -> None:
    conv = AudioConverter(Kind.SLIN_8K, "pcm24k")
    pcm = _tone(440, 8000, 8000)
    for i in range(0, pcm.size, 160):
        assert len(conv.to_model(pcm[i : i + 160].tobytes())) == FRAME_24K


def test_8k_pcm24k_downsamples_any_chunking_to_exact_counts() -> None:
    conv = AudioConverter(Kind.SLIN_8K, "pcm24k")
    model = _tone(440, 24000, 24000).tobytes()
    out = bytearray()
    total_in = 0
    for chunk in _chunks(model, [1, 7, 960, 4801, 2, 1920]):
        total_in += len(chunk)
        out += conv.from_model(chunk)
        # Every complete group of three 24 kHz samples has produced exactly one 8 kHz sample.
        assert len(out) == total_in // 6 * 2
    assert len(out) == len(model) // 3


def test_8k_pcm24k_round_trip_keeps_the_signal_with_a_fixed_delay() -> None:
    up = AudioConverter(Kind.SLIN_8K, "pcm24k")
    pcm = _tone(440, 8000, 8000)
    model = b"".join(up.to_model(pcm[i : i + 160].tobytes()) for i in range(0, pcm.size, 160))
    back = np.frombuffer(
        b"".join(up.from_model(c) for c in _chunks(model, [1000, 7, 3333])), dtype="<i2"
    )
    assert back.size == pcm.size
    delay = 72 // 3 + 72 // 3  # 3 ms each way, in 8 kHz samples
    reference = pcm[: pcm.size - delay].astype(np.float64)
    shifted = back[delay:].astype(np.float64)
    skip = 200  # filter start-up
    assert _snr_db(reference[skip:], shifted[skip:]) > 40


def test_reset_output_drops_carried_model_audio() -> None:
    conv = AudioConverter(Kind.SLIN_8K, "pcm24k")
    assert conv.from_model(b"\x00" * 5) == b""
    conv.reset_output()
    assert len(conv.from_model(b"\x00" * 6)) == 2
