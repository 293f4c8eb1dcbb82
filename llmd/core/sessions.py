"""Chat sessions (conversation history) for the WebSocket chat of the EasyVizAI API.

A session is named by the client (``/ws/chat/{session_id}/``) and lives in the
store, so reconnecting, even after a daemon restart, continues the same
conversation. Each turn sends the whole conversation (the system prompt, if
any, the prior turns that fit, and the new message) through the model's chat
template; the slot's KV cache then reuses the shared prefix.

History rules (docs/api-easyviz.md):

- The user turn is stored once the engine has accepted the answer. A request
  the core refuses (unknown model, not loaded, busy, bad parameters) leaves no
  trace.
- The assistant turn is stored when the answer ends, with its status: ``ok``,
  ``length``, or, for an answer cut short, ``cancelled`` / ``error`` /
  ``shutdown`` and the partial text the client saw. A partial answer is part
  of the conversation as the user saw it, so it is sent to the model in later
  turns like any other. An answer cut short before any text is not stored.
- What is sent to the model is bounded by a token budget: the deployment's
  context minus the answer's ``max_tokens`` (when the request leaves it out,
  the configured default, at most half the context). The oldest turns go first; the
  system prompt and the new message always stay. The store keeps every turn.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from llmd.core.background import Background
from llmd.core.deployment import Generation
from llmd.core.fleet import Fleet
from llmd.core.inference import Inference
from llmd.core.registry import Model
from llmd.core.types import ChatMessage, FinishReason, GenerateRequest, GenerationResult, SamplingParams
from llmd.errors import ValidationError

# The newest messages read from the store for one turn, before the token
# budget trims them: a bound on the work of a very long session.
HISTORY_ROWS = 512
MAX_SESSION_ID = 128
MAX_MESSAGE_CHARS = 100_000

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatSession:
    """A session as stored: its current model (``None``: the default) and system prompt."""

    id: str
    model: str | None
    system_prompt: str | None


class ChatTurn:
    """One answer in a session: run it, cancel it; its assistant turn is stored when it ends."""

    def __init__(self, sessions: ChatSessions, session_id: str, gen: Generation, dropped: int) -> None:
        self._sessions = sessions
        self.session_id = session_id
        self.gen = gen
        self.model = gen.model
        self.dropped = dropped  # history messages left out to fit the context
        self.parts: list[str] = []
        self.result: GenerationResult | None = None

    @property
    def text(self) -> str:
        """The text produced so far."""
        return "".join(self.parts)

    def cancel(self) -> None:
        """Stop the answer (in-band cancel); :meth:`run` then returns a ``cancelled`` result."""
        self.gen.cancel(FinishReason.CANCELLED)

    async def run(self, on_text: Callable[[str], Awaitable[Any]] | None = None) -> GenerationResult:
        """Generate, calling ``on_text`` for each piece; store the assistant turn; return the result.

        If the calling task is cancelled (the socket closed) or ``on_text``
        fails, the generation is cancelled, freeing the engine, and the text
        produced so far is stored as a ``cancelled`` turn before re-raising.
        """
        try:
            async for event in self.gen:
                self.parts.append(event.text)
                if on_text is not None:
                    await on_text(event.text)
        except BaseException:
            self.gen.cancel(FinishReason.CANCELLED)
            await self._sessions._store_answer_shielded(self, self.text, "cancelled", None)
            raise
        result = self.gen.result
        assert result is not None
        self.result = result
        await self._sessions._store_answer(self, result.text, result.finish_reason.status,
                                           result.usage.completion_tokens)
        return result


class ChatSessions:
    """Conversation histories, persisted in the store by session id."""

    def __init__(self, repo: Any, fleet: Fleet, inference: Inference, background: Background) -> None:
        self.repo = repo  # llmd.store.sessions.ChatSessionRepo
        self.fleet = fleet
        self.inference = inference
        self.background = background

    @staticmethod
    def check_id(session_id: str) -> None:
        """Session ids are 1-128 characters, no control characters."""
        if not session_id or len(session_id) > MAX_SESSION_ID or any(ord(c) < 32 for c in session_id):
            raise ValidationError(f"a session id has 1 to {MAX_SESSION_ID} printable characters",
                                  field="session_id")

    async def get(self, session_id: str) -> ChatSession:
        """The session (an empty one if it was never written)."""
        self.check_id(session_id)
        row = await self.repo.get(session_id)
        if row is None:
            return ChatSession(session_id, None, None)
        return ChatSession(session_id, row["model"], row["system_prompt"])

    async def history(self, session_id: str) -> list[dict[str, Any]]:
        """Every stored message of the session, oldest first."""
        self.check_id(session_id)
        return await self.repo.messages(session_id)

    async def current_model(self, session_id: str) -> Model:
        """The model the session's next answer goes to: its own, or the default."""
        session = await self.get(session_id)
        return await self.fleet.resolve(session.model)

    async def switch_model(self, session_id: str, name: str) -> Model:
        """Make ``name`` (a registry name or alias) the session's model; 404 if unknown. Persisted."""
        self.check_id(session_id)
        if not name:
            raise ValidationError("model must not be empty", field="model")
        model = await self.fleet.resolve(name)
        await self.repo.set_model(session_id, model.name)
        return model

    async def chat(self, session_id: str, message: str, *, model: str | None = None,
                   params: SamplingParams = SamplingParams(), system: str | None = None,
                   dialect: str = "easyviz", endpoint: str = "/ws/chat") -> ChatTurn:
        """Start the answer to ``message`` in the session; errors are raised before anything is stored.

        ``model`` overrides the session's model for this answer only;
        ``system`` sets the session's system prompt (kept for later turns).
        """
        self.check_id(session_id)
        if not message:
            raise ValidationError("message must not be empty", field="message")
        if len(message) > MAX_MESSAGE_CHARS:
            raise ValidationError(f"message is longer than {MAX_MESSAGE_CHARS} characters", field="message")
        session = await self.get(session_id)
        dep = await self.fleet.serving(model or session.model)
        system_prompt = system if system is not None else session.system_prompt
        rows = await self.repo.messages(session_id, limit=HISTORY_ROWS)
        history = [ChatMessage(r["role"], r["content"]) for r in rows]
        messages, dropped = await dep.fit_chat(system_prompt, history, ChatMessage("user", message),
                                               params.max_tokens)
        gen = await self.inference.generate(GenerateRequest(
            messages=tuple(messages), model=dep.model.name, params=params, dialect=dialect, endpoint=endpoint))
        try:
            if system is not None and system != session.system_prompt:
                await self.repo.set_system_prompt(session_id, system or None)
            await self.repo.add_message(session_id, "user", message, model=dep.model.name,
                                                       prompt_tokens=gen.prompt_tokens)
        except BaseException:
            gen.cancel()
            raise
        return ChatTurn(self, session_id, gen, dropped)

    async def _store_answer(self, turn: ChatTurn, text: str, status: str, completion_tokens: int | None) -> None:
        if not text and status not in ("ok", "length"):
            return  # cut short before it said anything: nothing to keep
        await self.repo.add_message(
            turn.session_id, "assistant", text, model=turn.model, status=status,
            completion_tokens=completion_tokens)

    async def _store_answer_shielded(self, turn: ChatTurn, text: str, status: str,
                                     completion_tokens: int | None) -> None:
        # Called while the caller is being cancelled: the write runs as its own
        # task (which the core's shutdown waits for), so a second cancel cannot
        # lose it.
        task = self.background.spawn(self._store_answer(turn, text, status, completion_tokens))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            pass  # cancelled again: the write goes on in the background
        except Exception:  # noqa: BLE001 - never mask why the answer ended
            log.exception("storing the partial answer of chat session %s failed", turn.session_id)
