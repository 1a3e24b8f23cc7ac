"""The ``opendeep`` command line: ``up``, tasks and answers, database, and administration.

The task commands (``task add|list|show|cancel``, ``answer``) live in
:mod:`serve_app.cli_tasks`; this module owns the parser, the error handling and the opener
of the database they share.

It writes through the repository only (no Ray connection needed) and prints errors as one
clear line with exit status 2, never a traceback for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from db.repo._core import RepoError
from opendeep import __version__
from opendeep.logging import register_secrets, setup_logging
from opendeep.settings import Settings, parse_clock, parse_days, reload_settings
from serve_app import cli_tasks

if TYPE_CHECKING:
    from db.engine import Database

Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


class CliError(Exception):
    """A problem to report to the user in one line (exit status 2)."""


def _load_settings() -> Settings:
    try:
        settings = reload_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise CliError(f"invalid settings: {problems}") from None
    keys = (settings.openai_api_key, settings.gemini_api_key)
    secrets = [settings.ami_secret.get_secret_value(), *(k.get_secret_value() for k in keys if k)]
    register_secrets(secrets)
    return settings


# -- commands -------------------------------------------------------------------------------


async def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    """Start OpenDeep and keep it running until Ctrl-C."""
    from serve_app.up import run_up  # noqa: PLC0415 -- keeps `opendeep --help` fast

    return await run_up(settings)


async def cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    """Print the effective settings, secrets masked."""
    described = settings.describe()
    described.update(pbx_mode=settings.pbx_mode, voice_mode=settings.voice_mode)
    described["analysis_mode"] = settings.analysis_mode
    print(json.dumps(described, indent=2, default=str))
    return 0


async def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    """Run database migrations."""
    from db import migrate  # noqa: PLC0415

    url = settings.resolved_database_url
    if args.db_command == "upgrade":
        await migrate.upgrade(url, args.revision)
    elif args.db_command == "downgrade":
        await migrate.downgrade(url, args.revision)
    print(f"database revision: {await migrate.current_revision(url) or '(empty)'}")
    return 0


def _window(text: str, days: str) -> tuple[Any, Any, list[int]]:
    start_text, sep, end_text = text.partition("-")
    if not sep:
        raise CliError(f"--window must look like 09:00-20:00, not {text!r}")
    try:
        return parse_clock(start_text), parse_clock(end_text), list(parse_days(days))
    except ValueError as exc:
        raise CliError(str(exc)) from None


async def cmd_tenant(args: argparse.Namespace, settings: Settings) -> int:
    """Add or list tenants."""
    from db.repo import accounts  # noqa: PLC0415

    async with _Database(settings) as db:
        if args.tenant_command == "list":
            for tenant in await accounts.list_tenants(db):
                print(f"{tenant.id}  {tenant.name}")
            return 0
        window = _window(args.window, args.days) if args.window else None
        countries = [c.strip().upper() for c in args.countries.split(",") if c.strip()]
        tenant = await accounts.create_tenant(
            db,
            name=args.name,
            allowed_countries=countries,
            max_concurrent_calls=args.max_concurrent,
            dial_rate_per_minute=args.dial_rate,
            daily_call_quota=args.daily_quota,
            window=window,
            settings=settings,
        )
        print(f"tenant {tenant.name} created ({tenant.id})")
    return 0


async def cmd_user(args: argparse.Namespace, settings: Settings) -> int:
    """Add a user to a tenant."""
    from db.repo import accounts  # noqa: PLC0415

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.username}: ")
    async with _Database(settings) as db:
        tenant = await accounts.get_tenant_by_name(db, args.tenant)
        user = await accounts.create_user(
            db, tenant_id=tenant.id, username=args.username, password=password, is_admin=args.admin
        )
    print(f"user {user.username} created in tenant {tenant.name}")
    return 0


async def cmd_apikey(args: argparse.Namespace, settings: Settings) -> int:
    """Create an API key for a tenant and print it once."""
    from db.repo import accounts  # noqa: PLC0415

    async with _Database(settings) as db:
        tenant = await accounts.get_tenant_by_name(db, args.tenant)
        key, view = await accounts.create_api_key(db, tenant_id=tenant.id, name=args.name)
    print(f"API key {view.name!r} for tenant {tenant.name} (shown once, store it now):")
    print(key)
    return 0


class _Database:
    """Open the migrated database for one command and close it afterwards."""

    def __init__(self, settings: Settings) -> None:
        self._url = settings.resolved_database_url

    async def __aenter__(self) -> Database:
        from db.engine import open_database  # noqa: PLC0415
        from db.migrate import upgrade  # noqa: PLC0415

        await upgrade(self._url)
        self._db = open_database(self._url)
        return self._db

    async def __aexit__(self, *exc: object) -> None:
        await self._db.close()


# -- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``opendeep`` command."""
    parser = argparse.ArgumentParser(
        prog="opendeep", description="OpenDeep: outbound phone calls by a voice AI."
    )
    parser.add_argument("--version", action="version", version=f"opendeep {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("up", help="start OpenDeep (Ctrl-C stops it)").set_defaults(handler=cmd_up)
    sub.add_parser("settings", help="show the effective settings (secrets masked)").set_defaults(
        handler=cmd_settings
    )

    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="migrate to the latest (or a given) revision")
    up.add_argument("revision", nargs="?", default="head")
    down = db_sub.add_parser("downgrade", help="migrate down to a revision ('base' = empty)")
    down.add_argument("revision")
    db_sub.add_parser("current", help="show the current revision")
    db.set_defaults(handler=cmd_db)

    tenant = sub.add_parser("tenant", help="manage tenants")
    t_sub = tenant.add_subparsers(dest="tenant_command", required=True)
    add = t_sub.add_parser("add", help="add a tenant")
    add.add_argument("name")
    add.add_argument("--countries", default="*", help="ISO codes it may call, e.g. US,CA (* = any)")
    add.add_argument("--max-concurrent", type=int, default=None, help="concurrent calls")
    add.add_argument("--dial-rate", type=int, default=None, help="new calls per minute")
    add.add_argument("--daily-quota", type=int, default=None, help="calls per day")
    add.add_argument("--window", default=None, help="default calling hours, e.g. 09:00-20:00")
    add.add_argument("--days", default="mon-sat", help="default calling days, e.g. mon-fri")
    t_sub.add_parser("list", help="list tenants")
    tenant.set_defaults(handler=cmd_tenant)

    user = sub.add_parser("user", help="manage users")
    u_sub = user.add_subparsers(dest="user_command", required=True)
    uadd = u_sub.add_parser("add", help="add a user (asks for the password)")
    uadd.add_argument("username")
    uadd.add_argument("--tenant", required=True)
    uadd.add_argument("--admin", action="store_true")
    uadd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    user.set_defaults(handler=cmd_user)

    apikey = sub.add_parser("apikey", help="manage API keys")
    k_sub = apikey.add_subparsers(dest="apikey_command", required=True)
    kadd = k_sub.add_parser("create", help="create a key (printed once)")
    kadd.add_argument("--tenant", required=True)
    kadd.add_argument("--name", default="default")
    apikey.set_defaults(handler=cmd_apikey)

    cli_tasks.register(sub, database=_Database)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``opendeep`` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = _load_settings()
        setup_logging(settings.log_level)
        handler: Handler = args.handler
        return asyncio.run(handler(args, settings))
    except KeyboardInterrupt:
        return 130
    except (CliError, RepoError, ValueError, LookupError) as exc:
        # Repository errors (refused input, unknown tenant, conflicts) are meant for people.
        print(f"opendeep: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
