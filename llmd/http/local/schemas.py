"""Request body of seed 003's ``POST /generate``, with the document's ranges."""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from llmd.http.api import StrictModel


class GenerateBody(StrictModel):
    """``POST /generate``."""

    prompt: str = Field(min_length=1, description="The prompt (min 1 character).")
    temperature: Optional[float] = Field(default=None, ge=0.0, le=2.0)
    max_tokens: Optional[int] = Field(default=None, ge=1, le=4096)
    top_p: Optional[float] = Field(default=None, ge=0.0, le=1.0)
    top_k: Optional[int] = Field(default=None, ge=1, le=100)
    repeat_penalty: Optional[float] = Field(default=None, ge=1.0, le=2.0)
    stream: bool = Field(default=True, description="Stream as SSE (the default) or answer once.")
    model: Optional[str] = Field(default=None, description="Extension: a model name or alias; default model if absent.")
    raw: bool = Field(default=False, description=(
        "Extension: send the prompt to the model as is. By default the prompt is the user's "
        "turn of a chat, rendered through the model's chat template."))
