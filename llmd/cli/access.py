"""llmctl keys and llmctl users (placeholder)."""

from __future__ import annotations
