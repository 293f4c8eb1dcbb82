"""Field types shared by every API's request models: one definition per range.

The APIs' documents give one set of ranges (temperature 0-2,
top_p 0-1, top_k 1-100, repeat_penalty 1.0-2.0, max tokens 1-4096); the
OpenAI API has its own, wider ones. Each is declared once here and used by
name in the dialects' schemas, so a range never drifts between two APIs that
document the same one. Every integer has an upper bound and no float may be
NaN or infinite (:class:`StrictModel` refuses them), so an out-of-range
number is a 400 that names the field.
"""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic
from pydantic import Field

INT32_MAX = (1 << 31) - 1
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


class StrictModel(pydantic.BaseModel):
    """Base for request bodies: unknown fields are ignored (OpenAI clients send many); no NaN or Infinity."""

    model_config = pydantic.ConfigDict(extra="ignore", allow_inf_nan=False)


# -- the APIs' documents' ranges ---------------------------------------------------------------
KvCacheType = Annotated[Literal["f16", "q8_0", "q4_0"], Field(description=(
    "KV-cache precision: f16 (default), q8_0 or q4_0; quantized K and V take 53% or 28% of f16's memory "
    "per slot (docs/performance.md has the speed)."))]
# A registry name (llmd/core/registry.py checks it too, and that it is not an id such as model-3).
ModelName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$",
                                 description="Letters, digits and . _ : / -, starting with a letter or digit.")]
Temperature = Annotated[float, Field(ge=0.0, le=2.0, description="0-2.")]
TopP = Annotated[float, Field(ge=0.0, le=1.0, description="0-1.")]
TopK = Annotated[int, Field(ge=1, le=100, description="1-100.")]
RepeatPenalty = Annotated[float, Field(ge=1.0, le=2.0, description="1.0-2.0.")]
MaxTokens = Annotated[int, Field(ge=1, le=4096, description="1-4096.")]

# -- the OpenAI API's ranges (and llmd's extensions to it) ---------------------------------------
OpenAIMaxTokens = Annotated[int, Field(ge=1, le=INT32_MAX, description="At least 1; limits.max_tokens bounds it.")]
OpenAITopK = Annotated[int, Field(ge=0, le=INT32_MAX, description="Extension: 0 disables top-k.")]
MinP = Annotated[float, Field(ge=0.0, le=1.0, description="Extension: 0-1.")]
OpenAIRepeatPenalty = Annotated[float, Field(ge=0.0, le=2.0, description="Extension: 0-2.")]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0, description="-2 to 2.")]
Seed = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX, description="A 64-bit integer; equal seeds repeat an answer.")]
Choices = Annotated[int, Field(ge=1, le=128, description=(
    "How many answers, 1 to limits.max_n (default 8) and at most the deployment's parallel slots; the prompt is "
    "evaluated once for all."))]
TopLogprobs = Annotated[int, Field(ge=0, le=20, description="0-20 most likely tokens per position; needs logprobs.")]
CompletionLogprobs = Annotated[int, Field(ge=0, le=5, description=(
    "0-5: each token's log-probability and that many most likely tokens per position."))]
LogitBias = Annotated[dict[str, float], Field(description=(
    "Token id (a string of digits) -> bias added to its logit before sampling, -100 to 100 (-100 bans it)."))]

# -- the Anthropic Messages API's ranges -------------------------------------------------------
AnthropicMaxTokens = Annotated[int, Field(ge=1, le=INT32_MAX, description="At least 1; limits.max_tokens bounds it.")]
AnthropicTemperature = Annotated[float, Field(ge=0.0, le=1.0, description="0-1.")]
AnthropicTopK = Annotated[int, Field(ge=0, le=INT32_MAX, description="0 or more; 0 disables top-k.")]

# -- paging and other counts ------------------------------------------------------------------
PageNumber = Annotated[int, Field(ge=1, le=1_000_000, description="Page number, from 1.")]
PageSize = Annotated[int, Field(ge=1, le=100, description="Page size, at most 100.")]
LogLines = Annotated[int, Field(ge=1, le=10_000, description="Log lines, from the end.")]
Port = Annotated[int, Field(ge=1, le=65535)]
ContextLength = Annotated[int, Field(ge=16, le=1 << 20, description="Tokens of context per request.")]
Threads = Annotated[int, Field(ge=1, le=1024, description="CPU threads.")]
GpuLayers = Annotated[int, Field(ge=-1, le=100_000, description="Layers offloaded to the GPU; -1 all.")]
Slots = Annotated[int, Field(ge=1, le=256, description="Sequence slots: generations at once.")]
GpuShare = Annotated[float, Field(gt=0.0, le=1.0, description="A share of the GPU's memory, (0, 1].")]
Seconds = Annotated[float, Field(gt=0.0, le=86400.0, description="Seconds.")]
