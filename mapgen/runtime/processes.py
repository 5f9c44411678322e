"""Whether a process recorded earlier still runs: its pid, and the time it started, so a reused pid does
not pass for the process that held it.

Linux reads both from ``/proc/<pid>/stat`` (the start time is field 22, in clock ticks since boot). Other
POSIX systems only check that the pid exists; where even that is unknown (Windows), only this process
counts as running, so that a caller waiting on a dead process never waits forever.

Example:
    >>> import os
    >>> is_running(os.getpid(), process_start(os.getpid()))
    True
"""

from __future__ import annotations

import os
from pathlib import Path

_PROC = Path("/proc")
_HAS_PROC = (_PROC / "self" / "stat").exists()


def _stat(pid: int) -> tuple[str, int] | None:
    """State and start time of ``pid`` from ``/proc``; ``None`` when there is no such process."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # Field 2, the command name, is in parentheses and may hold spaces or ")": split after the last one.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])  # fields 3 (state) and 22 (start time)


def process_start(pid: int) -> int | None:
    """The start time of ``pid`` (Linux: clock ticks since boot), ``None`` where it cannot be known."""
    stat = _stat(pid) if _HAS_PROC else None
    return stat[1] if stat is not None else None


def is_running(pid: int, started: int | None) -> bool:
    """Whether process ``pid``, started at ``started`` (from :func:`process_start`), still runs.

    A zombie (killed, not yet reaped by its parent) does not run.

    Example:
        >>> import subprocess, sys
        >>> child = subprocess.Popen([sys.executable, "-c", "pass"])
        >>> _ = child.wait()
        >>> is_running(child.pid, process_start(child.pid))
        False
    """
    if _HAS_PROC:
        stat = _stat(pid)
        return stat is not None and stat[0] not in ("Z", "X") and stat[1] == started
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return False  # os.kill(pid, 0) would terminate it on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    return True
