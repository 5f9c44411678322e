"""``mapgen.pipeline``: one callable that generates, then labels (the seed's ``pipeline`` helper)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mapgen.core.fingerprint import register_fingerprint_reducer
from mapgen.core.keywords import CheckedKeywords
from mapgen.generate import GenerateFunction, generate
from mapgen.label import LabelFunction, label
from mapgen.llms.base import LLM
from mapgen.llms.openai import OpenAILLM
from mapgen.tasks.text_generation import TextGenerationTask
from mapgen.tasks.ultrafeedback import SUBTASKS, UltraFeedbackTask

DEFAULT_LABELLER_MODEL = "gpt-4o-mini"
"""The default labeller: OpenAI's ``gpt-4o-mini``, the successor OpenAI names for ``gpt-3.5-turbo``
(the seed's default): cheaper, stronger at judging, and it supports structured outputs, so ratings
parse by construction."""

PIPELINES = ("preference",)


@dataclass(frozen=True)
class PipelineFunction(CheckedKeywords):
    """Generation then labelling in one ``ds.map(fn, batched=True)`` call; see :func:`pipeline`.

    The labeller sees the batch's columns plus the generation step's, and the function returns the
    columns of both steps.
    """

    generate: GenerateFunction
    label: LabelFunction

    def __call__(self, batch: Mapping[str, Sequence[Any]], *args: Any) -> dict[str, list[Any]]:
        self.label.llm.preflight()  # a judge that cannot run must stop us before generation is paid for
        generated = self.generate(batch, *args)
        labelled = self.label({**batch, **generated}, *args)
        return {**generated, **labelled}

    def fingerprint(self) -> dict[str, Any]:
        return {"generate": self.generate.fingerprint(), "label": self.label.fingerprint()}


register_fingerprint_reducer(PipelineFunction)


def pipeline(
    name: str,
    subtask: str,
    *,
    generator: LLM,
    labeller: LLM | None = None,
    num_generations: int = 2,
    generation_task: TextGenerationTask | None = None,
    store: str | None = None,
    **labeller_kwargs: Any,
) -> PipelineFunction:
    """A callable for ``ds.map(fn, batched=True)`` that writes ``num_generations`` answers per row with
    ``generator``, then rates them with UltraFeedback for ``subtask``.

    ``subtask`` is one of ``text-quality`` (overall quality), ``helpfulness``, ``truthfulness``,
    ``honesty``, ``instruction-following``. ``labeller`` defaults to OpenAI's ``gpt-4o-mini``
    (:data:`DEFAULT_LABELLER_MODEL`; it needs ``OPENAI_API_KEY``). ``labeller_kwargs`` go where they
    belong: fields of :class:`~mapgen.UltraFeedbackTask` (``per_generation``, ``template``,
    ``system_prompt``) to the task, ``weighted_ratings``, ``swap`` and ``input_columns`` to
    :func:`mapgen.label`, and, with the default labeller only, the rest to its config (``temperature``,
    ``api_key``...).
    ``store`` is the response store of both steps (see :func:`mapgen.generate`).

    The dataset needs an ``input`` column (or pass ``generation_task`` with your template). The result
    has the generation columns (``generations``, ...) and the labelling ones (``rating``,
    ``rationale``, ``labelling_error``, ...).

    Example:
        >>> import datasets, mapgen
        >>> local = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=24, seed=0)
        >>> fn = mapgen.pipeline("preference", "text-quality", generator=local, labeller=local,
        ...                      per_generation=True)
        >>> ds = datasets.Dataset.from_dict({"input": ["Name a prime number."]}).map(fn, batched=True)
        >>> len(ds[0]["generations"]), len(ds[0]["rating"])
        (2, 2)
    """
    if name not in PIPELINES:
        raise ValueError(f"Unknown pipeline {name!r}; expected one of {list(PIPELINES)}.")
    if subtask not in SUBTASKS:
        raise ValueError(
            f"Unknown subtask {subtask!r} for the preference pipeline; expected one of {list(SUBTASKS)}."
        )
    task_fields = {f.name for f in dataclasses.fields(UltraFeedbackTask)} - {"aspect"}
    task_kwargs = {k: labeller_kwargs.pop(k) for k in list(labeller_kwargs) if k in task_fields}
    label_kwargs = {
        k: labeller_kwargs.pop(k)
        for k in list(labeller_kwargs)
        if k in ("weighted_ratings", "swap", "input_columns")
    }
    if labeller is None:
        labeller = default_labeller(**labeller_kwargs)
    elif labeller_kwargs:
        raise TypeError(
            f"pipeline() got unexpected keyword argument(s) {sorted(labeller_kwargs)}: with your own "
            f"labeller, configure it directly; the task takes {sorted(task_fields)}."
        )
    return PipelineFunction(
        generate=generate(generator, generation_task, num_generations, store=store),
        label=label(
            labeller, UltraFeedbackTask.for_aspect(subtask, **task_kwargs), store=store, **label_kwargs
        ),
    )


def default_labeller(**kwargs: Any) -> LLM:
    """The default labeller: ``OpenAILLM(model="gpt-4o-mini", temperature=0.0)``, ``kwargs`` overriding."""
    return OpenAILLM(**{"model": DEFAULT_LABELLER_MODEL, "temperature": 0.0, **kwargs})
