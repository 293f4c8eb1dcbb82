"""The API-spec dialect of seed 001: ``/api/v1/...`` and ``/metrics``."""

from llmd.http.spec.routes import build

__all__ = ["build"]
