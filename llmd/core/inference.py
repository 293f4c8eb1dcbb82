"""The inference path every dialect shares: generations, batches and embeddings.

A dialect translates its request into a :class:`GenerateRequest` and calls one
method here; the deployment that serves the model does the rest (chat
template, tokens, sampling defaults, the context check, the queue). Errors
surface before anything is streamed, so each dialect can still answer with
its own status and envelope.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Sequence

from llmd.core.deployment import Generation
from llmd.core.fleet import Fleet
from llmd.core.types import ChatMessage, EmbeddingResult, GenerateRequest, GenerationResult
from llmd.errors import LlmdError, ValidationError


@dataclass(frozen=True)
class BatchResult:
    """The answers of a batch, in request order: a result or the error of each item; and the wall time."""

    items: list[GenerationResult | LlmdError]
    latency_s: float


class Inference:
    """Generations and embeddings on the fleet's deployments."""

    def __init__(self, fleet: Fleet, *, max_batch_size: int, max_n: int = 8) -> None:
        self.fleet = fleet
        self.max_batch_size = max_batch_size
        self.max_n = max_n  # limits.max_n: the most choices one request may ask for

    async def generate(self, req: GenerateRequest) -> Generation:
        """Queue a generation on the deployment of ``req.model`` (the default model for none).

        A model that is not loaded is loaded first (see ``Fleet.serving``);
        the wait is the generation's ``load_s``. The model's own ``system``
        prompt and ``stop`` strings (``config``, e.g. from an Ollama create)
        apply where the request gives none. ``req.keep_alive_s`` sets how long
        the model stays loaded after it.
        """
        self._check_n(req)
        started = time.monotonic()
        dep = await self.fleet.serving(req.model)
        load_s = time.monotonic() - started
        gen = await dep.generate(_with_model_config(req, dep.model.config))
        gen.load_s = load_s
        self.fleet.keep_alive(dep, req.keep_alive_s)  # after queueing: the deployment is busy, not idle
        return gen

    async def count_tokens(self, req: GenerateRequest) -> int:
        """The tokens ``req``'s prompt would take on its model (chat template and tools included)."""
        dep = await self.fleet.serving(req.model)
        return await dep.count_tokens(req)

    async def tokenize(self, model: str | None, text: str, *, add_special: bool = False,
                       parse_special: bool = True) -> list[tuple[int, bytes]]:
        """The tokens of ``text`` on ``model`` and the bytes of each."""
        dep = await self.fleet.serving(model)
        return await dep.tokenize(text, add_special=add_special, parse_special=parse_special)

    async def detokenize(self, model: str | None, tokens: Sequence[int]) -> str:
        """The text of ``tokens`` on ``model``."""
        dep = await self.fleet.serving(model)
        return await dep.detokenize(tokens)

    async def render_prompt(self, req: GenerateRequest) -> str:
        """``req``'s prompt as its model would see it: the chat through the model's template, with its tools."""
        dep = await self.fleet.serving(req.model)
        return await dep.render_prompt(req)

    async def generate_on(self, deployment_id: str, req: GenerateRequest, *, chat: bool) -> Generation:
        """Queue a generation on deployment ``deployment_id`` (the LLM Manager API addresses deployments).

        ``req.model``, when given, must name a registered model; the deployment
        decides which model answers.
        """
        self._check_n(req)
        dep = await self.fleet.running_by_id(deployment_id, model=req.model, chat=chat)
        return await dep.generate(req)

    def _check_n(self, req: GenerateRequest) -> None:
        """``n`` within ``limits.max_n`` (the deployment then checks it against its slots)."""
        if not 1 <= req.n <= self.max_n:
            raise ValidationError(f"n is {req.n} but a request may ask for 1 to {self.max_n} choices (limits.max_n)",
                                  field="n", details={"n": req.n, "max_n": self.max_n})

    async def generate_batch(self, items: Sequence[GenerateRequest | LlmdError]) -> BatchResult:
        """Run every request at once (the engine batches them); a bad item is its error, in its place.

        An item that is already an error (it failed validation) stays one. More
        than ``server.max_batch_size`` items is a 400.
        """
        if len(items) > self.max_batch_size:
            raise ValidationError(
                f"requests: a batch holds at most {self.max_batch_size} requests, got {len(items)}",
                field="requests", details={"max_batch_size": self.max_batch_size, "received": len(items)})
        started = time.monotonic()

        async def one(item: GenerateRequest | LlmdError) -> GenerationResult | LlmdError:
            if isinstance(item, LlmdError):
                return item
            try:
                return await (await self.generate(item)).collect_or_raise()
            except LlmdError as err:
                return err

        tasks = [asyncio.ensure_future(one(item)) for item in items]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:  # an unexpected failure (or a client that left) ends the others too
                task.cancel()
            raise
        return BatchResult(list(results), time.monotonic() - started)

    async def embed(self, model: str | None, inputs: Sequence[str], *, dimensions: int | None = None,
                    keep_alive_s: float | None = None) -> EmbeddingResult:
        """Embeddings of ``inputs`` with ``model``; ``dimensions`` keeps the first ones, normalised again.

        ``keep_alive_s`` sets how long the model stays loaded afterwards (see ``Fleet.keep_alive``).
        """
        if not inputs:
            raise ValidationError("input must not be empty", field="input")
        if any(not text for text in inputs):  # llama.cpp fails to decode an empty sequence
            raise ValidationError("input must not contain an empty string", field="input")
        dep = await self.fleet.serving(model)
        try:
            result = await dep.embed(list(inputs))
        finally:
            self.fleet.keep_alive(dep, keep_alive_s)
        if dimensions is None:
            return result
        vectors = []
        for vec in result.vectors:
            if dimensions > len(vec):
                raise ValidationError(f"dimensions: the model's embeddings have {len(vec)} dimensions",
                                      field="dimensions")
            cut = vec[:dimensions]
            norm = sum(x * x for x in cut) ** 0.5 or 1.0
            vectors.append([x / norm for x in cut])
        return dataclasses.replace(result, vectors=vectors)


def _with_model_config(req: GenerateRequest, config: dict[str, Any]) -> GenerateRequest:
    """``req`` with its model's own system prompt (a chat without one) and stop strings (when it gives none)."""
    changes: dict[str, Any] = {}
    system = config.get("system")
    if isinstance(system, str) and system and req.messages is not None \
            and not any(m.role == "system" for m in req.messages):
        changes["messages"] = (ChatMessage("system", system), *req.messages)
    stop = config.get("stop")
    if isinstance(stop, list) and stop and not req.params.stop:
        changes["params"] = dataclasses.replace(req.params, stop=tuple(str(s) for s in stop if s))
    return dataclasses.replace(req, **changes) if changes else req

