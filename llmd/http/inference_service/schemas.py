"""Request bodies and queries of the LLM Inference Service API's model routes, with the documents' ranges."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import ConfigDict, Field

from llmd.http.fields import (
    ContextLength,
    GpuLayers,
    GpuShare,
    KvCacheType,
    LogLines,
    MaxTokens,
    ModelName,
    PageNumber,
    PageSize,
    RepeatPenalty,
    Seconds,
    Slots,
    StrictModel,
    Temperature,
    Threads,
    TopK,
    TopP,
)

Framework = Literal["llama.cpp", "vllm"]
Status = Literal["running", "stopped", "error", "starting", "stopping", "pending"]


class SamplingDefaults(StrictModel):
    """Sampling defaults a model's ``config`` may hold (request values win over them)."""

    temperature: Optional[Temperature] = None
    top_p: Optional[TopP] = None
    top_k: Optional[TopK] = None
    max_tokens: Optional[MaxTokens] = None
    repeat_penalty: Optional[RepeatPenalty] = None


class ModelConfig(SamplingDefaults):
    """``config``: where the model is and how it is loaded; every key is optional."""

    model_path: Optional[str] = Field(default=None, min_length=1, max_length=4096, description=(
        "llama.cpp: the absolute path of a GGUF file (required on create). vllm: what the external server "
        "serves, a directory or a hub repo (or give `model_name`)."))
    model_name: Optional[str] = Field(default=None, min_length=1, max_length=4096, description=(
        "vllm: a hub repo such as `meta-llama/Llama-2-7b-hf` (when `model_path` is absent)."))
    n_ctx: Optional[ContextLength] = None
    n_threads: Optional[Threads] = None
    n_gpu_layers: Optional[GpuLayers] = None
    kv_cache_type: Optional[KvCacheType] = None
    command: Optional[str] = Field(default=None, min_length=1, max_length=8192, description=(
        "vllm: the command line that starts the server, overriding `deployments.vllm_command`; "
        "`{model}`, `{port}`, `{max_model_len}` and `{gpu_memory_utilization}` are filled in."))


class ResourceRequirements(StrictModel):
    """``resource_requirements``: what the model needs (recorded, shown back)."""

    gpu_count: Optional[int] = Field(default=None, ge=0, le=64)
    gpu_memory: Optional[int] = Field(default=None, ge=0, le=1 << 40, description="MB.")
    cpu_cores: Optional[float] = Field(default=None, ge=0, le=4096)
    memory: Optional[int] = Field(default=None, ge=0, le=1 << 40, description="MB.")


class CreateModelBody(StrictModel):
    """``POST /api/models``."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "tinyllama-chat",
         "framework": "llama.cpp",
         "description": "TinyLlama 1.1B chat",
         "config": {"model_path": "/var/lib/llmd/models/tinyllama-1.1b-chat.Q4_K_M.gguf", "n_ctx": 2048},
         "tags": ["chat"]},
    ]})

    name: ModelName = Field(description=(
        "The registry name: letters, digits and . _ : / -; unique (409 MODEL_ALREADY_EXISTS otherwise)."))
    display_name: Optional[str] = Field(default=None, max_length=256)
    description: Optional[str] = Field(default=None, max_length=4096)
    framework: Framework = Field(default="llama.cpp", description=(
        "`llama.cpp`: run in llmd; `vllm`: a supervised external OpenAI-compatible server."))
    priority: int = Field(default=5, ge=0, le=100)
    config: ModelConfig = Field(default_factory=ModelConfig)
    resource_requirements: ResourceRequirements = Field(default_factory=ResourceRequirements)
    tags: list[str] = Field(default_factory=list, max_length=32)


class UpdateModelBody(StrictModel):
    """``PUT /api/models/{model_id}``: only the fields given change; ``config`` is merged."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"description": "TinyLlama 1.1B chat, quantised Q4_K_M", "priority": 7, "tags": ["chat", "small"]},
    ]})

    display_name: Optional[str] = Field(default=None, max_length=256)
    description: Optional[str] = Field(default=None, max_length=4096)
    priority: Optional[int] = Field(default=None, ge=0, le=100)
    config: Optional[ModelConfig] = None
    resource_requirements: Optional[ResourceRequirements] = None
    tags: Optional[list[str]] = Field(default=None, max_length=32)


class StartSettings(StrictModel):
    """Runtime settings of one start; absent keys come from the model's config, then the engine config."""

    n_ctx: Optional[ContextLength] = None
    max_model_len: Optional[ContextLength] = Field(default=None, description="Alias of n_ctx.")
    n_threads: Optional[Threads] = None
    n_gpu_layers: Optional[GpuLayers] = None
    n_batch: Optional[int] = Field(default=None, ge=1, le=65536)
    parallel: Optional[Slots] = None
    kv_cache_type: Optional[KvCacheType] = None
    gpu_memory_utilization: Optional[GpuShare] = None


class LifecycleBody(StrictModel):
    """``POST /api/models/{model_id}/start|stop|restart`` (the body is optional)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"force": False, "timeout": 30}]})

    force: bool = Field(default=False, description=(
        "start: restart a running model with the new settings; stop: cancel running generations at once."))
    timeout: Optional[Seconds] = Field(default=None, description=(
        "Seconds; past it the task fails with OPERATION_TIMEOUT. Default: 300 for a start or a restart, 60 for "
        "a stop (GET /api/config's default_model_timeout; deployments.start_timeout_s and stop_timeout_s)."))


class StartBody(LifecycleBody):
    """``POST /api/models/{model_id}/start``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"timeout": 120, "settings": {"n_ctx": 2048}}]})

    settings: Optional[StartSettings] = None


class ListQuery(StrictModel):
    """``GET /api/models``."""

    page: PageNumber = 1
    size: PageSize = 20
    status: Optional[Status] = Field(default=None, description="Only models in this state.")
    framework: Optional[Framework] = None


class DeleteQuery(StrictModel):
    """``DELETE /api/models/{model_id}``."""

    force: bool = Field(default=False, description="Stop a running model first (409 otherwise).")


class LogsQuery(StrictModel):
    """``GET /api/models/{model_id}/logs``."""

    lines: LogLines = 100
    follow: bool = Field(default=False, description="true: an SSE stream of the lines, then new ones as they come.")


class InferenceFields(StrictModel):
    """Sampling fields of the per-model inference routes (the documents' ranges, llmd/http/fields.py)."""

    max_tokens: Optional[MaxTokens] = None
    temperature: Optional[Temperature] = None
    top_p: Optional[TopP] = None
    top_k: Optional[TopK] = None
    stop: Union[str, Annotated[list[str], Field(max_length=16)], None] = Field(
        default=None, description="A stop string or up to 16 of them; the text ends before one.")
    stream: bool = Field(default=False, description="true: Server-Sent Events ending with `data: [DONE]`.")


class GenerateBody(InferenceFields):
    """``POST /api/models/{model_id}/generate``: the prompt is continued as is (no chat template)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"prompt": "Once upon a time", "max_tokens": 16}]})

    prompt: str = Field(min_length=1)


class ChatMessageBody(StrictModel):
    """One chat message."""

    role: Literal["system", "user", "assistant"]
    content: str


class ChatBody(InferenceFields):
    """``POST /api/models/{model_id}/chat/completions``."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"messages": [{"role": "user", "content": "Hello! Who are you?"}], "max_tokens": 16},
    ]})

    messages: list[ChatMessageBody] = Field(min_length=1)


class EmbeddingsBody(StrictModel):
    """``POST /api/models/{model_id}/embeddings``."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"input": "The quick brown fox jumps over the lazy dog."},
    ]})

    input: Union[str, list[str]] = Field(description="One string or a list of strings.")
    encoding_format: Literal["float", "base64"] = "float"
