"""Reading and running the Python examples of a Markdown file.

A block preceded by ``<!-- skip-test: reason -->`` needs something the plain docs test lacks (a provider's
key, a cluster, a server); a test that provides it runs it by naming itself in the reason.

A block whose first line names a file (``# my_tasks.py``, ``# tests/test_my_tasks.py``) is that file: it is
saved there, so the blocks after it can import it, as a reader who saves it would.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BLOCK = re.compile(r"(<!-- skip-test: (?P<reason>.+?) -->\n)?```python\n(?P<code>.*?)```", re.DOTALL)
FILE_NAME = re.compile(r"# (?P<path>[\w./-]+\.py)\b")


def python_blocks(path: Path) -> list[tuple[str, str | None]]:
    """Each Python block's code and its skip reason (``None`` when it runs everywhere)."""
    return [(m["code"], m["reason"]) for m in BLOCK.finditer(path.read_text())]


def _selected(path: Path, runner: str | None, replace: dict[str, str] | None) -> list[str]:
    """The blocks that run here: those without a skip reason, and those whose reason names ``runner``."""
    blocks = []
    for code, reason in python_blocks(path):
        if reason is not None and (runner is None or runner not in reason):
            continue
        for old, new in (replace or {}).items():
            code = code.replace(old, new)
        blocks.append(code)
    return blocks


def run_examples(path: Path, *, runner: str | None = None, replace: dict[str, str] | None = None) -> int:
    """Run ``path``'s selected blocks in order, in one namespace of this process (for tests that provide
    what the blocks need in-process: a Ray cluster, captured output). Returns how many ran."""
    namespace: dict = {"__name__": "__docs__"}
    blocks = _selected(path, runner, replace)
    for code in blocks:
        # dont_inherit: the examples run as a user runs them, without this module's `from __future__` flags
        exec(compile(code, str(path), "exec", dont_inherit=True), namespace)
    return len(blocks)


def run_each_alone(
    path: Path, workdir: Path, *, runner: str | None = None, replace: dict[str, str] | None = None
) -> int:
    """Run each of ``path``'s selected blocks on its own, in a fresh interpreter started in ``workdir``
    (the environment inherited), as a reader who copies one block runs it. A block naming a file is saved
    there first; one naming a ``test_*.py`` file is run with pytest. Raises ``AssertionError`` with the
    block and its output when one fails. Returns how many ran."""
    blocks = _selected(path, runner, replace)
    for number, code in enumerate(blocks, 1):
        named = FILE_NAME.match(code)
        script = workdir / (named["path"] if named else f"block_{number}.py")
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(code)
        if script.name.startswith("test_"):
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)]
        else:
            command = [sys.executable, str(script)]
        done = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
        assert done.returncode == 0, (
            f"{path.name}, block {number} failed alone (exit {done.returncode}):\n{code}\n"
            f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
        )
    return len(blocks)
