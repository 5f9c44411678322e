"""mapgen.judge_check: the shipped pairs (checked, reproducible, in the wheel) and the figures it reports.

The judges are the real :class:`mapgen.OpenAILLM` against the fault server, scripted per prompt (a judge
that always picks the better answer, one that always picks the first position, one that always ties, one
whose answers cannot be read), and the embedded model through llama.cpp.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import datasets
import pytest

import mapgen
from mapgen.cli import main
from mapgen.judging.check import ORDERS
from mapgen.judging.pairs import FIELDS, load_pairs, sample_pairs
from tests.test_install import _source_copy

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "mapgen" / "judging" / "data"
PRICE = (1.0, 2.0)
"""USD per million input and output tokens of the scripted judges."""


def make_pairs_module():
    spec = importlib.util.spec_from_file_location("make_pairs", DATA / "make_pairs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_file_is_what_make_pairs_writes():
    # make_pairs checks every pair as it writes it (raising on one that does not check): the shipped
    # file being its output means every shipped pair was checked.
    module = make_pairs_module()
    assert module.render(module.make_pairs()) == (DATA / "pairs.jsonl").read_text(encoding="utf-8")


def test_the_set_has_120_pairs_in_six_categories_with_every_field():
    pairs = load_pairs()
    assert len(pairs) == 120
    counts: dict[str, int] = {}
    for one in pairs:
        assert tuple(one) == FIELDS
        assert all(isinstance(one[name], str) and one[name] for name in FIELDS)
        assert one["better"] != one["worse"]
        counts[one["category"]] = counts.get(one["category"], 0) + 1
    assert counts == {c: 20 for c in ("arithmetic", "units", "dates", "capitals", "code", "instructions")}
    assert len({one["id"] for one in pairs}) == 120


def test_arithmetic_and_weekdays_check_independently():
    """Recomputed here from the prompt alone, not with make_pairs' own code."""
    operators = {"+": int.__add__, "-": int.__sub__, "×": int.__mul__, "÷": int.__floordiv__}
    checked = 0
    for one in load_pairs():
        if one["category"] not in ("arithmetic", "dates"):
            continue
        said = [int(re.findall(r"-?\d+", text)[-1]) for text in (one["better"], one["worse"])]
        if match := re.fullmatch(r"What is (\d+) ([-+×÷]) (\d+)\?", one["prompt"]):
            right = operators[match[2]](int(match[1]), int(match[3]))
        elif match := re.fullmatch(r"What is (\d+)% of (\d+)\?", one["prompt"]):
            right = int(match[1]) * int(match[2]) / 100
        elif match := re.fullmatch(r"What day of the week is (\d+) (\w+) (\d+)\?", one["prompt"]):
            date = dt.datetime.strptime(f"{match[1]} {match[2]} {match[3]}", "%d %B %Y")
            assert one["better"].endswith(f" {date:%A}.") and not one["worse"].endswith(f" {date:%A}.")
            checked += 1
            continue
        else:
            continue
        assert said[0] == right and said[1] != right, one
        checked += 1
    assert checked == 27


def test_code_pairs_run_as_their_check_says():
    """The better snippet defines its function; the worse one fails to compile or runs to a wrong answer."""
    module = make_pairs_module()
    for index, (_, name, good, bad, cases) in enumerate(module.CODE, 1):
        shipped = next(p for p in load_pairs() if p["id"] == f"code-{index:02d}")
        assert shipped["better"] == f"```python\n{good}```"
        assert module.run_cases(name, good, cases) == []
        assert module.run_cases(name, bad, cases)


def test_sample_pairs_is_balanced_and_reproducible():
    pairs = load_pairs()
    chosen = sample_pairs(pairs, 12, seed=3)
    assert [p["category"] for p in chosen].count("code") == 2
    assert len({p["category"] for p in chosen}) == 6
    assert chosen == sample_pairs(pairs, 12, seed=3) != sample_pairs(pairs, 12, seed=4)
    assert sample_pairs(pairs, None) == pairs == sample_pairs(pairs, 500)
    with pytest.raises(ValueError, match="at least 1"):
        sample_pairs(pairs, 0)
    for odd in (2.5, True, "3"):
        with pytest.raises(TypeError, match="whole number of pairs"):
            sample_pairs(pairs, odd)


@pytest.mark.slow
def test_the_wheel_ships_the_pairs(tmp_path):
    source = _source_copy(tmp_path / "src")  # a build writes build/ beside its sources: not in the checkout
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w"]
    subprocess.run(
        [*build, str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=600
    )
    [wheel] = (tmp_path / "dist").glob("mapgen-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("mapgen/judging/data/pairs.jsonl").decode()
    assert shipped == (DATA / "pairs.jsonl").read_text(encoding="utf-8")


# Scripted judges on the fault server ------------------------------------------------------------------


def verdict_json(letter: str) -> str:
    return json.dumps({"explanation": "Compared both answers.", "verdict": letter})


def rules_for(task, pairs, pick):
    """One scripted reply per pair and order, keyed on the whole question the judge is sent: ``pick``
    (whether the better answer is shown first) gives the reply."""
    rules = []
    for one in pairs:
        for better_first in (True, False):
            answers = [one["better"], one["worse"]] if better_first else [one["worse"], one["better"]]
            prompt = task.prompt({"input": one["prompt"], "generations": answers})
            rules.append({"contains": prompt.messages()[-1]["content"], "reply": pick(better_first)})
    return rules


def scripted(server, rules=(), default=None):
    server.configure(api_key=server.api_key, replies=list(rules), default_reply=default)
    return mapgen.OpenAILLM(
        "judge", base_url=server.base_url, api_key=server.api_key, price_per_million=PRICE
    )


def test_a_judge_that_picks_the_better_answer_scores_one(fault_server):
    pairs = load_pairs()
    rules = rules_for(mapgen.PairwiseJudgeTask(), pairs, lambda first: verdict_json("A" if first else "B"))
    check = mapgen.judge_check(scripted(fault_server, rules, default="no verdict here"))
    assert (check.n, check.pairwise_accuracy, check.position_consistency) == (120, 1.0, 1.0)
    assert (check.ties, check.failed) == (0, 0)
    assert {name: score.pairwise_accuracy for name, score in check.by_category.items()} == {
        c: 1.0 for c in ("arithmetic", "units", "dates", "capitals", "code", "instructions")
    }
    assert fault_server.stats()["total"] == 240
    assert check.usage.total.requests == 240 and check.cost is not None and check.cost > 0
    tokens = check.usage.total
    assert check.cost == pytest.approx(
        (tokens.prompt_tokens * PRICE[0] + tokens.completion_tokens * PRICE[1]) / 1e6
    )
    assert set(check.dataset["verdict"]) == {"better"}
    assert sorted(set(check.dataset["order"])) == sorted(ORDERS)
    table = str(check)
    assert "judge check: judge with PairwiseJudgeTask, 120 pairs" in table
    assert re.search(r"^all\s+120\s+1\.00\s+1\.00\s+0\s+0$", table, flags=re.MULTILINE), table


def test_a_judge_that_always_prefers_the_first_answer_is_half_right_and_never_consistent(fault_server):
    check = mapgen.judge_check(scripted(fault_server, default=verdict_json("A")), sample=30)
    assert (check.n, check.pairwise_accuracy, check.position_consistency) == (30, 0.5, 0.0)
    assert all(score.position_consistency == 0.0 for score in check.by_category.values())
    assert list(check.dataset["preference"]) == ["a"] * 60


def test_the_card_of_data_a_checked_judge_labelled_shows_its_check(fault_server):
    judge = scripted(fault_server, default=verdict_json("A"))
    unchecked = mapgen.OpenAILLM(  # the same judge but for its sampling: another config, never checked
        "judge", base_url=fault_server.base_url, api_key=fault_server.api_key, temperature=0.5
    )
    rows = datasets.Dataset.from_dict({"input": ["2 + 2?"], "generations": [["4", "5"]]})
    task = mapgen.PairwiseJudgeTask()
    assert "Judge check" not in str(mapgen.dataset_card(rows.map(mapgen.label(judge, task), batched=True)))
    mapgen.judge_check(judge, sample=6)  # half right, never consistent
    card = str(mapgen.dataset_card(rows.map(mapgen.label(judge, task), batched=True)))
    assert "Judge check (`mapgen.judge_check`, 6 pairs" in card
    assert "pairwise accuracy 0.500, position consistency 0.000" in card
    other = str(mapgen.dataset_card(rows.map(mapgen.label(unchecked, task), batched=True)))
    assert "Judge check" not in other


def test_a_rating_judge_that_rates_alike_ties_everything(fault_server):
    task = mapgen.UltraFeedbackTask.for_overall_quality()
    same = "\n\n".join(f"Text {i}\nRating: 3\nRationale: fine" for i in (1, 2))
    check = mapgen.judge_check(scripted(fault_server, default=same), task, sample=12)
    assert (check.pairwise_accuracy, check.position_consistency, check.ties) == (0.5, 1.0, 24)
    assert "UltraFeedbackTask(overall-quality)" in str(check)


def test_a_rating_judge_that_rates_the_better_answer_higher_scores_one(fault_server):
    task = mapgen.UltraFeedbackTask.for_overall_quality()
    pairs = sample_pairs(load_pairs(), 12)

    def ratings(better_first: bool) -> str:
        scores = (5, 2) if better_first else (2, 5)
        return "\n\n".join(f"Text {i}\nRating: {r}\nRationale: r" for i, r in enumerate(scores, 1))

    check = mapgen.judge_check(scripted(fault_server, rules_for(task, pairs, ratings)), task, sample=12)
    assert (check.n, check.pairwise_accuracy, check.position_consistency, check.failed) == (12, 1.0, 1.0, 0)


def test_unreadable_verdicts_are_counted_not_raised(fault_server):
    check = mapgen.judge_check(scripted(fault_server, default="I cannot decide."), sample=6, max_reasks=0)
    assert (check.n, check.failed, check.pairwise_accuracy, check.position_consistency) == (6, 12, None, None)
    assert all(error.startswith("parse") for error in check.dataset["labelling_error"])
    assert re.search(r"^all\s+6\s+-\s+-\s+0\s+12$", str(check), flags=re.MULTILINE), str(check)


def test_a_second_check_is_answered_from_the_response_store(fault_server):
    judge = scripted(fault_server, default=verdict_json("B"))
    first = mapgen.judge_check(judge, sample=6)
    again = mapgen.judge_check(judge, sample=6)
    assert fault_server.stats()["total"] == 12
    assert (again.usage.total.requests, again.usage.total.reused) == (0, 12)
    assert again.pairwise_accuracy == first.pairwise_accuracy == 0.5
    assert "every answer reused from the response store" in str(again)


def test_a_task_that_is_not_a_labelling_task_is_refused(fault_server):
    with pytest.raises(TypeError, match="labelling task"):
        mapgen.judge_check(scripted(fault_server), mapgen.TextGenerationTask())


def test_a_labelling_task_that_does_not_read_the_pairs_is_refused_before_any_request(fault_server):
    """One rating instructions, one needing a reference answer: they would run and score as if real."""
    judge = scripted(fault_server, default="[1] Score: 3\n[2] Score: 5")
    prometheus = mapgen.PrometheusTask(criteria="c", score_descriptions=["a", "b", "c", "d", "e"])
    refused = {
        mapgen.ComplexityScorerTask(): r"rates `instructions` and reads \['instructions'\]",
        prometheus: r"rates `generations` and reads \['generations', 'input', 'ref_completion'\]",
    }
    for task, said in refused.items():
        with pytest.raises(TypeError, match=said) as caught:
            mapgen.judge_check(judge, task, sample=6, cache=False)
        assert "mapgen.PairwiseJudgeTask()" in str(caught.value)
    assert fault_server.stats()["total"] == 0


def test_a_wrong_keyword_names_the_right_one():
    judge = mapgen.OpenAILLM("judge", base_url="http://127.0.0.1:9/v1", api_key="sk-test")
    with pytest.raises(TypeError, match="did you mean 'sample'"):
        mapgen.judge_check(judge, samples=6)


def test_the_command_prints_the_table(fault_server, monkeypatch, capsys):
    scripted(fault_server, default=verdict_json("A"))
    monkeypatch.setenv("OPENAI_API_KEY", fault_server.api_key)
    status = main(
        ["judge-check", "--llm", "openai:judge", "--base-url", fault_server.base_url, "--sample", "6"]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "judge check: judge with PairwiseJudgeTask, 6 pairs" in out
    assert re.search(r"^all\s+6\s+0\.50\s+0\.00\s+0\s+0$", out, flags=re.MULTILINE), out


# The embedded model ------------------------------------------------------------------------------------

EMBEDDED_SAMPLE = 12
"""Pairs the embedded judge checks in the tests (2 per category, 24 requests). The whole set is 240
requests, each about 250 prompt and 30 to 96 answer tokens on this 135M model: several minutes on 2 cores,
more than CI's budget for one test; these 12 are a subset of the 30 measured for the README."""


@pytest.mark.llamacpp
def test_the_embedded_judge_cannot_judge():
    judge = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=96, seed=0)
    check = mapgen.judge_check(judge, sample=EMBEDDED_SAMPLE)
    verdicts = check.dataset["verdict"]
    assert check.n == EMBEDDED_SAMPLE and len(verdicts) == 2 * EMBEDDED_SAMPLE
    given = [v for v in verdicts if v is not None]
    assert check.failed == len(verdicts) - len(given) < len(verdicts)
    points = given.count("better") + given.count("tie") / 2
    assert check.pairwise_accuracy == pytest.approx(points / len(given))
    assert check.usage.total.requests == 2 * EMBEDDED_SAMPLE
    # A 135M judge is near chance (the README's figure); a score near 1 would mean the check is too easy.
    assert check.pairwise_accuracy < 0.8
