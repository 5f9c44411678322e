"""Writing your own labelling task: a template, a parser, an optional JSON schema. That is all.

This one asks a judge whether each answer is concise (1 to 5) and says why, one prompt per answer.
Built-in tasks are written exactly this way (see mapgen/tasks/ultrafeedback.py).
"""

from dataclasses import dataclass
from typing import ClassVar

import datasets

import mapgen
from mapgen.tasks._parsing import labelled_field, load_json, parse_score
from mapgen.tasks.base import compile_template
from mapgen.tasks.labelling import RATINGS, TEXTS, LabellingTask

TEMPLATE = """\
Question: {{ input }}
Answer: {{ generation }}

Is the answer concise? Rate it from 1 (rambling) to 5 (as short as it can be).
Reply as JSON: {"rating": <1 to 5>, "reason": "<why>"}
"""


@dataclass(frozen=True, kw_only=True)
class ConcisenessTask(LabellingTask):
    """Rate each generation's conciseness, 1 to 5."""

    template: str = TEMPLATE

    one_request_per_item: ClassVar[bool] = True  # the template sees one `generation` at a time
    outputs: ClassVar = {"rating": RATINGS, "rationale": TEXTS}  # one value per generation
    schema: ClassVar = {  # constraining backends (llama.cpp, OpenAI, vLLM) answer in this shape
        "type": "object",
        "properties": {
            "rating": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
            "reason": {"type": "string", "maxLength": 150},
        },
        "required": ["rating", "reason"],
    }

    @property
    def inputs(self):
        return ("input", "generations")

    def prompt(self, row):
        return mapgen.Prompt(compile_template(self.template).render(**row))

    def parse(self, text):  # raise mapgen.ParseError (or ValueError): the row gets None + the reason
        data = load_json(text)
        if isinstance(data, dict):
            return {"rating": parse_score(data.get("rating"), 1, 5), "rationale": data.get("reason")}
        return {
            "rating": parse_score(labelled_field(text, ("rating",)), 1, 5),
            "rationale": labelled_field(text, ("reason",)),
        }


def main(max_new_tokens: int = 48) -> datasets.Dataset:
    ds = datasets.Dataset.from_dict(
        {"input": ["What is 2 + 2?"], "generations": [["4.", "Well, let me think about this at length..."]]}
    )
    judge = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=max_new_tokens, seed=0)
    ds = ds.map(mapgen.label(judge, ConcisenessTask(), weighted_ratings=True), batched=True)
    print(ds[0]["rating"], ds[0]["weighted_rating"], ds[0]["rationale"])
    return ds


if __name__ == "__main__":
    main()
