"""Optional dependencies: import one, or raise an ``ImportError`` that names the extra which installs it.

mapgen's required dependencies are few; each backend and integration brings its own library through a
pip extra (``pip install 'mapgen[transformers]'``). Every import of such a library goes through
:func:`optional_import` (or, where only presence matters, :func:`require_installed`), so that a missing one
says what to install instead of a bare ``ModuleNotFoundError``.

Example:
    >>> optional_import("json", "none", "this example").__name__
    'json'
    >>> try:
    ...     optional_import("not_a_real_module", "vision", "mapgen.Image")
    ... except ImportError as error:
    ...     print(error)
    mapgen.Image needs not_a_real_module, which is not installed: pip install 'mapgen[vision]'.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from types import ModuleType


def install_hint(extra: str) -> str:
    """The pip command that installs ``extra``.

    Example:
        >>> install_hint("ray")
        "pip install 'mapgen[ray]'"
    """
    return f"pip install 'mapgen[{extra}]'"


def optional_import(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` (dotted names too), which ``feature`` needs and ``mapgen[extra]`` installs.

    Raises:
        ImportError: ``module``, or a module it imports, is not installed; the message names the
            feature, the missing module and the pip command. The original error is its ``__cause__``.
            Other failures of an installed library (a broken native build) are raised unchanged.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        missing = error.name or module
        inside = missing == module or module.startswith(missing + ".")
        named = missing if inside else f"{module} (its dependency {missing} is missing)"
        raise ImportError(
            f"{feature} needs {named}, which is not installed: {install_hint(extra)}.", name=missing
        ) from error


def require_installed(modules: Sequence[str], extra: str, feature: str) -> None:
    """Raise ``ImportError`` naming ``mapgen[extra]`` unless every one of ``modules`` is installed; it looks
    them up without importing them, so it is cheap enough to call before every batch.

    Example:
        >>> require_installed(["json", "sqlite3"], "none", "this example")
    """
    missing = [name for name in modules if _find_spec(name) is None]
    if missing:
        raise ImportError(
            f"{feature} needs {', '.join(missing)}, which is not installed: {install_hint(extra)}.",
            name=missing[0],
        )


def _find_spec(name: str) -> object | None:
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a parent package missing, or ``sys.modules[name] = None``
        return None
