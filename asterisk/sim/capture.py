"""The capture format of ``tests/fixtures/ami/*.ami.txt``: AMI messages with their time offsets.

A capture is a list of blocks separated by blank lines; each block starts with ``# +N.NNNs``
(seconds since the Originate was sent) followed by the message's ``Key: Value`` lines, in wire
order. The simulated PBX records what it emits for each call in the same shape, so tests can
compare its event sequences with what a real Asterisk 22 said.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "CapturedMessage",
    "channel_id_of",
    "format_capture",
    "parse_capture",
    "rebind_channel_id",
    "wire_fields",
]

_OFFSET = re.compile(r"^# \+(\d+(?:\.\d+)?)s\s*$")


@dataclass(frozen=True, slots=True)
class CapturedMessage:
    """One AMI message: its time offset (s) and its headers in wire order."""

    t: float
    fields: tuple[tuple[str, str], ...]

    def get(self, name: str, default: str = "") -> str:
        """The first value of header ``name`` (case-insensitive)."""
        lowered = name.lower()
        for key, value in self.fields:
            if key.lower() == lowered:
                return value
        return default

    @property
    def name(self) -> str:
        """``Event`` name, or ``Response:<value>`` for a reply."""
        event = self.get("Event")
        return event if event else f"Response:{self.get('Response')}"

    @property
    def keys(self) -> tuple[str, ...]:
        """Header names in order."""
        return tuple(key for key, _ in self.fields)

    def as_dict(self) -> dict[str, str]:
        """Headers as a dict (a repeated header keeps its last value)."""
        return dict(self.fields)


def parse_capture(text: str) -> list[CapturedMessage]:
    """Parse a capture file's text; raises ValueError on a malformed block."""
    messages: list[CapturedMessage] = []
    for number, block in enumerate(re.split(r"\n\s*\n", text.replace("\r\n", "\n")), 1):
        lines = [line for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        match = _OFFSET.match(lines[0])
        if match is None:
            raise ValueError(f"block {number}: expected '# +N.NNNs', got {lines[0]!r}")
        fields: list[tuple[str, str]] = []
        for line in lines[1:]:
            key, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"block {number}: not a header line: {line!r}")
            fields.append((key, value[1:] if value.startswith(" ") else value))
        messages.append(CapturedMessage(float(match.group(1)), tuple(fields)))
    return messages


def format_capture(messages: Iterable[CapturedMessage]) -> str:
    """Write messages in the capture format (the inverse of :func:`parse_capture`)."""
    blocks = []
    for message in messages:
        lines = [f"# +{message.t:.3f}s"] + [f"{k}: {v}" for k, v in message.fields]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def wire_fields(fields: Sequence[tuple[str, str]]) -> bytes:
    """One AMI message as bytes on the wire (``Key: Value\\r\\n`` lines, blank line after)."""
    return ("".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n").encode("utf-8")


def channel_id_of(messages: Sequence[CapturedMessage]) -> str:
    """The ``ChannelId`` a captured call was originated with (its first leg's ``Uniqueid``)."""
    for message in messages:
        if message.get("Event") == "OriginateResponse" and message.get("Uniqueid"):
            return message.get("Uniqueid")
    for message in messages:
        if message.get("Linkedid"):
            return message.get("Linkedid")
    raise ValueError("no ChannelId in this capture")


def rebind_channel_id(messages: Sequence[CapturedMessage], new_id: str) -> list[CapturedMessage]:
    """The same capture with its ``ChannelId`` (and ``<ChannelId>-2``) replaced by ``new_id``."""
    old_id = channel_id_of(messages)
    return [
        CapturedMessage(m.t, tuple((k, v.replace(old_id, new_id)) for k, v in m.fields))
        for m in messages
    ]
