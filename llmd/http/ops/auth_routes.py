"""Seed 002 routes: auth (placeholder)."""

from __future__ import annotations

from llmd.core import Core
from llmd.http.api import Dialect


def register(d: Dialect, core: Core) -> None:
    """Declare this module's routes on the ops dialect."""
