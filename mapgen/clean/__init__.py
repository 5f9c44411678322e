"""Dataset transforms that clean a generated dataset before training: near-duplicate removal
(:func:`~mapgen.clean.dedup.dedup`); benchmark decontamination
(:func:`~mapgen.clean.decontaminate.decontaminate`); answers checked against a reference
(:func:`~mapgen.clean.verify.verify`)."""

from mapgen.clean.decontaminate import BenchmarkOverlap, DecontaminationReport, decontaminate
from mapgen.clean.dedup import DedupReport, dedup
from mapgen.clean.verify import verify

__all__ = [
    "BenchmarkOverlap",
    "DecontaminationReport",
    "DedupReport",
    "decontaminate",
    "dedup",
    "verify",
]
