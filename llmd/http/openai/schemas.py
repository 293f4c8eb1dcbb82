"""Request bodies of the OpenAI dialect, with the ranges OpenAI documents."""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, Field

from llmd.http.api import StrictModel


class ContentPart(BaseModel):
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
    max_tokens: Optional[int] = Field(default=None, ge=1)
    temperature: Optional[float] = Field(default=None, ge=0, le=2)
    top_p: Optional[float] = Field(default=None, ge=0, le=1)
    top_k: Optional[int] = Field(default=None, ge=0, description="Extension: 0 disables top-k.")
    min_p: Optional[float] = Field(default=None, ge=0, le=1, description="Extension.")
    repeat_penalty: Optional[float] = Field(default=None, ge=0, le=2, description="Extension.")
    frequency_penalty: Optional[float] = Field(default=None, ge=-2, le=2)
    presence_penalty: Optional[float] = Field(default=None, ge=-2, le=2)
    seed: Optional[int] = None
    stop: Union[str, list[str], None] = Field(default=None, description="Up to 16 stop strings.")
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: Optional[int] = Field(default=None, ge=1, description="Only 1 is supported.")
    ignore_eos: bool = Field(default=False, description="Extension: keep generating past end-of-text.")
    grammar: Optional[str] = Field(default=None, min_length=1, description="Extension: a GBNF grammar (root rule `root`).")


class ChatCompletionRequest(SamplingFields):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: Optional[int] = Field(default=None, ge=1)
    response_format: Optional[ResponseFormat] = None
    tools: Optional[list[dict]] = None


class CompletionRequest(SamplingFields):
    """``POST /v1/completions``."""

    prompt: Union[str, list[str]]
    echo: bool = False
    suffix: Optional[str] = None


class EmbeddingRequest(StrictModel):
    """``POST /v1/embeddings``."""

    model: str = Field(min_length=1)
    input: Union[str, list[str]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = Field(default=None, ge=1)
