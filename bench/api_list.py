"""How fast the REST API lists tasks: GET /api/tasks?limit=50 with 10,000 tasks in the tenant.

Prints figures; never passes or fails on time (DESIGN.md §8). For each backend it bulk-loads
one tenant's tasks (all statuses, one creation a minute apart), starts the API in its own
process behind uvicorn on a free 127.0.0.1 port, and times requests one after another with
httpx over real HTTP (authentication, the page query, the count, JSON encoding included):
the first page, the same page filtered by status, and the last page (a deep offset).

    python bench/api_list.py [--tasks 10000] [--requests 500] [--pg-url URL | --start-pg]

``--pg-url`` takes an empty, migratable PostgreSQL database (postgresql+asyncpg://…);
``--start-pg`` starts a throw-away server the way the tests do.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._rows import free_port, task_row
from db.engine import Database, open_database
from db.migrate import upgrade
from db.models import Task
from db.repo import accounts
from opendeep.settings import Settings

CHUNK = 5_000
WARMUP = 20


async def seed(url: str, count: int) -> str:
    """Migrate, create a tenant with ``count`` tasks and an API key; the key."""
    await upgrade(url)
    db = open_database(url)
    try:
        settings = Settings(_env_file=None)
        tenant = await accounts.create_tenant(db, name="bench", settings=settings)
        key, _ = await accounts.create_api_key(db, tenant_id=tenant.id, name="bench")
        now = dt.datetime.now(dt.UTC)
        for start in range(0, count, CHUNK):
            rows = [task_row(i, tenant.id, now) for i in range(start, min(start + CHUNK, count))]
            async with db.write() as session:
                await session.execute(sa.insert(Task), rows)
        await _analyze(db)
        return key
    finally:
        await db.close()


async def _analyze(db: Database) -> None:
    async with db.engine.connect() as conn:
        await conn.execute(sa.text("ANALYZE"))
        await conn.commit()


def serve(url: str, port: int) -> None:
    """The server process: the API on ``url`` behind uvicorn (no Ray, no nudges)."""
    import uvicorn  # noqa: PLC0415 -- only the server process needs it

    from serve_app.api import build_api  # noqa: PLC0415
    from serve_app.services import NoNudger, Services  # noqa: PLC0415

    settings = Settings(_env_file=None)
    app = build_api(Services(db=open_database(url), settings=settings, nudger=NoNudger()))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def _wait_ready(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the API server did not come up")


async def time_requests(client: httpx.AsyncClient, path: str, key: str, n: int) -> list[float]:
    """``n`` sequential GETs of ``path`` after a warm-up; milliseconds each."""
    headers = {"Authorization": f"Bearer {key}"}
    times: list[float] = []
    for i in range(WARMUP + n):
        start = time.perf_counter()
        response = await client.get(path, headers=headers)
        elapsed = (time.perf_counter() - start) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {response.status_code} {response.text[:200]}")
        if i >= WARMUP:
            times.append(elapsed)
    return times


def _line(backend: str, what: str, times: list[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"{backend:<9} {what:<28} {len(times):>5} {statistics.median(ordered):>8.2f} "
        f"{p99:>8.2f} {ordered[-1]:>8.2f}"
    )


async def _time_all(backend: str, port: int, key: str, tasks: int, requests: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        await _wait_ready(client)
        last = max(0, tasks - 50)
        for what, path in (
            ("first page (limit 50)", "/api/tasks?limit=50"),
            ("status=PENDING, limit 50", "/api/tasks?limit=50&status=PENDING"),
            (f"last page (offset {last:,})", f"/api/tasks?limit=50&offset={last}"),
        ):
            times = await time_requests(client, path, key, requests)
            print(_line(backend, what, times), flush=True)


def measure(backend: str, url: str, tasks: int, requests: int) -> None:
    """Seed, start the server process, time, print."""
    key = asyncio.run(seed(url, tasks))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", url, "--port", str(port)], env=env
    )
    try:
        asyncio.run(_time_all(backend, port, key, tasks, requests))
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--pg-url", default=None, help="an empty PostgreSQL database")
    parser.add_argument("--start-pg", action="store_true", help="start a throw-away PostgreSQL")
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    print(
        f"GET /api/tasks over HTTP (uvicorn, one process), {args.tasks:,} tasks in the tenant, "
        f"{args.requests} sequential requests after {WARMUP} warm-up; times in ms"
    )
    print(f"{'backend':<9} {'request':<28} {'n':>5} {'p50':>8} {'p99':>8} {'max':>8}")
    with tempfile.TemporaryDirectory(prefix="opendeep-bench-") as tmp:
        sqlite_url = f"sqlite+aiosqlite:///{tmp}/api.db"
        measure("sqlite", sqlite_url, args.tasks, args.requests)
    if args.pg_url:
        measure("postgres", args.pg_url, args.tasks, args.requests)
    elif args.start_pg:
        from tests.pg import start_postgres  # noqa: PLC0415 -- only when PostgreSQL is asked for

        pg = start_postgres()
        try:
            pg.psql("CREATE DATABASE bench_api")
            measure("postgres", pg.url("bench_api"), args.tasks, args.requests)
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
