"""Request bodies and WebSocket messages of the EasyVizAI API, with the document's ranges."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import ConfigDict, Field

from llmd.http.fields import MaxTokens, StrictModel, Temperature, TopP


class Parameters(StrictModel):
    """``parameters`` of a generation (the document's table; out of range is a 400, never clamped)."""

    temperature: Optional[Temperature] = Field(default=None, description="The daemon's default if absent.")
    top_p: Optional[TopP] = Field(default=None, description="Nucleus sampling.")
    max_length: Optional[MaxTokens] = Field(default=None, description="Most tokens to generate.")
    do_sample: Optional[bool] = Field(default=None, description="false: greedy decoding (temperature 0).")


class GenerateBody(StrictModel):
    """``POST /api/v1/llm/generate/`` and ``/generate/stream/``."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"prompt": "What is the capital of France?",
         "model": "default",
         "parameters": {"temperature": 0.7, "max_length": 16}},
    ]})

    prompt: str = Field(min_length=1, description="The user's message; sent through the model's chat template.")
    model: Optional[str] = Field(default=None, description="A registry name or alias; the current model if absent.")
    parameters: Optional[Parameters] = None


class GenerateResponse(StrictModel):
    """The answer of ``POST /api/v1/llm/generate/``."""

    response: str
    model: str
    prompt: str


class ErrorBody(StrictModel):
    """The EasyVizAI API's error envelope."""

    error: str


class ChatMessageIn(StrictModel):
    """WebSocket ``{"type": "chat_message", ...}``."""

    type: Literal["chat_message"]
    message: str = Field(min_length=1)
    model: Optional[str] = Field(default=None, min_length=1,
                                 description="For this answer only; model_switch changes the session's model.")
    stream: bool = True
    timestamp: Any = None
    parameters: Optional[Parameters] = None
    system: Optional[str] = Field(default=None, description="Extension: set the session's system prompt.")


class ModelSwitchIn(StrictModel):
    """WebSocket ``{"type": "model_switch", "model"}``."""

    type: Literal["model_switch"]
    model: str = Field(min_length=1)


class CancelIn(StrictModel):
    """WebSocket ``{"type": "cancel"}``: stop the answer in progress."""

    type: Literal["cancel"]


WS_MESSAGES: dict[str, type[StrictModel]] = {
    "chat_message": ChatMessageIn,
    "model_switch": ModelSwitchIn,
    "cancel": CancelIn,
}
