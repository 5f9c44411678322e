"""Moved to :mod:`mapgen.tasks.parsing` (public); this name stays for code that imported it."""

from mapgen.tasks.parsing import *  # noqa: F403
from mapgen.tasks.parsing import SCORE_TEXT, AmbiguousScore, InvalidOutput, ParseError  # noqa: F401
