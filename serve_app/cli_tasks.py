"""The ``opendeep task …`` and ``opendeep answer`` commands: the front's intents, from a shell.

Like every front (DESIGN.md §2) they write through the repository only and need no Ray
connection: a new task is a PENDING row the running system's supervisor claims within a
tick; cancelling a waiting task is immediate, an active one is flagged and its TaskActor ends
the call politely; an answer is the guarded ``PENDING → ANSWERED`` the TaskActor forwards.

Decisions (also in the README's "Command line" section):

- Without ``--tenant`` the first-run tenant ``default`` is used. When it does not exist the
  command says to run ``opendeep up`` once rather than bootstrapping here: the generated admin
  password is shown only on the console that ran ``opendeep up`` (DESIGN.md §7).
- ``--at`` takes ISO 8601 (an offset is honoured; a time without one is read in the zone
  below) or a phrase (``tomorrow at 3pm``, ``in 10 minutes``, ``now``) read by ``dateparser``,
  preferring the future, in ``--timezone`` when given, else in this machine's zone — the
  zone of the person typing, which the number's zone may not be. A time more than a minute
  in the past is refused rather than dialled at once: ringing someone is not undoable.
- Times are printed in UTC, plus the callee's wall clock where it says when they will ring.
- IDs may be a full UUID or a unique prefix of at least 8 hex digits, among the tenant's own
  rows only, so another tenant's id looks exactly like a missing one.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import getpass
import json
import re
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

import sqlalchemy as sa
from pydantic import BaseModel

from db.engine import Database
from db.models import HitlRequest, Task
from db.repo import accounts, hitl, tasks
from db.repo._core import InvalidInputError, NotFoundError
from db.repo._shared import local_time, pretty_phone, short
from db.repo.hitl import AnswerResult
from db.repo.views import CallView, QuestionView, TaskDetail, TaskSummary, TaskView
from db.shapes import Speaker, utcnow
from db.states import ACTIVE_TASK_STATUSES, CLAIMABLE_TASK_STATUSES, HitlStatus, TaskStatus
from db.windows import CallingWindow, resolve_zones, zone
from opendeep.settings import Settings

OpenDatabase = Callable[[Settings], AbstractAsyncContextManager[Database]]
"""Opens the migrated database for one command (``serve_app.cli`` passes its opener)."""
Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]
Command = Callable[[argparse.Namespace, Settings, OpenDatabase], Coroutine[Any, Any, int]]
Subparsers = argparse._SubParsersAction  # the type of what add_subparsers() returns

MIN_PREFIX: Final = 8
PAST_TOLERANCE: Final = dt.timedelta(minutes=1)
"""A time this little in the past means now (a slow terminal, a clock off); older is a typo."""
LIST_TITLE_CHARS: Final = 48
_HEX: Final = re.compile(r"^[0-9a-f]+$")
_SPEAKERS: Final = {Speaker.AGENT: "Agent", Speaker.CALLEE: "Callee", Speaker.SYSTEM: "System"}
_NOT_DUE: Final = {
    TaskStatus.IN_PROGRESS: "calling now",
    TaskStatus.ANALYZING: "analysing",
    TaskStatus.PENDING_USER_INFO: "needs your answer",
}
"""What the NEXT ACTION column says of a task whose next_action_time is not a dial time."""
_ANSWERABLE: Final = (HitlStatus.PENDING, HitlStatus.TIMED_OUT)


def _emit(lines: Iterable[str]) -> None:
    """Write the command's report on stdout."""
    print("\n".join(lines), flush=True)  # noqa: T201 -- a command line talks on stdout


# -- input ----------------------------------------------------------------------------------


def parse_when(text: str, zone_key: str | None, *, now: dt.datetime) -> dt.datetime:
    """``--at`` as an aware UTC instant; InvalidInputError when unreadable or in the past."""
    phrase = text.strip()
    if not phrase:
        raise InvalidInputError("--at may not be empty")
    when = _iso_time(phrase, zone_key) or _natural_time(phrase, zone_key)
    if when is None:
        raise InvalidInputError(
            f"cannot read --at {text!r}: give ISO 8601 (2026-03-04T15:00+01:00) or a phrase "
            "such as 'tomorrow at 3pm' or 'in 10 minutes'"
        )
    when = when.astimezone(dt.UTC)
    if when < now - PAST_TOLERANCE:
        raise InvalidInputError(f"--at {text!r} is in the past ({_utc(when)} UTC)")
    return max(when, now)


def _iso_time(text: str, zone_key: str | None) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is not None:
        return when
    # No offset: the wall clock of --timezone, else of this machine.
    return when.replace(tzinfo=zone(zone_key)) if zone_key else when.astimezone()


def _natural_time(text: str, zone_key: str | None) -> dt.datetime | None:
    import dateparser  # noqa: PLC0415 -- only `task add --at` needs it; keeps other commands fast

    options: dict[str, Any] = {"PREFER_DATES_FROM": "future", "RETURN_AS_TIMEZONE_AWARE": True}
    if zone_key:
        options["TIMEZONE"] = zone_key
    return dateparser.parse(text, settings=options)


def _zone_option(text: str | None) -> str | None:
    """``--timezone`` checked against the tz database (WindowError names an unknown zone)."""
    if text is None or not text.strip():
        return None
    zone(text.strip())
    return text.strip()


def _default_actor() -> str:
    """Who the events name when ``--by`` is not given: the OS user, marked as the CLI."""
    try:
        return f"{getpass.getuser()} (CLI)"
    except (OSError, KeyError):  # no login name in some containers
        return "CLI"


async def _tenant_id(db: Database, name: str | None) -> uuid.UUID:
    """The tenant named by ``--tenant``, else the first-run tenant ``default``."""
    if name is not None:
        return (await accounts.get_tenant_by_name(db, name)).id
    try:
        return (await accounts.get_tenant_by_name(db, accounts.DEFAULT_TENANT)).id
    except NotFoundError:
        raise NotFoundError(
            f"no tenant {accounts.DEFAULT_TENANT!r} yet: run `opendeep up` once (its first run "
            "creates it) or name a tenant with --tenant"
        ) from None


async def resolve_id(
    db: Database, model: type[Task] | type[HitlRequest], tenant_id: uuid.UUID, text: str
) -> uuid.UUID:
    """A full UUID, or the one row of the tenant whose id starts with ``text`` (≥ 8 hex)."""
    what = "task" if model is Task else "question"
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        pass
    digits = text.strip().lower().replace("-", "")
    if len(digits) < MIN_PREFIX or len(digits) > 32 or not _HEX.match(digits):
        raise InvalidInputError(
            f"{what} id must be a UUID or at least {MIN_PREFIX} hex digits of one, not {text!r}"
        )
    # A prefix is a range of UUIDs: an index range scan on SQLite (hex text) and PostgreSQL
    # (uuid compares byte-wise), scoped to the tenant so other tenants' ids never match.
    low, high = uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))
    query = (
        sa.select(model.id)
        .where(model.tenant_id == tenant_id, model.id.between(low, high))
        .order_by(model.id)
        .limit(2)
    )
    async with db.read() as session:
        found = list(await session.scalars(query))
    if not found:
        raise NotFoundError(f"no {what} {text.strip()}")
    if len(found) > 1:
        raise InvalidInputError(f"{what} id {text.strip()!r} is ambiguous: give more digits")
    return found[0]


# -- output ---------------------------------------------------------------------------------


def _utc(at: dt.datetime | None, *, seconds: bool = False) -> str:
    if at is None:
        return "-"
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _callee_zones(view: TaskView) -> tuple[str, ...]:
    return resolve_zones(view.timezone, view.phone)


def _when_called(view: TaskView, at: dt.datetime) -> str:
    """``at`` on the callee's wall clock and in UTC."""
    zones = _callee_zones(view)
    if zones[0] == "UTC":
        return f"{_utc(at)} UTC (the callee's zone too)"
    return f"{local_time(at, zones)} (callee's time) = {_utc(at)} UTC"


def _window(view: TaskView) -> str:
    return CallingWindow(
        start=view.window_start,
        end=view.window_end,
        days=frozenset(view.window_days),
        zones=_callee_zones(view),
    ).describe()


def _plain(value: Any) -> Any:
    """Views (dataclasses in dataclasses and tuples) as dicts and lists; leaves untouched."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _json_leaf(value: object) -> object:
    """JSON for the leaves of a view (its enums are ``StrEnum`` and need nothing)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _emit_json(value: Any) -> None:
    _emit([json.dumps(_plain(value), indent=2, ensure_ascii=False, default=_json_leaf)])


def _callee(name: str | None, phone: str) -> str:
    return f"{name}, {pretty_phone(phone)}" if name else pretty_phone(phone)


def added_lines(
    view: TaskView, tenant: str, requested: dt.datetime, phrase: str | None, read_in: str
) -> list[str]:
    """What ``task add`` reports: the id, the number, and when it will be dialled."""
    due = view.next_action_time or requested
    lines = [
        f"Task {view.id} created for tenant {tenant}.",
        f"  Calls:   {_callee(view.callee_name, view.phone)}",
        f"  Dials:   {_when_called(view, due)}",
    ]
    if phrase is not None:
        lines.append(f"  --at:    {phrase!r} read in {read_in} as {_utc(requested)} UTC")
    if due - requested > dt.timedelta(seconds=1):
        lines.append(f"  Window:  {_window(view)} (closed then, so moved to its next opening)")
    lines.append("  The running system (`opendeep up`) dials it when due.")
    return lines


def _status(summary: TaskSummary) -> str:
    active = summary.status in ACTIVE_TASK_STATUSES
    return (
        f"{summary.status.value} (cancelling)"
        if summary.cancel_requested and active
        else (summary.status.value)
    )


def _next_action(summary: TaskSummary) -> str:
    if summary.status in CLAIMABLE_TASK_STATUSES:
        return _utc(summary.next_action_time)
    return _NOT_DUE.get(summary.status, "-")


def table_lines(rows: Sequence[TaskSummary]) -> list[str]:
    """``task list`` as an aligned table, newest first."""
    if not rows:
        return ["No tasks."]
    header = ("ID", "STATUS", "ATTEMPTS", "NEXT ACTION (UTC)", "NUMBER", "TITLE")
    body = [
        (
            r.id.hex[:MIN_PREFIX],
            _status(r),
            f"{r.current_attempt_count}/{r.max_attempts}",
            _next_action(r),
            pretty_phone(r.phone),
            short(r.title, LIST_TITLE_CHARS),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *body)
    ]


def _task_lines(view: TaskView) -> list[str]:
    lines = [
        f"Task {view.id}  {view.status.value}",
        f"  Title:      {view.title}",
        f"  Objective:  {view.objective}",
    ]
    if view.context:
        lines.append(f"  Context:    {view.context}")
    lines += [
        f"  Callee:     {_callee(view.callee_name, view.phone)} (language {view.language})",
        f"  Window:     {_window(view)}",
        f"  Attempts:   {view.current_attempt_count} of {view.max_attempts} "
        f"({view.total_calls} call{'s' if view.total_calls != 1 else ''} in all)",
    ]
    if view.status in CLAIMABLE_TASK_STATUSES and view.next_action_time is not None:
        lines.append(f"  Next call:  {_when_called(view, view.next_action_time)}")
    elif view.status is TaskStatus.PENDING_USER_INFO:
        lines.append("  Waiting:    for your answer to a question below (a callback follows)")
    if view.voicemail_message:
        lines.append(f"  Voicemail:  {view.voicemail_message}")
    if view.outcome is not None or view.result_summary:
        outcome = view.outcome.value if view.outcome else "-"
        lines.append(f"  Outcome:    {outcome}: {view.result_summary or ''}".rstrip(": "))
    lines += [f"  Collected:  {i.question} → {i.answer}" for i in view.collected_info]
    lines.append(f"  Created:    {_utc(view.created_at, seconds=True)} UTC")
    if view.cancel_requested_at is not None:
        lines.append(f"  Cancel requested: {_utc(view.cancel_requested_at, seconds=True)} UTC")
    if view.finished_at is not None:
        lines.append(f"  Finished:   {_utc(view.finished_at, seconds=True)} UTC")
    return lines


def _call_lines(call: CallView) -> list[str]:
    facts = [
        f"result {call.telephony_result.value}" if call.telephony_result else None,
        f"cause {call.hangup_cause}" if call.hangup_cause is not None else None,
        f"end reason {call.end_reason.value}" if call.end_reason else None,
        f"outcome {call.outcome.value}" if call.outcome else None,
        f"AMD {call.amd_verdict.value}" if call.amd_verdict else None,
    ]
    times = (
        f"originated {_utc(call.originated_at, seconds=True)}, answered "
        f"{_utc(call.answered_at, seconds=True)}, ended {_utc(call.ended_at, seconds=True)} (UTC)"
    )
    lines = [
        f"  Call {call.attempt_number}  {call.id}  {call.status.value}",
        f"    {', '.join(f for f in facts if f) or 'no result yet'}",
        f"    {times}",
    ]
    for turn in call.transcript:
        offset = f"{turn.start_ms // 60_000:02d}:{turn.start_ms // 1000 % 60:02d}"
        cut = " [interrupted]" if turn.interrupted else ""
        lines.append(f"    {offset}  {_SPEAKERS[turn.speaker]}: {turn.text}{cut}")
    for tool in call.tool_calls:
        arguments = json.dumps(tool.arguments, ensure_ascii=False)
        lines.append(f"    tool {tool.name}({arguments}) → {short(tool.result, 120)}")
    if call.recording_path:
        lines.append(f"    recording: {call.recording_path}")
    return lines


def _question_lines(question: QuestionView) -> list[str]:
    lines = [
        f"  {question.id}  {question.status.value}  asked "
        f"{_utc(question.asked_at, seconds=True)} UTC",
        f"    Q: {question.question}",
    ]
    if question.answer is not None:
        by = f" (by {question.answered_by}, {_utc(question.answered_at, seconds=True)} UTC)"
        lines.append(f"    A: {question.answer}{by}")
    elif question.status in _ANSWERABLE:
        lines.append(f'    answer with: opendeep answer {question.id.hex[:MIN_PREFIX]} "…"')
    return lines


def detail_lines(detail: TaskDetail) -> list[str]:
    """``task show``: the task, each call with its conversation, the questions, the events."""
    lines = _task_lines(detail.task)
    lines += ["", f"Calls ({len(detail.calls)})"]
    for call in detail.calls:
        lines += _call_lines(call)
    lines += ["", f"Questions ({len(detail.questions)})"]
    for question in detail.questions:
        lines += _question_lines(question)
    lines += ["", f"Events ({len(detail.events)}, UTC)"]
    kind_width = max((len(e.kind.value) for e in detail.events), default=0)
    lines += [
        f"  {_utc(e.at, seconds=True)}  {e.kind.value.ljust(kind_width)}  {e.message}"
        for e in detail.events
    ]
    return lines


def cancel_lines(view: TaskView) -> list[str]:
    """What ``task cancel`` did: cancelled at once, or flagged for the live call."""
    if view.status is TaskStatus.CANCELLED:
        return [f"Task {view.id} cancelled."]
    return [
        f"Task {view.id} is {view.status.value}: cancel requested; the live call will be "
        "ended politely."
    ]


def answer_lines(result: AnswerResult, task: TaskView) -> list[str]:
    """What ``answer`` did: in time (the live call uses it) or late (and when the callback is)."""
    question = result.question
    if not result.late:
        return [f"Answered in time: the live call will use it. ({short(question.question)})"]
    head = f"Answered late (the call had stopped waiting for “{short(question.question)}”)"
    if result.task_status in ACTIVE_TASK_STATUSES:
        return [f"{head}: a callback will be scheduled as soon as the current call is analysed."]
    if result.next_action_time is not None:
        return [
            f"{head}: a callback is scheduled at {_when_called(task, result.next_action_time)}."
        ]
    return [f"{head}: saved with task {task.id} ({result.task_status.value})."]


# -- commands -------------------------------------------------------------------------------


async def cmd_task_add(args: argparse.Namespace, settings: Settings, database: OpenDatabase) -> int:
    """Create a task: validate everything first, then write one PENDING row (or nothing)."""
    now = utcnow()
    zone_key = _zone_option(args.timezone)
    at = parse_when(args.at, zone_key, now=now) if args.at is not None else None
    async with database(settings) as db:
        tenant_id = await _tenant_id(db, args.tenant)
        view = await tasks.create_task(
            db,
            tenant_id,
            objective=args.objective,
            phone=args.to,
            context=args.context,
            title=args.title,
            callee_name=args.name,
            language=args.language,
            voice=args.voice,
            timezone=zone_key,
            at=at,
            max_attempts=args.max_attempts,
            voicemail_message=args.voicemail,
            settings=settings,
        )
    if args.json:
        _emit_json(view)
    else:
        tenant = args.tenant or accounts.DEFAULT_TENANT
        read_in = zone_key or f"this machine's zone ({dt.datetime.now().astimezone().tzname()})"
        _emit(added_lines(view, tenant, at or now, args.at if at is not None else None, read_in))
    return 0


async def cmd_task_list(
    args: argparse.Namespace, settings: Settings, database: OpenDatabase
) -> int:
    """List the tenant's tasks, newest first."""
    status = TaskStatus(args.status) if args.status else None
    async with database(settings) as db:
        tenant_id = await _tenant_id(db, args.tenant)
        rows = await tasks.list_tasks(db, tenant_id, status=status, limit=args.limit)
    if args.json:
        _emit_json(rows)
    else:
        _emit(table_lines(rows))
    return 0


async def cmd_task_show(
    args: argparse.Namespace, settings: Settings, database: OpenDatabase
) -> int:
    """Show one task with its calls, transcripts, questions and events."""
    async with database(settings) as db:
        tenant_id = await _tenant_id(db, args.tenant)
        task_id = await resolve_id(db, Task, tenant_id, args.id)
        detail = await tasks.get_task(db, tenant_id, task_id)
    if args.json:
        _emit_json(detail)
    else:
        _emit(detail_lines(detail))
    return 0


async def cmd_task_cancel(
    args: argparse.Namespace, settings: Settings, database: OpenDatabase
) -> int:
    """Cancel a task: a waiting one at once, a live one politely by its TaskActor."""
    async with database(settings) as db:
        tenant_id = await _tenant_id(db, args.tenant)
        task_id = await resolve_id(db, Task, tenant_id, args.id)
        view = await tasks.request_cancel(db, tenant_id, task_id, by=args.by or _default_actor())
    if args.json:
        _emit_json(view)
    else:
        _emit(cancel_lines(view))
    return 0


async def cmd_answer(args: argparse.Namespace, settings: Settings, database: OpenDatabase) -> int:
    """Answer a question the AI asked: in time, or late (which schedules a callback)."""
    async with database(settings) as db:
        tenant_id = await _tenant_id(db, args.tenant)
        request_id = await resolve_id(db, HitlRequest, tenant_id, args.request_id)
        result = await hitl.answer_question(
            db, tenant_id, request_id, args.text, answered_by=args.by or _default_actor()
        )
        task = (await tasks.get_task(db, tenant_id, result.question.task_id)).task
    if args.json:
        _emit_json({"late": result.late, **_plain(result)})
    else:
        _emit(answer_lines(result, task))
    return 0


# -- parser ---------------------------------------------------------------------------------


def _tenant_and_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", default=None, help="tenant name (default: 'default')")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _add_task_add(
    t_sub: Subparsers[argparse.ArgumentParser], bind: Callable[[Command], Handler]
) -> None:
    add = t_sub.add_parser("add", help="create a task (dialled when due)")
    add.add_argument("--to", required=True, help="the number to call, e.g. +14155550100")
    add.add_argument("--objective", required=True, help="what the call should achieve")
    add.add_argument("--context", default="", help="facts the AI may use on the call")
    add.add_argument(
        "--at",
        default=None,
        help="when: ISO 8601 or 'tomorrow at 3pm', 'in 10 minutes', 'now' (default: now)",
    )
    add.add_argument("--name", default=None, help="the callee's name")
    add.add_argument("--title", default=None, help="a short title (default: from the objective)")
    add.add_argument("--language", default="en", help="language tag of the call (default: en)")
    add.add_argument("--voice", default=None, help="the agent's voice (default: the setting)")
    add.add_argument(
        "--timezone",
        default=None,
        help="the callee's IANA zone (default: from the number); --at phrases are read in it",
    )
    add.add_argument("--max-attempts", type=int, default=None, help="counted attempts")
    add.add_argument("--voicemail", default=None, help="message to leave on voicemail")
    _tenant_and_json(add)
    add.set_defaults(handler=bind(cmd_task_add))


def register(sub: Subparsers[argparse.ArgumentParser], database: OpenDatabase) -> None:
    """Add ``task add|list|show|cancel`` and ``answer`` to the ``opendeep`` parser."""

    def bind(command: Command) -> Handler:
        async def handler(args: argparse.Namespace, settings: Settings) -> int:
            return await command(args, settings, database)

        return handler

    task = sub.add_parser("task", help="create, list, show and cancel tasks")
    t_sub = task.add_subparsers(dest="task_command", required=True)
    _add_task_add(t_sub, bind)

    listing = t_sub.add_parser("list", help="list tasks, newest first")
    listing.add_argument("--status", type=str.upper, choices=[s.value for s in TaskStatus])
    listing.add_argument("--limit", type=int, default=50, help="at most this many (≤ 500)")
    _tenant_and_json(listing)
    listing.set_defaults(handler=bind(cmd_task_list))

    show = t_sub.add_parser("show", help="a task with its calls, transcript and events")
    show.add_argument("id", help="task id (or a unique prefix of 8+ hex digits)")
    _tenant_and_json(show)
    show.set_defaults(handler=bind(cmd_task_show))

    cancel = t_sub.add_parser("cancel", help="cancel a task")
    cancel.add_argument("id", help="task id (or a unique prefix of 8+ hex digits)")
    cancel.add_argument("--by", default=None, help="who cancels (default: your login)")
    _tenant_and_json(cancel)
    cancel.set_defaults(handler=bind(cmd_task_cancel))

    answer = sub.add_parser("answer", help="answer a question the AI asked mid-call")
    answer.add_argument("request_id", help="question id (or a unique prefix of 8+ hex digits)")
    answer.add_argument("text", help="the answer")
    answer.add_argument("--by", default=None, help="who answers (default: your login)")
    _tenant_and_json(answer)
    answer.set_defaults(handler=bind(cmd_answer))
