"""Request bodies of the OpenAI API, with the ranges OpenAI documents.

Shared: the OpenAI API itself and the LLM Manager API (whose chat and
completion bodies are OpenAI's) both read them.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import ConfigDict, Field

from llmd.http.fields import (
    Choices,
    CompletionLogprobs,
    LogitBias,
    MinP,
    OpenAIMaxTokens,
    OpenAIRepeatPenalty,
    OpenAITopK,
    Penalty,
    Seed,
    StrictModel,
    Temperature,
    TopLogprobs,
    TopP,
)

# Fields of the OpenAI SDK that llmd accepts but that change nothing (docs/api.md has the table).
NO_EFFECT = "Accepted; no effect in llmd."


class ContentPart(StrictModel):
    """One part of a multi-part message; only text parts are supported."""

    type: str
    text: Optional[str] = None


class FunctionCallIn(StrictModel):
    """``tool_calls[].function`` of an assistant message: the name and the arguments (JSON text)."""

    name: str = Field(min_length=1)
    arguments: str = ""


class ToolCallIn(StrictModel):
    """A tool call the assistant made earlier in the chat."""

    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessageIn(StrictModel):
    """A chat message as OpenAI clients send it."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[ContentPart], None] = None
    name: Optional[str] = None
    tool_calls: Optional[list[ToolCallIn]] = None
    tool_call_id: Optional[str] = None
    refusal: Optional[str] = None


class StreamOptions(StrictModel):
    """``stream_options``: only ``include_usage`` has an effect."""

    include_usage: bool = False
    include_obfuscation: Optional[bool] = Field(default=None, description=NO_EFFECT + " (no padding is sent)")


class JsonSchemaFormat(StrictModel):
    """``response_format.json_schema``: the schema the answer must follow."""

    name: Optional[str] = None
    schema_: Optional[dict] = Field(default=None, alias="schema")
    strict: Optional[bool] = None


class ResponseFormat(StrictModel):
    """``response_format``: ``text``, ``json_object`` or ``json_schema``."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: Optional[JsonSchemaFormat] = None


class SamplingFields(StrictModel):
    """Sampling fields shared by chat completions and completions."""

    model: str = Field(min_length=1, description="A registered model name or alias, such as `default`.")
    max_tokens: Optional[OpenAIMaxTokens] = None
    temperature: Optional[Temperature] = None
    top_p: Optional[TopP] = None
    top_k: Optional[OpenAITopK] = None
    min_p: Optional[MinP] = None
    repeat_penalty: Optional[OpenAIRepeatPenalty] = None
    frequency_penalty: Optional[Penalty] = None
    presence_penalty: Optional[Penalty] = None
    seed: Optional[Seed] = None
    stop: Union[str, list[str], None] = Field(default=None, description=(
        "Up to 4 stop strings (OpenAI's limit; the LLM Manager API takes 16)."))
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: Optional[Choices] = None
    logit_bias: Optional[LogitBias] = None
    user: Optional[str] = Field(default=None, description=NO_EFFECT)
    ignore_eos: bool = Field(default=False, description="Extension: keep generating past end-of-text.")
    grammar: Optional[str] = Field(default=None, min_length=1,
                                   description="Extension: a GBNF grammar (root rule `root`).")


class ChatCompletionRequest(SamplingFields):
    """``POST /v1/chat/completions``."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "default",
         "messages": [{"role": "user", "content": "Say hello in French."}],
         "max_tokens": 16},
    ]})

    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: Optional[OpenAIMaxTokens] = None
    response_format: Optional[ResponseFormat] = None
    tools: Optional[list[dict]] = Field(default=None, description="Function tools: "
                                        "`{type: function, function: {name, description, parameters}}`.")
    tool_choice: Union[Literal["none", "auto", "required"], dict, None] = Field(
        default=None, description="`none`, `auto`, `required` or `{type: function, function: {name}}`.")
    parallel_tool_calls: Optional[bool] = None
    logprobs: Optional[bool] = Field(default=None, description="Each answer token's log-probability.")
    top_logprobs: Optional[TopLogprobs] = None
    # Accepted, no effect:
    metadata: Optional[dict[str, str]] = Field(default=None, description=NO_EFFECT + " (nothing is stored)")
    store: Optional[bool] = Field(default=None, description=NO_EFFECT + " (llmd stores no completions)")
    service_tier: Optional[Literal["auto", "default", "flex", "scale", "priority", "fast"]] = Field(
        default=None, description=NO_EFFECT + " (one tier)")
    prediction: Optional[dict[str, Any]] = Field(default=None, description=(
        NO_EFFECT + " (the answer is the same; it is not used to speed decoding up)"))
    prompt_cache_key: Optional[str] = Field(default=None, description=NO_EFFECT + " (prompts are cached per slot)")
    prompt_cache_retention: Optional[Literal["in_memory", "24h"]] = Field(default=None, description=NO_EFFECT)
    prompt_cache_options: Optional[dict[str, Any]] = Field(default=None, description=NO_EFFECT)
    safety_identifier: Optional[str] = Field(default=None, description=NO_EFFECT)
    # Refused with a 400 naming the field unless neutral (llmd/http/openai_format.py: _refuse_unsupported):
    modalities: Optional[list[str]] = Field(default=None, description='Only `["text"]`.')
    audio: Optional[dict[str, Any]] = Field(default=None, description="Refused: no audio output.")
    reasoning_effort: Optional[str] = Field(default=None, description="Only `none`.")
    verbosity: Optional[str] = Field(default=None, description="Only `medium`.")
    web_search_options: Optional[dict[str, Any]] = Field(default=None, description="Refused: no web search.")
    moderation: Optional[dict[str, Any]] = Field(default=None, description="Refused: no moderation.")
    functions: Optional[list[Any]] = Field(default=None, description="Refused (deprecated): use `tools`.")
    function_call: Union[str, dict[str, Any], None] = Field(
        default=None, description="Refused (deprecated): use `tool_choice`.")


class CompletionRequest(SamplingFields):
    """``POST /v1/completions``."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "default", "prompt": "The capital of France is", "max_tokens": 16},
    ]})

    prompt: Union[str, list[str]]
    echo: bool = Field(default=False, description="Only `false`: the prompt is not repeated.")
    suffix: Optional[str] = Field(default=None, description="Only empty: no insertion.")
    logprobs: Optional[CompletionLogprobs] = None
    best_of: Optional[int] = Field(default=None, ge=1, le=128, description="Only equal to `n`.")


class EmbeddingRequest(StrictModel):
    """``POST /v1/embeddings``."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "default", "input": ["The first text.", "The second text."]},
    ]})

    model: str = Field(min_length=1)
    input: Union[str, list[str]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = Field(default=None, ge=1, le=65536)
