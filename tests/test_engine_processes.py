"""Engine processes end with their owner (mapgen.runtime.reaper), and a script that a spawned engine
would run again is refused before the engine starts (mapgen.runtime.spawn). Real processes throughout."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mapgen.runtime.processes import is_running, process_start
from mapgen.runtime.reaper import children_of

OWNER = """
import subprocess, sys, time
from mapgen.runtime.reaper import reaped_with_owner

before = subprocess.Popen(["sleep", "300"])  # not the block's: left alone
with reaped_with_owner():  # as an engine is built: a child that starts one of its own
    engine = subprocess.Popen([sys.executable, "-c", "import subprocess, time; "
                               "subprocess.Popen(['sleep', '300']); time.sleep(300)"])
    time.sleep(1.0)
    print(before.pid, engine.pid, flush=True)
    if sys.argv[1] == "killed while building":
        time.sleep(300)
print("built", flush=True)
time.sleep(300)
"""


def start_owner(when: str) -> tuple[subprocess.Popen, int, set[int]]:
    """A process that builds an "engine" (a child with a child of its own) as vLLM's backend does; the
    child it had before, and the engine's processes."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER, when], stdout=subprocess.PIPE, text=True)
    before, engine = map(int, owner.stdout.readline().split())
    if when != "killed while building":
        assert owner.stdout.readline().strip() == "built"
    engine_processes = children_of(engine) | {engine}
    assert len(engine_processes) == 2
    return owner, before, engine_processes


def alive(pids: set[int], started: dict[int, int | None]) -> set[int]:
    return {pid for pid in pids if is_running(pid, started[pid])}


def watchers_of(owner: subprocess.Popen) -> list[int]:
    return [pid for pid in children_of(owner.pid) if "reaper.py" in Path(f"/proc/{pid}/cmdline").read_text()]


@pytest.mark.parametrize("when", ["killed while building", "killed after building"])
def test_an_engines_processes_end_when_their_owner_is_killed(when):
    owner, before, engine = start_owner(when)
    started = {pid: process_start(pid) for pid in engine | {before}}
    [watcher] = watchers_of(owner)
    watcher_start = process_start(watcher)
    time.sleep(0.5)
    assert alive(engine, started) == engine  # nothing happens while the owner runs
    owner.kill()  # as kill -9: no atexit, no finaliser
    owner.wait()
    deadline = time.monotonic() + 15
    while alive(engine, started) and time.monotonic() < deadline:
        time.sleep(0.1)
    while is_running(watcher, watcher_start) and time.monotonic() < deadline:
        time.sleep(0.1)  # it leaves once it has seen them gone
    try:
        assert alive(engine, started) == set()
        assert is_running(before, started[before])  # what the owner had before the build is not the engine's
        assert not is_running(watcher, watcher_start)
    finally:
        os.kill(before, 9)


def test_the_watcher_leaves_when_the_engine_ends_first():
    owner, before, engine = start_owner("killed after building")
    [watcher] = watchers_of(owner)
    for pid in engine:
        os.kill(pid, 9)  # the engine shut down in the ordinary way
    try:
        deadline = time.monotonic() + 10
        while is_running(watcher, process_start(watcher)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not is_running(watcher, process_start(watcher))
        assert owner.poll() is None  # the owner is left alone
    finally:
        owner.kill()
        owner.wait()
        os.kill(before, 9)


def test_a_reused_pid_is_not_killed():
    owner = subprocess.Popen(["sleep", "300"])
    child = subprocess.Popen(["sleep", "300"])  # stands for a process that now holds an engine's old pid
    watcher = subprocess.Popen(
        [sys.executable, "-m", "mapgen.runtime.reaper", str(owner.pid), str(process_start(owner.pid))],
        stdin=subprocess.PIPE,
    )
    # Recorded with another start time: the process now at that pid is not the one that was given.
    watcher.stdin.write(f"{child.pid}:{process_start(child.pid) + 1}\n".encode())
    watcher.stdin.close()
    time.sleep(0.5)
    owner.kill()
    owner.wait()
    try:
        assert watcher.wait(timeout=10) == 0
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


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
