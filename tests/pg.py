"""A real PostgreSQL server for the test session (DESIGN.md §9).

PostgreSQL refuses to run as root, so when the tests run as root the server is initialised
and started as the ``postgres`` OS user. Each test gets a database of its own, created from
an empty template and dropped afterwards. Without server binaries the tests that need it
skip with the reason (and under CI=true a skip is a failure, see conftest.py).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_USER = "postgres"


def _find_bindir() -> Path | None:
    if env := os.environ.get("OPENDEEP_TEST_PG_BINDIR"):
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_pg_user(args: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_USER, "--", *args]
    return args


@dataclass(slots=True)
class PostgresServer:
    """A running throw-away PostgreSQL server on 127.0.0.1."""

    bindir: Path
    datadir: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        """An asyncpg SQLAlchemy URL for ``database`` on this server."""
        return f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL statement with psql and return its output."""
        out = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                PG_USER,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout

    def stop(self) -> None:
        """Stop the server and remove its data directory."""
        subprocess.run(
            _as_pg_user(
                [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "stop"]
            ),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """Initialise and start a PostgreSQL server as the postgres user; raise if impossible."""
    bindir = _find_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found")
    root = Path(tempfile.mkdtemp(prefix="opendeep-pg-"))
    datadir = root / "data"
    datadir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, PG_USER)
        shutil.chown(datadir, PG_USER)
    port = _free_port()
    subprocess.run(
        _as_pg_user(
            [str(bindir / "initdb"), "-D", str(datadir), "-A", "trust", "-U", PG_USER, "-E", "UTF8"]
        ),
        check=True,
        capture_output=True,
    )
    # fsync off: a throw-away test server needs speed, not durability.
    options = (
        f"-p {port} -h 127.0.0.1 -k {root} "
        "-c fsync=off -c full_page_writes=off -c max_connections=200"
    )
    subprocess.run(
        _as_pg_user(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(datadir),
                "-o",
                options,
                "-l",
                str(root / "log"),
                "-w",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    return PostgresServer(bindir=bindir, datadir=datadir, port=port)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session."""
    try:
        server = start_postgres()
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        detail = (
            exc.stderr.decode(errors="replace")
            if isinstance(exc, subprocess.CalledProcessError) and exc.stderr
            else ""
        )
        pytest.skip(f"PostgreSQL server not available: {exc} {detail}".strip())
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def fresh_pg_database(server: PostgresServer) -> Iterator[str]:
    """Create an empty database, yield its URL, drop it afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    server.psql(f"CREATE DATABASE {name}")
    try:
        yield server.url(name)
    finally:
        server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of an empty PostgreSQL database of this test's own."""
    with fresh_pg_database(postgres_server) as url:
        yield url
