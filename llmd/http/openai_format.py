"""The OpenAI wire format: requests into core types, results into OpenAI's objects, chunks and errors.

Shared by the APIs that speak it: the OpenAI API itself, the LLM Manager
API (OpenAI bodies and chunks inside its envelope) and the LLM Inference
Service API (OpenAI-shaped answers). :func:`openai_stream` is the one
renderer of OpenAI chunk streams.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from typing import Any, Callable

from quart import Response

from llmd.core.deployment import Generation
from llmd.core.grammar import json_grammar
from llmd.core.streams import OpenStreams
from llmd.core.types import (
    ChatMessage,
    EmbeddingResult,
    FinishReason,
    GenerateRequest,
    GenerationResult,
    SamplingParams,
)
from llmd.errors import LlmdError, ValidationError
from llmd.http.openai_schemas import ChatCompletionRequest, ChatMessageIn, CompletionRequest, SamplingFields
from llmd.http.sse import render_stream, sse, sse_json, sse_response

MAX_STOP = 16


def new_id(prefix: str) -> str:
    """An OpenAI-style object id."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def _stops(value: str | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else list(value)
    if len(stops) > MAX_STOP:
        raise ValidationError(f"stop: at most {MAX_STOP} stop strings are supported", field="stop")
    return tuple(s for s in stops if s)


def _params(body: SamplingFields, max_tokens: int | None, grammar: str | None = None) -> SamplingParams:
    if body.n not in (None, 1):
        raise ValidationError("n: only n=1 is supported", field="n")
    if grammar is not None and body.grammar is not None:
        raise ValidationError("grammar: give either grammar or response_format, not both", field="grammar")
    return SamplingParams(
        max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p,
        top_k=body.top_k, min_p=body.min_p, repeat_penalty=body.repeat_penalty,
        frequency_penalty=body.frequency_penalty, presence_penalty=body.presence_penalty,
        seed=body.seed, stop=_stops(body.stop), ignore_eos=body.ignore_eos,
        grammar=grammar if grammar is not None else body.grammar,
    )


def _message(m: ChatMessageIn, i: int) -> ChatMessage:
    if m.content is None or isinstance(m.content, str):
        return ChatMessage(role="system" if m.role == "developer" else m.role, content=m.content or "")
    texts = []
    for j, part in enumerate(m.content):
        if part.type != "text" or part.text is None:
            raise ValidationError(
                f"messages[{i}].content[{j}]: only text content parts are supported",
                field=f"messages[{i}].content[{j}].type")
        texts.append(part.text)
    return ChatMessage(role="system" if m.role == "developer" else m.role, content="".join(texts))


def chat_from_request(body: ChatCompletionRequest, *, dialect: str = "openai",
                      endpoint: str = "/v1/chat/completions") -> GenerateRequest:
    """A chat completion request in core terms."""
    grammar = None
    fmt = body.response_format
    if fmt is not None and fmt.type == "json_object":
        grammar = json_grammar()
    elif fmt is not None and fmt.type == "json_schema":
        if fmt.json_schema is None or fmt.json_schema.schema_ is None:
            raise ValidationError("response_format.json_schema.schema: a JSON schema is required",
                                  field="response_format.json_schema.schema")
        grammar = json_grammar(fmt.json_schema.schema_, field="response_format.json_schema.schema")
    if body.tools:
        raise ValidationError("tools: tool calling is not supported by this version", field="tools")
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    return GenerateRequest(
        messages=tuple(_message(m, i) for i, m in enumerate(body.messages)),
        model=body.model, params=_params(body, max_tokens, grammar),
        dialect=dialect, endpoint=endpoint,
    )


def completion_from_request(body: CompletionRequest, *, dialect: str = "openai",
                            endpoint: str = "/v1/completions") -> GenerateRequest:
    """A (legacy) completion request in core terms."""
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise ValidationError("prompt: a list must hold exactly one string", field="prompt")
        prompt = prompt[0]
    return GenerateRequest(prompt=prompt, model=body.model, params=_params(body, body.max_tokens),
                           dialect=dialect, endpoint=endpoint)


def _usage(result: GenerationResult) -> dict[str, Any]:
    """OpenAI's usage, with the prompt tokens served from the KV cache."""
    return {**result.usage.to_dict(), "prompt_tokens_details": {"cached_tokens": result.usage.cached_tokens}}


def finish_reason(result: GenerationResult) -> str:
    """OpenAI's finish_reason for a result."""
    return "length" if result.finish_reason is FinishReason.LENGTH else "stop"


def chat_response(result: GenerationResult, cid: str, model: str) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    return {
        "id": cid, "object": "chat.completion", "created": int(result.created), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                     "logprobs": None, "finish_reason": finish_reason(result)}],
        "usage": _usage(result),
        "system_fingerprint": None,
    }


def chat_chunk(cid: str, created: int, model: str, delta: dict[str, Any],
               finish: str | None = None) -> dict[str, Any]:
    """A ``chat.completion.chunk`` object."""
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def completion_response(result: GenerationResult, cid: str, model: str) -> dict[str, Any]:
    """A ``text_completion`` object."""
    return {
        "id": cid, "object": "text_completion", "created": int(result.created), "model": model,
        "choices": [{"index": 0, "text": result.text, "logprobs": None, "finish_reason": finish_reason(result)}],
        "usage": _usage(result),
    }


def completion_chunk(cid: str, created: int, model: str, text: str, finish: str | None = None) -> dict[str, Any]:
    """A streamed ``text_completion`` object."""
    return {"id": cid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}


def usage_chunk(cid: str, created: int, model: str, obj: str, result: GenerationResult) -> dict[str, Any]:
    """The extra last chunk that ``stream_options.include_usage`` asks for."""
    return {"id": cid, "object": obj, "created": created, "model": model, "choices": [],
            "usage": _usage(result)}


def embeddings_response(result: EmbeddingResult, encoding: str) -> dict[str, Any]:
    """An embeddings ``list`` object; ``base64`` packs each vector as little-endian float32."""
    data = []
    for i, vec in enumerate(result.vectors):
        emb: Any = vec
        if encoding == "base64":
            emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return {"object": "list", "data": data, "model": result.model,
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}}


def model_object(model: Any, state: str) -> dict[str, Any]:
    """A ``model`` object for ``/v1/models`` (a core ``Model`` and its deployment state)."""
    return {"id": model.name, "object": "model", "created": int(model.created_at or time.time()),
            "owned_by": "llmd", "aliases": list(model.aliases), "state": state}


_MARK = "\u0001text\u0001"  # stands for a token's text while the event around it is encoded

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
          429: "rate_limit_error", 503: "service_unavailable"}


# Core codes whose OpenAI name differs (OpenAI answers a missing or bad key with invalid_api_key).
_CODES = {"authentication_failed": "invalid_api_key"}


def error_body(err: LlmdError) -> dict[str, Any]:
    """OpenAI's error envelope."""
    default = "invalid_request_error" if 400 <= err.status < 500 else "server_error"
    return {"error": {"message": err.message, "type": _TYPES.get(err.status, default),
                      "param": err.field, "code": _CODES.get(err.code, err.code)}}


def usage_mode(body: SamplingFields) -> str | None:
    """``stream_options.include_usage`` asks for a last chunk with the usage."""
    return "chunk" if body.stream_options and body.stream_options.include_usage else None


def openai_stream(streams: OpenStreams, gen: Generation, *, cid: str, model: str, chat: bool,
                  usage: str | None, error: Callable[[LlmdError], dict[str, Any]] = error_body) -> Response:
    """A generation as OpenAI chunks over SSE, ending with ``data: [DONE]``.

    ``chat`` gives ``chat.completion.chunk`` objects (the first carries the
    role), else ``text_completion`` ones. ``usage``: ``"chunk"`` sends a last
    chunk with no choices and the usage (``stream_options.include_usage``),
    ``"last"`` puts the usage on the finish chunk, ``None`` sends none. An
    error after the start is one event in ``error``'s envelope, then ``[DONE]``.
    """
    created = int(time.time())
    obj = "chat.completion.chunk" if chat else "text_completion"

    def piece(text: str, finish: str | None) -> dict[str, Any]:
        if chat:
            return chat_chunk(cid, created, model, {} if finish else {"content": text}, finish)
        return completion_chunk(cid, created, model, text, finish)

    # Every token's event is the same JSON but for the text: encode the rest once, and per token only
    # the text (the hot path: one event per token per stream).
    head, _, tail = sse_json(piece(_MARK, None)).partition(json.dumps(_MARK))

    def token(text: str) -> str:
        return head + json.dumps(text, ensure_ascii=False) + tail

    def end(result: GenerationResult) -> list[str]:
        last = piece("", finish_reason(result))
        if usage == "last":
            last = {**last, "usage": result.usage.to_dict()}
        out = [sse_json(last)]
        if usage == "chunk":
            out.append(sse_json(usage_chunk(cid, created, model, obj, result)))
        return out + [sse("[DONE]")]

    return sse_response(streams, render_stream(
        gen,
        start=(lambda: sse_json(chat_chunk(cid, created, model, {"role": "assistant", "content": ""})))
        if chat else None,
        token=token,
        end=end,
        error=lambda err: [sse_json(error(err)), sse("[DONE]")],
    ))
