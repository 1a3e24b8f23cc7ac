"""SQLAlchemy 2.x typed models of OpenDeep's tables (DESIGN.md §3).

Every row has a ``version`` for optimistic concurrency; every datetime is timezone-aware UTC
(naive values are refused on the way in, and SQLite values come back aware). Status columns
hold the enums of :mod:`db.states`; JSON columns hold the shapes of :mod:`db.shapes`.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from db.shapes import require_aware
from db.states import (
    AmdVerdict,
    CallOutcome,
    CallStatus,
    EndReason,
    EventKind,
    HitlStatus,
    TaskStatus,
    TelephonyResult,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on every backend."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = require_aware(value)
        # SQLite has no time zones: store naive UTC so text comparisons order correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def _enum(cls: type[enum.Enum]) -> sa.Enum:
    # Stored as plain strings (no native PostgreSQL enum), so adding a value needs no DDL.
    return sa.Enum(
        cls,
        native_enum=False,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base with the constraint naming convention Alembic needs."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UtcDateTime(), dict[str, Any]: sa.JSON()}  # noqa: RUF012 -- SQLAlchemy reads this class attribute by name


class Versioned:
    """Mixin: the optimistic-concurrency version every row carries."""

    version: Mapped[int] = mapped_column(default=1, server_default="1")


class Tenant(Versioned, Base):
    """An isolated customer of OpenDeep with its limits."""

    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    allowed_countries: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    """ISO 3166 alpha-2 codes this tenant may call; ``["*"]`` means any country."""
    max_concurrent_calls: Mapped[int] = mapped_column(default=5)
    dial_rate_per_minute: Mapped[int] = mapped_column(default=10)
    daily_call_quota: Mapped[int] = mapped_column(default=200)
    window_start: Mapped[dt.time] = mapped_column(sa.Time)
    window_end: Mapped[dt.time] = mapped_column(sa.Time)
    window_days: Mapped[list[int]] = mapped_column(sa.JSON)
    """Default allowed weekdays (Monday = 0) for this tenant's tasks."""
    destination_cap_exempt: Mapped[bool] = mapped_column(default=False)
    """True only for the simulated-PBX demo tenant, which can reach only simulated callees."""
    webhook_url: Mapped[str | None] = mapped_column(sa.String(2000))
    created_at: Mapped[dt.datetime]


class User(Versioned, Base):
    """A person who logs in to the UI; belongs to one tenant."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("tenants.id"), index=True)
    username: Mapped[str] = mapped_column(sa.String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime]


class ApiKey(Versioned, Base):
    """A bearer key for the REST API; only its hash is stored."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("tenants.id"), index=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(sa.String(100))
    prefix: Mapped[str] = mapped_column(sa.String(16), index=True)
    """The key's first characters, shown in listings and used to find the row."""
    key_hash: Mapped[str] = mapped_column(sa.String(128), unique=True)
    created_at: Mapped[dt.datetime]
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


class Task(Versioned, Base):
    """A job to do by phone, through as many calls as it takes."""

    __tablename__ = "tasks"
    __table_args__ = (
        sa.Index("ix_tasks_status_next_action_time", "status", "next_action_time"),
        sa.Index("ix_tasks_tenant_id_created_at", "tenant_id", "created_at"),
        sa.Index("ix_tasks_status_lease_expires_at", "status", "lease_expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("tenants.id"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(sa.String(200))
    objective: Mapped[str] = mapped_column(sa.Text)
    context: Mapped[str] = mapped_column(sa.Text, default="")
    callee_name: Mapped[str | None] = mapped_column(sa.String(200))
    phone: Mapped[str] = mapped_column(sa.String(20), index=True)
    """E.164, validated with phonenumbers."""
    language: Mapped[str] = mapped_column(sa.String(16), default="en")
    voice: Mapped[str | None] = mapped_column(sa.String(50))
    timezone: Mapped[str | None] = mapped_column(sa.String(64))
    """IANA zone of the callee; when absent, derived from the number."""
    window_start: Mapped[dt.time] = mapped_column(sa.Time)
    window_end: Mapped[dt.time] = mapped_column(sa.Time)
    window_days: Mapped[list[int]] = mapped_column(sa.JSON)
    retry_backoff: Mapped[list[float]] = mapped_column(sa.JSON)
    """Seconds between retries, by counted attempt; the last step repeats."""
    voicemail_message: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[TaskStatus] = mapped_column(_enum(TaskStatus), default=TaskStatus.PENDING)
    max_attempts: Mapped[int] = mapped_column(default=3)
    current_attempt_count: Mapped[int] = mapped_column(default=0)
    total_calls: Mapped[int] = mapped_column(default=0)
    next_action_time: Mapped[dt.datetime | None]
    collected_info: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON, default=list)
    """Answers from the creator (db.shapes.CollectedInfo), oldest first."""
    result_summary: Mapped[str | None] = mapped_column(sa.Text)
    outcome: Mapped[CallOutcome | None] = mapped_column(_enum(CallOutcome))
    cancel_requested_at: Mapped[dt.datetime | None]
    owner: Mapped[str | None] = mapped_column(sa.String(200))
    """Which supervisor/TaskActor holds the task while it is active."""
    lease_expires_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]

    calls: Mapped[list[Call]] = relationship(
        back_populates="task", order_by="Call.attempt_number", lazy="raise"
    )


class Call(Versioned, Base):
    """One attempt to reach the callee; its id is the AudioSocket UUID and AMI ChannelId."""

    __tablename__ = "calls"
    __table_args__ = (
        sa.Index("ix_calls_destination_created_at", "destination", "created_at"),
        sa.Index("ix_calls_tenant_id_created_at", "tenant_id", "created_at"),
        sa.Index("ix_calls_status_heartbeat_at", "status", "heartbeat_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    task_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("tasks.id"), index=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("tenants.id"))
    destination: Mapped[str] = mapped_column(sa.String(20))
    """The E.164 number dialed (for the per-destination daily cap across tenants)."""
    attempt_number: Mapped[int]
    status: Mapped[CallStatus] = mapped_column(_enum(CallStatus), default=CallStatus.CREATED)
    telephony_result: Mapped[TelephonyResult | None] = mapped_column(_enum(TelephonyResult))
    end_reason: Mapped[EndReason | None] = mapped_column(_enum(EndReason))
    outcome: Mapped[CallOutcome | None] = mapped_column(_enum(CallOutcome))
    hangup_cause: Mapped[int | None]
    originate_reason: Mapped[int | None]
    amd_verdict: Mapped[AmdVerdict | None] = mapped_column(_enum(AmdVerdict))
    amd_cause: Mapped[str | None] = mapped_column(sa.String(100))
    heartbeat_at: Mapped[dt.datetime | None]
    last_seq: Mapped[int] = mapped_column(default=0)
    """The last CallActor message applied; duplicates (seq <= last_seq) are dropped."""
    created_at: Mapped[dt.datetime]
    originated_at: Mapped[dt.datetime | None]
    answered_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime | None]
    transcript: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON, default=list)
    tool_calls: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON, default=list)
    analysis: Mapped[dict[str, Any] | None]
    usage: Mapped[dict[str, Any] | None]
    figures: Mapped[dict[str, Any] | None]
    recording_path: Mapped[str | None] = mapped_column(sa.String(1000))

    task: Mapped[Task] = relationship(back_populates="calls", lazy="raise")


class TaskEvent(Base):
    """One line of a task's append-only audit trail (no version: rows never change)."""

    __tablename__ = "task_events"
    __table_args__ = (
        sa.Index("ix_task_events_task_id_id", "task_id", "id"),
        sa.Index("ix_task_events_tenant_id_id", "tenant_id", "id"),
        sa.Index("ix_task_events_tenant_id_kind_at", "tenant_id", "kind", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("tasks.id"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("tenants.id"))
    call_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("calls.id"))
    at: Mapped[dt.datetime]
    kind: Mapped[EventKind] = mapped_column(_enum(EventKind))
    message: Mapped[str] = mapped_column(sa.Text)
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)


class HitlRequest(Versioned, Base):
    """A question the AI asked the task's creator during a call."""

    __tablename__ = "hitl_requests"
    __table_args__ = (
        sa.Index("ix_hitl_requests_tenant_id_status", "tenant_id", "status"),
        sa.Index("ix_hitl_requests_task_id_status", "task_id", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    """Made by the CallActor that asked."""
    task_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("tasks.id"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("tenants.id"))
    call_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("calls.id"))
    question: Mapped[str] = mapped_column(sa.Text)
    recipient_message: Mapped[str] = mapped_column(sa.Text, default="")
    timeout_seconds: Mapped[float]
    status: Mapped[HitlStatus] = mapped_column(_enum(HitlStatus), default=HitlStatus.PENDING)
    asked_at: Mapped[dt.datetime]
    answered_at: Mapped[dt.datetime | None]
    answer: Mapped[str | None] = mapped_column(sa.Text)
    answered_by: Mapped[str | None] = mapped_column(sa.String(100))


class DncNumber(Base):
    """A number a tenant must never call again."""

    __tablename__ = "dnc_numbers"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "phone"),)

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("tenants.id"))
    phone: Mapped[str] = mapped_column(sa.String(20))
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    task_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("tasks.id"))
    added_at: Mapped[dt.datetime]
