"""The human in the loop across a task's life: in time, too late, and during the analysis.

The callee asks for a policy number the agent lacks; the agent asks the task's creator
(``request_user_info``). The creator answers through the repository, as the UI, the API and
the CLI do; the TaskActor forwards the answer into the live call, or the answer schedules a
callback whose instructions carry it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from ai.gemini_sim import GeminiStandIn
from db.repo import hitl
from db.repo.views import QuestionView
from db.states import CallOutcome, EndReason, HitlStatus, TaskStatus
from tests.e2e._lifecycle import (
    DONE,
    LIFECYCLE_WORLD,
    NEEDS_INFO,
    NEEDS_INFO_CALLBACK,
    POLICY_NUMBER,
    Lifecycle,
    MakeLifecycle,
    lifecycle_fixture,  # noqa: F401 -- registers the fixture
    make_lifecycle_fixture,  # noqa: F401 -- registers the fixture
)

pytestmark = [pytest.mark.e2e, pytest.mark.world(LIFECYCLE_WORLD)]

ASKED = ["CALL_ANSWERED", "USER_INFO_REQUESTED"]
TIMED_OUT_CALL = [*ASKED, "USER_INFO_TIMEOUT", "CALL_ENDED", "ANALYZED"]
CALLBACK = ["DIAL_STARTED", "CALL_ANSWERED", "CALL_ENDED", "ANALYZED", "COMPLETED"]


async def _question(run: Lifecycle, task_id: uuid.UUID, status: HitlStatus) -> QuestionView:
    """The task's question once it is in ``status``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for question in await hitl.list_questions(run.db, run.tenant_id, task_id=task_id):
            if question.status is status:
                return question
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {status} question within 30 s: {await run.kinds(task_id)}")


async def _answer(run: Lifecycle, question: QuestionView) -> hitl.AnswerResult:
    return await hitl.answer_question(
        run.db, run.tenant_id, question.id, POLICY_NUMBER, answered_by="alex"
    )


@pytest.fixture
async def slow_gemini() -> AsyncIterator[GeminiStandIn]:
    """A Gemini stand-in that takes 3 s per analysis (the task stays ANALYZING meanwhile)."""
    async with GeminiStandIn(mode="slow", delay=3.0) as standin:
        yield standin


async def test_answer_in_time_goes_into_the_live_call(lifecycle: Lifecycle) -> None:
    task_id = await lifecycle.add_task(NEEDS_INFO)
    question = await _question(lifecycle, task_id, HitlStatus.PENDING)
    result = await _answer(lifecycle, question)
    assert result.question.status is HitlStatus.ANSWERED
    await (await lifecycle.task_actor(task_id)).nudge.remote()  # what the API does after answering
    detail = await lifecycle.wait_status(
        task_id, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.PENDING_USER_INFO
    )
    assert detail.task.status is TaskStatus.COMPLETED
    assert [e.kind.value for e in detail.events] == [
        "TASK_CREATED",
        "DIAL_STARTED",
        *ASKED,
        "USER_INFO_PROVIDED",
        "CALL_ENDED",
        "ANALYZED",
        "COMPLETED",
    ]
    (call,) = detail.calls
    assert call.outcome is CallOutcome.SUCCESS
    assert any(POLICY_NUMBER in t.text for t in call.transcript if t.speaker.value == "agent")
    assert [q.status for q in detail.questions] == [HitlStatus.ANSWERED]
    assert detail.task.collected_info[0].answer == POLICY_NUMBER


async def test_timeout_waits_for_the_answer_then_calls_back_with_it(lifecycle: Lifecycle) -> None:
    task_id = await lifecycle.add_task(NEEDS_INFO)
    detail = await lifecycle.wait_status(
        task_id, TaskStatus.PENDING_USER_INFO, TaskStatus.COMPLETED, TaskStatus.FAILED
    )
    assert detail.task.status is TaskStatus.PENDING_USER_INFO
    assert [e.kind.value for e in detail.events] == [
        "TASK_CREATED",
        "DIAL_STARTED",
        *TIMED_OUT_CALL,
        "USER_INFO_REQUESTED",
    ]
    (first,) = detail.calls
    assert first.end_reason is EndReason.USER_INFO_TIMEOUT
    assert first.outcome is CallOutcome.NEEDS_USER_INFO
    lifecycle.use_scenario(NEEDS_INFO_CALLBACK)  # the callee asks again; this agent knows
    result = await _answer(lifecycle, await _question(lifecycle, task_id, HitlStatus.TIMED_OUT))
    assert result.late and result.task_status is TaskStatus.RETRY_SCHEDULED
    for supervisor in lifecycle.supervisors:
        await supervisor.wake.remote()
    detail = await lifecycle.wait_status(task_id, TaskStatus.COMPLETED, TaskStatus.FAILED)
    assert detail.task.status is TaskStatus.COMPLETED
    assert [e.kind.value for e in detail.events] == [
        "TASK_CREATED",
        "DIAL_STARTED",
        *TIMED_OUT_CALL,
        "USER_INFO_REQUESTED",
        "USER_INFO_PROVIDED_LATE",
        "RETRY_SCHEDULED",
        *CALLBACK,
    ]
    first, second = detail.calls
    instructions = lifecycle.session_instructions(second.id)
    assert POLICY_NUMBER in instructions
    assert "This is a callback" in instructions
    assert POLICY_NUMBER not in lifecycle.session_instructions(first.id)
    assert second.outcome is CallOutcome.SUCCESS
    assert detail.task.current_attempt_count == 1  # NEEDS_USER_INFO is progress, not an attempt


async def test_answer_during_the_analysis_calls_back_without_waiting(
    make_lifecycle: MakeLifecycle, slow_gemini: GeminiStandIn
) -> None:
    run = await make_lifecycle(
        analysis="gemini", gemini_api_key="standin-gemini-key", gemini_base_url=slow_gemini.base_url
    )
    task_id = await run.add_task(NEEDS_INFO)
    question = await _question(run, task_id, HitlStatus.TIMED_OUT)
    await run.wait_status(task_id, TaskStatus.ANALYZING)  # Gemini takes 3 s to answer
    run.use_scenario(NEEDS_INFO_CALLBACK)
    result = await _answer(run, question)
    assert result.late and result.task_status is TaskStatus.ANALYZING
    detail = await run.wait_status(
        task_id, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.PENDING_USER_INFO
    )
    assert detail.task.status is TaskStatus.COMPLETED
    kinds = [e.kind.value for e in detail.events]
    assert kinds == [
        "TASK_CREATED",
        "DIAL_STARTED",
        *ASKED,
        "USER_INFO_TIMEOUT",
        "CALL_ENDED",
        "USER_INFO_PROVIDED_LATE",
        "ANALYZED",
        "RETRY_SCHEDULED",
        *CALLBACK,
    ]
    retry = next(e for e in detail.events if e.kind.value == "RETRY_SCHEDULED")
    assert "answer already in, calling back at" in retry.message
    first, second = detail.calls
    assert first.outcome is CallOutcome.NEEDS_USER_INFO
    assert (first.analysis or {}).get("source") == "gemini"
    assert POLICY_NUMBER in run.session_instructions(second.id)
    assert len(slow_gemini.requests) == 2  # one analysis per call, both by "Gemini"


async def test_gemini_failure_falls_back_to_the_rules_and_says_so(
    make_lifecycle: MakeLifecycle,
) -> None:
    async with GeminiStandIn(mode="http_500") as failing:
        run = await make_lifecycle(
            analysis="gemini", gemini_api_key="standin-gemini-key", gemini_base_url=failing.base_url
        )
        task_id = await run.add_task(DONE)
        detail = await run.wait_status(
            task_id, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.RETRY_SCHEDULED
        )
    assert [e.kind.value for e in detail.events] == [
        "TASK_CREATED",
        "DIAL_STARTED",
        "CALL_ANSWERED",
        "CALL_ENDED",
        "ANALYSIS_FALLBACK",
        "ANALYZED",
        "COMPLETED",
    ]
    fallback = detail.events[4]
    assert fallback.message.startswith("Analysed by the built-in rules: ")
    assert "500" in fallback.message
    assert (detail.calls[0].analysis or {}).get("source") == "rules"


async def test_unanswered_question_expires_and_fails_the_task(
    make_lifecycle: MakeLifecycle,
) -> None:
    run = await make_lifecycle(pending_user_info_expiry="2s")
    task_id = await run.add_task(NEEDS_INFO)
    detail = await run.wait_status(task_id, TaskStatus.FAILED, TaskStatus.COMPLETED, within=60)
    assert detail.task.status is TaskStatus.FAILED
    assert [e.kind.value for e in detail.events] == [
        "TASK_CREATED",
        "DIAL_STARTED",
        *TIMED_OUT_CALL,
        "USER_INFO_REQUESTED",
        "EXPIRED",
    ]
    assert detail.events[-1].message.startswith("No answer from the task's creator within ")
    assert [q.status for q in detail.questions] == [HitlStatus.EXPIRED]
    waited = (detail.events[-1].at - detail.events[-2].at).total_seconds()
    assert 2.0 <= waited < 6.0
