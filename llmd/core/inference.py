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
from typing import Sequence

from llmd.core.deployment import Generation
from llmd.core.fleet import Fleet
from llmd.core.types import EmbeddingResult, GenerateRequest, GenerationResult
from llmd.errors import LlmdError, ValidationError


@dataclass(frozen=True)
class BatchResult:
    """The answers of a batch, in request order: a result or the error of each item; and the wall time."""

    items: list[GenerationResult | LlmdError]
    latency_s: float


class Inference:
    """Generations and embeddings on the fleet's deployments."""

    def __init__(self, fleet: Fleet, *, max_batch_size: int) -> None:
        self.fleet = fleet
        self.max_batch_size = max_batch_size

    async def generate(self, req: GenerateRequest) -> Generation:
        """Queue a generation on the deployment of ``req.model`` (the default model for none)."""
        dep = await self.fleet.serving(req.model)
        return await dep.generate(req)

    async def generate_on(self, deployment_id: str, req: GenerateRequest, *, chat: bool) -> Generation:
        """Queue a generation on deployment ``deployment_id`` (the LLM Manager API addresses deployments).

        ``req.model``, when given, must name a registered model; the deployment
        decides which model answers.
        """
        dep = await self.fleet.running_by_id(deployment_id, model=req.model, chat=chat)
        return await dep.generate(req)

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
                    ) -> EmbeddingResult:
        """Embeddings of ``inputs`` with ``model``; ``dimensions`` keeps the first ones, normalised again."""
        if not inputs:
            raise ValidationError("input must not be empty", field="input")
        if any(not text for text in inputs):  # llama.cpp fails to decode an empty sequence
            raise ValidationError("input must not contain an empty string", field="input")
        dep = await self.fleet.serving(model)
        result = await dep.embed(list(inputs))
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
