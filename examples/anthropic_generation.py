"""Claude through Anthropic's Messages API: answers with a shared system prompt (cached), then the same
questions as structured records (a forced tool). Needs ANTHROPIC_API_KEY, or ``base_url`` and ``api_key``
of a server that speaks the Messages API (the tests run it against tests/servers/anthropic_server.py).

    ANTHROPIC_API_KEY=sk-ant-... python examples/anthropic_generation.py
"""

from __future__ import annotations

import datasets
from pydantic import BaseModel, Field

import mapgen

SYSTEM_PROMPT = (
    "You are a patient science teacher. Answer the student's question in one or two plain sentences, "
    "without jargon, and never invent facts. "
) * 40  # a long shared prefix: from 1,024 tokens on, Anthropic caches it and later rows read it cheaply


class Answer(BaseModel):
    answer: str = Field(description="the answer, in one or two sentences")
    confidence: int = Field(ge=1, le=5, description="how sure you are, from 1 to 5")


def main(
    model: str = "claude-sonnet-4-5", base_url: str | None = None, api_key: str | None = None
) -> tuple[datasets.Dataset, datasets.Dataset]:
    ds = datasets.Dataset.from_dict(
        {"input": ["Why is the sky blue?", "What is a prime number?", "Why do leaves change colour?"]}
    )
    llm = mapgen.AnthropicLLM(
        model, base_url=base_url, api_key=api_key, temperature=0.3, max_new_tokens=200, max_concurrency=16
    )
    task = mapgen.TextGenerationTask(system_prompt=SYSTEM_PROMPT)
    answers = ds.map(mapgen.generate(llm, task, num_generations=2), batched=True)
    structured = mapgen.StructuredTask(Answer, template="Answer the question, as a record.\n\n{{ input }}")
    records = ds.map(mapgen.generate(llm, structured), batched=True)
    for row, record in zip(answers, records, strict=True):
        print(row["input"], "->", row["generations"][0], "|", record["answer"][0], record["confidence"][0])
    return answers, records


if __name__ == "__main__":
    main()
