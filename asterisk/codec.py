"""AudioSocket wire format: frames as pure functions on bytes, and an incremental decoder.

A frame is one kind byte, a big-endian uint16 payload length, then the payload. Audio payloads are
signed 16-bit little-endian mono samples. Nothing here touches a socket.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "DTMF_DIGITS",
    "HANGUP_FRAME",
    "MAX_PAYLOAD",
    "SAMPLE_RATES",
    "AudioSocketProtocolError",
    "Decoder",
    "Frame",
    "Kind",
    "encode",
    "encode_audio",
    "encode_dtmf",
    "encode_uuid",
    "frame_bytes",
    "is_audio",
]


class Kind(enum.IntEnum):
    """AudioSocket frame kinds (the first byte of every frame)."""

    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    SLIN_8K = 0x10
    SLIN_12K = 0x11
    SLIN_16K = 0x12
    SLIN_24K = 0x13
    SLIN_32K = 0x14
    SLIN_44K = 0x15  # 44.1 kHz
    SLIN_48K = 0x16
    SLIN_96K = 0x17
    SLIN_192K = 0x18
    ERROR = 0xFF


SAMPLE_RATES: Mapping[Kind, int] = MappingProxyType(
    {
        Kind.SLIN_8K: 8000,
        Kind.SLIN_12K: 12000,
        Kind.SLIN_16K: 16000,
        Kind.SLIN_24K: 24000,
        Kind.SLIN_32K: 32000,
        Kind.SLIN_44K: 44100,
        Kind.SLIN_48K: 48000,
        Kind.SLIN_96K: 96000,
        Kind.SLIN_192K: 192000,
    }
)

HEADER_BYTES = 3
MAX_PAYLOAD = 0xFFFF
UUID_BYTES = 16
DTMF_DIGITS = frozenset(b"0123456789*#ABCD")
HANGUP_FRAME = b"\x00\x00\x00"

# Indexed by the kind byte: a list lookup is cheaper than Kind(byte) + try/except per frame.
_KIND_BY_BYTE: list[Kind | None] = [None] * 256
for _kind in Kind:
    _KIND_BY_BYTE[_kind.value] = _kind


def is_audio(kind: Kind) -> bool:
    """True for the signed-linear audio kinds (0x10–0x18)."""
    return kind in SAMPLE_RATES


def frame_bytes(kind: Kind, ms: int = 20) -> int:
    """Payload size in bytes of `ms` milliseconds of audio of `kind` (8 kHz, 20 ms → 320)."""
    if not is_audio(kind):
        raise ValueError(f"{kind.name} is not an audio kind")
    samples, remainder = divmod(SAMPLE_RATES[kind] * ms, 1000)
    if remainder or samples <= 0:
        raise ValueError(f"{ms} ms is not a whole, positive number of samples at {kind.name}")
    return samples * 2


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded AudioSocket frame."""

    kind: Kind
    payload: bytes


class AudioSocketProtocolError(ValueError):
    """The byte stream breaks the AudioSocket protocol (the only error the decoder raises)."""

    def __init__(self, message: str, frames: list[Frame] | None = None) -> None:
        super().__init__(message)
        self.frames: list[Frame] = frames or []
        """Whole frames decoded from the same `feed` before the error, so none is lost."""


def _check_payload(kind: Kind, payload: bytes | bytearray | memoryview) -> None:
    """Refuse payloads the peer could not decode; messages name sizes only, never content."""
    size = len(payload)
    if size > MAX_PAYLOAD:
        raise ValueError(f"{kind.name} payload of {size} bytes exceeds {MAX_PAYLOAD}")
    if kind is Kind.HANGUP and size:
        raise ValueError("HANGUP carries no payload")
    if kind is Kind.UUID and size != UUID_BYTES:
        raise ValueError(f"UUID payload must be {UUID_BYTES} bytes, got {size}")
    if kind is Kind.DTMF and (size != 1 or payload[0] not in DTMF_DIGITS):
        raise ValueError("DTMF payload must be one of 0-9 * # A-D")
    if size % 2 and is_audio(kind):
        raise ValueError(f"{kind.name} payload of {size} bytes is not whole 16-bit samples")


def encode(kind: Kind, payload: bytes) -> bytes:
    """Encode one frame as a single buffer (kind, big-endian length, payload)."""
    kind = Kind(kind)
    _check_payload(kind, payload)
    return bytes((kind, len(payload) >> 8, len(payload) & 0xFF)) + payload


def encode_uuid(u: uuid.UUID) -> bytes:
    """The UUID frame a PBX sends first."""
    return encode(Kind.UUID, u.bytes)


def encode_audio(kind: Kind, pcm: bytes) -> bytes:
    """One audio frame of `kind` carrying `pcm` (int16 little-endian)."""
    if not is_audio(kind):
        raise ValueError(f"{Kind(kind).name} is not an audio kind")
    return encode(kind, pcm)


def encode_dtmf(digit: str) -> bytes:
    """A DTMF frame; only the PBX side sends these (the simulated PBX uses it)."""
    if len(digit) != 1:
        raise ValueError("DTMF frame carries exactly one digit")
    return encode(Kind.DTMF, digit.encode("ascii", errors="strict"))


class Decoder:
    """Incremental AudioSocket decoder: feed it any split of the stream, get whole frames back."""

    __slots__ = ("_buffer", "_error", "_expect_uuid", "_max_payload")

    def __init__(self, *, max_payload: int = 8192, expect_uuid_first: bool = True) -> None:
        if not 0 <= max_payload <= MAX_PAYLOAD:
            raise ValueError(f"max_payload must be within 0..{MAX_PAYLOAD}")
        self._max_payload = max_payload
        self._expect_uuid = expect_uuid_first
        self._buffer = bytearray()
        self._error: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Consume `data`, return the frames it completes; raises AudioSocketProtocolError."""
        if self._error is not None:
            raise AudioSocketProtocolError(f"decoder already failed: {self._error}")
        buf = self._buffer
        buf += data
        frames: list[Frame] = []
        pos = 0
        end = len(buf)
        try:
            while end - pos >= HEADER_BYTES:
                kind = self._header_kind(buf, pos)
                size = (buf[pos + 1] << 8) | buf[pos + 2]
                # Checked on the header alone so an oversized claim never makes us buffer it.
                if size > self._max_payload:
                    raise AudioSocketProtocolError(
                        f"{kind.name} frame claims {size} bytes, over the {self._max_payload} cap"
                    )
                self._check_first(kind, size)
                if size & 1 and is_audio(kind):
                    raise AudioSocketProtocolError(
                        f"{kind.name} frame of {size} bytes is not whole 16-bit samples"
                    )
                if end - pos - HEADER_BYTES < size:
                    break
                start = pos + HEADER_BYTES
                frames.append(Frame(kind, bytes(buf[start : start + size])))
                pos = start + size
        except AudioSocketProtocolError as exc:
            self._error = str(exc)
            buf.clear()
            exc.frames = frames
            raise
        del buf[:pos]
        return frames

    def _header_kind(self, buf: bytearray, pos: int) -> Kind:
        kind = _KIND_BY_BYTE[buf[pos]]
        if kind is None:
            raise AudioSocketProtocolError(f"unknown frame kind 0x{buf[pos]:02x}")
        return kind

    def _check_first(self, kind: Kind, size: int) -> None:
        if not self._expect_uuid:
            return
        if kind is not Kind.UUID or size != UUID_BYTES:
            raise AudioSocketProtocolError(
                f"first frame must be a {UUID_BYTES}-byte UUID, got {kind.name} of {size} bytes"
            )
        self._expect_uuid = False
