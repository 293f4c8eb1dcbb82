"""Seed 004 routes: system (placeholder until the deployments and system work lands)."""

from __future__ import annotations

from llmd.core import Core
from llmd.http.api import Dialect


def register(d: Dialect, core: Core) -> None:
    """Declare this module's routes on the manager dialect."""
