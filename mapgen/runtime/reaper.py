"""Engine processes never outlive the process that started them.

vLLM runs its engine in child processes of its own (``EngineCore`` and its workers). They end when the
process that built the engine exits normally, but not when it is killed, nor when a ``num_proc`` worker
ends itself with ``os._exit`` (its pool ended it, or its parent died): then they keep their memory, and a
GPU, until someone kills them by hand. :func:`reaped_with_owner` wraps the building of an engine: a small
watcher process records every process started under its owner while the engine is built, then waits for
the owner to end, however it ends (also halfway through the build, when a worker is killed while its
engine loads), and stops those processes and theirs: SIGTERM, and SIGKILL after :data:`GRACE` seconds.
The watcher ends by itself once they are gone.

The watcher runs this file as a script, ``python -E -s reaper.py OWNER_PID OWNER_START ...``, with nothing
imported beyond the standard library and :mod:`mapgen.runtime.processes` (start times from its
:func:`~mapgen.runtime.processes.process_start`, so that a reused pid is never killed). ``PID ...`` are the
owner's children from before the block, which are not the block's. At the block's end the owner writes the
block's processes on the watcher's stdin, as ``PID:START`` pairs.

Example:
    >>> import os
    >>> os.getpid() in children_of(os.getppid())
    True
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

if __package__:
    from mapgen.runtime.processes import is_running, process_start
else:  # the watcher runs this file as a script: importing the mapgen package would cost 100 MB and a second
    from processes import is_running, process_start  # type: ignore[import-not-found,no-redef]

POLL_INTERVAL = 0.25
"""Seconds between the watcher's checks that the owner still runs (and, during a build, of its children)."""
GRACE = 5.0
"""Seconds a child has to end after SIGTERM before SIGKILL."""


def children_of(*pids: int) -> set[int]:
    """Every live process under ``pids`` (children, their children...), on Linux; empty elsewhere."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found: set[int] = set()
    frontier = set(pids)
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _pairs(pids: Iterable[int]) -> list[str]:
    """``PID:START`` for each of ``pids`` still running (a start time tells a reused pid apart)."""
    started = {pid: process_start(pid) for pid in pids}
    return [f"{pid}:{start}" for pid, start in started.items() if start is not None]


@contextlib.contextmanager
def reaped_with_owner() -> Iterator[None]:
    """Every process started under this one inside the block is stopped once this process ends.

    The watcher starts before the block, so a process killed inside it (an engine still loading) leaves
    nothing behind either. Processes started by other threads during the block count as the block's.
    """
    owner = os.getpid()
    owner_start = process_start(owner)
    if owner_start is None:  # no /proc to follow processes in
        yield
        return
    before = children_of(owner)
    watcher = subprocess.Popen(
        [sys.executable, "-E", "-s", __file__, str(owner), str(owner_start), *map(str, before)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the Ctrl-C that ends its owner's process group leaves it to do its job
    )
    try:
        yield
    finally:
        started = children_of(owner) - before - {watcher.pid}
        with contextlib.suppress(OSError):  # the watcher is gone: nothing of ours to stop
            assert watcher.stdin is not None
            watcher.stdin.write((" ".join(_pairs(started)) + "\n").encode())
            watcher.stdin.close()


def _follow(owner: int, owner_start: int, ignored: set[int]) -> dict[int, int]:
    """The owner's new descendants, recorded until it writes the final ``PID:START`` pairs on stdin (they
    replace what was recorded) or it ends (what was recorded is all there is)."""
    seen: dict[int, int] = {}
    while is_running(owner, owner_start):
        for pid in children_of(owner) - ignored - seen.keys():
            start = process_start(pid)
            if start is not None:
                seen[pid] = start
        if select.select([sys.stdin], [], [], POLL_INTERVAL)[0]:
            line = sys.stdin.readline()
            return _parse(line.split()) if line else seen
    return seen


def _parse(pairs: list[str]) -> dict[int, int]:
    return {int(pid): int(start) for pid, start in (pair.split(":") for pair in pairs)}


def _stop(children: dict[int, int]) -> None:
    alive = {pid: start for pid, start in children.items() if is_running(pid, start)}
    # A process seen while it was being built may have started its own since (vLLM's EngineCore its
    # workers): now that the owner is gone they are children of those, not of the owner.
    for pid in children_of(*alive) - alive.keys():
        start = process_start(pid)
        if start is not None:
            alive[pid] = start
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + GRACE
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = {pid: start for pid, start in alive.items() if is_running(pid, start)}
        if not alive:
            return


def main(argv: list[str]) -> None:
    owner, owner_start, *before = map(int, argv)
    children = _follow(owner, owner_start, {*before, os.getpid()})
    while is_running(owner, owner_start):
        if not any(is_running(pid, start) for pid, start in children.items()):
            return  # the engine was shut down in the ordinary way
        time.sleep(POLL_INTERVAL)
    _stop(children)


if __name__ == "__main__":
    main(sys.argv[1:])
