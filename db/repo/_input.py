"""Checks on user input shared by the repository modules: each raises InvalidInputError.

Lengths are checked before anything else touches the value, so a 100 KB payload costs
nothing and gets a clear message.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from db.repo._core import InvalidInputError
from db.shapes import require_aware

MAX_INT_LIMIT: Final = 1_000_000
"""Upper bound of the tenant limits: far above any real use, far below 32-bit overflow."""


def text(value: object, what: str, *, max_chars: int, required: bool = True) -> str:
    """``value`` stripped; refused when not text, too long, or empty while required."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be text")
    if len(value) > max_chars:
        raise InvalidInputError(
            f"{what} is too long: {len(value):,} characters (at most {max_chars:,})"
        )
    stripped = value.strip()
    if required and not stripped:
        raise InvalidInputError(f"{what} may not be empty")
    return stripped


def optional_text(value: object, what: str, *, max_chars: int) -> str | None:
    """Like :func:`text` but ``None`` or blank gives ``None``."""
    if value is None:
        return None
    cleaned = text(value, what, max_chars=max_chars, required=False)
    return cleaned or None


def limit(value: object, what: str, *, low: int = 1, high: int = MAX_INT_LIMIT) -> int:
    """An integer within ``[low, high]`` (bools refused: ``True`` is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{what} must be a whole number")
    if not low <= value <= high:
        raise InvalidInputError(f"{what} must be between {low:,} and {high:,} (got {value:,})")
    return value


def aware(value: dt.datetime, what: str) -> dt.datetime:
    """``value`` in UTC; a naive datetime is refused with InvalidInputError."""
    if not isinstance(value, dt.datetime):
        raise InvalidInputError(f"{what} must be a date and time")
    try:
        return require_aware(value, what)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
