"""A real `opendeep up` process for the tests that use the whole product (e2e, browser).

It runs exactly what `make run` runs, on ports and a var dir of the test's own, and reads its
console: the URL, the first-run admin credentials, and the shutdown lines.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration._cli import OPENDEEP, cli_env, free_port, run

READY = "OpenDeep is up: open "
PASSWORD = re.compile(r"admin user '(?P<user>[^']+)' with password: (?P<password>\S+)")


@dataclass
class UpProcess:
    """`opendeep up` running in the background; its console lines as they come."""

    env: dict[str, str]
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    url: str = ""
    username: str = ""
    password: str = ""
    ray_tmp: str = ""

    @classmethod
    def start(cls, tmp: Path, within: float = 180.0, **settings: str) -> UpProcess:
        """Start it and wait until it says it is up (raises with its console if it does not)."""
        env = cli_env(tmp)
        env.update(
            OPENDEEP_HTTP_PORT=str(free_port()),
            OPENDEEP_RAY_NAMESPACE=f"up-{free_port()}",
            OPENDEEP_DRAIN_GRACE="5",
            OPENDEEP_CALL_SLOTS="8",
            # Short: Ray's socket paths under its temp dir are limited to ~107 characters.
            RAY_TMPDIR=tempfile.mkdtemp(prefix="odup", dir="/tmp"),
        )
        env.update(settings)
        proc = subprocess.Popen(
            [*OPENDEEP, "up"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        up = cls(env, proc, ray_tmp=env["RAY_TMPDIR"])
        threading.Thread(target=up._read, daemon=True).start()
        up._wait_ready(within)
        return up

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if (found := PASSWORD.search(line)) is not None:
                self.username, self.password = found["user"], found["password"]
            if line.startswith(READY):
                self.url = line[len(READY) :].split()[0]

    def _wait_ready(self, within: float) -> None:
        deadline = time.monotonic() + within
        while not self.url:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"`opendeep up` did not come up:\n{self.console}")
            time.sleep(0.2)

    @property
    def console(self) -> str:
        """Everything it printed so far."""
        return "".join(self.lines)

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run another `opendeep` command against the same settings and database."""
        return run(self.env, *args, stdin=stdin)

    def api_key(self, tenant: str = "default") -> str:
        """A new API key of ``tenant`` (made by the CLI, as an operator would)."""
        made = self.cli("apikey", "create", "--tenant", tenant)
        assert made.returncode == 0, made.stdout + made.stderr
        return made.stdout.strip().splitlines()[-1]

    def stop(self, within: float = 120.0) -> int:
        """Ctrl-C, then wait for it to drain and exit; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(within)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"`opendeep up` did not stop in time:\n{self.console}") from None
        finally:
            shutil.rmtree(self.ray_tmp, ignore_errors=True)
