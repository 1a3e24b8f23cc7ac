"""Alembic environment of OpenDeep: SQLite (aiosqlite) and PostgreSQL (asyncpg).

Run from Python (:mod:`db.migrate`), it is handed an open connection in
``config.attributes["connection"]`` and uses it. Run from the ``alembic`` CLI, it opens an
async engine on the URL given with ``-x url=…``, else ``sqlalchemy.url``, else the
``OPENDEEP_DATABASE_URL`` setting.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from db.models import Base

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and "connection" not in config.attributes:
    # Only the CLI configures logging from the ini; the application keeps its own setup.
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    given = context.get_x_argument(as_dictionary=True).get("url")
    if given:
        return given
    configured = config.get_main_option("sqlalchemy.url")
    if configured:
        return configured
    from opendeep.settings import get_settings  # noqa: PLC0415 -- only the CLI path needs it

    return get_settings().resolved_database_url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=True,
    )


def _run_with(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_with)
            await connection.commit()
    finally:
        await engine.dispose()


def _run_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=_url().startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
elif (shared := config.attributes.get("connection")) is not None:
    _run_with(shared)
else:
    asyncio.run(_run_async(_url()))
