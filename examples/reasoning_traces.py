"""Reasoning traces: keep a thinking model's reasoning apart from its answer.

Servers that parse reasoning (vLLM with ``--reasoning-parser``, llama.cpp's ``llama-server``) return it as
``reasoning_content``; others, and local engines, leave a ``<think>...</think>`` block at the start of
the text. Either way the trace lands in ``generation_reasoning`` and ``generations`` holds the answer
alone, ready for SFT on traces or for filtering on their length. ``reasoning_effort`` (OpenAI's reasoning
models, gpt-oss) and ``chat_template_kwargs`` (``{"enable_thinking": False}`` turns Qwen3's thinking
off) are part of the config: changing them changes the cache keys.

    python examples/reasoning_traces.py                  # OpenAI's o4-mini, OPENAI_API_KEY set
    python examples/reasoning_traces.py Qwen/Qwen3-8B http://localhost:8000/v1
                                          # after: vllm serve Qwen/Qwen3-8B --reasoning-parser qwen3
"""

import sys

import datasets

import mapgen

QUESTIONS = ["What is 17 * 23?", "Is 221 a prime number?"]


def main(
    model: str = "o4-mini",
    base_url: str | None = None,
    api_key: str | None = None,
    reasoning_effort: str | None = "low",
) -> datasets.Dataset:
    ds = datasets.Dataset.from_dict({"input": QUESTIONS})
    llm = mapgen.OpenAILLM(
        model, base_url=base_url, api_key=api_key, reasoning_effort=reasoning_effort, max_new_tokens=2048
    )
    ds = ds.map(mapgen.generate(llm, mapgen.TextGenerationTask()), batched=True)
    for row in ds:
        reasoning = row["generation_reasoning"][0] or ""
        print(f"{row['input']}\n  thought {len(reasoning)} characters\n  answered: {row['generations'][0]}")
    return ds


if __name__ == "__main__":
    main(*sys.argv[1:3])
