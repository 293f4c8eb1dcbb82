"""Port-bound deployments: the OpenAI API of one model on a port of its own.

A deployment started with ``port`` is also served on ``<server.host>:<port>``.
The daemon's listener there (``llmd.daemon.listeners``) runs the same Quart
app that ``create_app`` built, wrapped in this small ASGI layer, which

- admits only ``/v1/...`` paths (anything else is a 404 in OpenAI's envelope);
- pins the model: the JSON body's ``"model"`` is rewritten to the deployment's
  model, whatever the client named, and ``GET /v1/models`` lists only it.

So authentication, limits and error rendering stay in one place.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any, Awaitable, Callable
from urllib.parse import quote

from llmd.errors import LlmdError, ModelNotFoundError, NotFoundError
from llmd.http.body import load_json_object
from llmd.http.openai_format import error_body

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _json_response(status: int, body: dict[str, Any]) -> list[dict[str, Any]]:
    data = json.dumps(body).encode("utf-8")
    return [{"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]},
            {"type": "http.response.body", "body": data, "more_body": False}]


class PortApp:
    """ASGI wrapper of the main app that serves only ``/v1/`` for one pinned model."""

    def __init__(self, app: Any, model: str, max_body_bytes: int) -> None:
        self.app = app
        self.model = model
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection: lifespan, ``/v1/`` requests with the model pinned, 404 otherwise."""
        kind = scope["type"]
        if kind == "lifespan":  # the main app's lifespan already ran on the main listener
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if kind != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        path = scope.get("path", "")
        if not path.startswith("/v1/"):
            err = NotFoundError(f"this port serves only the OpenAI API (/v1/...) of model '{self.model}'")
            for msg in _json_response(err.status, error_body(err)):
                await send(msg)
            return
        method = scope.get("method", "GET")
        if method == "GET" and path.rstrip("/") == "/v1/models":
            await self._list_models(scope, receive, send)
            return
        if method == "GET" and path.startswith("/v1/models/") and \
                urllib.parse.unquote(path[len("/v1/models/"):]).rstrip("/") != self.model:
            # this port knows one model only: the others do not exist here
            err = ModelNotFoundError(f"this port serves only model '{self.model}'", field="model")
            for msg in _json_response(err.status, error_body(err)):
                await send(msg)
            return
        if method == "POST":
            receive, scope = await self._pin_body(scope, receive)
        await self.app(scope, receive, send)

    async def _pin_body(self, scope: Scope, receive: Receive) -> tuple[Receive, Scope]:
        """Read the body, set its ``model``; a body the app will refuse (oversized, not a JSON object, nested
        too deep, a non-finite number) passes unchanged, so the app answers its 400 or 413."""
        chunks: list[bytes] = []
        size, more = 0, True
        first: dict[str, Any] | None = None
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                first = msg  # a disconnect: hand it on
                break
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            more = msg.get("more_body", False)
            if size > self.max_body_bytes:
                break
        body = b"".join(chunks)
        if not more and first is None:
            try:
                data = load_json_object(body)  # bounded: json.loads alone raises RecursionError on deep nesting
            except LlmdError:
                data = None
            if isinstance(data, dict):
                data["model"] = self.model
                body = json.dumps(data).encode("utf-8")
                headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                scope = {**scope, "headers": headers}
        pending: list[dict[str, Any]] = [{"type": "http.request", "body": body, "more_body": more}]
        if first is not None:
            pending.append(first)

        async def replay() -> dict[str, Any]:
            if pending:
                return pending.pop(0)
            return await receive()

        return replay, scope

    async def _list_models(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /v1/models``: the main app's ``/v1/models/<model>`` object, as a one-item list."""
        path = f"/v1/models/{self.model}"
        inner = {**scope, "path": path, "raw_path": quote(path).encode("ascii"), "query_string": b""}
        start: dict[str, Any] = {}
        body: list[bytes] = []

        async def capture(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                start.update(msg)
            elif msg["type"] == "http.response.body":
                body.append(msg.get("body", b""))

        await self.app(inner, receive, capture)
        data = b"".join(body)
        if start.get("status") == 200:
            try:
                obj = json.loads(data)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                for msg in _json_response(200, {"object": "list", "data": [obj]}):
                    await send(msg)
                return
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(data)).encode()))
        await send({"type": "http.response.start", "status": start.get("status", 500), "headers": headers})
        await send({"type": "http.response.body", "body": data, "more_body": False})
