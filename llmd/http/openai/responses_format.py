"""The Responses API's wire format: requests into core terms, responses, items and typed SSE events out.

A request's input items and tools are validated here one by one, so an
error names the field at fault (``input[1].content[0].type``,
``tools[2].type``); a field llmd cannot honour is refused unless it has its
neutral value. Streams are OpenAI's typed events: each ``event: <type>``
line is followed by ``data:`` JSON carrying the same ``type`` and a
``sequence_number`` counted from 0.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from typing import Any, AsyncIterator, Iterator

from quart import Response

from llmd.core.grammar import json_grammar
from llmd.core.responses import (
    ArgumentsAdded,
    ItemAdded,
    ItemDone,
    ItemPage,
    OutputEvent,
    ResponseItem,
    ResponseRecord,
    ResponseRun,
    ResponseSpec,
    TextAdded,
    new_id,
)
from llmd.core.streams import OpenStreams
from llmd.core.toolcalls import tool_specs_from_openai
from llmd.core.types import SamplingParams, ToolSpec
from llmd.errors import InternalError, LlmdError, ValidationError
from llmd.http.body import check_json_value, validate_value
from llmd.http.fields import StrictModel
from llmd.http.openai.responses_schemas import (
    InputTokensRequest,
    ResponseCreateRequest,
    ResponseInputFields,
    ResponseTextFormat,
)
from llmd.http.sse import sse_response

log = logging.getLogger(__name__)

MAX_METADATA = 16
TEXT_PARTS = ("input_text", "output_text")
ROLES = ("user", "assistant", "system", "developer")
NEUTRAL_INCLUDES = ("reasoning.encrypted_content",)  # asks for reasoning items; there are none to include


# -- input items ---------------------------------------------------------------------------------

class _Message(StrictModel):
    """An input message; ``type`` may be left out (OpenAI's "easy" input message)."""

    type: Any = None
    id: Any = None
    role: str
    content: str | list[dict[str, Any]]


class _FunctionCall(StrictModel):
    """A call the model made earlier, sent back as input."""

    type: str
    id: Any = None
    call_id: str
    name: str
    arguments: str


class _FunctionCallOutput(StrictModel):
    """The client's answer to a call."""

    type: str
    id: Any = None
    call_id: str
    output: str | list[dict[str, Any]]


def _id(value: Any, prefix: str) -> str:
    """The item's id as the client gave it, else a new one."""
    return value if isinstance(value, str) and value else new_id(prefix)


def _parts(content: str | list[dict[str, Any]], where: str) -> tuple[str, ...]:
    """A content string, or text parts (``input_text``, ``output_text``), as texts; other parts are refused."""
    if isinstance(content, str):
        return (content,)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind not in TEXT_PARTS:
            raise ValidationError(f"{where}[{j}].type: only text parts ({', '.join(TEXT_PARTS)}) are supported, "
                                  f"not {kind!r}", field=f"{where}[{j}].type")
        text = part.get("text")
        if not isinstance(text, str):
            raise ValidationError(f"{where}[{j}].text: a string is required", field=f"{where}[{j}].text")
        texts.append(text)
    return tuple(texts)


def _required(value: str, where: str) -> str:
    if not value:
        raise ValidationError(f"{where}: must not be empty", field=where)
    return value


def input_item(raw: dict[str, Any], i: int) -> ResponseItem:
    """One input item (a message, a function call or a function call's output) in core terms."""
    where = f"input[{i}]"
    kind = raw.get("type", "message")
    if kind == "message":
        m = validate_value(_Message, raw, where)
        if m.role not in ROLES:
            raise ValidationError(f"{where}.role: must be one of {', '.join(ROLES)}", field=f"{where}.role")
        return ResponseItem("message", _id(m.id, "msg"), role=m.role, content=_parts(m.content, f"{where}.content"))
    if kind == "function_call":
        c = validate_value(_FunctionCall, raw, where)
        try:
            args = json.loads(c.arguments)
        except (ValueError, RecursionError):
            args = None
        if not isinstance(args, dict):
            raise ValidationError(f"{where}.arguments: must be a JSON object, as text", field=f"{where}.arguments")
        check_json_value(args, f"{where}.arguments")  # the same bounds as a body's (depth, integers, NaN)
        return ResponseItem("function_call", _id(c.id, "fc"), call_id=_required(c.call_id, f"{where}.call_id"),
                            name=_required(c.name, f"{where}.name"),
                            arguments=json.dumps(args, ensure_ascii=False, separators=(",", ":")))
    if kind == "function_call_output":
        o = validate_value(_FunctionCallOutput, raw, where)
        return ResponseItem("function_call_output", _id(o.id, "fco"), call_id=_required(o.call_id, f"{where}.call_id"),
                            output="".join(_parts(o.output, f"{where}.output")))
    raise ValidationError(f"{where}.type: only message, function_call and function_call_output items are "
                          f"supported, not {kind!r}", field=f"{where}.type")


def input_items(value: str | list[dict[str, Any]]) -> tuple[ResponseItem, ...]:
    """``input``: a string is one user message."""
    if isinstance(value, str):
        return (ResponseItem("message", new_id("msg"), role="user", content=(value,)),)
    return tuple(input_item(raw, i) for i, raw in enumerate(value))


# -- tools, tool choice, text format -----------------------------------------------------------------

class _FunctionTool(StrictModel):
    """A function tool as the Responses API spells it (flat, not under ``function``)."""

    type: str
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


def tools(raw: list[dict[str, Any]] | None) -> tuple[tuple[ToolSpec, ...], list[dict[str, Any]]]:
    """The function tools in core terms, and as the response object shows them; other tool types are refused."""
    if not raw:
        return (), []
    chat_shaped, shown = [], []
    for i, tool in enumerate(raw):
        if tool.get("type") != "function":
            raise ValidationError(f"tools[{i}].type: only function tools are supported, not {tool.get('type')!r}",
                                  field=f"tools[{i}].type")
        t = validate_value(_FunctionTool, tool, f"tools[{i}]")
        fn = {"name": t.name, "description": t.description, "parameters": t.parameters}
        chat_shaped.append({"type": "function", "function": {k: v for k, v in fn.items() if v is not None}})
        shown.append({"type": "function", **fn, "strict": t.strict if t.strict is not None else True})
    try:
        specs = tool_specs_from_openai(chat_shaped)
    except ValidationError as err:  # it names tools[i].function.x; here the fields are flat
        field = (err.field or "tools").replace(".function.", ".")
        raise ValidationError(err.message.replace(".function.", "."), field=field) from None
    return tuple(specs), shown


def tool_choice(value: str | dict[str, Any] | None, specs: tuple[ToolSpec, ...]) -> tuple[str, str | None, Any]:
    """``tool_choice`` in core terms (``auto``, ``none``, ``required`` or ``function`` and its name), and as
    the response object shows it."""
    if value is None:
        return "auto", None, "auto"
    if isinstance(value, str):
        if value == "required" and not specs:
            raise ValidationError("tool_choice: 'required' needs tools", field="tool_choice")
        return value, None, value
    if value.get("type") != "function":
        raise ValidationError(f"tool_choice.type: only 'function' is supported, not {value.get('type')!r}",
                              field="tool_choice.type")
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise ValidationError("tool_choice.name: the function to call is required", field="tool_choice.name")
    if name not in {s.name for s in specs}:
        raise ValidationError(f"tool_choice.name: no tool named {name!r} is given in tools", field="tool_choice.name")
    return "function", name, {"type": "function", "name": name}


def grammar_of(fmt: ResponseTextFormat | None) -> str | None:
    """``text.format`` as a grammar: none for text, any JSON object, or JSON that follows the schema."""
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return json_grammar(field="text.format")
    if fmt.schema_ is None:
        raise ValidationError("text.format.schema: a JSON schema is required", field="text.format.schema")
    return json_grammar(fmt.schema_, field="text.format.schema")


def _format_shown(fmt: ResponseTextFormat | None) -> dict[str, Any]:
    if fmt is None or fmt.type != "json_schema":
        return {"type": fmt.type if fmt is not None else "text"}
    return {"type": "json_schema", "name": fmt.name, "schema": fmt.schema_, "description": fmt.description,
            "strict": fmt.strict}


# -- the core's field names in this API's words ---------------------------------------------------

# The core names the fields of a chat request; the same limits here are on the Responses API's fields.
CORE_FIELDS = {"max_tokens": "max_output_tokens", "prompt": "input", "messages": "input"}
_MAX_TOKENS = re.compile(r"\bmax_tokens\b")


@contextlib.contextmanager
def our_fields() -> Iterator[None]:
    """Rename the field a core error names (``max_tokens``, ``prompt``, ``messages``) to this API's."""
    try:
        yield
    except LlmdError as err:
        if err.field in CORE_FIELDS:
            err.field = CORE_FIELDS[err.field]
            err.message = _MAX_TOKENS.sub("max_output_tokens", err.message)
        raise


# -- fields llmd cannot honour -----------------------------------------------------------------

def _refuse(field: str, why: str) -> ValidationError:
    return ValidationError(f"{field}: {why}", field=field)


def _check_common(body: ResponseInputFields) -> None:
    """Refuse what the shared fields ask for that llmd cannot do."""
    if body.conversation is not None:
        raise _refuse("conversation", "conversations are not supported; use previous_response_id")
    if body.truncation == "auto":
        raise _refuse("truncation", "only 'disabled' is supported: an input that does not fit is a 400")
    r = body.reasoning
    if r is not None:
        if r.effort not in (None, "none"):
            raise _refuse("reasoning.effort", "the models llmd serves have no reasoning effort to set "
                          "(leave it out, null or 'none')")
        if r.summary is not None:
            raise _refuse("reasoning.summary", "there is no reasoning to summarise (leave it out)")
        if r.generate_summary is not None:
            raise _refuse("reasoning.generate_summary", "there is no reasoning to summarise (leave it out)")
    if body.text is not None and body.text.verbosity not in (None, "medium"):
        raise _refuse("text.verbosity", "only 'medium' is supported")


def _check_create(body: ResponseCreateRequest) -> None:
    """Refuse what a create request asks for that llmd cannot do; its neutral values pass."""
    _check_common(body)
    for i, what in enumerate(body.include or ()):
        if what not in NEUTRAL_INCLUDES:
            raise _refuse(f"include[{i}]", f"{what!r} cannot be included")
    if body.background:
        raise _refuse("background", "background responses are not supported")
    if body.service_tier not in (None, "auto", "default"):
        raise _refuse("service_tier", "only 'auto' or 'default' is supported")
    if body.top_logprobs:
        raise _refuse("top_logprobs", "log-probabilities are not supported by this API (only 0)")
    if body.prompt_cache_retention == "24h":
        raise _refuse("prompt_cache_retention", "only 'in_memory' is supported")
    for name in ("prompt", "context_management", "prompt_cache_options", "background_options", "access_programs",
                 "image", "moderation"):
        if getattr(body, name):
            raise _refuse(name, "not supported (leave it out)")
    meta = body.metadata or {}
    if len(meta) > MAX_METADATA:
        raise _refuse("metadata", f"at most {MAX_METADATA} pairs")
    for key, value in meta.items():
        if len(key) > 64 or len(value) > 512:
            raise _refuse(f"metadata.{key[:64]}", "keys are at most 64 characters, values at most 512")


# -- requests in core terms ------------------------------------------------------------------------

def _spec(body: ResponseInputFields, model: str | None, params: SamplingParams, *, store: bool,
          echo: dict[str, Any] | None = None, endpoint: str = "/v1/responses") -> ResponseSpec:
    specs, shown_tools = tools(body.tools)
    choice, name, shown_choice = tool_choice(body.tool_choice, specs)
    parallel = body.parallel_tool_calls is not False
    shown = {"tools": shown_tools, "tool_choice": shown_choice, "parallel_tool_calls": parallel,
             "text": {"format": _format_shown(body.text.format if body.text else None), "verbosity": "medium"},
             **(echo or {})}
    return ResponseSpec(input=input_items(body.input), model=model, instructions=body.instructions, params=params,
                        tools=specs, tool_choice=choice, tool_name=name, parallel_tool_calls=parallel,
                        previous_response_id=body.previous_response_id, store=store, echo=shown, endpoint=endpoint)


def spec_from_request(body: ResponseCreateRequest) -> ResponseSpec:
    """A ``POST /v1/responses`` body in core terms."""
    _check_create(body)
    grammar = grammar_of(body.text.format if body.text else None)
    params = SamplingParams(max_tokens=body.max_output_tokens, temperature=body.temperature, top_p=body.top_p,
                            grammar=grammar)
    store = body.store is not False
    echo = {"max_output_tokens": body.max_output_tokens, "temperature": body.temperature, "top_p": body.top_p,
            "metadata": body.metadata or {}, "user": body.user, "safety_identifier": body.safety_identifier,
            "prompt_cache_key": body.prompt_cache_key, "max_tool_calls": body.max_tool_calls}
    return _spec(body, body.model, params, store=store, echo=echo)


def spec_for_count(body: InputTokensRequest) -> ResponseSpec:
    """A ``POST /v1/responses/input_tokens`` body in core terms (nothing is generated or stored)."""
    _check_common(body)
    if body.personality is not None:
        raise _refuse("personality", "not supported (leave it out)")
    grammar_of(body.text.format if body.text else None)  # a bad schema is a 400 here too
    return _spec(body, body.model, SamplingParams(), store=False, endpoint="/v1/responses/input_tokens")


# -- responses out -----------------------------------------------------------------------------

def item_object(item: ResponseItem) -> dict[str, Any]:
    """An item as OpenAI shows it: an output message's parts are ``output_text``, other messages' ``input_text``."""
    if item.type == "message":
        if item.role == "assistant":
            parts = [{"type": "output_text", "text": t, "annotations": [], "logprobs": []} for t in item.content]
        else:
            parts = [{"type": "input_text", "text": t} for t in item.content]
        return {"type": "message", "id": item.id, "status": item.status, "role": item.role, "content": parts}
    if item.type == "function_call":
        return {"type": "function_call", "id": item.id, "call_id": item.call_id, "name": item.name,
                "arguments": item.arguments, "status": item.status}
    return {"type": "function_call_output", "id": item.id, "call_id": item.call_id, "output": item.output,
            "status": item.status}


def usage_object(rec: ResponseRecord) -> dict[str, Any] | None:
    """OpenAI's usage of a response: input (and cached), output and total tokens."""
    u = rec.usage
    if u is None:
        return None
    return {"input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": u.cached_tokens},
            "output_tokens": u.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": u.total_tokens}


def response_object(rec: ResponseRecord) -> dict[str, Any]:
    """A ``response`` object, with the request's fields as OpenAI repeats them."""
    echo = rec.echo
    return {
        "id": rec.id, "object": "response", "created_at": int(rec.created_at), "status": rec.status,
        "background": False,
        "completed_at": int(rec.completed_at) if rec.completed_at is not None else None,
        "error": rec.error,
        "incomplete_details": {"reason": rec.incomplete_reason} if rec.incomplete_reason else None,
        "instructions": rec.instructions,
        "max_output_tokens": echo.get("max_output_tokens"),
        "max_tool_calls": echo.get("max_tool_calls"),
        "model": rec.model,
        "output": [item_object(i) for i in rec.output],
        "parallel_tool_calls": echo.get("parallel_tool_calls", True),
        "previous_response_id": rec.previous_response_id,
        "prompt_cache_key": echo.get("prompt_cache_key"),
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": echo.get("safety_identifier"),
        "service_tier": "default",
        "store": rec.store,
        "temperature": echo.get("temperature"),
        "text": echo.get("text", {"format": {"type": "text"}, "verbosity": "medium"}),
        "tool_choice": echo.get("tool_choice", "auto"),
        "tools": echo.get("tools", []),
        "top_logprobs": 0,
        "top_p": echo.get("top_p"),
        "truncation": "disabled",
        "usage": usage_object(rec),
        "user": echo.get("user"),
        "metadata": echo.get("metadata", {}),
    }


def deleted_object(response_id: str) -> dict[str, Any]:
    """The answer to ``DELETE /v1/responses/{id}``."""
    return {"id": response_id, "object": "response.deleted", "deleted": True}


def items_page(page: ItemPage) -> dict[str, Any]:
    """A ``list`` of input items, with the ids to page on."""
    data = [item_object(i) for i in page.items]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": page.has_more}


def input_tokens_object(count: int) -> dict[str, Any]:
    """The answer to ``POST /v1/responses/input_tokens``."""
    return {"object": "response.input_tokens", "input_tokens": count}


# -- the stream -------------------------------------------------------------------------------------

class _Events:
    """Typed SSE events of one stream, numbered in order."""

    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, kind: str, **data: Any) -> str:
        body = json.dumps({"type": kind, **data, "sequence_number": self.seq}, ensure_ascii=False,
                          separators=(",", ":"))
        self.seq += 1
        return f"event: {kind}\ndata: {body}\n\n"

    def output(self, e: OutputEvent) -> str:
        """An item event as OpenAI's events: a message's part, its text deltas and ends; a call's arguments."""
        if isinstance(e, TextAdded):
            return self("response.output_text.delta", item_id=e.item_id, output_index=e.index, content_index=0,
                        delta=e.text, logprobs=[])
        if isinstance(e, ArgumentsAdded):
            return self("response.function_call_arguments.delta", item_id=e.item_id, output_index=e.index,
                        delta=e.text)
        item = item_object(e.item)
        if isinstance(e, ItemAdded):
            out = self("response.output_item.added", output_index=e.index, item=item)
            if e.item.type == "message":
                out += self("response.content_part.added", item_id=e.item.id, output_index=e.index, content_index=0,
                            part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
            return out
        assert isinstance(e, ItemDone)
        out = ""
        if e.item.type == "message":
            part = item["content"][0] if item["content"] else {"type": "output_text", "text": "", "annotations": [],
                                                              "logprobs": []}
            out += self("response.output_text.done", item_id=e.item.id, output_index=e.index, content_index=0,
                        text=part["text"], logprobs=[])
            out += self("response.content_part.done", item_id=e.item.id, output_index=e.index, content_index=0,
                        part=part)
        else:
            out += self("response.function_call_arguments.done", item_id=e.item.id, output_index=e.index,
                        name=e.item.name, arguments=e.item.arguments)
        return out + self("response.output_item.done", output_index=e.index, item=item)

    def error(self, err: LlmdError) -> str:
        """An ``error`` event: code, message, the field at fault."""
        return self("error", code=err.code, message=err.message, param=err.field)


def response_stream(streams: OpenStreams, run: ResponseRun) -> Response:
    """A response as OpenAI's typed events: created, in_progress, the items' events, then completed (or
    incomplete; a failure is an ``error`` event then ``response.failed``)."""
    ev = _Events()

    async def events() -> AsyncIterator[str]:
        start = response_object(run.response)
        yield ev("response.created", response=start) + ev("response.in_progress", response=start)
        try:
            async for batch in run.events():
                yield "".join(ev.output(e) for e in batch)
        except LlmdError as err:
            yield ev.error(err)
            return
        except Exception:  # noqa: BLE001 - logged with its traceback, never sent
            log.exception("response %s failed while streaming", run.response.id)
            yield ev.error(InternalError("the response failed; see the daemon's log"))
            return
        rec = run.response
        obj = response_object(rec)
        if rec.status == "completed":
            yield ev("response.completed", response=obj)
        elif rec.status == "incomplete":
            yield ev("response.incomplete", response=obj)
        else:
            err = rec.error or {}
            yield (ev("error", code=err.get("code"), message=err.get("message", "the response failed"), param=None)
                   + ev("response.failed", response=obj))

    return sse_response(streams, events())
