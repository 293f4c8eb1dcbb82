"""Request bodies of the Anthropic Messages API, with the ranges Anthropic documents.

Content blocks are one permissive model (``type`` and the fields of every
kind) rather than a tagged union: the translation checks each kind's fields
itself, so that a missing ``tool_use_id`` is reported as
``messages[2].content[0].tool_use_id`` and an image as
``messages[0].content[1].type``, the exact field, which pydantic's errors for
a union would bury under the member's tag.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import ConfigDict, Field

from llmd.http.fields import (
    INT32_MAX,
    AnthropicMaxTokens,
    AnthropicTemperature,
    AnthropicTopK,
    StrictModel,
    TopP,
)

MAX_STOP = 16  # stop strings per request, as many as the LLM Manager API takes (the OpenAI API: 4, its own limit)


class TextBlockIn(StrictModel):
    """A ``text`` block (of ``system`` or a tool result); ``cache_control`` and citations are ignored."""

    type: Literal["text"]
    text: str


class ToolResultPart(StrictModel):
    """One block of a ``tool_result``'s content: only ``text`` is supported (an image is refused)."""

    type: Literal["text", "image", "document", "search_result"]
    text: Optional[str] = None


class ContentBlockIn(StrictModel):
    """One block of a message's content; which fields it needs depends on ``type``.

    ``text``: ``text``. ``tool_use`` (assistant): ``id``, ``name``, ``input`` (an object).
    ``tool_result`` (user): ``tool_use_id``, ``content`` (a string or text blocks), ``is_error``.
    ``thinking`` and ``redacted_thinking`` blocks of earlier assistant turns are dropped; ``image`` and
    ``document`` are refused (400 naming the block's ``type``).
    """

    type: Literal["text", "tool_use", "tool_result", "image", "document", "thinking", "redacted_thinking"]
    text: Optional[str] = None
    id: Optional[str] = Field(default=None, min_length=1, max_length=256)
    name: Optional[str] = None
    input: Optional[dict] = None
    tool_use_id: Optional[str] = Field(default=None, min_length=1, max_length=256)
    content: Union[str, list[ToolResultPart], None] = None
    is_error: Optional[bool] = None


class MessageIn(StrictModel):
    """One turn: ``content`` is a string or a list of content blocks."""

    role: Literal["user", "assistant", "system"]
    content: Union[str, list[ContentBlockIn]]


class ToolIn(StrictModel):
    """A client tool: ``input_schema`` is the JSON schema (type ``object``) of its ``input``.

    Anthropic's server tools (``web_search_...``, ``bash_...``) have another ``type`` and are refused.
    """

    type: Optional[Literal["custom"]] = None
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,128}$", description="1-128 letters, digits, '_' or '-'.")
    description: Optional[str] = None
    input_schema: dict


class ToolChoiceIn(StrictModel):
    """``auto`` (the model decides), ``any`` (some tool must be called), ``tool`` (``name`` must be), ``none``."""

    type: Literal["auto", "any", "tool", "none"]
    name: Optional[str] = None
    disable_parallel_tool_use: bool = False


class ThinkingIn(StrictModel):
    """Extended thinking: only ``{"type": "disabled"}`` is accepted."""

    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: Optional[int] = Field(default=None, ge=0, le=INT32_MAX)


class MetadataIn(StrictModel):
    """Accepted and ignored."""

    user_id: Optional[str] = Field(default=None, max_length=256)


class MessagesBase(StrictModel):
    """The fields that ``/v1/messages`` and ``/v1/messages/count_tokens`` share."""

    model: str = Field(min_length=1, description="A registered model name or alias, such as `default`.")
    messages: list[MessageIn] = Field(min_length=1)
    system: Union[str, list[TextBlockIn], None] = None
    tools: Optional[list[ToolIn]] = None
    tool_choice: Optional[ToolChoiceIn] = None
    thinking: Optional[ThinkingIn] = None


class MessagesRequest(MessagesBase):
    """``POST /v1/messages``."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "default", "max_tokens": 32,
         "messages": [{"role": "user", "content": "Say hello in French."}]},
    ]})

    max_tokens: AnthropicMaxTokens
    stop_sequences: Optional[list[str]] = Field(default=None, max_length=MAX_STOP,
                                                description=f"Up to {MAX_STOP} stop strings.")
    temperature: Optional[AnthropicTemperature] = None
    top_p: Optional[TopP] = None
    top_k: Optional[AnthropicTopK] = None
    stream: bool = False
    metadata: Optional[MetadataIn] = None
    service_tier: Optional[Literal["auto", "standard_only"]] = Field(default=None, description="Accepted, ignored.")


class CountTokensRequest(MessagesBase):
    """``POST /v1/messages/count_tokens``."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "default", "messages": [{"role": "user", "content": "Say hello in French."}]},
    ]})
