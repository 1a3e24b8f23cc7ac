"""A local stand-in of Gemini's ``generateContent`` REST method, for tests and the demo.

Point the real ``google-genai`` client at it (``HttpOptions(base_url=standin.base_url)``): it
accepts ``POST /{v1|v1beta|v1alpha}/models/{model}:generateContent`` with the
``x-goog-api-key`` header (or ``?key=``), checks the request's shape (``contents``,
``generationConfig.responseMimeType`` and ``responseSchema``) and answers in the real response
shape (``candidates[0].content.parts[0].text``, ``finishReason``, ``usageMetadata``). In the
``normal`` mode the answer is the rules analyser's verdict on the call record embedded in the
prompt, so results mean something; other modes misbehave on purpose (slow, invalid JSON,
HTTP 500, a refused key, a blocked answer). Errors use Google's error shape.

A request declaring the chat intake's functions (``update_task_draft``, ``confirm_task``) is
answered the way Gemini drives that dialogue, with ``functionCall`` and text parts
(:mod:`ai.gemini_sim_intake`); the modes apply to it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from dataclasses import dataclass
from typing import Any, Final, Literal

from aiohttp import web

from ai.analysis import PROMPT_MARKER, CallFacts, analyse_by_rules
from ai.gemini_sim_intake import intake_parts, intake_problems, is_intake_request

__all__ = ["GeminiStandIn", "RecordedRequest", "StandInMode", "answer_for"]

log = logging.getLogger(__name__)

StandInMode = Literal["normal", "slow", "invalid_json", "http_500", "wrong_key", "blocked"]
"""How the stand-in behaves: see the module docstring."""

_VERSIONS: Final = ("v1", "v1beta", "v1alpha")
_JSON: Final = "application/json"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the stand-in received it (tests assert on what the client sent)."""

    api_version: str
    model: str
    method: str
    api_key: str | None
    body: dict[str, Any]

    @property
    def prompt(self) -> str:
        """Every text part of ``contents``, joined."""
        return _prompt_of(self.body)

    @property
    def system_instruction(self) -> str:
        """Every text part of ``systemInstruction``, joined."""
        parts = self.body.get("systemInstruction", {}).get("parts", [])
        return "\n".join(str(p["text"]) for p in parts if "text" in p)

    @property
    def function_names(self) -> list[str]:
        """The names of the functions the request declares (empty without tools)."""
        tools = self.body.get("tools") or []
        return [
            str(d.get("name"))
            for t in tools
            if isinstance(t, dict)
            for d in t.get("functionDeclarations") or []
            if isinstance(d, dict)
        ]

    @property
    def generation_config(self) -> dict[str, Any]:
        """The request's ``generationConfig`` (empty when absent)."""
        config = self.body.get("generationConfig", {})
        return config if isinstance(config, dict) else {}


def _prompt_of(body: dict[str, Any]) -> str:
    contents = body.get("contents", [])
    parts = (p for c in contents if isinstance(c, dict) for p in c.get("parts", []))
    return "\n".join(str(p["text"]) for p in parts if isinstance(p, dict) and "text" in p)


def _error(status: int, code: str, message: str, reason: str | None = None) -> web.Response:
    """An error in Google's JSON shape."""
    error: dict[str, Any] = {"code": status, "message": message, "status": code}
    if reason is not None:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ]
    return web.json_response({"error": error}, status=status)


def facts_from_prompt(prompt: str) -> CallFacts:
    """The call record :func:`ai.analysis.render_prompt` embedded in a prompt."""
    _, found, rest = prompt.partition(PROMPT_MARKER)
    if not found:
        raise ValueError("no call record in the prompt")
    record, _ = json.JSONDecoder().raw_decode(rest.strip())
    return CallFacts.model_validate(record)


def answer_for(facts: CallFacts) -> dict[str, Any]:
    """What a sensible analyst would answer for this call: the rules' verdict, schema-shaped."""
    result = analyse_by_rules(facts)
    local = result.callback_time.astimezone(facts.zone) if result.callback_time else None
    return {
        "outcome": result.outcome.value,
        "summary": result.summary,
        "facts": [{"name": k, "value": v} for k, v in result.facts.items()],
        "objective_met": result.objective_met,
        "callback_time_local": local.replace(tzinfo=None).isoformat("T", "minutes")
        if local
        else None,
        "do_not_call": result.do_not_call,
    }


def _shape_problems(body: Any) -> list[str]:
    """What is wrong with a generateContent request: its contents, and then the functions of
    an intake request or the JSON schema of an analysis request."""
    if not isinstance(body, dict):
        return ["the body must be a JSON object"]
    problems = []
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        problems.append("contents must be a non-empty list")
    elif not all(isinstance(c, dict) and c.get("parts") for c in contents):
        problems.append("every content needs parts")
    if is_intake_request(body):
        return [*problems, *intake_problems(body)]
    config = body.get("generationConfig")
    if not isinstance(config, dict):
        return [*problems, "generationConfig is missing"]
    if config.get("responseMimeType") != _JSON:
        problems.append(f"generationConfig.responseMimeType must be {_JSON}")
    schema = config.get("responseSchema") or config.get("responseJsonSchema")
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        problems.append("generationConfig.responseSchema must describe an object")
    return problems


class GeminiStandIn:
    """A local ``generateContent`` server speaking Gemini's REST protocol."""

    def __init__(
        self,
        *,
        api_key: str = "standin-gemini-key",
        mode: StandInMode = "normal",
        host: str = "127.0.0.1",
        port: int = 0,
        delay: float = 30.0,
    ) -> None:
        self.mode: StandInMode = mode
        self.delay = delay
        """How long the ``slow`` mode waits before answering (seconds)."""
        self.reply: dict[str, Any] | None = None
        """A canned answer object to send instead of the computed one (normal mode)."""
        self.requests: list[RecordedRequest] = []
        self._api_key = api_key
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        """What to pass as the SDK's ``HttpOptions(base_url=…)``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        """Listen for requests."""
        app = web.Application()
        app.router.add_post("/{version}/models/{target}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        self._port = int(self._runner.addresses[0][1])
        self._closing.clear()
        log.info("Gemini stand-in listening on %s (mode %s)", self.base_url, self.mode)

    async def stop(self) -> None:
        """Stop listening; requests still waiting in ``slow`` mode end at once."""
        self._closing.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> GeminiStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        version = request.match_info["version"]
        model, _, method = request.match_info["target"].partition(":")
        if version not in _VERSIONS or method != "generateContent" or not model:
            return _error(404, "NOT_FOUND", f"unknown method {request.path}")
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        try:
            body = await request.json()
        except ValueError:
            body = None
        recorded = body if isinstance(body, dict) else {}
        self.requests.append(RecordedRequest(version, model, method, key, recorded))
        if not key:
            return _error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers. "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        if key != self._api_key or self.mode == "wrong_key":
            message = "API key not valid. Please pass a valid API key."
            return _error(400, "INVALID_ARGUMENT", message, reason="API_KEY_INVALID")
        problems = _shape_problems(body)
        if problems:
            return _error(400, "INVALID_ARGUMENT", "; ".join(problems))
        return await self._answer(model, recorded)

    async def _answer(self, model: str, body: dict[str, Any]) -> web.Response:
        if self.mode == "http_500":
            message = "An internal error has occurred. Please retry or report the problem."
            return _error(500, "INTERNAL", message)
        if self.mode == "slow":
            # Waiting the whole delay is the point; stop() ends the wait early.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.delay)
        prompt = _prompt_of(body)
        if self.mode == "blocked":
            return web.json_response(self._envelope(model, prompt, None, finish="SAFETY"))
        if is_intake_request(body):
            return self._intake_answer(model, prompt, body)
        return self._analysis_answer(model, prompt)

    def _intake_answer(self, model: str, prompt: str, body: dict[str, Any]) -> web.Response:
        """A chat-intake turn: function calls and text, as Gemini drives that dialogue."""
        try:
            parts = intake_parts(body)
        except ValueError as exc:
            return _error(400, "INVALID_ARGUMENT", f"stand-in: cannot read the draft: {exc}")
        return web.json_response(self._envelope(model, prompt, None, parts=parts))

    def _analysis_answer(self, model: str, prompt: str) -> web.Response:
        """A post-call analysis: the rules' verdict as schema-shaped JSON (or a canned one)."""
        if self.mode == "invalid_json":
            return web.json_response(self._envelope(model, prompt, '{"outcome": "SUCCESS", "summ'))
        if self.reply is not None:
            return web.json_response(self._envelope(model, prompt, json.dumps(self.reply)))
        try:
            facts = facts_from_prompt(prompt)
        except ValueError as exc:
            return _error(400, "INVALID_ARGUMENT", f"stand-in: cannot read the call record: {exc}")
        text = json.dumps(answer_for(facts), ensure_ascii=False)
        return web.json_response(self._envelope(model, prompt, text))

    def _envelope(
        self,
        model: str,
        prompt: str,
        text: str | None,
        *,
        parts: list[dict[str, Any]] | None = None,
        finish: str = "STOP",
    ) -> dict[str, Any]:
        """The response body: one candidate, its finish reason, and usage counts."""
        candidate: dict[str, Any] = {"finishReason": finish, "index": 0}
        answer = text or ""
        if text is not None:
            parts = [{"text": text}]
        elif parts is not None:
            answer = json.dumps(parts)
        if parts is not None:
            candidate["content"] = {"parts": parts, "role": "model"}
        prompt_tokens, answer_tokens = len(prompt) // 4 + 1, len(answer) // 4
        return {
            "candidates": [candidate],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": answer_tokens,
                "totalTokenCount": prompt_tokens + answer_tokens,
            },
            "modelVersion": model,
            "responseId": f"standin-{next(self._ids)}",
        }
