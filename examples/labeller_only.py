"""Labeller only: rate existing answers with UltraFeedback (the seed's ``Pipeline(labeller=...)``
example), on the embedded model, constrained to JSON so that every answer parses, and with the
probability-weighted rating beside the model's digit.

With an API judge instead (structured outputs; weighted ratings need a backend with logprobs):
    judge = mapgen.OpenAILLM(model="gpt-4o-mini", temperature=0.0)
    fn = mapgen.label(judge, mapgen.UltraFeedbackTask.for_overall_quality())
"""

import datasets

import mapgen

MAX_NEW_TOKENS = 60


def main(max_new_tokens: int = MAX_NEW_TOKENS) -> datasets.Dataset:
    ds = datasets.Dataset.from_dict(
        {
            "input": ["What is the capital of France?", "How many legs does a spider have?"],
            "generations": [
                ["The capital of France is Paris.", "The capital of France is Berlin."],
                ["A spider has eight legs.", None],  # a failed generation: its rating will be None
            ],
        }
    )
    judge = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=max_new_tokens, seed=0)
    task = mapgen.UltraFeedbackTask.for_small_models("text-quality")
    ds = ds.map(mapgen.label(judge, task, weighted_ratings=True), batched=True)
    for row in ds:
        print(row["input"], row["rating"], row["weighted_rating"], row["labelling_error"])
    return ds


if __name__ == "__main__":
    main()
