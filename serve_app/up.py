"""`opendeep up`: bring the system up on this machine and keep it up until Ctrl-C.

Today it checks the settings, migrates the database, runs the first-run bootstrap, starts
the simulated PBX when no real Asterisk is configured, says plainly which parts are
simulated and which it does not start yet, and exits cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from db.engine import open_database
from db.migrate import upgrade
from db.repo.accounts import bootstrap_first_run
from opendeep.settings import Settings, mask_url

log = logging.getLogger("opendeep.up")

NOT_STARTED_YET = (
    "Ray with the PbxGateway, Supervisor and TaskActors: tasks are stored, not yet dialled",
    "the Realtime stand-in for live calls (run `python -m ai.sim` to try the simulated world)",
    "the REST API, the Gradio chat, dashboard and questions box",
)

Stopper = Callable[[], Awaitable[None]]


def describe_world(settings: Settings) -> list[str]:
    """One line per external service: real or simulated, and where."""
    pbx = (
        f"SIMULATED PBX on {settings.ami_host}:{settings.ami_port} (no Asterisk configured)"
        if settings.pbx_mode == "sim"
        else f"Asterisk over AMI at {settings.ami_host}:{settings.ami_port}"
    )
    voice = (
        "SIMULATED voice AI (no OPENAI_API_KEY)"
        if settings.voice_mode == "sim"
        else f"OpenAI Realtime, model {settings.realtime_model}"
    )
    analysis = (
        "rules-based analysis and intake (no GEMINI_API_KEY)"
        if settings.analysis_mode == "rules"
        else f"Gemini, model {settings.gemini_model}"
    )
    return [
        f"PBX:      {pbx}",
        f"Voice:    {voice}",
        f"Analysis: {analysis}",
        f"Database: {mask_url(settings.resolved_database_url)}",
    ]


async def _start_simulated_pbx(settings: Settings) -> Stopper | None:
    """Start the in-process simulated PBX when no real Asterisk is configured."""
    if settings.pbx_mode != "sim":
        return None
    from asterisk.sim import SimulatedPbx  # noqa: PLC0415 -- only the simulated world needs it

    pbx = SimulatedPbx(
        host=settings.ami_host,
        port=settings.ami_port,
        username=settings.ami_user,
        secret=settings.ami_secret.get_secret_value(),
    )
    await pbx.start()
    return pbx.stop


async def run_up(settings: Settings, *, stop: asyncio.Event | None = None) -> int:
    """Bring the system up; return the process exit code once stopped."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    print("OpenDeep is starting:", flush=True)
    for line in describe_world(settings):
        print(f"  {line}", flush=True)
    url = settings.resolved_database_url
    await upgrade(url)
    print("  Database migrated to the latest schema.", flush=True)
    db = open_database(url)
    try:
        boot = await bootstrap_first_run(db, settings)
    finally:
        await db.close()
    if boot.password:
        print(
            f"  First run: created tenant '{boot.tenant_name}' and admin user "
            f"'{boot.username}' with password: {boot.password}\n"
            "  (printed once, here only — store it now)",
            flush=True,
        )
    stoppers: list[Stopper] = []
    if (stop_pbx := await _start_simulated_pbx(settings)) is not None:
        stoppers.append(stop_pbx)
    print("  Not started by `opendeep up` yet (coming in the next releases):", flush=True)
    for part in NOT_STARTED_YET:
        print(f"    - {part}", flush=True)
    print("OpenDeep is up. Press Ctrl-C to stop.", flush=True)
    try:
        await stop.wait()
    finally:
        print("Stopping OpenDeep…", flush=True)
        for stopper in reversed(stoppers):
            await stopper()
        print("Stopped.", flush=True)
    return 0
