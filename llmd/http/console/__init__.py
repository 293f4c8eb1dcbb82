"""The web console: pages for a browser under ``/console/``, served from the package (docs/console.md)."""

from llmd.http.console.routes import build, redirect_browsers

__all__ = ["build", "redirect_browsers"]
