"""Request bodies and queries of the API Interface Specification, with the document's ranges."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import ConfigDict, Field

from llmd.http.fields import MaxTokens, PageNumber, PageSize, StrictModel, Temperature


class SpecGenerateFields(StrictModel):
    """The fields every generation of this API shares."""

    prompt: str = Field(min_length=1, description="The prompt; sent to the model as the user's turn of a chat.")
    model: Optional[str] = Field(default=None, min_length=1, description=(
        "A registered model name or alias; `default` or absent means the default model. "
        "An unknown name is a 404 `MODEL_NOT_FOUND` listing the available names."))
    max_tokens: Optional[MaxTokens] = None
    temperature: Optional[Temperature] = None


class SpecGenerateBody(SpecGenerateFields):
    """``POST /api/v1/generate``."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"prompt": "Explain what a GGUF file is in one sentence.", "model": "default", "max_tokens": 16},
    ]})

    stream: bool = Field(default=False, description="true: answer with the SSE stream of `/generate/stream`.")


class SpecStreamBody(SpecGenerateFields):
    """``POST /api/v1/generate/stream`` (always streams)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"prompt": "Count from one to five.", "model": "default", "max_tokens": 16},
    ]})


class SpecBatchItem(SpecGenerateFields):
    """One request of a batch."""


class SpecBatchBody(StrictModel):
    """``POST /api/v1/batch/generate``: each item is checked on its own (a bad item is an error entry)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"requests": [{"prompt": "Say hello.", "max_tokens": 16},
                      {"prompt": "Say goodbye.", "max_tokens": 16}]},
    ]})

    requests: list[SpecBatchItem] = Field(min_length=1, description=(
        "Generation requests, answered in order; at most `server.max_batch_size`."))


class SpecBatchEnvelope(StrictModel):
    """How a batch body is read: the items are validated one by one afterwards."""

    requests: list[Any] = Field(min_length=1)


class SpecLoadBody(StrictModel):
    """``POST /api/v1/models/{model_name}/load``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{}]})  # the configured settings

    quantization: Optional[str] = Field(default=None, min_length=1, max_length=32, description=(
        "A quantization such as `q4_0`; the model of the same family with that quantization is loaded. "
        "404 `MODEL_NOT_FOUND` with the ones that exist otherwise."))
    prefer_gpu: Optional[bool] = Field(default=None, description=(
        "true: offload every layer to the GPU when this build has GPU offload; false: CPU only; "
        "absent: `engine.n_gpu_layers`."))


class SpecModelsQuery(StrictModel):
    """``GET /api/v1/models`` pagination (the LLM Inference Service API's convention)."""

    page: PageNumber = 1
    size: PageSize = 20
