"""generate() end to end on the embedded model, through real datasets.map calls."""

import datasets
import pytest

import mapgen

pytestmark = pytest.mark.llamacpp

GENERATION_COLUMNS = [
    "generations",
    "generation_model",
    "generation_prompt",
    "raw_generation_responses",
    "generation_reasoning",
    "generation_errors",
    "generation_metadata",
]


def test_generate_writes_aligned_columns_with_failures_in_place(tiny_llm):
    ds = datasets.Dataset.from_dict({"input": ["Name a fruit.", None, "Name a color."]})
    # batch_size=1: the first batch written is the failed row, whose columns are all None.
    out = ds.map(mapgen.generate(tiny_llm, num_generations=2), batched=True, batch_size=1)

    assert out.column_names == ["input", *GENERATION_COLUMNS]
    for row in out:
        assert all(len(row[column]) == 2 for column in GENERATION_COLUMNS)
    ok, failed, _ = out
    assert all(isinstance(text, str) and text for text in ok["generations"])
    assert ok["generations"] == ok["raw_generation_responses"]
    assert ok["generation_errors"] == [None, None]
    assert ok["generation_model"] == ["SmolLM2-135M-Instruct.Q4_1"] * 2
    assert ok["generation_prompt"][0] == [{"role": "user", "content": "Name a fruit."}]
    assert ok["generation_metadata"][0]["completion_tokens"] > 0
    assert failed["generations"] == [None, None]
    assert failed["generation_errors"] == ["input: column(s) ['input'] are empty"] * 2


def test_output_chains_with_other_transforms(tiny_llm):
    ds = datasets.Dataset.from_dict({"input": ["Say A.", "Say B.", "Say C."]})
    out = ds.map(mapgen.generate(tiny_llm), batched=True).filter(lambda r: r["generation_errors"] == [None])
    more = datasets.concatenate_datasets([out, out.select([0])])
    assert len(more) == 4
    assert more.features["generations"] == datasets.List(datasets.Value("string"))


def test_system_prompt_and_template_reach_the_model(tiny_llm):
    task = mapgen.TextGenerationTask(system_prompt="Answer in French.", template="Translate: {{ word }}")
    ds = datasets.Dataset.from_dict({"word": ["cat"]})
    out = ds.map(mapgen.generate(tiny_llm, task), batched=True)
    assert out[0]["generation_prompt"][0] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Translate: cat"},
    ]


def test_input_columns_maps_task_inputs_to_dataset_columns(tiny_llm):
    ds = datasets.Dataset.from_dict({"question": ["Say hi."]})
    out = ds.map(mapgen.generate(tiny_llm, input_columns={"input": "question"}), batched=True)
    assert out[0]["generations"][0]


def test_a_raw_prompt_format_sends_one_formatted_string():
    llm = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=8, seed=0, prompt_format="chatml")
    [completion] = llm.complete([mapgen.Request(mapgen.Prompt("Say hi."))])
    assert completion.error is None and completion.text


def test_same_seed_same_text_regardless_of_what_ran_before():
    llm = mapgen.LlamaCppLLM(temperature=1.0, max_new_tokens=16, seed=7)
    request = mapgen.Request(mapgen.Prompt("Write a word."), index=1)
    first = llm.complete([request])[0].text
    llm.complete([mapgen.Request(mapgen.Prompt("Something else entirely."))])
    assert llm.complete([request])[0].text == first


def test_num_proc_with_rank_runs_in_real_worker_processes(tiny_llm):
    ds = datasets.Dataset.from_dict({"input": [f"Count to {i}." for i in range(4)]})
    out = ds.map(mapgen.generate(tiny_llm), batched=True, batch_size=2, num_proc=2, with_rank=True)
    assert [row["input"] for row in out] == ds["input"]
    assert all(row["generation_errors"] == [None] and row["generations"][0] for row in out)


def test_missing_column_fails_before_any_model_is_loaded(tmp_path):
    # A model file that is not GGUF: loading it would fail with another error.
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a model")
    fn = mapgen.generate(mapgen.LlamaCppLLM(model_path=str(bogus)), mapgen.TextGenerationTask())
    ds = datasets.Dataset.from_dict({"prompt": ["hi"], "id": [1]})
    with pytest.raises(mapgen.MissingColumnError, match=r"\['input'\].*Columns present: \['prompt', 'id'\]"):
        ds.map(fn, batched=True)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (
            lambda: mapgen.generate("gpt-4o", mapgen.TextGenerationTask()),
            TypeError,
            "llm must be a mapgen LLM",
        ),
        (lambda: mapgen.generate(mapgen.LlamaCppLLM(), "text"), TypeError, "task must be a mapgen Task"),
        (lambda: mapgen.generate(mapgen.LlamaCppLLM(), num_generations=0), ValueError, "at least 1"),
        (lambda: mapgen.generate(mapgen.LlamaCppLLM(), num_generations="2"), TypeError, "must be an int"),
        (lambda: mapgen.LlamaCppLLM(temperature="hot"), TypeError, "temperature must be a number"),
        (lambda: mapgen.LlamaCppLLM(top_p=2), ValueError, "top_p must be between"),
        (lambda: mapgen.LlamaCppLLM(model_path="/nope.gguf"), FileNotFoundError, "is not a file"),
        (lambda: mapgen.LlamaCppLLM(prompt_format="alpaca"), ValueError, "Unknown prompt format"),
        (
            lambda: mapgen.generate(mapgen.LlamaCppLLM(), input_columns={"question": "q"}),
            ValueError,
            "does not read",
        ),
    ],
)
def test_bad_configuration_is_a_clear_error_at_construction(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_a_parser_that_raises_anything_fails_only_its_answer(fault_server):
    import json
    from dataclasses import dataclass

    @dataclass(frozen=True, kw_only=True)
    class Fields(mapgen.TextGenerationTask):
        def parse(self, text):
            return {"generations": json.loads(text.removeprefix("echo: "))["answer"]}  # KeyError, ValueError

    llm = mapgen.OpenAILLM("m", base_url=fault_server.base_url, api_key=fault_server.api_key)
    ds = datasets.Dataset.from_dict({"input": ['{"answer": "yes"}', '{"other": 1}', "not json"]})
    out = ds.map(mapgen.generate(llm, Fields()), batched=True)
    assert out["generations"] == [["yes"], [None], [None]]
    assert out["generation_errors"][0] == [None]
    assert out["generation_errors"][1] == ["parse: KeyError: 'answer'"]
    assert out["generation_errors"][2][0].startswith("parse: ")
    assert out["raw_generation_responses"][1] == ['echo: {"other": 1}']
