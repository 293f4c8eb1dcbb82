"""The API Interface Specification's service: ``/api/v1/...`` and ``/metrics``."""

from llmd.http.api_v1.routes import build

__all__ = ["build"]
