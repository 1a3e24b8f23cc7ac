"""``GET /metrics``: the operator's aggregates in the Prometheus text format (version 0.0.4).

Rendered by ``prometheus_client``'s own writer from a one-shot collector over a
:class:`db.repo.feed.MetricsSnapshot`, so HELP/TYPE lines and label escaping are the
library's. Nothing here names a tenant, a number or a task.

Per-call figures (db.shapes.CallFigures) are summarised over the most recently ended calls
as gauges with a ``quantile`` label: ``opendeep_call_voice_to_voice_p99_ms{quantile="0.5"}``
is the median, over those calls, of each call's own p99 voice-to-voice latency.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from db.repo.feed import RECENT_ANSWERS, RECENT_CALLS, Distribution, MetricsSnapshot

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
PREFIX: Final = "opendeep"

_FIGURE_HELP: Final = {
    "setup_ms": "Call setup: due to first agent audio on the wire (ms)",
    "pacing_interval_error_p50_ms": "Per-call p50 error of outbound frame intervals vs 20 ms (ms)",
    "pacing_interval_error_p99_ms": "Per-call p99 error of outbound frame intervals vs 20 ms (ms)",
    "sender_lateness_p50_ms": "Per-call p50 lateness of outbound frames vs deadline (ms)",
    "sender_lateness_p99_ms": "Per-call p99 lateness of outbound frames vs deadline (ms)",
    "inbound_forward_p50_ms": "Per-call p50 AudioSocket frame in to Realtime append sent (ms)",
    "inbound_forward_p99_ms": "Per-call p99 AudioSocket frame in to Realtime append sent (ms)",
    "barge_in_p50_ms": "Per-call p50 callee speech start to outbound silence (ms)",
    "barge_in_p99_ms": "Per-call p99 callee speech start to outbound silence (ms)",
    "voice_to_voice_p50_ms": "Per-call p50 callee stops speaking to first agent audio (ms)",
    "voice_to_voice_p99_ms": "Per-call p99 callee stops speaking to first agent audio (ms)",
    "underruns": "Playout underruns per call (ticks with speech queued but too little audio)",
    "cpu_seconds_per_call_second": "CPU seconds a call used per second of call",
}


def _quantile_label(q: float) -> str:
    return f"{q:g}"


def _figure(name: str, help_text: str, dist: Distribution) -> Metric:
    family = GaugeMetricFamily(
        f"{PREFIX}_call_{name}",
        f"{help_text}; quantiles over the last {RECENT_CALLS} ended calls",
        labels=["quantile"],
    )
    for q, value in dist.quantiles:
        family.add_metric([_quantile_label(q)], value)
    return family


def _answer_wait(snapshot: MetricsSnapshot) -> Metric:
    name = f"{PREFIX}_hitl_answer_wait_seconds"
    summary = Metric(
        name,
        "Time from a question being asked to its answer; quantiles over the last "
        f"{RECENT_ANSWERS} answers, count and sum over all",
        "summary",
    )
    for q, value in snapshot.answer_wait_seconds.quantiles:
        summary.add_sample(name, {"quantile": _quantile_label(q)}, value)
    summary.add_sample(f"{name}_count", {}, float(snapshot.answered_questions))
    summary.add_sample(f"{name}_sum", {}, snapshot.answer_wait_seconds_sum)
    return summary


def _gauge(name: str, help_text: str, value: float) -> Metric:
    return GaugeMetricFamily(f"{PREFIX}_{name}", help_text, value=value)


class _SnapshotCollector:
    """A collector over one snapshot: what ``generate_latest`` iterates."""

    def __init__(self, snapshot: MetricsSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        """Every metric family of the snapshot."""
        s = self.snapshot
        yield _gauge(
            "active_calls", "Calls not yet ended (created, dialing or answered)", s.active_calls
        )
        yield _gauge("active_tasks", "Tasks in progress or being analysed", s.active_tasks)
        tasks = GaugeMetricFamily(f"{PREFIX}_tasks", "Tasks by status", labels=["status"])
        for status, n in s.tasks_by_status.items():
            tasks.add_metric([status.value], n)
        yield tasks
        calls = CounterMetricFamily(
            f"{PREFIX}_calls", "Analysed calls by outcome", labels=["outcome"]
        )
        for outcome, n in s.calls_by_outcome.items():
            calls.add_metric([outcome.value], n)
        yield calls
        yield _gauge("hitl_open_questions", "Questions waiting for an answer", s.open_questions)
        yield _answer_wait(s)
        yield _gauge(
            "call_figures_calls",
            f"Ended calls (of the last {RECENT_CALLS}) whose figures the call quantiles use",
            s.figure_calls,
        )
        for name, dist in s.figures.items():
            yield _figure(name, _FIGURE_HELP.get(name, name), dist)


def render(snapshot: MetricsSnapshot) -> bytes:
    """The snapshot in the Prometheus text exposition format 0.0.4."""
    return generate_latest(_SnapshotCollector(snapshot))
