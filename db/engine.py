"""Engines and sessions for SQLite (the default) and PostgreSQL (clusters).

SQLite under concurrent writers needs WAL, a busy timeout and ``BEGIN IMMEDIATE`` for every
unit of work that writes: a deferred transaction that reads and then writes can fail with
"database is locked" even with a busy timeout, because its read snapshot is stale (DESIGN.md
§9). So a :class:`Database` hands out two kinds of session: ``write()`` (IMMEDIATE on SQLite)
and ``read()`` (deferred). On PostgreSQL both are ordinary transactions; row locks
(``FOR UPDATE SKIP LOCKED``) do the work there.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

SQLITE_BUSY_TIMEOUT_MS = 30_000
_BEGIN_OPTION = "opendeep_sqlite_begin"


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    """Take over SQLite's transaction start so we can choose IMMEDIATE per session."""

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own implicit BEGIN is unreliable; we emit BEGIN ourselves below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


@dataclass(slots=True)
class Database:
    """One database: an engine plus read and write session factories."""

    url: str
    engine: AsyncEngine
    _read: async_sessionmaker[AsyncSession]
    _write: async_sessionmaker[AsyncSession]

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        """Whether this is the SQLite backend."""
        return self.dialect == "sqlite"

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A unit of work that writes: committed on success, rolled back on error."""
        async with self._write() as session, session.begin():
            yield session

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only unit of work (rolled back at the end)."""
        async with self._read() as session, session.begin():
            yield session

    async def close(self) -> None:
        """Dispose of the engine's connections."""
        await self.engine.dispose()


def open_database(url: str, *, pool_size: int = 5, null_pool: bool = False) -> Database:
    """Open the database at ``url`` (``sqlite+aiosqlite:///…`` or ``postgresql+asyncpg://…``).

    ``null_pool`` opens a connection per unit of work: what many short-lived actors against
    one PostgreSQL server want, since the server allows ~100 connections in all.
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    elif null_pool:
        kwargs["poolclass"] = NullPool
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _install_sqlite_hooks(engine)
        write_engine = engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
    else:
        write_engine = engine
    return Database(
        url=url,
        engine=engine,
        _read=async_sessionmaker(engine, expire_on_commit=False),
        _write=async_sessionmaker(write_engine, expire_on_commit=False),
    )
