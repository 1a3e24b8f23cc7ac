"""Audio tools: G.711 µ-law, 8↔24 kHz resampling, in-band DTMF generation and detection."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from asterisk.dtmf import DIGITS, DtmfDetector, generate
from asterisk.g711 import ulaw_decode, ulaw_encode
from asterisk.resample import Downsampler3, Upsampler3

pytestmark = pytest.mark.unit

# ITU-T G.711 µ-law, Table 2a/2b. The standard works on 14-bit values (±8159); 16-bit samples are
# those × 4. Segment 0 has decision values 1, 3, …, 31 (step 2), segment 1 starts at 31 (step 4),
# each later segment doubles the step; a transmitted code is sign | segment | step, bits inverted.
# encoder: linear value → code.
ULAW_ENCODE_REFERENCE = {
    0: 0xFF,
    -1: 0x7F,
    32767: 0x80,
    -32768: 0x00,
    8: 0xFE,  # 14-bit 2: first step of segment 0 (decision value 1)
    -8: 0x7E,
    120: 0xF0,  # 14-bit 30: last step of segment 0
    124: 0xEF,  # 14-bit 31: the decision value opening segment 1
    128: 0xEF,
    1000: 0xCE,  # 14-bit 250: segment 3 (from 223, step 16), step 1
    -1000: 0x4E,
    8031: 0xA0,  # 14-bit 2007.75: top of segment 5
    32124: 0x80,
}
# decoder: code → reconstructed value (the middle of its interval), 16-bit scale.
ULAW_DECODE_REFERENCE = {
    0xFF: 0,
    0x7F: 0,
    0xFE: 8,
    0x7E: -8,
    0xF0: 120,
    0x70: -120,
    0xEF: 132,  # 14-bit 33
    0xCE: 988,  # 14-bit 247 = 223 + 16 + 8
    0x4E: -988,
    0xA0: 7932,
    0x80: 32124,
    0x00: -32124,
}


def _tone(freq: float, seconds: float, rate: int, amplitude: float = 0.3) -> npt.NDArray[np.int16]:
    t = np.arange(int(seconds * rate)) / rate
    return np.rint(amplitude * 32767 * np.sin(2 * np.pi * freq * t + 0.3)).astype(np.int16)


def _snr_db(reference: npt.NDArray[np.float64], signal: npt.NDArray[np.float64]) -> float:
    noise = float(np.sum((signal - reference) ** 2))
    return 10 * np.log10(float(np.sum(reference**2)) / max(noise, 1e-12))


# µ-law ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("linear", "code"), ULAW_ENCODE_REFERENCE.items())
def test_ulaw_encodes_to_the_g711_reference_codes(linear: int, code: int) -> None:
    assert ulaw_encode(np.array([linear], dtype=np.int16)) == bytes([code])
    assert ulaw_encode(np.int16(linear).tobytes()) == bytes([code])


@pytest.mark.parametrize(("code", "linear"), ULAW_DECODE_REFERENCE.items())
def test_ulaw_decodes_to_the_g711_reference_values(code: int, linear: int) -> None:
    assert ulaw_decode(bytes([code])).tolist() == [linear]


def test_ulaw_round_trip_error_stays_within_half_a_quantisation_step() -> None:
    everything = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    back = ulaw_decode(ulaw_encode(everything)).astype(np.int32)
    magnitude = np.abs(everything.astype(np.int32))
    # The step doubles per segment: half a step is ≤ (|x| + bias) / 32; beyond the clip level
    # (32635) the error is the clip itself.
    bound = np.where(magnitude > 32635, magnitude - 32124, (magnitude + 132) // 32 + 1)
    assert np.all(np.abs(back - everything) <= bound)
    assert np.all(np.sign(back) * np.sign(everything) >= 0)


def test_ulaw_decode_then_encode_returns_every_code_but_negative_zero() -> None:
    codes = bytes(range(256))
    again = ulaw_encode(ulaw_decode(codes))
    assert [a for a, b in zip(again, codes, strict=True) if a != b] == [0xFF]  # 0x7F → 0 → 0xFF


def test_ulaw_encode_refuses_odd_bytes_and_wrong_dtypes() -> None:
    with pytest.raises(ValueError, match="whole 16-bit samples"):
        ulaw_encode(b"\x00\x01\x02")
    with pytest.raises(TypeError, match="int16"):
        ulaw_encode(np.zeros(4, dtype=np.float32))  # type: ignore[arg-type]


# resampling -----------------------------------------------------------------------------------


def test_each_frame_resamples_to_exactly_three_times_and_a_third_the_samples() -> None:
    up, down = Upsampler3(), Downsampler3()
    for size in (160, 1, 7, 320, 0, 159):
        assert up.process(np.zeros(size, dtype=np.int16)).shape == (3 * size,)
    for size in (480, 3, 0, 960, 21):
        assert down.process(np.zeros(size, dtype=np.int16)).shape == (size // 3,)
    with pytest.raises(ValueError, match="multiple of 3"):
        down.process(np.zeros(481, dtype=np.int16))


def test_1khz_tone_survives_8k_to_24k_to_8k_with_snr_over_40_db() -> None:
    up, down = Upsampler3(), Downsampler3()
    tone = _tone(1000.0, 2.0, 8000)
    out = np.concatenate(
        [down.process(up.process(tone[i : i + 160])) for i in range(0, tone.size, 160)]
    )
    delay = up.delay_samples // 3 + down.delay_samples  # both fixed: 24 + 24 samples at 8 kHz
    assert delay == 48
    settle = 400  # skip the filters' start-up from silence
    reference = tone[settle : tone.size - delay].astype(np.float64)
    got = out[settle + delay :].astype(np.float64)
    assert _snr_db(reference, got) >= 40.0


def test_upsampled_tone_matches_the_ideal_24k_tone_after_the_fixed_delay() -> None:
    up = Upsampler3()
    tone = _tone(1000.0, 1.0, 8000)
    out = np.concatenate([up.process(tone[i : i + 160]) for i in range(0, tone.size, 160)])
    t = (np.arange(out.size) - up.delay_samples) / 24000
    ideal = 0.3 * 32767 * np.sin(2 * np.pi * 1000.0 * t + 0.3)
    assert _snr_db(ideal[1000:], out[1000:].astype(np.float64)) >= 60.0


def test_downsampling_rejects_content_above_the_8k_nyquist() -> None:
    down = Downsampler3()
    alias_source = _tone(6000.0, 1.0, 24000)  # would fold to 2 kHz without the filter
    out = np.concatenate(
        [down.process(alias_source[i : i + 480]) for i in range(0, alias_source.size, 480)]
    )
    assert np.max(np.abs(out[100:])) <= 2  # ≈ −70 dB below the input's 9830 peak


def test_resampler_state_makes_frame_splits_irrelevant() -> None:
    tone = _tone(440.0, 0.2, 8000)
    whole = Upsampler3().process(tone)
    up = Upsampler3()
    pieces = np.concatenate([up.process(tone[i : i + 37]) for i in range(0, tone.size, 37)])
    assert np.array_equal(whole, pieces)


# DTMF -----------------------------------------------------------------------------------------


def _detect(pcm: npt.NDArray[np.int16], chunk: int = 160, rate: int = 8000) -> str:
    detector = DtmfDetector(rate)
    return "".join(d for i in range(0, pcm.size, chunk) for d in detector.feed(pcm[i : i + chunk]))


def _speech_like(samples: int, rms: float, seed: int = 0) -> npt.NDArray[np.float64]:
    """A voiced buzz with wandering pitch, syllable envelope and breath noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 8000
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 3 * t)) / 8000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 30))
    x = voiced * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) + 0.3 * rng.standard_normal(samples)
    return np.asarray(x / np.sqrt(np.mean(x**2)) * rms * 32767, dtype=np.float64)


def test_all_16_digits_are_generated_and_detected_once_each() -> None:
    assert DIGITS == "123A456B789C*0#D"
    assert _detect(generate(DIGITS)) == DIGITS


@pytest.mark.parametrize("chunk", [1, 37, 160, 4000])
def test_detection_does_not_depend_on_chunk_sizes(chunk: int) -> None:
    assert _detect(generate("90#*"), chunk=chunk) == "90#*"


def test_all_digits_survive_a_ulaw_round_trip() -> None:
    tones = generate(DIGITS)
    assert _detect(ulaw_decode(ulaw_encode(tones))) == DIGITS


def test_minimum_durations_detect_at_every_alignment() -> None:
    tones = generate(DIGITS, tone_ms=70, gap_ms=50)
    for offset in range(0, 80, 7):
        shifted = np.concatenate((np.zeros(offset, dtype=np.int16), tones))
        assert _detect(shifted) == DIGITS, offset


def test_repeated_digit_is_reported_once_per_tone() -> None:
    assert _detect(generate("5555", tone_ms=70, gap_ms=50)) == "5555"
    long_press = generate("8", tone_ms=1500)
    assert _detect(long_press) == "8"


def test_digits_are_detected_over_speech_like_noise_after_ulaw() -> None:
    tones = generate(DIGITS)
    noisy = np.clip(tones + _speech_like(tones.size, rms=0.1), -32768, 32767).astype(np.int16)
    assert _detect(ulaw_decode(ulaw_encode(noisy))) == DIGITS


def test_speech_like_audio_alone_triggers_no_digit() -> None:
    for seed, rms in ((1, 0.05), (2, 0.2), (3, 0.5)):
        speech = np.clip(_speech_like(8000 * 20, rms, seed), -32768, 32767).astype(np.int16)
        assert _detect(speech) == ""


def test_tone_shorter_than_40_ms_or_too_quiet_is_not_a_digit() -> None:
    short = generate("1")[: 8000 * 30 // 1000]  # the first 30 ms of a tone
    assert _detect(np.concatenate((short, np.zeros(800, dtype=np.int16)))) == ""
    quiet = generate("1", amplitude=0.005)
    assert _detect(quiet) == ""


def test_detector_works_at_24_khz() -> None:
    assert _detect(generate("159#", rate=24000), chunk=480, rate=24000) == "159#"


def test_generate_enforces_standard_durations_digits_and_level() -> None:
    tones = generate("1", tone_ms=80, gap_ms=60)
    assert tones.dtype == np.int16 and tones.size == 8000 * 140 // 1000
    assert np.all(tones[640:] == 0)  # the gap is silence
    with pytest.raises(ValueError, match="≥ 70 ms"):
        generate("1", tone_ms=69)
    with pytest.raises(ValueError, match="≥ 50 ms"):
        generate("1", gap_ms=49)
    with pytest.raises(ValueError, match="not a DTMF digit"):
        generate("12E")
    with pytest.raises(ValueError, match="no digits"):
        generate("")
    with pytest.raises(ValueError, match="never clip"):
        generate("1", amplitude=0.6)
