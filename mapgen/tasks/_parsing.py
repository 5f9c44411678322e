"""Moved to :mod:`mapgen.parsing` (public); this name stays for code that imported it."""

from mapgen.parsing import *  # noqa: F403
from mapgen.parsing import SCORE_TEXT, AmbiguousScore, InvalidOutput, ParseError  # noqa: F401
