"""Every API error is ``{"error": {"status", "code", "message"}}`` with the right status.

| status | code                         | when                                                     |
|--------|------------------------------|----------------------------------------------------------|
| 400    | invalid_input                | input the schema cannot judge: an unparseable phone      |
|        |                              | number, a window that never opens, an unknown time zone, |
|        |                              | a time in the past or over a year ahead, more attempts   |
|        |                              | than the settings allow, blank text, a bad Last-Event-ID,|
|        |                              | a body that is not UTF-8 JSON (or nested too deep)       |
| 401    | unauthorized                 | no, malformed, unknown or revoked API key                |
|        |                              | (with ``WWW-Authenticate: Bearer``)                      |
| 403    | do_not_call                  | the number is on the tenant's do-not-call list           |
| 403    | emergency, short_code,       | a number we never dial, or a country the tenant may not  |
|        | premium_rate, not_dialable,  | call (db.phone.NumberRefusedError's code)                |
|        | country_not_allowed          |                                                          |
| 404    | not_found                    | no such task/question *for this tenant* (another         |
|        |                              | tenant's id looks exactly like a missing one), a path id |
|        |                              | that is not a UUID, an unknown URL                       |
| 405    | method_not_allowed           | e.g. DELETE /api/tasks                                   |
| 409    | conflict                     | the row's state forbids it (cancel a finished task,      |
|        |                              | answer an answered question) or it kept changing         |
| 413    | too_large                    | a request body over :data:`MAX_BODY_BYTES`               |
| 422    | validation_error             | the body or query does not fit the schema (missing or    |
|        |                              | unknown fields, wrong types, naive times, limits)        |
| 500    | internal_error               | a bug: a generic message, the exception is logged        |
| 503    | database_unavailable         | the database could not be reached, refused the           |
|        |                              | connection, or stayed locked                             |

A malformed UUID in the path is a 404, not FastAPI's default 422: the URL names no resource,
exactly like a well-formed id that does not exist. Authentication comes before validation:
a request without a valid key gets 401 even when its body is also invalid.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError, StatementError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db.phone import NumberRefusedError
from db.repo._core import ConflictError, InvalidInputError, NotFoundError, RepoError
from db.repo.dnc import DoNotCallError
from db.windows import WindowError

log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 256 * 1024
"""Far above the largest valid task (~13,000 characters of text, even \\u-escaped)."""
API_PREFIX: Final = "/api/"

Authenticate = Callable[[Request], Awaitable[object]]
"""Raises :class:`ApiError` (401) unless the request carries a valid key."""


class ApiError(Exception):
    """An error the API answers with as is: status, code, message (and headers)."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def not_found_path(path: str) -> ApiError:
    """404 for a URL that names nothing (unknown route, or an id that is not a UUID)."""
    return ApiError(404, "not_found", f"No such resource: {path}.")


def unauthorized(message: str, *, invalid_token: bool = False) -> ApiError:
    """401 with the ``WWW-Authenticate`` challenge RFC 6750 asks for."""
    challenge = 'Bearer error="invalid_token"' if invalid_token else "Bearer"
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    fields: list[dict[str, str]] | None = None,
) -> JSONResponse:
    """The JSON error envelope."""
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if fields is not None:
        body["fields"] = fields
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _sentence(message: str) -> str:
    message = message.strip()
    if not message:
        return message
    message = message[0].upper() + message[1:]
    return message if message.endswith((".", "?", "!")) else message + "."


_UNAVAILABLE: Final = (OperationalError, InterfaceError, ConnectionError, socket.gaierror)
"""The database (or the network to it) failed: drivers raise these, wrapped or not."""
_BY_CLASS: Final[tuple[tuple[type[Exception] | tuple[type[Exception], ...], int, str], ...]] = (
    (DoNotCallError, 403, "do_not_call"),  # before InvalidInputError, its base
    (NotFoundError, 404, "not_found"),
    (ConflictError, 409, "conflict"),  # StaleVersionError included
    ((InvalidInputError, WindowError), 400, "invalid_input"),
)


def classify(exc: Exception) -> ApiError | None:
    """The API error a repository or input exception stands for, or ``None`` (a bug)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NumberRefusedError):
        if exc.code == "invalid":
            return ApiError(400, "invalid_input", _sentence(f"phone number: {exc}"))
        return ApiError(403, exc.code, _sentence(str(exc)))
    if isinstance(exc, _UNAVAILABLE):
        message = "The database is unavailable; try again shortly."
        return ApiError(503, "database_unavailable", message)
    for kinds, status, code in _BY_CLASS:
        if isinstance(exc, kinds):
            return ApiError(status, code, _sentence(str(exc)))
    return None


# -- validation (422) -------------------------------------------------------------------------

_MESSAGES: Final = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "timezone_aware": "needs a UTC offset, e.g. 2026-05-04T15:00:00+02:00",
    "json_invalid": "is not valid JSON",
}


def _where(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body" and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_fields(errors: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    """Each invalid field and a readable reason (never the submitted value: it may be huge)."""
    fields: list[dict[str, str]] = []
    for error in errors:
        kind = str(error.get("type", ""))
        loc = tuple(error.get("loc", ()))
        if kind == "json_invalid":
            detail = error.get("ctx", {}).get("error", "")
            reason = f"is not valid JSON ({detail})" if detail else _MESSAGES[kind]
            fields.append({"field": "body", "message": reason})
            continue
        reason = _MESSAGES.get(kind) or str(error.get("msg", "is invalid"))
        reason = reason.removeprefix("Value error, ")  # pydantic's prefix for our own checks
        fields.append({"field": _where(loc), "message": reason[:300]})
    return fields


def _is_path_error(errors: Iterable[dict[str, Any]]) -> bool:
    return any(tuple(e.get("loc", ()))[:1] == ("path",) for e in errors)


def _protected(request: Request) -> bool:
    path = request.url.path
    return path.startswith(API_PREFIX) and not path.startswith(("/api/openapi", "/api/docs"))


def _respond(err: ApiError) -> JSONResponse:
    return error_response(err.status, err.code, err.message, headers=err.headers)


async def api_error(_: Request, exc: Exception) -> JSONResponse:
    """The handler of every exception :func:`classify` knows."""
    err = classify(exc)
    assert err is not None  # only registered for classes classify() knows
    if err.status == 503:
        log.warning("database unavailable: %s", type(exc).__name__)
    return _respond(err)


class _FrameworkErrors:
    """Handlers for FastAPI's and Starlette's own errors (they need the authenticator)."""

    def __init__(self, authenticate: Authenticate) -> None:
        self.authenticate = authenticate

    async def denied(self, request: Request) -> JSONResponse | None:
        """FastAPI parses the body before running dependencies: check the key first."""
        if not _protected(request):
            return None
        try:
            await self.authenticate(request)
        except Exception as exc:
            err = classify(exc)  # a 401, or a 503 when the database is down
            if err is None:
                raise
            return _respond(err)
        return None

    async def invalid_request(self, request: Request, exc: Exception) -> JSONResponse:
        """422 with the fields (404 for a malformed id in the path)."""
        assert isinstance(exc, RequestValidationError)
        if (denied := await self.denied(request)) is not None:
            return denied
        errors = list(exc.errors())
        if _is_path_error(errors):
            return _respond(not_found_path(request.url.path))
        fields = validation_fields(errors)
        listed = "; ".join(f"{f['field']} {f['message']}" for f in fields[:10])
        message = f"The request is not valid: {listed}."
        return error_response(422, "validation_error", message, fields=fields)

    async def http_error(self, request: Request, exc: Exception) -> JSONResponse:
        """Starlette's 404/405/413 and FastAPI's body-parsing 400, in the envelope."""
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers) if exc.headers else None
        status = exc.status_code
        if status == 404:
            return _respond(not_found_path(request.url.path))
        if status == 405:
            message = f"{request.method} is not allowed on {request.url.path}."
            return error_response(405, "method_not_allowed", message, headers=headers)
        if status == 413:
            return error_response(413, "too_large", _too_large_message())
        if status == 400:  # FastAPI's own: a body it could not decode (not UTF-8, say)
            if (denied := await self.denied(request)) is not None:
                return denied
            message = "The request body could not be read: it must be JSON, encoded in UTF-8."
            return error_response(400, "invalid_input", message)
        return error_response(status, "http_error", _sentence(str(exc.detail)), headers=headers)


def install_error_handlers(app: FastAPI, authenticate: Authenticate) -> None:
    """Register the envelope for every error FastAPI, Starlette or the repository raises."""
    for kind in (ApiError, RepoError, NumberRefusedError, WindowError, *_UNAVAILABLE):
        app.add_exception_handler(kind, api_error)
    framework = _FrameworkErrors(authenticate)
    app.add_exception_handler(RequestValidationError, framework.invalid_request)
    app.add_exception_handler(StarletteHTTPException, framework.http_error)


def _too_large_message() -> str:
    return f"The request body is too large (at most {MAX_BODY_BYTES // 1024} KiB)."


# -- ASGI middlewares -------------------------------------------------------------------------


class BodyLimitMiddleware:
    """Refuse API request bodies over :data:`MAX_BODY_BYTES` with 413, before reading them all.

    A declared ``Content-Length`` is refused at once; a chunked body is counted as it
    arrives and refused when it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            response = error_response(413, "too_large", _too_large_message())
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # An HTTPException passes FastAPI's body reader unchanged to our handler.
                    raise StarletteHTTPException(413)
            return message

        await self.app(scope, limited, send)


class UnhandledErrorMiddleware:
    """Turn an exception nothing else handled into a generic 500, logged once, secrets hidden."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:  # the last line of defence: log it, answer 500
            if isinstance(exc, StatementError):
                exc.hide_parameters = True  # SQL parameters may hold numbers or key hashes
            log.error(
                "unhandled %s in %s %s",
                type(exc).__name__,
                scope.get("method"),
                scope.get("path"),
                exc_info=exc,
            )
            if started:
                return  # mid-response (a stream): all we can do is end it
            response = error_response(
                500, "internal_error", "Something went wrong on our side; it has been logged."
            )
            await response(scope, receive, send)
