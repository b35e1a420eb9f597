"""A bounded FIFO between the BLE callbacks (producers) and the broker connection (consumer)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class BoundedBuffer(Generic[T]):
    """FIFO of at most `capacity` items; when full, the oldest item is dropped and counted.

    Live sensor data loses value with age: during a long outage we keep the newest.
    `put` never blocks, so a BLE notification callback can always hand its reading over.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"buffer capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._ready = asyncio.Event()
        self.dropped = 0
        self.high_water = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> bool:
        """Append `item`; False when the buffer was full and its oldest item was dropped."""
        kept = True
        if len(self._items) >= self.capacity:
            self._items.popleft()
            self.dropped += 1
            kept = False
        self._items.append(item)
        self.high_water = max(self.high_water, len(self._items))
        self._ready.set()
        return kept

    def put_back(self, item: T) -> bool:
        """Return an item taken by `get` that could not be delivered, ahead of the rest.

        When newer items filled the buffer meanwhile, the returned item is the oldest: it is
        the one dropped (and counted). Returns whether it was kept.
        """
        if len(self._items) >= self.capacity:
            self.dropped += 1
            return False
        self._items.appendleft(item)
        self._ready.set()
        return True

    def get_nowait(self) -> T | None:
        """The oldest item, or None when empty."""
        if not self._items:
            self._ready.clear()
            return None
        return self._items.popleft()

    async def get(self) -> T:
        """The oldest item, waiting for one."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()
