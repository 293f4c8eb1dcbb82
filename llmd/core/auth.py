"""Who may call what: API keys, users with passwords, JWTs, scopes, Unix-socket peers.

The HTTP layer finds the credentials of a request and asks :class:`Auth` for
the :class:`Principal` they prove; it then checks the route's policy. The
model a request names is known only once a dialect has parsed it, so the
principal of the request in progress is kept in a ``ContextVar`` owned by
:class:`Auth`, and :meth:`Auth.check_model` is called where the core resolves
a model name.

- API keys are ``llmd_`` plus 43 random URL-safe characters (256 bits). Only
  their SHA-256 is stored: a key has enough entropy that a slow hash adds
  nothing, and the lookup by hash is one indexed query.
- Passwords are hashed with argon2id (``argon2-cffi``), off the event loop.
- Tokens are HS256 JWTs signed with a key generated at first start and kept in
  ``<state_dir>/jwt.key`` with mode 0600. Removing a user invalidates their
  tokens: every token is checked against the user table.
- Failed attempts are counted per source and slowed down (``asyncio.sleep``,
  which holds only that request) and logged without the secret.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import dataclasses
import grp
import hashlib
import logging
import os
import pwd
import re
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import argon2
import jwt

from llmd.config import Config, is_loopback, resolve_auth_mode
from llmd.errors import (
    AuthenticationError,
    AuthorizationError,
    NotFoundError,
    ValidationError,
)

log = logging.getLogger(__name__)

SCOPES = ("inference", "admin")
POLICIES = ("public", "inference", "admin")
KEY_PREFIX = "llmd_"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")
JWT_ISSUER = "llmd"
MAX_SOURCES = 10_000  # failure counters kept; the oldest go first
FAILURE_WINDOW_S = 900.0  # a source's failures are forgotten after this long without one


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who a request comes from, and what it may reach."""

    kind: str  # key | user | unix | open (auth off)
    name: str
    scope: str  # inference | admin
    models: tuple[str, ...] | None = None  # None: every model
    key_id: int | None = None

    @property
    def client_id(self) -> str:
        """A stable identity for per-client accounting (rate limit, stream count)."""
        if self.kind == "key":
            return f"key:{self.key_id}"
        return f"{self.kind}:{self.name}"

    def allows(self, policy: str) -> bool:
        """True if this principal reaches a route whose policy is ``policy``."""
        if policy == "public":
            return True
        if policy == "inference":
            return self.scope in SCOPES
        return self.scope == "admin"

    def allows_model(self, model: Any) -> bool:
        """True if ``model`` (a registry Model) is one this principal may use."""
        if self.models is None:
            return True
        names = {model.name, *getattr(model, "aliases", ())}
        if getattr(model, "id", None) is not None:
            names.add(f"model-{model.id}")
        return bool(names & set(self.models))

    def describe(self) -> dict[str, Any]:
        """The principal as JSON (never a secret)."""
        return {"kind": self.kind, "name": self.name, "scope": self.scope,
                "models": list(self.models) if self.models is not None else None}


OPEN = Principal("open", "anonymous", "admin")  # auth is off: everything is allowed
UNIX = Principal("unix", "unix-socket", "admin")


def hash_key(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _check_name(value: str, field: str) -> str:
    if not NAME_RE.match(value or ""):
        raise ValidationError(f"{field} must be 1-64 characters of letters, digits, '.', '_', '@' or '-', "
                              f"starting with a letter or digit", field=field)
    return value


def _check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ValidationError(f"scope must be one of {', '.join(SCOPES)}", field="scope")
    return scope


class FailureCounter:
    """Failed attempts per source (an address, or the Unix socket), with the delay they earn.

    The delay doubles with each failure in the window, from 0.1 s up to
    ``max_delay``; a success does not reset it (an attacker who also holds a
    valid key must not be able to wash the counter). Bounded: at most
    ``MAX_SOURCES`` sources are kept.
    """

    def __init__(self, max_delay: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_delay = max_delay
        self.clock = clock
        self.total = 0
        self._by_source: collections.OrderedDict[str, tuple[int, float]] = collections.OrderedDict()

    def count(self, source: str) -> int:
        """Failures of ``source`` in the current window."""
        n, at = self._by_source.get(source, (0, 0.0))
        return n if self.clock() - at < FAILURE_WINDOW_S else 0

    def delay(self, source: str) -> float:
        """Seconds the next failed answer to ``source`` waits."""
        n = self.count(source)
        return 0.0 if n == 0 else min(self.max_delay, 0.1 * 2 ** min(n - 1, 16))

    def fail(self, source: str) -> float:
        """Record one failure; returns the delay it earns."""
        self.total += 1
        n = self.count(source) + 1
        self._by_source[source] = (n, self.clock())
        self._by_source.move_to_end(source)
        while len(self._by_source) > MAX_SOURCES:
            self._by_source.popitem(last=False)
        return self.delay(source)


class PeerPolicy:
    """Which Unix-socket peers are admin: root, the daemon's own user, members of ``auth.unix_group``."""

    def __init__(self, group: str, *, own_uid: int | None = None, ttl: float = 10.0) -> None:
        self.group = group
        self.own_uid = os.getuid() if own_uid is None else own_uid
        self.ttl = ttl
        self._cache: tuple[float, int | None, frozenset[str]] | None = None
        self._names: dict[int, str | None] = {}  # uid -> user name, dropped with the group cache

    def _group(self) -> tuple[int | None, frozenset[str]]:
        # NSS lookups can be slow (LDAP); a few seconds of staleness is fine for group membership.
        now = time.monotonic()
        if self._cache is None or now - self._cache[0] > self.ttl:
            try:
                g = grp.getgrnam(self.group) if self.group else None
            except KeyError:
                g = None
            self._cache = (now, g.gr_gid if g else None, frozenset(g.gr_mem) if g else frozenset())
            self._names.clear()
        return self._cache[1], self._cache[2]

    def allowed(self, uid: int, gid: int) -> bool:
        """True if the peer with ``uid``/``gid`` may use the socket."""
        if uid == 0 or uid == self.own_uid:
            return True
        group_gid, members = self._group()
        if group_gid is None:
            return False
        if gid == group_gid:
            return True
        # Runs at accept, on the event loop: a refused user who reconnects in a loop must not
        # cost one NSS lookup each time.
        if uid not in self._names:
            try:
                self._names[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self._names[uid] = None
        name = self._names[uid]
        return name is not None and name in members


class Auth:
    """Credentials, principals and per-client accounting for one core."""

    def __init__(self, config: Config, repo: Any) -> None:
        self.config = config
        self.repo = repo  # llmd.store.auth.AuthRepo
        self.enabled, self.reason = resolve_auth_mode(config)
        # Set by the daemon once its Unix socket refuses disallowed peers at accept:
        # only then is a connection without a client address a trusted local admin.
        self.unix_peers_verified = False
        self.current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
            "llmd_principal", default=None)
        self.failures = FailureCounter(config.auth.max_failure_delay_s)
        self.peers = PeerPolicy(config.auth.unix_group)
        self._hasher = argon2.PasswordHasher()
        self._dummy_hash: str | None = None
        self._signing_key: bytes | None = None
        self._touched: dict[int, float] = {}

    # -- state ------------------------------------------------------------
    @property
    def key_file(self) -> Path:
        """Where the JWT signing key lives."""
        return self.config.state_dir / "jwt.key"

    async def start(self) -> None:
        """Create the JWT signing key if there is none (first start)."""
        await self.signing_key()

    async def signing_key(self) -> bytes:
        """The HS256 key; generated with mode 0600 on first use."""
        if self._signing_key is None:
            self._signing_key = await asyncio.to_thread(self._load_or_create_key)
        return self._signing_key

    def _load_or_create_key(self) -> bytes:
        path = self.key_file
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # Written whole to a 0600 temporary file, synced, then linked into place: a crash
            # never leaves an empty or short key behind, and a concurrent start keeps the first one.
            key = secrets.token_bytes(32)
            fd, tmp = tempfile.mkstemp(prefix=".jwt-", dir=path.parent)  # mkstemp makes it 0600
            try:
                with os.fdopen(fd, "w") as fh:
                    fh.write(key.hex() + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                os.link(tmp, path)
                dir_fd = os.open(path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
                log.info("created the token signing key %s", path)
                return key
            except FileExistsError:
                pass  # another start made it first: use that one
            finally:
                os.unlink(tmp)
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("%s was mode %o; setting 0600", path, mode)
            os.chmod(path, 0o600)
        try:
            key = bytes.fromhex(path.read_text().strip())
        except ValueError:
            raise RuntimeError(f"{path} does not hold a hex key; remove it to make a new one") from None
        if len(key) < 32:
            raise RuntimeError(f"{path} holds a key shorter than 256 bits; remove it to make a new one")
        return key

    def describe(self) -> dict[str, Any]:
        """The mode in force and why, for /health and llmctl."""
        return {"enabled": self.enabled, "mode": self.config.auth.mode, "reason": self.reason,
                "failed_attempts": self.failures.total}

    def whoami(self) -> tuple[dict[str, Any], Principal | None]:
        """The mode in force, and the principal of the request in progress."""
        return self.describe(), self.current.get()

    # -- the request in progress ---------------------------------------------
    def check_model(self, model: Any) -> None:
        """403 if the request in progress comes from a principal limited to other models."""
        principal = self.current.get()
        if principal is not None and not principal.allows_model(model):
            raise AuthorizationError(f"this credential may not use model '{model.name}'", field="model",
                                     details={"model": model.name})

    # -- API keys -------------------------------------------------------------
    async def create_key(self, name: str, scope: str, models: list[str] | None = None,
                         expires_in_s: float | None = None) -> tuple[dict[str, Any], str]:
        """A new key: its row and the key itself, which is never shown again."""
        _check_name(name, "name")
        _check_scope(scope)
        if models is not None:
            models = [m.strip() for m in models if m.strip()]
            if not models:
                raise ValidationError("models must name at least one model (or be left out)", field="models")
        if expires_in_s is not None and expires_in_s <= 0:
            raise ValidationError("expires_in_s must be positive", field="expires_in_s")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        row = await self.repo.add_key(
            name=name, prefix=secret[:12], key_hash=hash_key(secret), scope=scope, models=models,
            expires_at=time.time() + expires_in_s if expires_in_s else None)
        log.info("API key %s (id %d, scope %s) created", name, row["id"], scope)
        return row, secret

    async def list_keys(self, include_revoked: bool = False) -> list[dict[str, Any]]:
        """Keys (never their secrets)."""
        return await self.repo.list_keys(include_revoked=include_revoked)

    async def revoke_key(self, ref: str) -> dict[str, Any]:
        """Revoke a key by id or name; 404 if no key in force has it."""
        row = await self.repo.revoke_key(ref)
        if row is None:
            raise NotFoundError(f"no API key in force has the id or name '{ref}'", field="key")
        log.info("API key %s (id %d) revoked", row["name"], row["id"])
        return row

    # -- users ------------------------------------------------------------------
    async def add_user(self, username: str, password: str, scope: str = "admin") -> dict[str, Any]:
        """A new user; the password is hashed with argon2id off the event loop."""
        _check_name(username, "username")
        _check_scope(scope)
        if len(password or "") < 8:
            raise ValidationError("password must be at least 8 characters", field="password")
        if len(password) > 1024:
            raise ValidationError("password must be at most 1024 characters", field="password")
        hashed = await asyncio.to_thread(self._hasher.hash, password)
        row = await self.repo.add_user(username, hashed, scope)
        log.info("user %s (scope %s) added", username, scope)
        return _public_user(row)

    async def list_users(self) -> list[dict[str, Any]]:
        """Users without password hashes."""
        return await self.repo.list_users()

    async def remove_user(self, username: str) -> None:
        """Delete a user; their tokens stop working at once. 404 if there is none."""
        if not await self.repo.remove_user(username):
            raise NotFoundError(f"no user named '{username}'", field="username")
        log.info("user %s removed", username)

    async def _verify_password(self, stored: str | None, password: str) -> bool:
        if stored is None:
            # Unknown user: spend the same time as a real check, so timing does not tell names apart.
            if self._dummy_hash is None:
                self._dummy_hash = await asyncio.to_thread(self._hasher.hash, secrets.token_hex(16))
            stored = self._dummy_hash
        try:
            return await asyncio.to_thread(self._hasher.verify, stored, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    async def login(self, username: str, password: str, address: str | None) -> dict[str, Any]:
        """A bearer token for a right password; a 401, slowed down per source ``address``, otherwise."""
        source = self.credential_source(address)
        user = await self.repo.get_user(username)
        ok = await self._verify_password(user["password_hash"] if user else None, password)
        if not ok or user is None:
            await self._failed(source, f"login as '{username}' failed: wrong username or password")
            raise AuthenticationError("wrong username or password")
        if self._hasher.check_needs_rehash(user["password_hash"]):
            await self.repo.set_password_hash(
                username, await asyncio.to_thread(self._hasher.hash, password))
        await self.repo.touch_user(username, time.time())
        ttl = self.config.auth.token_ttl_s
        return {"access_token": await self.issue_token(username, user["scope"], ttl),
                "token_type": "bearer", "expires_in": ttl}

    async def issue_token(self, username: str, scope: str, ttl_s: float) -> str:
        """A signed JWT for ``username`` that expires in ``ttl_s`` seconds (negative: already expired)."""
        now = int(time.time())
        claims = {"sub": username, "scope": scope, "iss": JWT_ISSUER, "iat": now, "exp": now + int(ttl_s),
                  "jti": secrets.token_hex(8)}
        return jwt.encode(claims, await self.signing_key(), algorithm="HS256")

    # -- verification ------------------------------------------------------------
    async def _failed(self, source: str, what: str) -> None:
        delay = self.failures.fail(source)
        log.warning("auth: %s (from %s; %d recent failures, answering in %.1f s)",
                    what, source, self.failures.count(source), delay)
        if delay > 0:
            await asyncio.sleep(delay)

    async def authenticate(self, credential: str, source: str) -> Principal:
        """The principal ``credential`` (an API key or a JWT) proves; a slowed-down 401 otherwise."""
        try:
            if credential.startswith(KEY_PREFIX):
                return await self._from_key(credential)
            if credential.count(".") == 2:
                return await self._from_token(credential)
            raise AuthenticationError("the credential is neither an llmd API key nor a token")
        except AuthenticationError as err:
            # The secret itself is never logged: only its kind and the reason.
            kind = "API key" if credential.startswith(KEY_PREFIX) else "token"
            await self._failed(source, f"{kind} refused: {err.message}")
            raise

    async def _from_key(self, key: str) -> Principal:
        row = await self.repo.key_by_hash(hash_key(key))
        if row is None:
            raise AuthenticationError("invalid API key")
        if row["revoked_at"] is not None:
            raise AuthenticationError("this API key has been revoked")
        now = time.time()
        if row["expires_at"] is not None and row["expires_at"] <= now:
            raise AuthenticationError("this API key has expired")
        # last_used_at is written at most once a minute per key: no write per request.
        if now - self._touched.get(row["id"], 0.0) > 60:
            self._touched[row["id"]] = now
            await self.repo.touch_key(row["id"], now)
        models = tuple(row["models"]) if row["models"] is not None else None
        return Principal("key", row["name"], row["scope"], models, key_id=row["id"])

    async def _from_token(self, token: str) -> Principal:
        try:
            claims = jwt.decode(token, await self.signing_key(), algorithms=["HS256"], issuer=JWT_ISSUER,
                                options={"require": ["exp", "iat", "sub"]})
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("the token has expired") from None
        except jwt.PyJWTError:
            raise AuthenticationError("invalid token") from None
        user = await self.repo.get_user(str(claims["sub"]))
        if user is None:
            raise AuthenticationError("the token's user no longer exists")
        return Principal("user", user["username"], user["scope"])

    def credential_source(self, address: str | None) -> str:
        """The name failures are counted under."""
        return address or "unix-socket"

    def metrics_public(self, address: str | None) -> bool:
        """Whether /metrics needs no credentials for a client at ``address`` (None: the Unix socket)."""
        mode = self.config.auth.public_metrics.lower()
        if mode == "on":
            return True
        if mode == "off":
            return False
        return address is None or is_loopback(address)


def _public_user(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "password_hash"}
