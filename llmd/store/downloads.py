"""SQL for download tasks: source, state, progress, the partial file."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmd.store.db import Store


class DownloadRepo:
    """Rows of download tasks: source, state, progress, the partial file."""

    def __init__(self, store: "Store") -> None:
        self.store = store
