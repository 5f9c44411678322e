"""Where mapgen keeps files on this machine.

Example:
    >>> import os
    >>> os.environ["MAPGEN_CACHE_DIR"] = "/tmp/mapgen-doc"
    >>> str(cache_dir())
    '/tmp/mapgen-doc'
    >>> del os.environ["MAPGEN_CACHE_DIR"]
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$MAPGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/mapgen``, else ``~/.cache/mapgen``."""
    if os.environ.get("MAPGEN_CACHE_DIR"):
        return Path(os.environ["MAPGEN_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mapgen"
