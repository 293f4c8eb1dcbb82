"""Routes of llama.cpp's server API that llmd serves: the tokenizer and the chat template.

Shapes as llama-server answers them, so its clients and scripts work
unchanged; ``model`` is an extension (llama-server serves one model).
"""

from __future__ import annotations

from typing import Any

from quart import jsonify

from llmd.core import Core
from llmd.core.toolcalls import tool_specs_from_openai
from llmd.core.types import GenerateRequest
from llmd.errors import LlmdError
from llmd.http.body import parse_body
from llmd.http.llama_server.schemas import ApplyTemplateBody, DetokenizeBody, TokenizeBody
from llmd.http.openai_format import chat_messages
from llmd.http.routing import Dialect

ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message", "type"],
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "type": {"type": "string"}}}}}
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 503: "unavailable_error"}


def render_error(err: LlmdError, path: str) -> tuple[Any, int]:
    """llama-server's error envelope: ``{"error": {"code", "message", "type"}}``."""
    kind = _TYPES.get(err.status, "server_error" if err.status >= 500 else "invalid_request_error")
    message = f"{err.field}: {err.message}" if err.field and not err.message.startswith(err.field) else err.message
    return {"error": {"code": err.status, "message": message, "type": kind}}, err.status


def _piece(data: bytes) -> str | list[int]:
    """A token's text, or its bytes when they are not whole UTF-8 characters (as llama-server does)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return list(data)


def build(core: Core) -> Dialect:
    """llama.cpp's server tokenizer routes bound to ``core``."""
    d = Dialect("llama_server", "llama.cpp server API", render_error, ERROR_SCHEMA,
                paths=("/tokenize", "/detokenize", "/apply-template"))

    @d.route("/tokenize", ("POST",), summary="Tokenize text", body=TokenizeBody, auth="inference")
    async def tokenize() -> Any:
        """``{"tokens": [ids]}``; with ``with_pieces``, ``[{"id", "piece"}]``."""
        body = await parse_body(TokenizeBody)
        tokens = await core.inference.tokenize(body.model, body.content, add_special=body.add_special,
                                               parse_special=body.parse_special)
        if body.with_pieces:
            return jsonify({"tokens": [{"id": t, "piece": _piece(b)} for t, b in tokens]})
        return jsonify({"tokens": [t for t, _ in tokens]})

    @d.route("/detokenize", ("POST",), summary="Detokenize tokens", body=DetokenizeBody, auth="inference")
    async def detokenize() -> Any:
        """``{"content": text}``."""
        body = await parse_body(DetokenizeBody)
        return jsonify({"content": await core.inference.detokenize(body.model, body.tokens)})

    @d.route("/apply-template", ("POST",), summary="Apply the chat template", body=ApplyTemplateBody,
             auth="inference")
    async def apply_template() -> Any:
        """``{"prompt": text}``: the messages (and tools) as the model's chat template writes them."""
        body = await parse_body(ApplyTemplateBody)
        req = GenerateRequest(messages=chat_messages(body.messages), model=body.model,
                              tools=tuple(tool_specs_from_openai(body.tools)) if body.tools else (),
                              dialect="llama_server", endpoint="/apply-template")
        return jsonify({"prompt": await core.inference.render_prompt(req)})

    return d
