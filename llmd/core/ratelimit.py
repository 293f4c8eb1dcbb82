"""Per-client rate limiting: one token bucket per client, with an injectable clock.

Each client owns a bucket of ``burst`` tokens that refills at
``requests_per_minute / 60`` tokens a second. A request takes one token; an
empty bucket refuses it, and says how long until a token is back.

The headers a response carries (the API Interface Specification's ``X-RateLimit-*``) follow from the
bucket after the request:

- ``X-RateLimit-Limit``: the bucket size (``burst``), the most requests a
  client may make at once;
- ``X-RateLimit-Remaining``: whole tokens left;
- ``X-RateLimit-Reset``: the Unix time (seconds) at which the bucket is full
  again.

This module is pure: no HTTP, no globals. The HTTP layer decides who the
client is (:func:`client_key`) and which requests count.
"""

from __future__ import annotations

import collections
import hashlib
import math
import time
from dataclasses import dataclass
from typing import Callable

from llmd.config import Config, is_loopback
from llmd.errors import LlmdError

Clock = Callable[[], float]

DEFAULT_MAX_CLIENTS = 10_000


class RateLimitedError(LlmdError):
    """The client's bucket is empty: 429 with ``Retry-After``."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, **kw: object) -> None:
        headers = dict(kw.pop("headers", None) or {})  # type: ignore[arg-type]
        headers["Retry-After"] = str(retry_after)
        super().__init__(message, headers=headers, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Decision:
    """The outcome of one request against its client's bucket."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # Unix time at which the bucket is full again
    retry_after: int  # seconds until the next token (0 when allowed)

    def headers(self) -> dict[str, str]:
        """The ``X-RateLimit-*`` headers (plus ``Retry-After`` when refused)."""
        out = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining),
               "X-RateLimit-Reset": str(self.reset)}
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after)
        return out

    def error(self) -> RateLimitedError:
        """The typed error of a refused request, rendered by each dialect in its envelope."""
        return RateLimitedError(
            f"too many requests: the limit is {self.limit} at once, refilled over time; "
            f"retry in {self.retry_after} s",
            retry_after=self.retry_after,
            details={"limit": self.limit, "remaining": self.remaining, "reset": self.reset,
                     "retry_after": self.retry_after},
            headers=self.headers(),
        )


class RateLimiter:
    """Token buckets keyed by client.

    ``clock`` is monotonic seconds (bucket arithmetic); ``wall`` is Unix time
    (only for the ``Reset`` header). At most ``max_clients`` buckets are kept:
    past that, full buckets (idle clients) are dropped first, then the least
    recently used, so memory stays bounded whatever the number of clients.
    """

    def __init__(self, requests_per_minute: int, burst: int, *, clock: Clock = time.monotonic,
                 wall: Clock = time.time, max_clients: int = DEFAULT_MAX_CLIENTS) -> None:
        if requests_per_minute < 1 or burst < 1 or max_clients < 1:
            raise ValueError("requests_per_minute, burst and max_clients must be >= 1")
        self.rate = requests_per_minute / 60.0  # tokens per second
        self.burst = burst
        self.clock = clock
        self.wall = wall
        self.max_clients = max_clients
        # key -> (tokens, time of the last update); most recently used last
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + max(0.0, now - at) * self.rate)

    def take(self, key: str, cost: float = 1.0) -> Decision:
        """Take ``cost`` tokens from ``key``'s bucket, or refuse if there are not enough."""
        now = self.clock()
        tokens = self._level(key, now)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        self._evict(now)
        missing = max(0.0, cost - tokens)
        retry_after = 0 if allowed else max(1, math.ceil(missing / self.rate))
        to_full = (self.burst - tokens) / self.rate
        return Decision(allowed=allowed, limit=self.burst, remaining=int(math.floor(tokens + 1e-9)),
                        reset=int(math.ceil(self.wall() + to_full)), retry_after=retry_after)

    def peek(self, key: str) -> float:
        """Tokens in ``key``'s bucket now, without taking any."""
        return self._level(key, self.clock())

    def _evict(self, now: float) -> None:
        if len(self._buckets) <= self.max_clients:
            return
        for key in [k for k in self._buckets if self._level(k, now) >= self.burst]:
            del self._buckets[key]
            if len(self._buckets) <= self.max_clients:
                return
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)


def limiter_from_config(cfg: Config, **kw: object) -> RateLimiter | None:
    """The limiter that ``cfg`` asks for, or ``None`` when rate limiting is off.

    ``ratelimit.enabled = "auto"`` (the default) turns it on only when the TCP
    listener can be reached from other machines, i.e. ``server.host`` is not a
    loopback address. Unix-socket clients are never limited (see the HTTP layer).
    """
    mode = cfg.ratelimit.enabled.lower()
    if mode == "off" or (mode == "auto" and is_loopback(cfg.server.host)):
        return None
    return RateLimiter(cfg.ratelimit.requests_per_minute, cfg.ratelimit.burst, **kw)  # type: ignore[arg-type]


def client_key(address: str | None, authorization: str | None = None, api_key: str | None = None) -> str:
    """The bucket a request is charged to.

    An API key (``Authorization: Bearer <key>`` or ``X-API-Key``) names the
    client when there is one; it is hashed, so keys never sit in memory in
    clear. Otherwise the client's IP address does.
    """
    key = None
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            key = value.strip()
    if key is None and api_key and api_key.strip():
        key = api_key.strip()
    if key is not None:
        return "key:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return "addr:" + (address or "unknown")
