"""Admin routes for API keys and users (``llmctl keys``, ``llmctl users``) and the auth state."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field
from quart import jsonify

from llmd.core import Core
from llmd.http.body import parse_body, parse_query
from llmd.http.fields import StrictModel
from llmd.http.routing import Dialect

Scope = Literal["inference", "admin"]
TEN_YEARS_S = 10 * 366 * 86400


class CreateKeyBody(StrictModel):
    """``POST /llmd/v1/keys``: a new API key; the answer carries the key itself, once."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$",
                      description="a unique name among the keys in force: letters, digits, '.', '_', '@' or '-', "
                                  "starting with a letter or digit")
    scope: Scope = Field(description="inference: generate/chat/completions/embeddings and model listing; "
                                     "admin: everything")
    models: Optional[list[str]] = Field(default=None, min_length=1, max_length=100,
                                        description="the only models the key may use (names or aliases); "
                                                    "left out: every model")
    expires_in_s: Optional[int] = Field(default=None, ge=1, le=TEN_YEARS_S,
                                        description="seconds until the key expires; left out: never")


class KeysQuery(StrictModel):
    """``GET /llmd/v1/keys``."""

    include_revoked: bool = Field(default=False, description="list revoked keys too")


class CreateUserBody(StrictModel):
    """``POST /llmd/v1/users``: a user who gets tokens from ``POST /api/auth/token``."""

    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$",
                          description="letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
    password: str = Field(min_length=8, max_length=1024, description="at least 8 characters")
    scope: Scope = "admin"


def register(d: Dialect, core: Core) -> None:
    """Declare the key, user and auth-state routes on the admin dialect."""
    auth = core.auth

    @d.route("/llmd/v1/auth", summary="Auth mode and the caller's identity", auth="inference")
    async def whoami() -> Any:
        """The mode in force and why, and who the credential of this request is."""
        mode, principal = auth.whoami()
        return jsonify({"auth": mode, "principal": principal.describe() if principal else None})

    @d.route("/llmd/v1/keys", summary="List API keys", query=KeysQuery, auth="admin")
    async def list_keys() -> Any:
        """Keys in force (with ``include_revoked``, revoked ones too); never the keys themselves."""
        q = parse_query(KeysQuery)
        return jsonify({"keys": await auth.list_keys(q.include_revoked)})

    @d.route("/llmd/v1/keys", ("POST",), summary="Create an API key", body=CreateKeyBody, auth="admin")
    async def create_key() -> Any:
        """201 with ``key`` (its record) and ``secret`` (the key, shown only now)."""
        body = await parse_body(CreateKeyBody)
        row, secret = await auth.create_key(body.name, body.scope, body.models, body.expires_in_s)
        return jsonify({"key": row, "secret": secret}), 201

    @d.route("/llmd/v1/keys/<key_ref>", ("DELETE",), summary="Revoke an API key", auth="admin")
    async def revoke_key(key_ref: str) -> Any:
        """Revoke by id or name; requests with the key get a 401 from now on."""
        return jsonify({"key": await auth.revoke_key(key_ref)})

    @d.route("/llmd/v1/users", summary="List users", auth="admin")
    async def list_users() -> Any:
        """Users and their scopes; never the password hashes."""
        return jsonify({"users": await auth.list_users()})

    @d.route("/llmd/v1/users", ("POST",), summary="Add a user", body=CreateUserBody, auth="admin")
    async def add_user() -> Any:
        """201 with the user; the password is stored as an argon2id hash."""
        body = await parse_body(CreateUserBody)
        return jsonify({"user": await auth.add_user(body.username, body.password, body.scope)}), 201

    @d.route("/llmd/v1/users/<username>", ("DELETE",), summary="Remove a user", auth="admin")
    async def remove_user(username: str) -> Any:
        """The user's tokens stop working at once."""
        await auth.remove_user(username)
        return jsonify({"removed": username})
