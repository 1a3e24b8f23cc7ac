"""The `opendeep` command line, run as a real process against a real database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration._cli import cli_env, run

pytestmark = pytest.mark.integration


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


def test_admin_commands_create_tenant_user_and_key(env: dict[str, str]) -> None:
    made = run(env, "tenant", "add", "acme", "--countries", "US,CA", "--window", "08:00-18:00")
    assert made.returncode == 0, made.stderr
    assert "acme" in run(env, "tenant", "list").stdout
    user = run(env, "user", "add", "alice", "--tenant", "acme", "--password-stdin", stdin="pw-1\n")
    assert user.returncode == 0, user.stderr
    key = run(env, "apikey", "create", "--tenant", "acme")
    assert key.returncode == 0, key.stderr
    assert key.stdout.strip().splitlines()[-1].startswith("od_")
    assert run(env, "db", "current").returncode == 0


@pytest.mark.parametrize(
    "args",
    [
        ("tenant", "add", "bad", "--window", "nine-to-five"),
        ("tenant", "add", "bad", "--window", "20:00-08:00"),
        ("tenant", "add", "bad", "--days", "funday", "--window", "09:00-17:00"),
        ("user", "add", "bob", "--tenant", "no-such-tenant", "--password-stdin"),
        ("apikey", "create", "--tenant", "no-such-tenant"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(env: dict[str, str], args: tuple[str, ...]) -> None:
    result = run(env, *args, stdin="pw\n")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("opendeep: error:")
    assert "Traceback" not in result.stderr
    assert "bad" not in run(env, "tenant", "list").stdout


def test_duplicate_tenant_is_refused(env: dict[str, str]) -> None:
    assert run(env, "tenant", "add", "acme").returncode == 0
    again = run(env, "tenant", "add", "acme")
    assert again.returncode == 2 and "acme" in again.stderr


def test_invalid_settings_are_reported_by_name(env: dict[str, str]) -> None:
    env["OPENDEEP_PBX"] = "freeswitch"
    result = run(env, "settings")
    assert result.returncode == 2
    assert "pbx" in result.stderr


def test_settings_command_masks_secrets(env: dict[str, str]) -> None:
    env["OPENAI_API_KEY"] = "sk-never-show-this"
    env["OPENDEEP_AMI_SECRET"] = "ami-never-show-this"
    result = run(env, "settings")
    assert result.returncode == 0
    assert "never-show-this" not in result.stdout + result.stderr
    assert '"voice_mode": "openai"' in result.stdout
