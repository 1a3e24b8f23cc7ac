"""What the REST API streams and exports: the tenant's event feed, and the operator's metrics.

The feed reads ``task_events`` in id order, tenant-scoped. On PostgreSQL an id is taken when
the row is flushed, not when its transaction commits, so a reader may see id 11 before id 10
commits; :func:`event_marks_after` lets the streaming side see such gaps (across tenants,
ids and times only) and hold back what follows one until it fills or is clearly a rollback.

:func:`metrics_snapshot` is deliberately cross-tenant: it is the operator's view for
``/metrics`` and holds aggregates only — counts, and quantiles of the per-call figures —
never a number, a transcript, or anything that says which tenant did what.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pydantic
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import Database
from db.models import Call, HitlRequest, Task, TaskEvent
from db.shapes import CallFigures, Percentiles
from db.states import (
    ACTIVE_TASK_STATUSES,
    TERMINAL_CALL_STATUSES,
    CallOutcome,
    EventKind,
    HitlStatus,
    TaskStatus,
)

log = logging.getLogger(__name__)

MAX_FEED_PAGE: Final = 1_000
RECENT_CALLS: Final = 200
"""How many of the most recently ended calls the per-call figures are summarised over."""
RECENT_ANSWERS: Final = 200
"""How many of the most recent answers the HITL wait quantiles are computed from."""
QUANTILES: Final = (0.5, 0.9, 0.99)
_ANSWERED: Final = (HitlStatus.ANSWERED, HitlStatus.ANSWERED_LATE)


# -- the event feed -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One of a tenant's task events, with its task's title, as the API streams it."""

    id: int
    task_id: uuid.UUID
    task_title: str
    call_id: uuid.UUID | None
    at: dt.datetime
    kind: EventKind
    message: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EventMark:
    """An event's id and time, of any tenant: what the streamer needs to see id gaps."""

    id: int
    at: dt.datetime
    tenant_id: uuid.UUID


def _page(limit: int) -> int:
    if not 1 <= limit <= MAX_FEED_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_FEED_PAGE}, got {limit}")
    return limit


async def events_after(
    db: Database,
    tenant_id: uuid.UUID,
    after_id: int,
    limit: int,
    *,
    up_to: int | None = None,
) -> list[FeedEvent]:
    """The tenant's events with ``after_id < id (<= up_to)``, in id order, at most ``limit``."""
    query = (
        sa.select(TaskEvent, Task.title)
        .join(Task, Task.id == TaskEvent.task_id)
        .where(
            TaskEvent.tenant_id == tenant_id,
            Task.tenant_id == tenant_id,
            TaskEvent.id > after_id,
        )
        .order_by(TaskEvent.id)
        .limit(_page(limit))
    )
    if up_to is not None:
        query = query.where(TaskEvent.id <= up_to)
    async with db.read() as session:
        rows = await session.execute(query)
        return [
            FeedEvent(
                id=event.id,
                task_id=event.task_id,
                task_title=title,
                call_id=event.call_id,
                at=event.at,
                kind=event.kind,
                message=event.message,
                data=dict(event.data),
            )
            for event, title in rows
        ]


async def event_marks_after(db: Database, after_id: int, limit: int) -> list[EventMark]:
    """Ids, times and tenants of all events after ``after_id``, in id order (no content)."""
    query = (
        sa.select(TaskEvent.id, TaskEvent.at, TaskEvent.tenant_id)
        .where(TaskEvent.id > after_id)
        .order_by(TaskEvent.id)
        .limit(_page(limit))
    )
    async with db.read() as session:
        rows = await session.execute(query)
        return [EventMark(id=i, at=at, tenant_id=t) for i, at, t in rows]


async def latest_event_id(db: Database, tenant_id: uuid.UUID | None = None) -> int:
    """The highest event id (of the tenant, or of all tenants when ``None``); 0 when none."""
    query = sa.select(sa.func.max(TaskEvent.id))
    if tenant_id is not None:
        query = query.where(TaskEvent.tenant_id == tenant_id)
    async with db.read() as session:
        return int(await session.scalar(query) or 0)


async def ping(db: Database) -> None:
    """Round-trip ``SELECT 1`` to the database; raises whatever the driver raises."""
    async with db.read() as session:
        await session.execute(sa.select(sa.literal(1)))


# -- metrics --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Distribution:
    """Quantiles of one figure over a recent window, and how many samples they summarise."""

    count: int
    quantiles: tuple[tuple[float, float], ...]
    """``(quantile, value)`` pairs; empty when there are no samples."""


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Cross-tenant aggregates for ``/metrics``: counts and distributions, nothing identifying."""

    active_calls: int
    active_tasks: int
    tasks_by_status: dict[TaskStatus, int]
    """Every status, zeros included."""
    calls_by_outcome: dict[CallOutcome, int]
    """Every outcome, zeros included; calls not yet analysed have none."""
    open_questions: int
    answered_questions: int
    answer_wait_seconds_sum: float
    """Over every answered question (with :attr:`answered_questions`, a Prometheus summary)."""
    answer_wait_seconds: Distribution
    """Over the most recent :data:`RECENT_ANSWERS` answers."""
    figure_calls: int
    """How many ended calls with figures the per-call distributions below are drawn from."""
    figures: dict[str, Distribution]
    """By figure name (see :data:`FIGURES`), over those calls."""


FigureReader = Callable[[CallFigures], float | None]


def _stat(field: str, stat: str) -> FigureReader:
    def read(figures: CallFigures) -> float | None:
        value: Percentiles = getattr(figures, field)
        return float(getattr(value, stat)) if value.count > 0 else None

    return read


def _cpu_per_second(figures: CallFigures) -> float | None:
    if figures.cpu_seconds is None or not figures.duration_s:
        return None
    return figures.cpu_seconds / figures.duration_s


FIGURES: Final[dict[str, FigureReader]] = {
    "setup_ms": lambda f: f.setup_ms,
    "pacing_interval_error_p50_ms": _stat("pacing_interval_error_ms", "p50"),
    "pacing_interval_error_p99_ms": _stat("pacing_interval_error_ms", "p99"),
    "sender_lateness_p50_ms": _stat("sender_lateness_ms", "p50"),
    "sender_lateness_p99_ms": _stat("sender_lateness_ms", "p99"),
    "inbound_forward_p50_ms": _stat("inbound_forward_ms", "p50"),
    "inbound_forward_p99_ms": _stat("inbound_forward_ms", "p99"),
    "barge_in_p50_ms": _stat("barge_in_ms", "p50"),
    "barge_in_p99_ms": _stat("barge_in_ms", "p99"),
    "voice_to_voice_p50_ms": _stat("voice_to_voice_ms", "p50"),
    "voice_to_voice_p99_ms": _stat("voice_to_voice_ms", "p99"),
    "underruns": lambda f: float(f.underruns),
    "cpu_seconds_per_call_second": _cpu_per_second,
}
"""Per-call figures summarised in ``/metrics``: each reads one number from a call's figures
(``None`` when the call did not measure it, e.g. no barge-in happened)."""


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted ``values`` by linear interpolation (``values`` non-empty)."""
    position = q * (len(values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def distribution(values: Iterable[float]) -> Distribution:
    """The :data:`QUANTILES` of ``values`` (finite ones only)."""
    ordered = sorted(v for v in values if math.isfinite(v))
    if not ordered:
        return Distribution(count=0, quantiles=())
    return Distribution(
        count=len(ordered), quantiles=tuple((q, quantile(ordered, q)) for q in QUANTILES)
    )


def _wait_seconds(dialect: str) -> sa.ColumnElement[Any]:
    """``answered_at - asked_at`` in seconds, as SQL of the backend at hand."""
    if dialect == "sqlite":
        return (
            sa.func.julianday(HitlRequest.answered_at) - sa.func.julianday(HitlRequest.asked_at)
        ) * 86_400.0
    return sa.func.extract("epoch", HitlRequest.answered_at - HitlRequest.asked_at)


async def _counts(
    session: AsyncSession, column: Any, where: Sequence[sa.ColumnElement[bool]] = ()
) -> dict[Any, int]:
    """``{value: rows}`` of ``column`` (the rows matching ``where``)."""
    rows = await session.execute(sa.select(column, sa.func.count()).where(*where).group_by(column))
    return {key: int(n) for key, n in rows}


def _figures_of(rows: Iterable[dict[str, Any]]) -> list[CallFigures]:
    parsed: list[CallFigures] = []
    for raw in rows:
        try:
            parsed.append(CallFigures.model_validate(raw))
        except pydantic.ValidationError:
            # One malformed report must not blank the whole scrape; say which shape failed.
            log.warning("skipping call figures that do not parse (keys %s)", sorted(raw))
    return parsed


async def metrics_snapshot(db: Database) -> MetricsSnapshot:
    """Aggregates across all tenants for the operator's ``/metrics`` (see the module doc)."""
    wait = _wait_seconds(db.dialect)
    answered = (HitlRequest.status.in_(_ANSWERED), HitlRequest.answered_at.is_not(None))
    async with db.read() as session:
        tasks = await _counts(session, Task.status)
        outcomes = await _counts(session, Call.outcome, (Call.outcome.is_not(None),))
        calls = await _counts(session, Call.status)
        hitl = await _counts(session, HitlRequest.status)
        wait_sum = await session.scalar(sa.select(sa.func.sum(wait)).where(*answered))
        waits = await session.scalars(
            sa.select(wait)
            .where(*answered)
            .order_by(HitlRequest.answered_at.desc())
            .limit(RECENT_ANSWERS)
        )
        recent_waits = [float(w) for w in waits if w is not None]
        raw_figures = await session.scalars(
            sa.select(Call.figures)
            .where(Call.figures.is_not(None), Call.ended_at.is_not(None))
            .order_by(Call.ended_at.desc())
            .limit(RECENT_CALLS)
        )
        figures = _figures_of(r for r in raw_figures if r is not None)
    return MetricsSnapshot(
        active_calls=sum(n for s, n in calls.items() if s not in TERMINAL_CALL_STATUSES),
        active_tasks=sum(tasks.get(s, 0) for s in ACTIVE_TASK_STATUSES),
        tasks_by_status={s: tasks.get(s, 0) for s in TaskStatus},
        calls_by_outcome={o: outcomes.get(o, 0) for o in CallOutcome},
        open_questions=hitl.get(HitlStatus.PENDING, 0),
        answered_questions=sum(hitl.get(s, 0) for s in _ANSWERED),
        answer_wait_seconds_sum=float(wait_sum or 0.0),
        answer_wait_seconds=distribution(recent_waits),
        figure_calls=len(figures),
        figures={
            name: distribution(v for f in figures if (v := read(f)) is not None)
            for name, read in FIGURES.items()
        },
    )
