"""The Quart application: wires the dialects to one core."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from quart import Quart, Response, g, jsonify, request, websocket
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from llmd.core import Core
from llmd.core.ratelimit import client_key, limiter_from_config
from llmd.errors import (
    InternalError, LlmdError, MethodNotAllowedError, NotFoundError, PayloadTooLargeError, ValidationError,
)
from llmd.http import admin, easyviz, local, manager, openai, ops, spec
from llmd.http.api import Dialect, Route
from llmd.http.docs import NO_ASSETS_HTML, REDOC_HTML, SWAGGER_HTML, asset, build_openapi, has_assets

log = logging.getLogger(__name__)

# Paths whose responses carry X-RateLimit-* headers and whose clients are limited.
RATE_LIMITED_PREFIXES = ("/api/v1/", "/v1/")


def _docs_dialect(fallback: Dialect, dialects: list[Dialect]) -> Dialect:
    d = Dialect("docs", "Documentation", fallback.render_error, paths=("/docs", "/redoc", "/openapi.json"),
                prefixes=("/docs/",))
    spec: dict[str, Any] = {}

    @d.route("/openapi.json", summary="The OpenAPI document", public=True)
    async def openapi_json() -> Any:
        """Generated from the routes' declarations."""
        if not spec:
            spec.update(build_openapi(dialects))
        return jsonify(spec)

    @d.route("/docs", summary="Swagger UI", text=True, public=True)
    async def docs() -> Any:
        """Interactive documentation, served with no internet access."""
        return Response(SWAGGER_HTML if has_assets() else NO_ASSETS_HTML, content_type="text/html")

    @d.route("/redoc", summary="ReDoc", text=True, public=True)
    async def redoc() -> Any:
        """Reference documentation, served with no internet access."""
        return Response(REDOC_HTML if has_assets() else NO_ASSETS_HTML, content_type="text/html")

    @d.route("/docs/assets/<name>", summary="Documentation assets", text=True, public=True)
    async def docs_asset(name: str) -> Any:
        """Swagger UI and ReDoc files."""
        found = await asyncio.to_thread(asset, name)  # up to 1.5 MB from disk: off the loop
        if found is None:
            raise NotFoundError(f"no documentation asset '{name}'")
        data, ctype = found
        resp = Response(data, content_type=ctype)
        resp.headers["Cache-Control"] = "public, max-age=86400"
        return resp

    return d


def create_app(core: Core) -> Quart:
    """Build the app for ``core``: every dialect, error rendering, limits."""
    app = Quart("llmd")
    app.config["MAX_CONTENT_LENGTH"] = core.config.server.max_body_bytes
    app.config["RESPONSE_TIMEOUT"] = None  # long generations are normal
    app.config["BODY_TIMEOUT"] = 60
    app.config["JSON_SORT_KEYS"] = False
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]

    # Order matters for error envelopes of unmatched paths: manager's hub paths
    # (/api/models/search, .../info) are claimed before ops's /api/models prefix.
    dialects = [openai.build(core), local.build(core), admin.build(core), easyviz.build(core), spec.build(core),
                manager.build(core), ops.build(core)]
    dialects.append(_docs_dialect(dialects[1], dialects))
    fallback = dialects[1]  # seed 003's {"detail": ...} for paths nobody owns

    def dialect_for(path: str) -> Dialect:
        for d in dialects:
            if d.owns(path):
                return d
        return fallback

    def render(d: Dialect, err: LlmdError) -> Response:
        body, status = d.render_error(err, request.path)
        resp = jsonify(body)
        resp.status_code = status
        for k, v in err.headers.items():
            resp.headers[k] = v
        return resp

    # -- rate limiting (seed 001's X-RateLimit-* headers; docs/api-spec.md) ----------------
    limiter = limiter_from_config(core.config)  # None when ratelimit.enabled resolves to off

    @app.before_request
    async def rate_limit() -> Response | None:
        """Charge the client's bucket; an empty bucket is a 429 in the path's dialect."""
        if limiter is None or not request.path.startswith(RATE_LIMITED_PREFIXES):
            return None
        client = request.scope.get("client")
        if not client:  # Hypercorn gives no peer address for a Unix-socket connection: local admin, exempt
            return None
        key = client_key(client[0], request.headers.get("Authorization"), request.headers.get("X-API-Key"))
        decision = limiter.take(key)
        g.llmd_ratelimit = decision
        if decision.allowed:
            return None
        d = dialect_for(request.path)
        core.metrics.observe_rate_limited(d.name)
        return render(d, decision.error())

    @app.after_request
    async def rate_limit_headers(resp: Response) -> Response:
        """X-RateLimit-Limit, -Remaining and -Reset on every limited response."""
        decision = g.get("llmd_ratelimit")
        if decision is not None:
            for k, v in decision.headers().items():
                resp.headers[k] = v
        return resp

    def wrap(d: Dialect, route: Route) -> Any:
        async def view(**kwargs: Any) -> Any:
            try:
                return await route.handler(**kwargs)
            except LlmdError as err:
                if err.status >= 500:
                    log.warning("%s %s -> %s %s", request.method, request.path, err.status, err.message)
                return render(d, err)
            except RequestEntityTooLarge:
                return render(d, PayloadTooLargeError(
                    f"the request body is larger than {core.config.server.max_body_bytes} bytes", field="body"))
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
                return await route.handler(**kwargs)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - logged with traceback, never sent
                log.exception("unhandled error in WebSocket %s", websocket.path)
                await websocket.close(1011, "internal error")

        view.__name__ = f"{d.name}_ws_{route.handler.__name__}"
        return view

    for d in dialects:
        for route in d.routes:
            if route.websocket:
                app.add_websocket(route.path, endpoint=f"{d.name}.{route.handler.__name__}",
                                  view_func=wrap_ws(d, route))
                continue
            app.add_url_rule(route.path, endpoint=f"{d.name}.{route.handler.__name__}",
                             view_func=wrap(d, route), methods=list(route.methods))

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        # Routing errors (404, 405) and body limits hit before any handler.
        if isinstance(exc, RequestEntityTooLarge):
            err: LlmdError = PayloadTooLargeError(
                f"the request body is larger than {core.config.server.max_body_bytes} bytes", field="body")
        else:
            err = _http_error(exc)
        return render(dialect_for(request.path), err)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return render(dialect_for(request.path), InternalError("internal server error; see the daemon's log"))

    app.extensions["llmd_dialects"] = dialects
    app.extensions["llmd_ratelimiter"] = limiter
    return app


def _http_error(exc: HTTPException) -> LlmdError:
    code = exc.code or 500
    if code == 404:
        return NotFoundError(f"no route for {request.method} {request.path}")
    if code == 405:
        return MethodNotAllowedError(f"{request.method} is not allowed on {request.path}")
    if 400 <= code < 500:
        err = ValidationError(exc.description or exc.name)
        err.status = code
        return err
    return InternalError("internal server error; see the daemon's log")
