"""`opendeep up`: bring the whole system up on this machine and keep it up until Ctrl-C.

In order: check the settings, migrate the database, run the first-run bootstrap, start the
simulated world for whatever is not configured (simulated PBX, Realtime stand-in), start or
join Ray, start the PbxGateway and the Supervisor, deploy the Serve application (REST API +
Gradio UI), and print the URL — and, on the first run only, the generated admin credentials.

Ctrl-C (or SIGTERM) drains (DESIGN.md §9): the Supervisor stops claiming, live calls get
``OPENDEEP_DRAIN_GRACE`` seconds to finish, the rest are ended politely; then Serve, the actors,
the simulated world and Ray stop. A second Ctrl-C skips the rest of the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from actors.options import CALL_SLOT
from db.engine import open_database
from db.migrate import upgrade
from db.repo.accounts import BootstrapResult, bootstrap_first_run
from opendeep.logging import setup_logging
from opendeep.settings import Settings, mask_url

log = logging.getLogger("opendeep.up")

SPEECH_CACHE = "cache/sim-speech"  # under the var dir: rendered once per scenario line


def describe_world(settings: Settings) -> list[str]:
    """One line per external service: real or simulated, and where."""
    pbx = (
        f"SIMULATED PBX on {settings.ami_host}:{settings.ami_port} (no Asterisk configured)"
        if settings.pbx_mode == "sim"
        else f"Asterisk over AMI at {settings.ami_host}:{settings.ami_port}"
    )
    if settings.voice_mode == "openai":
        voice = f"OpenAI Realtime, model {settings.realtime_model}"
    elif settings.realtime_base_url:
        voice = f"SIMULATED voice AI at {settings.realtime_base_url} (no OPENAI_API_KEY)"
    else:
        voice = "SIMULATED voice AI, the built-in Realtime stand-in (no OPENAI_API_KEY)"
    analysis = (
        "rules-based analysis and intake (no GEMINI_API_KEY)"
        if settings.analysis_mode == "rules"
        else f"Gemini, model {settings.gemini_model}"
    )
    cluster = f"the Ray cluster at {settings.ray_address}" if settings.ray_address else "local Ray"
    return [
        f"PBX:      {pbx}",
        f"Voice:    {voice}",
        f"Analysis: {analysis}",
        f"Database: {mask_url(settings.resolved_database_url)}",
        f"Cluster:  {cluster}, namespace '{settings.ray_namespace}'",
    ]


async def _prepare_database(settings: Settings) -> BootstrapResult:
    url = settings.resolved_database_url
    await upgrade(url)
    print("  Database migrated to the latest schema.", flush=True)
    db = open_database(url)
    try:
        return await bootstrap_first_run(db, settings)
    finally:
        await db.close()


async def _start_world(settings: Settings, stack: contextlib.AsyncExitStack) -> Settings:
    """Start the stand-ins for what is not configured; the settings that point at them."""
    pbx_sim = settings.pbx_mode == "sim"
    voice_sim = settings.voice_mode == "sim" and not settings.realtime_base_url
    if not (pbx_sim or voice_sim):
        return settings
    from ai.sim.server import RealtimeStandIn  # noqa: PLC0415 -- only the simulated world
    from ai.sim.world import SimulatedWorld  # noqa: PLC0415
    from asterisk.sim import SimulatedPbx  # noqa: PLC0415
    from asterisk.sim.scenarios import load_world  # noqa: PLC0415

    cache = settings.var_dir / SPEECH_CACHE
    secret = settings.ami_secret.get_secret_value()
    part: Any
    if pbx_sim and voice_sim:
        part = SimulatedWorld(
            host=settings.ami_host,
            ami_port=settings.ami_port,
            username=settings.ami_user,
            secret=secret,
            speech_cache=cache,
        )
    elif pbx_sim:
        part = SimulatedPbx(
            host=settings.ami_host,
            port=settings.ami_port,
            username=settings.ami_user,
            secret=secret,
            speech_cache=cache,
        )
    else:  # a real Asterisk with the simulated voice AI: the generic scripted agent
        part = RealtimeStandIn(host="127.0.0.1", world=load_world(None), speech_cache=cache)
    await part.start()
    stack.push_async_callback(part.stop)
    if not voice_sim:
        return settings
    url = part.realtime_url if pbx_sim else part.url
    print(f"  SIMULATED voice AI: the Realtime stand-in listens at {url}", flush=True)
    return settings.model_copy(update={"realtime_base_url": url})


def describe_ray(address: str | None, *, nodes: int, call_slots: int) -> list[str]:
    """What ``opendeep up`` says about Ray: where it runs, and a warning when no call can start.

    ``address`` is the cluster joined, or ``None`` for a Ray started here.
    """
    if address is None:
        lines = [f"  Ray: started locally with {call_slots} call slots."]
    else:
        lines = [
            f"  Ray: joined the cluster at {address} "
            f"({nodes} node{'s' if nodes != 1 else ''}, {call_slots} call slots)."
        ]
    if call_slots < 1:
        where = (
            "OPENDEEP_CALL_SLOTS is 0"
            if address is None
            else "no node of the cluster declares call slots"
        )
        lines.append(
            f"  WARNING: {where}, so no call can start (tasks wait with 'No free call slot'). "
            f"Give a node call slots: ray start ... --resources='{{\"{CALL_SLOT}\": 20}}'"
            + (" or set OPENDEEP_CALL_SLOTS." if address is None else ".")
        )
    return lines


def _start_ray(settings: Settings) -> None:
    import ray  # noqa: PLC0415 -- `opendeep --help` stays fast

    if settings.ray_address:
        ray.init(address=settings.ray_address, namespace=settings.ray_namespace)
        alive = [node for node in ray.nodes() if node.get("Alive")]  # type: ignore[no-untyped-call]
        resources = ray.cluster_resources()  # type: ignore[no-untyped-call]
        slots = int(resources.get(CALL_SLOT, 0))
        for line in describe_ray(settings.ray_address, nodes=len(alive), call_slots=slots):
            print(line, flush=True)
        return
    # Ray starts at most as many worker processes at once as there are CPUs; a burst of
    # due tasks needs two new actors per call, so let a few more start together.
    os.environ.setdefault("RAY_worker_maximum_startup_concurrency", "4")
    # With the simulated PBX the whole world is on this machine's loopback.
    node_ip = "127.0.0.1" if settings.pbx_mode == "sim" else None
    ray.init(
        address="local",
        namespace=settings.ray_namespace,
        resources={"call_slot": settings.call_slots},
        include_dashboard=False,
        _node_ip_address=node_ip,
    )
    for line in describe_ray(None, nodes=1, call_slots=settings.call_slots):
        print(line, flush=True)


def _start_serve(settings: Settings) -> str:
    """Deploy the Serve application (blocking: run it in a thread); its URL."""
    from ray import serve  # noqa: PLC0415

    from serve_app.deployment import APP_NAME, build_app  # noqa: PLC0415

    # Serve's own INFO lines (every route, every replica step) would bury the URL and the
    # first-run password on the console; they stay in Ray's log files.
    quiet = settings.log_level.upper() != "DEBUG"
    serve.start(
        http_options={"host": settings.http_host, "port": settings.http_port},
        logging_config={"log_level": "WARNING", "enable_access_log": False} if quiet else None,
    )
    serve.run(build_app(settings), name=APP_NAME, route_prefix="/", blocking=False)
    wildcard = {"0.0.0.0", "::"}  # noqa: S104 -- comparing, not binding: print a reachable URL
    host = "127.0.0.1" if settings.http_host in wildcard else settings.http_host
    return f"http://{host}:{settings.http_port}/"


def _stop_serve(settings: Settings) -> None:
    from ray import serve  # noqa: PLC0415

    from serve_app.deployment import APP_NAME  # noqa: PLC0415

    if settings.ray_address:
        serve.delete(APP_NAME)  # a shared cluster keeps its Serve for other applications
    else:
        serve.shutdown()  # type: ignore[no-untyped-call]  # Ray ships it unannotated


def _print_ready(url: str, boot: BootstrapResult) -> None:
    print(f"OpenDeep is up: open {url}  (API docs: {url}api/docs)", flush=True)
    if boot.password:
        print(
            f"  First run: created tenant '{boot.tenant_name}' and admin user "
            f"'{boot.username}' with password: {boot.password}\n"
            "  (printed once, here only — store it now)",
            flush=True,
        )
    print("Press Ctrl-C to stop (it lets live calls finish first).", flush=True)


def _signals(stop: asyncio.Event, hurry: asyncio.Event) -> None:
    """First Ctrl-C: drain and stop. Second: skip the rest of the drain's grace period."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            hurry.set()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
        except (NotImplementedError, RuntimeError) as exc:
            # No signal handlers on this platform's loop, or not the main thread (run_up
            # driven from a thread): only ``stop`` stops it, and a signal does not drain.
            log.warning("%s will not drain the calls (%s: %s)", sig.name, type(exc).__name__, exc)


async def run_up(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """Bring the system up; return the process exit code once stopped."""
    setup_logging(settings.log_level)
    stop, hurry = stop or asyncio.Event(), asyncio.Event()
    _signals(stop, hurry)
    print("OpenDeep is starting:", flush=True)
    for line in describe_world(settings):
        print(f"  {line}", flush=True)
    boot = await _prepare_database(settings)
    import ray  # noqa: PLC0415

    from serve_app.system import drain, start_system_actors, stop_system_actors  # noqa: PLC0415

    async with contextlib.AsyncExitStack() as stack:
        _start_ray(settings)  # blocks a few seconds; nothing else runs yet
        stack.callback(ray.shutdown)
        settings = await _start_world(settings, stack)
        actors = await start_system_actors(settings)
        print("  PbxGateway and Supervisor running.", flush=True)
        stack.push_async_callback(stop_system_actors, actors)
        url = await asyncio.to_thread(_start_serve, settings)
        stack.push_async_callback(asyncio.to_thread, _stop_serve, settings)
        _print_ready(url, boot)
        if on_ready is not None:
            on_ready(url)
        await stop.wait()
        print("Stopping OpenDeep: no new calls are started.", flush=True)
        db = open_database(settings.resolved_database_url, pool_size=1)
        try:
            await drain(actors, db, settings.drain_grace, hurry=hurry)
        finally:
            await db.close()
    print("Stopped.", flush=True)
    return 0
