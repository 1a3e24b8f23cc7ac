"""Logging setup: one format for the whole system, and a filter that keeps secrets out.

Secrets (API keys, the AMI secret, passwords) must never reach a log. Code is written not to
log them; this filter is the second line: any registered secret value that still shows up in
a record's text is replaced by ``********``.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable

_MASK = "********"
_MIN_SECRET_LEN = 4  # shorter strings would mask ordinary words


class SecretRedactor(logging.Filter):
    """Replaces registered secret values in log records with a mask."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def register(self, values: Iterable[str | None]) -> None:
        """Add secret values to mask from now on."""
        fresh = {v for v in values if v and len(v) >= _MIN_SECRET_LEN}
        with self._lock:
            self._secrets = self._secrets | fresh

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message if it contains a secret; always keep the record."""
        if not self._secrets:
            return True
        text = record.getMessage()
        masked = text
        for secret in self._secrets:
            if secret in masked:
                masked = masked.replace(secret, _MASK)
        if masked is not text and masked != text:
            record.msg, record.args = masked, None
        return True


REDACTOR = SecretRedactor()


def register_secrets(values: Iterable[str | None]) -> None:
    """Tell the log filter about secret values (call once settings are loaded)."""
    REDACTOR.register(values)


def setup_logging(level: str = "INFO") -> None:
    """Configure the root logger once: timestamped lines on stderr, secrets masked."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if not any(getattr(h, "_opendeep", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
        handler._opendeep = True  # type: ignore[attr-defined]
        handler.addFilter(REDACTOR)
        root.addHandler(handler)
