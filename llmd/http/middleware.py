"""Request middleware: who may call a route (auth), and how often (rate limit).

Both run before any handler, for every route of every API, in one place:

- :class:`AccessControl` checks the route's policy (public, inference, admin;
  docs/security.md) against the request's credential, for HTTP requests and
  WebSocket handshakes, and remembers who the client is for per-client
  accounting (open streams, the rate limit);
- :class:`RateLimit` charges the client's token bucket on the routes that
  carry the ``X-RateLimit-*`` headers (docs/api-v1.md) and answers a 429 in
  the path's API envelope when it is empty.
"""

from __future__ import annotations

from typing import Any, Callable

from quart import Quart, Response, g, request, websocket

from llmd.core import Core
from llmd.core.auth import KEY_PREFIX, OPEN, UNIX, Principal
from llmd.core.ratelimit import client_key, limiter_from_config
from llmd.errors import AuthenticationError, AuthorizationError, LlmdError
from llmd.http.routing import Dialect, Route

# Declared public, but their openness is configurable (auth.public_metrics).
METRICS_PATHS = ("/metrics", "/api/v1/metrics")
# The APIs whose documents promise rate-limit headers on every route; elsewhere only inference routes count.
LIMITED_PREFIXES = ("/api/v1/", "/v1/")

Render = Callable[[LlmdError, str | None], Response]  # an error in the envelope of the path's API


def credential(headers: Any) -> str | None:
    """The credential a request carries: ``Authorization: Bearer`` or ``X-API-Key``."""
    value = headers.get("Authorization")
    if value:
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            return rest.strip()
    key = headers.get("X-API-Key")
    return key.strip() if key and key.strip() else None


def ws_credential() -> tuple[str | None, str | None]:
    """A handshake's credential, and the subprotocol to echo when it came as one.

    Browsers cannot set headers on a WebSocket, so besides the headers a
    ``token`` query parameter and a ``Sec-WebSocket-Protocol`` of
    ``bearer.<token>`` (or the bare key or token) are accepted.
    """
    found = credential(websocket.headers)
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


class AccessControl:
    """The route policies, checked at the app for every request and handshake (401/403 in the API's envelope)."""

    def __init__(self, core: Core, routes: dict[str, tuple[Dialect, Route]], render: Render) -> None:
        self.core = core
        self.auth = core.auth
        self.routes = routes  # endpoint -> (dialect, route)
        self.render = render

    def install(self, app: Quart) -> None:
        """Register the hooks on ``app``."""
        app.before_request(self.authorize_request)
        app.before_websocket(self.authorize_websocket)

    def policy_of(self, route: Route, d: Dialect, address: str | None) -> str:
        """The route's policy in force: the docs and the metrics may be closed by config."""
        if route.auth != "public":
            return route.auth
        if d.name == "docs" and not self.core.config.auth.public_docs:
            return "inference"
        if route.path in METRICS_PATHS and not self.auth.metrics_public(address):
            return "inference"
        return "public"

    async def principal_for(self, cred: str | None, address: str | None, policy: str) -> Principal | None:
        """Who the connection is; ``None`` for no one. Raises a 401 for credentials that do not verify."""
        if not self.auth.enabled:
            return OPEN
        if address is None and self.auth.unix_peers_verified:
            return UNIX  # the daemon let this Unix-socket peer in by its credentials (SO_PEERCRED)
        if policy == "public" or cred is None:
            return None  # a public route ignores credentials: a stale token must not lock out /health
        return await self.auth.authenticate(cred, self.auth.credential_source(address))

    async def check(self, conn: Any, cred: str | None) -> LlmdError | None:
        """Authenticate and authorize the current request or handshake; the error to answer with, if any."""
        client = conn.scope.get("client")
        address = client[0] if client else None
        rule = conn.url_rule
        entry = self.routes.get(rule.endpoint) if rule is not None else None
        # Unmatched paths (404, 405) still need a credential: they must not map the API for strangers.
        policy = self.policy_of(entry[1], entry[0], address) if entry else "inference"
        g.llmd_route = entry[1] if entry else None
        try:
            principal = await self.principal_for(cred, address, policy)
        except AuthenticationError as err:
            return err
        if principal is not None:
            self.auth.current.set(principal)
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
            what = "an API key or token is required" if cred is None else "the credential was refused"
            return AuthenticationError(f"{what}: send Authorization: Bearer <key> or X-API-Key")
        if not principal.allows(policy):
            return AuthorizationError(f"this route needs the {policy} scope; the credential has {principal.scope}")
        return None

    async def authorize_request(self) -> Response | None:
        """Every HTTP request: the route's policy against the request's credential."""
        err = await self.check(request, credential(request.headers))
        return self.render(err, None) if err is not None else None

    async def authorize_websocket(self) -> Response | None:
        """Every WebSocket handshake, refused with an HTTP answer before it is accepted."""
        cred, subprotocol = ws_credential()
        g.llmd_subprotocol = subprotocol
        err = await self.check(websocket, cred)
        return self.render(err, websocket.path) if err is not None else None


class RateLimit:
    """One token bucket per client on the limited routes; 429 in the path's API envelope when it is empty."""

    def __init__(self, core: Core, render: Render, dialect_name: Callable[[str], str]) -> None:
        self.core = core
        self.limiter = limiter_from_config(core.config)  # None when ratelimit.enabled resolves to off
        self.render = render
        self.dialect_name = dialect_name

    def install(self, app: Quart) -> None:
        """Register the hooks on ``app`` (after :class:`AccessControl`'s, which names the client)."""
        app.before_request(self.charge)
        app.after_request(self.headers)

    @staticmethod
    def limited(path: str, route: Route | None) -> bool:
        """The routes that count: every route of the APIs that document the limit, and every inference route."""
        return path.startswith(LIMITED_PREFIXES) or (route is not None and route.auth == "inference")

    async def charge(self) -> Response | None:
        """Take a token from the client's bucket."""
        if self.limiter is None or not self.limited(request.path, g.get("llmd_route")):
            return None
        client = request.scope.get("client")
        if not client:  # Hypercorn gives no peer address for a Unix-socket connection: local admin, exempt
            return None
        principal = g.get("llmd_principal")
        if self.core.auth.enabled:
            # Only a verified credential names the client: made-up tokens must not buy fresh buckets.
            key = principal.client_id if principal is not None and principal.kind in ("key", "user") \
                else f"addr:{client[0]}"
        else:
            key = client_key(client[0], request.headers.get("Authorization"), request.headers.get("X-API-Key"))
        decision = self.limiter.take(key)
        g.llmd_ratelimit = decision
        if decision.allowed:
            return None
        self.core.metrics.observe_rate_limited(self.dialect_name(request.path))
        return self.render(decision.error(), None)

    async def headers(self, resp: Response) -> Response:
        """X-RateLimit-Limit, -Remaining and -Reset on every limited response."""
        decision = g.get("llmd_ratelimit")
        if decision is not None:
            for k, v in decision.headers().items():
                resp.headers[k] = v
        return resp
