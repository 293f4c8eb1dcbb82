"""SQL for API keys, users and the JWT signing secret's metadata."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmd.store.db import Store


class AuthRepo:
    """Rows of API keys, users and the JWT signing secret's metadata."""

    def __init__(self, store: "Store") -> None:
        self.store = store
