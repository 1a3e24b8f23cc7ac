"""G.711 µ-law by lookup table in numpy (audioop is deprecated and gone in Python 3.13)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["ulaw_decode", "ulaw_encode"]

_BIAS = 0x84
_CLIP = 32635


def _build_encode_table() -> npt.NDArray[np.uint8]:
    """µ-law code for every int16 value, indexed by the sample's bit pattern as uint16."""
    pcm = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), _CLIP) + _BIAS
    # Segment = position of the highest set bit above bit 7 (biased magnitude is 132..32767).
    segment = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (segment + 3)) & 0x0F
    table: npt.NDArray[np.uint8] = (((segment << 4) | mantissa) ^ mask).astype(np.uint8)
    return table


def _build_decode_table() -> npt.NDArray[np.int16]:
    """Linear value of every µ-law code, as in the ITU-T G.711 reference decoder."""
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((code & 0x0F) << 3) + _BIAS) << ((code & 0x70) >> 4)
    return np.where(code & 0x80, _BIAS - t, t - _BIAS).astype(np.int16)


_ENCODE = _build_encode_table()
_DECODE = _build_decode_table()


def ulaw_encode(pcm: bytes | npt.NDArray[np.int16]) -> bytes:
    """Encode int16 samples (little-endian bytes or an int16 array) to µ-law bytes."""
    if isinstance(pcm, np.ndarray):
        if pcm.dtype.kind != "i" or pcm.dtype.itemsize != 2:
            raise TypeError(f"expected int16 samples, got {pcm.dtype}")
        samples = pcm.astype("<i2", copy=False)
    else:
        if len(pcm) % 2:
            raise ValueError(f"{len(pcm)} bytes is not whole 16-bit samples")
        samples = np.frombuffer(pcm, dtype="<i2")
    encoded: bytes = _ENCODE[samples.view("<u2")].tobytes()
    return encoded


def ulaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    """Decode µ-law bytes to int16 samples."""
    return _DECODE[np.frombuffer(data, dtype=np.uint8)]
