"""Counts a worker's free concurrency slots and lets fetchers wait for enough of them."""

from __future__ import annotations

import asyncio


class Slots:
    """``total`` slots; :meth:`take` waits until a useful number of them is free."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        self._changed = asyncio.Event()

    async def take(self, most: int, least: int) -> int:
        """Take between ``least`` and ``most`` free slots (or all of them when idle)."""
        least = max(1, min(least, most, self.total))
        while self.free < least:
            self._changed.clear()
            await self._changed.wait()
        count = min(most, self.free)
        self.free -= count
        return count

    def give(self, count: int = 1) -> None:
        """Return slots."""
        if count:
            self.free += count
            self._changed.set()

    async def all_free(self) -> None:
        """Wait until no slot is in use."""
        while self.free < self.total:
            self._changed.clear()
            await self._changed.wait()
