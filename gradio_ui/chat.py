"""The New task tab: a chat that gathers a task, shows a summary card, creates it on "yes".

The dialogue itself is the intake's (:mod:`gradio_ui.intake`: Gemini with function calling,
or the rule-based one). This module keeps the draft per browser session (``gr.State``),
streams each reply into the chat a few words at a time (so the page shows it growing, also
through the Serve proxy), and writes the task only when the user confirms — with the
Confirm button or by typing yes. A refused task (bad number, DNC, calling window) is
explained in the chat and the draft is kept, so one correction is enough.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import gradio as gr
from gradio.components.chatbot import Message, MessageDict

from db.repo import tasks
from db.repo._core import RepoError
from db.repo.views import TaskView
from db.shapes import utcnow
from gradio_ui import render
from gradio_ui.intake_types import Draft, Intake, draft_to_task_kwargs
from gradio_ui.login import Account, Login
from serve_app.services import Services

log = logging.getLogger(__name__)

STREAM_WORDS: Final = 3
"""Words added to the reply per streamed update."""
STREAM_PAUSE: Final = 0.02
"""Seconds between streamed updates: each reaches the browser as its own message."""
GREETING: Final = (
    "Hi! Who should I call, and what should I get done? For example: *call Dr Smith at "
    "+1 415 555 0100 tomorrow at 10am to move my appointment to next week*."
)
LOCK_INPUT: Final = """(text) => (text || "").trim()
    ? [{__type__: "update", value: "", interactive: false},
       {__type__: "update", interactive: false}, text]
    : [{__type__: "update"}, {__type__: "update"}, ""]"""
"""Browser side of a send: empty and lock the input, hand its text to the reply."""
UNLOCK_INPUT: Final = """() => [{__type__: "update", interactive: true},
    {__type__: "update", interactive: true}]"""
"""Browser side of a finished reply: the input takes the next message."""
GIVE_BACK_INPUT: Final = """(text) => [{__type__: "update", value: text, interactive: true},
    {__type__: "update", interactive: true}]"""
"""Browser side of a failed turn: the message is back in the box, to send again."""
THINKING: Final = "…"
"""Shown while the intake thinks (Gemini may take a second or two)."""

Role = Literal["user", "assistant"]
Line = tuple[Role, str]


def empty_draft() -> Draft:
    """A draft with nothing gathered yet."""
    return Draft()


@dataclass(frozen=True, slots=True)
class ChatState:
    """One browser session's conversation: the draft so far and what was said."""

    draft: Draft
    history: tuple[tuple[str, str], ...] = ()
    """(role, text) pairs the intake has seen, role ``user`` or ``assistant``."""
    messages: tuple[Line, ...] = ()
    """What the chat shows (it also keeps the outcomes of confirmations)."""
    ready: bool = False
    """The draft is complete and its card is shown: a confirmation creates it."""
    card: str = ""
    """The summary card to show above the buttons; empty when the reply already holds it."""


def fresh_state() -> ChatState:
    """A new conversation."""
    return ChatState(draft=empty_draft(), messages=(("assistant", GREETING),))


def shown(messages: Sequence[Line]) -> list[MessageDict | Message]:
    """The chat's messages in Gradio's message format."""
    return [MessageDict(role=role, content=text) for role, text in messages]


def pieces(text: str, words: int = STREAM_WORDS) -> list[str]:
    """Growing prefixes of ``text``, ``words`` words more each, ending with all of it."""
    parts = text.split(" ")
    out = [" ".join(parts[:i]) for i in range(words, len(parts), words)]
    return [*out, text]


class Chat:
    """Handlers of the New task tab."""

    def __init__(self, services: Services, login: Login, intake: Intake) -> None:
        self._services = services
        self._login = login
        self._intake = intake

    def build(self, zone: gr.Textbox) -> None:
        """Lay the tab out inside the current ``gr.Tab`` and wire its events."""
        start = fresh_state()
        state = gr.State(start)
        chatbot = gr.Chatbot(
            shown(start.messages),
            label="New task",
            height=460,
            elem_id="od-chat",
            feedback_options=None,
            buttons=["copy"],
        )
        card = gr.Markdown("", visible=False, elem_id="od-summary-card")
        with gr.Row(visible=False, elem_id="od-confirm-row") as actions:
            confirm = gr.Button(
                "Confirm and create", variant="primary", elem_id="od-confirm-button"
            )
            restart = gr.Button("Start over", elem_id="od-restart-button")
        with gr.Row():
            box = gr.Textbox(
                placeholder="Describe the call…",
                show_label=False,
                scale=6,
                autofocus=True,
                elem_id="od-chat-input",
            )
            send = gr.Button("Send", variant="primary", scale=1, elem_id="od-chat-send")
        pending = gr.Textbox(visible=False, elem_id="od-chat-pending")
        outputs = [chatbot, state, box, card, actions]
        # The browser empties and locks the input the instant a message is sent, so nothing
        # typed after it can be wiped by a late server update and no second message can
        # overtake the reply; the input unlocks when the reply ends, and if the turn failed
        # the message is put back in the box. A send that still slips in before the reply has
        # finished runs after it, on the state it left (Gradio's default would drop it).
        taken = gr.on(
            [box.submit, send.click],
            None,
            [box],
            [box, send, pending],
            js=LOCK_INPUT,
            queue=False,
            api_visibility="private",
        )
        reply = taken.then(
            self.send,
            [pending, state, zone],
            outputs,
            api_name="chat_send",
            concurrency_limit=None,
            trigger_mode="always_last",
        )
        reply.success(None, None, [box, send], js=UNLOCK_INPUT, queue=False)
        reply.failure(None, [pending], [box, send], js=GIVE_BACK_INPUT, queue=False)
        confirm.click(self.confirm, [state, zone], outputs, api_name="chat_confirm")
        restart.click(self.restart, None, outputs, api_name="chat_restart")
        chatbot.clear(self.restart, None, outputs, api_visibility="private")  # its bin icon

    async def send(
        self, message: str | None, state: ChatState, zone: str | None, request: gr.Request
    ) -> AsyncIterator[tuple[Any, ...]]:
        """One user turn: the intake's reply, streamed; the task is created on confirmation."""
        text = (message or "").strip()
        if not text:
            yield (gr.skip(),) * 5
            return
        was_ready = state.ready  # the card the user may be confirming was on screen
        said: tuple[Line, ...] = (*state.messages, ("user", text))
        state = dataclasses.replace(state, messages=said)
        yield self._view(state)
        yield self._view(say(state, THINKING), partial=True)
        account = await self._login.account(request)
        if account is None:
            async for update in self._stream(say(state, "Please log in first.")):
                yield update
            return
        tz = render.user_zone(zone)
        turn = await self._intake.respond(
            state.draft, state.history, text, now=utcnow(), user_zone=tz.key
        )
        history = (*state.history, ("user", text), ("assistant", turn.reply))
        card = turn.draft.card() if turn.ready else ""
        if card and card in turn.reply:
            card = ""  # the intake put the card in its reply (the rules intake does)
        state = dataclasses.replace(
            state, draft=turn.draft, history=history, ready=turn.ready, card=card
        )
        state = say(state, turn.reply)
        async for update in self._stream(state):
            yield update
        if turn.confirmed and was_ready and not turn.draft.missing():
            state = await self._create(account, state, tz)
            async for update in self._stream(state):
                yield update

    async def confirm(
        self, state: ChatState, zone: str | None, request: gr.Request
    ) -> AsyncIterator[tuple[Any, ...]]:
        """The Confirm button: create the task from the shown card."""
        account = await self._login.account(request)
        if account is None:
            reply = "Please log in first."
        elif not state.ready or state.draft.missing():
            reply = "There is nothing to confirm yet: tell me who to call and what to do."
        else:
            state = await self._create(account, state, render.user_zone(zone))
            reply = ""
        async for update in self._stream(say(state, reply) if reply else state):
            yield update

    async def restart(self) -> tuple[Any, ...]:
        """Start over: forget the draft, keep nothing of the old conversation."""
        return self._view(fresh_state(), box="")

    async def _create(self, account: Account, state: ChatState, tz: ZoneInfo) -> ChatState:
        """Write the task and say so; on refusal keep the draft and say why in plain words."""
        try:
            view = await tasks.create_task(
                self._services.db,
                account.tenant_id,
                created_by=account.user_id,
                settings=self._services.settings,
                **draft_to_task_kwargs(state.draft),
            )
        except (RepoError, ValueError) as exc:
            log.info("UI task refused for %s: %s", account.username, exc)
            reply = (
                f"⚠️ I could not create the task: {exc}. Tell me what to change "
                "(for example another number or time) and confirm again."
            )
            return say(state, reply)
        self._services.nudger.wake_supervisor()
        log.info("UI task %s created by %s", view.id, account.username)
        fresh = dataclasses.replace(state, draft=empty_draft(), history=(), ready=False, card="")
        return say(fresh, created_message(view, tz))

    async def _stream(self, state: ChatState) -> AsyncIterator[tuple[Any, ...]]:
        """Yield the chat with its last message growing, then ``state`` itself."""
        *base, (role, reply) = state.messages
        for part in pieces(reply)[:-1]:
            growing = dataclasses.replace(state, messages=(*base, (role, part)))
            yield self._view(growing, partial=True)
            await asyncio.sleep(STREAM_PAUSE)
        yield self._view(state)

    @staticmethod
    def _view(state: ChatState, box: Any = None, *, partial: bool = False) -> tuple[Any, ...]:
        """(chat, state, input box, card, confirm row) for ``state``.

        While a reply is still growing (``partial``) only the chat changes.
        """
        box_update = gr.skip() if box is None else box
        if partial:
            return shown(state.messages), gr.skip(), box_update, gr.skip(), gr.skip()
        card = state.card if state.ready else ""
        return (
            shown(state.messages),
            state,
            box_update,
            gr.Markdown(card, visible=bool(card)),
            gr.Row(visible=state.ready),
        )


def say(state: ChatState, reply: str) -> ChatState:
    """``state`` with the assistant's ``reply`` added to the chat."""
    return dataclasses.replace(state, messages=(*state.messages, ("assistant", reply)))


def created_message(view: TaskView, tz: ZoneInfo) -> str:
    """The chat's answer to a created task: its id, first call time, and where to watch it."""
    due = render.when(view.next_action_time, tz)
    return (
        f"✅ **Task created** — id `{view.id}`.\n\n"
        f"First call: {due} ({tz.key}). Watch it on the **Dashboard** tab "
        "(pick it in the task list to follow the call live); if the AI needs something from "
        "you during the call, it asks in the **Questions** tab."
    )
