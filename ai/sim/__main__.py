"""Run the whole simulated world: ``python -m ai.sim [--host] [--ami-port] [--realtime-port]``.

The simulated PBX listens where OpenDeep's AMI settings point and the Realtime stand-in on its own
port; point OpenDeep at it with ``OPENDEEP_REALTIME_BASE_URL=ws://HOST:PORT/v1``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from ai.sim.world import SimulatedWorld
from asterisk.sim.scenarios import DEFAULT_WORLD_PATH, load_world
from opendeep.logging import setup_logging
from opendeep.settings import BUILTIN_AMI_HOSTS, SIM_AMI_SECRET, get_settings

log = logging.getLogger("ai.sim")

DEFAULT_REALTIME_PORT = 8765


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; defaults come from OpenDeep's settings."""
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m ai.sim", description=__doc__)
    parser.add_argument("--host", default=settings.ami_host, help="listen host for both servers")
    parser.add_argument("--ami-port", type=int, default=settings.ami_port, help="AMI port")
    parser.add_argument(
        "--realtime-port",
        type=int,
        default=DEFAULT_REALTIME_PORT,
        help=f"Realtime websocket port (default {DEFAULT_REALTIME_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--scenarios",
        type=Path,
        default=None,
        help=f"scenario file (default: asterisk/sim/{DEFAULT_WORLD_PATH.name})",
    )
    parser.add_argument(
        "--speech-cache",
        type=Path,
        default=settings.var_dir / "cache" / "sim-speech",
        help="where rendered speech is cached",
    )
    parser.add_argument("--log-level", default=settings.log_level)
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Run until SIGINT/SIGTERM."""
    settings = get_settings()
    secret = settings.ami_secret.get_secret_value()
    if args.host not in BUILTIN_AMI_HOSTS and secret == SIM_AMI_SECRET:
        raise SystemExit(
            "refusing to listen beyond loopback with the public default AMI secret; "
            "set OPENDEEP_AMI_SECRET"
        )
    world = SimulatedWorld(
        host=args.host,
        ami_port=args.ami_port,
        realtime_port=args.realtime_port,
        username=settings.ami_user,
        secret=secret,
        world=load_world(args.scenarios),
        speech_cache=args.speech_cache,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on every platform
            loop.add_signal_handler(sig, stop.set)
    await world.start()
    log.warning(
        "SIMULATED WORLD: AMI on %s:%d (%d scenarios), Realtime stand-in at %s, speech: %s",
        world.pbx.host,
        world.pbx.ami_port,
        len(world.world.scenario),
        world.realtime_url,
        world.realtime.speech_engine,
    )
    try:
        await stop.wait()
    finally:
        await world.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    setup_logging(args.log_level)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
