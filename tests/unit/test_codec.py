"""AudioSocket codec: byte-exact frames and a decoder that survives any split and any garbage."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asterisk.codec import (
    HANGUP_FRAME,
    SAMPLE_RATES,
    AudioSocketProtocolError,
    Decoder,
    Frame,
    Kind,
    encode,
    encode_audio,
    encode_dtmf,
    encode_uuid,
    frame_bytes,
    is_audio,
)

pytestmark = pytest.mark.unit

CALL_ID = uuid.UUID("0f3c2a1e-7d4b-4c8a-9e21-5b6f7a8c9d0e")
AUDIO_KINDS = [k for k in Kind if is_audio(k)]


def _decode_all(data: bytes, **kwargs: object) -> list[Frame]:
    return Decoder(**kwargs).feed(data)  # type: ignore[arg-type]


def test_frame_kinds_have_the_protocol_byte_values() -> None:
    assert [int(k) for k in Kind] == [0x00, 0x01, 0x03, *range(0x10, 0x19), 0xFF]
    assert SAMPLE_RATES[Kind.SLIN_44K] == 44100
    assert set(SAMPLE_RATES) == set(AUDIO_KINDS)


def test_frame_bytes_of_20_ms_match_the_protocol() -> None:
    assert frame_bytes(Kind.SLIN_8K) == 320
    assert frame_bytes(Kind.SLIN_24K) == 960
    assert frame_bytes(Kind.SLIN_44K) == 1764
    assert frame_bytes(Kind.SLIN_8K, ms=10) == 160
    with pytest.raises(ValueError, match="not an audio kind"):
        frame_bytes(Kind.DTMF)


def test_encoded_frames_are_byte_exact() -> None:
    assert HANGUP_FRAME == b"\x00\x00\x00"
    assert encode(Kind.HANGUP, b"") == HANGUP_FRAME
    assert encode_uuid(CALL_ID) == b"\x01\x00\x10" + CALL_ID.bytes
    assert encode_dtmf("#") == b"\x03\x00\x01#"
    assert encode_audio(Kind.SLIN_8K, b"\x01\x02" * 160) == b"\x10\x01\x40" + b"\x01\x02" * 160
    assert encode(Kind.ERROR, b"\x04") == b"\xff\x00\x01\x04"
    assert encode(Kind.SLIN_192K, bytes(65534))[:3] == b"\x18\xff\xfe"


@pytest.mark.parametrize("kind", list(Kind), ids=lambda k: k.name)
def test_every_kind_round_trips_byte_exact(kind: Kind) -> None:
    payload = {
        Kind.HANGUP: b"",
        Kind.UUID: CALL_ID.bytes,
        Kind.DTMF: b"7",
        Kind.ERROR: b"\x01",
    }.get(kind, bytes(range(256)) * 2)
    wire = encode_uuid(CALL_ID) + encode(kind, payload)
    frames = _decode_all(wire)
    assert frames == [Frame(Kind.UUID, CALL_ID.bytes), Frame(kind, payload)]
    assert b"".join(encode(f.kind, f.payload) for f in frames) == wire


def test_zero_length_audio_and_error_payloads_decode() -> None:
    wire = encode_uuid(CALL_ID) + encode(Kind.SLIN_8K, b"") + encode(Kind.ERROR, b"")
    assert _decode_all(wire)[1:] == [Frame(Kind.SLIN_8K, b""), Frame(Kind.ERROR, b"")]


def test_header_split_at_every_byte_boundary_yields_the_same_frames() -> None:
    wire = encode_uuid(CALL_ID) + encode_audio(Kind.SLIN_8K, bytes(320)) + encode_dtmf("5")
    expected = _decode_all(wire)
    for cut in range(len(wire) + 1):
        dec = Decoder()
        assert dec.feed(wire[:cut]) + dec.feed(wire[cut:]) == expected
    dec = Decoder()
    byte_by_byte = [f for i in range(len(wire)) for f in dec.feed(wire[i : i + 1])]
    assert byte_by_byte == expected
    assert dec.buffered == 0


@pytest.mark.parametrize(
    ("kind", "payload", "message"),
    [
        (Kind.SLIN_8K, b"\x00" * 3, "whole 16-bit samples"),
        (Kind.DTMF, b"x", "DTMF"),
        (Kind.DTMF, b"12", "DTMF"),
        (Kind.UUID, b"short", "16 bytes"),
        (Kind.HANGUP, b"\x00", "no payload"),
        (Kind.SLIN_8K, bytes(65536), "exceeds 65535"),
    ],
)
def test_encode_refuses_frames_the_peer_could_not_decode(
    kind: Kind, payload: bytes, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode(kind, payload)


def test_encode_audio_and_dtmf_refuse_the_wrong_kind_or_digit() -> None:
    with pytest.raises(ValueError, match="not an audio kind"):
        encode_audio(Kind.DTMF, b"5")
    with pytest.raises(ValueError, match="DTMF"):
        encode_dtmf("E")
    with pytest.raises(ValueError, match="one digit"):
        encode_dtmf("12")


@pytest.mark.parametrize("kind_byte", [0x02, 0x04, 0x0F, 0x19, 0x20, 0xFE])
def test_unknown_kind_is_a_protocol_error(kind_byte: int) -> None:
    dec = Decoder(expect_uuid_first=False)
    with pytest.raises(AudioSocketProtocolError, match=f"unknown frame kind 0x{kind_byte:02x}"):
        dec.feed(bytes([kind_byte, 0, 0]))


def test_oversized_length_is_refused_from_the_header_alone() -> None:
    dec = Decoder(max_payload=1000)
    dec.feed(encode_uuid(CALL_ID))
    with pytest.raises(AudioSocketProtocolError, match="claims 65535 bytes, over the 1000 cap"):
        dec.feed(b"\x10\xff\xff")  # no payload sent: the claim alone is enough


def test_odd_length_audio_is_a_protocol_error() -> None:
    dec = Decoder(expect_uuid_first=False)
    with pytest.raises(AudioSocketProtocolError, match="not whole 16-bit samples"):
        dec.feed(b"\x13\x00\x03")


@pytest.mark.parametrize(
    "first",
    [encode_audio(Kind.SLIN_8K, bytes(320)), b"\x01\x00\x0f" + bytes(15), encode_dtmf("1")],
    ids=["audio", "short-uuid", "dtmf"],
)
def test_first_frame_must_be_a_16_byte_uuid(first: bytes) -> None:
    with pytest.raises(AudioSocketProtocolError, match="first frame must be a 16-byte UUID"):
        Decoder().feed(first)


def test_frames_decoded_before_an_error_ride_on_the_error() -> None:
    good = encode_uuid(CALL_ID) + encode_dtmf("4")
    with pytest.raises(AudioSocketProtocolError) as info:
        Decoder().feed(good + b"\x10\x00\x03")
    assert info.value.frames == [Frame(Kind.UUID, CALL_ID.bytes), Frame(Kind.DTMF, b"4")]


def test_a_failed_decoder_stays_failed() -> None:
    dec = Decoder()
    with pytest.raises(AudioSocketProtocolError):
        dec.feed(b"\x99\x00\x00")
    with pytest.raises(AudioSocketProtocolError, match="already failed: unknown frame kind"):
        dec.feed(encode_uuid(CALL_ID))


def test_error_messages_never_carry_payload_bytes() -> None:
    secret = b"\x42" * 16
    dec = Decoder()
    with pytest.raises(AudioSocketProtocolError) as info:
        dec.feed(b"\x10\x00\x10" + secret)
    assert "42" not in str(info.value) and "B" * 4 not in str(info.value)


def _valid_frame() -> st.SearchStrategy[bytes]:
    audio = st.builds(
        encode_audio,
        st.sampled_from(AUDIO_KINDS),
        st.integers(0, 600).flatmap(lambda n: st.binary(min_size=2 * n, max_size=2 * n)),
    )
    dtmf = st.sampled_from("0123456789*#ABCD").map(encode_dtmf)
    other = st.sampled_from([HANGUP_FRAME, encode_uuid(CALL_ID)])
    error = st.binary(max_size=4).map(lambda p: encode(Kind.ERROR, p))
    return st.one_of(audio, dtmf, other, error)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=12), st.booleans())
def test_random_bytes_never_raise_anything_but_the_protocol_error(
    chunks: list[bytes], expect_uuid: bool
) -> None:
    dec = Decoder(max_payload=512, expect_uuid_first=expect_uuid)
    for chunk in chunks:
        try:
            frames = dec.feed(chunk)
        except AudioSocketProtocolError:
            continue
        assert all(isinstance(f, Frame) for f in frames)


@settings(max_examples=300, deadline=None)
@given(st.lists(_valid_frame(), max_size=25), st.data())
def test_valid_frames_in_random_splits_decode_to_exactly_the_same_frames(
    frames: list[bytes], data: st.DataObject
) -> None:
    wire = encode_uuid(CALL_ID) + b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=20)))
    dec = Decoder(max_payload=65535)
    decoded: list[Frame] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        decoded += dec.feed(wire[start:end])
    assert dec.buffered == 0
    assert b"".join(encode(f.kind, f.payload) for f in decoded) == wire
    assert len(decoded) == len(frames) + 1
