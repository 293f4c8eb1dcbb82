"""Routes of the EasyVizAI API: ``/api/v1/llm/...`` and the WebSocket chat ``/ws/chat/{session_id}/``.

Handlers parse, call one core method, and render in the document's shapes; the
chat history lives in ``core.sessions``. See docs/api-easyviz.md.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from quart import jsonify, websocket

from llmd.core import Core
from llmd.core.sessions import ChatSessions, ChatTurn
from llmd.errors import InternalError, LlmdError, ValidationError
from llmd.http.body import parse_body
from llmd.http.easyviz import translate as t
from llmd.http.easyviz.schemas import CancelIn, ChatMessageIn, GenerateBody, GenerateResponse, ModelSwitchIn
from llmd.http.routing import Dialect
from llmd.http.sse import render_stream, sse_json, sse_response

log = logging.getLogger(__name__)

PREFIX = "/api/v1/llm"
ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def render_error(err: LlmdError, path: str) -> tuple[Any, int]:
    """``{"error": "..."}`` and the error's status."""
    return t.error_body(err), err.status


def build(core: Core) -> Dialect:
    """The EasyVizAI API bound to ``core``."""
    d = Dialect("easyviz", "EasyVizAI API", render_error, ERROR_SCHEMA, prefixes=(f"{PREFIX}/", "/ws/chat/"))

    @d.route(f"{PREFIX}/health/", summary="Service health and loaded models", auth="public")
    async def health() -> Any:
        """``status`` is ``healthy``, ``degraded`` (the current model is not loaded) or ``unhealthy`` (503)."""
        body, status = t.health_body(await core.monitor.health())
        return jsonify(body), status

    @d.route(f"{PREFIX}/models/", summary="List models", auth="inference")
    async def models() -> Any:
        """Registered models (``available_models``), the loaded ones, the current one and the device."""
        return jsonify(t.models_body(await core.models.list()))

    @d.route(f"{PREFIX}/models/<model_key>/", summary="One model", auth="inference")
    async def model(model_key: str) -> Any:
        """A model by registry name or alias; 404 listing the available names if there is none."""
        return jsonify(t.model_body(await core.models.view(model_key)))

    @d.route(f"{PREFIX}/models/<model_key>/load/", ("POST",), summary="Load a model", auth="admin")
    async def load(model_key: str) -> Any:
        """Loads the model into the engine and answers once it serves (500 if the load fails)."""
        loaded = await core.fleet.load(model_key)
        return jsonify({"message": f"Model {model_key} loaded successfully", "model": loaded.deployment.model,
                        "device": loaded.deployment.device})

    @d.route(f"{PREFIX}/models/<model_key>/unload/", ("POST",), summary="Unload a model", auth="admin")
    async def unload(model_key: str) -> Any:
        """Stops the model's deployment and frees its memory; unloading a model that is not loaded is a no-op."""
        done = await core.fleet.unload(model_key)
        msg = f"Model {model_key} unloaded successfully" if done.was_loaded else f"Model {model_key} was not loaded"
        return jsonify({"message": msg, "model": done.model, "was_loaded": done.was_loaded})

    @d.route(f"{PREFIX}/generate/", ("POST",), summary="Generate text", body=GenerateBody,
             response=GenerateResponse, auth="inference")
    async def generate() -> Any:
        """The prompt is the user's turn through the model's chat template; answers ``{response, model, prompt}``."""
        body = await parse_body(GenerateBody)
        gen = await core.inference.generate(t.generate_request(body, f"{PREFIX}/generate/"))
        result = await gen.collect_or_raise()
        return jsonify(t.generate_response(result, gen.model, body.prompt))

    @d.route(f"{PREFIX}/generate/stream/", ("POST",), summary="Generate text as SSE", body=GenerateBody, sse=True,
             auth="inference")
    async def generate_stream() -> Any:
        """SSE ``data: {"chunk": ...}`` events, then ``data: {"done": true}``; a failure is a final
        ``data: {"error": ...}``."""
        body = await parse_body(GenerateBody)
        gen = await core.inference.generate(t.generate_request(body, f"{PREFIX}/generate/stream/"))
        return sse_response(core.streams, render_stream(
            gen,
            token=lambda text: sse_json({"chunk": text}),
            end=lambda result: sse_json({"done": True, "model": gen.model,
                                         "finish_reason": result.finish_reason.value,
                                         "usage": result.usage.to_dict()}),
            error=lambda err: sse_json(t.error_body(err)),
        ))

    @d.websocket("/ws/chat/<session_id>/", summary="Chat over WebSocket", auth="inference")
    async def chat_ws(session_id: str) -> None:
        """The EasyVizAI chat: ``chat_message`` / ``model_switch`` / ``cancel`` in; chunks, ``assistant_done`` out."""
        await ChatSocket(core.sessions, session_id).serve()

    return d


def _retrieve(task: asyncio.Task) -> None:
    # An answer whose last send failed (the socket is gone) has nothing left to report.
    if not task.cancelled() and task.exception() is not None:
        log.debug("chat answer ended with %r", task.exception())


class ChatSocket:
    """One open chat WebSocket: reads client messages while an answer runs as a task.

    Per-connection only: it lives as long as the handler call, and the
    conversation itself is in the core's chat sessions.
    """

    def __init__(self, sessions: ChatSessions, session_id: str) -> None:
        self.sessions = sessions
        self.session_id = session_id
        self._send_lock = asyncio.Lock()
        self._answer: asyncio.Task | None = None
        self._turn: ChatTurn | None = None
        self._cancel_requested = False

    async def send(self, obj: dict[str, Any]) -> None:
        """Send one JSON message; answers and replies never interleave inside a frame."""
        async with self._send_lock:
            await websocket.send(t.dumps(obj))

    async def serve(self) -> None:
        """Accept, then handle messages until the client goes; a closed socket cancels the answer."""
        try:
            self.sessions.check_id(self.session_id)
        except LlmdError as err:
            await websocket.accept()
            await self.send(t.ws_error(err))
            await websocket.close(1008, "invalid session id")
            return
        await websocket.accept()
        try:
            while True:
                raw = await websocket.receive()
                await self.handle(raw)
        finally:
            answer = self._answer
            if answer is not None and not answer.done():
                answer.cancel()
                await asyncio.gather(answer, return_exceptions=True)

    async def handle(self, raw: str | bytes) -> None:
        """One client message; every failure becomes an ``error`` message and the socket stays open."""
        try:
            msg = t.parse_ws_message(raw)
            if isinstance(msg, CancelIn):
                self.cancel()
            elif isinstance(msg, ModelSwitchIn):
                model = await self.sessions.switch_model(self.session_id, msg.model)
                await self.send(t.ws_model_switched(model.name))
            elif isinstance(msg, ChatMessageIn):
                if self._answer is not None and not self._answer.done():
                    raise ValidationError("an answer is in progress; wait for it or send {\"type\": \"cancel\"}",
                                          field="type")
                self._cancel_requested = False
                self._answer = asyncio.create_task(self.answer(msg))
                self._answer.add_done_callback(_retrieve)
        except LlmdError as err:
            await self.send(t.ws_error(err))

    def cancel(self) -> None:
        """In-band cancel: stop the answer in progress (a no-op if there is none)."""
        if self._answer is None or self._answer.done():
            return
        self._cancel_requested = True
        if self._turn is not None:
            self._turn.cancel()

    async def answer(self, msg: ChatMessageIn) -> None:
        """Run one answer: chunks (or one message), then the closing message."""
        self._turn = None
        try:
            turn = await self.sessions.chat(
                self.session_id, msg.message, model=msg.model, params=t.sampling(msg.parameters),
                system=msg.system)
            self._turn = turn
            if self._cancel_requested:
                turn.cancel()
            model = turn.model
            on_text = (lambda text: self.send(t.ws_chunk(text, model))) if msg.stream else None
            result = await turn.run(on_text)
            if result.error is not None:
                await self.send(t.ws_error(result.error, model=model, content=result.text,
                                           finish_reason=result.finish_reason.value))
            else:
                await self.send(t.ws_end(result, model, stream=msg.stream))
        except LlmdError as err:
            await self.send(t.ws_error(err))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - logged with traceback, never sent
            log.exception("chat answer failed in session %s", self.session_id)
            await self.send(t.ws_error(InternalError("internal error; see the daemon's log")))
        finally:
            self._turn = None
