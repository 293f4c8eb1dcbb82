"""The OpenAI API: ``/v1/models``, chat completions, completions, embeddings."""

from llmd.http.openai.routes import build

__all__ = ["build"]
