"""Request body of the LLaMA Local API's ``POST /generate``, with the document's ranges."""

from __future__ import annotations

from typing import Optional

from pydantic import ConfigDict, Field

from llmd.http.fields import MaxTokens, RepeatPenalty, StrictModel, Temperature, TopK, TopP


class GenerateBody(StrictModel):
    """``POST /generate``."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"prompt": "Write a haiku about the sea.", "max_tokens": 16, "stream": False},
    ]})

    prompt: str = Field(min_length=1, description="The prompt (min 1 character).")
    temperature: Optional[Temperature] = None
    max_tokens: Optional[MaxTokens] = None
    top_p: Optional[TopP] = None
    top_k: Optional[TopK] = None
    repeat_penalty: Optional[RepeatPenalty] = None
    stream: bool = Field(default=True, description="Stream as SSE (the default) or answer once.")
    model: Optional[str] = Field(default=None, description="Extension: a model name or alias; default model if absent.")
    raw: bool = Field(default=False, description=(
        "Extension: send the prompt to the model as is. By default the prompt is the user's "
        "turn of a chat, rendered through the model's chat template."))
