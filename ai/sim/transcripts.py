"""What the stand-in "hears": the scenario's callee lines, matched to VAD utterances.

The k-th line the callee says is the k-th ``say`` step of its script. A turn detector may split
one line in two (a pause longer than ``silence_duration_ms``) — then each part carries its share
of the words, by the share of the line's voiced time it covered — and a line the callee cuts
short (``cut_after``) carries only the words spoken before the cut. An utterance after the last
line (a beep, noise) transcribes as an empty string.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["CalleeLine", "CalleeTranscriber", "Heard"]

_MIN_TOLERANCE_MS = 350
_TOLERANCE_SHARE = 0.15


@dataclass(frozen=True, slots=True)
class CalleeLine:
    """One line of the callee's script with the voiced length of its rendering."""

    text: str
    voiced_ms: int
    cut_after_ms: int | None = None

    def words(self) -> list[str]:
        """The words the callee actually says (fewer when the line is cut short)."""
        words = self.text.split()
        if self.cut_after_ms is None or self.voiced_ms <= 0 or self.cut_after_ms >= self.voiced_ms:
            return words
        return words[: max(1, math.ceil(len(words) * self.cut_after_ms / self.voiced_ms))]

    @property
    def spoken_ms(self) -> int:
        """Voiced length as spoken (shorter when cut)."""
        if self.cut_after_ms is None:
            return self.voiced_ms
        return min(self.voiced_ms, self.cut_after_ms)


@dataclass(frozen=True, slots=True)
class Heard:
    """The transcript of one utterance; ``line`` is the 1-based line it finished, if any."""

    transcript: str
    line: int | None
    complete: bool


class CalleeTranscriber:
    """Maps utterances (voiced start/end in audio ms) to the callee's script lines."""

    def __init__(self, lines: list[CalleeLine]) -> None:
        self._lines = lines
        self._index = 0
        self._line_start: int | None = None
        self._words_done = 0

    @property
    def lines_heard(self) -> int:
        """How many lines have been transcribed in full."""
        return self._index

    def hear(self, voice_start_ms: int, voice_end_ms: int) -> Heard:
        """Transcribe one utterance."""
        if self._index >= len(self._lines):
            return Heard("", None, complete=True)
        line = self._lines[self._index]
        words = line.words()
        if self._line_start is None:
            self._line_start = voice_start_ms
        elapsed = voice_end_ms - self._line_start
        tolerance = max(_MIN_TOLERANCE_MS, int(line.spoken_ms * _TOLERANCE_SHARE))
        if elapsed >= line.spoken_ms - tolerance or self._words_done >= len(words) - 1:
            text = " ".join(words[self._words_done :])
            self._index += 1
            self._line_start, self._words_done = None, 0
            return Heard(text, self._index, complete=True)
        share = elapsed / max(1, line.spoken_ms)
        upto = min(len(words) - 1, max(self._words_done + 1, round(share * len(words))))
        text = " ".join(words[self._words_done : upto])
        self._words_done = upto
        return Heard(text, None, complete=False)
