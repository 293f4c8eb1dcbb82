"""Tool calling: the tools a request offers, the model's wire formats, parsing and forcing tool calls.

A model learns about tools through its chat template (the ``tools`` variable)
or, for a template without tool support, through :func:`fallback_system_prompt`.
What it answers is parsed here, whole (:func:`parse_tool_calls`) or while it
streams (:class:`ToolCallStream`); a forced ``tool_choice`` becomes a GBNF
grammar (:func:`tool_grammar`). Nothing in this module knows an HTTP dialect.

Parsing never raises: whatever is not a complete, valid call of a known tool
stays text, exactly as the model wrote it.
"""

from __future__ import annotations

import enum
import json
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any, Sequence

from llmd.core.types import ToolCall, ToolSpec
from llmd.errors import ValidationError

__all__ = ["ToolCall", "ToolSpec"]  # defined with the other core types; re-exported for the parsers' users

_ID_ALPHABET = string.ascii_letters + string.digits
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_WS = " \t\r\n"
_HERMES_OPEN = "<tool_call>"
_HERMES_CLOSE = "</tool_call>"
_MISTRAL_OPEN = "[TOOL_CALLS]"
_MISTRAL_ARGS = "[ARGS]"
_MISTRAL_CALL_ID = "[CALL_ID]"
_PYTHON_TAG = "<|python_tag|>"
_FENCE = "```"
_FENCE_OPEN = re.compile(r"```[A-Za-z0-9_+-]*")
# Characters of a function name in Mistral's ``[TOOL_CALLS]name[ARGS]{...}`` form.
_MISTRAL_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "_-.")
_MISTRAL_ID_CHARS = frozenset(_ID_ALPHABET)
_STRING_RUN = re.compile(r'[^"\\]*')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_HEX = frozenset(string.hexdigits)
# A GBNF token: a literal, a character class, a repetition count, a comment, a rule name, or anything else.
_GBNF_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|\{[^}]*\}|#[^\n]*|([A-Za-z0-9-]+)|.', re.S)
_JINJA_BLOCK = re.compile(r"\{[{%](.*?)[%}]\}", re.S)
_TOOLS_WORD = re.compile(r"(?<![A-Za-z0-9_])tools(?![A-Za-z0-9_])")
_JINJA_STRING = re.compile(r"'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"", re.S)


def new_call_id() -> str:
    """A fresh call id in OpenAI's style: ``call_`` and 24 random letters and digits."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


class ToolFormat(str, enum.Enum):
    """How a model writes tool calls.

    HERMES: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Hermes, Qwen 2/2.5/3, SmolLM3, ...).
    LLAMA3: Llama 3.1-3.3's bare ``{"name": ..., "parameters": {...}}``, maybe after ``<|python_tag|>``.
    MISTRAL: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}]`` or ``[TOOL_CALLS]name[ARGS]{...}``.
    GENERIC: llmd's fallback for templates without tool support; it uses HERMES's wire form.
    """

    HERMES = "hermes"
    LLAMA3 = "llama3"
    MISTRAL = "mistral"
    GENERIC = "generic"


# -- templates and prompts ---------------------------------------------------


def detect_format(chat_template: str | None) -> ToolFormat:
    """The tool-call format a chat template teaches its model, from the template's text."""
    t = chat_template or ""
    if _HERMES_OPEN in t:
        return ToolFormat.HERMES
    if _MISTRAL_OPEN in t:
        return ToolFormat.MISTRAL
    if _PYTHON_TAG in t or ("ipython" in t and "parameters" in t):
        return ToolFormat.LLAMA3
    return ToolFormat.GENERIC


def template_supports_tools(chat_template: str | None) -> bool:
    """Whether the template renders the ``tools`` variable (named in a Jinja tag, outside its strings).

    Strings do not count: ``message['tools']`` (Phi-4-mini) reads tools from a
    message, not the variable that llmd passes.
    """
    return any(_TOOLS_WORD.search(_JINJA_STRING.sub("", m.group(1)))
               for m in _JINJA_BLOCK.finditer(chat_template or ""))


def fallback_system_prompt(tools: Sequence[ToolSpec]) -> str:
    """A system prompt that teaches the GENERIC (Hermes-style) format, for templates without tool support."""
    listing = "\n".join(json.dumps(t.to_openai(), ensure_ascii=False) for t in tools)
    return (
        "You can call functions (tools) to help answer. Their JSON schemas:\n"
        f"<tools>\n{listing}\n</tools>\n\n"
        "To call a function, answer with one block per call, in exactly this form:\n"
        '<tool_call>\n{"name": "<function name>", "arguments": {<arguments as a JSON object>}}\n</tool_call>\n'
        "The results come back in a later message. If no function is needed, answer normally."
    )


# -- forced tool calls: GBNF -------------------------------------------------


def _gbnf_literal(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def _prefix_rules(gbnf: str, prefix: str) -> str:
    """Every rule name of ``gbnf``, defined or referenced, with ``prefix`` in front.

    Each tool's schema is converted on its own (so its ``$defs`` resolve), and the
    converter reuses names (``root``, ``space``, property names): a prefix per
    conversion is what keeps several of them, and our own rules, apart.
    """
    return _GBNF_TOKEN.sub(lambda m: prefix + m.group(1) if m.group(1) else m.group(0), gbnf)


def _rebase_refs(schema: Any, base: str) -> Any:
    """A copy of ``schema`` whose local ``$ref`` pointers ("#/...") point below ``base`` instead."""
    if isinstance(schema, dict):
        return {k: (base + v[1:] if k == "$ref" and isinstance(v, str) and v.startswith("#") else _rebase_refs(v, base))
                for k, v in schema.items()}
    if isinstance(schema, list):
        return [_rebase_refs(v, base) for v in schema]
    return schema


def _convert(schema: dict[str, Any], tool: ToolSpec, prefix: str) -> str:
    from llmd.core.grammar import json_grammar  # deferred: it loads llama.cpp on first use

    try:
        return _prefix_rules(json_grammar(schema, field="tools"), prefix)
    except ValidationError as exc:
        raise ValidationError(f"tools: the parameters of {tool.name!r} cannot be turned into a grammar: {exc.message}",
                              field="tools") from None


def tool_grammar(tools: Sequence[ToolSpec], *, choice: str | None, parallel: bool, fmt: ToolFormat) -> str:
    """GBNF (root rule ``root``) that makes the model call a tool, in the model's format.

    ``choice`` None means any of ``tools`` (OpenAI's "required"); a name means that
    function only. The arguments must match the tool's parameter schema. With
    ``parallel`` the model may make several calls, else exactly one.
    """
    if not tools:
        raise ValidationError("tools: a tool call is required but no tools were given", field="tools")
    chosen = list(tools)
    if choice is not None:
        chosen = [t for t in tools if t.name == choice]
        if not chosen:
            raise ValidationError(f"tool_choice: no tool is named {choice!r}", field="tool_choice")
    key = "parameters" if fmt is ToolFormat.LLAMA3 else "arguments"
    rules: list[str] = []
    calls: list[str] = []
    named: list[str] = []
    for i, tool in enumerate(chosen):
        call = {"type": "object",
                "properties": {"name": {"const": tool.name}, key: _rebase_refs(tool.parameters, f"#/properties/{key}")},
                "required": ["name", key]}
        rules.append(_convert(call, tool, f"t{i}-"))
        calls.append(f"t{i}-root")
        if fmt is ToolFormat.MISTRAL:
            # Newer Mistral models (tokenizer v11+) write ``[TOOL_CALLS]name[ARGS]{...}``: allow that form too.
            rules.append(_convert(tool.parameters, tool, f"a{i}-"))
            named.append(f"{_gbnf_literal(tool.name + _MISTRAL_ARGS)} a{i}-root")
    more = "*" if parallel else ""
    own = [f"tc-call ::= {' | '.join(calls)}"]
    if fmt is ToolFormat.LLAMA3:
        own += [f"root ::= tc-call (tc-sep tc-call){more}" if parallel else "root ::= tc-call",
                'tc-sep ::= [ \\t]{0,2} (";" | "\\n") [ \\t\\n]{0,2}']
    elif fmt is ToolFormat.MISTRAL:
        own += [f"root ::= {_gbnf_literal(_MISTRAL_OPEN)} (tc-list | tc-named ({_gbnf_literal(_MISTRAL_OPEN)} "
                f"tc-named){more})" if parallel else f"root ::= {_gbnf_literal(_MISTRAL_OPEN)} (tc-list | tc-named)",
                f'tc-list ::= " "? "[" tc-call ("," " "? tc-call){more} "]"' if parallel
                else 'tc-list ::= " "? "[" tc-call "]"',
                f"tc-named ::= {' | '.join(named)}"]
    else:
        # Bounded whitespace: an unbounded run would let a model loop on newlines forever.
        own += [f"root ::= tc-block (tc-ws tc-block){more}" if parallel else "root ::= tc-block",
                f"tc-block ::= {_gbnf_literal(_HERMES_OPEN)} tc-ws tc-call tc-ws {_gbnf_literal(_HERMES_CLOSE)}",
                "tc-ws ::= [ \\t\\r\\n]{0,4}"]
    return "\n".join(own + rules) + "\n"


# -- parsing -----------------------------------------------------------------


@dataclass(frozen=True)
class TextDelta:
    """Content text of the answer (not a tool call)."""

    text: str


@dataclass(frozen=True)
class ToolCallStart:
    """A tool call begins: the ``index``-th of this answer (from 0), with its id and function name."""

    index: int
    id: str
    name: str


@dataclass(frozen=True)
class ToolCallArgs:
    """A piece of the arguments (JSON text) of the ``index``-th call; the pieces of a call concatenate."""

    index: int
    fragment: str


ToolEvent = TextDelta | ToolCallStart | ToolCallArgs


class _JsonScanner:
    """Finds where one JSON object or array ends, a character at a time and across feeds.

    It only recognises JSON (json.loads with strict=False does the parsing); being
    incremental keeps a long streamed call linear, and the first character that
    cannot be JSON is known at once, so a malformed call turns into text early.
    """

    def __init__(self) -> None:
        self.end: int | None = None  # index just past the value, once complete
        self.failed = False
        self._stack: list[str] = []
        self._state = "value"
        self._key = False  # the string being read is an object key
        self._pending = ""  # the number so far, or the rest of true/false/null
        self._hex = 0

    def _fail(self, pos: int) -> int:
        self.failed = True
        return pos

    def _done(self, pos: int) -> bool:
        """A value ended just before ``pos``: the whole one (True) or one inside a container."""
        if self._stack:
            self._state = "after"
            return False
        self.end = pos
        return True

    def scan(self, text: str, pos: int) -> int:
        """Read ``text`` from ``pos``; the index reached (of the bad character when ``failed``)."""
        n = len(text)
        while pos < n and self.end is None:
            st, c = self._state, text[pos]
            if st == "string":
                run = _STRING_RUN.match(text, pos)  # one regex step over plain characters, not one per loop
                pos = run.end() if run else pos
                if pos == n:
                    break
                if text[pos] == "\\":
                    self._state = "escape"
                    pos += 1
                    continue
                pos += 1
                if self._key:
                    self._state = "colon"
                elif self._done(pos):
                    break
                continue
            if st == "escape":
                if c == "u":
                    self._state, self._hex = "hex", 4
                elif c in '"\\/bfnrt':
                    self._state = "string"
                else:
                    return self._fail(pos)
                pos += 1
                continue
            if st == "hex":
                if c not in _HEX:
                    return self._fail(pos)
                self._hex -= 1
                if not self._hex:
                    self._state = "string"
                pos += 1
                continue
            if st == "number":
                if c in "0123456789+-.eE":
                    self._pending += c
                    pos += 1
                    continue
                if not _NUMBER.fullmatch(self._pending):
                    return self._fail(pos)
                if self._done(pos):
                    break
                continue  # c is looked at again, after the number
            if st == "literal":
                if c != self._pending[0]:
                    return self._fail(pos)
                self._pending = self._pending[1:]
                pos += 1
                if not self._pending and self._done(pos):
                    break
                continue
            if c in _WS:
                pos += 1
                continue
            if (st == "first_item" and c == "]") or (st == "first_key" and c == "}") or (
                    st == "after" and c in "]}" and self._stack[-1] == ("[" if c == "]" else "{")):
                self._stack.pop()
                pos += 1
                if self._done(pos):
                    break
                continue
            if st in ("value", "first_item"):
                if c in "{[":
                    self._stack.append(c)
                    self._state = "first_key" if c == "{" else "first_item"
                elif c == '"':
                    self._state, self._key = "string", False
                elif c in "-0123456789":
                    self._state, self._pending = "number", c
                elif c in "tfn":
                    self._state, self._pending = "literal", {"t": "rue", "f": "alse", "n": "ull"}[c]
                else:
                    return self._fail(pos)
            elif st in ("first_key", "key"):
                if c != '"':
                    return self._fail(pos)
                self._state, self._key = "string", True
            elif st == "colon":
                if c != ":":
                    return self._fail(pos)
                self._state = "value"
            elif st == "after" and c == ",":
                self._state = "key" if self._stack[-1] == "{" else "value"
            else:
                return self._fail(pos)
            pos += 1
        return pos


class _Block:
    """A tool-call block being read: where in the buffer, and what has been found so far."""

    def __init__(self, phase: str, pos: int) -> None:
        self.phase = phase
        self.pos = pos
        self.start = pos  # where the current JSON value (or Mistral name) starts
        self.fence = False  # inside a ``` code fence
        self.name: str | None = None  # Mistral's [TOOL_CALLS]name[ARGS] form
        self.scanner = _JsonScanner()
        self.values: list[Any] = []


def _args_json(args: Any) -> str | None:
    """Compact JSON text of a call's arguments, or None when they are not an object."""
    if isinstance(args, str):
        if not args.strip():
            return "{}"
        try:
            args = json.loads(args, strict=False)  # some models send the arguments as a JSON string
        except (ValueError, RecursionError):
            return None
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return None
    try:
        return json.dumps(args, ensure_ascii=False, allow_nan=False)
    except (ValueError, RecursionError):  # 1e999 parsed as inf, or absurd nesting
        return None


def _call_of(obj: Any, fmt: ToolFormat, names: frozenset[str] | None) -> tuple[str, str] | None:
    """(name, arguments JSON) of one parsed call object, or None if it is not a call of a known tool."""
    if not isinstance(obj, dict):
        return None
    if "name" not in obj and isinstance(obj.get("function"), dict):
        obj = obj["function"]  # OpenAI's own shape, which some models copy from the tool list
    name = obj.get("name")
    if not isinstance(name, str) or not name or (names is not None and name not in names):
        return None
    if "arguments" in obj:
        args = _args_json(obj["arguments"])
    elif "parameters" in obj:
        args = _args_json(obj["parameters"])
    else:
        # Without a marker (Llama 3) only the arguments key tells a call from JSON the user asked for.
        args = None if fmt is ToolFormat.LLAMA3 else "{}"
    return None if args is None else (name, args)


class ToolCallStream:
    """Splits a model's streamed output into content text and tool calls.

    :meth:`feed` each decoded piece and :meth:`finish` at the end; both return
    events. Text goes out at once, except what may begin a tool-call marker (and
    whitespace, which is dropped when it only separates text from a call). A call
    is held until its JSON is complete and then comes out as a
    :class:`ToolCallStart` and one :class:`ToolCallArgs` holding the whole
    compact arguments; a call that turns out malformed, of an unknown tool, or
    unfinished at the end comes out as text, exactly as written. For LLAMA3,
    which has no marker, output that starts like a call (``{``, a code fence,
    ``<|python_tag|>``) is held to the end, since only the whole output being
    calls makes it calls.
    """

    def __init__(self, fmt: ToolFormat, tools: Sequence[ToolSpec] | None = None) -> None:
        self.fmt = fmt
        self.calls: list[ToolCall] = []
        self._names = None if tools is None else frozenset(t.name for t in tools)
        self._open = _MISTRAL_OPEN if fmt is ToolFormat.MISTRAL else _HERMES_OPEN
        self._texts: list[str] = []
        self._events: list[ToolEvent] = []
        self._buf = ""  # held text, or the block being read (from its marker on)
        self._ws_before = ""  # whitespace between text and the block being read
        self._after_call = False
        self._plain = False  # LLAMA3 output that is text: no more looking
        self._finished = False
        self._block: _Block | None = _Block("l3start", 0) if fmt is ToolFormat.LLAMA3 else None

    @property
    def text(self) -> str:
        """All content text emitted so far."""
        return "".join(self._texts)

    def feed(self, piece: str) -> list[ToolEvent]:
        """Take the next piece of output; the events it completes."""
        if self._finished:
            return []
        self._buf += piece
        return self._run(final=False)

    def finish(self) -> list[ToolEvent]:
        """The output is complete: release what was held (an unfinished call as text)."""
        if self._finished:
            return []
        events = self._run(final=True)
        self._finished = True
        return events

    # -- internals --
    def _emit_text(self, text: str) -> None:
        if text:
            self._texts.append(text)
            self._events.append(TextDelta(text))
            self._after_call = False

    def _run(self, final: bool) -> list[ToolEvent]:
        while self._step(final):
            pass
        events, self._events = self._events, []
        return events

    def _step(self, final: bool) -> bool:
        """Advance once; whether there may be more to do."""
        if self._plain:
            self._emit_text(self._buf)
            self._buf = ""
            return False
        if self._block is not None:
            return self._step_block(final)
        buf = self._buf.lstrip(_WS) if self._after_call else self._buf
        i = buf.find(self._open)
        if i >= 0:
            seg = buf[:i]
            body = seg.rstrip(_WS)
            self._emit_text(body)
            self._ws_before, self._buf = seg[len(body):], buf[i:]
            self._block = _Block("pre", len(self._open))
            return True
        if final:
            self._emit_text(buf)
            self._buf = ""
            return False
        # Hold back what may start the marker, and trailing whitespace, which a call would swallow.
        keep = next((k for k in range(min(len(self._open) - 1, len(buf)), 0, -1) if buf.endswith(self._open[:k])), 0)
        j = len(buf[:len(buf) - keep].rstrip(_WS))
        self._emit_text(buf[:j])
        self._buf = buf[j:]
        return False

    def _step_block(self, final: bool) -> bool:
        b = self._block
        assert b is not None
        verdict, end = self._advance(b)
        if verdict == "wait":
            if not final:
                return False
            verdict, end = ("done", len(self._buf)) if b.phase == "post" else ("fail", len(self._buf))
        self._block = None
        if verdict == "done":
            calls = self._calls(b.values)
            if calls is not None:
                self._ws_before = ""
                for name, args in calls:
                    call = ToolCall(new_call_id(), name, args)
                    index = len(self.calls)
                    self.calls.append(call)
                    self._events += [ToolCallStart(index, call.id, name), ToolCallArgs(index, args)]
                self._after_call = True
                self._buf = self._buf[end:]
                if self.fmt is ToolFormat.LLAMA3:  # the whole output was calls
                    self._plain = True
                return True
        if self.fmt is ToolFormat.LLAMA3:
            end = len(self._buf)  # not calls: all of it is text
            self._plain = True
        self._emit_text(self._ws_before + self._buf[:end])
        self._ws_before, self._buf = "", self._buf[end:]
        return True

    def _calls(self, values: list[Any]) -> list[tuple[str, str]] | None:
        """The calls in a block's JSON values (each a call or a list of calls); None unless all are calls."""
        calls: list[tuple[str, str]] = []
        for item in (v for value in values for v in (value if isinstance(value, list) else [value])):
            call = _call_of(item, self.fmt, self._names)
            if call is None:
                return None
            calls.append(call)
        return calls or None

    def _advance(self, b: _Block) -> tuple[str, int]:
        """Read the block on: ("wait", 0), ("done", end of block) or ("fail", index of the bad character)."""
        buf, n, fmt = self._buf, len(self._buf), self.fmt
        fences = fmt is not ToolFormat.MISTRAL
        while True:
            pos = b.pos
            if b.phase == "json":
                pos = b.scanner.scan(buf, pos)
                b.pos = pos
                if b.scanner.failed:
                    return "fail", pos
                if b.scanner.end is None:
                    return "wait", 0
                try:
                    value = json.loads(buf[b.start:b.scanner.end], strict=False)
                except (ValueError, RecursionError):
                    return "fail", b.start
                b.pos = b.scanner.end
                if b.name is not None:
                    value = {"name": b.name, "arguments": value}
                b.values.append(value)
                if fmt is ToolFormat.MISTRAL:  # a Mistral block is one list, or one name and its arguments
                    return "done", b.pos
                b.phase = "post"
                continue
            if b.phase == "name":  # Mistral: [TOOL_CALLS]name[CALL_ID]id[ARGS]{...}
                chars = _MISTRAL_NAME_CHARS if b.name is None else _MISTRAL_ID_CHARS
                while pos < n and buf[pos] in chars:
                    pos += 1
                b.pos = pos
                if b.name is None and pos - b.start > 64:
                    return "fail", pos
                rest = buf[pos:]
                for mark in (_MISTRAL_ARGS, _MISTRAL_CALL_ID if b.name is None else None):
                    if mark and rest.startswith(mark):
                        if b.name is None:
                            b.name = buf[b.start:pos]
                        b.pos = pos + len(mark)
                        b.phase = "args" if mark == _MISTRAL_ARGS else "name"
                        break
                else:
                    if not rest or _MISTRAL_ARGS.startswith(rest) or _MISTRAL_CALL_ID.startswith(rest):
                        return "wait", 0
                    return "fail", pos
                continue
            skip = _WS + ";" if fmt is ToolFormat.LLAMA3 and b.phase == "post" else _WS
            while pos < n and buf[pos] in skip:
                pos += 1
            b.pos = pos
            rest = buf[pos:pos + len(_PYTHON_TAG)]
            if not rest:
                return "wait", 0
            c = rest[0]
            if b.phase == "l3start":
                if buf.startswith(_PYTHON_TAG, pos):
                    b.pos = pos + len(_PYTHON_TAG)
                elif _PYTHON_TAG.startswith(rest):
                    return "wait", 0
                b.phase = "pre"
                continue
            if b.phase == "post" and fmt is not ToolFormat.LLAMA3:
                if b.fence and buf.startswith(_FENCE, pos):
                    b.fence, b.pos = False, pos + len(_FENCE)
                    continue
                if buf.startswith(_HERMES_CLOSE, pos):
                    return "done", pos + len(_HERMES_CLOSE)
                if buf.startswith(_HERMES_OPEN, pos):
                    return "done", pos  # the next call opens without this one closing
                tail = buf[pos:]
                if any(m.startswith(tail) for m in (_HERMES_CLOSE, _HERMES_OPEN, _FENCE if b.fence else "")):
                    return "wait", 0
            elif b.phase == "post" and b.fence and buf.startswith(_FENCE, pos):
                b.fence, b.pos = False, pos + len(_FENCE)
                continue
            elif b.phase == "post" and b.fence and _FENCE.startswith(buf[pos:]):
                return "wait", 0
            if c in "{[" and (b.phase != "args" or c == "{"):
                b.scanner, b.start, b.phase = _JsonScanner(), pos, "json"
                continue
            if b.phase == "pre" and fences and c == "`" and not b.fence and not b.values:
                if not _FENCE.startswith(buf[pos:pos + 3]):
                    return "fail", pos
                end = _FENCE_OPEN.match(buf, pos)
                if end is None or end.end() == n:  # the fence, or its language tag, may go on
                    return "wait", 0
                b.fence, b.pos = True, end.end()
                continue
            if b.phase == "pre" and fmt is ToolFormat.MISTRAL and c in _MISTRAL_NAME_CHARS:
                b.start, b.phase = pos, "name"
                continue
            return "fail", pos


def parse_tool_calls(text: str, fmt: ToolFormat,
                     tools: Sequence[ToolSpec] | None = None) -> tuple[str, list[ToolCall]]:
    """Split a complete output into its content text and its tool calls (with new ids).

    With ``tools``, a call of any other function stays text. Whitespace that only
    separates text from a call is dropped; other text is kept as written. The
    result is the same as streaming the output through :class:`ToolCallStream`.
    """
    stream = ToolCallStream(fmt, tools)
    stream.feed(text)
    stream.finish()
    return stream.text, list(stream.calls)


# -- OpenAI-shaped tools -----------------------------------------------------


def tool_specs_from_openai(tools: list[dict[str, Any]], field: str = "tools") -> list[ToolSpec]:
    """Validate OpenAI's ``[{"type": "function", "function": {...}}]`` into ToolSpecs.

    Errors name the exact field, e.g. ``tools[0].function.name``. A ``parameters``
    schema without ``type`` is taken as an object schema.
    """
    if not isinstance(tools, list):
        raise ValidationError(f"{field} must be a list of tools", field=field)
    specs: list[ToolSpec] = []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        where = f"{field}[{i}]"
        if not isinstance(tool, dict):
            raise ValidationError(f"{where} must be an object", field=where)
        if tool.get("type") != "function":
            raise ValidationError(f"{where}.type must be 'function'", field=f"{where}.type")
        fn = tool.get("function")
        if not isinstance(fn, dict):
            raise ValidationError(f"{where}.function must be an object", field=f"{where}.function")
        name = fn.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValidationError(f"{where}.function.name must be 1 to 64 letters, digits, '_' or '-'",
                                  field=f"{where}.function.name")
        if name in seen:
            raise ValidationError(f"{where}.function.name: {name!r} is given twice", field=f"{where}.function.name")
        seen.add(name)
        description = fn.get("description")
        if description is not None and not isinstance(description, str):
            raise ValidationError(f"{where}.function.description must be a string",
                                  field=f"{where}.function.description")
        params = fn.get("parameters")
        if params is None:
            params = {"type": "object", "properties": {}}
        elif not isinstance(params, dict) or params.get("type", "object") != "object":
            raise ValidationError(f"{where}.function.parameters must be a JSON schema of type 'object'",
                                  field=f"{where}.function.parameters")
        elif "type" not in params:
            params = {"type": "object", **params}
        specs.append(ToolSpec(name, description, params))
    return specs
