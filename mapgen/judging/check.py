"""``mapgen.judge_check``: can a judge tell a right answer from a wrong one? Measured before you spend.

The judge judges the shipped pairs (:mod:`mapgen.judging.pairs`: a prompt, a better and a worse answer)
through ``mapgen.label``, each pair twice: the better answer first, then the worse answer first. Each order
gives a verdict: the better answer, the worse one, a tie, or none (the judge's answer failed or could not be
read). From them:

- **pairwise accuracy**: the share of verdicts, over both orders, that prefer the better answer, a tie
  counting half (as a coin toss between the two would). A judge that cannot judge scores about 0.5 whatever
  its position bias; one that always prefers the first answer scores exactly 0.5; a good judge nears 1.
- **position consistency**: the share of pairs whose two verdicts choose the same answer (or tie both
  times) when the answers swap places. A judge that always prefers one position scores 0.
- **cost**: the tokens and USD of its answers (:func:`mapgen.usage`), answers reused from the response store
  counted apart.

Verdicts that did not come are left out of both shares and counted (``failed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mapgen._version import __version__
from mapgen.core.keywords import checked_keywords
from mapgen.core.units import format_usd
from mapgen.judging.pairs import load_pairs, sample_pairs
from mapgen.label import label
from mapgen.llms.base import LLM
from mapgen.mapping.provenance import record_judge_check
from mapgen.report.totals import Usage, usage
from mapgen.tasks.labelling import LabellingTask
from mapgen.tasks.pairwise import PairwiseJudgeTask

BETTER, WORSE, TIE = "better", "worse", "tie"
"""A verdict: which answer the judge preferred."""

ORDERS = ("better first", "worse first")
"""The two orders each pair is judged in (the ``order`` column of :attr:`JudgeCheck.dataset`)."""

PREFERENCE = "preference"
"""The output of a pairwise task (``a``, ``b`` or ``tie``: the first answer, the second, neither)."""


@dataclass(frozen=True)
class JudgeScore:
    """One set of pairs' figures: ``n`` pairs, ``pairwise_accuracy`` and ``position_consistency`` (floats
    in [0, 1], ``None`` where no verdict, or no pair with both verdicts, came), ``ties`` and ``failed``
    verdicts (of ``2 * n``)."""

    n: int
    pairwise_accuracy: float | None
    position_consistency: float | None
    ties: int
    failed: int


@dataclass(frozen=True)
class JudgeCheck(JudgeScore):
    """What :func:`judge_check` measured; ``str()`` (or ``print``) is a table by category.

    Beside :class:`JudgeScore`'s figures over every pair: ``by_category`` (a :class:`JudgeScore` per
    category), ``cost`` (USD of the answers requested, ``None`` where none had a price), ``usage`` (tokens
    and cost by model: :class:`mapgen.Usage`), ``judge`` and ``task`` (names), and ``dataset``: the labelled
    rows, two per pair (``id``, ``category``, ``order``, the judge's outputs and raw answers, ``verdict``).
    """

    by_category: dict[str, JudgeScore] = field(default_factory=dict)
    cost: float | None = None
    usage: Usage = field(default_factory=Usage)
    judge: str = ""
    task: str = ""
    dataset: Any = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        header = ["category", "pairs", "accuracy", "consistency", "ties", "no verdict"]
        rows = [[name, *_cells(score)] for name, score in self.by_category.items()]
        rows.append(["all", *_cells(self)])
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        lines = [
            "  ".join(
                str(c).ljust(w) if i == 0 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in [header, *rows]
        ]
        total = self.usage.total
        cost = "unknown (no price: set price_per_million)" if self.cost is None else format_usd(self.cost)
        if total.requests == 0 and total.reused:
            cost = f"{format_usd(0)} (every answer reused from the response store)"
        return "\n".join(
            [
                f"judge check: {self.judge} with {self.task}, {self.n} pairs, each judged in both orders",
                *lines,
                "accuracy: verdicts for the better answer, both orders, a tie counting half (chance: 0.50)",
                "consistency: pairs whose verdict holds when the two answers swap places",
                f"cost: {total.requests:,} requests, {total.prompt_tokens:,} prompt and "
                f"{total.completion_tokens:,} completion tokens, {cost}; {total.reused:,} answers reused",
            ]
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython and Jupyter show the table
        printer.text(str(self))


def _cells(score: JudgeScore) -> list[str]:
    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    accuracy, consistency = share(score.pairwise_accuracy), share(score.position_consistency)
    return [f"{score.n}", accuracy, consistency, f"{score.ties}", f"{score.failed}"]


def default_task() -> LabellingTask:
    """The task :func:`judge_check` uses when given none: :class:`mapgen.PairwiseJudgeTask` (MT-Bench's
    pairwise comparison, the shape of the check itself)."""
    return PairwiseJudgeTask()


def _check_reads_the_pairs(task: LabellingTask) -> None:
    """Refuse, before any request, a task that would not read the check's rows (a prompt in ``input``, the
    two answers in ``generations``): it would run and score verdicts on something else as if real."""
    inputs = set(task.inputs)
    if task.items != "generations" or not inputs <= {"input", task.items}:
        raise TypeError(
            f"judge_check shows the judge a prompt (`input`) and two answers (`generations`); "
            f"{type(task).__name__} rates `{task.items}` and reads {sorted(inputs)}. Use a task that judges "
            "two answers to a prompt, e.g. mapgen.PairwiseJudgeTask()."
        )


@checked_keywords
def judge_check(
    judge: LLM,
    task: LabellingTask | None = None,
    *,
    sample: int | None = None,
    seed: int = 0,
    store: str | None = None,
    cache: bool = True,
    max_reasks: int = 2,
) -> JudgeCheck:
    """Run ``judge`` on the shipped pairs of a better and a worse answer, both orders, and measure it.

    ``task`` is any labelling task that judges two answers: a pairwise one (writing ``preference``, ``a``,
    ``b`` or ``tie``) or a rating one (its score per answer: the higher rated answer is preferred, equal
    ratings a tie; one that rates each answer in a prompt of its own sends the same prompts in both orders,
    so its consistency is 1 by construction); default :func:`default_task`. ``sample`` judges that many
    pairs, drawn evenly across the categories with ``seed`` (default: all of them, 120). Requests go through
    ``mapgen.label``'s map like any other: kept in the response store (``store``, ``cache``, ``max_reasks``:
    see :func:`mapgen.label`), retried, failures kept as data (a failed verdict is counted in ``failed``,
    never raised). Returns a :class:`JudgeCheck` (``n``, ``pairwise_accuracy``, ``position_consistency``,
    ``cost``, ``by_category``); what each figure means: :mod:`mapgen.judging.check`.

    Raises ``TypeError`` (before any request) for a task that is not a labelling task, or one that does
    not rate ``generations`` from ``input`` alone (e.g. ``ComplexityScorerTask``, which rates instructions,
    or ``PrometheusTask`` with a reference answer); ``ValueError`` for a sample below 1.

    Example:
        >>> import mapgen
        >>> judge = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=96, seed=0)
        >>> check = mapgen.judge_check(judge, sample=1)  # one pair, both orders: two requests
        >>> check.n, sorted(check.by_category), list(check.dataset["order"])
        (1, ['arithmetic'], ['better first', 'worse first'])
    """
    import datasets

    task = default_task() if task is None else task
    if not isinstance(task, LabellingTask):
        raise TypeError(
            f"judge_check needs a labelling task that judges two answers (e.g. mapgen.UltraFeedbackTask."
            f"for_overall_quality()), got {type(task).__name__}"
        )
    _check_reads_the_pairs(task)
    pairs = sample_pairs(load_pairs(), sample, seed)
    rows: dict[str, list[Any]] = {name: [] for name in ("id", "category", "order", "input", task.items)}
    for one in pairs:
        for order, answers in zip(
            ORDERS, ([one["better"], one["worse"]], [one["worse"], one["better"]]), strict=True
        ):
            for name, value in (("id", one["id"]), ("category", one["category"]), ("order", order)):
                rows[name].append(value)
            rows["input"].append(one["prompt"])
            rows[task.items].append(answers)
    fn = label(judge, task, store=store, cache=cache, max_reasks=max_reasks)
    labelled = datasets.Dataset.from_dict(rows).map(fn, batched=True, desc="Judge check")
    verdicts = [_verdict(task, row) for row in labelled]
    labelled = labelled.add_column("verdict", verdicts)
    spent = usage(labelled)
    by_pair: dict[str, dict[str, str | None]] = {}
    for row, verdict in zip(labelled, verdicts, strict=True):
        by_pair.setdefault(row["id"], {})[row["order"]] = verdict
    categories: dict[str, list[dict[str, str | None]]] = {}
    for one in pairs:
        categories.setdefault(one["category"], []).append(by_pair[one["id"]])
    overall = _score(list(by_pair.values()))
    if cache:  # where a card of data this judge labelled finds it
        kept = {**vars(overall), "task": _task_name(task), "mapgen_version": __version__}
        record_judge_check(judge, kept, store=store)
    return JudgeCheck(
        **vars(overall),
        by_category={name: _score(found) for name, found in categories.items()},
        cost=spent.total.cost,
        usage=spent,
        judge=judge.model_name,
        task=_task_name(task),
        dataset=labelled,
    )


def _verdict(task: LabellingTask, row: Mapping[str, Any]) -> str | None:
    """Which answer a labelled row's judge preferred, as :data:`BETTER`, :data:`WORSE`, :data:`TIE`, or
    ``None`` (no verdict could be read)."""
    if PREFERENCE in row:
        chosen = str(row[PREFERENCE] or "").strip().lower()
        first = {"a": True, "b": False}.get(chosen)
        if first is None:
            return TIE if chosen == TIE else None
    else:
        scores = row.get(task.score_output)
        if not isinstance(scores, list) or len(scores) != 2 or None in scores:
            return None
        if scores[0] == scores[1]:
            return TIE
        first = scores[0] > scores[1]
    return BETTER if first == (row["order"] == ORDERS[0]) else WORSE


def _score(pairs: list[dict[str, str | None]]) -> JudgeScore:
    """The figures of pairs given as ``{order: verdict}``."""
    given = [v for both in pairs for v in both.values() if v is not None]
    points = sum(1.0 if v == BETTER else 0.5 if v == TIE else 0.0 for v in given)
    complete = [both for both in pairs if None not in both.values() and len(both) == len(ORDERS)]
    held = sum(len(set(both.values())) == 1 for both in complete)
    return JudgeScore(
        n=len(pairs),
        pairwise_accuracy=points / len(given) if given else None,
        position_consistency=held / len(complete) if complete else None,
        ties=sum(v == TIE for v in given),
        failed=sum(v is None for both in pairs for v in both.values()),
    )


def _task_name(task: LabellingTask) -> str:
    aspect = getattr(task, "aspect", None)
    return f"{type(task).__name__}({aspect})" if isinstance(aspect, str) else type(task).__name__
