"""SQL for the hub catalogue cache and favourites."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmd.store.db import Store


class HubRepo:
    """Rows of the hub catalogue cache and favourites."""

    def __init__(self, store: "Store") -> None:
        self.store = store
