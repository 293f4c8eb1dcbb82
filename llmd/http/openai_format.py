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
from typing import Any, Callable, Sequence

from quart import Response

from llmd.core.deployment import Generation
from llmd.core.grammar import json_grammar
from llmd.core.streams import OpenStreams
from llmd.core.toolcalls import tool_specs_from_openai
from llmd.core.types import (
    ChatMessage,
    EmbeddingResult,
    FinishReason,
    GenerateRequest,
    GenerationResult,
    SamplingParams,
    TokenEvent,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
)
from llmd.errors import LlmdError, ValidationError
from llmd.http.openai_schemas import ChatCompletionRequest, ChatMessageIn, CompletionRequest, SamplingFields
from llmd.http.sse import render_stream, sse, sse_json, sse_response

MAX_STOP = 16
# OpenAI's own limit on stop strings, for the OpenAI API; the LLM Manager API (same bodies) documents 16.
STOP_LIMITS = {"openai": 4}
MAX_LOGIT_BIAS = 1024  # entries of logit_bias


def new_id(prefix: str) -> str:
    """An OpenAI-style object id."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def _stops(value: str | list[str] | None, limit: int = MAX_STOP) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else list(value)
    if len(stops) > limit:
        raise ValidationError(f"stop: at most {limit} stop strings are supported, got {len(stops)}", field="stop")
    return tuple(s for s in stops if s)


def _logit_bias(value: dict[str, float] | None) -> tuple[tuple[int, float], ...]:
    """``logit_bias`` in core terms: (token id, bias) pairs; the core checks the ids against the vocabulary."""
    if not value:
        return ()
    if len(value) > MAX_LOGIT_BIAS:
        raise ValidationError(f"logit_bias: at most {MAX_LOGIT_BIAS} tokens may be biased, got {len(value)}",
                              field="logit_bias")
    out = []
    for key, bias in value.items():
        # Token ids as OpenAI writes them: decimal digits only (no sign, no spaces), at most 10 of them.
        if not (key.isascii() and key.isdigit() and len(key) <= 10):
            raise ValidationError(f"logit_bias: keys are token ids (strings of digits such as \"50256\"), "
                                  f"got {key[:40]!r}", field="logit_bias")
        if not -100 <= bias <= 100:
            raise ValidationError(f"logit_bias: the bias of token {key} is {bias}; biases are -100 to 100",
                                  field="logit_bias")
        out.append((int(key), float(bias)))
    return tuple(out)


def _logprobs(body: SamplingFields) -> int | None:
    """How many most likely tokens to report per position (0: only the chosen one's), or None for none."""
    if isinstance(body, ChatCompletionRequest):
        if body.top_logprobs is not None and not body.logprobs:
            raise ValidationError("top_logprobs: set logprobs to true to get top_logprobs", field="top_logprobs")
        return (body.top_logprobs or 0) if body.logprobs else None
    if isinstance(body, CompletionRequest):
        return body.logprobs
    return None


def _refuse(field: str, why: str) -> ValidationError:
    return ValidationError(f"{field}: {why}", field=field)


def _refuse_unsupported(body: SamplingFields) -> None:
    """Fields of the OpenAI SDK that llmd cannot honour are a 400 naming them, unless set to their neutral
    value (docs/api.md lists every field and what llmd does with it)."""
    if isinstance(body, ChatCompletionRequest):
        if body.modalities is not None and any(m != "text" for m in body.modalities):
            raise _refuse("modalities", 'only ["text"] is supported: llmd generates no audio')
        if body.audio is not None:
            raise _refuse("audio", "audio output is not supported: llmd generates text")
        if body.reasoning_effort not in (None, "none"):
            raise _refuse("reasoning_effort", "not supported: llmd has no control over reasoning; leave it out "
                                              'or send "none"')
        if body.verbosity not in (None, "medium"):
            raise _refuse("verbosity", 'not supported: leave it out or send "medium"')
        if body.web_search_options is not None:
            raise _refuse("web_search_options", "web search is not supported")
        if body.moderation is not None:
            raise _refuse("moderation", "moderation is not supported")
        if body.functions is not None:
            raise _refuse("functions", "deprecated by OpenAI and not supported: describe them in tools")
        if body.function_call is not None:
            raise _refuse("function_call", "deprecated by OpenAI and not supported: use tool_choice (with tools)")
    elif isinstance(body, CompletionRequest):
        if body.echo:
            raise _refuse("echo", "echoing the prompt is not supported")
        if body.suffix:
            raise _refuse("suffix", "insertion (a suffix after the completion) is not supported")
        if body.best_of is not None and body.best_of != (body.n or 1):
            raise _refuse("best_of", "only best_of equal to n is supported: llmd returns every answer it generates")


def _params(body: SamplingFields, max_tokens: int | None, grammar: str | None = None,
            dialect: str = "openai") -> SamplingParams:
    _refuse_unsupported(body)
    if grammar is not None and body.grammar is not None:
        raise ValidationError("grammar: give either grammar or response_format, not both", field="grammar")
    return SamplingParams(
        max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p,
        top_k=body.top_k, min_p=body.min_p, repeat_penalty=body.repeat_penalty,
        frequency_penalty=body.frequency_penalty, presence_penalty=body.presence_penalty,
        seed=body.seed, stop=_stops(body.stop, STOP_LIMITS.get(dialect, MAX_STOP)), ignore_eos=body.ignore_eos,
        grammar=grammar if grammar is not None else body.grammar,
        logprobs=_logprobs(body), logit_bias=_logit_bias(body.logit_bias),
    )


def _message(m: ChatMessageIn, i: int) -> ChatMessage:
    role = "system" if m.role == "developer" else m.role
    if m.tool_calls and m.role != "assistant":
        raise ValidationError(f"messages[{i}].tool_calls: only assistant messages carry tool calls",
                              field=f"messages[{i}].tool_calls")
    if m.role == "tool" and not m.tool_call_id:
        raise ValidationError(f"messages[{i}].tool_call_id: a tool message answers a call: give its id",
                              field=f"messages[{i}].tool_call_id")
    calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments or "{}") for c in m.tool_calls or ())
    extra = {"tool_calls": calls, "tool_call_id": m.tool_call_id if m.role == "tool" else None, "name": m.name}
    if m.content is None or isinstance(m.content, str):
        return ChatMessage(role=role, content=m.content or "", **extra)
    texts = []
    for j, part in enumerate(m.content):
        if part.type not in ("text", "input_text") or part.text is None:
            raise ValidationError(
                f"messages[{i}].content[{j}]: only text content parts are supported",
                field=f"messages[{i}].content[{j}].type")
        texts.append(part.text)
    return ChatMessage(role=role, content="".join(texts), **extra)


def chat_messages(messages: list[ChatMessageIn]) -> tuple[ChatMessage, ...]:
    """OpenAI chat messages in core terms (text parts joined; tool calls and results kept)."""
    return tuple(_message(m, i) for i, m in enumerate(messages))


def tool_choice(value: str | dict[str, Any] | None, field: str = "tool_choice") -> tuple[str, str | None]:
    """OpenAI's ``tool_choice`` in core terms: (``auto``/``none``/``required``/``function``, the name)."""
    if value is None:
        return "auto", None
    if isinstance(value, str):
        return value, None
    fn = value.get("function") if value.get("type") == "function" else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{field} must be none, auto, required or "
                              '{"type": "function", "function": {"name": ...}}', field=field)
    return "function", name


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
    tools = tuple(tool_specs_from_openai(body.tools)) if body.tools else ()
    choice, name = tool_choice(body.tool_choice)
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    return GenerateRequest(
        messages=chat_messages(body.messages),
        model=body.model, params=_params(body, max_tokens, grammar, dialect), n=body.n or 1,
        dialect=dialect, endpoint=endpoint, tools=tools, tool_choice=choice, tool_name=name,
        parallel_tool_calls=body.parallel_tool_calls is not False,
    )


def completion_from_request(body: CompletionRequest, *, dialect: str = "openai",
                            endpoint: str = "/v1/completions") -> GenerateRequest:
    """A (legacy) completion request in core terms."""
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise ValidationError("prompt: a list must hold exactly one string", field="prompt")
        prompt = prompt[0]
    return GenerateRequest(prompt=prompt, model=body.model, params=_params(body, body.max_tokens, None, dialect),
                           n=body.n or 1, dialect=dialect, endpoint=endpoint)


def _usage(result: GenerationResult) -> dict[str, Any]:
    """OpenAI's usage, with the prompt tokens served from the KV cache."""
    return {**result.usage.to_dict(), "prompt_tokens_details": {"cached_tokens": result.usage.cached_tokens}}


def finish_reason(result: GenerationResult) -> str:
    """OpenAI's finish_reason for a result."""
    return {FinishReason.LENGTH: "length", FinishReason.TOOL_CALLS: "tool_calls"}.get(result.finish_reason, "stop")


def tool_calls_out(result: GenerationResult) -> list[dict[str, Any]]:
    """The answer's tool calls, as a chat message's ``tool_calls``."""
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in result.tool_calls]


def chat_message(result: GenerationResult) -> dict[str, Any]:
    """The assistant ``message`` of a choice: its text (null when only tools were called) and tool calls."""
    msg: dict[str, Any] = {"role": "assistant", "content": result.text}
    if result.tool_calls:
        msg["content"] = result.text or None
        msg["tool_calls"] = tool_calls_out(result)
    return msg


def tool_call_delta(event: ToolCallDelta) -> dict[str, Any]:
    """A streamed chunk's ``delta.tool_calls`` entry: id, type and name first, then argument fragments."""
    if event.id is not None:
        return {"index": event.call, "id": event.id, "type": "function",
                "function": {"name": event.name, "arguments": event.arguments}}
    return {"index": event.call, "function": {"arguments": event.arguments}}


def chat_logprobs(tokens: Sequence[TokenLogprob]) -> dict[str, Any]:
    """A chat choice's (or chunk's) ``logprobs``: each token's, with its most likely alternatives."""
    return {"content": [
        {"token": lp.token, "logprob": lp.logprob, "bytes": list(lp.token_bytes),
         "top_logprobs": [{"token": t, "logprob": p, "bytes": list(b)} for t, b, p in lp.top]}
        for lp in tokens], "refusal": None}


def completion_logprobs(tokens: Sequence[TokenLogprob], offset: int = 0) -> dict[str, Any]:
    """A text completion choice's (or chunk's) ``logprobs``; ``offset``: where the first token's text starts
    in the answer (``text_offset`` counts characters)."""
    offsets = []
    for lp in tokens:
        offsets.append(offset)
        offset += len(lp.token)
    return {"tokens": [lp.token for lp in tokens], "token_logprobs": [lp.logprob for lp in tokens],
            "top_logprobs": [{t: p for t, _, p in lp.top} for lp in tokens], "text_offset": offsets}


def chat_response(result: GenerationResult, cid: str, model: str, *,
                  choices: Sequence[GenerationResult] | None = None, logprobs: bool = False) -> dict[str, Any]:
    """A ``chat.completion`` object; ``choices``: each choice's result when the request asked for n > 1
    (``result`` then has the usage of all); ``logprobs``: the request asked for them."""
    return {
        "id": cid, "object": "chat.completion", "created": int(result.created), "model": model,
        "choices": [{"index": r.index, "message": chat_message(r),
                     "logprobs": chat_logprobs(r.logprobs) if logprobs else None,
                     "finish_reason": finish_reason(r)} for r in choices or (result,)],
        "usage": _usage(result),
        "system_fingerprint": None,
    }


def chat_chunk(cid: str, created: int, model: str, delta: dict[str, Any],
               finish: str | None = None, index: int = 0) -> dict[str, Any]:
    """A ``chat.completion.chunk`` object (of choice ``index``)."""
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": None,
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def completion_response(result: GenerationResult, cid: str, model: str, *,
                        choices: Sequence[GenerationResult] | None = None, logprobs: bool = False) -> dict[str, Any]:
    """A ``text_completion`` object; ``choices`` and ``logprobs`` as for :func:`chat_response`."""
    return {
        "id": cid, "object": "text_completion", "created": int(result.created), "model": model,
        "choices": [{"index": r.index, "text": r.text,
                     "logprobs": completion_logprobs(r.logprobs) if logprobs else None,
                     "finish_reason": finish_reason(r)} for r in choices or (result,)],
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


class _ChoiceChunks:
    """The chunks of a stream that its one-choice fast path does not write: text of choices other than the
    first (``n`` > 1) and text that carries its tokens' log-probabilities. Each chunk names its choice's
    ``index``; a chat choice's first chunk carries its role, and each choice ends with its own finish chunk."""

    def __init__(self, cid: str, created: int, model: str, chat: bool) -> None:
        self.cid, self.created, self.model, self.chat = cid, created, model, chat
        self.started = {0}  # choices whose role chunk went out (choice 0's is the stream's first chunk)
        self.offsets: dict[int, int] = {}  # text completions: each choice's text written so far, in characters

    def _choice(self, chunk: dict[str, Any], index: int, logprobs: Any = None) -> str:
        chunk["choices"][0].update(index=index, logprobs=logprobs)
        return sse_json(chunk)

    def _start(self, index: int) -> list[str]:
        if index in self.started or not self.chat:
            return []
        self.started.add(index)
        return [self._choice(chat_chunk(self.cid, self.created, self.model, {"role": "assistant", "content": ""}),
                             index)]

    def event(self, event: TokenEvent) -> list[str] | None:
        """A text event of any choice, with its tokens' log-probabilities when it carries some."""
        if not event.text and not event.logprobs:
            return None
        out = self._start(event.index)
        if self.chat:
            lp = chat_logprobs(event.logprobs) if event.logprobs else None
            out.append(self._choice(chat_chunk(self.cid, self.created, self.model, {"content": event.text}),
                                    event.index, lp))
            return out
        offset = self.offsets.get(event.index, 0)
        lp = completion_logprobs(event.logprobs, offset) if event.logprobs else None
        self.offsets[event.index] = offset + len(event.text)
        out.append(self._choice(completion_chunk(self.cid, self.created, self.model, event.text), event.index, lp))
        return out

    def ends(self, results: Sequence[GenerationResult]) -> list[str]:
        """The finish chunks of choices 1..n-1 (and the role chunk of one that never wrote anything)."""
        out: list[str] = []
        for r in results:
            if r.index == 0:
                continue
            out.extend(self._start(r.index))
            chunk = (chat_chunk(self.cid, self.created, self.model, {}, finish_reason(r)) if self.chat
                     else completion_chunk(self.cid, self.created, self.model, "", finish_reason(r)))
            out.append(self._choice(chunk, r.index))
        return out


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

    # What the one-choice fast path (token) does not cover: other choices, tokens' log-probabilities.
    more = _ChoiceChunks(cid, created, model, chat)

    def end(result: GenerationResult) -> list[str]:
        more_ends = more.ends(gen.results or ())  # choices 1..n-1 (n > 1); choice 0's is the one below
        last = piece("", finish_reason(result))
        if usage == "last":
            last = {**last, "usage": result.usage.to_dict()}
        out = [*more_ends, sse_json(last)]
        if usage == "chunk":
            out.append(sse_json(usage_chunk(cid, created, model, obj, result)))
        return out + [sse("[DONE]")]

    def other(event: Any) -> str | list[str] | None:
        if isinstance(event, ToolCallDelta):
            return sse_json(chat_chunk(cid, created, model, {"tool_calls": [tool_call_delta(event)]},
                                       index=event.index))
        return more.event(event)

    return sse_response(streams, render_stream(
        gen,
        start=(lambda: sse_json(chat_chunk(cid, created, model, {"role": "assistant", "content": ""})))
        if chat else None,
        token=token,
        end=end,
        error=lambda err: [sse_json(error(err)), sse("[DONE]")],
        other=other,
    ))
