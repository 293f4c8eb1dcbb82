"""The Ollama wire format: requests into core types, results into Ollama's objects, NDJSON lines and errors.

Ollama streams by default: one JSON object per line (``application/x-ndjson``),
each with ``done: false``, then one with ``done: true`` that carries the
timings in nanoseconds. Tool calls come in a message of their own once they
are complete, with ``function.arguments`` as an object. Errors are
``{"error": "..."}``, before the stream (with a status) or as its last line.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import re
import time
from typing import Any, AsyncIterator, Iterable

from quart import Response

from llmd.core.deployment import Generation
from llmd.core.downloads import DownloadTask
from llmd.core.grammar import json_grammar
from llmd.core.models import ModelShow, ModelView
from llmd.core.registry import Model, has_tag
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
    ToolCall,
)
from llmd.errors import LlmdError, ValidationError
from llmd.http.ollama import schemas as s
from llmd.http.sse import render_stream, sse_response

NDJSON = "application/x-ndjson"
# The Ollama version llmd answers /api/version with: the API generation its routes and fields follow.
OLLAMA_VERSION = "0.12.0"
FOREVER = "2318-01-01T00:00:00Z"  # Ollama's expires_at of a model kept loaded for good
NS = 1_000_000_000
# Go's time.ParseDuration units, in seconds.
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")


# -- errors ------------------------------------------------------------------


def error_message(err: LlmdError) -> str:
    """Ollama's error text: an unknown model as Ollama says it; a client error names its field."""
    if err.code == "model_not_found" and isinstance(err.details, dict) and err.details.get("model"):
        return f"model '{err.details['model']}' not found"
    message = err.message
    if err.field and err.status < 500 and err.field not in message:
        message = f"{err.field}: {message}"
    return message


def error_body(err: LlmdError) -> dict[str, Any]:
    """Ollama's error envelope: ``{"error": "..."}``."""
    return {"error": error_message(err)}


def line(obj: Any) -> str:
    """One NDJSON line."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def now_iso() -> str:
    """Ollama's ``created_at``: RFC 3339 in UTC with nanoseconds."""
    return iso(time.time())


def iso(ts: float) -> str:
    """A Unix time as Ollama writes times (UTC, nanosecond digits)."""
    d = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond:06d}000Z"


# -- requests ------------------------------------------------------------------


def keep_alive_seconds(value: float | str | None, field: str = "keep_alive") -> float | None:
    """Ollama's ``keep_alive`` in seconds: a number of seconds or a Go duration ("5m", "1h30m", "-1s");
    ``None`` when left out. Negative means forever (kept negative)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    try:
        seconds = float(body)  # "300": seconds, as a number would be
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ValidationError(f"{field}: must be a finite number of seconds or a duration", field=field)
        return sign * seconds
    pos, total = 0, 0.0
    for m in _DURATION.finditer(body):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not body or pos != len(body):
        raise ValidationError(f'{field}: {value!r} is not a duration (such as "5m", "1h30m" or "0") or a number of '
                              "seconds", field=field)
    return sign * total


def _refuse(field: str, what: str) -> ValidationError:
    return ValidationError(f"{field}: {what}", field=field)


def _check_think(think: Any) -> None:
    if think not in (None, False):
        raise _refuse("think", "thinking is not supported by llmd's models; leave think out or send false")


def _grammar(fmt: Any) -> str | None:
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return json_grammar(field="format")
    return json_grammar(fmt, field="format")


def sampling(options: s.Options | None, fmt: Any = None) -> SamplingParams:
    """``options`` (and ``format``) as the core's sampling parameters."""
    o = options or s.Options()
    if o.num_predict == 0:
        raise _refuse("options.num_predict", "must be -1, -2 or at least 1")
    return SamplingParams(
        max_tokens=o.num_predict if o.num_predict is not None and o.num_predict > 0 else None,
        temperature=o.temperature, top_p=o.top_p, top_k=o.top_k, min_p=o.min_p,
        repeat_penalty=o.repeat_penalty, presence_penalty=o.presence_penalty,
        frequency_penalty=o.frequency_penalty, seed=o.seed, stop=tuple(x for x in o.stop or () if x),
        ignore_eos=o.ignore_eos, grammar=_grammar(fmt))


def _arguments(value: dict[str, Any] | str | None, field: str) -> str:
    if value is None:
        return "{}"
    if isinstance(value, str):
        try:
            parsed = json.loads(value) if value.strip() else {}
        except ValueError:
            raise _refuse(field, "must be an object (or JSON text of one)") from None
        if not isinstance(parsed, dict):
            raise _refuse(field, "must be an object")
        value = parsed
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def chat_messages(messages: list[s.MessageIn]) -> tuple[ChatMessage, ...]:
    """Ollama's messages in core terms: a tool result answers the earlier call of its tool (by name, in
    order), since Ollama's calls carry no ids."""
    out: list[ChatMessage] = []
    open_calls: list[ToolCall] = []  # calls of the last assistant turn not answered yet
    for i, m in enumerate(messages):
        at = f"messages[{i}]"
        if m.images:
            raise _refuse(f"{at}.images", "images are not supported: llmd's engine has no vision")
        if m.tool_calls and m.role != "assistant":
            raise _refuse(f"{at}.tool_calls", "only assistant messages carry tool calls")
        if m.role == "assistant":
            calls = tuple(ToolCall(c.id or f"call_{i}_{j}", c.function.name,
                                   _arguments(c.function.arguments, f"{at}.tool_calls[{j}].function.arguments"))
                          for j, c in enumerate(m.tool_calls or ()))
            open_calls = list(calls)
            out.append(ChatMessage("assistant", m.content or "", tool_calls=calls))
        elif m.role == "tool":
            name = m.tool_name or m.name
            call = next((c for c in open_calls if m.tool_call_id in (c.id,) or (name and c.name == name)), None)
            if call is None and open_calls and not name and m.tool_call_id is None:
                call = open_calls[0]
            if call is not None:
                open_calls.remove(call)
            out.append(ChatMessage("tool", m.content or "", tool_call_id=m.tool_call_id or (call.id if call else None),
                                   name=name or (call.name if call else None)))
        else:
            out.append(ChatMessage(m.role, m.content or ""))
    return tuple(out)


def chat_request(body: s.ChatRequest, keep_alive: float | None) -> GenerateRequest:
    """``POST /api/chat`` (with messages) in core terms."""
    _check_think(body.think)
    tools = tuple(tool_specs_from_openai(body.tools)) if body.tools else ()
    return GenerateRequest(messages=chat_messages(body.messages or []), model=body.model,
                           params=sampling(body.options, body.format), dialect="ollama", endpoint="/api/chat",
                           tools=tools, keep_alive_s=keep_alive)


def generate_request(body: s.GenerateRequest, keep_alive: float | None) -> GenerateRequest:
    """``POST /api/generate`` (with a prompt) in core terms: a user turn through the chat template, or the
    prompt as is with ``raw``."""
    _check_think(body.think)
    if body.images:
        raise _refuse("images", "images are not supported: llmd's engine has no vision")
    if body.suffix:
        raise _refuse("suffix", "fill-in-the-middle is not supported")
    if body.template:
        raise _refuse("template", "Ollama (Go) templates are not supported; the model's GGUF chat template is used")
    if body.context:
        raise _refuse("context", "llmd returns no context; send the conversation to /api/chat instead")
    params = sampling(body.options, body.format)
    if body.raw:
        return GenerateRequest(prompt=body.prompt or "", model=body.model, params=params, dialect="ollama",
                               endpoint="/api/generate", keep_alive_s=keep_alive)
    messages = ([ChatMessage("system", body.system)] if body.system else []) + [ChatMessage("user", body.prompt or "")]
    return GenerateRequest(messages=tuple(messages), model=body.model, params=params, dialect="ollama",
                           endpoint="/api/generate", keep_alive_s=keep_alive)


def model_ref(body: s.ModelRequest | s.PullRequest | s.CreateRequest) -> str:
    """The model a body names (``model``, or the older ``name``); a 400 naming ``model`` without one."""
    ref = body.model or body.name
    if not ref:
        raise _refuse("model", "a model name is required")
    return ref


def check_create(body: s.CreateRequest) -> None:
    """Refuse what a create asks that llmd cannot do, naming the field."""
    for field, value, why in (("adapters", body.adapters, "LoRA adapters are not supported"),
                              ("messages", body.messages, "messages are not supported"),
                              ("quantize", body.quantize, "quantizing is not supported; upload a quantized GGUF"),
                              ("modelfile", body.modelfile, "a Modelfile is not supported; send files or from "
                                                            "(the Ollama client 0.4 and later does)")):
        if value:
            raise _refuse(field, why)
    if not body.files and not body.from_:
        raise _refuse("files", "give files (an uploaded GGUF blob: name -> sha256 digest) or from (a model)")
    if body.files and body.from_:
        raise _refuse("from", "give either files or from, not both")


# -- answers -------------------------------------------------------------------


def tag_name(name: str) -> str:
    """A registry name as Ollama lists names: with a tag (``latest`` where the name has none)."""
    return name if has_tag(name) else f"{name}:latest"


def digest_of(model: Model) -> str:
    """The model's digest: its file's sha256 where a hub or an upload gave it, else a stable stand-in."""
    origin = model.metadata.get("origin") if isinstance(model.metadata, dict) else None
    sha = origin.get("sha256") if isinstance(origin, dict) else None
    if isinstance(sha, str) and len(sha) == 64:
        return sha
    return hashlib.sha256(f"{model.path}\0{model.size_bytes}".encode()).hexdigest()


def _parameter_size(model: Model, header: dict[str, Any] | None = None) -> str:
    count = (header or {}).get("general.parameter_count")
    label = (header or {}).get("general.size_label") or model.metadata.get("size_label")
    if isinstance(count, int) and count > 0:
        for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
            if count >= div:
                return f"{count / div:.1f}{unit}".replace(".0", "")
    return label if isinstance(label, str) else ""


def details(model: Model, header: dict[str, Any] | None = None) -> dict[str, Any]:
    """Ollama's ``details`` of a model."""
    arch = model.architecture or ""
    return {"parent_model": "", "format": model.format, "family": arch, "families": [arch] if arch else None,
            "parameter_size": _parameter_size(model, header), "quantization_level": model.quantization or ""}


def _entry(view: ModelView, name: str) -> dict[str, Any]:
    m = view.model
    return {"name": tag_name(name), "model": tag_name(name),
            "modified_at": iso(m.updated_at or m.created_at or time.time()), "size": m.size_bytes,
            "digest": digest_of(m), "details": details(m)}


def tags(views: list[ModelView]) -> dict[str, Any]:
    """``GET /api/tags``: every model, and every alias (a copy) as a model of its own; not ``default``."""
    out = []
    for v in views:
        out.append(_entry(v, v.model.name))
        out.extend(_entry(v, a) for a in v.model.aliases if a != "default")
    return {"models": out}


def running(views: list[ModelView]) -> dict[str, Any]:
    """``GET /api/ps``: the loaded models, their memory and when each is unloaded if idle."""
    out = []
    for v in views:
        m, dep = v.model, v.deployment
        size = dep.memory_bytes if dep is not None else m.size_bytes
        gpu = (dep.memory_estimate or {}).get("gpu", 0) if dep is not None and dep.device == "cuda" else 0
        out.append({"name": tag_name(m.name), "model": tag_name(m.name), "size": size, "digest": digest_of(m),
                    "details": details(m), "expires_at": iso(v.expires_at) if v.expires_at else FOREVER,
                    "size_vram": gpu,
                    "context_length": int(dep.settings.get("n_ctx") or 0) if dep is not None else 0})
    return {"models": out}


_OLLAMA_PARAMS = {"max_tokens": "num_predict", "n_ctx": "num_ctx"}


def show(info: ModelShow, verbose: bool) -> dict[str, Any]:
    """``POST /api/show``: a Modelfile-like text, the parameters, the template, the GGUF header."""
    m = info.view.model
    params: list[tuple[str, Any]] = []
    for key, value in {**info.view.sampling, **info.parameters}.items():
        name = _OLLAMA_PARAMS.get(key, key)
        if name in ("system", "model_path", "command") or value is None:
            continue
        for v in value if isinstance(value, list) else [value]:
            params.append((name, v))
    param_text = "\n".join(f"{k:<20} {json.dumps(v) if isinstance(v, str) else v}" for k, v in params)
    system = info.parameters.get("system")
    modelfile = [f"# Modelfile generated by llmd for {tag_name(m.name)}", f"FROM {m.path}"]
    if m.chat_template:
        modelfile.append(f'TEMPLATE """{m.chat_template}"""')
    if isinstance(system, str) and system:
        modelfile.append(f'SYSTEM """{system}"""')
    modelfile += [f"PARAMETER {k} {json.dumps(v) if isinstance(v, str) else v}" for k, v in params]
    header = info.header if verbose else {k: (None if isinstance(v, list) and len(v) > 16 else v)
                                          for k, v in info.header.items()}
    out: dict[str, Any] = {
        "license": "", "modelfile": "\n".join(modelfile) + "\n", "parameters": param_text,
        "template": m.chat_template or "", "details": details(m, info.header), "model_info": header,
        "capabilities": list(info.capabilities), "modified_at": iso(m.updated_at or m.created_at or time.time()),
    }
    if isinstance(system, str) and system:
        out["system"] = system
    return out


def done_reason(result: GenerationResult) -> str:
    """Ollama's ``done_reason``: ``length`` when ``num_predict`` cut it, else ``stop`` (tool calls too)."""
    return "length" if result.finish_reason is FinishReason.LENGTH else "stop"


def stats(result: GenerationResult, load_s: float) -> dict[str, Any]:
    """The timing and count fields of a final object, in nanoseconds, from the core's timings."""
    t, u = result.timings, result.usage
    return {"total_duration": int((load_s + t.duration_s) * NS), "load_duration": int(load_s * NS),
            "prompt_eval_count": max(0, u.prompt_tokens - u.cached_tokens),
            "prompt_eval_duration": int(t.prompt_eval_s * NS), "eval_count": u.completion_tokens,
            "eval_duration": int(t.eval_s * NS)}


def tool_calls_out(result: GenerationResult) -> list[dict[str, Any]]:
    """The answer's tool calls as Ollama sends them: ``function.arguments`` an object."""
    out = []
    for i, c in enumerate(result.tool_calls):
        try:
            args = json.loads(c.arguments) if c.arguments else {}
        except ValueError:
            args = {}
        out.append({"id": c.id, "function": {"index": i, "name": c.name,
                                              "arguments": args if isinstance(args, dict) else {}}})
    return out


def assistant(result: GenerationResult) -> dict[str, Any]:
    """The answer as an assistant message."""
    msg: dict[str, Any] = {"role": "assistant", "content": result.text}
    if result.tool_calls:
        msg["tool_calls"] = tool_calls_out(result)
    return msg


def chat_response(result: GenerationResult, model: str, load_s: float) -> dict[str, Any]:
    """The whole answer of ``/api/chat`` with ``stream: false``."""
    return {"model": model, "created_at": now_iso(), "message": assistant(result), "done": True,
            "done_reason": done_reason(result), **stats(result, load_s)}


def generate_response(result: GenerationResult, model: str, load_s: float) -> dict[str, Any]:
    """The whole answer of ``/api/generate`` with ``stream: false``."""
    return {"model": model, "created_at": now_iso(), "response": result.text, "done": True,
            "done_reason": done_reason(result), **stats(result, load_s)}


def loaded(model: str, reason: str, *, chat: bool) -> dict[str, Any]:
    """The answer to a request with nothing to generate: the model was loaded (or unloaded)."""
    body: dict[str, Any] = {"model": model, "created_at": now_iso()}
    body.update({"message": {"role": "assistant", "content": ""}} if chat else {"response": ""})
    return {**body, "done": True, "done_reason": reason}


_MARK = "\u0001text\u0001"  # stands for a token's text while the line around it is encoded


def generation_stream(streams: OpenStreams, gen: Generation, *, model: str, chat: bool) -> Response:
    """A generation as Ollama's NDJSON lines: a line per piece, the tool calls once complete, the final line."""
    created = now_iso()
    key = "message" if chat else "response"

    def piece(text: str) -> dict[str, Any]:
        return {"model": model, "created_at": created,
                key: {"role": "assistant", "content": text} if chat else text, "done": False}

    # Every piece's line is the same JSON but for the text: encode the rest once (the hot path).
    head, _, tail = line(piece(_MARK)).partition(json.dumps(_MARK))

    def token(text: str) -> str:
        return head + json.dumps(text, ensure_ascii=False) + tail

    def other(event: Any) -> str | None:
        # Tool calls go out whole at the end (Ollama sends a call once complete); other choices have no place.
        if isinstance(event, TokenEvent) and event.index == 0 and event.text:
            return token(event.text)
        return None

    def end(result: GenerationResult) -> list[str]:
        out = []
        if chat and result.tool_calls:
            out.append(line({**piece(""), "message": {"role": "assistant", "content": "",
                                                       "tool_calls": tool_calls_out(result)}}))
        last = {**piece(""), "created_at": now_iso(), "done": True, "done_reason": done_reason(result),
                **stats(result, gen.load_s)}
        return out + [line(last)]

    return ndjson_response(streams, render_stream(gen, token=token, end=end, other=other,
                                                  error=lambda err: line(error_body(err))))


def ndjson_response(streams: OpenStreams, lines: AsyncIterator[str]) -> Response:
    """A streamed NDJSON response, counted like an SSE stream."""
    return sse_response(streams, lines, content_type=NDJSON)


def embed_response(result: EmbeddingResult, model: str, took_s: float) -> dict[str, Any]:
    """``POST /api/embed``."""
    return {"model": model, "embeddings": result.vectors, "total_duration": int(took_s * NS), "load_duration": 0,
            "prompt_eval_count": result.prompt_tokens}


# -- pull and create progress ---------------------------------------------------


def pull_status(task: DownloadTask) -> list[dict[str, Any]]:
    """The progress lines of a download task as ``ollama pull`` prints them."""
    f = task.files[0] if task.files else None
    digest = f"sha256:{f.sha256}" if f is not None and f.sha256 else ""
    if task.status == "completed":
        return [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
    return [{"status": f"pulling {digest[7:19] or task.model_id}", "digest": digest, "total": task.total_bytes,
             "completed": task.downloaded_bytes}]


def task_error(task: DownloadTask) -> LlmdError:
    """A download that ended without its model: the task's error as a typed error (a 500 in Ollama's envelope,
    as Ollama answers a failed pull)."""
    err = LlmdError(f"pull {task.model_id}: {task.error or task.status}")
    err.status = 507 if task.error_code == "insufficient_storage" else 500
    return err


async def pull_lines(updates: AsyncIterator[DownloadTask]) -> AsyncIterator[str]:
    """A pull's NDJSON: the manifest, the transfer's progress, then success (or the error, as the last line)."""
    yield line({"status": "pulling manifest"})
    try:
        async for task in updates:
            if task.finished and task.status != "completed":
                yield line(error_body(task_error(task)))
                return
            for obj in pull_status(task):
                yield line(obj)
    except LlmdError as err:  # the task was deleted while followed, the store failed: the stream's last line
        yield line(error_body(err))


async def lines_of(objs: Iterable[dict[str, Any]]) -> AsyncIterator[str]:
    """Fixed objects as NDJSON lines (a create's steps)."""
    for obj in objs:
        yield line(obj)


def create_steps(model: Model) -> list[dict[str, Any]]:
    """The steps of a create as Ollama reports them, ending in success."""
    return [{"status": "parsing GGUF"}, {"status": f"using existing layer sha256:{digest_of(model)}"},
            {"status": "writing manifest"}, {"status": "success"}]

