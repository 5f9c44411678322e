"""Engine processes never outlive the process that started them.

vLLM runs its engine in child processes of its own (``EngineCore`` and its workers). They end when the
process that built the engine exits normally, but not when it is killed, nor when a ``num_proc`` worker
ends itself with ``os._exit`` (its pool ended it, or its parent died): then they keep their memory, and a
GPU, until someone kills them by hand. :func:`reap_with_owner` starts a small watcher process that waits
for the owner to end, however it ends, then stops the children it was given: SIGTERM, and SIGKILL after
:data:`GRACE` seconds. The watcher ends by itself once those children are gone.

The watcher runs this file as a script, ``python -E -s reaper.py OWNER_PID OWNER_START PID:START ...``, with
nothing imported beyond the standard library and :mod:`mapgen.runtime.processes` (start times from its
:func:`~mapgen.runtime.processes.process_start`, so that a reused pid is never killed).

Example:
    >>> import os
    >>> os.getpid() in children_of(os.getppid())
    True
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

if __package__:
    from mapgen.runtime.processes import is_running, process_start
else:  # the watcher runs this file as a script: importing the mapgen package would cost 100 MB and a second
    from processes import is_running, process_start  # type: ignore[import-not-found,no-redef]

POLL_INTERVAL = 0.25
"""Seconds between the watcher's checks that the owner still runs."""
GRACE = 5.0
"""Seconds a child has to end after SIGTERM before SIGKILL."""


def children_of(pid: int) -> set[int]:
    """Every live process under ``pid`` (children, their children...), on Linux; empty elsewhere."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def reap_with_owner(children: set[int], owner: int | None = None) -> subprocess.Popen | None:
    """Stop ``children`` once ``owner`` (this process by default) has ended, however it ends.

    Returns the watcher process, or ``None`` when there is nothing to watch. The watcher is in a session
    of its own, so the Ctrl-C that ends its owner's process group leaves it to do its job.
    """
    owner = os.getpid() if owner is None else owner
    started = {pid: process_start(pid) for pid in children}
    watched = [f"{pid}:{start}" for pid, start in started.items() if start is not None]
    if not watched:
        return None
    command = [sys.executable, "-E", "-s", __file__, str(owner), str(process_start(owner)), *watched]
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop(children: dict[int, int]) -> None:
    alive = {pid: start for pid, start in children.items() if is_running(pid, start)}
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
    owner, owner_start = int(argv[0]), int(argv[1])
    children = {int(pid): int(start) for pid, start in (item.split(":") for item in argv[2:])}
    while is_running(owner, owner_start):
        if not any(is_running(pid, start) for pid, start in children.items()):
            return  # the engine was shut down in the ordinary way
        time.sleep(POLL_INTERVAL)
    _stop(children)


if __name__ == "__main__":
    main(sys.argv[1:])
