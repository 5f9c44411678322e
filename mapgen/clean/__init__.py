"""Dataset transforms that clean a generated dataset before training: near-duplicate removal
(:func:`~mapgen.clean.minhash.dedup`); benchmark decontamination
(:func:`~mapgen.clean.ngrams.decontaminate`); answers checked against a reference
(:func:`~mapgen.clean.verifiers.verify`)."""

from mapgen.clean.minhash import DedupReport, dedup
from mapgen.clean.ngrams import BenchmarkOverlap, DecontaminationReport, decontaminate
from mapgen.clean.verifiers import verify

__all__ = [
    "BenchmarkOverlap",
    "DecontaminationReport",
    "DedupReport",
    "decontaminate",
    "dedup",
    "verify",
]
