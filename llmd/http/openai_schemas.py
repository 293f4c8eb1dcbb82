"""Request bodies of the OpenAI API, with the ranges OpenAI documents.

Shared: the OpenAI API itself and the LLM Manager API (whose chat and
completion bodies are OpenAI's) both read them.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import ConfigDict, Field

from llmd.http.fields import (
    Choices,
    MinP,
    OpenAIMaxTokens,
    OpenAIRepeatPenalty,
    OpenAITopK,
    Penalty,
    Seed,
    StrictModel,
    Temperature,
    TopP,
)


class ContentPart(StrictModel):
    """One part of a multi-part message; only text parts are supported."""

    type: str
    text: Optional[str] = None


class ChatMessageIn(StrictModel):
    """A chat message as OpenAI clients send it."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[ContentPart], None] = None
    name: Optional[str] = None


class StreamOptions(StrictModel):
    """``stream_options``: only ``include_usage`` has an effect."""

    include_usage: bool = False


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
    stop: Union[str, list[str], None] = Field(default=None, description="Up to 16 stop strings.")
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: Optional[Choices] = None
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
    tools: Optional[list[dict]] = None


class CompletionRequest(SamplingFields):
    """``POST /v1/completions``."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "default", "prompt": "The capital of France is", "max_tokens": 16},
    ]})

    prompt: Union[str, list[str]]
    echo: bool = False
    suffix: Optional[str] = None


class EmbeddingRequest(StrictModel):
    """``POST /v1/embeddings``."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "default", "input": ["The first text.", "The second text."]},
    ]})

    model: str = Field(min_length=1)
    input: Union[str, list[str]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = Field(default=None, ge=1, le=65536)
