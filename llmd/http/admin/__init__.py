"""The llmd admin API used by ``llmctl``: ``/llmd/v1/...``."""

from llmd.http.admin.routes import build

__all__ = ["build"]
