"""The scheduler's claim: take due tasks atomically, within every cap, window and DNC list.

**System function, never exposed to users**: only the Supervisor calls it (DESIGN.md §2, §4
"Dial"). One unit of work: everything below happens in one transaction, every update is checked
and bumped by ``version``, and every change writes its ``task_events`` row with it.

Atomicity. On SQLite the write session starts with ``BEGIN IMMEDIATE`` (WAL + busy timeout), so
claimers take turns. On PostgreSQL the due rows are locked with ``FOR NO KEY UPDATE SKIP LOCKED``
(the lock a plain UPDATE takes; rows a front cancel or a TaskActor holds are skipped, never
waited for), and claimers also take turns on a transaction-scoped advisory lock: the caps below
are counts, and two claimers counting at once under READ COMMITTED would both see room for the
last slot. A claim takes a few milliseconds, so turns cost little, and two clusters sharing one
database are covered alike.

A claim moves the task ``PENDING``/``RETRY_SCHEDULED → IN_PROGRESS`` with owner and lease and
the event ``DIAL_STARTED``; ``total_calls`` changes only when the TaskActor creates the call.
Moving at once (rather than marking a claim inside the waiting states) means a claimed task
whose claimer dies is an active task with an expiring lease, found by the reconcile sweep like
any other (DESIGN.md §2), and a TaskActor that cannot dial after all defers it
``IN_PROGRESS → RETRY_SCHEDULED`` exactly as the transition table says.

Checked for each due task, in ``next_action_time`` order: the tenant's DNC list (→ ``FAILED``);
the callee's calling window (closed → ``next_action_time`` = its next opening, event
``DEFERRED``, status unchanged); the tenant's concurrency, dial rate and daily quota (a tenant
at a cap is left out of the query and its tasks simply stay due); the per-destination daily cap
across all tenants (→ deferred to when a slot frees, unless the tenant is exempt; a cap of 0
turns it off); and the global cap on tasks in progress (``IN_PROGRESS``: a task being analysed
holds no call).
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import Database
from db.models import Call, DncNumber, Task, TaskEvent, Tenant, UtcDateTime
from db.repo._core import StaleVersionError
from db.repo.snapshots import LIVE_CALL_STATUSES
from db.shapes import require_aware
from db.states import CLAIMABLE_TASK_STATUSES, EventKind, TaskStatus, transition_task
from db.windows import CallingWindow, WindowError, resolve_zones, zone
from opendeep.settings import Settings

_Row: TypeAlias = sa.Row[*tuple[Any, ...]]
_Select: TypeAlias = sa.Select[*tuple[Any, ...]]

CLAIM_LOCK_KEY: Final = zlib.crc32(b"opendeep.claim_due_tasks")
"""pg_advisory_xact_lock key claimers take turns on (PostgreSQL only)."""
MAX_ROUNDS: Final = 4
"""Queries per claim: a later round replaces tasks a tenant's cap left out in an earlier one."""
DAY: Final = dt.timedelta(hours=24)
MINUTE: Final = dt.timedelta(seconds=60)
_DEFER_WHEN_NEVER_OPEN: Final = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    """A task the caller now holds: hand it to its TaskActor."""

    task_id: uuid.UUID
    tenant_id: uuid.UUID
    phone: str
    attempt_number: int
    """The number the next call will get: ``total_calls + 1``."""
    owner: str
    lease_expires_at: dt.datetime
    due_at: dt.datetime
    """The ``next_action_time`` it was due at (the start of the call-setup figure)."""
    claimed_at: dt.datetime
    version: int
    """The task's version after the claim."""


_COLUMNS: Final = (
    Task.id,
    Task.tenant_id,
    Task.phone,
    Task.timezone,
    Task.window_start,
    Task.window_end,
    Task.window_days,
    Task.status,
    Task.version,
    Task.total_calls,
    Task.current_attempt_count,
    Task.max_attempts,
    Task.next_action_time,
)


@dataclass(slots=True)
class _Budget:
    """How many more tasks a tenant may claim now, and whether the destination cap applies."""

    remaining: int
    exempt: bool


@dataclass(slots=True)
class _Change:
    """One task row to update (guarded by its version) and the event that records it."""

    row: _Row
    values: dict[str, Any]
    kind: EventKind
    message: str
    data: dict[str, Any]


@dataclass(slots=True)
class _Plan:
    """The claim being built: what is left under each cap, and the changes decided so far."""

    owner: str
    now: dt.datetime
    lease_expires_at: dt.datetime
    free: int
    budgets: dict[uuid.UUID, _Budget]
    destination_cap: int
    claimed: list[ClaimedTask] = field(default_factory=list)
    changes: list[_Change] = field(default_factory=list)
    recent: dict[str, list[dt.datetime]] = field(default_factory=dict)
    """Per destination: the times of calls (or claims) that count against its daily cap."""

    def excluded_tenants(self) -> list[uuid.UUID]:
        """Tenants at a cap: left out of the due-task query, their tasks stay due."""
        return [tenant for tenant, budget in self.budgets.items() if budget.remaining <= 0]


async def claim_due_tasks(
    db: Database,
    *,
    owner: str,
    now: dt.datetime,
    limit: int,
    lease_seconds: float,
    global_max_active: int,
    settings: Settings,
) -> list[ClaimedTask]:
    """Claim up to ``limit`` due tasks for ``owner`` (see the module docstring for the rules)."""
    now = require_aware(now, "now")
    if limit <= 0 or lease_seconds <= 0:
        raise ValueError("limit and lease_seconds must be positive")
    async with db.write() as session:
        if not db.is_sqlite:
            await session.execute(sa.select(sa.func.pg_advisory_xact_lock(CLAIM_LOCK_KEY)))
        active, budgets = await _tenant_budgets(session, now)
        if active >= global_max_active:
            return []
        plan = _Plan(
            owner=owner,
            now=now,
            lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
            free=global_max_active - active,
            budgets=budgets,
            destination_cap=settings.destination_daily_cap,
        )
        for _ in range(MAX_ROUNDS):
            want = min(limit - len(plan.claimed), plan.free)
            if want <= 0:
                break
            rows = await _due_rows(session, now, want, plan.excluded_tenants())
            if not rows:
                break
            await _decide(session, plan, rows)
            await _write(session, plan)
            if len(rows) < want:
                break
        return plan.claimed


async def _tenant_budgets(
    session: AsyncSession, now: dt.datetime
) -> tuple[int, dict[uuid.UUID, _Budget]]:
    """Tasks in progress overall, and each tenant's room under its three caps.

    Concurrency counts the tenant's ``IN_PROGRESS`` tasks: their rows come from the status
    index and are counted here (there are at most the global cap of them; a GROUP BY would
    lead SQLite to scan every task by tenant instead). A claim is a dial: its
    ``DIAL_STARTED`` event counts against the rate and the quota (indexed by tenant, kind,
    time: one short range scan per tenant).
    """
    busy = Counter(
        await session.scalars(
            sa.select(Task.tenant_id).where(Task.status == TaskStatus.IN_PROGRESS)
        )
    )

    def dials_since(since: dt.datetime) -> sa.ScalarSelect[int]:
        return (
            sa.select(sa.func.count())
            .where(
                TaskEvent.tenant_id == Tenant.id,
                TaskEvent.kind == EventKind.DIAL_STARTED,
                TaskEvent.at > since,
            )
            .scalar_subquery()
        )

    rows = await session.execute(
        sa.select(
            Tenant.id,
            Tenant.max_concurrent_calls,
            Tenant.dial_rate_per_minute,
            Tenant.daily_call_quota,
            Tenant.destination_cap_exempt,
            dials_since(now - MINUTE),
            dials_since(now - DAY),
        )
    )
    budgets = {}
    for tenant, concurrent, rate, quota, exempt, last_minute, last_day in rows:
        remaining = min(concurrent - busy[tenant], rate - last_minute, quota - last_day)
        budgets[tenant] = _Budget(remaining=remaining, exempt=exempt)
    return busy.total(), budgets


async def _due_rows(
    session: AsyncSession, now: dt.datetime, want: int, excluded: list[uuid.UUID]
) -> list[_Row]:
    """The ``want`` longest-due claimable tasks of tenants not at a cap, oldest due first.

    The ids come from one ordered, limited scan of the (status, next_action_time) index per
    claimable status, so a backlog of due tasks costs ``want`` rows, not the backlog's size.
    The rows are then locked on PostgreSQL, skipping (never waiting for) rows another writer
    holds, and re-checked under the lock.
    """

    def due(status: TaskStatus) -> _Select:
        query = sa.select(Task.id, Task.next_action_time).where(
            Task.status == status,
            Task.next_action_time <= now,
            Task.cancel_requested_at.is_(None),
        )
        if excluded:
            query = query.where(Task.tenant_id.not_in(excluded))
        return query.order_by(Task.next_action_time).limit(want)

    parts = [due(status).subquery() for status in sorted(CLAIMABLE_TASK_STATUSES)]
    union = sa.union_all(*(sa.select(part) for part in parts)).subquery()
    picked = sa.select(union.c.id).order_by(union.c.next_action_time).limit(want)
    rows = await session.execute(
        sa.select(*_COLUMNS)
        .where(
            Task.id.in_(picked),
            Task.status.in_(CLAIMABLE_TASK_STATUSES),
            Task.next_action_time <= now,
            Task.cancel_requested_at.is_(None),
        )
        .order_by(Task.next_action_time)
        .with_for_update(skip_locked=True, key_share=True, of=Task)
    )
    return list(rows)


async def _decide(session: AsyncSession, plan: _Plan, rows: list[_Row]) -> None:
    """Decide each due row in order: refuse (DNC), defer (window, destination cap) or claim."""
    dnc = await _dnc_pairs(session, rows)
    capped = [r for r in rows if not getattr(plan.budgets.get(r.tenant_id), "exempt", True)]
    if plan.destination_cap > 0 and capped:
        await _load_recent_dials(session, plan, {r.phone for r in capped})
    for row in rows:
        budget = plan.budgets.get(row.tenant_id)
        if budget is None:
            continue  # a tenant created after its budget was read: taken next time
        if (row.tenant_id, row.phone) in dnc:
            _refuse_dnc(plan, row)
            continue
        window = _window(row)
        if isinstance(window, str):
            plan.changes.append(_failed(plan, row, f"Cannot call: {window}", reason="window"))
            continue
        if not window.contains(plan.now):
            _defer_to_window(plan, row, window)
            continue
        if budget.remaining <= 0 or plan.free <= 0:
            continue  # stays due: taken when the tenant (or the whole system) has room again
        if not budget.exempt and _destination_full(plan, row, window):
            continue
        _claim(plan, row)
        budget.remaining -= 1
        plan.free -= 1


async def _dnc_pairs(session: AsyncSession, rows: list[_Row]) -> set[tuple[uuid.UUID, str]]:
    found = await session.execute(
        sa.select(DncNumber.tenant_id, DncNumber.phone).where(
            DncNumber.phone.in_({row.phone for row in rows}),
            DncNumber.tenant_id.in_({row.tenant_id for row in rows}),
        )
    )
    return {(tenant, phone) for tenant, phone in found}


async def _load_recent_dials(session: AsyncSession, plan: _Plan, phones: set[str]) -> None:
    """Per destination: calls made in the last 24 h, plus claims that have not dialed yet."""
    phones -= plan.recent.keys()
    if not phones:
        return
    for phone in phones:
        plan.recent[phone] = []
    # An IN_PROGRESS task with no live call was claimed and is about to dial, "now" (a call
    # that ended has already moved its task to ANALYZING in the same transaction).
    undialed = sa.select(Task.phone, sa.literal(plan.now, UtcDateTime())).where(
        Task.status == TaskStatus.IN_PROGRESS,
        Task.phone.in_(phones),
        ~sa.exists().where(Call.task_id == Task.id, Call.status.in_(LIVE_CALL_STATUSES)),
    )
    dials = await session.execute(
        sa.union_all(
            sa.select(Call.destination, Call.created_at).where(
                Call.destination.in_(phones), Call.created_at > plan.now - DAY
            ),
            undialed,
        )
    )
    for phone, at in dials:
        plan.recent[phone].append(at)


def _destination_full(plan: _Plan, row: _Row, window: CallingWindow) -> bool:
    """Whether the destination's daily cap is reached; if so, defer the task to a free slot."""
    times = sorted(plan.recent.get(row.phone, []))
    cap = plan.destination_cap
    if cap <= 0 or len(times) < cap:
        return False
    slot_frees = max(times[len(times) - cap] + DAY, plan.now + dt.timedelta(seconds=1))
    message = (
        f"Daily limit of {cap} calls to {row.phone} reached (all tenants) — next try "
        f"{_local(slot_frees, window, plan.now)}"
    )
    plan.changes.append(
        _Change(
            row,
            {"next_action_time": slot_frees, "updated_at": plan.now},
            EventKind.DEFERRED,
            message,
            {"reason": "destination_cap", "next_action_time": slot_frees.isoformat()},
        )
    )
    return True


def _refuse_dnc(plan: _Plan, row: _Row) -> None:
    message = f"{row.phone} is on the do-not-call list — task closed"
    plan.changes.append(_failed(plan, row, message, reason="dnc"))


def _failed(plan: _Plan, row: _Row, message: str, *, reason: str) -> _Change:
    values = {
        "status": transition_task(row.status, TaskStatus.FAILED),
        "next_action_time": None,
        "finished_at": plan.now,
        "updated_at": plan.now,
    }
    return _Change(row, values, EventKind.FAILED, message, {"reason": reason})


def _defer_to_window(plan: _Plan, row: _Row, window: CallingWindow) -> None:
    try:
        opens = window.next_open(plan.now)
        message = f"Outside the calling window — next try {_local(opens, window, plan.now)}"
    except WindowError as exc:
        opens = plan.now + _DEFER_WHEN_NEVER_OPEN
        message = f"Outside the calling window, which does not open soon ({exc}) — rechecked"
    plan.changes.append(
        _Change(
            row,
            {"next_action_time": opens, "updated_at": plan.now},
            EventKind.DEFERRED,
            message,
            {"reason": "window", "next_action_time": opens.isoformat()},
        )
    )


def _claim(plan: _Plan, row: _Row) -> None:
    attempt = row.total_calls + 1
    values = {
        "status": transition_task(row.status, TaskStatus.IN_PROGRESS),
        "owner": plan.owner,
        "lease_expires_at": plan.lease_expires_at,
        "updated_at": plan.now,
    }
    plan.changes.append(
        _Change(
            row,
            values,
            EventKind.DIAL_STARTED,
            f"Dialing {row.phone} ({_attempt_text(row)})",
            {"attempt_number": attempt, "owner": plan.owner},
        )
    )
    plan.recent.setdefault(row.phone, []).append(plan.now)
    plan.claimed.append(
        ClaimedTask(
            task_id=row.id,
            tenant_id=row.tenant_id,
            phone=row.phone,
            attempt_number=attempt,
            owner=plan.owner,
            lease_expires_at=plan.lease_expires_at,
            due_at=row.next_action_time,
            claimed_at=plan.now,
            version=row.version + 1,
        )
    )


def _attempt_text(row: _Row) -> str:
    counted = f"attempt {row.current_attempt_count + 1} of {row.max_attempts}"
    if row.total_calls == row.current_attempt_count:
        return counted
    return f"call {row.total_calls + 1}, {counted}"


async def _write(session: AsyncSession, plan: _Plan) -> None:
    """Apply the planned changes: one guarded UPDATE per distinct set of values, one INSERT."""
    if not plan.changes:
        return
    table = Task.__table__
    assert isinstance(table, sa.Table)
    groups: dict[tuple[tuple[str, Any], ...], list[_Change]] = defaultdict(list)
    for change in plan.changes:
        groups[tuple(sorted(change.values.items()))].append(change)
    for key, changes in groups.items():
        pairs = [(c.row.id, c.row.version) for c in changes]
        result = await session.execute(
            sa.update(table)
            .where(
                table.c.id.in_([task_id for task_id, _ in pairs]),  # lets SQLite use its key
                sa.tuple_(table.c.id, table.c.version).in_(pairs),
            )
            .values(version=table.c.version + 1, **dict(key))
        )
        if result.rowcount != len(pairs):  # type: ignore[attr-defined]
            raise StaleVersionError("due tasks changed while being claimed; claim again")
    await session.execute(
        sa.insert(TaskEvent),
        [
            {
                "task_id": c.row.id,
                "tenant_id": c.row.tenant_id,
                "call_id": None,
                "at": plan.now,
                "kind": c.kind,
                "message": c.message,
                "data": c.data,
            }
            for c in plan.changes
        ],
    )
    plan.changes.clear()


def _window(row: _Row) -> CallingWindow | str:
    """The task's calling window in the callee's zones, or why it has none."""
    try:
        zones = _zones(row.timezone, row.phone)
        return _cached_window(row.window_start, row.window_end, tuple(row.window_days), zones)
    except (WindowError, ValueError) as exc:
        return f"calling window unusable ({exc})"


@functools.lru_cache(maxsize=4096)
def _zones(task_zone: str | None, phone: str) -> tuple[str, ...]:
    return resolve_zones(task_zone, phone)


@functools.lru_cache(maxsize=1024)
def _cached_window(
    start: dt.time, end: dt.time, days: tuple[int, ...], zones: tuple[str, ...]
) -> CallingWindow:
    return CallingWindow(start=start, end=end, days=frozenset(days), zones=zones)


def _local(at: dt.datetime, window: CallingWindow, now: dt.datetime) -> str:
    """``at`` on the callee's clock: ``09:00 Europe/Paris``, or ``Tue 09:00 …`` on another day."""
    key = window.zones[0]
    local, today = at.astimezone(zone(key)), now.astimezone(zone(key)).date()
    return f"{local.strftime('%H:%M' if local.date() == today else '%a %H:%M')} {key}"
