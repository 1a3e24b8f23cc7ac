"""The REST API: tasks, questions, the event stream, health and metrics (DESIGN.md §2, §7).

Thin by design (STYLE.md 11): each handler validates, calls the repository, nudges the actor
concerned, and returns. Every ``/api`` route needs ``Authorization: Bearer <API key>``; the
key decides the tenant, and every repository call is scoped to it, so another tenant's ids
are simply not found (404, never 403). ``/healthz`` and ``/metrics`` need no key and show
no tenant data. Errors are described in :mod:`serve_app.api_errors`.

This module does not use ``from __future__ import annotations``: FastAPI reads the route
signatures at runtime, and the routes are closures over the services.
"""

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import Match, Mount

from db.repo import accounts, feed, hitl, tasks
from db.shapes import utcnow
from db.states import CLAIMABLE_TASK_STATUSES, TaskStatus
from serve_app import api_metrics
from serve_app.api_errors import (
    ApiError,
    BodyLimitMiddleware,
    UnhandledErrorMiddleware,
    install_error_handlers,
    not_found_path,
    unauthorized,
)
from serve_app.api_events import MAX_EVENT_ID, StartError, StreamTiming, event_stream, start_after
from serve_app.api_models import (
    AnswerIn,
    AnswerOut,
    ErrorOut,
    HealthOut,
    QuestionListOut,
    QuestionOut,
    TaskCreate,
    TaskListOut,
    TaskOut,
    TaskSummaryOut,
)
from serve_app.services import Services

__all__ = ["Caller", "build_api"]

log = logging.getLogger(__name__)

MAX_OFFSET: Final = 1_000_000
MAX_LABEL_CHARS: Final = 100
PAST_TOLERANCE: Final = dt.timedelta(minutes=1)
"""A time this little in the past means now (clocks differ); older is a mistake: ringing
someone is not undoable, so it is refused rather than dialled at once."""
HEALTH_TIMEOUT_S: Final = 2.0
_CALLER_KEY: Final = "opendeep.caller"

_BEARER = HTTPBearer(
    auto_error=False,
    bearerFormat="od_<prefix>_<secret>",
    description="An API key of your tenant (`opendeep apikey create`).",
)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "Input the schema cannot judge: bad number, window, zone or time",
        401: "No valid API key",
        403: "Not allowed for this tenant: a do-not-call or refused number",
        404: "No such task or question for this tenant",
        409: "The task or question is not in a state that allows this",
        413: "Request body too large",
        422: "The request does not fit the schema",
    }
    return {s: {"model": ErrorOut, "description": described[s]} for s in statuses}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the API key's tenant, and a label for the audit trail."""

    tenant_id: uuid.UUID
    key_id: uuid.UUID
    user_id: uuid.UUID | None
    label: str
    """``api:<key name>``, written into events as who cancelled or answered."""


Authenticate = Callable[[Request], Awaitable[Caller]]


def _authenticator(services: Services) -> Authenticate:
    async def authenticate(request: Request) -> Caller:
        cached = request.scope.get(_CALLER_KEY)
        if isinstance(cached, Caller):
            return cached
        header = request.headers.get("authorization", "").strip()
        if not header:
            raise unauthorized("An API key is required: send 'Authorization: Bearer <key>'.")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("The Authorization header must be 'Bearer <API key>'.")
        key = await accounts.authenticate_api_key(services.db, token.strip())
        if key is None:
            raise unauthorized("The API key is not valid or was revoked.", invalid_token=True)
        caller = Caller(
            tenant_id=key.tenant_id,
            key_id=key.id,
            user_id=key.user_id,
            label=f"api:{key.name}"[:MAX_LABEL_CHARS],
        )
        request.scope[_CALLER_KEY] = caller
        return caller

    return authenticate


def _nudge(action: Callable[[], None]) -> None:
    """Nudge (it never blocks: :class:`RayNudger` looks actors up on its own thread); a failure
    is logged, not raised."""
    try:
        action()
    except Exception:  # a nudge only cuts latency: the intent is already stored
        log.warning("nudge failed; the actors will pick the intent up by polling", exc_info=True)


def _scheduled_time(at: dt.datetime | None) -> dt.datetime | None:
    if at is None:
        return None
    try:
        when = at.astimezone(dt.UTC)
    except OverflowError:
        raise ApiError(400, "invalid_input", "The scheduled time is out of range.") from None
    if when < utcnow() - PAST_TOLERANCE:
        raise ApiError(
            400,
            "invalid_input",
            f"The scheduled time {when:%Y-%m-%d %H:%M} UTC is in the past; leave 'at' out "
            "to call as soon as possible.",
        )
    return when


def build_api(services: Services, *, stream_timing: StreamTiming | None = None) -> FastAPI:
    """The FastAPI app of the REST API, ``/healthz`` and ``/metrics`` (Gradio mounts on it)."""
    app = FastAPI(
        title="OpenDeep API",
        description="Outbound phone calls by a voice AI: create tasks, follow their calls, "
        "answer the AI's questions. Authenticate with `Authorization: Bearer <API key>`.",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    authenticate = _authenticator(services)
    install_error_handlers(app, authenticate)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(UnhandledErrorMiddleware)

    async def caller(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> Caller:
        return await authenticate(request)

    app.include_router(_task_routes(services, caller))
    app.include_router(_question_routes(services, caller))
    app.include_router(_event_routes(services, caller, stream_timing or StreamTiming()))
    app.include_router(_ops_routes(services))
    _add_unknown_api_route(app)  # last: only what nothing else matched
    return app


def _task_routes(services: Services, caller: Callable[..., Awaitable[Caller]]) -> APIRouter:
    router = APIRouter(prefix="/api/tasks", tags=["tasks"], responses=_errors(401, 422))
    db = services.db
    CallerDep = Annotated[Caller, Depends(caller)]  # noqa: N806 -- a type alias, named as one

    @router.post("", status_code=201, responses=_errors(400, 403, 413), summary="Create a task")
    async def create_task(body: TaskCreate, who: CallerDep) -> TaskOut:
        """Validate and store a new task; the scheduler calls at the first allowed time."""
        view = await tasks.create_task(
            db,
            who.tenant_id,
            objective=body.objective,
            phone=body.to,
            context=body.context,
            title=body.title,
            callee_name=body.callee_name,
            language=body.language,
            voice=body.voice,
            timezone=body.timezone,
            window=body.window.spec() if body.window else None,
            at=_scheduled_time(body.at),
            max_attempts=body.max_attempts,
            voicemail_message=body.voicemail_message,
            created_by=who.user_id,
            settings=services.settings,
        )
        _nudge(services.nudger.wake_supervisor)
        return TaskOut.of(await tasks.get_task(db, who.tenant_id, view.id))

    @router.get("", summary="List tasks")
    async def list_tasks(
        who: CallerDep,
        status: Annotated[TaskStatus | None, Query(description="Only tasks in this status")] = None,
        limit: Annotated[int, Query(ge=1, le=tasks.MAX_LIST_LIMIT)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> TaskListOut:
        """The tenant's tasks, newest first, and how many match in all."""
        items = await tasks.list_tasks(db, who.tenant_id, status=status, limit=limit, offset=offset)
        total = await tasks.count_tasks(db, who.tenant_id, status=status)
        return TaskListOut(items=[TaskSummaryOut.of(t) for t in items], total=total)

    @router.get("/{task_id}", responses=_errors(404), summary="A task with its history")
    async def get_task(task_id: uuid.UUID, who: CallerDep) -> TaskOut:
        """The task, every call (transcript, tool calls, figures), every event and question."""
        return TaskOut.of(await tasks.get_task(db, who.tenant_id, task_id))

    @router.post("/{task_id}/cancel", responses=_errors(404, 409), summary="Cancel a task")
    async def cancel_task(task_id: uuid.UUID, who: CallerDep) -> TaskOut:
        """A waiting task is cancelled at once; a call in progress ends politely first."""
        await tasks.request_cancel(db, who.tenant_id, task_id, by=who.label)
        _nudge(lambda: services.nudger.nudge_task(task_id))
        return TaskOut.of(await tasks.get_task(db, who.tenant_id, task_id))

    return router


def _question_routes(services: Services, caller: Callable[..., Awaitable[Caller]]) -> APIRouter:
    router = APIRouter(prefix="/api/questions", tags=["questions"], responses=_errors(401, 422))
    db = services.db
    CallerDep = Annotated[Caller, Depends(caller)]  # noqa: N806 -- a type alias, named as one

    @router.get("", summary="The AI's questions")
    async def list_questions(
        who: CallerDep,
        status: Annotated[
            Literal["open", "all"], Query(description="open: still waiting; all: every one")
        ] = "open",
    ) -> QuestionListOut:
        """Open questions oldest first (answer these), or all of them newest first."""
        if status == "open":
            views = await hitl.list_open_questions(db, who.tenant_id)
        else:
            views = await hitl.list_questions(db, who.tenant_id)
        return QuestionListOut(items=[QuestionOut.of(q) for q in views])

    @router.post("/{question_id}/answer", responses=_errors(400, 404, 409, 413), summary="Answer")
    async def answer_question(question_id: uuid.UUID, body: AnswerIn, who: CallerDep) -> AnswerOut:
        """In time, the live call gets the answer; late, the task calls back with it."""
        result = await hitl.answer_question(
            db, who.tenant_id, question_id, body.answer, answered_by=who.label
        )
        task_id = result.question.task_id
        _nudge(lambda: services.nudger.nudge_task(task_id))
        if result.late and result.task_status in CLAIMABLE_TASK_STATUSES:
            _nudge(services.nudger.wake_supervisor)  # the callback is due: claim it now
        return AnswerOut.of(result)

    return router


_SSE_EXAMPLE: Final = (
    'id: 42\nevent: task_event\ndata: {"id":42,"task_id":"3f1c2a9e-8d4b-4c1e-9a57-'
    '2b6f0d8e7c11","task_title":"Book a table","call_id":null,"at":'
    '"2026-05-04T13:00:00Z","kind":"TASK_CREATED","message":"Task created",'
    '"data":{}}\n\n'
)


def _event_routes(
    services: Services, caller: Callable[..., Awaitable[Caller]], timing: StreamTiming
) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["events"], responses=_errors(401, 422))
    CallerDep = Annotated[Caller, Depends(caller)]  # noqa: N806 -- a type alias, named as one
    stream_doc = {
        "description": "Server-Sent Events: `id:` the event id, `event: task_event`, `data:` "
        "JSON with id, task_id, task_title, call_id, at, kind, message, data. A `: keepalive` "
        "comment every 15 s.",
        "content": {"text/event-stream": {"schema": {"type": "string"}, "example": _SSE_EXAMPLE}},
    }

    @router.get(
        "/events",
        response_class=StreamingResponse,
        responses={200: stream_doc, **_errors(400)},
        summary="Live task events",
    )
    async def events(
        request: Request,
        who: CallerDep,
        after: Annotated[
            int | None,
            Query(ge=0, le=MAX_EVENT_ID, description="Send events after this id; 0 = all"),
        ] = None,
        last_event_id: Annotated[
            str | None, Header(alias="Last-Event-ID", description="Resume after this event")
        ] = None,
    ) -> StreamingResponse:
        """The tenant's task events in order, live; resumes after Last-Event-ID or ?after."""
        try:
            start = start_after(last_event_id, after)
        except StartError as exc:
            raise ApiError(400, "invalid_input", f"{exc}.") from None
        if start is None:
            start = await feed.latest_event_id(services.db)
        stream = event_stream(services.db, who.tenant_id, start, timing, request.is_disconnected)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)

    return router


def _ops_routes(services: Services) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get(
        "/healthz",
        responses={503: {"model": HealthOut, "description": "The database does not answer"}},
        summary="Health",
    )
    async def healthz(response: Response) -> HealthOut:
        """200 when the database answers ``SELECT 1``, else 503 "degraded"."""
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                await feed.ping(services.db)
        except Exception as exc:  # noqa: BLE001 -- any failure of the probe is "degraded"
            log.warning("health check: the database does not answer (%s)", type(exc).__name__)
            response.status_code = 503
            return HealthOut(status="degraded", database="unavailable")
        return HealthOut(status="ok", database="ok")

    @router.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "content": {api_metrics.CONTENT_TYPE: {"schema": {"type": "string"}}},
                "description": "Prometheus text format 0.0.4",
            }
        },
        summary="Prometheus metrics",
    )
    async def metrics() -> Response:
        """Aggregates across tenants: tasks, calls, questions, per-call figures."""
        snapshot = await feed.metrics_snapshot(services.db)
        return Response(api_metrics.render(snapshot), media_type=api_metrics.CONTENT_TYPE)

    return router


_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _add_unknown_api_route(app: FastAPI) -> None:
    """JSON 404/405 for any other ``/api/…`` URL, even with the UI mounted at ``/``.

    Without it, the mounted UI would answer such URLs with its own HTML error pages.
    """

    async def unknown(request: Request) -> None:
        others = [
            r
            for r in request.app.routes
            if not isinstance(r, Mount) and getattr(r, "endpoint", None) is not unknown
        ]
        allowed = [
            method
            for method in _METHODS
            if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in others)
        ]
        path = request.url.path
        if allowed:
            message = f"{request.method} is not allowed on {path}."
            headers = {"Allow": ", ".join(allowed)}
            raise ApiError(405, "method_not_allowed", message, headers=headers)
        raise not_found_path(path)

    app.add_api_route("/api/{rest:path}", unknown, methods=list(_METHODS), include_in_schema=False)
