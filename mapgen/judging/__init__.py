"""Measure a judge before you spend on it: :func:`judge_check` on the shipped pairs of a better and a worse
answer (:mod:`mapgen.judging.pairs`).

It runs ``mapgen.label`` maps and reads them with ``mapgen.report``, so it sits above both, beside
``mapgen.pipeline``.
"""

from mapgen.judging.check import JudgeCheck, JudgeScore, judge_check
from mapgen.judging.pairs import load_pairs, sample_pairs

__all__ = ["JudgeCheck", "JudgeScore", "judge_check", "load_pairs", "sample_pairs"]
