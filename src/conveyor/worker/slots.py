"""Counts a worker's free concurrency slots and lets fetchers wait for enough of them."""

from __future__ import annotations

import asyncio


class Slots:
    """``total`` slots; :meth:`take` waits until a useful number of them is free."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        #: (how many free slots it waits for, its future), for each waiting caller.
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    async def take(self, most: int, least: int) -> int:
        """Take between ``least`` and ``most`` free slots."""
        least = max(1, min(least, most, self.total))
        while self.free < least:
            await self._wait_for(least)
        count = min(most, self.free)
        self.free -= count
        return count

    def give(self, count: int = 1) -> None:
        """Return slots, waking only the callers that now have what they wait for."""
        if count:
            self.free += count
            if self._waiters:
                for wanted, waiter in self._waiters:
                    if wanted <= self.free and not waiter.done():
                        waiter.set_result(None)

    async def all_free(self) -> None:
        """Wait until no slot is in use."""
        while self.free < self.total:
            await self._wait_for(self.total)

    async def _wait_for(self, wanted: int) -> None:
        entry = (wanted, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            await entry[1]
        finally:
            self._waiters.remove(entry)
