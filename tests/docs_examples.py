"""Reading and running the Python examples of a Markdown file.

A block preceded by ``<!-- skip-test: reason -->`` needs something the plain docs test lacks (a provider's
key, a cluster, a server); a test that provides it runs it by naming itself in the reason.
"""

from __future__ import annotations

import re
from pathlib import Path

BLOCK = re.compile(r"(<!-- skip-test: (?P<reason>.+?) -->\n)?```python\n(?P<code>.*?)```", re.DOTALL)


def python_blocks(path: Path) -> list[tuple[str, str | None]]:
    """Each Python block's code and its skip reason (``None`` when it runs everywhere)."""
    return [(m["code"], m["reason"]) for m in BLOCK.finditer(path.read_text())]


def run_examples(path: Path, *, runner: str | None = None, replace: dict[str, str] | None = None) -> int:
    """Run ``path``'s blocks in order, in one namespace: those without a skip reason, and those whose
    reason names ``runner`` (the test file that provides what they need). Returns how many ran."""
    namespace: dict = {"__name__": "__docs__"}
    ran = 0
    for code, reason in python_blocks(path):
        if reason is not None and (runner is None or runner not in reason):
            continue
        for old, new in (replace or {}).items():
            code = code.replace(old, new)
        # dont_inherit: the examples run as a user runs them, without this module's `from __future__` flags
        exec(compile(code, str(path), "exec", dont_inherit=True), namespace)
        ran += 1
    return ran
