"""Responses: the OpenAI Responses API's conversations, generated and (with ``store``) kept in SQLite.

A response is one answer to a list of *items*: messages, the function calls
the model made and the outputs the client sends back for them. Its output is
items too (a message, function calls), and a stored response can be
continued: ``previous_response_id`` puts its input and output items before
the new input. The instructions (a system prompt) belong to one response
only; they are not carried over (OpenAI's documented behaviour).

The items are core types (:class:`ResponseItem`); the dialect parses the wire
format into them and renders them back. A generation's token and tool-call
events become item events here (:class:`ResponseRun`), so the ids a stream
shows are the ids that are stored. A stored row keeps every input item the
model saw, earlier turns' too, so continuing from a response reads that one
row, whatever was deleted since.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Union

from llmd.config import ResponsesConfig
from llmd.core.deployment import Generation
from llmd.core.inference import Inference
from llmd.core.toolcalls import new_call_id
from llmd.core.types import (
    ChatMessage,
    FinishReason,
    GenerateRequest,
    GenerationResult,
    SamplingParams,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from llmd.errors import NotFoundError, ValidationError
from llmd.store.responses import ResponseRepo

ITEM_TYPES = ("message", "function_call", "function_call_output")


def new_id(prefix: str) -> str:
    """An id in OpenAI's style: ``resp_``, ``msg_``, ``fc_`` and 48 hex digits."""
    return f"{prefix}_{uuid.uuid4().hex}{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True)
class ResponseItem:
    """One item of a response's input or output.

    ``type`` says which fields matter: a ``message`` has ``role`` (user,
    assistant, system or developer) and ``content`` (its text parts); a
    ``function_call`` has ``call_id``, ``name`` and ``arguments`` (JSON text);
    a ``function_call_output`` answers ``call_id`` with ``output``.
    """

    type: str
    id: str
    role: str = ""
    content: tuple[str, ...] = ()
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    output: str = ""
    status: str = "completed"  # in_progress while it streams; incomplete when the answer was cut

    @property
    def text(self) -> str:
        """A message's text, its parts joined."""
        return "".join(self.content)

    def to_dict(self) -> dict[str, Any]:
        """The item as plain JSON values (for the store): only the fields of its type."""
        out: dict[str, Any] = {"type": self.type, "id": self.id, "status": self.status}
        if self.type == "message":
            out.update(role=self.role, content=list(self.content))
        elif self.type == "function_call":
            out.update(call_id=self.call_id, name=self.name, arguments=self.arguments)
        else:
            out.update(call_id=self.call_id, output=self.output)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResponseItem:
        """An item as :meth:`to_dict` wrote it."""
        return cls(type=d["type"], id=d["id"], role=d.get("role", ""), content=tuple(d.get("content", ())),
                   call_id=d.get("call_id", ""), name=d.get("name", ""), arguments=d.get("arguments", ""),
                   output=d.get("output", ""), status=d.get("status", "completed"))


@dataclass(frozen=True)
class ResponseSpec:
    """What a request asks for: input items, the model, sampling, tools, and whether to store the answer.

    ``echo`` holds the request's other fields as the dialect shows them again
    in the response object (its tools as sent, the text format, metadata);
    the core stores it as given and never reads it.
    """

    input: tuple[ResponseItem, ...]
    model: str | None = None
    instructions: str | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str = "auto"  # auto | none | required | function (``tool_name``)
    tool_name: str | None = None
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    store: bool = True
    echo: dict[str, Any] = field(default_factory=dict)
    dialect: str = "openai"
    endpoint: str = "/v1/responses"


@dataclass(frozen=True)
class ResponseRecord:
    """A response: while it is generated (``in_progress``), and as it ended and was stored.

    ``status``: ``completed``, ``incomplete`` (``incomplete_reason``
    ``max_output_tokens``) or ``failed`` (``error``: ``{code, message}``).
    ``input`` is every item the model saw, the earlier turns' included.
    """

    id: str
    created_at: float
    model: str
    status: str
    input: tuple[ResponseItem, ...]
    output: tuple[ResponseItem, ...] = ()
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool = True
    usage: Usage | None = None
    incomplete_reason: str | None = None
    error: dict[str, str] | None = None
    completed_at: float | None = None
    echo: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemPage:
    """A page of a response's input items, and whether more follow in that order."""

    items: list[ResponseItem]
    has_more: bool


# -- what a stream shows, item by item ------------------------------------------------------------

@dataclass(frozen=True)
class ItemAdded:
    """An output item begins (``item`` in progress: no text or arguments yet)."""

    index: int
    item: ResponseItem


@dataclass(frozen=True)
class TextAdded:
    """More text of the message item ``item_id``."""

    index: int
    item_id: str
    text: str


@dataclass(frozen=True)
class ArgumentsAdded:
    """More of the arguments (JSON text) of the function call item ``item_id``."""

    index: int
    item_id: str
    text: str


@dataclass(frozen=True)
class ItemDone:
    """An output item is whole."""

    index: int
    item: ResponseItem


OutputEvent = Union[ItemAdded, TextAdded, ArgumentsAdded, ItemDone]


def chat_messages(instructions: str | None, items: tuple[ResponseItem, ...]) -> tuple[ChatMessage, ...]:
    """The items as a chat: the instructions first (a system message), a ``developer`` message as a system
    one, function calls on the assistant message before them (one message for consecutive calls), each
    output a ``tool`` message naming the function its call named."""
    out: list[dict[str, Any]] = []
    if instructions:
        out.append({"role": "system", "content": instructions, "calls": []})
    names: dict[str, str] = {}
    for item in items:
        if item.type == "message":
            out.append({"role": "system" if item.role == "developer" else item.role, "content": item.text,
                        "calls": []})
        elif item.type == "function_call":
            names[item.call_id] = item.name
            call = ToolCall(item.call_id, item.name, item.arguments)
            if out and out[-1]["role"] == "assistant":  # the text (or calls) of the same turn
                out[-1]["calls"].append(call)
            else:
                out.append({"role": "assistant", "content": "", "calls": [call]})
        else:
            out.append({"role": "tool", "content": item.output, "calls": [], "tool_call_id": item.call_id,
                        "name": names.get(item.call_id)})
    return tuple(ChatMessage(m["role"], m["content"], tool_calls=tuple(m["calls"]),
                             tool_call_id=m.get("tool_call_id"), name=m.get("name")) for m in out)


def outcome(result: GenerationResult) -> tuple[str, str | None, dict[str, str] | None]:
    """A generation's end as a response status, the reason it is incomplete, and its error."""
    if result.finish_reason in (FinishReason.STOP, FinishReason.TOOL_CALLS):
        return "completed", None, None
    if result.finish_reason is FinishReason.LENGTH:
        return "incomplete", "max_output_tokens", None
    err = result.error
    if err is not None:
        return "failed", None, {"code": err.code, "message": err.message}
    why = result.finish_reason.value  # cancelled without an error: nobody asked for the rest
    return "failed", None, {"code": why, "message": f"the answer ended early ({why})"}


@dataclass
class _Open:
    """An output item as it streams."""

    index: int
    type: str
    id: str
    call_id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)
    status: str = "in_progress"

    def item(self) -> ResponseItem:
        text = "".join(self.parts)
        if self.type == "message":
            return ResponseItem("message", self.id, role="assistant", content=(text,) if text else (),
                                status=self.status)
        return ResponseItem("function_call", self.id, call_id=self.call_id, name=self.name, arguments=text,
                            status=self.status)


class ResponseRun:
    """One response being generated: its output as item events, then (stored when asked) the response.

    Iterate :meth:`events` (a stream) or await :meth:`collect`; afterwards
    ``response`` is the response as it ended. Leaving the iteration early
    (the client went away) cancels the generation and stores nothing.
    """

    def __init__(self, owner: Responses, record: ResponseRecord, gen: Generation) -> None:
        self.response = record
        self._owner = owner
        self._gen = gen
        self._items: list[_Open] = []
        self._current: _Open | None = None
        self._calls: dict[int, _Open] = {}  # the generation's call number -> its item

    def _close(self, out: list[OutputEvent], status: str = "completed") -> None:
        cur = self._current
        if cur is not None and cur.status == "in_progress":
            cur.status = status
            out.append(ItemDone(cur.index, cur.item()))
        self._current = None

    def _open(self, kind: str, out: list[OutputEvent], *, call_id: str = "", name: str = "") -> _Open:
        self._close(out)
        item = _Open(len(self._items), kind, new_id("msg" if kind == "message" else "fc"), call_id=call_id,
                     name=name)
        self._items.append(item)
        self._current = item
        out.append(ItemAdded(item.index, item.item()))
        return item

    def _text(self, text: str, out: list[OutputEvent]) -> None:
        cur = self._current
        if cur is None or cur.type != "message":
            cur = self._open("message", out)
        cur.parts.append(text)
        out.append(TextAdded(cur.index, cur.id, text))

    @staticmethod
    def _arguments(call: _Open, text: str, out: list[OutputEvent]) -> None:
        if text:
            call.parts.append(text)
            out.append(ArgumentsAdded(call.index, call.id, text))

    def _call(self, delta: ToolCallDelta, out: list[OutputEvent]) -> None:
        call = self._calls.get(delta.call)
        if call is None:
            call = self._calls[delta.call] = self._open("function_call", out, call_id=delta.id or new_call_id(),
                                                        name=delta.name or "")
        elif delta.name and not call.name:
            call.name = delta.name
        self._arguments(call, delta.arguments, out)

    def _settle(self, result: GenerationResult, status: str) -> list[OutputEvent]:
        """Add what the result holds that did not stream (a text, a call or its arguments); close the last item.

        What streamed stays as it was sent, so the stream and the stored response agree.
        """
        out: list[OutputEvent] = []
        if not any(i.type == "message" for i in self._items) and result.text.strip():
            self._text(result.text, out)
        streamed = list(self._calls.values())
        for k, call in enumerate(result.tool_calls):
            if k < len(streamed):
                opened = streamed[k]
                opened.name = opened.name or call.name
                if not opened.parts and opened.status == "in_progress":  # announced, its arguments never came
                    self._arguments(opened, call.arguments, out)
                continue
            item = self._open("function_call", out, call_id=call.id or new_call_id(), name=call.name)
            self._arguments(item, call.arguments, out)
        # Earlier items were whole when the next began; the last one is cut when the answer was.
        self._close(out, "completed" if status == "completed" else "incomplete")
        return out

    async def events(self) -> AsyncIterator[list[OutputEvent]]:
        """The output's events, in lists of those that arrived together; the last list ends every item."""
        async for batch in self._gen.batches():
            out: list[OutputEvent] = []
            for event in batch:
                if event.index:  # one answer per response (n is 1)
                    continue
                if isinstance(event, ToolCallDelta):
                    self._call(event, out)
                elif event.text:
                    self._text(event.text, out)
            if out:
                yield out
        result = self._gen.result
        assert result is not None
        out = self._settle(result, outcome(result)[0])
        self.response = await self._owner.finish(self.response, tuple(i.item() for i in self._items), result)
        if out:
            yield out

    async def collect(self) -> ResponseRecord:
        """Wait for the end; the response as it ended (stored when asked)."""
        async for _ in self.events():
            pass
        return self.response

    async def collect_or_raise(self) -> ResponseRecord:
        """Like :meth:`collect`, but raise the error of a failed generation (after storing the response)."""
        record = await self.collect()
        result = self._gen.result
        if result is not None and result.error is not None:
            raise result.error
        return record


class Responses:
    """Responses generated on the fleet's deployments, kept in the store for ``responses.keep_days``."""

    def __init__(self, config: ResponsesConfig, repo: ResponseRepo, inference: Inference, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.repo = repo
        self.inference = inference
        self.clock = clock

    # -- creating ---------------------------------------------------------------------
    async def create(self, spec: ResponseSpec) -> ResponseRun:
        """Queue the response's generation (the earlier turns first, with ``previous_response_id``).

        Every refusal (an unknown previous response or model, a bad grammar,
        a prompt that does not fit, a full queue) is raised here, before
        anything is streamed.
        """
        items = await self._context(spec)
        gen = await self.inference.generate(self._request(spec, items))
        record = ResponseRecord(id=new_id("resp"), created_at=self.clock(), model=gen.model, status="in_progress",
                                input=items, instructions=spec.instructions,
                                previous_response_id=spec.previous_response_id, store=spec.store, echo=spec.echo)
        return ResponseRun(self, record, gen)

    async def input_tokens(self, spec: ResponseSpec) -> int:
        """The tokens the response's input would take (instructions, earlier turns and tools included)."""
        items = await self._context(spec)
        return await self.inference.count_tokens(self._request(spec, items))

    async def _context(self, spec: ResponseSpec) -> tuple[ResponseItem, ...]:
        items = spec.input
        if spec.previous_response_id is not None:
            prev = await self._load(spec.previous_response_id, "previous_response_id")
            items = prev.input + prev.output + items
        if not items and not spec.instructions:
            raise ValidationError("input: give at least one input item", field="input")
        return items

    @staticmethod
    def _request(spec: ResponseSpec, items: tuple[ResponseItem, ...]) -> GenerateRequest:
        return GenerateRequest(messages=chat_messages(spec.instructions, items), model=spec.model,
                               params=spec.params, dialect=spec.dialect, endpoint=spec.endpoint, tools=spec.tools,
                               tool_choice=spec.tool_choice, tool_name=spec.tool_name,
                               parallel_tool_calls=spec.parallel_tool_calls)

    async def finish(self, record: ResponseRecord, output: tuple[ResponseItem, ...],
                     result: GenerationResult) -> ResponseRecord:
        """The response as it ended, stored when it asked to be (called by its :class:`ResponseRun`)."""
        status, reason, error = outcome(result)
        final = dataclasses.replace(record, status=status, output=output, usage=result.usage,
                                    incomplete_reason=reason, error=error,
                                    completed_at=self.clock() if status == "completed" else None)
        if final.store:
            await self.repo.put(_row(final))
        return final

    # -- stored responses ---------------------------------------------------------------
    async def get(self, response_id: str) -> ResponseRecord:
        """A stored response; a 404 naming it when there is none (never stored, deleted or pruned)."""
        return await self._load(response_id, "response_id")

    async def delete(self, response_id: str) -> str:
        """Forget a stored response (responses that continued it keep their own copy of the conversation)."""
        if not await self.repo.delete(response_id):
            raise _not_found(response_id, "response_id")
        return response_id

    async def input_items(self, response_id: str, *, limit: int = 20, order: str = "desc",
                          after: str | None = None, before: str | None = None) -> ItemPage:
        """A page of the items the model saw for a response (earlier turns' included), ``desc``: newest first.

        ``after`` / ``before`` name an item of the list: the page holds the
        items after (before) it in that order.
        """
        items = list((await self._load(response_id, "response_id")).input)
        if order == "desc":
            items.reverse()
        ids = [i.id for i in items]
        start, end = 0, len(items)
        if after is not None:
            if after not in ids:
                raise ValidationError(f"after: response {response_id} has no input item '{after}'", field="after")
            start = ids.index(after) + 1
        if before is not None:
            if before not in ids:
                raise ValidationError(f"before: response {response_id} has no input item '{before}'", field="before")
            end = ids.index(before)
        window = items[start:end] if start < end else []
        return ItemPage(window[:limit], len(window) > limit)

    async def prune(self, now: float | None = None) -> int:
        """Forget the responses older than ``responses.keep_days`` (0 keeps them forever); how many went."""
        if self.config.keep_days <= 0:
            return 0
        now = self.clock() if now is None else now
        return await self.repo.prune(now - self.config.keep_days * 86400)

    async def _load(self, response_id: str, what: str) -> ResponseRecord:
        row = await self.repo.get(response_id)
        if row is None:
            raise _not_found(response_id, what)
        return _record(row)


def _not_found(response_id: str, what: str) -> NotFoundError:
    return NotFoundError(f"{what}: no stored response '{response_id}' (never stored, created with store: false, "
                         "deleted or pruned)", field=what)


def _row(r: ResponseRecord) -> dict[str, Any]:
    """A response as the store keeps it."""
    details: dict[str, Any] = {}
    if r.incomplete_reason:
        details["incomplete_reason"] = r.incomplete_reason
    if r.error:
        details["error"] = r.error
    return {
        "id": r.id, "created_at": r.created_at, "completed_at": r.completed_at, "model": r.model,
        "status": r.status, "previous_response_id": r.previous_response_id,
        "request": {"instructions": r.instructions, "input": [i.to_dict() for i in r.input], "echo": r.echo},
        "output": [i.to_dict() for i in r.output],
        "usage": None if r.usage is None else {"prompt_tokens": r.usage.prompt_tokens,
                                               "completion_tokens": r.usage.completion_tokens,
                                               "cached_tokens": r.usage.cached_tokens},
        "details": details or None,
    }


def _record(row: dict[str, Any]) -> ResponseRecord:
    """A stored row as a response."""
    request, details, usage = row["request"], row["details"] or {}, row["usage"]
    return ResponseRecord(
        id=row["id"], created_at=row["created_at"], completed_at=row["completed_at"], model=row["model"],
        status=row["status"], previous_response_id=row["previous_response_id"], store=True,
        instructions=request.get("instructions"), echo=request.get("echo") or {},
        input=tuple(ResponseItem.from_dict(d) for d in request.get("input", ())),
        output=tuple(ResponseItem.from_dict(d) for d in row["output"]),
        usage=None if usage is None else Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0),
                                               usage.get("cached_tokens", 0)),
        incomplete_reason=details.get("incomplete_reason"), error=details.get("error"))
