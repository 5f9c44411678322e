"""Measure a judge against people before you trust its preferences.

Generate two answers to each of a few sums, rate them with a judge in both orders (``swap=True``: the
position bias of each row is measured), push a random sample to Argilla for review, review it as two
people, pull the reviews back, print how far the judge agrees with them (``mapgen.agreement``), and keep
only the preference pairs the judge held both ways and by a clear margin (``mapgen.to_preference``).

The two reviewers are scripted through the Argilla SDK, as people in its UI would submit: each rates an
answer by whether it states the right sum, one strictly (5 or 1) and one leniently (4 or 2). They are
created in the dataset's workspace, so the server's key must be an owner's (ARGILLA_API_URL and
ARGILLA_API_KEY, or pass a client). Both the writer and the judge run on the embedded model here (a 135M
judge is near chance: expect a low kappa); pass any mapgen LLMs as ``writer`` and ``judge``:

    python examples/judge_agreement.py
"""

from __future__ import annotations

import os
import re
import secrets
import warnings
from typing import Any

import datasets

import mapgen

SUMS = [(17, 25), (38, 44), (9, 16), (123, 77), (61, 39), (250, 175), (46, 58), (81, 27)]
QUESTIONS = [f"What is {a} + {b}? Answer with the number." for a, b in SUMS]
REVIEWERS = {"reviewer-strict": (5, 1), "reviewer-lenient": (4, 2)}
"""Each scripted reviewer's rating of a right and of a wrong answer."""


def is_right(question: str, answer: str) -> bool:
    """Whether ``answer``'s last number is the sum ``question`` asks for: the check a reviewer makes."""
    a, b = (int(n) for n in re.findall(r"\d+", question)[:2])
    said = re.findall(r"-?\d+", answer.replace(",", ""))
    return bool(said) and int(said[-1]) == a + b


def reviewer(client: Any, username: str, workspace: Any) -> Any:
    """The annotator ``username`` of ``workspace``, created the first time."""
    import argilla as rg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns when it finds no such user
        user = client.users(username)
    if user is None:
        password = secrets.token_urlsafe(16)  # nobody logs in: the script submits for them
        user = rg.User(username=username, password=password, role="annotator", client=client).create()
    if username not in {member.username for member in workspace.users}:
        user.add_to_workspace(workspace)
    return user


def review(client: Any, dataset: Any) -> int:
    """Submit both reviewers' ratings of every record of ``dataset`` (an Argilla dataset that
    ``mapgen.push_to_argilla`` made); returns how many records were reviewed."""
    import argilla as rg

    users = {name: reviewer(client, name, dataset.workspace) for name in REVIEWERS}
    records = list(dataset.records(with_responses=True))
    for record in records:
        question = record.fields["input"]
        for name, (right, wrong) in REVIEWERS.items():
            for field, answer in record.fields.items():
                if not field.startswith("generation-") or answer is None:
                    continue  # the prompt, or a generation that is missing
                rating = right if is_right(question, answer) else wrong
                response = rg.Response(f"{field}-rating", rating, user_id=users[name].id, status="submitted")
                record.responses.add(response)
    dataset.records.log(records)
    return len(records)


def main(
    writer: mapgen.LLM | None = None,
    judge: mapgen.LLM | None = None,
    *,
    client: Any = None,
    name: str = "judge-agreement",
    workspace: str | None = None,
    sample: int = 6,
    seed: int = 0,
) -> tuple[datasets.Dataset, mapgen.Agreement, datasets.Dataset]:
    """Returns the reviewed dataset, the judge's agreement with the reviewers, and the pairs kept."""
    import argilla as rg

    writer = writer or mapgen.LlamaCppLLM(temperature=0.8, max_new_tokens=16, seed=0)
    judge = judge or mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=96, seed=0)
    client = client or rg.Argilla(
        api_url=os.environ.get("ARGILLA_API_URL", "http://localhost:6900"),
        api_key=os.environ.get("ARGILLA_API_KEY"),
    )

    ds = datasets.Dataset.from_dict({"input": QUESTIONS})
    ds = ds.map(mapgen.generate(writer, num_generations=2), batched=True)
    task = mapgen.UltraFeedbackTask.for_overall_quality()
    ds = ds.map(mapgen.label(judge, task, swap=True), batched=True)  # each row in both orders

    # A random sample for review: the judge is measured on it, its preferences used on every row.
    dataset = mapgen.push_to_argilla(
        ds, name=name, workspace=workspace, client=client, sample=sample, seed=seed
    )
    reviewed = review(client, dataset)
    ds = mapgen.pull_from_argilla(ds, name=name, workspace=workspace, client=client)

    result = mapgen.agreement(ds, judge="rating", human="human_rating", seed=seed)
    print(f"The judge against {len(REVIEWERS)} reviewers, on the {reviewed} rows they reviewed:\n{result}\n")

    held = [c for c in ds["rating_consistency"] if c is not None]
    print(
        f"Position consistency: {sum(held)} of {len(held)} rows kept their ranking with the answers swapped"
    )
    pairs = mapgen.to_preference(ds, min_margin=1.0, consistent_only=True)
    print(f"{pairs.num_rows} preference pairs held both ways by a margin of 1 or more:")
    for pair in pairs:
        print(f"  {pair['prompt']!r}: {pair['chosen']!r} ({pair['chosen_rating']}) over ", end="")
        print(f"{pair['rejected']!r} ({pair['rejected_rating']})")
    return ds, result, pairs


if __name__ == "__main__":
    main()
