"""Tenants, users, API keys and the first-run bootstrap, on SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from db import auth
from db.engine import Database
from db.models import ApiKey, Tenant, User
from db.repo import accounts
from db.repo._core import ConflictError, InvalidInputError, NotFoundError
from db.windows import WindowError
from opendeep.settings import Settings

pytestmark = pytest.mark.integration


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


async def _tenant(db: Database, name: str = "acme", **values: object) -> accounts.TenantView:
    return await accounts.create_tenant(
        db,
        name=name,
        allowed_countries=values.pop("allowed_countries", ["US", "FR"]),  # type: ignore[arg-type]
        max_concurrent_calls=3,
        dial_rate_per_minute=6,
        daily_call_quota=100,
        window=(dt.time(9), dt.time(18), [0, 1, 2, 3, 4]),
        settings=_settings(),
        **values,  # type: ignore[arg-type]
    )


async def _count(db: Database, model: type) -> int:
    async with db.read() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


# -- auth primitives ------------------------------------------------------------------------


def test_password_hash_is_salted_and_verifies_in_constant_time() -> None:
    first, second = auth.hash_password("s3cret!"), auth.hash_password("s3cret!")
    assert first != second  # random salt
    assert first.startswith("scrypt$16384$8$1$")
    assert auth.verify_password("s3cret!", first)
    assert not auth.verify_password("s3cret?", first)
    assert not auth.verify_password("s3cret!", "garbage")
    assert not auth.verify_password("s3cret!", "scrypt$1099511627776$8$1$AA$AA")  # absurd n
    assert not auth.needs_rehash(first)


@pytest.mark.parametrize("bad", ["", "   ", "x" * (auth.MAX_PASSWORD_CHARS + 1)])
def test_empty_or_huge_passwords_are_refused(bad: str) -> None:
    with pytest.raises(auth.PasswordError):
        auth.hash_password(bad)


def test_api_keys_are_random_and_parse_back() -> None:
    key = auth.generate_api_key()
    parsed = auth.parse_api_key(key)
    assert parsed is not None and key.startswith(f"od_{parsed.prefix}_")
    assert auth.generate_api_key() != key
    assert auth.api_key_matches(key, auth.hash_api_key(key))
    for bad in ("", "od_", "od_zzzzzzzzzzzz_x", "xx_0123456789ab_secret", "od_0123_secret"):
        assert auth.parse_api_key(bad) is None
    assert len(auth.generate_password()) >= 20


# -- tenants --------------------------------------------------------------------------------


async def test_tenants_are_created_listed_and_found_by_name(database: Database) -> None:
    acme = await _tenant(database)
    assert acme.allowed_countries == ("FR", "US")
    assert (acme.window_start, acme.window_end, acme.window_days) == (
        dt.time(9),
        dt.time(18),
        (0, 1, 2, 3, 4),
    )
    assert not acme.destination_cap_exempt
    other = await _tenant(database, "other", allowed_countries=None)
    assert other.allowed_countries == ("*",)
    assert [t.name for t in await accounts.list_tenants(database)] == ["acme", "other"]
    assert (await accounts.get_tenant_by_name(database, "acme")).id == acme.id
    assert (await accounts.get_tenant(database, other.id)).name == "other"
    with pytest.raises(NotFoundError):
        await accounts.get_tenant_by_name(database, "nobody")


async def test_a_duplicate_tenant_name_is_a_conflict(database: Database) -> None:
    await _tenant(database)
    with pytest.raises(ConflictError, match="already exists"):
        await _tenant(database)
    assert await _count(database, Tenant) == 1


async def test_tenant_defaults_come_from_the_settings(database: Database) -> None:
    settings = _settings(tenant_max_concurrent_calls=7, calling_days="mon-fri")
    tenant = await accounts.create_tenant(database, name="d", settings=settings)
    assert tenant.max_concurrent_calls == 7
    assert tenant.window_days == (0, 1, 2, 3, 4)
    assert tenant.allowed_countries == ("*",)


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"name": ""}, InvalidInputError),
        ({"name": "x" * 101}, InvalidInputError),
        ({"allowed_countries": ["ZZ"]}, InvalidInputError),
        ({"max_concurrent_calls": 0}, InvalidInputError),
        ({"daily_call_quota": -1}, InvalidInputError),
        ({"window": (dt.time(18), dt.time(9), [0])}, WindowError),
        ({"window": (dt.time(9), dt.time(18), [])}, WindowError),
    ],
)
async def test_bad_tenant_input_is_refused_and_nothing_written(
    database: Database, values: dict[str, object], error: type[Exception]
) -> None:
    args: dict[str, object] = {"name": "bad", "settings": _settings(), **values}
    with pytest.raises(error):
        await accounts.create_tenant(database, **args)  # type: ignore[arg-type]
    assert await _count(database, Tenant) == 0


# -- users ----------------------------------------------------------------------------------


async def test_users_log_in_with_their_password_only(database: Database) -> None:
    tenant = await _tenant(database)
    user = await accounts.create_user(
        database, tenant_id=tenant.id, username="Alice", password="correct horse"
    )
    assert user.username == "alice" and user.tenant_id == tenant.id and not user.is_admin
    ok = await accounts.authenticate_user(database, "ALICE ", "correct horse")
    assert ok is not None and ok.id == user.id
    assert await accounts.authenticate_user(database, "alice", "wrong horse") is None
    assert await accounts.authenticate_user(database, "bob", "correct horse") is None
    assert await accounts.authenticate_user(database, "", "") is None
    async with database.read() as session:
        stored = await session.scalar(sa.select(User.password_hash))
    assert stored is not None and "correct horse" not in stored
    found = await accounts.get_user_by_username(database, " Alice")
    assert found is not None and found.id == user.id
    assert await accounts.get_user_by_username(database, "bob") is None
    assert await accounts.get_user_by_username(database, "x" * 10_000) is None


async def test_duplicate_usernames_empty_passwords_and_unknown_tenants_are_refused(
    database: Database,
) -> None:
    tenant = await _tenant(database)
    await accounts.create_user(database, tenant_id=tenant.id, username="alice", password="pw1")
    with pytest.raises(ConflictError, match="already exists"):
        await accounts.create_user(database, tenant_id=tenant.id, username="ALICE", password="x")
    with pytest.raises(InvalidInputError, match="empty"):
        await accounts.create_user(database, tenant_id=tenant.id, username="bob", password="")
    with pytest.raises(InvalidInputError):
        await accounts.create_user(database, tenant_id=tenant.id, username="a b", password="x")
    with pytest.raises(NotFoundError):
        await accounts.create_user(database, tenant_id=uuid.uuid4(), username="c", password="x")
    assert await _count(database, User) == 1


# -- API keys -------------------------------------------------------------------------------


async def test_api_keys_authenticate_to_their_tenant_until_revoked(database: Database) -> None:
    tenant = await _tenant(database)
    key, view = await accounts.create_api_key(database, tenant_id=tenant.id, name="ci")
    assert view.prefix in key and not view.revoked and view.last_used_at is None
    found = await accounts.authenticate_api_key(database, key)
    assert found is not None and found.tenant_id == tenant.id and found.id == view.id
    assert found.last_used_at is not None
    async with database.read() as session:
        stored = await session.scalar(sa.select(ApiKey.key_hash))
    assert stored == auth.hash_api_key(key) and key not in stored

    assert await accounts.authenticate_api_key(database, key[:-1] + "x") is None
    assert await accounts.authenticate_api_key(database, "not a key") is None

    revoked = await accounts.revoke_api_key(database, tenant.id, view.id)
    assert revoked.revoked
    assert await accounts.authenticate_api_key(database, key) is None
    again = await accounts.revoke_api_key(database, tenant.id, view.id)  # idempotent
    assert again.revoked_at == revoked.revoked_at


async def test_a_tenant_cannot_revoke_or_bind_another_tenants_keys(database: Database) -> None:
    a, b = await _tenant(database, "a"), await _tenant(database, "b")
    key, view = await accounts.create_api_key(database, tenant_id=b.id, name="b-key")
    with pytest.raises(NotFoundError):
        await accounts.revoke_api_key(database, a.id, view.id)
    assert await accounts.authenticate_api_key(database, key) is not None
    b_user = await accounts.create_user(database, tenant_id=b.id, username="bee", password="p")
    with pytest.raises(NotFoundError):
        await accounts.create_api_key(database, tenant_id=a.id, name="x", user_id=b_user.id)
    assert [k.id for k in await accounts.list_api_keys(database, a.id)] == []
    assert [k.id for k in await accounts.list_api_keys(database, b.id)] == [view.id]


async def test_last_used_is_stamped_at_most_once_a_minute(database: Database) -> None:
    tenant = await _tenant(database)
    key, _ = await accounts.create_api_key(database, tenant_id=tenant.id, name="ci")
    first = await accounts.authenticate_api_key(database, key)
    second = await accounts.authenticate_api_key(database, key)
    assert first is not None and second is not None
    assert second.last_used_at == first.last_used_at


# -- bootstrap ------------------------------------------------------------------------------


async def test_bootstrap_in_sim_mode_makes_an_always_open_exempt_tenant_once(
    database: Database,
) -> None:
    settings = _settings(pbx="sim")
    first = await accounts.bootstrap_first_run(database, settings)
    assert first.created and first.password and first.username == "admin"
    assert first.tenant_name == "default"
    assert first.password not in repr(first)
    tenant = first.tenant
    assert tenant.destination_cap_exempt
    assert (tenant.window_start, tenant.window_end) == (dt.time.min, dt.time.max)
    assert tenant.window_days == tuple(range(7))
    admin = await accounts.authenticate_user(database, "admin", first.password)
    assert admin is not None and admin.is_admin and admin.tenant_id == tenant.id

    second = await accounts.bootstrap_first_run(database, settings)
    assert not second.created and second.password is None
    assert second.tenant.id == tenant.id and second.username == "admin"
    assert await _count(database, Tenant) == 1 and await _count(database, User) == 1


async def test_bootstrap_in_asterisk_mode_uses_the_settings_window_and_the_cap(
    database: Database,
) -> None:
    settings = _settings(
        pbx="asterisk",
        calling_window_start="08:30",
        calling_days="mon-fri",
        tenant_allowed_countries="FR,BE",
    )
    result = await accounts.bootstrap_first_run(database, settings)
    tenant = result.tenant
    assert result.created and not tenant.destination_cap_exempt
    assert (tenant.window_start, tenant.window_end) == (dt.time(8, 30), dt.time(20))
    assert tenant.window_days == (0, 1, 2, 3, 4)
    assert tenant.allowed_countries == ("BE", "FR")


async def test_bootstrap_does_nothing_when_a_tenant_exists(database: Database) -> None:
    await _tenant(database)
    result = await accounts.bootstrap_first_run(database, _settings(pbx="sim"))
    assert not result.created and result.password is None and result.tenant.name == "acme"
    assert await _count(database, User) == 0


async def test_concurrent_bootstraps_create_exactly_one_admin(database: Database) -> None:
    results = await asyncio.gather(
        *(accounts.bootstrap_first_run(database, _settings(pbx="sim")) for _ in range(4))
    )
    assert sum(r.created for r in results) == 1
    assert sum(r.password is not None for r in results) == 1
    assert await _count(database, Tenant) == 1 and await _count(database, User) == 1
