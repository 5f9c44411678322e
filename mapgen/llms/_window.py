"""The concurrency window of an API backend: at most ``max_concurrency`` requests in flight on one event
loop, a free slot going to the earliest run waiting for one.

Several runs share a loop's window: the batches that ``datasets``' async map keeps in flight, a batch's
first rows and the rest (:meth:`mapgen.mapping.map_function.MapFunction._process_overlapped`). Were slots
handed out first come, first served, as :class:`asyncio.Semaphore` does, every batch would advance at the same
pace and all would finish together at the end, their rows assembled and written while the window drains.
Served in the order the runs began, the first batch finishes first and is written while the next ones'
requests are in flight; progress moves steadily; a batch's own requests keep their order.

Example:
    >>> import asyncio
    >>> async def main():
    ...     window, order = Window(1), []
    ...     await window.acquire(priority=0)  # the one slot, taken
    ...     async def ask(priority):
    ...         await window.acquire(priority)
    ...         order.append(priority)
    ...         window.release()
    ...     waiting = [asyncio.ensure_future(ask(p)) for p in (3, 1, 2)]
    ...     await asyncio.sleep(0)
    ...     window.release()
    ...     await asyncio.gather(*waiting)
    ...     return order
    >>> asyncio.run(main())
    [1, 2, 3]
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from types import TracebackType


class Window:
    """A semaphore whose waiters are served lowest ``priority`` first (ties: first come, first served).

    Build it on the loop that uses it (:func:`mapgen.runtime.event_loop.loop_local`)."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    async def acquire(self, priority: int) -> None:
        """Take a slot, waiting behind the runs of lower ``priority`` (earlier runs) that wait."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._arrivals), handed))
        try:
            await handed
        except asyncio.CancelledError:
            if handed.done() and not handed.cancelled():
                self.release()  # the slot came as we were cancelled: pass it on
            raise

    def release(self) -> None:
        """Give the slot back: straight to the first waiter still waiting, else to the free ones."""
        while self._waiting:
            _, _, handed = heapq.heappop(self._waiting)
            if not handed.done():  # a waiter cancelled meanwhile is skipped
                handed.set_result(None)
                return
        self._free += 1

    def slot(self, priority: int) -> _Slot:
        """``async with window.slot(priority):`` holds one slot for the block."""
        return _Slot(self, priority)


class _Slot:
    def __init__(self, window: Window, priority: int) -> None:
        self.window = window
        self.priority = priority

    async def __aenter__(self) -> None:
        await self.window.acquire(self.priority)

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.window.release()
