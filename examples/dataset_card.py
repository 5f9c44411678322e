"""Dataset card: generate and label on the embedded model, then write the card that says how every
column was made (models, sampling parameters, templates, prompt format, fingerprint chain, tokens,
errors by kind), and push the dataset with it to the Hub.

    python examples/dataset_card.py                       # print the card, save it and its chart in out/card
    python examples/dataset_card.py --push-to-hub me/tips  # also push (token: HF_TOKEN or `hf auth login`)

From the shell, `mapgen generate ... --push-to-hub me/tips` does the same push.
"""

import argparse
from pathlib import Path

import datasets

import mapgen


def main(max_new_tokens: int = 48, repo_id: str | None = None, out: str = "out/card") -> datasets.Dataset:
    ds = datasets.Dataset.from_dict({"input": ["Give one tip for sleeping well.", "What is a prime number?"]})
    generator = mapgen.LlamaCppLLM(temperature=0.7, max_new_tokens=max_new_tokens, seed=0)
    ds = ds.map(mapgen.generate(generator, num_generations=2), batched=True)
    judge = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=max_new_tokens, seed=0)
    task = mapgen.UltraFeedbackTask.for_small_models("helpfulness")
    ds = ds.map(mapgen.label(judge, task, weighted_ratings=True), batched=True)

    card = mapgen.dataset_card(ds, repo_id=repo_id)  # a huggingface_hub.DatasetCard
    Path(out).mkdir(parents=True, exist_ok=True)
    card.save(f"{out}/README.md")
    print(card.text)
    if repo_id:
        mapgen.push_to_hub(ds, repo_id)  # the data (ds.push_to_hub), then this card as README.md
    return ds


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--push-to-hub", metavar="REPO", default=None)
    parser.add_argument("--out", default="out/card")
    parser.add_argument("-n", "--max-new-tokens", type=int, default=48)
    args = parser.parse_args()
    main(args.max_new_tokens, repo_id=args.push_to_hub, out=args.out)
