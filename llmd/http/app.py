"""The Quart application: every API's routes over one core, with errors in each API's envelope.

``create_app(core)`` is the one place where the HTTP layer is wired: it
builds each API (a :class:`Dialect` with its routes), registers the routes,
installs the middleware (auth, rate limit) and renders every error, whether a
handler raised it or no route matched, in the envelope of the API the path
belongs to.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from quart import Quart, Request, Response, g, jsonify, request, websocket
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from llmd.core import Core
from llmd.errors import (
    InternalError,
    LlmdError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    ValidationError,
)
from llmd.http import (
    admin,
    anthropic,
    api_v1,
    console,
    easyviz,
    inference_service,
    llama_local,
    llama_server,
    llm_manager,
    ollama,
    openai,
)
from llmd.http.docs import docs_dialect
from llmd.http.middleware import AccessControl, RateLimit
from llmd.http.routing import CONVERTERS, Dialect, PathOwners, Route

log = logging.getLogger(__name__)


def create_app(core: Core) -> Quart:
    """Build the app for ``core``: every API, error rendering, limits."""
    app = Quart("llmd")
    app.config["MAX_CONTENT_LENGTH"] = core.config.server.max_body_bytes
    app.config["RESPONSE_TIMEOUT"] = None  # long generations are normal
    app.config["BODY_TIMEOUT"] = core.config.limits.read_timeout_s  # a trickling body is cut here
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.converters.update(CONVERTERS)
    # An empty segment ("/api/models//x", "%2F" decoded) is a 404 in the owner's envelope, not werkzeug's
    # 308 HTML redirect to another path. Set before any rule is added: rules read it when bound.
    app.url_map.merge_slashes = False

    # The LLM Manager's hub paths (/api/models/search, .../info) are claimed by its exact paths and
    # patterns, which win over the LLM Inference Service's /api/models prefix whatever the order; so are
    # the Anthropic API's /v1/messages inside the OpenAI API's /v1/.
    dialects = [openai.build(core), llama_local.build(core), admin.build(core), easyviz.build(core),
                api_v1.build(core), llm_manager.build(core), inference_service.build(core), anthropic.build(core),
                llama_server.build(core), ollama.build(core)]
    fallback = dialects[1]  # The LLaMA Local API's {"detail": ...} for paths nobody owns
    dialects.append(docs_dialect(fallback, dialects))
    dialects.append(console.build(fallback))  # the web console's page and files (docs/console.md)
    owners = PathOwners(dialects, fallback)
    app.request_class = _upload_request_class(tuple(p for d in dialects for p in d.upload_prefixes),
                                              max(core.config.server.max_body_bytes, UPLOAD_BUFFER_BYTES))
    too_large = f"the request body is larger than {core.config.server.max_body_bytes} bytes"

    def render(d: Dialect, err: LlmdError, path: str | None = None) -> Response:
        body, status = d.render_error(err, request.path if path is None else path)
        resp = jsonify(body)
        resp.status_code = status
        for k, v in err.headers.items():
            resp.headers[k] = v
        return resp

    def render_for_path(err: LlmdError, path: str | None) -> Response:
        """An error in the envelope of the API that ``path`` (the request's, by default) belongs to."""
        path = request.path if path is None else path
        route = g.get("llmd_route")
        d = routes_by_route.get(id(route)) if route is not None else None
        return render(d or owners.owner(path), err, path)

    routes: dict[str, tuple[Dialect, Route]] = {}
    for d in dialects:
        for route in d.routes:
            routes[_endpoint(d, route)] = (d, route)
    routes_by_route = {id(r): d for d, r in routes.values()}
    # Paths a route declares exactly (no parameters): a broader rule (/api/models/<id>) that catches
    # another method on them must answer 405 as the exact path's API would, not "no model 'search'".
    static: dict[str, tuple[Dialect, set[str]]] = {}
    for d, r in routes.values():
        if "<" not in r.path and not r.websocket:
            static.setdefault(r.path, (d, set()))[1].update(r.methods)

    # First of the hooks: a browser at / (and anyone at /console) goes to the web console; Ollama's clients
    # keep their "Ollama is running" at /.
    app.before_request(console.redirect_browsers)
    access = AccessControl(core, routes, render_for_path)
    access.install(app)
    limit = RateLimit(core, render_for_path, lambda path: owners.owner(path).name)
    limit.install(app)

    def refusal(route: Route) -> Response | None:
        found = static.get(request.path)
        if found is None or route.path == request.path or request.method in found[1]:
            return None
        allowed = ", ".join(sorted(found[1] - {"HEAD", "OPTIONS"}))
        return render(found[0], MethodNotAllowedError(f"{request.method} is not allowed on {request.path}",
                                                      headers={"Allow": allowed}))

    def wrap(d: Dialect, route: Route) -> Any:
        async def view(**kwargs: Any) -> Any:
            refused = refusal(route)
            if refused is not None:
                return refused
            try:
                return await route.handler(**kwargs)
            except LlmdError as err:
                if err.status >= 500:
                    log.warning("%s %s -> %s %s", request.method, request.path, err.status, err.message)
                return render(d, err)
            except RequestEntityTooLarge:
                return render(d, PayloadTooLargeError(too_large, field="body"))
            except HTTPException as exc:
                return render(d, _http_error(exc))
            except Exception:  # noqa: BLE001 - logged with traceback, never sent
                log.exception("unhandled error in %s %s", request.method, request.path)
                return render(d, InternalError("internal server error; see the daemon's log"))

        view.__name__ = f"{d.name}_{route.handler.__name__}"
        return view

    def wrap_ws(d: Dialect, route: Route) -> Any:
        async def view(**kwargs: Any) -> Any:
            try:
                release = core.streams.acquire(g.get("llmd_client"))
            except LlmdError as err:
                return render(d, err, websocket.path)  # before accept: an HTTP answer
            try:
                subprotocol = g.get("llmd_subprotocol")
                if subprotocol:
                    # A browser that sent its token as a subprotocol fails the handshake unless it is echoed;
                    # the handler's own accept() is then a no-op.
                    await websocket.accept(subprotocol=subprotocol)
                return await route.handler(**kwargs)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - logged with traceback, never sent
                log.exception("unhandled error in WebSocket %s", websocket.path)
                await websocket.close(1011, "internal error")
            finally:
                release()

        view.__name__ = f"{d.name}_ws_{route.handler.__name__}"
        return view

    for endpoint, (d, route) in routes.items():
        if route.websocket:
            app.add_websocket(route.path, endpoint=endpoint, view_func=wrap_ws(d, route))
        else:
            app.add_url_rule(route.path, endpoint=endpoint, view_func=wrap(d, route), methods=list(route.methods))

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        # Routing errors (404, 405) and body limits hit before any handler.
        if isinstance(exc, RequestEntityTooLarge):
            return render_for_path(PayloadTooLargeError(too_large, field="body"), None)
        return render_for_path(_http_error(exc), None)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return render_for_path(InternalError("internal server error; see the daemon's log"), None)

    app.extensions["llmd_dialects"] = dialects
    app.extensions["llmd_ratelimiter"] = limit.limiter
    app.extensions["llmd_routes"] = routes  # endpoint -> (dialect, route), for the auth matrix test
    app.extensions["llmd_owners"] = owners  # which API answers an unmatched path
    return app


# What an upload route's body may hold in memory, unread, before its handler streams it to disk.
UPLOAD_BUFFER_BYTES = 64 * 1024 * 1024


def _upload_request_class(prefixes: tuple[str, ...], buffer_bytes: int) -> type[Request]:
    """Quart's Request, but a POST to an upload path (Ollama's blobs: whole GGUF files) is not bounded by
    server.max_body_bytes: its handler streams the body, and only what waits unread in memory is bounded."""

    class UploadAwareRequest(Request):
        def __init__(self, method: str, scheme: str, path: str, *args: Any, **kwargs: Any) -> None:
            super().__init__(method, scheme, path, *args, **kwargs)
            if prefixes and method == "POST" and path.startswith(prefixes):
                # No Content-Length check; Quart's Body bounds the bytes buffered and not yet read.
                self.body = self.body_class(None, buffer_bytes)

    return UploadAwareRequest


def _endpoint(d: Dialect, route: Route) -> str:
    # Path and methods make it unique even where two routes share a handler name.
    return f"{d.name}.{route.handler.__name__}"


def _http_error(exc: HTTPException) -> LlmdError:
    code = exc.code or 500
    if code == 404:
        return NotFoundError(f"no route for {request.method} {request.path}")
    if code == 405:
        allowed = sorted(getattr(exc, "valid_methods", None) or [])
        return MethodNotAllowedError(f"{request.method} is not allowed on {request.path}",
                                     headers={"Allow": ", ".join(allowed)} if allowed else None)
    if 400 <= code < 500:
        err = ValidationError(exc.description or exc.name)
        err.status = code
        return err
    return InternalError("internal server error; see the daemon's log")
