"""Tool calling in the core: what a request's tools do to the prompt and the sampler, and to the answer.

Every dialect with tools (the OpenAI chat and Responses APIs, the Anthropic
Messages API, Ollama's chat) gives the core a :class:`GenerateRequest` with
``tools``, ``tool_choice`` and a history whose messages may carry tool calls
and tool results. Here:

* :func:`plan` decides, from the model's chat template, how the tools reach
  the prompt: through the template's own ``tools`` variable (and its
  ``tool_calls`` / ``tool`` messages) when it has them, else through a
  fallback system prompt with the calls and results written in the Hermes
  form (``<tool_call>{json}</tool_call>``, ``<tool_response>``) that the
  parser expects; and, for a forced choice (``required`` or a named function),
  the grammar that makes the model call a tool with arguments that validate;
* :class:`ToolCallingGeneration` wraps a generation: it parses the model's
  text as it streams (llmd/core/toolcalls.py) into text events and
  :class:`ToolCallDelta` events, and ends with the calls in the result and
  ``finish_reason`` ``tool_calls``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator, Sequence

from llmd.core import toolcalls
from llmd.core.deployment import Generation
from llmd.core.toolcalls import TextDelta, ToolCallArgs, ToolCallStart, ToolCallStream, ToolFormat
from llmd.core.types import (
    ChatMessage,
    FinishReason,
    GenerateRequest,
    GenerationResult,
    TokenEvent,
    ToolCallDelta,
    ToolSpec,
)
from llmd.errors import ValidationError

CHOICES = ("auto", "none", "required", "function")


@dataclass(frozen=True)
class ToolPlan:
    """How one request's tools are rendered, forced and parsed."""

    messages: list[dict[str, Any]]  # the chat as the template's ``messages``
    tools: list[dict[str, Any]] | None  # the template's ``tools`` (None: not given to the template)
    grammar: str | None  # forces a call (required / a named function)
    fmt: ToolFormat
    parse: bool  # the answer may hold calls: parse it


def _arguments(text: str) -> Any:
    """A call's arguments as templates expect them (an object; the text when it is not JSON)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _native(m: ChatMessage) -> dict[str, Any]:
    """A message for a template that knows tools: OpenAI's shape, arguments as objects."""
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": _arguments(c.arguments)}}
                             for c in m.tool_calls]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.name is not None:
        out["name"] = m.name
    return out


def _fallback(m: ChatMessage) -> dict[str, Any]:
    """A message for a template without tools: calls and results written as text in the Hermes form."""
    if m.role == "tool":
        return {"role": "user", "content": f"<tool_response>\n{m.content}\n</tool_response>"}
    if m.tool_calls:
        calls = "\n".join("<tool_call>\n" + json.dumps({"name": c.name, "arguments": _arguments(c.arguments)},
                                                       ensure_ascii=False) + "\n</tool_call>"
                          for c in m.tool_calls)
        return {"role": m.role, "content": (m.content + "\n" if m.content else "") + calls}
    return {"role": m.role, "content": m.content}


def validate(req: GenerateRequest) -> None:
    """The request's tool fields make sense together (400s naming the field; before anything runs)."""
    if req.tool_choice not in CHOICES:
        raise ValidationError(f"tool_choice must be one of {', '.join(CHOICES)}", field="tool_choice")
    forced = req.tool_choice in ("required", "function")
    if forced and not req.tools:
        raise ValidationError(f"tool_choice '{req.tool_choice}' needs tools", field="tool_choice")
    if req.tool_choice == "function" and req.tool_name not in {t.name for t in req.tools}:
        raise ValidationError(f"tool_choice names '{req.tool_name}', which is not one of the tools",
                              field="tool_choice")
    if forced and req.params.grammar:
        raise ValidationError("a forced tool_choice cannot be combined with a grammar or a response format",
                              field="tool_choice")
    if req.tools and req.messages is None:
        raise ValidationError("tools need a chat (messages), not a raw prompt", field="tools")


def involved(req: GenerateRequest) -> bool:
    """Whether ``req`` has anything to do with tools (cheap: a request without tools skips :func:`plan`)."""
    return bool(req.tools) or req.tool_choice != "auto" or any(
        m.tool_calls or m.role == "tool" for m in req.messages or ())


def plan(req: GenerateRequest, chat_template: str | None) -> ToolPlan | None:
    """How ``req``'s tools reach the prompt and the sampler; None for a request with nothing about tools."""
    if req.tools or req.tool_choice != "auto":
        validate(req)
    history_has_tools = bool(req.messages) and any(m.tool_calls or m.role == "tool" for m in req.messages or ())
    if not req.tools and not history_has_tools:
        return None
    active = bool(req.tools) and req.tool_choice != "none"
    native = toolcalls.template_supports_tools(chat_template)
    fmt = toolcalls.detect_format(chat_template) if native else ToolFormat.GENERIC
    messages = list(req.messages or ())
    if native:
        rendered = [_native(m) for m in messages]
        tools = [t.to_openai() for t in req.tools] if active else None
    else:
        rendered = [_fallback(m) for m in messages]
        tools = None
        if active:
            prompt = toolcalls.fallback_system_prompt(req.tools)
            if rendered and rendered[0]["role"] == "system":
                rendered[0] = {**rendered[0], "content": rendered[0]["content"] + "\n\n" + prompt}
            else:
                rendered.insert(0, {"role": "system", "content": prompt})
    grammar = None
    if active and req.tool_choice in ("required", "function"):
        grammar = toolcalls.tool_grammar(req.tools, choice=req.tool_name if req.tool_choice == "function" else None,
                                         parallel=req.parallel_tool_calls, fmt=fmt)
    return ToolPlan(rendered, tools, grammar, fmt, parse=active)


def _event(e: Any, choice: int) -> TokenEvent | ToolCallDelta:
    if isinstance(e, TextDelta):
        return TokenEvent(e.text, index=choice)
    if isinstance(e, ToolCallStart):
        return ToolCallDelta(call=e.index, id=e.id, name=e.name, index=choice)
    assert isinstance(e, ToolCallArgs)
    return ToolCallDelta(call=e.index, arguments=e.fragment, index=choice)


class ToolCallingGeneration(Generation):
    """A generation whose text is parsed for tool calls as it streams (see the module docstring).

    Text that may begin a call is held back until it is known not to; a call
    is sent once its JSON is complete (its id and name, then its arguments).
    The result's ``text`` is the text that was not a call, ``tool_calls`` the
    calls, and ``finish_reason`` ``tool_calls`` when there are any.
    """

    def __init__(self, inner: Generation, fmt: ToolFormat, tools: Sequence[ToolSpec],
                 parallel: bool = True) -> None:
        self.inner = inner
        self.model = inner.model
        self.prompt_tokens = inner.prompt_tokens
        self.result: GenerationResult | None = None
        self.results: list[GenerationResult] | None = None
        self._fmt, self._tools, self._parallel = fmt, tuple(tools), parallel
        self._streams: dict[int, ToolCallStream] = {}

    def _stream(self, choice: int) -> ToolCallStream:
        s = self._streams.get(choice)
        if s is None:
            s = self._streams[choice] = ToolCallStream(self._fmt, self._tools)
        return s

    async def __aiter__(self) -> AsyncIterator[TokenEvent]:  # type: ignore[override]
        async for batch in self.batches():
            for event in batch:
                yield event  # type: ignore[misc]

    async def batches(self) -> AsyncIterator[list[Any]]:  # type: ignore[override]
        """Text and tool-call events, in lists of those that arrived together."""
        try:
            async for batch in self.inner.batches():
                out: list[Any] = []
                for ev in batch:
                    if isinstance(ev, TokenEvent):
                        parsed = [_event(e, ev.index) for e in self._stream(ev.index).feed(ev.text)]
                        if ev.logprobs and parsed and isinstance(parsed[0], TokenEvent):
                            parsed[0] = dataclasses.replace(parsed[0], logprobs=ev.logprobs)
                        out.extend(parsed)
                    else:
                        out.append(ev)
                if out:
                    yield out
            tail = [_event(e, choice) for choice, s in sorted(self._streams.items()) for e in s.finish()]
            if tail:
                yield tail
        finally:
            self._settle()

    def _settle(self) -> None:
        """The inner result(s), with the text that was not a call and the calls parsed."""
        inner = self.inner.result
        if inner is None or self.result is not None:
            return
        many = getattr(self.inner, "results", None)
        if many:
            self.results = [self._final(r) for r in many]
        self.result = self._final(inner)

    def _final(self, r: GenerationResult) -> GenerationResult:
        s = self._streams.get(r.index)
        if s is None:  # nothing streamed through the parser (an error before the first token)
            return r
        calls = tuple(s.calls if self._parallel else s.calls[:1])
        reason = r.finish_reason
        if calls and reason in (FinishReason.STOP, FinishReason.LENGTH):
            reason = FinishReason.TOOL_CALLS
        return dataclasses.replace(r, text=s.text, tool_calls=calls, finish_reason=reason)

    def cancel(self, reason: FinishReason = FinishReason.CANCELLED) -> None:
        """Stop the generation underneath."""
        self.inner.cancel(reason)
