"""The TaskActor's post-call step: facts from the rows, the analysis, the policy, one write.

After every call (DESIGN.md §4 "Analysis") the TaskActor reads the persisted call (transcript,
tool calls, end reason, telephony result, AMD verdict) and the questions it asked, has them
analysed (Gemini, or the rules when Gemini is off or fails; the fallback is written as an
``ANALYSIS_FALLBACK`` event), applies :func:`db.policy.decide` and records analysis and
decision in one transaction (:func:`db.repo.system.finish_analysis`).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from ai.analysis import AnalysisResult, CallFacts, HitlSummary, analyse_by_rules
from db.engine import Database
from db.policy import Decision, PolicyInput, decide
from db.repo._core import StaleVersionError
from db.repo.hitl import list_questions
from db.repo.snapshots import CallSnapshot, TaskSnapshot, load_task_snapshot
from db.repo.system import begin_analysis, finish_analysis, note_task_event
from db.repo.views import QuestionView
from db.states import EventKind, TaskStatus
from opendeep.settings import Settings

__all__ = ["Analyse", "call_facts", "conclude_call", "policy_input"]

log = logging.getLogger(__name__)

Analyse = Callable[[CallFacts], Awaitable[AnalysisResult]]
"""``Analyser(settings).analyse``: what the TaskActor asks about one call."""
_DECIDE_TRIES: Final = 3  # a late answer can arrive between deciding and writing, once or twice


def call_facts(
    snap: TaskSnapshot,
    call: CallSnapshot,
    questions: Sequence[QuestionView],
    *,
    now: dt.datetime,
) -> CallFacts:
    """What the analysers read about ``call``, built from its rows."""
    return CallFacts(
        call_id=call.id,
        objective=snap.objective,
        context=snap.context,
        callee_name=snap.callee_name,
        timezone=snap.window.zones[0],
        language=snap.language,
        telephony_result=call.telephony_result,
        end_reason=call.end_reason,
        originate_reason=call.originate_reason,
        hangup_cause=call.hangup_cause,
        amd_verdict=call.amd_verdict,
        transcript=list(call.transcript),
        tool_calls=list(call.tool_calls),
        hitl=[
            HitlSummary(question=q.question, status=q.status, answer=q.answer)
            for q in sorted(questions, key=lambda q: q.asked_at)
            if q.call_id == call.id
        ],
        ended_at=call.ended_at or now,
    )


def policy_input(
    snap: TaskSnapshot,
    result: AnalysisResult,
    *,
    settings: Settings,
    now: dt.datetime,
    answer_ready: bool,
) -> PolicyInput:
    """The policy's view of the task after ``result`` (``snap`` read after the call ended)."""
    return PolicyInput(
        outcome=result.outcome,
        counted_attempts=snap.current_attempt_count,
        total_calls=max(snap.total_calls, 1),
        max_attempts=snap.max_attempts,
        max_calls=settings.max_calls_per_task,
        requested_time=result.callback_time,
        answer_ready=answer_ready,
        now=now,
        window=snap.window,
        backoff=snap.backoff,
        horizon=settings.retry_horizon_seconds,
    )


async def _analyse(analyse: Analyse, facts: CallFacts) -> tuple[AnalysisResult, str | None]:
    """The analysis and, when the rules stood in for it, why."""
    try:
        result = await analyse(facts)
    except Exception as exc:  # an analyser bug must not strand the task: the rules decide
        log.exception("call %s: analysis failed; the rules decide", facts.call_id)
        return analyse_by_rules(facts), f"the analyser failed ({type(exc).__name__})"
    return result, result.fallback_reason


async def conclude_call(
    db: Database,
    task_id: uuid.UUID,
    *,
    owner: str,
    settings: Settings,
    analyse: Analyse,
    now: Callable[[], dt.datetime],
) -> TaskStatus:
    """Analyse the task's last (ended) call and apply the policy; the task's new status."""
    snap = await load_task_snapshot(db, task_id)
    call = snap.last_call
    if call is None:
        raise ValueError(f"task {task_id} is {snap.status} without a call to analyse")
    await begin_analysis(db, task_id, owner=owner, call_id=call.id, now=now())
    questions = await list_questions(db, snap.tenant_id, task_id=task_id)
    result, fallback = await _analyse(analyse, call_facts(snap, call, questions, now=now()))
    if fallback:
        await note_task_event(
            db,
            task_id,
            owner=owner,
            kind=EventKind.ANALYSIS_FALLBACK,
            message=f"Analysed by the built-in rules: {fallback}",
            data={"reason": fallback, "source": result.source},
            call_id=call.id,
            now=now(),
        )
    answer_ready = snap.late_answer_ready
    for _ in range(_DECIDE_TRIES):
        decision = _decide(snap, result, settings=settings, now=now(), answer_ready=answer_ready)
        try:
            return await finish_analysis(
                db,
                task_id,
                owner=owner,
                call_id=call.id,
                outcome=result.outcome,
                summary=result.summary,
                analysis_json=result.model_dump(mode="json"),
                decision=decision,
                now=now(),
            )
        except StaleVersionError:
            # A late answer came in after the snapshot: call back now instead of waiting.
            answer_ready = True
            snap = await load_task_snapshot(db, task_id)
    raise StaleVersionError(f"task {task_id}: the analysis could not be recorded")


def _decide(
    snap: TaskSnapshot,
    result: AnalysisResult,
    *,
    settings: Settings,
    now: dt.datetime,
    answer_ready: bool,
) -> Decision:
    return decide(policy_input(snap, result, settings=settings, now=now, answer_ready=answer_ready))
