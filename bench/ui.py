"""How fast the web page is: the Dashboard with 1,000 tasks, and a question reaching the page.

Prints figures; never passes or fails on time (DESIGN.md §8). It migrates a temporary SQLite
database, creates one tenant and user, bulk-loads the tenant's tasks (every status in turn, one
creation a minute apart) and one answered call, then serves the real ingress (API + Gradio,
``serve_app.ingress.build_ingress``) with uvicorn in its own process on a free 127.0.0.1 port,
and drives the page with Playwright and Debian's headless Chromium:

1. Dashboard load — in fresh browser contexts (empty cache, no cookies): open the page, log in
   through Gradio's form (the page reloads), click the Dashboard tab, and time until the task
   table holds its rows and the count says the total; from the tab click and from the
   navigation start of the logged-in page.
2. Question → visible — with the Questions tab open, commit a PENDING question (with its
   USER_INFO_REQUESTED event, as the call does) and time from the commit returning to the
   question's text in ``#od-question-list``, and to the header alert; each question is then
   answered and the next one asked after a random 0–1 s pause.

Times are taken in the page (a MutationObserver notes when the DOM first holds the thing) and
put on the benchmark's clock with a measured offset, so Playwright's own polling adds nothing.

    python bench/ui.py [--tasks 1000] [--samples 20] [--loads 10]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._rows import STATUSES, free_port, task_row
from db.engine import Database, open_database
from db.messages import CallMessageKind, HitlRequested
from db.migrate import upgrade
from db.models import Call, Task
from db.repo import accounts, calls, hitl
from db.states import CallStatus, TaskStatus
from opendeep.settings import Settings
from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS

T = TypeVar("T")

USERNAME = "bench"
PASSWORD = "correct horse battery staple"  # a throw-away user of a temporary database
LIST_LIMIT = 100  # the Dashboard shows the newest 100 tasks (gradio_ui.dashboard.LIST_LIMIT)
WAIT_MS = 60_000

WATCH_JS = """
(() => {
  const now = () => performance.timeOrigin + performance.now();
  const od = window.__od = { nav: performance.timeOrigin, want: null };
  const seen = (key) => {
    if (od[key]) return;
    od[key] = now();
    requestAnimationFrame(() => { od[key + 'Frame'] = now(); });
  };
  const text = (sel) => (document.querySelector(sel) || {}).textContent || '';
  const check = () => {
    if (document.querySelector('#od-tab-dashboard-button')) seen('ready');
    if (document.querySelectorAll('#od-task-table tbody tr').length >= __ROWS__
        && text('#od-task-count').includes(__COUNT__)) seen('rows');
    if (od.want) {
      if (text('#od-question-list').includes(od.want)) seen('q');
      if (text('#od-questions-alert').includes('waiting')) seen('alert');
    }
  };
  window.__odWant = (want) => {
    for (const k of ['q', 'qFrame', 'alert', 'alertFrame']) delete od[k];
    od.want = want;
    check();
  };
  document.addEventListener('click', (e) => {
    if (e.target instanceof Element && e.target.closest('#od-tab-dashboard-button')) {
      od.click = od.click || now();
    }
  }, true);
  new MutationObserver(check).observe(document, {
    subtree: true, childList: true, characterData: true,
  });
})();
"""
"""Runs in every document before Gradio's scripts; notes when things first appear (epoch ms)."""


# -- the database side ----------------------------------------------------------------------


class LoopThread:
    """An asyncio loop in a thread, so the database is usable next to Playwright's sync API."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=120)

    def close(self) -> None:
        """Stop the loop and its thread."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@dataclass(frozen=True, slots=True)
class Seeded:
    """The tenant, and the IN_PROGRESS task whose live call asks the questions."""

    tenant_id: uuid.UUID
    task_id: uuid.UUID
    call_id: uuid.UUID


async def seed(db: Database, url: str, count: int) -> Seeded:
    """Migrate; a tenant, its user, ``count`` tasks and one answered call of an IN_PROGRESS one."""
    await upgrade(url)
    tenant = await accounts.create_tenant(db, name="bench", settings=Settings(_env_file=None))
    await accounts.create_user(db, tenant_id=tenant.id, username=USERNAME, password=PASSWORD)
    now = dt.datetime.now(dt.UTC)
    rows = [task_row(i, tenant.id, now, always_open=True) for i in range(count)]
    live = next(r for r in rows if r["status"] is TaskStatus.IN_PROGRESS)
    call = Call(
        id=uuid.uuid4(),
        task_id=live["id"],
        tenant_id=tenant.id,
        destination=live["phone"],
        attempt_number=1,
        status=CallStatus.ANSWERED,
        created_at=now,
        transcript=[{"speaker": "agent", "text": "Hello", "start_ms": 0, "end_ms": 500}],
        tool_calls=[],
    )
    async with db.write() as session:
        await session.execute(sa.insert(Task), rows)
    async with db.write() as session:
        session.add(call)
    return Seeded(tenant.id, live["id"], call.id)


async def ask(
    db: Database, seeded: Seeded, question: str, seq: int
) -> tuple[uuid.UUID, float, float]:
    """Commit a PENDING question as a call's message ``seq`` (the path a live call takes);
    (id, commit start, commit end) in epoch ms."""
    request_id = uuid.uuid4()
    started = time.time() * 1000
    asked = HitlRequested(
        request_id=request_id,
        question=question,
        recipient_message="One moment please",
        timeout_seconds=600.0,
        at=dt.datetime.now(dt.UTC),
    )
    await calls.apply_call_event(
        db,
        call_id=seeded.call_id,
        seq=seq,
        kind=CallMessageKind.HITL_REQUESTED,
        payload=asked,
        now=asked.at,
    )
    return request_id, started, time.time() * 1000


# -- the server process ---------------------------------------------------------------------


def serve(url: str, port: int, var_dir: str) -> None:
    """The server process: the ingress (API + Gradio) on ``url`` behind uvicorn, no Ray."""
    from serve_app.ingress import build_ingress  # noqa: PLC0415 -- only the server needs it
    from serve_app.services import NoNudger, Services  # noqa: PLC0415

    settings = Settings(_env_file=None, var_dir=Path(var_dir), analysis="rules")
    app = build_ingress(Services(open_database(url), settings, NoNudger()))
    asyncio.run(_serve(app, port))


def _stop_event_streams(app: Any) -> None:
    """End Gradio's heartbeat streams, which otherwise hold uvicorn's graceful shutdown."""
    for route in app.routes:
        stop = getattr(getattr(route, "app", None), "stop_event", None)
        if stop is not None:
            stop.set()


async def _serve(app: Any, port: int) -> None:
    import uvicorn  # noqa: PLC0415 -- only the server process needs it

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)

    async def release_on_exit() -> None:
        # uvicorn's SIGTERM handler only sets this flag: no event to wait on.
        while not server.should_exit:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        _stop_event_streams(app)

    releaser = asyncio.create_task(release_on_exit())
    try:
        await server.serve()
    finally:
        releaser.cancel()


def _wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server process exited with {server.returncode}")
        try:
            if httpx.get(f"{url}healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not come up")


# -- the browser side -----------------------------------------------------------------------


def _new_page(browser: Any, tasks: int) -> Any:
    """A page in a fresh context (no cache, no cookies) with the watcher installed."""
    rows = min(tasks, LIST_LIMIT)
    script = WATCH_JS.replace("__ROWS__", str(rows)).replace("__COUNT__", repr(f"{tasks:,} task"))
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(script)
    return context.new_page()


def _log_in(page: Any, url: str) -> None:
    """Gradio's login form; on success the page reloads into the app."""
    page.goto(url)
    page.get_by_label(re.compile("username", re.I)).fill(USERNAME)
    page.get_by_label(re.compile("password", re.I)).fill(PASSWORD)
    page.get_by_role("button", name=re.compile("log ?in", re.I)).click()
    page.locator("#od-tab-dashboard-button").wait_for(timeout=WAIT_MS)


def _marks(page: Any) -> dict[str, float]:
    found: dict[str, Any] = page.evaluate("() => window.__od")
    return {k: float(v) for k, v in found.items() if isinstance(v, int | float)}


@dataclass(frozen=True, slots=True)
class Load:
    """One Dashboard load, ms: tab click → rows, navigation → rows, navigation → tabs ready."""

    click_to_rows: float
    nav_to_rows: float
    nav_to_ready: float
    frame_lag: float


@dataclass(frozen=True, slots=True)
class Rig:
    """What the timed steps drive: the browser, the page's URL, the database and its rows."""

    browser: Any
    url: str
    tasks: int
    loop: LoopThread
    db: Database
    seeded: Seeded


def dashboard_load(rig: Rig) -> Load:
    """Log in in a fresh context, open the Dashboard, time until its rows are there."""
    page = _new_page(rig.browser, rig.tasks)
    try:
        _log_in(page, rig.url)
        page.locator("#od-tab-dashboard-button").click()
        page.wait_for_function("() => window.__od.rowsFrame", timeout=WAIT_MS)
        m = _marks(page)
        return Load(
            m["rows"] - m["click"],
            m["rows"] - m["nav"],
            m["ready"] - m["nav"],
            m["rowsFrame"] - m["rows"],
        )
    finally:
        page.context.close()


def _clock_offset(page: Any) -> tuple[float, float]:
    """(page clock − this clock, the round trip it was measured within), ms; best of 20."""
    best = (0.0, math.inf)
    for _ in range(20):
        before = time.time() * 1000
        there = float(page.evaluate("() => performance.timeOrigin + performance.now()"))
        after = time.time() * 1000
        if after - before < best[1]:
            best = (there - (before + after) / 2, after - before)
    return best


@dataclass(frozen=True, slots=True)
class Seen:
    """One question, ms after its commit returned: in the list, in the header alert."""

    in_list: float
    in_alert: float
    frame_lag: float
    commit: float


def _open_questions(browser: Any, url: str, tasks: int) -> Any:
    page = _new_page(browser, tasks)
    _log_in(page, url)
    page.locator("#od-tab-questions-button").click()
    page.locator("#od-question-list").get_by_text("No open questions").wait_for(timeout=WAIT_MS)
    return page


def question_samples(rig: Rig, n: int) -> tuple[list[Seen], tuple[float, float]]:
    """``n`` questions asked and answered with the Questions tab open; and the clock offset."""
    loop, db, seeded = rig.loop, rig.db, rig.seeded
    page = _open_questions(rig.browser, rig.url, rig.tasks)
    try:
        offset, rtt = _clock_offset(page)
        seen: list[Seen] = []
        for i in range(n):
            text = f"Bench question {i} {uuid.uuid4().hex[:10]}"
            page.evaluate("(want) => window.__odWant(want)", text)
            request_id, started, committed = loop.run(ask(db, seeded, text, seq=i + 1))
            page.wait_for_function("() => window.__od.qFrame && window.__od.alert", timeout=WAIT_MS)
            m = _marks(page)
            seen.append(
                Seen(
                    m["q"] - offset - committed,
                    m["alert"] - offset - committed,
                    m["qFrame"] - m["q"],
                    committed - started,
                )
            )
            loop.run(
                hitl.answer_question(db, seeded.tenant_id, request_id, "ok", answered_by="bench")
            )
            page.wait_for_function(
                "() => !(document.querySelector('#od-questions-alert')?.textContent || '')"
                ".includes('waiting')",
                timeout=WAIT_MS,
            )
            time.sleep(random.uniform(0, 1))
        return seen, (offset, rtt)
    finally:
        page.context.close()


# -- figures --------------------------------------------------------------------------------


def _pct(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def _line(what: str, values: list[float]) -> str:
    o = sorted(values)
    return f"  {what:<44} {len(o):>4} {_pct(o, 0.5):>8.0f} {_pct(o, 0.95):>8.0f} {o[-1]:>8.0f}"


def _head() -> str:
    return f"  {'':<44} {'n':>4} {'p50':>8} {'p95':>8} {'max':>8}"


def report_loads(warm_up: Load, loads: list[Load], tasks: int) -> None:
    """Print the Dashboard figures."""
    rows = min(tasks, LIST_LIMIT)
    print(
        f"\n(1) Dashboard with {tasks:,} tasks ({rows} newest rows shown), "
        f"{len(loads)} fresh browser contexts; ms"
    )
    print(_head())
    print(_line("tab click -> rows + count shown", [x.click_to_rows for x in loads]))
    print(_line("navigation start -> rows + count shown", [x.nav_to_rows for x in loads]))
    print(_line("navigation start -> tabs ready (to click)", [x.nav_to_ready for x in loads]))
    print(_line("rows in the DOM -> next animation frame", [x.frame_lag for x in loads]))
    print(
        f"  not counted, first load after start: click -> rows {warm_up.click_to_rows:.0f}, "
        f"navigation -> rows {warm_up.nav_to_rows:.0f}"
    )


def report_questions(seen: list[Seen], clock: tuple[float, float]) -> None:
    """Print the question → visible figures."""
    print(
        f"\n(2) Question committed -> visible, Questions tab open, {len(seen)} questions "
        "0-1 s apart; ms (target <= 1000)"
    )
    print(_head())
    print(_line("commit -> text in #od-question-list", [s.in_list for s in seen]))
    print(_line("commit -> #od-questions-alert says waiting", [s.in_alert for s in seen]))
    print(_line("text in the DOM -> next animation frame", [s.frame_lag for s in seen]))
    print(_line("the commit itself (begin -> committed)", [s.commit for s in seen]))
    every = " ".join(f"{s.in_list:.0f}" for s in sorted(seen, key=lambda s: s.in_list))
    print(f"  every commit -> list, sorted: {every}")
    print(f"  page clock offset {clock[0]:+.1f} ms, measured within a {clock[1]:.1f} ms round trip")


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(args: argparse.Namespace, tmp: str) -> None:
    """Seed, start the server, drive the browser, print."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 -- slow import

    url = f"sqlite+aiosqlite:///{tmp}/ui.db"
    loop = LoopThread()
    db = open_database(url)
    server: subprocess.Popen[bytes] | None = None
    try:
        seeded = loop.run(seed(db, url, args.tasks))
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        command = [sys.executable, __file__, "--serve", url, "--port", str(port), "--var-dir", tmp]
        server = subprocess.Popen(command, env=env)
        page_url = f"http://127.0.0.1:{port}/"
        _wait_ready(page_url, server)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            rig = Rig(browser, page_url, args.tasks, loop, db, seeded)
            try:
                warm_up = dashboard_load(rig)
                loads = [dashboard_load(rig) for _ in range(args.loads)]
                report_loads(warm_up, loads, args.tasks)
                seen, clock = question_samples(rig, args.samples)
                report_questions(seen, clock)
            finally:
                browser.close()
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)
        loop.run(db.close())
        loop.close()


def main() -> None:
    """Parse the command line; run the benchmark (or, with ``--serve``, the server process)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000)
    parser.add_argument("--samples", type=int, default=20, help="questions asked")
    parser.add_argument("--loads", type=int, default=10, help="Dashboard loads timed")
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--var-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tasks < len(STATUSES) or args.samples < 1 or args.loads < 1:
        parser.error(f"--tasks must be at least {len(STATUSES)}; --samples and --loads at least 1")
    if args.serve:
        serve(args.serve, args.port, args.var_dir)
        return
    if CHROMIUM is None:
        sys.exit("bench/ui.py needs Debian's chromium (apt-get install chromium)")
    print(
        "The web page (Gradio behind the real ingress, uvicorn, one process, SQLite) in "
        f"headless Chromium; {os.cpu_count()} CPUs; load average at start {_loadavg()}"
    )
    with tempfile.TemporaryDirectory(prefix="opendeep-bench-ui-") as tmp:
        run(args, tmp)
    print(f"\nload average at end {_loadavg()}")


if __name__ == "__main__":
    main()
