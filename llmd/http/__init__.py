"""HTTP layer: the Quart app factory, one package per API, and the modules they share."""

from llmd.http.app import create_app

__all__ = ["create_app"]
