"""Sampling parameters: first sentences only (``stop``), then varied samples (``top_k``, ``min_p``,
``repetition_penalty``) from the embedded model. No key, no network.

Every typed parameter (``top_k``, ``min_p``, ``stop``, ``presence_penalty``, ``frequency_penalty``,
``repetition_penalty``) is a config field: it enters the cache fingerprint, and a backend that cannot
honour one refuses it when the config is built. With an OpenAI-compatible server instead (vLLM, llama.cpp):
    llm = mapgen.OpenAILLM("my-model", base_url="http://localhost:8000/v1", top_k=40, min_p=0.05)
OpenAI's own API has no top_k, min_p nor repetition_penalty: OpenAILLM("gpt-4o-mini", top_k=40) raises.
"""

import datasets

import mapgen

MAX_NEW_TOKENS = 40


def main(max_new_tokens: int = MAX_NEW_TOKENS) -> tuple[datasets.Dataset, datasets.Dataset]:
    ds = datasets.Dataset.from_dict({"input": ["Give one tip for sleeping well.", "What is a prime number?"]})

    # Greedy, cut at the first full stop: one sentence each, whatever max_new_tokens allows.
    one_sentence = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=max_new_tokens, seed=0, stop=["."])
    short = ds.map(mapgen.generate(one_sentence, mapgen.TextGenerationTask()), batched=True)

    # Varied samples: hot, but only among likely tokens, and discouraged from repeating themselves.
    varied_llm = mapgen.LlamaCppLLM(
        temperature=1.0, max_new_tokens=max_new_tokens, seed=0, top_k=40, min_p=0.05, repetition_penalty=1.1
    )
    varied = ds.map(mapgen.generate(varied_llm, mapgen.TextGenerationTask(), num_generations=2), batched=True)

    for row, samples in zip(short, varied["generations"], strict=True):
        print(row["input"], "->", row["generations"][0], "|", samples)
    return short, varied


if __name__ == "__main__":
    main()
