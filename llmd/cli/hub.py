"""llmctl search, pull and downloads (placeholder)."""

from __future__ import annotations
