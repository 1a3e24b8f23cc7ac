"""The clock the Supervisor and the TaskActors read: real UTC, optionally shifted (tests).

Every lifecycle write takes an explicit ``now`` (db.repo.system refuses to read a clock), so the
actors read theirs from one small object handed down from the Supervisor to each TaskActor. A
shift lets an end-to-end test stand just before a calling window opens, or far into a weekday,
while timers (backoff waits, HITL timeouts, lease renewals) still run at real speed with tiny
settings (``retry_backoff="1s"``). It crosses Ray boundaries, so it is a plain frozen dataclass.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from db.shapes import utcnow

__all__ = ["Clock"]


@dataclass(frozen=True, slots=True)
class Clock:
    """UTC now, shifted by ``offset_seconds`` (0 in production)."""

    offset_seconds: float = 0.0

    def now(self) -> dt.datetime:
        """The current (shifted) time, timezone-aware UTC."""
        if not self.offset_seconds:
            return utcnow()
        return utcnow() + dt.timedelta(seconds=self.offset_seconds)

    @classmethod
    def standing_at(cls, at: dt.datetime) -> Clock:
        """A clock whose "now" is ``at`` at the moment of this call, then runs at real speed."""
        return cls((at - utcnow()).total_seconds())
