"""Turning a dialect-neutral request into engine input.

Applies sampling defaults, renders chats through the model's template,
tokenizes and checks the context budget. Dialects never do any of this.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any, Mapping, Sequence

from llmd.config import SamplingConfig
from llmd.core.engine.base import LoadedModel
from llmd.core.tooluse import ToolPlan
from llmd.core.types import ChatMessage, GenerateRequest, SamplingParams
from llmd.errors import ContextLengthError, ValidationError


def model_defaults(config: Mapping[str, Any], params: SamplingParams) -> SamplingParams:
    """Fill sampling fields the request left out from a model's own ``config`` ([sampling] comes after)."""
    fill: dict[str, Any] = {}
    for key in ("temperature", "top_p", "top_k", "repeat_penalty"):
        value = config.get(key)
        if getattr(params, key) is None and isinstance(value, (int, float)) and not isinstance(value, bool):
            fill[key] = int(value) if key == "top_k" else float(value)
    return dataclasses.replace(params, **fill) if fill else params


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


def render_prompt(model: LoadedModel, req: GenerateRequest, tools: ToolPlan | None = None) -> str:
    """The request's prompt text: a chat through the model's template (with its tools, as ``tools`` plans
    them), or the raw prompt. Blocking (the template may be slow): call it off the event loop."""
    if req.messages is not None:
        if not req.messages:
            raise ValidationError("messages must not be empty", field="messages")
        if tools is not None:
            return model.render_chat(tools.messages, tools=tools.tools)
        return model.render_chat(req.messages)
    if req.prompt is not None:
        return req.prompt
    raise ValidationError("a prompt or messages is required", field="prompt")


def build_prompt(model: LoadedModel, req: GenerateRequest, tools: ToolPlan | None = None) -> list[int]:
    """Tokens of the request's prompt (blocking: call it off the event loop)."""
    if req.messages is not None:
        text = render_prompt(model, req, tools)
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


def answer_reserve(n_ctx: int, max_tokens: int | None, default_max: int) -> int:
    """Tokens of the context kept free for the answer: its ``max_tokens``, else the
    configured default, but (for a default) never more than half the context."""
    if max_tokens is not None:
        return max_tokens
    return min(default_max, max(1, n_ctx // 2))


def fit_history(model: LoadedModel, system: str | None, history: Sequence[ChatMessage],
                new: ChatMessage, budget: int) -> tuple[list[ChatMessage], int]:
    """The messages to send: the newest turns of ``history`` that fit ``budget`` tokens.

    Blocking (tokenizes): run it off the event loop. Turns are dropped from the
    oldest, whole user turns at a time, so the kept history starts with a user
    message; the system prompt and ``new`` are always kept (if they alone do not
    fit, the core's context check reports it). Returns the messages and how
    many history messages were dropped.
    """
    head = [ChatMessage("system", system)] if system else []
    hist = list(history)
    starts = [i for i, m in enumerate(hist) if m.role == "user"] + [len(hist)]

    def size(start: int) -> int:
        return len(model.tokenize(model.render_chat(head + hist[start:] + [new])))

    if size(starts[0]) <= budget:
        best = 0
    else:
        # starts[lo] does not fit; starts[hi] (no history at all) is taken regardless.
        lo, hi = 0, len(starts) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if size(starts[mid]) <= budget:
                hi = mid
            else:
                lo = mid
        best = hi
    start = starts[best]
    return head + hist[start:] + [new], start
