"""Python's ``spawn`` start method and scripts without an ``if __name__ == "__main__":`` guard.

A process started with ``spawn`` (vLLM's engine on the CPU, or once CUDA is initialised) imports the
script that started it again. Code at the script's top level then runs a second time in the child, which
tries to start the engine again and fails with Python's long "bootstrapping phase" error, far from its
cause. :func:`unguarded_main_line` finds that case before the engine starts: the script's top-level code is
on the call stack, outside an ``if __name__ == "__main__":`` block.

Example:
    >>> unguarded_main_line() is None  # doctests do not run as a script
    True
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from types import FrameType


def unguarded_main_line() -> int | None:
    """The line of the script's top level that led here, when it is outside an ``if __name__ ==
    "__main__":`` block; ``None`` when guarded, or when no script's top level is on the stack (an
    interactive session, a notebook, ``python -c``, a function called from elsewhere)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__":
            break
        frame = frame.f_back
    if frame is None:
        return None
    path = Path(frame.f_code.co_filename)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    line = frame.f_lineno
    for statement in tree.body:
        end = statement.end_lineno or statement.lineno
        if statement.lineno <= line <= end:
            return None if _is_main_guard(statement) else line
    return None


def _is_main_guard(statement: ast.stmt) -> bool:
    """Whether ``statement`` is ``if __name__ == "__main__":`` (either way round)."""
    if not isinstance(statement, ast.If) or not isinstance(statement.test, ast.Compare):
        return False
    test = statement.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    values = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and values == ["__main__"]
