"""llmd.core.auth without HTTP: keys, users, tokens, failure delays, stream counts, peer policy, limits."""

from __future__ import annotations

import grp
import os

import jwt
import pytest

from llmd.core.auth import FailureCounter, PeerPolicy, Principal, hash_key
from llmd.core.generation import fit_context
from llmd.core.streams import OpenStreams, TooManyStreamsError
from llmd.core.types import SamplingParams
from llmd.errors import (
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    ContextLengthError,
    NotFoundError,
    ValidationError,
)


async def test_keys_are_stored_hashed_and_can_be_revoked(fake_core):
    auth = fake_core.auth
    row, secret = await auth.create_key("ci", "inference", models=["tiny"], expires_in_s=3600)
    assert secret.startswith("llmd_") and len(secret) == 48
    stored = await fake_core.store.fetchone("SELECT * FROM api_keys WHERE id=?", (row["id"],))
    assert stored["key_hash"] == hash_key(secret) and secret not in str(stored)
    p = await auth.authenticate(secret, "10.0.0.1")
    assert (p.kind, p.scope, p.models) == ("key", "inference", ("tiny",))
    with pytest.raises(ConflictError):
        await auth.create_key("ci", "admin")
    await auth.revoke_key("ci")
    with pytest.raises(AuthenticationError, match="revoked"):
        await auth.authenticate(secret, "10.0.0.1")
    with pytest.raises(NotFoundError):
        await auth.revoke_key("ci")
    await auth.create_key("ci", "admin")  # the name is free again
    with pytest.raises(ValidationError):
        await auth.create_key("bad name!", "admin")
    with pytest.raises(ValidationError):
        await auth.create_key("x", "root")


async def test_expired_key(fake_core):
    row, secret = await fake_core.auth.create_key("short", "inference", expires_in_s=1)
    await fake_core.store.auth.touch_key(row["id"], 0)
    async with fake_core.store.transaction() as db:
        await db.execute("UPDATE api_keys SET expires_at=1 WHERE id=?", (row["id"],))
    with pytest.raises(AuthenticationError, match="expired"):
        await fake_core.auth.authenticate(secret, "x")


async def test_users_tokens_and_expiry(fake_core):
    auth = fake_core.auth
    user = await auth.add_user("alice", "correct horse", "inference")
    assert "password_hash" not in user
    stored = await fake_core.store.auth.get_user("alice")
    assert stored["password_hash"].startswith("$argon2id$")
    with pytest.raises(ValidationError):
        await auth.add_user("bob", "short")
    with pytest.raises(AuthenticationError):
        await auth.login("alice", "wrong horse", "10.0.0.2")
    with pytest.raises(AuthenticationError):
        await auth.login("nobody", "correct horse", "10.0.0.2")
    answer = await auth.login("alice", "correct horse", "10.0.0.2")
    assert answer["token_type"] == "bearer" and answer["expires_in"] == fake_core.config.auth.token_ttl_s
    p = await auth.authenticate(answer["access_token"], "10.0.0.2")
    assert (p.kind, p.name, p.scope) == ("user", "alice", "inference")
    expired = await auth.issue_token("alice", "inference", -5)
    with pytest.raises(AuthenticationError, match="expired"):
        await auth.authenticate(expired, "10.0.0.2")
    forged = jwt.encode({"sub": "alice", "iss": "llmd", "iat": 1, "exp": 2 ** 40}, b"x" * 32, algorithm="HS256")
    with pytest.raises(AuthenticationError, match="invalid token"):
        await auth.authenticate(forged, "10.0.0.2")
    await auth.remove_user("alice")
    with pytest.raises(AuthenticationError, match="no longer exists"):
        await auth.authenticate(answer["access_token"], "10.0.0.2")
    key_file = fake_core.config.state_dir / "jwt.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert auth.failures.total == 5


def test_failure_delay_doubles_per_source_and_is_capped():
    now = [1000.0]
    f = FailureCounter(max_delay=1.0, clock=lambda: now[0])
    assert f.delay("a") == 0
    assert [f.fail("a") for _ in range(5)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    assert f.delay("b") == 0  # per source
    now[0] += 901  # a quiet window forgets
    assert f.count("a") == 0 and f.fail("a") == 0.1


def test_stream_counter():
    c = OpenStreams(2)
    r1, r2 = c.acquire("k"), c.acquire("k")
    with pytest.raises(TooManyStreamsError) as exc:
        c.acquire("k")
    assert exc.value.status == 429 and exc.value.headers["Retry-After"] == "1"
    c.acquire("other")()
    r1()
    r1()  # releasing twice gives back one slot only
    c.acquire("k")
    assert c.open_count("k") == 2
    assert c.acquire(None) is not None  # the Unix socket is not counted
    r2()


def test_peer_policy():
    p = PeerPolicy("nogroup-that-does-not-exist", own_uid=1234)
    assert p.allowed(0, 0) and p.allowed(1234, 99)
    assert not p.allowed(65534, 65534)
    try:
        gid = grp.getgrnam("nogroup").gr_gid
    except KeyError:
        pytest.skip("no group 'nogroup' here")
    assert PeerPolicy("nogroup", own_uid=os.getuid()).allowed(65534, gid)


def test_model_limits():
    class M:
        name, aliases, id = "qwen", ("default",), 7

    assert Principal("key", "k", "inference", ("default",)).allows_model(M)
    assert Principal("key", "k", "inference", ("model-7",)).allows_model(M)
    assert not Principal("key", "k", "inference", ("llama",)).allows_model(M)
    assert Principal("key", "k", "inference").allows("inference")
    assert not Principal("key", "k", "inference").allows("admin")


async def test_check_model_uses_the_requests_principal(fake_core):
    model = await fake_core.registry.get("tiny")
    fake_core.auth.current.set(Principal("key", "k", "inference", ("other",)))
    with pytest.raises(AuthorizationError) as exc:
        fake_core.auth.check_model(model)
    assert exc.value.status == 403 and exc.value.field == "model"


def test_max_tokens_limit_and_context():
    p = SamplingParams(max_tokens=100)
    with pytest.raises(ValidationError) as exc:
        fit_context(10, p, 512, 64, limit=50)
    assert exc.value.field == "max_tokens" and "50" in exc.value.message and "100" in exc.value.message
    with pytest.raises(ContextLengthError) as exc2:
        fit_context(500, SamplingParams(max_tokens=20), 512, 64, limit=50)
    assert "500" in exc2.value.message and "20" in exc2.value.message and "492" in exc2.value.message
    assert fit_context(10, SamplingParams(), 512, 64, limit=32).max_tokens == 32  # the default obeys the limit
    assert fit_context(500, SamplingParams(), 512, 64, limit=32).max_tokens == 12  # and the room left
