"""Request bodies and WebSocket messages of seed 000, with the document's ranges."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field

from llmd.http.api import StrictModel


class Parameters(StrictModel):
    """``parameters`` of a generation (the document's table; out of range is a 400, never clamped)."""

    temperature: Optional[float] = Field(default=None, ge=0.0, le=2.0,
                                         description="Sampling temperature (0.0-2.0); the daemon's default if absent.")
    top_p: Optional[float] = Field(default=None, ge=0.0, le=1.0, description="Nucleus sampling (0.0-1.0).")
    max_length: Optional[int] = Field(default=None, ge=1, le=4096,
                                      description="Most tokens to generate (1-4096); the daemon's default if absent.")
    do_sample: Optional[bool] = Field(default=None, description="false: greedy decoding (temperature 0).")


class GenerateBody(StrictModel):
    """``POST /api/v1/llm/generate/`` and ``/generate/stream/``."""

    prompt: str = Field(min_length=1, description="The user's message; sent through the model's chat template.")
    model: Optional[str] = Field(default=None, description="A registry name or alias; the current model if absent.")
    parameters: Optional[Parameters] = None


class GenerateResponse(StrictModel):
    """The answer of ``POST /api/v1/llm/generate/``."""

    response: str
    model: str
    prompt: str


class ErrorBody(StrictModel):
    """Seed 000's error envelope."""

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
