"""The token bucket of llmd.core.ratelimit, on an injected clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmd.config import is_loopback, load_config
from llmd.core.ratelimit import (
    RateLimitedError,
    RateLimiter,
    client_key,
    limiter_from_config,
)


def make_config(tmp_path: Path, **flags):
    """A config from flags only: no /etc file, no environment."""
    empty = tmp_path / "llmd.toml"
    empty.write_text("")
    base = {"paths.state_dir": str(tmp_path / "state"), "paths.runtime_dir": str(tmp_path / "run")}
    return load_config(config_file=empty, env={}, flags={**base, **flags})


class Clock:
    """A hand-wound clock: monotonic seconds, and a Unix time 1.7e9 later."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1_700_000_000.0 + self.t

    def advance(self, s: float) -> None:
        self.t += s


@pytest.fixture
def clock() -> Clock:
    return Clock()


def limiter(clock: Clock, rpm: int = 60, burst: int = 3, **kw) -> RateLimiter:
    return RateLimiter(rpm, burst, clock=clock, wall=clock.wall, **kw)


def test_burst_then_refusal(clock):
    rl = limiter(clock)  # 1 token a second, 3 at once
    decisions = [rl.take("a") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert all(d.limit == 3 for d in decisions)
    refused = decisions[-1]
    assert refused.retry_after == 1
    assert refused.headers() == {"X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "0",
                                 "X-RateLimit-Reset": str(int(clock.wall()) + 3), "Retry-After": "1"}
    assert "Retry-After" not in decisions[0].headers()


def test_refill_over_time(clock):
    rl = limiter(clock)
    for _ in range(3):
        rl.take("a")
    assert not rl.take("a").allowed
    clock.advance(0.5)
    assert not rl.take("a").allowed  # half a token is not a token
    clock.advance(0.5)
    d = rl.take("a")
    assert d.allowed and d.remaining == 0
    clock.advance(100)  # never more than the bucket holds
    assert rl.peek("a") == 3
    assert rl.take("a").remaining == 2


def test_refused_requests_do_not_spend_tokens(clock):
    rl = limiter(clock)
    for _ in range(10):
        rl.take("a")
    clock.advance(1)
    assert rl.take("a").allowed


def test_reset_is_when_the_bucket_is_full_again(clock):
    rl = limiter(clock, rpm=30, burst=4)  # 0.5 tokens a second
    d = rl.take("a")
    assert d.reset == int(clock.wall()) + 2  # 1 token missing at 0.5/s
    rl.take("a")
    d = rl.take("a")
    assert d.reset == int(clock.wall()) + 6
    d = rl.take("a")
    assert d.remaining == 0
    refused = rl.take("a")
    assert not refused.allowed and refused.retry_after == 2


def test_retry_after_rounds_up(clock):
    rl = limiter(clock, rpm=1, burst=1)  # one a minute
    assert rl.take("a").allowed
    d = rl.take("a")
    assert d.retry_after == 60
    clock.advance(59.5)
    assert rl.take("a").retry_after == 1


def test_clients_are_independent(clock):
    rl = limiter(clock, burst=1)
    assert rl.take("a").allowed
    assert not rl.take("a").allowed
    assert rl.take("b").allowed


def test_memory_is_bounded(clock):
    rl = limiter(clock, burst=2, max_clients=3)
    rl.take("busy")  # not full: kept over idle ones
    for name in ("x", "y", "z"):
        rl.take(name)
    clock.advance(10)  # x, y, z and busy are all full again...
    rl.take("busy")  # ...but busy just spent a token
    rl.take("new")
    assert len(rl) == 3
    assert rl.peek("busy") < 2  # the busy client kept its state
    for i in range(100):
        rl.take(f"c{i}")
    assert len(rl) == 3


def test_error_is_a_429_with_retry_after(clock):
    rl = limiter(clock, burst=1)
    rl.take("a")
    err = rl.take("a").error()
    assert isinstance(err, RateLimitedError)
    assert err.status == 429 and err.code == "rate_limited"
    assert err.headers["Retry-After"] == "1"
    assert err.headers["X-RateLimit-Remaining"] == "0"
    assert err.details["limit"] == 1


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        RateLimiter(0, 1)
    with pytest.raises(ValueError):
        RateLimiter(1, 0)


def test_client_key():
    assert client_key("10.0.0.1") == "addr:10.0.0.1"
    a = client_key("10.0.0.1", "Bearer secret")
    assert a.startswith("key:") and "secret" not in a
    assert client_key("10.0.0.2", "bearer secret") == a  # the key, not the address
    assert client_key("10.0.0.3", None, "secret") == a  # X-API-Key: the same key, the same client
    assert client_key("10.0.0.1", "Bearer other") != a
    assert client_key("10.0.0.1", "Basic dXNlcjpwdw==") == "addr:10.0.0.1"  # not an API key
    assert client_key("10.0.0.1", "Bearer ") == "addr:10.0.0.1"
    assert client_key(None) == "addr:unknown"


@pytest.mark.parametrize("host,loop", [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("box.lan", False), ("", False),
])
def test_is_loopback(host, loop):
    assert is_loopback(host) is loop


@pytest.mark.parametrize("host,mode,on", [
    ("127.0.0.1", "auto", False), ("::1", "auto", False), ("localhost", "auto", False),
    ("0.0.0.0", "auto", True), ("192.168.1.10", "auto", True),
    ("127.0.0.1", "on", True), ("0.0.0.0", "off", False), ("0.0.0.0", "OFF", False),
])
def test_limiter_from_config(tmp_path, host, mode, on):
    cfg = make_config(tmp_path, **{"server.host": host, "ratelimit.enabled": mode,
                                   "ratelimit.requests_per_minute": 120, "ratelimit.burst": 7})
    rl = limiter_from_config(cfg)
    assert (rl is not None) is on
    if rl is not None:
        assert rl.burst == 7 and rl.rate == 2.0


def test_config_checks(tmp_path):
    from llmd.errors import ConfigError

    for key, value in (("ratelimit.enabled", "sometimes"), ("ratelimit.burst", 0),
                       ("ratelimit.requests_per_minute", 0), ("server.max_batch_size", 0)):
        with pytest.raises(ConfigError, match=key):
            make_config(tmp_path, **{key: value})
    cfg = make_config(tmp_path)
    assert (cfg.ratelimit.enabled, cfg.ratelimit.requests_per_minute, cfg.ratelimit.burst) == ("auto", 300, 100)
    assert cfg.server.max_batch_size == 16
