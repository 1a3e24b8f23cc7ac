"""Alembic migrations, driven from Python inside a running event loop.

``opendeep up``, ``opendeep db …`` and the tests call these coroutines; Alembic's commands
are synchronous, so each runs through ``AsyncConnection.run_sync`` on a connection we open
(Alembic's "connection sharing" recipe), and ``db/migrations/env.py`` uses the connection it
is handed instead of creating its own engine. The Alembic configuration is built here, so the
migrations work from an installed wheel without an ``alembic.ini`` on disk; ``db/alembic.ini``
exists for developers who run the ``alembic`` CLI (``alembic -c db/alembic.ini revision
--autogenerate -m "…" -x url=…``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

# Alembic narrates at INFO — even on import (its plugin registry) — on whatever console the
# application logs to, e.g. before a CLI error line; our own debug line (below) says what
# changed instead. So its logger is quieted before alembic is first imported.
logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command  # noqa: E402 -- see above
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
FILE_TEMPLATE: Final = "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s"
"""Dated revision files (``2026_11_24_20261124_0001_initial_schema.py``), oldest first."""

_PG_LOCK_KEY: Final = 7_310_455_201
"""pg_advisory_xact_lock key: two processes migrating one PostgreSQL database take turns."""
_SQLITE_BUSY_TIMEOUT_MS: Final = 30_000

_T = TypeVar("_T")

log = logging.getLogger("opendeep.db")


def alembic_config() -> Config:
    """The Alembic configuration of OpenDeep's migrations (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", FILE_TEMPLATE)
    config.set_main_option("path_separator", "os")
    return config


def _migration_engine(url: str) -> AsyncEngine:
    """An engine for one migration run: one connection, no pool kept afterwards."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, poolclass=NullPool)
    database = parsed.database or ""
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url, poolclass=NullPool, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000}
    )

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We emit BEGIN ourselves (below) so the DDL of a migration is one transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        # Batch migrations rebuild tables (copy, drop, rename); with foreign keys enforced the
        # drop would fail or cascade. Alembic's documentation asks for them off while migrating.
        cursor.execute("PRAGMA foreign_keys=OFF")
        cursor.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # IMMEDIATE: a second migrator waits here instead of failing halfway.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextlib.asynccontextmanager
async def _sqlite_file_lock(url: str) -> AsyncIterator[None]:
    """Serialise migrators of one SQLite file, across processes and within one.

    BEGIN IMMEDIATE alone is not enough on a fresh file: switching it to WAL needs an exclusive
    lock that SQLite may refuse at once ("database is locked") instead of waiting.
    """
    database = make_url(url).database or ""
    if make_url(url).get_backend_name() != "sqlite" or database in {"", ":memory:"}:
        yield
        return
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.migrate-lock", "a+b") as handle:  # noqa: ASYNC230 -- a tiny local file
        await asyncio.to_thread(fcntl.flock, handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


async def _run(url: str, action: Callable[[sa.Connection], _T]) -> _T:
    """Run ``action`` on a sync connection inside one transaction, then dispose the engine."""
    async with _sqlite_file_lock(url):
        return await _run_locked(url, action)


async def _run_locked(url: str, action: Callable[[sa.Connection], _T]) -> _T:
    engine = _migration_engine(url)
    try:
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                await connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY}
                )
            return await connection.run_sync(action)
    finally:
        await engine.dispose()


def _current(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _step(command_: Callable[[Config], None]) -> Callable[[sa.Connection], tuple[str | None, ...]]:
    """Run an Alembic command on ``connection``; return the revisions before and after."""

    def action(connection: sa.Connection) -> tuple[str | None, ...]:
        before = _current(connection)
        config = alembic_config()
        config.attributes["connection"] = connection
        command_(config)
        return before, _current(connection)

    return action


def _report(before: str | None, after: str | None) -> None:
    if before != after:
        log.debug("database schema migrated from %s to %s", before or "empty", after or "empty")


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision`` (default: the latest)."""
    _report(*await _run(url, _step(lambda config: command.upgrade(config, revision))))


async def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"`` = no tables)."""
    _report(*await _run(url, _step(lambda config: command.downgrade(config, revision))))


async def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at, or ``None`` when it was never migrated."""
    return await _run(url, _current)


def head_revision() -> str | None:
    """The newest revision shipped with this version of OpenDeep."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415 -- only this helper needs it

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
