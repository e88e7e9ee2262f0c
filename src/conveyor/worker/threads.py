"""The threads that run plain ``def`` handlers: a pool that replaces a thread it abandons.

A thread cannot be killed. When a handler runs past its timeout the worker abandons its
thread (:meth:`HandlerThreads.abandon`): the thread no longer counts towards the pool's
size, so the next job gets a fresh thread and the worker keeps its concurrency. An
abandoned thread that finally returns ends; :attr:`HandlerThreads.abandoned` counts those
still running. ``ThreadPoolExecutor`` cannot do this: its size is fixed.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")


class _Item:
    __slots__ = ("abandoned", "args", "function", "future", "kwargs")

    def __init__(
        self, future: Future[Any], function: Callable[..., Any], args: Any, kwargs: Any
    ) -> None:
        self.future = future
        self.function = function
        self.args = args
        self.kwargs = kwargs
        self.abandoned = False

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = self.function(*self.args, **self.kwargs)
        except BaseException as exc:
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)


class HandlerThreads(Executor):
    """Up to ``size`` threads at work (started on demand), plus the abandoned ones."""

    def __init__(self, size: int, name_prefix: str = "conveyor-job") -> None:
        self.size = size
        self._name_prefix = name_prefix
        self._lock = threading.Lock()
        self._work: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._items: dict[Future[Any], _Item] = {}
        self._threads = 0  # live threads that are not abandoned
        self._idle = 0  # of those, waiting for work that nobody has claimed yet
        self._backlog = 0  # items submitted that no thread has claimed yet
        self._abandoned = 0
        self._shutdown = False
        self._numbers = itertools.count()
        self._live: set[threading.Thread] = set()
        self._running: dict[threading.Thread, _Item] = {}

    @property
    def abandoned(self) -> int:
        """Abandoned threads still running their handler."""
        return self._abandoned

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        future: Future[_T] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot run a handler after the thread pool was shut down")
            item = _Item(future, fn, args, kwargs)
            self._items[future] = item
            self._work.put(item)
            if self._idle:
                self._idle -= 1
            elif self._threads < self.size:
                self._start_thread()
            else:
                self._backlog += 1
        return future

    def abandon(self, future: Future[Any]) -> bool:
        """Give up on the thread running ``future``'s handler: it no longer counts towards
        the pool's size. False if the handler already returned (or had not started)."""
        with self._lock:
            item = self._items.get(future)
            if item is None or item.abandoned or not future.running():
                return False
            item.abandoned = True
            self._abandoned += 1
            self._threads -= 1
            if self._backlog and not self._shutdown:
                self._backlog -= 1
                self._start_thread()
        return True

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the threads once they are idle (never waits for abandoned ones)."""
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                for item in list(self._items.values()):
                    if item.future.cancel():
                        del self._items[item.future]
            for _ in range(self._threads):
                self._work.put(None)
        if wait:
            with self._lock:
                busy = {thread: item.abandoned for thread, item in self._running.items()}
                threads = [t for t in self._live if not busy.get(t, False)]
            for thread in threads:
                thread.join()

    def _start_thread(self) -> None:
        self._threads += 1
        name = f"{self._name_prefix}_{next(self._numbers)}"
        # A daemon: an abandoned thread must not hold the interpreter's exit.
        thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._live.add(thread)
        thread.start()

    def _serve(self) -> None:
        me = threading.current_thread()
        try:
            self._serve_items(me)
        finally:
            with self._lock:
                self._live.discard(me)

    def _serve_items(self, me: threading.Thread) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            with self._lock:
                self._running[me] = item
            item.run()
            with self._lock:
                del self._running[me]
                self._items.pop(item.future, None)
                if item.abandoned:
                    self._abandoned -= 1
                    if not self._backlog or self._shutdown or self._threads >= self.size:
                        return  # replaced already: this thread is one too many
                    self._threads += 1
                    self._backlog -= 1
                elif self._backlog:
                    self._backlog -= 1
                else:
                    self._idle += 1
            del item
