"""The Anthropic Messages wire format: requests into core types, results into messages, events and errors.

Anthropic's conversation has content blocks where the core has messages: an
assistant turn's ``tool_use`` blocks become the tool calls of one assistant
message, and a user turn's ``tool_result`` blocks become one ``tool`` message
each, in order, followed by the turn's text as a user message. On the way
back the core's text and tool calls become ``text`` and ``tool_use`` blocks,
whole or as the ``message_start`` ... ``message_stop`` event stream.
"""

from __future__ import annotations

import json
import secrets
import string
from typing import Any

from quart import Response

from llmd.core.deployment import Generation
from llmd.core.streams import OpenStreams
from llmd.core.types import (
    ChatMessage,
    FinishReason,
    GenerateRequest,
    GenerationResult,
    SamplingParams,
    TokenEvent,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
)
from llmd.errors import LlmdError, ValidationError
from llmd.http.anthropic.schemas import ContentBlockIn, CountTokensRequest, MessagesBase, MessagesRequest
from llmd.http.body import parse_body
from llmd.http.sse import render_stream, sse_response

ENDPOINT = "/v1/messages"
_ALPHABET = string.ascii_letters + string.digits
# The text that joins a turn's text blocks: blocks are separate pieces (a reminder, then the question),
# and gluing them with nothing would run the last word of one into the first of the next.
JOIN = "\n\n"

# llmd's statuses -> Anthropic's error types. A full queue, a model still loading and a daemon that is
# stopping keep llmd's 503 with Retry-After (every API of the daemon answers them so, and the SDK retries
# a 503 as it does Anthropic's own 529), with Anthropic's type for them: overloaded_error.
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
          403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
          503: "overloaded_error", 504: "timeout_error"}


def new_id(prefix: str) -> str:
    """An Anthropic-style object id: ``msg_`` and 24 letters and digits."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def tool_use_id(call_id: str) -> str:
    """The ``toolu_`` id of a core tool call (the same call gets the same id, streamed or not)."""
    return call_id if call_id.startswith("toolu_") else "toolu_" + call_id.removeprefix("call_")


# -- errors ------------------------------------------------------------------


def error_type(err: LlmdError) -> str:
    """Anthropic's ``error.type`` for a typed error."""
    default = "invalid_request_error" if 400 <= err.status < 500 else "api_error"
    return _TYPES.get(err.status, default)


def error_body(err: LlmdError) -> dict[str, Any]:
    """Anthropic's error envelope; a client error names its field in the message (Anthropic has no param)."""
    message = err.message
    if err.field and err.status < 500 and err.field not in message:
        message = f"{err.field}: {message}"
    return {"type": "error", "error": {"type": error_type(err), "message": message}}


# -- requests ------------------------------------------------------------------


async def parse(model: type[MessagesBase]) -> Any:
    """The request body validated against ``model``, a 400 naming the exact field otherwise.

    ``content`` and ``system`` are a string or a list of blocks: a list that
    fails has an error per member of the union, the string's first ("Input
    should be a valid string"); the one inside the list names the field at
    fault (``messages[0].content[1].type``), so among the errors under the
    first error's field the deepest is reported.
    """
    try:
        return await parse_body(model)
    except ValidationError as err:
        details = err.details if isinstance(err.details, list) else []
        if not details or err.field is None:
            raise
        best = details[0]
        for d in details[1:]:
            if d["field"].startswith((f"{best['field']}[", f"{best['field']}.")):
                best = d
        if best is details[0]:
            raise
        raise ValidationError(f"{best['field']}: {best['message']}", field=best["field"], details=details) from None


def _refuse(field: str, what: str) -> ValidationError:
    return ValidationError(f"{field}: {what}", field=field)


def _text_of(parts: Any, at: str) -> str:
    """A tool result's ``content``: a string, or text blocks (anything else is refused)."""
    if parts is None:
        return ""
    if isinstance(parts, str):
        return parts
    texts = []
    for k, part in enumerate(parts):
        where = f"{at}.content[{k}]"
        if part.type != "text":
            raise _refuse(f"{where}.type", f"{part.type} blocks are not supported in a tool result; send text")
        if part.text is None:
            raise _refuse(f"{where}.text", "a text block needs text")
        texts.append(part.text)
    return JOIN.join(texts)


def _block(b: ContentBlockIn, role: str, at: str, names: dict[str, str]) -> tuple[str, Any]:
    """One content block checked for its kind: ("text", str), ("call", ToolCall), ("result", ChatMessage)
    or ("skip", None)."""
    if b.type == "text":
        if b.text is None:
            raise _refuse(f"{at}.text", "a text block needs text")
        return "text", b.text
    if b.type in ("image", "document"):
        raise _refuse(f"{at}.type", f"{b.type} blocks are not supported: llmd's models read text only")
    if b.type in ("thinking", "redacted_thinking"):
        if role != "assistant":
            raise _refuse(f"{at}.type", f"{b.type} blocks belong to assistant turns")
        return "skip", None  # an earlier turn's reasoning: Anthropic drops it from the prompt too
    if b.type == "tool_use":
        if role != "assistant":
            raise _refuse(f"{at}.type", "tool_use blocks belong to assistant turns")
        for name, value in (("id", b.id), ("name", b.name), ("input", b.input)):
            if value is None:
                raise _refuse(f"{at}.{name}", f"a tool_use block needs {name}" +
                              (" (an object)" if name == "input" else ""))
        assert b.id is not None and b.name is not None
        names[b.id] = b.name
        return "call", ToolCall(b.id, b.name, json.dumps(b.input, ensure_ascii=False, separators=(",", ":")))
    # tool_result
    if role != "user":
        raise _refuse(f"{at}.type", "tool_result blocks belong to user turns")
    if b.tool_use_id is None:
        raise _refuse(f"{at}.tool_use_id", "a tool_result block needs tool_use_id")
    if b.tool_use_id not in names:
        raise _refuse(f"{at}.tool_use_id", f"no tool_use block with id '{b.tool_use_id}' comes before it")
    text = _text_of(b.content, at)
    if b.is_error:
        text = f"Error: {text}"  # the core's tool message has no error flag; the model reads it in the text
    return "result", ChatMessage("tool", text, tool_call_id=b.tool_use_id, name=names[b.tool_use_id])


def _messages(body: MessagesBase) -> tuple[ChatMessage, ...]:
    out: list[ChatMessage] = []
    if body.system is not None:
        system = body.system if isinstance(body.system, str) else JOIN.join(b.text for b in body.system)
        out.append(ChatMessage("system", system))
    names: dict[str, str] = {}  # tool_use id -> tool name, for the results that answer them
    for i, m in enumerate(body.messages):
        if isinstance(m.content, str):
            out.append(ChatMessage(m.role, m.content))
            continue
        texts: list[str] = []
        calls: list[ToolCall] = []
        results: list[ChatMessage] = []
        for j, b in enumerate(m.content):
            kind, value = _block(b, m.role, f"messages[{i}].content[{j}]", names)
            if kind == "text":
                texts.append(value)
            elif kind == "call":
                calls.append(value)
            elif kind == "result":
                results.append(value)
        if m.role == "assistant":
            out.append(ChatMessage("assistant", JOIN.join(texts), tool_calls=tuple(calls)))
            continue
        out.extend(results)
        if texts or not results:
            out.append(ChatMessage(m.role, JOIN.join(texts)))
    return tuple(out)


def _tools(body: MessagesBase) -> tuple[ToolSpec, ...]:
    specs: list[ToolSpec] = []
    seen: set[str] = set()
    for i, tool in enumerate(body.tools or []):
        if tool.name in seen:
            raise _refuse(f"tools[{i}].name", f"'{tool.name}' is given twice")
        seen.add(tool.name)
        schema = tool.input_schema
        if schema.get("type", "object") != "object":
            raise _refuse(f"tools[{i}].input_schema.type", "a tool's input_schema must be of type 'object'")
        specs.append(ToolSpec(tool.name, tool.description, {"type": "object", **schema}))
    return tuple(specs)


def _tool_choice(body: MessagesBase, tools: tuple[ToolSpec, ...]) -> tuple[str, str | None, bool]:
    """(the core's tool_choice, the forced tool's name, whether several calls may come)."""
    choice = body.tool_choice
    if choice is None:
        return "auto", None, True
    parallel = not choice.disable_parallel_tool_use
    if choice.type in ("any", "tool") and not tools:
        raise _refuse("tool_choice.type", f"'{choice.type}' needs tools")
    if choice.type == "tool":
        if choice.name is None:
            raise _refuse("tool_choice.name", "tool_choice of type 'tool' needs the tool's name")
        if choice.name not in {t.name for t in tools}:
            raise _refuse("tool_choice.name", f"'{choice.name}' is not one of the tools")
        return "function", choice.name, parallel
    if not tools:
        return "auto", None, parallel  # auto and none mean the same without tools
    return {"any": "required", "none": "none"}.get(choice.type, "auto"), None, parallel


def _check_thinking(body: MessagesBase) -> None:
    if body.thinking is not None and body.thinking.type != "disabled":
        raise _refuse("thinking.type", "extended thinking is not supported; leave thinking out or send "
                                       '{"type": "disabled"}')


def _request(body: MessagesBase, params: SamplingParams, endpoint: str) -> GenerateRequest:
    _check_thinking(body)
    tools = _tools(body)
    choice, name, parallel = _tool_choice(body, tools)
    return GenerateRequest(messages=_messages(body), model=body.model, params=params, dialect="anthropic",
                           endpoint=endpoint, tools=tools, tool_choice=choice, tool_name=name,
                           parallel_tool_calls=parallel)


def generate_request(body: MessagesRequest) -> GenerateRequest:
    """``POST /v1/messages`` in core terms."""
    params = SamplingParams(max_tokens=body.max_tokens, temperature=body.temperature, top_p=body.top_p,
                            top_k=body.top_k, stop=tuple(s for s in body.stop_sequences or () if s))
    return _request(body, params, ENDPOINT)


def count_request(body: CountTokensRequest) -> GenerateRequest:
    """``POST /v1/messages/count_tokens`` in core terms: the same prompt, nothing to sample."""
    return _request(body, SamplingParams(), f"{ENDPOINT}/count_tokens")


# -- answers -------------------------------------------------------------------


def stop_reason(result: GenerationResult) -> tuple[str, str | None]:
    """Anthropic's ``stop_reason`` and ``stop_sequence`` for a result."""
    if result.finish_reason is FinishReason.TOOL_CALLS:
        return "tool_use", None
    if result.finish_reason is FinishReason.LENGTH:
        return "max_tokens", None
    if result.stop_sequence is not None:
        return "stop_sequence", result.stop_sequence
    return "end_turn", None


def _input(arguments: str) -> Any:
    """A call's arguments as the object ``input`` is (the core only makes calls whose arguments parse)."""
    try:
        value = json.loads(arguments) if arguments else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def usage(result: GenerationResult) -> dict[str, int]:
    """Anthropic's usage: ``input_tokens`` are the prompt tokens evaluated, the ones read from the KV cache
    are ``cache_read_input_tokens`` (their sum is the whole prompt, as in Anthropic's accounting)."""
    u = result.usage
    return {"input_tokens": u.prompt_tokens - u.cached_tokens, "output_tokens": u.completion_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": u.cached_tokens}


def content(result: GenerationResult) -> list[dict[str, Any]]:
    """The answer's content blocks: its text (left out when it is only space around tool calls), then one
    ``tool_use`` block per call; an empty answer is one empty text block."""
    blocks: list[dict[str, Any]] = []
    if result.text.strip() or (result.text and not result.tool_calls):
        blocks.append({"type": "text", "text": result.text})
    for call in result.tool_calls:
        blocks.append({"type": "tool_use", "id": tool_use_id(call.id), "name": call.name,
                       "input": _input(call.arguments)})
    return blocks or [{"type": "text", "text": ""}]


def message_response(result: GenerationResult, mid: str, model: str) -> dict[str, Any]:
    """A ``message`` object."""
    reason, sequence = stop_reason(result)
    return {"id": mid, "type": "message", "role": "assistant", "model": model, "content": content(result),
            "stop_reason": reason, "stop_sequence": sequence, "usage": usage(result)}


def event(name: str, data: dict[str, Any]) -> str:
    """One named SSE event (Anthropic's streams name each event and repeat its type in the data)."""
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


class MessageStream:
    """The events of one streamed message, built as the generation's events arrive.

    Blocks open lazily: text that is only white space is held until more text
    comes (then it opens a text block) or a tool call starts (then it is
    dropped, as :func:`content` drops it), so that both forms of an answer
    have the same blocks.
    """

    def __init__(self, mid: str, model: str, prompt_tokens: int) -> None:
        self.mid, self.model, self.prompt_tokens = mid, model, prompt_tokens
        self.index = -1  # of the last block opened
        self.open: str | None = None  # "text" or "tool_use": the kind of the block open now
        self.pending = ""  # white space not yet in a block

    def start(self) -> list[str]:
        """``message_start`` (the prompt's tokens; the cache's share comes with ``message_delta``), a ping."""
        message = {"id": self.mid, "type": "message", "role": "assistant", "model": self.model, "content": [],
                   "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": self.prompt_tokens, "output_tokens": 0,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}
        return [event("message_start", {"type": "message_start", "message": message}),
                event("ping", {"type": "ping"})]

    def _close(self) -> list[str]:
        if self.open is None:
            return []
        self.open = None
        return [event("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def _open(self, block: dict[str, Any]) -> list[str]:
        out = self._close()
        self.index += 1
        self.open = block["type"]
        return out + [event("content_block_start", {"type": "content_block_start", "index": self.index,
                                                    "content_block": block})]

    def _text_delta(self, text: str) -> str:
        return event("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                             "delta": {"type": "text_delta", "text": text}})

    def token(self, text: str) -> list[str]:
        """A piece of text: a delta of the open text block, or the start of a new one."""
        if self.open == "text":
            return [self._text_delta(text)]
        self.pending += text
        if not self.pending.strip():
            return []
        text, self.pending = self.pending, ""
        return self._open({"type": "text", "text": ""}) + [self._text_delta(text)]

    def other(self, ev: Any) -> list[str]:
        """A tool call's start (id and name) or a fragment of its arguments; other events (other choices)
        have no place in a message."""
        if isinstance(ev, TokenEvent) and ev.index == 0:
            return self.token(ev.text) if ev.text else []
        if not isinstance(ev, ToolCallDelta) or ev.index != 0:
            return []
        out: list[str] = []
        if ev.id is not None or ev.name is not None or self.open != "tool_use":
            self.pending = ""
            out += self._open({"type": "tool_use", "id": tool_use_id(ev.id or new_id("call")),
                               "name": ev.name or "", "input": {}})
        if ev.arguments:
            out.append(event("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                     "delta": {"type": "input_json_delta",
                                                               "partial_json": ev.arguments}}))
        return out

    def end(self, result: GenerationResult) -> list[str]:
        """Close the last block (an empty answer gets one empty text block), then the stop reason, usage
        and ``message_stop``."""
        out: list[str] = []
        if self.index < 0:
            out += self._open({"type": "text", "text": ""})
            if self.pending:
                out.append(self._text_delta(self.pending))
        out += self._close()
        reason, sequence = stop_reason(result)
        out.append(event("message_delta", {"type": "message_delta",
                                           "delta": {"stop_reason": reason, "stop_sequence": sequence},
                                           "usage": usage(result)}))
        out.append(event("message_stop", {"type": "message_stop"}))
        return out

    def error(self, err: LlmdError) -> str:
        """A failure after the stream began: Anthropic's ``error`` event, which ends the stream."""
        return event("error", error_body(err))


def message_stream(streams: OpenStreams, gen: Generation, *, mid: str, model: str) -> Response:
    """A generation as Anthropic's event stream."""
    s = MessageStream(mid, model, gen.prompt_tokens)
    return sse_response(streams, render_stream(gen, start=s.start, token=s.token, other=s.other, end=s.end,
                                               error=s.error))
