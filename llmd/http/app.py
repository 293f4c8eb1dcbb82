"""The Quart application: wires the dialects to one core."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from quart import Quart, Response, g, jsonify, request, websocket
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from llmd.core import Core
from llmd.core.auth import KEY_PREFIX, OPEN, POLICIES, UNIX, Principal
from llmd.core.ratelimit import client_key, limiter_from_config
from llmd.errors import (
    AuthenticationError, AuthorizationError, InternalError, LlmdError, MethodNotAllowedError, NotFoundError,
    PayloadTooLargeError, ValidationError,
)
from llmd.http import admin, easyviz, local, manager, openai, ops, spec
from llmd.http.api import Dialect, Route
from llmd.http.docs import NO_ASSETS_HTML, REDOC_HTML, SWAGGER_HTML, asset, build_openapi, has_assets

log = logging.getLogger(__name__)

# Paths whose responses carry X-RateLimit-* headers and whose clients are limited.
# Seed 001 and OpenAI, and the inference routes of seeds 002 and 004, so that no dialect is a way around the limit.
RATE_LIMITED_PREFIXES = ("/api/v1/", "/v1/", "/api/models/", "/api/chat/", "/api/completions/")
# Declared public, but their openness is configurable (auth.public_metrics, auth.public_docs).
METRICS_PATHS = ("/metrics", "/api/v1/metrics")


def _docs_dialect(fallback: Dialect, dialects: list[Dialect]) -> Dialect:
    d = Dialect("docs", "Documentation", fallback.render_error, paths=("/docs", "/redoc", "/openapi.json"),
                prefixes=("/docs/",))
    spec: dict[str, Any] = {}

    @d.route("/openapi.json", summary="The OpenAPI document", auth="public")
    async def openapi_json() -> Any:
        """Generated from the routes' declarations."""
        if not spec:
            spec.update(build_openapi(dialects))
        return jsonify(spec)

    @d.route("/docs", summary="Swagger UI", text=True, auth="public")
    async def docs() -> Any:
        """Interactive documentation, served with no internet access."""
        return Response(SWAGGER_HTML if has_assets() else NO_ASSETS_HTML, content_type="text/html")

    @d.route("/redoc", summary="ReDoc", text=True, auth="public")
    async def redoc() -> Any:
        """Reference documentation, served with no internet access."""
        return Response(REDOC_HTML if has_assets() else NO_ASSETS_HTML, content_type="text/html")

    @d.route("/docs/assets/<name>", summary="Documentation assets", text=True, auth="public")
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
    app.config["BODY_TIMEOUT"] = core.config.limits.read_timeout_s  # a trickling body is cut here
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

    def render(d: Dialect, err: LlmdError, path: str | None = None) -> Response:
        body, status = d.render_error(err, request.path if path is None else path)
        resp = jsonify(body)
        resp.status_code = status
        for k, v in err.headers.items():
            resp.headers[k] = v
        return resp

    # -- route policies (docs/security.md): checked here, in one place, for every route ------------
    auth = core.auth
    routes: dict[str, tuple[Dialect, Route]] = {}
    for d in dialects:
        for route in d.routes:
            if route.auth not in POLICIES:
                raise ValueError(f"route {route.path} of dialect {d.name} declares no auth policy "
                                 f"(auth= one of {', '.join(POLICIES)})")
            routes[_endpoint(d, route)] = (d, route)

    def policy_of(route: Route, d: Dialect, address: str | None) -> str:
        """The route's policy in force: docs and metrics may be closed by config."""
        if route.auth != "public":
            return route.auth  # type: ignore[return-value]
        if d.name == "docs" and not core.config.auth.public_docs:
            return "inference"
        if route.path in METRICS_PATHS and not auth.metrics_public(address):
            return "inference"
        return "public"

    async def principal_for(credential: str | None, address: str | None, policy: str) -> Principal | None:
        """Who the connection is; ``None`` for no one. Raises a 401 for credentials that do not verify."""
        if not auth.enabled:
            return OPEN
        if address is None and auth.unix_peers_verified:
            return UNIX  # the daemon let this Unix-socket peer in by its credentials (SO_PEERCRED)
        if policy == "public" or credential is None:
            return None  # a public route ignores credentials: a stale token must not lock out /health
        return await auth.authenticate(credential, auth.credential_source(address))

    async def check_access(conn: Any, credential: str | None) -> LlmdError | None:
        """Authenticate and authorize the current request or handshake; the error to answer with, if any."""
        client = conn.scope.get("client")
        address = client[0] if client else None
        rule = conn.url_rule
        entry = routes.get(rule.endpoint) if rule is not None else None
        # Unmatched paths (404, 405) still need a credential: they must not map the API for strangers.
        policy = policy_of(entry[1], entry[0], address) if entry else "inference"
        try:
            principal = await principal_for(credential, address, policy)
        except AuthenticationError as err:
            return err
        if principal is not None:
            auth.current.set(principal)
        # Per-client accounting (streams, rate limit): the verified principal, else the address;
        # the Unix socket is the local admin, never limited.
        if principal is not None and principal.kind in ("key", "user"):
            g.llmd_client = principal.client_id
        else:
            g.llmd_client = f"addr:{address}" if address else None
        g.llmd_principal = principal
        if policy == "public":
            return None
        if principal is None:
            what = "an API key or token is required" if credential is None else "the credential was refused"
            return AuthenticationError(f"{what}: send Authorization: Bearer <key> or X-API-Key")
        if not principal.allows(policy):
            return AuthorizationError(f"this route needs the {policy} scope; the credential has {principal.scope}")
        return None

    @app.before_request
    async def authorize_request() -> Response | None:
        """Every HTTP request: the route's policy against the request's credential (401/403 in its envelope)."""
        err = await check_access(request, _credential(request.headers))
        return render(dialect_for(request.path), err) if err is not None else None

    @app.before_websocket
    async def authorize_websocket() -> Response | None:
        """Every WebSocket handshake, refused with an HTTP answer before it is accepted."""
        credential, subprotocol = _ws_credential()
        g.llmd_subprotocol = subprotocol
        err = await check_access(websocket, credential)
        return render(dialect_for(websocket.path), err, websocket.path) if err is not None else None

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
        principal = g.get("llmd_principal")
        if auth.enabled:
            # Only a verified credential names the client: made-up tokens must not buy fresh buckets.
            key = principal.client_id if principal is not None and principal.kind in ("key", "user") \
                else f"addr:{client[0]}"
        else:
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
                release = auth.streams.acquire(g.get("llmd_client"))
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

    for d in dialects:
        for route in d.routes:
            if route.websocket:
                app.add_websocket(route.path, endpoint=_endpoint(d, route), view_func=wrap_ws(d, route))
                continue
            app.add_url_rule(route.path, endpoint=_endpoint(d, route),
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
    app.extensions["llmd_routes"] = routes  # endpoint -> (dialect, route), for the auth matrix test
    return app


def _endpoint(d: Dialect, route: Route) -> str:
    # Path and methods make it unique even where two routes share a handler name.
    return f"{d.name}.{route.handler.__name__}"


def _credential(headers: Any) -> str | None:
    """The credential a request carries: ``Authorization: Bearer`` or ``X-API-Key``."""
    value = headers.get("Authorization")
    if value:
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            return rest.strip()
    key = headers.get("X-API-Key")
    return key.strip() if key and key.strip() else None


def _ws_credential() -> tuple[str | None, str | None]:
    """A handshake's credential, and the subprotocol to echo when it came as one.

    Browsers cannot set headers on a WebSocket, so besides the headers a
    ``token`` query parameter and a ``Sec-WebSocket-Protocol`` of
    ``bearer.<token>`` (or the bare key or token) are accepted.
    """
    found = _credential(websocket.headers)
    if found:
        return found, None
    token = websocket.args.get("token", "").strip()
    if token:
        return token, None
    for proto in websocket.requested_subprotocols:
        p = proto.strip()
        if p.lower().startswith("bearer.") and len(p) > 7:
            return p[7:], p
        if p.startswith(KEY_PREFIX) or p.count(".") == 2:
            return p, p
    return None, None


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
