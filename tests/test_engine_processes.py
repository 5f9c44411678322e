"""Engine processes end with their owner (mapgen.runtime.reaper), and a script that a spawned engine
would run again is refused before the engine starts (mapgen.runtime.spawn). Real processes throughout."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

from mapgen.runtime.processes import is_running, process_start
from mapgen.runtime.reaper import children_of, reap_with_owner

OWNER = (
    "import subprocess, time; subprocess.Popen(['sleep', '300']); print('ready', flush=True); time.sleep(300)"
)


def start_owner() -> tuple[subprocess.Popen, set[int]]:
    """A process with a child of its own (as a worker with its engine)."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    assert owner.stdout.readline().strip() == "ready"
    children = children_of(owner.pid)
    assert len(children) == 1
    return owner, children


def alive(pids: set[int], started: dict[int, int | None]) -> set[int]:
    return {pid for pid in pids if is_running(pid, started[pid])}


def test_children_end_when_their_owner_is_killed():
    owner, children = start_owner()
    started = {pid: process_start(pid) for pid in children}
    watcher = reap_with_owner(children, owner=owner.pid)
    assert watcher is not None
    time.sleep(0.5)
    assert alive(children, started) == children  # nothing happens while the owner runs
    owner.kill()  # as kill -9: no atexit, no finaliser
    owner.wait()
    assert watcher.wait(timeout=10) == 0
    assert alive(children, started) == set()


def test_the_watcher_leaves_when_the_children_end_first():
    owner, children = start_owner()
    watcher = reap_with_owner(children, owner=owner.pid)
    for pid in children:
        os.kill(pid, 9)  # the engine shut down in the ordinary way
    try:
        assert watcher.wait(timeout=10) == 0
        assert owner.poll() is None  # the owner is left alone
    finally:
        owner.kill()
        owner.wait()


def test_a_reused_pid_is_not_killed():
    owner, children = start_owner()
    [child] = children
    # Recorded with another start time: the process now at that pid is not the one that was given.
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mapgen.runtime.reaper",
            str(owner.pid),
            str(process_start(owner.pid)),
            f"{child}:{process_start(child) + 1}",
        ]
    )
    owner.kill()
    owner.wait()
    try:
        assert watcher.wait(timeout=10) == 0
        assert is_running(child, process_start(child))
    finally:
        os.kill(child, 9)


def run_script(tmp_path, body: str) -> str:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body).lstrip())
    done = subprocess.run([sys.executable, script], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_an_unguarded_script_is_found_and_a_guarded_one_is_not(tmp_path):
    unguarded = run_script(
        tmp_path,
        """
        from mapgen.runtime.spawn import unguarded_main_line

        def build_engine():
            return unguarded_main_line()

        print(build_engine())
        """,
    )
    assert unguarded == "6"  # the line of the script's top level that led there
    guarded = run_script(
        tmp_path,
        """
        from mapgen.runtime.spawn import unguarded_main_line

        def main():
            return unguarded_main_line()

        if "__main__" == __name__:
            print(main())
        """,
    )
    assert guarded == "None"
