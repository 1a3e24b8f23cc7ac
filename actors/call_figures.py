"""A call's figures (DESIGN.md §8) from what the dialer, the bridge and the pacer measured."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass

from actors.call_bridge import CallBridge
from asterisk.playout import percentile
from db.shapes import CallFigures, Percentiles

__all__ = ["CallClock", "build_figures", "percentiles"]


def percentiles(seconds: Iterable[float]) -> Percentiles:
    """p50/p99/max in milliseconds of samples given in seconds."""
    values = list(seconds)
    if not values:
        return Percentiles()
    return Percentiles(
        p50=round(percentile(values, 50) * 1e3, 3),
        p99=round(percentile(values, 99) * 1e3, 3),
        max=round(max(values) * 1e3, 3),
        count=len(values),
    )


def _summary(summary: dict[str, float], name: str, count: int) -> Percentiles:
    if not count:
        return Percentiles()
    return Percentiles(
        p50=round(summary[f"{name}_p50_ms"], 3),
        p99=round(summary[f"{name}_p99_ms"], 3),
        max=round(summary[f"{name}_max_ms"], 3),
        count=count,
    )


@dataclass(slots=True)
class CallClock:
    """Moments of the call on the monotonic clock, plus the wall-clock moment the owner asked."""

    asked_at: dt.datetime
    started_mono: float
    started_wall: dt.datetime
    cpu_start: float
    originate_sent: float | None = None
    connected: float | None = None
    answered: float | None = None
    ended: float | None = None

    @classmethod
    def start(cls, asked_at: dt.datetime) -> CallClock:
        """Anchor both clocks now."""
        return cls(asked_at, time.monotonic(), dt.datetime.now(dt.UTC), time.process_time())

    def wall(self, mono: float) -> dt.datetime:
        """A monotonic moment as wall-clock time."""
        return self.started_wall + dt.timedelta(seconds=mono - self.started_mono)

    def since_asked_ms(self, mono: float | None) -> float | None:
        """Milliseconds from the owner's ask to a monotonic moment."""
        if mono is None:
            return None
        return round((self.wall(mono) - self.asked_at).total_seconds() * 1e3, 3)


def build_figures(clock: CallClock, bridge: CallBridge | None) -> CallFigures:
    """Everything measured on this call, as the owner stores it."""
    ended = clock.ended if clock.ended is not None else time.monotonic()
    connect_ms = None
    if clock.originate_sent is not None and clock.connected is not None:
        connect_ms = round((clock.connected - clock.originate_sent) * 1e3, 3)
    duration = ended - clock.answered if clock.answered is not None else None
    values: dict[str, object] = {
        "originate_ms": clock.since_asked_ms(clock.originate_sent),
        "connect_ms": connect_ms,
        "cpu_seconds": round(time.process_time() - clock.cpu_start, 4),
        "duration_s": round(duration, 3) if duration is not None else None,
    }
    if bridge is not None:
        stats = bridge.pacer.stats
        summary = stats.summary()
        values.update(
            setup_ms=clock.since_asked_ms(bridge.first_agent_frame_at),
            pacing_interval_error_ms=_summary(summary, "interval_error", len(stats.interval_error)),
            sender_lateness_ms=_summary(summary, "lateness", len(stats.lateness)),
            underruns=stats.underruns,
            inbound_forward_ms=percentiles(bridge.inbound_forward.values),
            barge_in_ms=percentiles(bridge.barge_in_latency.values),
            voice_to_voice_ms=percentiles(bridge.voice_to_voice.values),
        )
    return CallFigures.model_validate(values)
