"""The console's routes: its page and files under ``/console/``, and browsers sent there from ``/``.

The console is a static single-page app (docs/console.md): every figure it
shows and every change it makes is a call to the daemon's own APIs with the
user's credential, so these routes only serve files and need no credential
(they hold no secret and no data). Each answer carries the console's
Content-Security-Policy: scripts, styles, fonts, images and connections from
this origin only, no inline script or style, no framing (docs/security.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Response, redirect, request

from llmd.errors import NotFoundError
from llmd.http.console.assets import Asset, Assets
from llmd.http.routing import Dialect

PREFIX = "/console/"
INDEX = "index.html"

# Everything from the daemon's origin, nothing inline, nothing evaluated: the console's modules and the
# vendored libraries are files under /console/, and WebSockets go to the same host ('self' covers ws: and
# wss: there). No page may frame it (clickjacking of the admin's session).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
       "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), usb=(), serial=()",
}


def wants_html() -> bool:
    """Whether the request comes from a browser navigating (``Accept`` names ``text/html``)."""
    return "text/html" in request.headers.get("Accept", "")


async def redirect_browsers() -> Response | None:
    """A ``before_request`` hook: a browser at ``/``, and anyone at ``/console``, goes to ``/console/``.

    ``/`` belongs to the Ollama API, whose clients probe it for ``Ollama is
    running``; they do not ask for HTML, so they keep that answer. A browser
    asks for ``text/html`` first, and an admin who types the box's address
    wants the console. ``/console`` is not a route of its own (its OpenAPI
    operation would be named as ``/console/``'s): it is sent on with the slash
    that the page's relative URLs need. The hook runs before the access
    control, since a redirect to a public page reveals nothing.
    """
    if request.method not in ("GET", "HEAD"):
        return None
    if request.path == PREFIX[:-1]:
        return redirect(PREFIX, 308)
    if request.path == "/" and wants_html():
        return redirect(PREFIX, 302)
    return None


def _answer(asset: Asset, *, cache: str) -> Response:
    """``asset`` with its type, the security headers, an ETag (304 when the browser has it) and gzip."""
    if asset.etag in request.headers.get("If-None-Match", ""):
        resp = Response(b"", status=304)
    elif asset.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", ""):
        resp = Response(asset.gzipped, content_type=asset.content_type)
        resp.headers["Content-Encoding"] = "gzip"
    else:
        resp = Response(asset.data, content_type=asset.content_type)
    resp.headers["ETag"] = asset.etag
    resp.headers["Vary"] = "Accept-Encoding"
    resp.headers["Cache-Control"] = cache
    for k, v in SECURITY_HEADERS.items():
        resp.headers[k] = v
    return resp


def build(fallback: Dialect) -> Dialect:
    """The console's routes; their errors (an unknown file) come in ``fallback``'s envelope, the owner of
    the paths nobody claims."""
    d = Dialect("console", "Web console", fallback.render_error, fallback.error_schema,
                paths=("/console",), prefixes=(PREFIX,))
    assets = Assets()

    async def find(name: str) -> Asset:
        found = await asyncio.to_thread(assets.get, name)  # the first call reads the folder: off the loop
        if found is None:
            raise NotFoundError(f"no console file '{name}'")
        return found

    @d.route(PREFIX, summary="The web console", text=True, auth="public")
    async def console_page() -> Any:
        """The console's page; it logs in (when auth is on) and calls the APIs from the browser."""
        # Revalidated each time (a 304 when unchanged), so an upgraded daemon serves its own console at once.
        return _answer(await find(INDEX), cache="no-cache")

    @d.route(PREFIX + "<path:name>", summary="The web console's files", text=True, auth="public")
    async def console_file(name: str) -> Any:
        """The console's modules and styles, and the vendored libraries with their licences."""
        return _answer(await find(name), cache="no-cache")

    return d
