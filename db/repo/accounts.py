"""Tenants, users, API keys and the first-run bootstrap (DESIGN.md §7).

Password hashing (scrypt, ~50 ms) runs in a worker thread so it never stalls the event loop
that serves other requests. Usernames are case-insensitive (stored lower-case): ``Admin`` and
``admin`` are one login. API key names need not be unique (rotating a key means creating the
new one before revoking the old one of the same name).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import phonenumbers
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db import auth
from db.engine import Database
from db.models import ApiKey, Tenant, User
from db.phone import ANY_COUNTRY
from db.repo import _input
from db.repo._core import ConflictError, InvalidInputError, NotFoundError
from db.shapes import utcnow
from db.windows import CallingWindow
from opendeep.settings import Settings, get_settings

DEFAULT_TENANT: Final = "default"
ADMIN_USERNAME: Final = "admin"
MAX_NAME_CHARS: Final = 100
LAST_USED_RESOLUTION: Final = dt.timedelta(seconds=60)
"""``api_keys.last_used_at`` is refreshed at most this often: one write per request would
serialise every API call behind SQLite's single writer for a figure nobody needs to the second."""

WindowSpec = tuple[dt.time, dt.time, Iterable[int]]
"""A calling window as (local start, local end, allowed weekdays with Monday = 0)."""


@dataclass(frozen=True, slots=True)
class TenantView:
    """A tenant and its limits."""

    id: uuid.UUID
    name: str
    allowed_countries: tuple[str, ...]
    max_concurrent_calls: int
    dial_rate_per_minute: int
    daily_call_quota: int
    window_start: dt.time
    window_end: dt.time
    window_days: tuple[int, ...]
    destination_cap_exempt: bool
    webhook_url: str | None
    created_at: dt.datetime

    @classmethod
    def of(cls, row: Tenant) -> TenantView:
        """The view of a tenant row."""
        return cls(
            id=row.id,
            name=row.name,
            allowed_countries=tuple(row.allowed_countries),
            max_concurrent_calls=row.max_concurrent_calls,
            dial_rate_per_minute=row.dial_rate_per_minute,
            daily_call_quota=row.daily_call_quota,
            window_start=row.window_start,
            window_end=row.window_end,
            window_days=tuple(row.window_days),
            destination_cap_exempt=row.destination_cap_exempt,
            webhook_url=row.webhook_url,
            created_at=row.created_at,
        )


@dataclass(frozen=True, slots=True)
class UserView:
    """A user (never its password hash)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    username: str
    is_admin: bool
    created_at: dt.datetime

    @classmethod
    def of(cls, row: User) -> UserView:
        """The view of a user row."""
        return cls(row.id, row.tenant_id, row.username, row.is_admin, row.created_at)


@dataclass(frozen=True, slots=True)
class ApiKeyView:
    """An API key's metadata (never the key or its hash)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    user_id: uuid.UUID | None
    name: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @property
    def revoked(self) -> bool:
        """Whether the key has been revoked."""
        return self.revoked_at is not None

    @classmethod
    def of(cls, row: ApiKey) -> ApiKeyView:
        """The view of an API key row."""
        return cls(
            id=row.id,
            tenant_id=row.tenant_id,
            user_id=row.user_id,
            name=row.name,
            prefix=row.prefix,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """What the first-run bootstrap found or made; ``password`` only when just created."""

    created: bool
    tenant: TenantView
    username: str | None
    password: str | None = field(default=None, repr=False)

    @property
    def tenant_name(self) -> str:
        """The bootstrap tenant's name."""
        return self.tenant.name


# -- tenants --------------------------------------------------------------------------------


def _countries(codes: Sequence[str] | None) -> list[str]:
    if codes is None:
        return [ANY_COUNTRY]
    if isinstance(codes, str):
        raise InvalidInputError("allowed countries must be a list of codes, e.g. ['US', 'CA']")
    cleaned: list[str] = []
    for code in codes:
        value = _input.text(code, "country code", max_chars=3).upper()
        if value != ANY_COUNTRY and value not in phonenumbers.SUPPORTED_REGIONS:
            raise InvalidInputError(f"unknown country code {value!r} (use ISO codes like US, FR)")
        cleaned.append(value)
    return sorted(set(cleaned))


def checked_window(window: WindowSpec) -> tuple[dt.time, dt.time, list[int]]:
    """Validate a (start, end, days) window; WindowError when it has no hours or no days."""
    try:
        start, end, days = window
        day_list = sorted({int(d) for d in days})
    except (TypeError, ValueError) as exc:
        raise InvalidInputError("a window is (start time, end time, weekdays 0-6)") from exc
    # CallingWindow validates hours and days; the zone is irrelevant to that check.
    CallingWindow(start=start, end=end, days=frozenset(day_list), zones=("UTC",))
    return start, end, day_list


def parse_country_setting(text: str) -> list[str]:
    """``OPENDEEP_TENANT_ALLOWED_COUNTRIES`` (``"*"`` or ``"US,CA"``) as a list of codes."""
    return [c.strip().upper() for c in text.split(",") if c.strip()]


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _tenant_row(
    settings: Settings,
    *,
    name: str,
    allowed_countries: Sequence[str] | None,
    max_concurrent_calls: int | None,
    dial_rate_per_minute: int | None,
    daily_call_quota: int | None,
    window: WindowSpec | None,
    destination_cap_exempt: bool,
) -> Tenant:
    start, end, days = checked_window(
        window or (settings.window_start, settings.window_end, settings.calling_weekdays)
    )
    return Tenant(
        name=_input.text(name, "tenant name", max_chars=MAX_NAME_CHARS),
        allowed_countries=_countries(allowed_countries),
        max_concurrent_calls=_input.limit(
            _or(max_concurrent_calls, settings.tenant_max_concurrent_calls),
            "max concurrent calls",
        ),
        dial_rate_per_minute=_input.limit(
            _or(dial_rate_per_minute, settings.tenant_dial_rate_per_minute),
            "dial rate per minute",
        ),
        daily_call_quota=_input.limit(
            _or(daily_call_quota, settings.tenant_daily_call_quota), "daily call quota"
        ),
        window_start=start,
        window_end=end,
        window_days=days,
        destination_cap_exempt=bool(destination_cap_exempt),
        created_at=utcnow(),
    )


async def _insert_unique(session: AsyncSession, row: Any, conflict: str) -> None:
    """Add ``row``; a unique-constraint violation (a racing insert) becomes ConflictError."""
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError(conflict) from exc


async def create_tenant(
    db: Database,
    *,
    name: str,
    allowed_countries: Sequence[str] | None = None,
    max_concurrent_calls: int | None = None,
    dial_rate_per_minute: int | None = None,
    daily_call_quota: int | None = None,
    window: WindowSpec | None = None,
    destination_cap_exempt: bool = False,
    settings: Settings | None = None,
) -> TenantView:
    """Create a tenant; ``None`` limits and window take the settings' tenant defaults.

    ``allowed_countries=None`` (or ``["*"]``) allows every country; ``[]`` allows none.
    """
    row = _tenant_row(
        settings or get_settings(),
        name=name,
        allowed_countries=allowed_countries,
        max_concurrent_calls=max_concurrent_calls,
        dial_rate_per_minute=dial_rate_per_minute,
        daily_call_quota=daily_call_quota,
        window=window,
        destination_cap_exempt=destination_cap_exempt,
    )
    conflict = f"a tenant named {row.name!r} already exists"
    async with db.write() as session:
        if await session.scalar(sa.select(Tenant.id).where(Tenant.name == row.name)):
            raise ConflictError(conflict)
        await _insert_unique(session, row, conflict)
        return TenantView.of(row)


async def get_tenant(db: Database, tenant_id: uuid.UUID) -> TenantView:
    """The tenant with this id, or NotFoundError."""
    async with db.read() as session:
        row = await session.get(Tenant, tenant_id)
        if row is None:
            raise NotFoundError(f"no tenant {tenant_id}")
        return TenantView.of(row)


async def get_tenant_by_name(db: Database, name: str) -> TenantView:
    """The tenant called ``name``, or NotFoundError."""
    async with db.read() as session:
        row = await session.scalar(sa.select(Tenant).where(Tenant.name == name.strip()))
        if row is None:
            raise NotFoundError(f"no tenant named {name.strip()!r}")
        return TenantView.of(row)


async def list_tenants(db: Database) -> list[TenantView]:
    """Every tenant, oldest first."""
    async with db.read() as session:
        rows = await session.scalars(sa.select(Tenant).order_by(Tenant.created_at, Tenant.name))
        return [TenantView.of(r) for r in rows]


# -- users ----------------------------------------------------------------------------------


def normalize_username(username: str) -> str:
    """Usernames are stripped and lower-cased; whitespace inside is refused."""
    value = _input.text(username, "username", max_chars=MAX_NAME_CHARS).lower()
    if any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidInputError("a username may not contain spaces or control characters")
    return value


async def _hash(password: str) -> str:
    try:
        return await asyncio.to_thread(auth.hash_password, password)
    except auth.PasswordError as exc:
        raise InvalidInputError(str(exc)) from None


async def create_user(
    db: Database, *, tenant_id: uuid.UUID, username: str, password: str, is_admin: bool = False
) -> UserView:
    """Create a user of ``tenant_id`` with this password (hashed with scrypt)."""
    name = normalize_username(username)
    password_hash = await _hash(password)
    conflict = f"a user named {name!r} already exists"
    async with db.write() as session:
        if await session.get(Tenant, tenant_id) is None:
            raise NotFoundError(f"no tenant {tenant_id}")
        if await session.scalar(sa.select(User.id).where(User.username == name)):
            raise ConflictError(conflict)
        row = User(
            tenant_id=tenant_id,
            username=name,
            password_hash=password_hash,
            is_admin=is_admin,
            created_at=utcnow(),
        )
        await _insert_unique(session, row, conflict)
        return UserView.of(row)


async def authenticate_user(db: Database, username: str, password: str) -> UserView | None:
    """The user whose username and password these are, else ``None`` (same time either way)."""
    try:
        name = normalize_username(username)
    except InvalidInputError:
        name = ""
    async with db.read() as session:
        row = await session.scalar(sa.select(User).where(User.username == name)) if name else None
        view = UserView.of(row) if row is not None else None
        stored = row.password_hash if row is not None else None
    if stored is None or view is None:
        await asyncio.to_thread(auth.burn_password_check, password)
        return None
    ok = await asyncio.to_thread(auth.verify_password, password, stored)
    return view if ok else None


# -- API keys -------------------------------------------------------------------------------


async def get_user_by_username(db: Database, username: str) -> UserView | None:
    """The user with this (case-insensitive) username, else ``None`` (also for a malformed one)."""
    try:
        name = normalize_username(username)
    except InvalidInputError:
        return None
    async with db.read() as session:
        row = await session.scalar(sa.select(User).where(User.username == name))
        return UserView.of(row) if row is not None else None


async def create_api_key(
    db: Database, *, tenant_id: uuid.UUID, name: str, user_id: uuid.UUID | None = None
) -> tuple[str, ApiKeyView]:
    """A new API key of ``tenant_id``: the plaintext (shown once, never stored) and its view."""
    label = _input.text(name, "API key name", max_chars=MAX_NAME_CHARS)
    key = auth.generate_api_key()
    parsed = auth.parse_api_key(key)
    assert parsed is not None  # we just made it
    async with db.write() as session:
        if await session.get(Tenant, tenant_id) is None:
            raise NotFoundError(f"no tenant {tenant_id}")
        if user_id is not None:
            owner = await session.get(User, user_id)
            if owner is None or owner.tenant_id != tenant_id:
                raise NotFoundError(f"no user {user_id} in this tenant")
        row = ApiKey(
            tenant_id=tenant_id,
            user_id=user_id,
            name=label,
            prefix=parsed.prefix,
            key_hash=auth.hash_api_key(key),
            created_at=utcnow(),
        )
        await _insert_unique(session, row, "API key collision; try again")
        return key, ApiKeyView.of(row)


async def authenticate_api_key(db: Database, key: str) -> ApiKeyView | None:
    """The view (with its tenant id) of a valid, unrevoked key, else ``None``."""
    parsed = auth.parse_api_key(key)
    if parsed is None:
        return None
    async with db.read() as session:
        rows = await session.scalars(sa.select(ApiKey).where(ApiKey.prefix == parsed.prefix))
        row = next((r for r in rows if auth.api_key_matches(parsed.key, r.key_hash)), None)
        if row is None or row.revoked_at is not None:
            return None
        view = ApiKeyView.of(row)
    now = utcnow()
    if view.last_used_at is not None and now - view.last_used_at < LAST_USED_RESOLUTION:
        return view
    async with db.write() as session:
        # Not guarded by version: concurrent requests may both stamp it, and either time is
        # right. The revoked_at condition makes a revocation that won the race refuse the key.
        result = await session.execute(
            sa.update(ApiKey)
            .where(ApiKey.id == view.id, ApiKey.revoked_at.is_(None))
            .values(last_used_at=now, version=ApiKey.version + 1)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
    return dataclasses.replace(view, last_used_at=now)


async def list_api_keys(db: Database, tenant_id: uuid.UUID) -> list[ApiKeyView]:
    """The tenant's API keys (revoked ones too), newest first."""
    async with db.read() as session:
        rows = await session.scalars(
            sa.select(ApiKey)
            .where(ApiKey.tenant_id == tenant_id)
            .order_by(ApiKey.created_at.desc(), ApiKey.id)
        )
        return [ApiKeyView.of(r) for r in rows]


async def revoke_api_key(db: Database, tenant_id: uuid.UUID, key_id: uuid.UUID) -> ApiKeyView:
    """Revoke one of the tenant's keys (idempotent); another tenant's key is NotFoundError."""
    async with db.write() as session:
        row = await session.scalar(
            sa.select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == tenant_id)
        )
        if row is None:
            raise NotFoundError(f"no API key {key_id}")
        if row.revoked_at is None:
            # Unconditional on version: revoking must win against a concurrent last_used stamp.
            now = utcnow()
            await session.execute(
                sa.update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=now, version=ApiKey.version + 1)
            )
            await session.refresh(row)
        return ApiKeyView.of(row)


# -- first run ------------------------------------------------------------------------------


def _bootstrap_tenant(settings: Settings) -> Tenant:
    simulated = settings.pbx_mode == "sim"
    # DESIGN §6: the simulated PBX reaches only simulated callees, so its demo tenant may call
    # at any hour and is exempt from the per-destination cap.
    window = (dt.time.min, dt.time.max, range(7)) if simulated else None
    return _tenant_row(
        settings,
        name=DEFAULT_TENANT,
        allowed_countries=parse_country_setting(settings.tenant_allowed_countries),
        max_concurrent_calls=None,
        dial_rate_per_minute=None,
        daily_call_quota=None,
        window=window,
        destination_cap_exempt=simulated,
    )


async def _existing_bootstrap(db: Database) -> BootstrapResult:
    async with db.read() as session:
        tenant = await session.scalar(
            sa.select(Tenant).order_by((Tenant.name != DEFAULT_TENANT), Tenant.created_at).limit(1)
        )
        if tenant is None:
            raise ConflictError("no tenant exists after the bootstrap; try again")
        admin = await session.scalar(
            sa.select(User.username)
            .where(User.tenant_id == tenant.id, User.is_admin.is_(True))
            .order_by(User.created_at)
            .limit(1)
        )
        return BootstrapResult(created=False, tenant=TenantView.of(tenant), username=admin)


async def bootstrap_first_run(db: Database, settings: Settings) -> BootstrapResult:
    """Make sure a tenant exists: on the very first run create ``default`` and ``admin``.

    Idempotent and safe against two processes starting at once. The generated password is
    in the result only when it was created by this call.
    """
    async with db.read() as session:
        if await session.scalar(sa.select(Tenant.id).limit(1)) is not None:
            return await _existing_bootstrap(db)
    password = auth.generate_password()
    password_hash = await _hash(password)
    try:
        async with db.write() as session:
            if await session.scalar(sa.select(Tenant.id).limit(1)) is not None:
                raise ConflictError("another process bootstrapped first")
            tenant = _bootstrap_tenant(settings)
            await _insert_unique(session, tenant, "another process bootstrapped first")
            admin = User(
                tenant_id=tenant.id,
                username=ADMIN_USERNAME,
                password_hash=password_hash,
                is_admin=True,
                created_at=utcnow(),
            )
            await _insert_unique(session, admin, "another process bootstrapped first")
            view = TenantView.of(tenant)
    except ConflictError:
        return await _existing_bootstrap(db)
    return BootstrapResult(created=True, tenant=view, username=ADMIN_USERNAME, password=password)
