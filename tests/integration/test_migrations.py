"""Alembic migrations on SQLite and a real PostgreSQL 15: up, down, up again, and in step
with the models."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from db import migrate
from db.engine import Database
from db.models import Base

pytestmark = pytest.mark.integration

APP_TABLES = set(Base.metadata.tables)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database that was never migrated, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    else:
        yield request.getfixturevalue("pg_url")


async def _inspect(url: str, look: Any) -> Any:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda sync: look(sa.inspect(sync)))
    finally:
        await engine.dispose()


def _schema(inspector: sa.Inspector) -> dict[str, set[str]]:
    """Table name → its index and unique-constraint names."""
    out: dict[str, set[str]] = {}
    for table in inspector.get_table_names():
        names = {i["name"] for i in inspector.get_indexes(table) if i["name"]}
        names |= {u["name"] for u in inspector.get_unique_constraints(table) if u["name"]}
        out[table] = names
    return out


def _expected_names(table: sa.Table) -> set[str]:
    names = {str(i.name) for i in table.indexes}
    names |= {
        str(c.name) for c in table.constraints if isinstance(c, sa.UniqueConstraint) and c.name
    }
    return names


async def test_upgrade_head_creates_every_table_index_and_unique_constraint(
    database: Database,
) -> None:
    schema = await _inspect(database.url, _schema)
    assert set(schema) == APP_TABLES | {"alembic_version"}
    for name, table in Base.metadata.tables.items():
        assert _expected_names(table) <= schema[name], name
    # The two queries the design names have their indexes.
    assert "ix_tasks_status_next_action_time" in schema["tasks"]
    assert "ix_tasks_tenant_id_created_at" in schema["tasks"]


async def test_migrated_schema_matches_the_models_exactly(database: Database) -> None:
    def diff(inspector: sa.Inspector) -> list[Any]:
        context = MigrationContext.configure(
            inspector.bind,  # type: ignore[arg-type]
            opts={"compare_type": True, "compare_server_default": True},
        )
        return list(compare_metadata(context, Base.metadata))

    assert await _inspect(database.url, diff) == []


async def test_current_revision_is_head_after_upgrade(database: Database) -> None:
    assert await migrate.current_revision(database.url) == migrate.head_revision()
    assert migrate.head_revision() is not None


async def test_downgrade_to_base_drops_every_table_and_upgrade_restores_them(
    database: Database,
) -> None:
    await database.engine.dispose()  # no pooled connection may hold the tables
    await migrate.downgrade(database.url, "base")
    tables = await _inspect(database.url, lambda i: set(i.get_table_names()))
    assert tables & APP_TABLES == set()
    assert await migrate.current_revision(database.url) is None

    await migrate.upgrade(database.url)
    tables = await _inspect(database.url, lambda i: set(i.get_table_names()))
    assert tables >= APP_TABLES
    assert await migrate.current_revision(database.url) == migrate.head_revision()


async def test_a_never_migrated_database_has_no_revision(fresh_url: str) -> None:
    assert await migrate.current_revision(fresh_url) is None


async def test_upgrading_twice_is_a_no_op(fresh_url: str) -> None:
    await migrate.upgrade(fresh_url)
    await migrate.upgrade(fresh_url)
    assert await migrate.current_revision(fresh_url) == migrate.head_revision()


async def test_concurrent_upgrades_of_one_database_take_turns(fresh_url: str) -> None:
    # Two processes running `opendeep up` at once must not both create the tables.
    await asyncio.gather(*(migrate.upgrade(fresh_url) for _ in range(4)))
    assert await migrate.current_revision(fresh_url) == migrate.head_revision()
    tables = await _inspect(fresh_url, lambda i: set(i.get_table_names()))
    assert tables >= APP_TABLES
