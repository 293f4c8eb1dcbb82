"""Request bodies of llama.cpp's server tokenizer routes, as llama-server reads them."""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import Field

from llmd.http.fields import StrictModel
from llmd.http.openai_schemas import ChatMessageIn

MODEL = Field(default=None, min_length=1, description="Extension: a registered model name or alias "
                                                      "(the default model when left out).")


class TokenizeBody(StrictModel):
    """``POST /tokenize``."""

    content: str
    add_special: bool = Field(default=False, description="Add the BOS token when the model wants one.")
    parse_special: bool = Field(default=True, description="Special tokens in the text are single tokens.")
    with_pieces: bool = Field(default=False, description="Each token with its text (`piece`).")
    model: Optional[str] = MODEL


class DetokenizeBody(StrictModel):
    """``POST /detokenize``."""

    tokens: list[Annotated[int, Field(ge=0, le=(1 << 31) - 1)]] = Field(max_length=1 << 20)
    model: Optional[str] = MODEL


class ApplyTemplateBody(StrictModel):
    """``POST /apply-template``: OpenAI chat messages (and tools) through the model's chat template."""

    messages: list[ChatMessageIn] = Field(min_length=1)
    tools: Optional[list[dict]] = None
    model: Optional[str] = MODEL
