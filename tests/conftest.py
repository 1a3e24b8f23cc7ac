"""Suite-wide pytest rules: under CI=true a skipped test is a failure."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest

from db.engine import Database, open_database
from db.migrate import upgrade

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[Any]:
    """Turn skips into failures under CI: CI has every tool, so a skip hides a missing install."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which counts as a failure: {reason}"


# The PostgreSQL server fixtures live in tests/pg.py; importing them here shares them suite-wide.
from tests.pg import pg_url, postgres_server  # noqa: E402, F401


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """A migrated, empty database on SQLite and on a real PostgreSQL 15, in turn."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'opendeep.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    async with _migrated(url) as db:
        yield db


@pytest.fixture
async def sqlite_db(tmp_path: Any) -> Any:
    """A migrated, empty SQLite database, for tests where PostgreSQL adds nothing."""
    async with _migrated(f"sqlite+aiosqlite:///{tmp_path / 'opendeep.db'}") as db:
        yield db


@contextlib.asynccontextmanager
async def _migrated(url: str) -> AsyncIterator[Database]:
    await upgrade(url)
    db = open_database(url)
    try:
        yield db
    finally:
        await db.close()
