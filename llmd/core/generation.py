"""Turning a dialect-neutral request into engine input.

Applies sampling defaults, renders chats through the model's template,
tokenizes and checks the context budget. Dialects never do any of this.
"""

from __future__ import annotations

import dataclasses
import random

from llmd.config import SamplingConfig
from llmd.core.engine.base import LoadedModel
from llmd.core.types import GenerateRequest, SamplingParams
from llmd.errors import ContextLengthError, ValidationError


def apply_defaults(params: SamplingParams, defaults: SamplingConfig) -> SamplingParams:
    """Fill every unset field from the configured defaults.

    Penalties that the request leaves out are neutral (0 / 1.0 for
    frequency and presence), except ``repeat_penalty``, which has a default.
    A missing seed gets a random one so that each request differs.
    """
    return dataclasses.replace(
        params,
        temperature=defaults.temperature if params.temperature is None else params.temperature,
        top_p=defaults.top_p if params.top_p is None else params.top_p,
        top_k=defaults.top_k if params.top_k is None else params.top_k,
        min_p=defaults.min_p if params.min_p is None else params.min_p,
        repeat_penalty=defaults.repeat_penalty if params.repeat_penalty is None else params.repeat_penalty,
        frequency_penalty=params.frequency_penalty or 0.0,
        presence_penalty=params.presence_penalty or 0.0,
        seed=random.randrange(1 << 31) if params.seed is None else params.seed,
    )


def build_prompt(model: LoadedModel, req: GenerateRequest) -> list[int]:
    """Tokens of the request's prompt (blocking: call it off the event loop)."""
    if req.messages is not None:
        if not req.messages:
            raise ValidationError("messages must not be empty", field="messages")
        text = model.render_chat(req.messages)
    elif req.prompt is not None:
        text = req.prompt
    else:
        raise ValidationError("a prompt or messages is required", field="prompt")
    tokens = model.tokenize(text)
    if not tokens:
        raise ValidationError("the prompt is empty", field="prompt")
    return tokens


def fit_context(n_prompt: int, params: SamplingParams, n_ctx: int, default_max: int,
                limit: int | None = None) -> SamplingParams:
    """Check the prompt and answer fit the context; settle ``max_tokens``.

    ``limit`` is ``limits.max_tokens``: a larger ``max_tokens`` is a 400
    naming the field. The prompt may hold at most ``n_ctx - max_tokens``
    tokens: an explicit ``max_tokens`` that leaves less room is a 400 naming
    both numbers (nothing is truncated in silence). A request that names no
    ``max_tokens`` gets the configured default, lowered to the room left.
    """
    if limit is not None and params.max_tokens is not None and params.max_tokens > limit:
        raise ValidationError(
            f"max_tokens is {params.max_tokens} but at most {limit} may be asked for (limits.max_tokens)",
            field="max_tokens", details={"max_tokens": params.max_tokens, "limit": limit})
    room = n_ctx - n_prompt
    if params.max_tokens is not None and params.max_tokens > room:
        raise ContextLengthError(
            f"prompt ({n_prompt} tokens) plus max_tokens ({params.max_tokens}) exceeds the context length "
            f"({n_ctx}): with max_tokens {params.max_tokens} the prompt may have at most "
            f"{max(0, n_ctx - params.max_tokens)} tokens" + (f", or at most {room} tokens can be generated"
                                                             if room >= 1 else ""),
            field="max_tokens",
            details={"prompt_tokens": n_prompt, "max_tokens": params.max_tokens, "n_ctx": n_ctx},
        )
    if room < 1:
        raise ContextLengthError(
            f"the prompt has {n_prompt} tokens but the context holds {n_ctx}, "
            f"so a prompt may have at most {n_ctx - 1} tokens",
            field="prompt", details={"prompt_tokens": n_prompt, "n_ctx": n_ctx},
        )
    if params.max_tokens is not None:
        return params
    default = min(default_max, limit) if limit is not None else default_max
    return dataclasses.replace(params, max_tokens=min(default, room))
