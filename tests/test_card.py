"""Provenance and dataset cards: what the map functions record, the card built from it in a new process
and after a cached re-run, the push to a Hub stand-in (tests/servers/hub_server.py, a test double: the
Hub cannot run here), and the CLI's --push-to-hub and --dataset user/name."""

import base64
import importlib.util
import json
import re
import sys
import urllib.request
from collections import Counter
from collections.abc import Callable

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mapgen
from mapgen.mapping import provenance
from tests.servers.fixtures import ROOT, free_port, running
from tests.test_cli import mapgen as mapgen_cli

llamacpp = pytest.mark.llamacpp
HUB_TOKEN = "hf_standin_token_0123456789abcdef"


def chain(card) -> list[str]:
    return card.data.to_dict()["mapgen"]["fingerprint_chain"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The Hub stand-in, and the environment that points huggingface_hub at it (Xet off: it has no Xet)."""
    port = free_port()
    command = [sys.executable, "-m", "tests.servers.hub_server", "--port", str(port), "--token", HUB_TOKEN]
    log = tmp_path_factory.mktemp("hub") / "hub.log"
    with running(command, f"http://127.0.0.1:{port}/_received", timeout=30, log=log):
        yield {
            "url": f"http://127.0.0.1:{port}",
            "env": {
                "HF_ENDPOINT": f"http://127.0.0.1:{port}",
                "HF_TOKEN": HUB_TOKEN,
                "HF_HUB_DISABLE_XET": "1",
                "HF_HOME": str(tmp_path_factory.mktemp("hf_home")),
                "PYTHONPATH": str(ROOT),
            },
        }


def hub_files(hub, repo_id: str) -> dict[str, bytes]:
    with urllib.request.urlopen(f"{hub['url']}/_files/{repo_id}") as response:
        files = json.loads(response.read())["files"]
    return {path: base64.b64decode(data) for path, data in files.items()}


def hub_received(hub) -> list[dict]:
    with urllib.request.urlopen(f"{hub['url']}/_received") as response:
        return json.loads(response.read())


@llamacpp
def test_the_quickstart_card_lists_both_steps_and_a_changed_parameter_changes_its_chain(tmp_path):
    """The README's quickstart (generate, then label), small; the card is made in this process, which ran
    neither map: every record comes from the response store the CLI wrote."""

    def quickstart(name: str, temperature: str) -> datasets.Dataset:
        generated, labelled = tmp_path / f"{name}-generated", tmp_path / f"{name}-labelled"
        small = ["--limit", "1", "--seed", "0"]
        done = mapgen_cli(
            "generate", "--num-generations", "2", "--max-new-tokens", "8", "--temperature", temperature,
            *small, "--output", str(generated),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        done = mapgen_cli("label", "--dataset", str(generated), "--max-new-tokens", "16", *small,
                          "--output", str(labelled))  # fmt: skip
        assert done.returncode == 0, done.stderr
        return datasets.load_from_disk(str(labelled))

    provenance._forget()  # as in a new process: every record must come from the store
    first = mapgen.dataset_card(quickstart("a", "0.7"))
    text = first.text
    generate_section, label_section = text.split("### 1. generate")[1].split("### 2. label")
    assert (
        "`SmolLM2-135M-Instruct.Q4_1`" in generate_section and "`SmolLM2-135M-Instruct.Q4_1`" in label_section
    )
    assert "mapgen.tasks.text_generation.TextGenerationTask" in generate_section
    assert "mapgen.tasks.ultrafeedback.UltraFeedbackTask" in label_section
    # both models' parameters, as set on the command line
    assert '"temperature": 0.7' in generate_section and '"max_new_tokens": 8' in generate_section
    assert '"temperature": 0.0' in label_section and '"max_new_tokens": 16' in label_section
    # both templates, as their tasks hold them
    assert "```jinja\n{{ input }}\n```" in generate_section
    judge_template = mapgen.UltraFeedbackTask.for_small_models("text-quality").template
    assert judge_template.strip() in label_section
    assert "the model's own chat template (from the GGUF file)" in generate_section
    assert "record of this step is not" not in text

    second = mapgen.dataset_card(quickstart("b", "0.5"))
    a, b = chain(first), chain(second)
    assert a[0].startswith("generate:") and a[1].startswith("label:") and a[2].startswith("dataset:")
    assert a[0] != b[0]  # the changed step
    assert a[1] == b[1]  # the judge's function is the same...
    assert a[2] != b[2]  # ...but the dataset it made is not
    assert '"temperature": 0.5' in second.text


@llamacpp
def test_the_card_after_a_cached_rerun_counts_tokens_and_errors(tmp_path, tiny_llm):
    source = tmp_path / "prompts.jsonl"
    source.write_text('{"input": "Name a fruit."}\n{"input": ""}\n{"input": "Name a colour."}\n')
    fn = mapgen.generate(tiny_llm, num_generations=2)
    ds = datasets.load_dataset("json", data_files=str(source), split="train").map(fn, batched=True)
    provenance._forget()  # as in a new process
    mapgen.counters.reset()
    again = datasets.load_dataset("json", data_files=str(source), split="train").map(fn, batched=True)
    assert mapgen.counters.snapshot()["requests"] == 0 and again._fingerprint == ds._fingerprint

    card = mapgen.dataset_card(again)
    metadata = [m for row in ds["generation_metadata"] for m in row]
    assert {m["provenance"] for m in metadata} == {mapgen.fingerprint(fn)}
    prompt_tokens = sum(m["prompt_tokens"] or 0 for m in metadata)
    completion_tokens = sum(m["completion_tokens"] or 0 for m in metadata)
    requested = sum(m["prompt_tokens"] is not None for m in metadata)  # the empty row sent nothing
    assert prompt_tokens > 0 and requested == 4
    totals = f"| 1. generate | {requested} | 0 | {prompt_tokens} | {completion_tokens} | unknown |"
    assert totals in card.text
    assert "- failed, by kind: input: 2" in card.text  # the empty row's two generations
    assert chain(card) == [f"generate:{mapgen.fingerprint(fn)}", f"dataset:{again._fingerprint}"]

    splits = datasets.DatasetDict({"train": again.select([0, 1]), "test": again.select([2])})
    whole = mapgen.dataset_card(splits)  # one card for both splits: their rows together
    assert totals in whole.text
    assert chain(whole)[1:] == [f"dataset[{name}]:{split._fingerprint}" for name, split in splits.items()]
    assert card.data.to_dict()["size_categories"] == ["n<1K"]
    assert "```jinja\n{{ input }}\n```" in card.text

    # the card counts the rows at hand: after a filter, one row of three
    kept = again.filter(lambda row: row["input"] == "Name a fruit.")
    assert "| 1. generate | 2 | 0 |" in mapgen.dataset_card(kept).text


@llamacpp
def test_without_the_store_a_new_process_card_says_the_record_is_missing(tiny_llm):
    ds = datasets.Dataset.from_dict({"input": ["Name a fruit."]})
    ds = ds.map(mapgen.generate(tiny_llm, cache=False), batched=True)
    assert "```jinja\n{{ input }}\n```" in mapgen.dataset_card(ds).text  # this process keeps it
    provenance._forget()
    text = mapgen.dataset_card(ds).text
    assert "The record of this step is not in this process or the response store" in text
    assert "- models: `SmolLM2-135M-Instruct.Q4_1`" in text


def test_records_hold_no_key_nor_store_password(fault_server):
    secret = "sk-do-not-publish-0123456789"
    llm = mapgen.OpenAILLM("gpt-test", base_url="http://127.0.0.1:1/v1", api_key=secret)
    fn = mapgen.generate(llm, store="postgresql://app:hunter2@127.0.0.1:1/db")
    record = json.dumps(provenance.describe(fn))
    assert secret not in record and "hunter2" not in record
    assert "http://127.0.0.1:1/v1" in record  # where requests went: part of the record

    llm = mapgen.OpenAILLM("fault", base_url=fault_server.base_url, api_key=fault_server.api_key, seed=3)
    ds = datasets.Dataset.from_dict({"input": ["Hello"]}).map(mapgen.generate(llm), batched=True)
    card = mapgen.dataset_card(ds, repo_id="tester/hello")
    assert fault_server.api_key not in str(card)
    assert "chat messages: the server applies the model's chat template" in card.text
    assert '"seed": 3' in card.text and "mapgen.llms.openai.OpenAILLM" in card.text


def test_a_dataset_without_mapgen_columns_is_refused():
    with pytest.raises(ValueError, match=r"no column written by mapgen.*\['input'\]"):
        mapgen.dataset_card(datasets.Dataset.from_dict({"input": ["x"]}))
    with pytest.raises(TypeError, match=r"datasets\.Dataset"):
        mapgen.dataset_card({"input": ["x"]})


@llamacpp
def test_the_example_writes_the_card(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "example_dataset_card", ROOT / "examples" / "dataset_card.py"
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    ds = example.main(max_new_tokens=8, out=str(tmp_path))
    card = (tmp_path / "README.md").read_text()
    assert card == str(mapgen.dataset_card(ds))
    assert "### 1. generate" in card and "### 2. label" in card and "```jinja\n{{ input }}\n```" in card
    chart = (tmp_path / "rating_distribution.svg").read_text()  # beside the card, which shows it
    assert "](rating_distribution.svg)" in card and set(svg_bars(chart)) == {"rating", "weighted_rating"}


@llamacpp
def test_cli_pushes_then_reads_the_hub_dataset_back(hub, tmp_path):
    """mapgen.push_to_hub through the CLI, against the Hub stand-in: the data, then the card as README.md
    keeping what datasets wrote there; the token goes to the Hub's write routes and nowhere else."""
    env = hub["env"]
    done = mapgen_cli("generate", "--limit", "1", "--max-new-tokens", "4", "--seed", "0",
                      "--push-to-hub", "tester/cli", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{hub['url']}/datasets/tester/cli" in done.stdout
    files = hub_files(hub, "tester/cli")
    assert "data/train-00000-of-00001.parquet" in files
    readme = files["README.md"].decode()
    assert (
        readme.startswith("---\n") and "# tester/cli" in readme and "## How the columns were made" in readme
    )
    assert "dataset_info:" in readme and "configs:" in readme  # what datasets wrote, kept
    assert HUB_TOKEN not in readme and HUB_TOKEN not in done.stdout + done.stderr
    received = hub_received(hub)
    writes = [r for r in received if r["method"] in ("POST", "PUT") and "/api/datasets/" in r["path"]]
    assert writes and all(r["auth"] == f"Bearer {HUB_TOKEN}" for r in writes)

    # --dataset user/name reads the Hub dataset; the labelled result goes back with both steps' card
    done = mapgen_cli("label", "--dataset", "tester/cli", "--max-new-tokens", "8", "--seed", "0",
                      "--push-to-hub", "tester/cli-labelled", "--private", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    files = hub_files(hub, "tester/cli-labelled")
    readme = files["README.md"].decode()
    assert "### 1. generate" in readme and "### 2. label" in readme
    assert 'ds = load_dataset("tester/cli-labelled")' in readme
    # the chart, beside the README in the same commit, draws the ratings of the rows pushed
    assert "](rating_distribution.svg)" in readme and "rating_distribution.svg" not in hub_files(
        hub, "tester/cli"
    )
    pushed = pq.read_table(pa.BufferReader(files["data/train-00000-of-00001.parquet"])).to_pylist()
    ratings = Counter(int(r) for row in pushed for r in row["rating"] if r is not None)
    assert ratings  # the judge rated something
    bars = svg_bars(files["rating_distribution.svg"].decode())["rating"]
    assert {score: count for score, (count, _) in bars.items()} == {s: ratings[s] for s in range(1, 6)}

    wrong = "hf_wrong_token_do_not_print"
    done = mapgen_cli("generate", "--limit", "1", "--max-new-tokens", "2", "--push-to-hub", "tester/no",
                      env={**env, "HF_TOKEN": wrong})  # fmt: skip
    assert done.returncode == 2 and "mapgen: error: --push-to-hub tester/no: the Hub refused" in done.stderr
    assert "401" in done.stderr and wrong not in done.stdout + done.stderr

    unreachable = {**env, "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there
    done = mapgen_cli("generate", "--limit", "1", "--max-new-tokens", "2", "--push-to-hub", "tester/off",
                      env=unreachable)  # fmt: skip
    assert done.returncode == 2 and "cannot push 'tester/off': the Hub at http://127.0.0.1:9" in done.stderr
    assert "nothing was uploaded" in done.stderr and "Traceback" not in done.stderr
    assert HUB_TOKEN not in done.stdout + done.stderr


def test_cli_names_the_hub_dataset_it_cannot_reach(tmp_path):
    done = mapgen_cli("generate", "--dataset", "someone/prompts", env={"HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2
    assert "mapgen: error: 'someone/prompts' is no local file or folder, and the Hub" in done.stderr
    assert "cannot be reached" in done.stderr and "Traceback" not in done.stderr


LONG_ANSWER = "Teal is a blue-green colour named after the duck. " * 8  # 408 characters, cut at the limit
MARKUP_ANSWER = "<b>Bold</b> | *star* see http://user:pw-0123@example.com/x?api_key=sk-card-secret"
JUDGE_REPLIES = [  # JudgeLM's format: the two answers' scores, then why
    {"model": "judge", "contains": "Apple", "reply": "9 7\nBoth name a fruit."},
    {"model": "judge", "contains": "Teal", "reply": "3 3\nCut short."},
    {"model": "judge", "contains": "Bold", "reply": "5 8\nMarkup."},
]


def scripted_rated_dataset(fault_server) -> datasets.Dataset:
    """Three rows, two answers each from a scripted writer (the colour's cut at the token limit), rated by
    a scripted JudgeLM judge: the card's inputs with known values."""
    fault_server.configure(
        api_key=fault_server.api_key,
        replies=[
            {"model": "writer", "contains": "fruit", "reply": ["Apple", "Pear"]},
            {"model": "writer", "contains": "colour", "reply": LONG_ANSWER, "finish_reason": "length"},
            {"model": "writer", "contains": "markup", "reply": MARKUP_ANSWER},
            *JUDGE_REPLIES,
        ],
    )

    def llm(model: str) -> mapgen.OpenAILLM:
        return mapgen.OpenAILLM(model, base_url=fault_server.base_url, api_key=fault_server.api_key)

    ds = datasets.Dataset.from_dict({"input": ["Name a fruit.", "Describe a colour.", "Write some markup."]})
    ds = ds.map(mapgen.generate(llm("writer"), num_generations=2), batched=True)
    return ds.map(mapgen.label(llm("judge"), mapgen.JudgeLMTask()), batched=True)


def svg_bars(svg: str) -> dict[str, dict[int, tuple[int, float]]]:
    """Per rating column: score -> (the count its bar's title says, the bar's height); the bars of a
    column stand on one line."""
    import xml.etree.ElementTree as ET

    bars: dict[str, dict[int, tuple[int, float]]] = {}
    bottoms: dict[str, set[float]] = {}
    namespace = "{http://www.w3.org/2000/svg}"
    for rect in ET.fromstring(svg).iter(f"{namespace}rect"):
        if rect.get("class") != "bar":
            continue
        column, score, count = re.fullmatch(
            r"(\S+) (\d+): (\d+) answers", rect.find(f"{namespace}title").text
        ).groups()
        bars.setdefault(column, {})[int(score)] = (int(count), float(rect.get("height")))
        bottoms.setdefault(column, set()).add(round(float(rect.get("y")) + float(rect.get("height")), 1))
    assert all(len(lines) == 1 for lines in bottoms.values()), bottoms
    return bars


def test_the_card_shows_rows_a_loading_snippet_the_ratings_and_the_answers_cut(fault_server, tmp_path):
    ds = scripted_rated_dataset(fault_server)
    assert ds["rating"] == [[9.0, 7.0], [3.0, 3.0], [5.0, 8.0]]
    metadata = [m for row in ds["generation_metadata"] for m in row]
    assert [m["finish_reason"] for m in metadata] == ["stop", "stop", "length", "length", "stop", "stop"]

    card = mapgen.dataset_card(ds, repo_id="tester/colours")
    text = card.text
    assert '```python\nfrom datasets import load_dataset\n\nds = load_dataset("tester/colours")\n```' in text

    # the first three rows, their own columns and the answers: texts cut, escaped, URL secrets masked
    rows = text.split("## Example rows")[1].split("## Ratings")[0]
    assert rows.count("| column | value |") == 3
    assert "| `input` | Name a fruit. |" in rows and "| `generations` | (1) Apple<br>(2) Pear |" in rows
    assert "| `rating` | 9, 7 |" in rows and "| `rationale` | Both name a fruit. |" in rows
    cut = LONG_ANSWER[:199].rstrip() + "…"
    assert f"| `generations` | (1) {cut}<br>(2) {cut} |" in rows
    shown_markup = r"&lt;b&gt;Bold&lt;/b&gt; \| \*star\* see http://user:\*\*\*@example.com/x?api\_key=\*\*\*"
    assert f"(1) {shown_markup}<br>" in rows
    assert "pw-0123" not in str(card) and "sk-card-secret" not in str(card)
    generated = ["generation_metadata", "generation_prompt", "raw_generation_responses", "generation_errors"]
    for left_out in [*generated, "labelling_prompt", "raw_labelling_response", "labelling_metadata"]:
        assert f"| `{left_out}` |" not in rows

    # the ratings: a table of counts on JudgeLM's 1-10 scale, and the chart beside the card
    expected = {score: 0 for score in range(1, 11)} | {3: 2, 5: 1, 7: 1, 8: 1, 9: 1}
    assert "![How many answers got each score (`rating`)](rating_distribution.svg)" in text
    table = "\n".join(f"| {s} | {n} | {'█' * round(20 * n / 2)} |" if n else f"| {s} | {n} | |"
                      for s, n in expected.items())  # fmt: skip
    assert "`rating`, from 1 to 10:\n\n| `rating` | answers | |\n|---|---|---|\n" + table in text
    bars = svg_bars(card.files["rating_distribution.svg"])
    assert list(bars) == ["rating"]
    assert {score: count for score, (count, _) in bars["rating"].items()} == expected
    tallest = bars["rating"][3][1]
    assert tallest > 0 and all(
        height == pytest.approx(tallest * count / 2) for count, height in bars["rating"].values()
    )

    # the two answers cut at max_new_tokens, counted for their step
    assert "**2 of 9 answers were cut at the token limit** (2 by generate (`generation_metadata`))" in text
    assert mapgen.summary(ds).truncated == 2  # the count the summary and the CLI print
    advice = re.search(r"`ds\.filter\((lambda row: .*?)\)` picks out their rows\.", text).group(1)
    assert ds.filter(eval(advice))["input"] == [
        "Describe a colour."
    ]  # the card's filter runs, and picks them
    generate_section, label_section = text.split("### 1. generate")[1].split("### 2. label")
    assert "- cut at the token limit (`finish_reason` `length`): 2" in generate_section
    assert "- cut at the token limit (`finish_reason` `length`): 0" in label_section
    assert "| cost (USD) | cut at the token limit |" in text
    assert re.search(r"\| 1\. generate \| 6 \| 0 \| .* \| 2 \|\n\| 2\. label \| 3 \| 0 \| .* \| 0 \|", text)

    # save() writes the chart beside the card, which links to it
    card.save(tmp_path / "card" / "README.md")
    assert (tmp_path / "card" / "rating_distribution.svg").read_text() == card.files[
        "rating_distribution.svg"
    ]

    # without a repo id, a placeholder; without ratings or cut answers, neither section
    generated = ds.remove_columns(["rating", "rationale"]).filter(
        lambda row: row["input"] != "Describe a colour."
    )
    plain = mapgen.dataset_card(generated)
    assert (
        'ds = load_dataset("<user>/<dataset>")' in plain.text
        and "`<user>/<dataset>` stands for" in plain.text
    )
    assert "## Ratings" not in plain.text and plain.files == {}
    assert "were cut at the token limit**" not in plain.text and "| 1. generate | 4 | 0 |" in plain.text


# The judge, measured: agreement with people, position consistency, a jury's agreement ---------------------


def swapped_dataset(fault_server) -> datasets.Dataset:
    """Three rows judged in both orders (tests/test_swap.py's scripted judge): rows 0 and 1 by content (the
    good answer 5, the bad 2, both ways), row 2 by position (whatever comes first wins: good 4, bad 3 on
    the mean, inconsistent)."""
    from tests.test_swap import BAD, GOOD, TASK, by_content, first_wins, judge, rows, run

    rules = [*by_content(GOOD[0], BAD[0]), *by_content(GOOD[1], BAD[1]), *first_wins(GOOD[2], BAD[2])]
    return run(mapgen.label(judge(fault_server, *rules), TASK, swap=True), rows())


def test_the_card_shows_the_judges_agreement_with_people_and_its_position_consistency(fault_server):
    from sklearn.metrics import cohen_kappa_score

    ds = swapped_dataset(fault_server)
    assert ds["rating"] == [[5.0, 2.0], [5.0, 2.0], [4.0, 3.0]]
    assert ds["rating_consistency"] == [True, True, False]
    text = mapgen.dataset_card(ds).text
    assert "## The judge, measured" in text and "Agreement of" not in text  # nobody reviewed yet
    consistency = "Position consistency: 0.667 (2 of 3 rows kept the judge's ranking when their answers "
    assert consistency in text

    # As mapgen.pull_from_argilla writes two annotators' reviews: the consensus (median) and each rating.
    each = [[[4, 5], [1, 2]], [[5, 5], [1, 1]], [[4, 4], [2, 2]]]
    ds = ds.add_column("human_ratings", each)
    ds = ds.add_column("human_rating", [[sum(r) / 2 for r in row] for row in each])
    text = mapgen.dataset_card(ds).text
    # By hand: the judge's 5 2 5 2 4 3 against people's 4.5 1.5 5 1 4 2, whole (half up) 5 2 5 1 4 2:
    # 4 of 6 exactly, all 6 within one, and the judge orders all 3 pairs as people do.
    judge, people = [5, 2, 5, 2, 4, 3], [5, 2, 5, 1, 4, 2]
    kappa = cohen_kappa_score(people, judge, labels=[1, 2, 3, 4, 5], weights="quadratic")
    result = mapgen.agreement(ds, seed=0, resamples=1000)
    assert result.kappa == pytest.approx(kappa, abs=1e-12)
    low, high = result.intervals["exact"]
    assert "| n | 6 | answers rated by `rating` and `human_rating`, in 3 rows |" in text
    assert f"| kappa (Cohen, quadratic) | {kappa:.3f} | [" in text
    assert f"| exact | 0.667 | [{low:.3f}, {high:.3f}] |" in text
    assert "| within_one | 1.000 |" in text
    assert "| pairwise_accuracy | 1.000 | [1.000, 1.000]  of 3 pairs people ordered |" in text
    assert f"| annotators' alpha (ceiling) | {result.annotators_alpha:.3f} |" in text
    assert "95% intervals from 1000 bootstrap resamples of rows, seed 0" in text
    assert consistency in text
    # the section sits between the ratings and the steps
    assert text.index("## Ratings") < text.index("## The judge, measured") < text.index("## How the columns")


def test_without_the_judges_extra_the_card_says_so_in_one_line(fault_server, monkeypatch):
    ds = swapped_dataset(fault_server).add_column("human_rating", [[4, 2], [5, 1], [4, 2]])
    monkeypatch.setitem(sys.modules, "krippendorff", None)  # as if not installed
    text = mapgen.dataset_card(ds).text
    assert (
        "Agreement of the judge's `rating` with people's `human_rating`: not computed. mapgen.agreement "
        "needs krippendorff, which is not installed: pip install 'mapgen[judges]'.\n"
    ) in text
    assert "| kappa" not in text and "Position consistency: 0.667" in text


def scripted_models(fault_server) -> Callable[[str], mapgen.OpenAILLM]:
    """The fault server set up so that ``judge-a``, ``judge-b`` and ``judge-c`` rate as tests/test_jury.py's
    ``RATINGS`` say, and ``writer`` or ``judge-a`` answer ``q1`` with x, y, z; the models, by name."""
    from tests.test_jury import RATINGS, blocks

    rules = [
        {"model": model, "contains": shown, "reply": blocks(ratings)}
        for model, rows in RATINGS.items()
        for shown, ratings in rows.items()
    ]  # first: a judge's prompt holds the question too, which the writers' rules below look for
    writers = [
        {"model": model, "contains": "q1", "reply": ["x", "y", "z"]} for model in ("writer", "judge-a")
    ]
    fault_server.configure(api_key=fault_server.api_key, replies=[*rules, *writers])
    return lambda model: mapgen.OpenAILLM(model, base_url=fault_server.base_url, api_key=fault_server.api_key)


def written_and_judged(writer: mapgen.OpenAILLM, judge: mapgen.OpenAILLM | mapgen.Jury) -> datasets.Dataset:
    """``q1`` answered three times by ``writer``, then rated by ``judge`` (a model or a jury)."""
    ds = datasets.Dataset.from_dict({"input": ["q1"]})
    ds = ds.map(mapgen.generate(writer, num_generations=3), batched=True)
    ds = ds.map(mapgen.label(judge, mapgen.UltraFeedbackTask()), batched=True)
    assert ds["generations"] == [["x", "y", "z"]]
    return ds


SELF_PREFERENCE = (
    "Self-preference: `judge-a` both wrote and judged the answers (`generation_model`, `labelling_model`): "
    "LLM judges tend to rate their own answers higher.\n"
)


def test_the_card_shows_a_jurys_agreement_its_members_and_a_member_that_also_wrote(fault_server):
    from tests.test_jury import MODELS

    llm = scripted_models(fault_server)

    def card(writer: str) -> str:
        ds = written_and_judged(llm(writer), mapgen.Jury([llm(m) for m in MODELS]))
        assert ds["jury_agreement"] == [pytest.approx(1 / 11)]  # tests/test_jury.py works it out by hand
        return mapgen.dataset_card(ds).text

    text = card("writer")
    members = ", ".join(f"`{m}`" for m in MODELS)
    assert "Jury agreement: 0.091 (the mean `jury_agreement` over 1 row: Kendall's W" in text
    assert f"Members: {members}. Answers written by: `writer`.\n" in text
    assert "Self-preference" not in text
    text = card("judge-a")
    assert f"Members: {members}. Answers written by: `judge-a`.\n" in text
    assert SELF_PREFERENCE in text


def test_the_card_warns_when_a_single_judge_rated_its_own_answers(fault_server):
    llm = scripted_models(fault_server)
    others = written_and_judged(llm("writer"), llm("judge-a"))
    assert others["labelling_model"] == ["judge-a"] and others["rating"] == [[5.0, 3.0, 1.0]]
    assert "Self-preference" not in mapgen.dataset_card(others).text
    own = written_and_judged(llm("judge-a"), llm("judge-a"))
    assert own["generation_model"] == [["judge-a"] * 3] and own["rating"] == [[5.0, 3.0, 1.0]]
    text = mapgen.dataset_card(own).text
    assert "## The judge, measured\n\n" + SELF_PREFERENCE in text  # no jury: the note stands on its own
    assert "Jury agreement" not in text


def test_the_judge_checks_line_says_what_judges_that_cannot_judge_score():
    """Chance accuracy is 0.5 whatever the judge does; consistency alone does not tell a useless judge
    (tests/test_judge_check.py measures the always-first judge at 0.5 and 0)."""
    from mapgen.report.card_judges import judge_lines

    always_tie = {"n": 30, "task": "PairwiseJudgeTask", "pairwise_accuracy": 0.5, "position_consistency": 1.0}
    lines = judge_lines(datasets.Dataset.from_dict({"rating": [[4.0, 2.0]]}), ["rating"], [always_tie])
    assert lines == [
        "## The judge, measured",
        "",
        "Judge check (`mapgen.judge_check`, 30 pairs of a checkably better and worse answer, with "
        "PairwiseJudgeTask): pairwise accuracy 0.500, position consistency 1.000 (chance accuracy is 0.5; "
        "consistency alone does not show a judge that cannot judge: one always preferring the first answer "
        "scores 0.5 and 0, a coin flip about 0.5 and 0.5, one always calling a tie 0.5 and 1).",
        "",
    ]
