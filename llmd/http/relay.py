"""Forwarding a feed to a WebSocket until the client goes: shared by every WebSocket that pushes events."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Awaitable, Callable, TypeVar

T = TypeVar("T")


async def until_closed(next_item: Callable[[], Awaitable[T]], reader: asyncio.Task) -> AsyncIterator[T]:
    """Each ``await next_item()`` in turn, until ``reader`` (the task reading the client's messages) ends,
    which it does when the socket closes; the item being waited for then is dropped."""
    while not reader.done():
        getter = asyncio.ensure_future(next_item())
        done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            getter.cancel()
            await asyncio.gather(getter, return_exceptions=True)
            return
        yield getter.result()
