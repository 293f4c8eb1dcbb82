"""llmctl ps, run, stop, rm and logs (placeholder)."""

from __future__ import annotations
