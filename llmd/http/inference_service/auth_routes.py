"""LLM Inference Service API routes: ``POST /api/auth/token`` (username and password for a bearer token)."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from quart import jsonify, request

from llmd.core import Core
from llmd.http.body import parse_body
from llmd.http.fields import StrictModel
from llmd.http.routing import Dialect


class TokenRequest(StrictModel):
    """``POST /api/auth/token``: a user's name and password."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class TokenResponse(StrictModel):
    """The token answer; send ``Authorization: Bearer <access_token>`` afterwards."""

    access_token: str
    token_type: str = Field(description='always "bearer"')
    expires_in: int = Field(description="seconds until the token expires (auth.token_ttl_s)")


def register(d: Dialect, core: Core) -> None:
    """Declare this module's routes on the ops dialect."""

    @d.route("/api/auth/token", ("POST",), summary="Get an API token", body=TokenRequest, response=TokenResponse,
             auth="public")
    async def token() -> Any:
        """A JWT for a user made with ``llmctl users add``; a wrong password is a 401 (slowed down per source)."""
        body = await parse_body(TokenRequest)
        client = request.scope.get("client")
        return jsonify(await core.auth.login(body.username, body.password, client[0] if client else None))
