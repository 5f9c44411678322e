"""One event loop per process, on a background thread, for the API backends' concurrent requests.

``LLM.complete`` is synchronous (``datasets.map`` calls it once per batch), so the requests of a batch are
run as coroutines on a loop that this module owns: a daemon thread started on first use in each process.
It works where the caller already runs a loop (Jupyter), since it never touches the caller's loop, and
under ``num_proc``: after a fork the child sees a new process id and starts its own thread and loop
(the parent's thread does not survive a fork). Clients bound to a loop (aiohttp sessions) are kept per
loop with :func:`loop_local`.

Example:
    >>> import asyncio
    >>> async def add(a, b):
    ...     await asyncio.sleep(0)
    ...     return a + b
    >>> run(add(1, 2))
    3
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import itertools
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_state: dict[str, Any] = {"pid": None, "loop": None, "calls": set()}
"""This process's loop, and its calls from :func:`run` not yet returned (what :func:`settle` waits for)."""


def background_loop() -> asyncio.AbstractEventLoop:
    """This process's background loop, started on first use (and again in a forked child)."""
    pid = os.getpid()
    if _state["pid"] == pid:
        return _state["loop"]
    with _lock:
        if _state["pid"] != pid:
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=serve, name="mapgen-event-loop", daemon=True).start()
            ready.wait()
            # A forked child keeps the parent's loop object referenced, unused: collecting it would
            # touch the epoll instance the child shares with the parent.
            _state.setdefault("inherited", []).append(_state["loop"])
            _state["calls"] = set()  # the parent's calls are not this process's
            _state["loop"], _state["pid"] = loop, pid
    return _state["loop"]


INTERRUPT_GRACE = 30.0
"""After Ctrl-C, how long requests already in flight may take to land (and be stored) before the run
gives up on them; a second Ctrl-C stops waiting at once."""

_interrupts = [0]
"""How many interrupts this process has seen: a run is interrupted when one came after it began."""

_stopped = [False]
"""Whether this process stopped sending for good (:func:`stop`): every run is interrupted."""


_runs = itertools.count()


class _Run:
    """What the calls of one run share: the interrupt count when it began, its place among runs (earlier
    runs are served first: :mod:`mapgen.llms._window`), and the errors that stop it."""

    __slots__ = ("began", "futures", "order", "stopped")

    def __init__(self) -> None:
        self.began = _interrupts[0]
        self.order = next(_runs)
        self.stopped: list[BaseException] = []
        """Errors that every request of the run would get alike (a rejected key, :mod:`mapgen.llms._api`):
        once there is one, the run's requests still queued are not sent, whichever call queued them."""
        self.futures: set[concurrent.futures.Future[Any]] = set()
        """The run's calls still on the loop, from every thread that takes part (:func:`abandon`)."""


_run: contextvars.ContextVar[_Run | None] = contextvars.ContextVar("mapgen_run", default=None)
"""The current run (begun by :func:`run`, or by :func:`begin` for a batch that is sent from more than one
thread: ``datasets``' async map, a batch whose first rows go ahead); requests read it through
:func:`interrupted` and :func:`stopping_errors`."""


def begin() -> None:
    """Mark the current context's run as beginning now, unless it already has (``fn.acall`` marks its
    batch before handing it to a thread, so that an interrupt in between still stops it; every
    :func:`run` from this context, on any thread that copies it, is then part of the one run)."""
    if _run.get() is None:
        _run.set(_Run())


def abandon() -> None:
    """Give up the current run's calls still on the loop, from whichever thread made them: their callers
    get ``CancelledError``. For a run whose other threads will not see the interrupt (only the main thread
    gets Ctrl-C), once its grace is over or a second Ctrl-C cut it short."""
    current = _run.get()
    for future in list(current.futures if current is not None else ()):
        future.cancel()


def run_order() -> int:
    """The current run's place among this process's runs (0, 1, ...): its priority for a free slot."""
    current = _run.get()
    return current.order if current is not None else next(_runs)


def stopping_errors() -> list[BaseException]:
    """The current run's list of errors that stop it (a fresh list outside a run), shared by its calls."""
    current = _run.get()
    return current.stopped if current is not None else []


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on the background loop and wait for its result, from any thread but that loop's.

    On ``KeyboardInterrupt`` (Ctrl-C, in a script or a notebook) nothing more is sent: requests still
    queued fail at once (:func:`interrupted`), those in flight may land for up to
    :data:`INTERRUPT_GRACE` seconds (their answers are stored), then the interrupt is raised again. A run
    that begins afterwards (a notebook's next cell) sends as usual.
    """
    loop = background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coroutine.close()
        raise RuntimeError("mapgen's run() was called from its own event loop; await the coroutine instead.")
    current = _run.get() or _Run()
    calls: set[concurrent.futures.Future[Any]] = _state["calls"]
    future = asyncio.run_coroutine_threadsafe(_in_run(coroutine, current), loop)
    current.futures.add(future)
    calls.add(future)
    try:
        return future.result()
    except KeyboardInterrupt:
        interrupt()
        try:
            future.result(timeout=INTERRUPT_GRACE)
        except BaseException:  # the run is over either way: the interrupt is what the caller hears
            future.cancel()
        raise
    finally:
        current.futures.discard(future)
        calls.discard(future)
        if _stopped[0]:
            threading.Event().wait()  # the process is exiting (stop()): return nothing cut short to it


async def _in_run(coroutine: Coroutine[Any, Any, T], current: _Run) -> T:
    _run.set(current)  # the tasks the coroutine starts copy this context
    return await coroutine


def interrupt() -> None:
    """Stop sending: requests of runs begun before now that are still queued fail with kind
    ``interrupted``, and retry waits end now."""
    _interrupts[0] += 1
    for sleeper in list(_sleepers):
        sleeper.get_loop().call_soon_threadsafe(_wake, sleeper)


def interrupted() -> bool:
    """Whether the current run was interrupted: checked before each request is sent."""
    current = _run.get()
    return current is not None and (_stopped[0] or _interrupts[0] != current.began)


def stop() -> None:
    """Stop sending for good, before this process exits (a ``num_proc`` worker that its pool ends): as
    :func:`interrupt`, and every run, begun now or later, is interrupted. A call to :func:`run` then never
    returns (the exit ends it), so that no batch cut short reaches its caller (``datasets`` would write it
    to its cache): :func:`settle` says when the answers in flight have landed."""
    _stopped[0] = True
    interrupt()


def settle(timeout: float) -> None:
    """Wait up to ``timeout`` seconds until this process's calls on the loop are over: after :func:`stop`,
    its answers in flight have landed and were handed to ``on_complete`` (the response store)."""
    if _state["pid"] != os.getpid():
        return  # no loop in this process: nothing in flight
    deadline = time.monotonic() + timeout
    while True:
        pending = [call for call in list(_state["calls"]) if not call.done()]
        left = deadline - time.monotonic()
        if not pending or left <= 0:
            return
        concurrent.futures.wait(pending, timeout=left)


_sleepers: set[asyncio.Future[None]] = set()


def _wake(sleeper: asyncio.Future[None]) -> None:
    if not sleeper.done():
        sleeper.set_result(None)


async def pause(seconds: float) -> None:
    """``asyncio.sleep`` that an interrupt ends early (a retry's wait, a rate limit's)."""
    if seconds <= 0 or interrupted():
        return
    waker = asyncio.get_running_loop().create_future()
    _sleepers.add(waker)
    try:
        await asyncio.wait_for(waker, timeout=seconds)
    except asyncio.TimeoutError:
        pass
    finally:
        _sleepers.discard(waker)


def loop_local(owner: dict[Any, Any], factory: Callable[[], T]) -> T:
    """``owner[loop]``, built by ``factory()`` on first use on the running loop.

    aiohttp sessions, semaphores and locks belong to one loop; the sync path runs on the background loop
    and the async path on the caller's (``datasets``' own loop), so each loop gets its own.
    """
    loop = asyncio.get_running_loop()
    value = owner.get(loop)
    if value is None:
        for old in [key for key in owner if key.is_closed()]:
            del owner[old]
        value = owner[loop] = factory()
    return value


async def gather(awaitables: list[Awaitable[T]]) -> list[T]:
    """``asyncio.gather`` that cancels the rest when one raises (they are not expected to)."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
