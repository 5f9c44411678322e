"""Generator and labeller: generate two answers per instruction, rate them, and export DPO pairs
(the seed's ``Pipeline(generator=..., labeller=...)`` example), all on the embedded model.

With API models instead:
    generator = mapgen.OpenAILLM(model="gpt-4o-mini", temperature=0.9)
    judge = mapgen.OpenAILLM(model="gpt-4o", temperature=0.0)
    task = mapgen.UltraFeedbackTask.for_helpfulness()   # the full comparative rubric
"""

import datasets

import mapgen

MAX_NEW_TOKENS = 32


def main(max_new_tokens: int = MAX_NEW_TOKENS) -> datasets.Dataset:
    ds = datasets.Dataset.from_dict(
        {"input": ["Explain what a noun is in one sentence.", "Give one reason to drink water."]}
    )
    generator = mapgen.LlamaCppLLM(max_new_tokens=max_new_tokens, seed=0)
    judge = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=60, seed=0)
    ds = ds.map(mapgen.generate(generator, num_generations=2), batched=True)
    task = mapgen.UltraFeedbackTask.for_small_models("helpfulness")
    ds = ds.map(mapgen.label(judge, task, weighted_ratings=True), batched=True)
    # The small judge's digit is nearly constant; its probability-weighted rating ranks better.
    pairs = mapgen.to_preference(ds, rating_column="weighted_rating")
    print(pairs.to_pandas()[["prompt", "chosen_rating", "rejected_rating"]])
    return ds


if __name__ == "__main__":
    main()
