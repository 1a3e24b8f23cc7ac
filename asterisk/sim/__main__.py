"""Run the simulated PBX on its own: ``python -m asterisk.sim [--host H] [--ami-port P] …``.

It listens where OpenDeep's AMI settings point (``OPENDEEP_AMI_HOST``/``PORT``/``USER``/``SECRET``)
so the client code is the same as against a real Asterisk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from asterisk.sim.pbx import SimulatedPbx
from asterisk.sim.scenarios import DEFAULT_WORLD_PATH, World, load_world
from opendeep.settings import BUILTIN_AMI_HOSTS, SIM_AMI_SECRET, get_settings

log = logging.getLogger("asterisk.sim")


def scenario_table(world: World) -> str:
    """``number  scenario  behavior  description`` lines, one per scenario."""
    rows = [("number", "scenario", "behavior", "description")]
    rows += [(s.number, s.name, s.callee.behavior, s.description) for s in world.scenario]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; defaults come from OpenDeep's settings."""
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m asterisk.sim", description=__doc__)
    parser.add_argument("--host", default=settings.ami_host, help="AMI listen host")
    parser.add_argument("--ami-port", type=int, default=settings.ami_port, help="AMI port")
    parser.add_argument(
        "--scenarios",
        type=Path,
        default=None,
        help=f"scenario file (default: {DEFAULT_WORLD_PATH.name})",
    )
    parser.add_argument(
        "--list-scenarios",
        action="store_true",
        help="print number → scenario → description and exit",
    )
    parser.add_argument(
        "--speech-cache",
        type=Path,
        default=settings.var_dir / "cache" / "sim-speech",
        help="where rendered callee speech is cached",
    )
    parser.add_argument("--log-level", default=settings.log_level)
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace, world: World) -> None:
    """Run until SIGINT/SIGTERM."""
    settings = get_settings()
    secret = settings.ami_secret.get_secret_value()
    if args.host not in BUILTIN_AMI_HOSTS and secret == SIM_AMI_SECRET:
        raise SystemExit(
            "refusing to listen beyond loopback with the public default AMI secret; "
            "set OPENDEEP_AMI_SECRET"
        )
    pbx = SimulatedPbx(
        host=args.host,
        port=args.ami_port,
        username=settings.ami_user,
        secret=secret,
        world=world,
        speech_cache=args.speech_cache,
    )
    await pbx.start()
    print(
        f"simulated PBX: AMI on {pbx.host}:{pbx.ami_port} as {settings.ami_user!r}, "
        f"{len(world.scenario)} scenarios, speech: {pbx.speech_engine} (Ctrl-C stops)"
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on every platform
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await pbx.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    world = load_world(args.scenarios)
    if args.list_scenarios:
        print(scenario_table(world))
        return 0
    asyncio.run(serve(args, world))
    return 0


if __name__ == "__main__":
    sys.exit(main())
