"""mapgen.flatten and mapgen.to_sft on the outputs of real maps (the embedded model): generate, label,
structured, Magpie and conversation; the per-generation columns read from the provenance records."""

import warnings

import datasets
import pytest
from pydantic import BaseModel

import mapgen
from mapgen.mapping import provenance

pytestmark = pytest.mark.llamacpp

MESSAGES = datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})


class Dish(BaseModel):
    dish: str
    minutes: int


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One dataset per kind of map, made once: in a store and datasets cache of their own."""
    root = tmp_path_factory.mktemp("shapes")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_DATASETS_CACHE", str(root / "hf"))
        patch.setenv("MAPGEN_CACHE_DIR", str(root / "mapgen"))
        patch.delenv("MAPGEN_STORE", raising=False)
        llm = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=8, seed=0)
        judge = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=60, seed=0)
        inputs = datasets.Dataset.from_dict({"input": ["Name a fruit.", "Name a color."]})
        generated = inputs.map(mapgen.generate(llm, num_generations=2), batched=True)
        labelled = generated.map(
            mapgen.label(judge, mapgen.UltraFeedbackTask.for_overall_quality()), batched=True
        )
        structured = inputs.select([0]).map(
            mapgen.generate(
                mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=40, seed=0), mapgen.StructuredTask(Dish)
            ),
            batched=True,
        )
        magpie = datasets.Dataset.from_dict({"id": [0, 1]}).map(
            mapgen.generate(llm, mapgen.MagpieTask(system_prompt="You help with cooking.")),
            batched=True,
            with_indices=True,
        )
        conversation = datasets.Dataset.from_dict({"persona": ["a gardener"]}).map(
            mapgen.generate(llm, mapgen.ConversationTask(num_turns=2)), batched=True
        )
        return {
            "generate": generated,
            "label": labelled,
            "structured": structured,
            "magpie": magpie,
            "conversation": conversation,
        }


@pytest.fixture(scope="module")
def tokenizer():
    """The embedded model's tokenizer, with its chat template (read from the GGUF file)."""
    from transformers import AutoTokenizer

    from mapgen.llms.llamacpp import embedded_model_path

    path = embedded_model_path()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def same_usage(a, b):
    assert str(mapgen.usage(a)) == str(mapgen.usage(b))


# flatten


def test_flatten_generate_makes_one_row_per_generation_with_scalar_columns(made):
    ds = made["generate"]
    flat = mapgen.flatten(ds)
    assert flat.num_rows == 4
    assert list(flat["input"]) == ["Name a fruit."] * 2 + ["Name a color."] * 2
    assert list(flat["generation_index"]) == [0, 1, 0, 1]
    assert list(flat["generations"]) == [g for row in ds["generations"] for g in row]
    features = flat.features
    assert features["generations"] == datasets.Value("string")
    assert features["generation_prompt"] == MESSAGES
    assert features["generation_metadata"] == ds.features["generation_metadata"].feature
    assert features["generation_index"] == datasets.Value("int64")
    assert flat[1]["generation_prompt"] == [{"role": "user", "content": "Name a fruit."}]
    assert flat[3]["generation_metadata"] == ds[1]["generation_metadata"][1]
    # the provenance is kept: the card and the totals read the flat rows as they read the lists
    same_usage(flat, ds)
    card = mapgen.dataset_card(flat)
    assert "| 1. generate | 4 |" in card.text and "```jinja\n{{ input }}\n```" in card.text
    # flat already: returned as it is
    assert mapgen.flatten(flat) is flat


def test_flatten_label_keeps_ratings_with_their_generation_and_the_judges_answer_once(made):
    ds = made["label"]
    flat = mapgen.flatten(ds)
    assert flat.num_rows == 4
    assert flat.features["rating"] == datasets.Value("float64")
    assert flat.features["rationale"] == datasets.Value("string")
    for row in flat:
        i, source = row["generation_index"], ds[0 if row["input"] == "Name a fruit." else 1]
        assert (row["generations"], row["rating"], row["rationale"]) == (
            source["generations"][i],
            source["rating"][i],
            source["rationale"][i],
        )
        assert row["labelling_prompt"] == source["labelling_prompt"]  # one prompt for the row: repeated
        assert row["labelling_model"] == source["labelling_model"]
        # one answer rated the whole row: its metadata on the first generation only, counted once
        assert row["labelling_metadata"] == (source["labelling_metadata"] if i == 0 else None)
    same_usage(flat, ds)
    text = mapgen.dataset_card(flat).text
    assert "| 1. generate | 4 |" in text and "| 2. label | 2 |" in text


def test_flatten_label_alone_aligns_with_the_rated_column_as_the_record_names_it():
    judge = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=60, seed=0)
    fn = mapgen.label(
        judge, mapgen.UltraFeedbackTask.for_overall_quality(), input_columns={"generations": "answers"}
    )
    assert provenance.describe(fn)["items"] == "answers"
    ds = datasets.Dataset.from_dict(
        {
            "input": ["What is 2 + 2?", "Say hi."],
            "answers": [["4", None, "5"], []],
            "tags": [["a", "b", "c"], []],
        }
    ).map(fn, batched=True)
    flat = mapgen.flatten(ds)
    assert flat.num_rows == 3  # a row with no texts gives no row
    assert list(flat["answers"]) == ["4", None, "5"]
    assert flat["rating"][1] is None  # the None text got no rating, in its place
    assert (
        list(flat["tags"]) == [["a", "b", "c"]] * 3
    )  # a list column of the row's own: repeated, not unpacked
    same_usage(flat, ds)


def test_flatten_a_judge_with_a_prompt_per_text_unpacks_its_prompts_and_answers():
    ds = datasets.Dataset.from_dict({"input": ["What is 2 + 2?"], "generations": [["4", "5"]]})
    judge = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=30, seed=0)
    ds = ds.map(mapgen.label(judge, mapgen.UltraCMTask()), batched=True)
    flat = mapgen.flatten(ds)
    assert flat.num_rows == 2
    assert flat.features["labelling_prompt"] == MESSAGES
    assert flat[1]["raw_labelling_response"] == ds[0]["raw_labelling_response"][1]
    assert flat[1]["labelling_metadata"] == ds[0]["labelling_metadata"][1]  # an answer per text: each its own
    same_usage(flat, ds)


def test_flatten_structured_fields_take_their_own_types(made):
    ds = made["structured"]
    flat = mapgen.flatten(ds)
    assert flat.features["dish"] == datasets.Value("string")
    assert flat.features["minutes"] == datasets.Value("int64")
    assert list(flat["dish"]) == [row[0] for row in ds["dish"]]
    assert list(flat["minutes"]) == [row[0] for row in ds["minutes"]]
    mapgen.dataset_card(flat)


def test_flatten_magpie_and_conversation_outputs(made):
    magpie = mapgen.flatten(made["magpie"])
    assert magpie.num_rows == 2 and list(magpie["id"]) == [0, 1]
    assert magpie.features["instruction"] == datasets.Value("string")
    assert magpie.features["conversation"] == MESSAGES
    assert magpie[0]["conversation"] == made["magpie"][0]["conversation"][0]
    conversation = mapgen.flatten(made["conversation"])
    assert conversation.features["conversation"] == MESSAGES
    assert conversation[0]["conversation"] == made["conversation"][0]["conversation"][0]
    mapgen.dataset_card(conversation)


def test_rows_whose_columns_disagree_are_refused_not_misaligned(made):
    ds = made["label"].map(
        lambda row, i: {"rating": row["rating"][:1] if i == 1 else row["rating"]}, with_indices=True
    )
    with pytest.raises(ValueError, match=r"row 1 has 1 value\(s\) in 'rating' and 2 in 'generations'"):
        mapgen.flatten(ds)
    joined = made["generate"].map(lambda row: {"generations": " / ".join(row["generations"])})
    with pytest.raises(ValueError, match=r"\['generations'\].*hold no lists"):
        mapgen.flatten(joined)


def test_a_lost_record_is_named_and_columns_name_what_to_unpack(made, monkeypatch):
    monkeypatch.setattr(provenance, "_FUNCTIONS", {})  # a new process, whose store does not hold the records
    monkeypatch.setattr(provenance, "_REGISTRY", {})
    ds = made["generate"]
    with pytest.raises(
        ValueError, match=r"not in this process or the response store.*columns=\[\.\.\.\]"
    ) as lost:
        mapgen.flatten(ds)
    assert "read from the Hub, a store cleared since" in str(lost.value)
    assert "a generate step's are ['generations'," in str(lost.value)  # what to name
    flat = mapgen.flatten(ds, columns=["generations", *mapgen.report.shapes.GENERATE_COLUMNS])
    assert flat.num_rows == 4 and flat.features["generations"] == datasets.Value("string")
    same_usage(flat, ds)
    with pytest.raises(ValueError, match="no answer metadata"):
        mapgen.flatten(datasets.Dataset.from_dict({"generations": [["a"]]}))
    assert mapgen.flatten(datasets.Dataset.from_dict({"g": [["a", "b"]]}), columns=["g"])["g"][:] == [
        "a",
        "b",
    ]


def test_records_are_read_from_the_store_in_a_new_process(tiny_llm, monkeypatch):
    ds = datasets.Dataset.from_dict({"input": ["Name a fruit."]}).map(mapgen.generate(tiny_llm), batched=True)
    monkeypatch.setattr(provenance, "_FUNCTIONS", {})
    monkeypatch.setattr(provenance, "_REGISTRY", {})
    assert mapgen.flatten(ds).features["generations"] == datasets.Value("string")


def test_what_is_not_a_dataset_is_refused():
    with pytest.raises(TypeError, match=r"datasets\.Dataset"):
        mapgen.flatten({"generations": [["a"]]})
    with pytest.raises(TypeError, match="each split"):
        mapgen.to_sft(datasets.DatasetDict({"train": datasets.Dataset.from_dict({"x": [1]})}))


# to_sft


def test_to_sft_pairs_each_prompt_with_its_answer(made):
    ds = made["label"]
    sft = mapgen.to_sft(ds, keep_columns=["rating", "generation_index"])
    assert sft.column_names == [
        "messages",
        "rating",
        "generation_index",
        "generation_model",
        "labelling_model",
        "generation_metadata",
        "labelling_metadata",
    ]
    assert sft.features["messages"] == MESSAGES
    assert sft[1]["messages"] == [
        {"role": "user", "content": "Name a fruit."},
        {"role": "assistant", "content": ds[0]["generations"][1]},
    ]
    assert list(sft["rating"]) == [r for row in ds["rating"] for r in row]
    same_usage(sft, ds)
    text = mapgen.dataset_card(sft).text
    assert "| 1. generate | 4 |" in text and "| 2. label | 2 |" in text
    assert mapgen.to_sft(mapgen.flatten(ds))["messages"][:] == sft["messages"][:]  # flat or not
    with pytest.raises(ValueError, match=r"keep_columns names \['nope'\]"):
        mapgen.to_sft(ds, keep_columns=["nope"])


def test_to_sft_structured_answers_are_the_json_the_model_wrote(made):
    ds = made["structured"]
    sft = mapgen.to_sft(ds)
    assert [m[-1]["content"] for m in sft["messages"]] == [row[0] for row in ds["raw_generation_responses"]]


def test_to_sft_magpie_and_conversations_are_the_whole_conversation(made):
    magpie = mapgen.to_sft(made["magpie"])
    assert [m["role"] for m in magpie[0]["messages"]] == ["system", "user", "assistant"]
    assert magpie[0]["messages"][0]["content"] == "You help with cooking."
    assert magpie[0]["messages"] == made["magpie"][0]["conversation"][0]
    conversation = mapgen.to_sft(made["conversation"])
    assert [m["role"] for m in conversation[0]["messages"]] == ["user", "assistant", "user", "assistant"]
    mapgen.dataset_card(conversation)


def test_to_sft_leaves_failed_answers_out_and_counts_them(tiny_llm, made):
    ds = datasets.Dataset.from_dict({"input": ["Name a fruit.", "  ", None]})
    ds = ds.map(mapgen.generate(tiny_llm, num_generations=2), batched=True)
    with pytest.warns(
        mapgen.MapgenWarning, match=r"left out 4 of 6 answers that failed \(input 4\); 2 make"
    ) as said:
        sft = mapgen.to_sft(ds)
    assert sft.num_rows == 2
    assert said[0].filename == __file__  # the warning points at the caller's line, not mapgen's
    # Magpie's instructions alone have no assistant turn: nothing to learn from
    only = datasets.Dataset.from_dict({"id": [0]}).map(
        mapgen.generate(tiny_llm, mapgen.MagpieTask(only_instruction=True)), batched=True, with_indices=True
    )
    with pytest.warns(mapgen.MapgenWarning, match=r"no assistant turn 1"):
        assert mapgen.to_sft(only).num_rows == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", mapgen.MapgenWarning)
        mapgen.to_sft(made["generate"])  # nothing failed: no warning
    with pytest.raises(ValueError, match="Generate first"):
        mapgen.to_sft(
            datasets.Dataset.from_dict({"input": ["a"], "generations": [["b"]]}), columns=["generations"]
        )


def test_to_sft_rows_are_what_trainers_read(made, tokenizer):
    """TRL's conversational format where TRL is installed; the model's own chat template renders every row."""
    for name, ds in made.items():
        sft = mapgen.to_sft(ds)
        assert sft.num_rows > 0, name
        for row in sft:
            messages = row["messages"]
            assert messages[-1]["role"] == "assistant" and messages[-1]["content"], name
            text = tokenizer.apply_chat_template(messages, tokenize=False)
            assert text.rstrip().endswith(messages[-1]["content"] + "<|im_end|>"), (name, text)
    try:
        from trl.data_utils import is_conversational, maybe_apply_chat_template
    except ImportError:  # not in the test extras: the template check above is the one that runs
        return
    for name, ds in made.items():
        for row in mapgen.to_sft(ds):
            assert is_conversational(row), name
            # TRL's own check of the keys (a language-modeling dataset: "messages"), then the template
            assert maybe_apply_chat_template(row, tokenizer)["text"].endswith("<|im_end|>\n"), name
