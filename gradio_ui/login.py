"""UI login: Gradio's ``auth`` callable, and who (which tenant) a handler is serving.

How Gradio 6 uses ``auth`` (gradio/routes.py, ``POST /login``): the route is ``async`` and
runs on the server's event loop; it awaits ``auth(username, password)`` when
``inspect.iscoroutinefunction(auth)`` holds and otherwise *calls it inline on the loop*. So
:meth:`Login.check` is an ``async def`` (a bound coroutine method passes that test), and
:func:`db.repo.accounts.authenticate_user` runs the ~50 ms scrypt in a worker thread: the loop
never stalls and never waits on itself. On success Gradio keeps ``token → username`` (the
username as typed, only stripped) in memory and every queued event carries it as
``gr.Request.username``. Usernames are case-insensitive, so handlers normalise it again.

Every handler resolves that username to an :class:`Account` (user and tenant) through
:meth:`Login.account`, cached briefly so a page's timers do not look the user up several
times a second. No account (not logged in, user deleted) means the handler shows nothing.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import gradio as gr

from db.engine import Database
from db.repo import accounts
from db.repo._core import InvalidInputError, NotFoundError
from db.repo.accounts import UserView

log = logging.getLogger(__name__)

CACHE_SECONDS: Final = 30.0
"""How long a username → tenant lookup is trusted (a deleted user loses access within it)."""
ACTOR_PREFIX: Final = "ui:"
MAX_FAILURES: Final = 5
"""Wrong passwords for one username within ``FAILURE_WINDOW`` before it is locked out."""
FAILURE_WINDOW: Final = 300.0
"""Seconds failures are remembered, and how long a locked-out username waits."""


@dataclass(frozen=True, slots=True)
class Account:
    """The logged-in user a handler serves, and their tenant."""

    user_id: uuid.UUID
    tenant_id: uuid.UUID
    tenant_name: str
    username: str

    @property
    def actor(self) -> str:
        """How the audit trail names this user's intents (``ui:<username>``)."""
        return f"{ACTOR_PREFIX}{self.username}"


class Login:
    """Checks UI passwords for Gradio and maps request usernames to accounts (cached)."""

    def __init__(
        self,
        db: Database,
        *,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._ttl = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[Account, float]] = {}
        self._failures: dict[str, list[float]] = {}

    async def check(self, username: str, password: str) -> bool:
        """Gradio's ``auth``: whether this username and password are a user's (scrypt off-loop).

        After ``MAX_FAILURES`` wrong passwords for one username within ``FAILURE_WINDOW`` s,
        that username is refused without a password check until the window has passed, so a
        guesser neither gets further nor makes the server burn scrypt time.
        """
        try:
            key = accounts.normalize_username(username)
        except InvalidInputError:
            return False  # no user can have this name: nothing to check
        if self._locked(key):
            log.warning("UI login refused: too many failures for one username; waiting")
            return False
        user = await accounts.authenticate_user(self._db, username, password)
        if user is None:
            # The name is not logged: people type passwords into the username box.
            log.info("UI login refused")
            self._failures.setdefault(key, []).append(self._clock())
            return False
        self._failures.pop(key, None)
        account = await self._account_of(user)
        if account is None:
            return False
        self._remember(account)
        log.info("UI login: %s", account.username)
        return True

    def _locked(self, key: str) -> bool:
        since = self._clock() - FAILURE_WINDOW
        recent = [t for t in self._failures.get(key, ()) if t > since]
        if recent:
            self._failures[key] = recent
        else:
            self._failures.pop(key, None)
        return len(recent) >= MAX_FAILURES

    async def account(self, request: gr.Request | None) -> Account | None:
        """The account of the request's logged-in user, or ``None`` when there is none."""
        typed = getattr(request, "username", None) if request is not None else None
        if not isinstance(typed, str) or not typed.strip():
            return None
        try:
            key = accounts.normalize_username(typed)
        except InvalidInputError:
            return None
        cached = self._cache.get(key)
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        self._cache.pop(key, None)
        user = await accounts.get_user_by_username(self._db, key)
        if user is None:
            return None
        account = await self._account_of(user)
        if account is not None:
            self._remember(account)
        return account

    async def _account_of(self, user: UserView) -> Account | None:
        try:
            tenant = await accounts.get_tenant(self._db, user.tenant_id)
        except NotFoundError:
            return None
        return Account(user.id, user.tenant_id, tenant.name, user.username)

    def _remember(self, account: Account) -> None:
        self._cache[account.username] = (account, self._clock() + self._ttl)
