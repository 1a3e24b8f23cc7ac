"""The default conversation of one session: its items in order, and what they cost as input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Conversation", "ItemKind", "ItemState"]

ItemKind = Literal[
    "user_audio", "user_text", "system", "assistant", "function_call", "function_call_output"
]
_AUDIO_IN_MS_PER_TOKEN = 100  # ≈ 10 tokens per second of callee audio
_AUDIO_OUT_MS_PER_TOKEN = 50  # ≈ 20 tokens per second of model audio
_CHARS_PER_TOKEN = 4


def text_tokens(text: str) -> int:
    """A plausible token count for ``text``."""
    return (len(text) + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN


@dataclass(slots=True)
class ItemState:
    """One item as the stand-in keeps it."""

    item_id: str
    kind: ItemKind
    text: str = ""
    audio_ms: float = 0.0
    call_id: str | None = None
    name: str | None = None
    truncated_ms: int | None = None

    def input_tokens(self) -> tuple[int, int]:
        """(text, audio) tokens this item adds to the input of later responses."""
        if self.kind == "user_audio":
            return 0, int(self.audio_ms // _AUDIO_IN_MS_PER_TOKEN)
        if self.kind == "assistant":
            heard = self.audio_ms if self.truncated_ms is None else self.truncated_ms
            text = "" if self.truncated_ms is not None else self.text  # truncation drops it
            return text_tokens(text), int(heard // _AUDIO_OUT_MS_PER_TOKEN)
        return text_tokens(self.text), 0


class Conversation:
    """Items by id, in order."""

    def __init__(self) -> None:
        self._items: dict[str, ItemState] = {}

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def get(self, item_id: str) -> ItemState | None:
        """The item, or None."""
        return self._items.get(item_id)

    @property
    def last_id(self) -> str | None:
        """The id of the newest item (the ``previous_item_id`` of the next one)."""
        return next(reversed(self._items), None) if self._items else None

    def add(self, item: ItemState) -> str | None:
        """Append an item; returns the id of the item before it."""
        previous = self.last_id
        self._items[item.item_id] = item
        return previous

    def delete(self, item_id: str) -> bool:
        """Remove an item; False if unknown."""
        return self._items.pop(item_id, None) is not None

    def function_call(self, call_id: str) -> ItemState | None:
        """The function call item with this ``call_id``."""
        for item in self._items.values():
            if item.kind == "function_call" and item.call_id == call_id:
                return item
        return None

    def input_tokens(self) -> tuple[int, int]:
        """(text, audio) tokens of the whole conversation as model input."""
        text = audio = 0
        for item in self._items.values():
            item_text, item_audio = item.input_tokens()
            text += item_text
            audio += item_audio
        return text, audio

    def has_assistant_audio(self) -> bool:
        """Whether the model has spoken yet (the voice is then fixed)."""
        return any(i.kind == "assistant" and i.audio_ms > 0 for i in self._items.values())
