"""Writing your own labelling task: a template, a pydantic answer model, a parser. That is all.

This one asks a judge whether each answer is concise (1 to 5) and says why, one prompt per answer. The
answer model is written once: constraining backends (llama.cpp, OpenAI, vLLM) answer in its JSON schema,
and every answer is validated against it (one that fails is asked again, ``max_reasks`` times). Built-in
tasks are written exactly this way (see mapgen/tasks/critique.py).
"""

from dataclasses import dataclass
from typing import ClassVar, Literal

import datasets
from pydantic import BaseModel, Field

import mapgen
from mapgen.tasks.labelling import RATINGS, TEXTS
from mapgen.tasks.parsing import labelled_field, load_json, parse_model, parse_score

TEMPLATE = """\
Question: {{ input }}
Answer: {{ generation }}

Is the answer concise? Rate it from 1 (rambling) to 5 (as short as it can be).
Reply as JSON: {"rating": <1 to 5>, "reason": "<why>"}
"""


class Conciseness(BaseModel):
    """The judge's answer for one text."""

    rating: Literal[1, 2, 3, 4, 5]
    reason: str = Field(max_length=150)


@dataclass(frozen=True, kw_only=True)
class ConcisenessTask(mapgen.LabellingTask):
    """Rate each generation's conciseness, 1 to 5."""

    template: str = TEMPLATE  # reads `input` and, one at a time, each `generation`

    one_request_per_item: ClassVar[bool] = True
    outputs: ClassVar = {"rating": RATINGS, "rationale": TEXTS}  # one value per generation
    answer_model: ClassVar = Conciseness  # the JSON schema constraining backends answer in

    def parse(self, text):  # raise mapgen.ParseError (or ValueError): the row gets None + the reason
        if load_json(text) is not None:  # JSON: validated (an invalid one is asked again)
            answer = parse_model(text, Conciseness)
            return {"rating": float(answer.rating), "rationale": answer.reason}
        return {  # a backend that does not constrain may answer in lines: read them tolerantly
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
