"""Request bodies and queries of the OpenAI Responses API (``/v1/responses``), with OpenAI's ranges.

Input items and tools are plain objects here and validated one by one in
responses_format.py, so that an error names the item at fault
(``input[2].call_id``, ``tools[0].type``) whatever its type. Fields llmd
cannot honour are declared too: their neutral values are accepted, any
other is a 400 naming the field (docs/api-responses.md lists them).
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import ConfigDict, Field

from llmd.http.fields import OpenAIMaxTokens, StrictModel, Temperature, TopP

_INPUT = ("A string (one user message) or a list of items: messages `{role, content}` (content a string or "
          "`input_text`/`output_text` parts), `function_call` `{call_id, name, arguments}` and "
          "`function_call_output` `{call_id, output}`.")
_TOOLS = "Function tools `{type: \"function\", name, description, parameters, strict}`; other types are refused."
_TOOL_CHOICE = '`auto`, `none`, `required` or `{"type": "function", "name": ...}`.'
_UNSUPPORTED = "Not supported: only null (or leaving it out) is accepted."


class ResponseTextFormat(StrictModel):
    """``text.format``: plain text, any JSON object, or JSON following a schema."""

    type: Literal["text", "json_object", "json_schema"]
    name: Optional[str] = Field(default=None, max_length=64)
    schema_: Optional[dict[str, Any]] = Field(default=None, alias="schema")
    description: Optional[str] = None
    strict: Optional[bool] = None


class ResponseTextConfig(StrictModel):
    """``text``: the answer's format; ``verbosity`` only ``medium`` (the default)."""

    format: Optional[ResponseTextFormat] = None
    verbosity: Optional[Literal["low", "medium", "high"]] = None


class ResponseReasoning(StrictModel):
    """``reasoning``: the models llmd serves do not reason apart from their answer; only neutral values."""

    effort: Optional[str] = None
    summary: Optional[str] = None
    generate_summary: Optional[str] = None


class ResponseStreamOptions(StrictModel):
    """``stream_options``: ``include_obfuscation`` is accepted and has no effect (no padding is sent)."""

    include_obfuscation: Optional[bool] = None


class ResponseInputFields(StrictModel):
    """What a response's input is: the fields ``POST /v1/responses`` and ``/v1/responses/input_tokens`` share."""

    input: Union[str, list[dict[str, Any]]] = Field(description=_INPUT)
    instructions: Optional[str] = Field(default=None, description=(
        "A system message put first; not carried over to responses that continue this one."))
    previous_response_id: Optional[str] = Field(default=None, min_length=1, max_length=256, description=(
        "Continue a stored response: its input and output items come before this input."))
    tools: Optional[list[dict[str, Any]]] = Field(default=None, description=_TOOLS)
    tool_choice: Union[Literal["auto", "none", "required"], dict[str, Any], None] = Field(
        default=None, description=_TOOL_CHOICE)
    parallel_tool_calls: Optional[bool] = None
    text: Optional[ResponseTextConfig] = None
    reasoning: Optional[ResponseReasoning] = None
    truncation: Optional[Literal["auto", "disabled"]] = Field(default=None, description=(
        "Only `disabled` (the default): an input that does not fit is a 400."))
    conversation: Union[str, dict[str, Any], None] = Field(default=None, description=_UNSUPPORTED)


class ResponseCreateRequest(ResponseInputFields):
    """``POST /v1/responses``."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "default", "input": "Say hello in French.", "max_output_tokens": 16},
    ]})

    model: str = Field(min_length=1, description="A registered model name or alias, such as `default`.")
    max_output_tokens: Optional[OpenAIMaxTokens] = None
    temperature: Optional[Temperature] = None
    top_p: Optional[TopP] = None
    stream: Optional[bool] = None
    stream_options: Optional[ResponseStreamOptions] = None
    store: Optional[bool] = Field(default=None, description="Keep the response (default true) for "
                                  "`previous_response_id` and `GET /v1/responses/{id}`.")
    metadata: Optional[dict[str, str]] = Field(default=None, description="Up to 16 pairs; keys up to 64 "
                                               "characters, values up to 512.")
    user: Optional[str] = Field(default=None, max_length=512)
    safety_identifier: Optional[str] = Field(default=None, max_length=128)
    prompt_cache_key: Optional[str] = Field(default=None, max_length=1024)
    include: Optional[list[str]] = Field(default=None, description=(
        "Only `reasoning.encrypted_content` (there is none to include)."))
    background: Optional[bool] = Field(default=None, description="Only false.")
    service_tier: Optional[str] = Field(default=None, description="Only `auto` or `default`.")
    top_logprobs: Optional[int] = Field(default=None, ge=0, le=20, description="Only 0.")
    max_tool_calls: Optional[int] = Field(default=None, ge=1, le=1_000_000, description=(
        "Accepted: it bounds built-in tools' calls, and there are none."))
    prompt_cache_retention: Optional[Literal["in_memory", "24h"]] = Field(default=None, description=(
        "Only `in_memory`."))
    prompt: Optional[dict[str, Any]] = Field(default=None, description=_UNSUPPORTED)
    context_management: Optional[list[dict[str, Any]]] = Field(default=None, description=_UNSUPPORTED)
    prompt_cache_options: Optional[dict[str, Any]] = Field(default=None, description=_UNSUPPORTED)
    background_options: Optional[dict[str, Any]] = Field(default=None, description=_UNSUPPORTED)
    access_programs: Optional[dict[str, Any]] = Field(default=None, description=_UNSUPPORTED)
    image: Optional[dict[str, Any]] = Field(default=None, description=_UNSUPPORTED)
    moderation: Optional[dict[str, Any]] = Field(default=None, description=_UNSUPPORTED)


class InputTokensRequest(ResponseInputFields):
    """``POST /v1/responses/input_tokens``: the tokens a response's input would take."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "default", "input": "How many tokens is this?"},
    ]})

    model: Optional[str] = Field(default=None, min_length=1, description="A model name or alias; "
                                 "none: the default model.")
    personality: Optional[str] = Field(default=None, description=_UNSUPPORTED)


class RetrieveQuery(StrictModel):
    """``GET /v1/responses/{id}``'s query: replaying a stream (``stream=true``) is not supported."""

    stream: Optional[bool] = None
    starting_after: Optional[int] = Field(default=None, ge=0, le=1_000_000_000)
    include: Optional[str] = None
    include_obfuscation: Optional[bool] = None


class InputItemsQuery(StrictModel):
    """``GET /v1/responses/{id}/input_items``: a page of the items, in either order."""

    limit: int = Field(default=20, ge=1, le=100, description="Items per page, 1-100.")
    order: Literal["asc", "desc"] = Field(default="desc", description="`desc` (the default): newest first.")
    after: Optional[str] = Field(default=None, min_length=1, description="An item id: the page starts after it.")
    before: Optional[str] = Field(default=None, min_length=1, description="An item id: the page ends before it.")
    include: Optional[str] = None
