"""Request bodies of the Ollama API, with the fields and ranges Ollama documents (docs/api-ollama.md).

Ollama ignores fields it does not know, and so do these models (its clients
send newer fields than an older server knows). ``options`` take every option
Ollama names; those llmd has no knob for are accepted and have no effect.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import ConfigDict, Field

from llmd.http.fields import (
    INT32_MAX,
    ContextLength,
    MinP,
    OpenAIRepeatPenalty,
    OpenAITopK,
    Penalty,
    Seed,
    StrictModel,
    Temperature,
    TopP,
)

MAX_STOP = 16  # stop strings per request, as many as the LLM Manager API takes (the OpenAI API: 4, its own limit)
MODEL = Field(min_length=1, max_length=512, description="A model name: `name[:tag]` (tag `latest` by default), "
                                                        "an alias, or `default`.")
# An option llmd accepts and does not use: any 32-bit integer.
Ignored = Annotated[int, Field(ge=-INT32_MAX, le=INT32_MAX, description="Accepted; no effect in llmd.")]
TokenId = Annotated[int, Field(ge=0, le=INT32_MAX)]
# Ollama's keep_alive: a duration string ("5m", "1h30m", "0") or a number of seconds; negative: forever.
KeepAlive = Union[float, str]
# Ollama's format: "json", or a JSON schema the answer must follow.
Format = Union[Literal["", "json"], dict[str, Any]]


class Options(StrictModel):
    """Ollama's ``options``: the model and sampling knobs of one request."""

    num_predict: Optional[int] = Field(default=None, ge=-2, le=INT32_MAX,
                                       description="Most tokens to generate; -1 or -2: the model's default.")
    temperature: Optional[Temperature] = None
    top_k: Optional[OpenAITopK] = None
    top_p: Optional[TopP] = None
    min_p: Optional[MinP] = None
    repeat_penalty: Optional[OpenAIRepeatPenalty] = None
    presence_penalty: Optional[Penalty] = None
    frequency_penalty: Optional[Penalty] = None
    seed: Optional[Seed] = None
    stop: Optional[list[str]] = Field(default=None, max_length=MAX_STOP, description=f"Up to {MAX_STOP} strings.")
    num_ctx: Optional[ContextLength] = Field(default=None, description=(
        "Accepted; the deployment's context applies (set it with the model's config or `llmctl run --ctx`)."))
    ignore_eos: bool = Field(default=False, description=(
        "Extension: keep generating past end-of-text (benchmarks), as the OpenAI API's ignore_eos."))
    # Accepted with no effect in llmd: llama.cpp runs with the deployment's settings.
    num_keep: Optional[Ignored] = None
    num_batch: Optional[Ignored] = None
    num_gpu: Optional[Ignored] = None
    main_gpu: Optional[Ignored] = None
    num_thread: Optional[Ignored] = None
    repeat_last_n: Optional[Ignored] = None
    typical_p: Optional[float] = None
    tfs_z: Optional[float] = None
    mirostat: Optional[Ignored] = None
    mirostat_tau: Optional[float] = None
    mirostat_eta: Optional[float] = None
    penalize_newline: Optional[bool] = None
    numa: Optional[bool] = None
    low_vram: Optional[bool] = None
    f16_kv: Optional[bool] = None
    vocab_only: Optional[bool] = None
    use_mmap: Optional[bool] = None
    use_mlock: Optional[bool] = None
    logits_all: Optional[bool] = None
    embedding_only: Optional[bool] = None


class ToolCallFunctionIn(StrictModel):
    """A call's function: ``arguments`` is an object (Ollama's shape; a JSON string is taken too)."""

    name: str = Field(min_length=1, max_length=256)
    arguments: Union[dict[str, Any], str, None] = None


class ToolCallIn(StrictModel):
    """A tool call of an earlier assistant turn."""

    id: Optional[str] = Field(default=None, max_length=256)
    function: ToolCallFunctionIn


class MessageIn(StrictModel):
    """One chat message."""

    role: Literal["system", "user", "assistant", "tool"]
    content: Optional[str] = ""
    images: Optional[list[Any]] = Field(default=None, description="Refused while llmd's engine has no vision.")
    tool_calls: Optional[list[ToolCallIn]] = None
    tool_name: Optional[str] = Field(default=None, max_length=256, description="A tool message: the tool it answers.")
    tool_call_id: Optional[str] = Field(default=None, max_length=256)
    name: Optional[str] = Field(default=None, max_length=256)
    thinking: Optional[str] = None  # an earlier turn's reasoning: dropped from the prompt


class GenerateFields(StrictModel):
    """What ``/api/chat`` and ``/api/generate`` share."""

    model: str = MODEL
    stream: bool = Field(default=True, description="NDJSON lines (the default), or one object with `false`.")
    format: Optional[Format] = Field(default=None, description='`"json"` or a JSON schema the answer follows.')
    options: Optional[Options] = None
    keep_alive: Optional[KeepAlive] = Field(default=None, description=(
        'How long the model stays loaded afterwards: "5m", "1h", seconds; 0 unloads it, negative keeps it.'))
    think: Union[bool, Literal["high", "medium", "low"], None] = Field(
        default=None, description="Thinking is not supported: `true` or a level is a 400; `false` is ignored.")


class ChatRequest(GenerateFields):
    """``POST /api/chat``."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "default", "messages": [{"role": "user", "content": "Say hello in French."}], "stream": False},
    ]})

    messages: Optional[list[MessageIn]] = Field(default=None, description="Empty or left out: load the model.")
    tools: Optional[list[dict[str, Any]]] = Field(default=None, description=(
        'OpenAI-shaped tools: `{"type": "function", "function": {"name", "description", "parameters"}}`.'))


class GenerateRequest(GenerateFields):
    """``POST /api/generate``."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "default", "prompt": "Why is the sky blue?", "stream": False},
    ]})

    prompt: Optional[str] = Field(default=None, description="Empty or left out: load the model.")
    system: Optional[str] = None
    raw: bool = Field(default=False, description="The prompt as is, without the chat template.")
    suffix: Optional[str] = Field(default=None, description="Fill-in-the-middle: not supported (a 400).")
    template: Optional[str] = Field(default=None, description="Not supported: the GGUF's chat template is used.")
    context: Optional[list[TokenId]] = Field(default=None, description="Not supported (llmd returns no context).")
    images: Optional[list[Any]] = Field(default=None, description="Refused while llmd's engine has no vision.")


class EmbedRequest(StrictModel):
    """``POST /api/embed``."""

    model: str = MODEL
    input: Union[str, list[str]]
    truncate: bool = Field(default=True, description="Accepted; an input longer than the context is a 400.")
    dimensions: Optional[int] = Field(default=None, ge=1, le=1 << 16)
    options: Optional[Options] = None
    keep_alive: Optional[KeepAlive] = None


class EmbeddingsRequest(StrictModel):
    """``POST /api/embeddings`` (the older, one-prompt form)."""

    model: str = MODEL
    prompt: str = ""
    options: Optional[Options] = None
    keep_alive: Optional[KeepAlive] = None


class ModelRequest(StrictModel):
    """``POST /api/show``, ``DELETE /api/delete``: a model (``name`` is the older spelling)."""

    model: Optional[str] = Field(default=None, min_length=1, max_length=512)
    name: Optional[str] = Field(default=None, min_length=1, max_length=512)
    verbose: bool = False


class CopyRequest(StrictModel):
    """``POST /api/copy``."""

    source: str = Field(min_length=1, max_length=512)
    destination: str = Field(min_length=1, max_length=128)


class PullRequest(StrictModel):
    """``POST /api/pull``: an Ollama registry name, or ``hf.co/{owner}/{repo}[:{quant}]``."""

    model: Optional[str] = Field(default=None, min_length=1, max_length=512)
    name: Optional[str] = Field(default=None, min_length=1, max_length=512)
    stream: bool = True
    insecure: bool = False


class CreateRequest(StrictModel):
    """``POST /api/create``: from an uploaded GGUF blob (``files``) or another model (``from``)."""

    model_config = ConfigDict(populate_by_name=True)

    model: Optional[str] = Field(default=None, min_length=1, max_length=128)
    name: Optional[str] = Field(default=None, min_length=1, max_length=128)
    from_: Optional[str] = Field(default=None, alias="from", min_length=1, max_length=512)
    files: Optional[dict[str, str]] = None
    adapters: Optional[dict[str, str]] = Field(default=None, description="Not supported (a 400).")
    template: Optional[str] = Field(default=None, description="Kept, not applied: the GGUF's chat template is.")
    system: Optional[str] = None
    parameters: Optional[dict[str, Any]] = None
    license: Union[str, list[str], None] = None
    messages: Optional[list[dict[str, Any]]] = Field(default=None, description="Not supported (a 400).")
    quantize: Optional[str] = Field(default=None, description="Not supported (a 400).")
    modelfile: Optional[str] = Field(default=None, description="The pre-0.5 form: not supported (a 400).")
    stream: bool = True
