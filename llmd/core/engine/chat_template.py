"""Rendering a chat into a prompt with the model's own Jinja chat template.

GGUF files carry the template in ``tokenizer.chat_template``. It runs in a
sandboxed Jinja environment: a model file is data, not trusted code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

import jinja2
import jinja2.sandbox

from llmd.core.types import ChatMessage
from llmd.errors import ValidationError

# Used only when a model carries no template: ChatML is what most small
# instruct models (SmolLM2 included) were tuned on.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ChatTemplate:
    """A compiled chat template with the model's special tokens."""

    def __init__(self, source: str | None, *, bos_token: str = "", eos_token: str = "") -> None:
        env = jinja2.sandbox.ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined
        )
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self.source = source or CHATML
        # Loose undefined handling for model templates: they often test
        # variables we do not pass (tools, documents) with `is defined`.
        env.undefined = jinja2.Undefined
        self._template = env.from_string(self.source)
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, messages: Iterable[ChatMessage | dict[str, Any]], add_generation_prompt: bool = True,
               tools: list[dict[str, Any]] | None = None) -> str:
        """The prompt text for ``messages``, ending with the assistant's turn.

        A message may be a dict already in the template's shape (tool calls, tool results: see
        core/tooluse.py); ``tools`` is given to the template only when there are some, since templates
        test ``tools is defined`` or ``if tools``.
        """
        extra: dict[str, Any] = {"tools": tools} if tools else {}
        try:
            return self._template.render(
                messages=[m if isinstance(m, dict) else {"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **extra,
            )
        except _TemplateRefusal as exc:
            raise ValidationError(f"the model's chat template refused the messages: {exc}", field="messages") from None
        except jinja2.TemplateError as exc:
            raise ValidationError(f"the model's chat template failed: {exc}", field="messages") from None


class _TemplateRefusal(Exception):
    pass


def _raise(message: str) -> None:
    raise _TemplateRefusal(message)
