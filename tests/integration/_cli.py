"""Running the `opendeep` command line as a real process against a database of the test's own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

OPENDEEP = [sys.executable, "-m", "serve_app.cli"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cli_env(tmp_path: Path) -> dict[str, str]:
    """An environment without the machine's OpenDeep settings or provider keys, var in tmp."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENDEEP_")}
    clean.pop("OPENAI_API_KEY", None)
    clean.pop("GEMINI_API_KEY", None)
    clean.update(
        OPENDEEP_VAR_DIR=str(tmp_path / "var"),
        OPENDEEP_AMI_PORT=str(free_port()),
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    return clean


def database_url(env: dict[str, str]) -> str:
    """The SQLite URL the command line uses in ``env``."""
    return f"sqlite+aiosqlite:///{Path(env['OPENDEEP_VAR_DIR'], 'opendeep.db').as_posix()}"


def run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``opendeep *args`` to completion and capture what it printed."""
    return subprocess.run(
        [*OPENDEEP, *args],
        check=False,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
