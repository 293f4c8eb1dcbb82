"""HTTP layer: the Quart app factory and one package per dialect."""

from llmd.http.app import create_app

__all__ = ["create_app"]
