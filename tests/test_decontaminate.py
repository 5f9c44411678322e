"""``mapgen.decontaminate``: rows holding a benchmark's 13-gram are flagged, the clean rows are not.

The benchmarks and the dataset are built here from one seeded vocabulary: clean rows draw from the same
words as the benchmarks, so only a shared run of ``n`` words (not shared words, nor a shorter run) may flag
a row. Planted n-grams come back with their case and punctuation changed, which normalisation must undo.
"""

from __future__ import annotations

import random

import datasets
import pytest

import mapgen
from mapgen.clean.ngrams import COLUMN, words
from mapgen.errors import MapgenWarning, MissingColumnError

VOCABULARY = [f"w{i}" for i in range(3000)]
FOREIGN = "qq"
"""A word in no benchmark: around a planted n-gram, so that the words beside it cannot lengthen the match."""


def text(rng: random.Random, length: int) -> list[str]:
    return [rng.choice(VOCABULARY) for _ in range(length)]


def disguised(ngram: list[str], rng: random.Random) -> str:
    """The n-gram as a writer might copy it: random capitals and punctuation between its words."""
    marks = [" ", ", ", " - ", "! ", " (", ") ", "\n", ": "]
    out = ""
    for word in ngram:
        out += (word.upper() if rng.random() < 0.3 else word) + rng.choice(marks)
    return out


class Planted:
    """A dataset with n-grams planted from two benchmarks, and which rows got which."""

    def __init__(self, seed: int = 0, rows: int = 600, n: int = 13, cut: int = 0) -> None:
        rng = random.Random(seed)
        self.gsm8k_questions = [text(rng, rng.randint(20, 40)) for _ in range(150)]
        self.gsm8k_answers = [text(rng, rng.randint(15, 30)) for _ in range(150)]
        self.mmlu = [text(rng, rng.randint(14, 30)) for _ in range(150)]
        self.mmlu_choices = [[text(rng, 3) for _ in range(4)] for _ in range(150)]
        self.gsm8k = datasets.Dataset.from_dict(
            {
                "question": [" ".join(t) for t in self.gsm8k_questions],
                "answer": [" ".join(t) for t in self.gsm8k_answers],
                "id": list(range(150)),
            }
        )
        self.mmlu_ds = datasets.Dataset.from_dict(
            {
                "question": [" ".join(t) for t in self.mmlu],
                "choices": [[" ".join(c) for c in cs] for cs in self.mmlu_choices],
            }
        )
        self.expected: list[list[str]] = []
        self.texts: list[str] = []
        self.ngrams: dict[int, str] = {}
        for row in range(rows):
            before, after = text(rng, rng.randint(0, 40)), text(rng, rng.randint(0, 40))
            kind = rng.choice(["clean", "clean", "clean", "gsm8k_q", "gsm8k_a", "mmlu", "both", "near"])
            planted: list[str] = []
            middle = ""
            if kind in ("gsm8k_q", "gsm8k_a", "both"):
                source = rng.choice(self.gsm8k_questions if kind != "gsm8k_a" else self.gsm8k_answers)
                start = rng.randint(0, len(source) - n)
                middle += f"{FOREIGN} {disguised(source[start : start + n], rng)} {FOREIGN} "
                self.ngrams[row] = " ".join(source[start : start + n])
                planted.append("gsm8k")
            if kind in ("mmlu", "both"):
                source = rng.choice(self.mmlu)
                start = rng.randint(0, len(source) - n)
                middle += f"{FOREIGN} {disguised(source[start : start + n], rng)} {FOREIGN}"
                planted.append("mmlu")
            if kind == "near":  # one word short of an n-gram, from each benchmark: clean
                q, m = rng.choice(self.gsm8k_questions), rng.choice(self.mmlu)
                middle = f"{FOREIGN} {' '.join(q[: n - 1])} {FOREIGN} {' '.join(m[-(n - 1) :])} {FOREIGN}"
            if cut:  # a 13-gram cut after `cut` words by a foreign word: shorter n-grams survive, not 13
                middle = ""
                if kind not in ("clean", "near"):
                    source = rng.choice(self.gsm8k_questions)
                    start = rng.randint(0, len(source) - 13)
                    piece = source[start : start + 13]
                    middle = f"{FOREIGN} {' '.join(piece[:cut])} {FOREIGN} {' '.join(piece[cut:])} {FOREIGN}"
                    planted = ["gsm8k"]
                else:
                    planted = []
            self.texts.append(" ".join(before) + " " + middle + " " + " ".join(after))
            self.expected.append(planted)
        self.ds = datasets.Dataset.from_dict({"text": self.texts, "row": list(range(rows))})

    def count(self, name: str) -> int:
        return sum(name in flags for flags in self.expected)


@pytest.fixture(scope="module")
def planted() -> Planted:
    return Planted()


def test_flags_every_planted_row_and_no_clean_row(planted):
    flagged, report = mapgen.decontaminate(
        planted.ds, "text", against={"gsm8k": planted.gsm8k, "mmlu": planted.mmlu_ds}
    )
    assert list(flagged[COLUMN]) == planted.expected
    assert list(flagged["text"]) == planted.texts and list(flagged["row"]) == list(range(len(planted.texts)))
    assert sum(map(bool, planted.expected)) > 100 and planted.expected.count([]) > 250  # both kinds are many
    assert report.rows == 600
    assert report.flagged == sum(map(bool, planted.expected))
    assert report.removed == 0
    gsm8k, mmlu = report.benchmarks["gsm8k"], report.benchmarks["mmlu"]
    assert gsm8k.flagged == planted.count("gsm8k") and mmlu.flagged == planted.count("mmlu")
    # every string column: the questions and answers; MMLU's question and its 600 choices of 3 words
    assert gsm8k.texts == 300 and gsm8k.too_short == 0
    assert mmlu.texts == 150 + 600 and mmlu.too_short == 600
    assert gsm8k.ngrams == sum(len(t) - 12 for t in planted.gsm8k_questions + planted.gsm8k_answers)
    assert report.parameters["against_columns"] == {
        "gsm8k": ["question", "answer"],
        "mmlu": ["question", "choices"],
    }
    assert len(gsm8k.examples) == 3
    for example in gsm8k.examples:
        assert planted.expected[example["row"]] in (["gsm8k"], ["gsm8k", "mmlu"])
        assert example["ngram"] == planted.ngrams[example["row"]]


def test_remove_drops_the_flagged_rows_and_reports_them(planted):
    kept, report = mapgen.decontaminate(
        planted.ds, "text", against={"gsm8k": planted.gsm8k, "mmlu": planted.mmlu_ds}, remove=True
    )
    clean = [row for row, flags in enumerate(planted.expected) if not flags]
    assert list(kept["row"]) == clean
    assert kept.column_names == ["text", "row"]
    assert report.removed == report.flagged == 600 - len(clean)
    assert report.benchmarks["mmlu"].flagged == planted.count("mmlu")


def test_num_proc_gives_the_same_result(planted):
    against = {"gsm8k": planted.gsm8k, "mmlu": planted.mmlu_ds}
    one, one_report = mapgen.decontaminate(planted.ds, "text", against=against)
    two, two_report = mapgen.decontaminate(planted.ds, "text", against=against, num_proc=2)
    assert list(two[COLUMN]) == list(one[COLUMN]) == planted.expected
    assert two_report == one_report


@pytest.mark.parametrize("cut", [8, 5])
def test_n_is_configurable(cut):
    """A 13-gram cut by a foreign word after ``cut`` words leaves exactly one 8-gram, first (cut=8) or last
    (cut=5): n=8 finds it, n=9 and n=13 do not."""
    planted = Planted(seed=1, rows=200, cut=cut)
    against = {"gsm8k": planted.gsm8k}
    assert any(planted.expected)
    at_13, report_13 = mapgen.decontaminate(planted.ds, "text", against=against)
    assert list(at_13[COLUMN]) == [[]] * 200 and report_13.flagged == 0
    at_8, report_8 = mapgen.decontaminate(planted.ds, "text", against=against, n=8)
    assert list(at_8[COLUMN]) == planted.expected
    assert report_8.parameters["n"] == 8 and report_8.benchmarks["gsm8k"].flagged == planted.count("gsm8k")
    at_9 = mapgen.decontaminate(planted.ds, "text", against=against, n=9)[0]
    assert list(at_9[COLUMN]) == [[]] * 200


def test_a_list_column_flags_a_row_when_any_generation_holds_an_ngram(planted):
    rng = random.Random(2)
    rows, expected = [], []
    for flags, planted_text in zip(planted.expected[:200], planted.texts[:200], strict=True):
        generations = [" ".join(text(rng, 30)) for _ in range(3)]
        generations[rng.randrange(3)] = planted_text
        if rng.random() < 0.2:
            generations.append(None)  # a failed generation
        rows.append(generations)
        expected.append(flags)
    # an n-gram split across two generations is in no single text: clean
    q = planted.gsm8k_questions[0]
    rows.append([" ".join(q[:6]), " ".join(q[6:13])])
    expected.append([])
    ds = datasets.Dataset.from_dict({"generations": rows})
    flagged, report = mapgen.decontaminate(
        ds, "generations", against={"gsm8k": planted.gsm8k, "mmlu": planted.mmlu_ds}
    )
    assert list(flagged[COLUMN]) == expected
    assert report.benchmarks["gsm8k"].flagged == sum("gsm8k" in e for e in expected)
    two, _ = mapgen.decontaminate(
        ds, "generations", against={"gsm8k": planted.gsm8k, "mmlu": planted.mmlu_ds}, num_proc=2
    )
    assert list(two[COLUMN]) == expected


def test_several_columns_flag_a_row_when_any_does(planted):
    ds = datasets.Dataset.from_dict({"input": planted.texts[:100], "output": planted.texts[100:200]})
    flagged, _ = mapgen.decontaminate(ds, ["input", "output"], against={"gsm8k": planted.gsm8k})
    expected = [
        ["gsm8k"] if "gsm8k" in a or "gsm8k" in b else []
        for a, b in zip(planted.expected[:100], planted.expected[100:200], strict=True)
    ]
    assert list(flagged[COLUMN]) == expected


def test_against_columns_and_lists_of_strings(planted):
    ds = planted.ds
    only_questions, report = mapgen.decontaminate(
        ds, "text", against={"gsm8k": planted.gsm8k}, against_columns={"gsm8k": "question"}
    )
    assert report.benchmarks["gsm8k"].texts == 150
    question_plants = [
        ["gsm8k"]
        if any(f" {planted.ngrams.get(row)} " in f" {' '.join(q)} " for q in planted.gsm8k_questions)
        else []
        for row in range(600)
    ]
    assert list(only_questions[COLUMN]) == question_plants
    assert 0 < sum(map(bool, question_plants)) < planted.count("gsm8k")  # the answers' plants are not seen
    as_strings, _ = mapgen.decontaminate(ds, "text", against={"gsm8k": list(planted.gsm8k["question"])})
    assert list(as_strings[COLUMN]) == question_plants


def test_the_column_is_rewritten_and_the_format_kept(planted):
    ds = planted.ds.select(range(50)).with_format("numpy", columns=["row"], output_all_columns=True)
    first, _ = mapgen.decontaminate(ds, "text", against={"mmlu": planted.mmlu_ds})
    again, _ = mapgen.decontaminate(first, "text", against={"gsm8k": planted.gsm8k})
    assert first.format["type"] == "numpy" and first.format["columns"] == ["row"]
    assert again.column_names == ["text", "row", COLUMN]
    assert (
        [list(flags) for flags in again.with_format(None)[COLUMN]]
        == [  # the first call's flags kept
            [name for name in ("mmlu", "gsm8k") if name in flags] for flags in planted.expected[:50]
        ]
    )


def test_normalisation():
    assert words("  The CAT's  <<48/2=24>> ÉCOLE_ﬁ\u00a0end. ") == [
        "the", "cat", "s", "48", "2", "24", "école", "fi", "end",
    ]  # fmt: skip
    assert words("") == [] and words("?!") == []
    benchmark = ["Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning!"]
    ds = datasets.Dataset.from_dict({"text": ["janet s DUCKS lay 16 eggs—per day; she eats three for", "x"]})
    flagged, report = mapgen.decontaminate(ds, "text", against={"gsm8k": benchmark}, n=10)
    assert list(flagged[COLUMN]) == [["gsm8k"], []]
    assert report.benchmarks["gsm8k"].examples == [
        {"row": 0, "ngram": "janet s ducks lay 16 eggs per day she eats"}
    ]


def test_a_benchmark_too_short_for_n_warns():
    ds = datasets.Dataset.from_dict({"text": ["one two three"]})
    with pytest.warns(MapgenWarning, match="no text of 13 words"):
        flagged, report = mapgen.decontaminate(ds, "text", against={"tiny": ["one two three"]})
    assert list(flagged[COLUMN]) == [[]] and report.benchmarks["tiny"].too_short == 1


def test_clear_errors(planted):
    ds, against = planted.ds, {"gsm8k": planted.gsm8k}
    with pytest.raises(MissingColumnError, match=r"no column\(s\) \['txet'\].*'text', 'row'"):
        mapgen.decontaminate(ds, "txet", against=against)
    with pytest.raises(ValueError, match="needs the benchmarks to check against"):
        mapgen.decontaminate(ds, "text", against={})
    with pytest.raises(ValueError, match="needs the benchmarks"):
        mapgen.decontaminate(ds, "text", against=[planted.gsm8k])
    with pytest.raises(TypeError, match="holds int64, not text"):
        mapgen.decontaminate(ds, "row", against=against)
    with pytest.raises(TypeError, match="DatasetDict; pass one split"):
        mapgen.decontaminate(ds, "text", against={"gsm8k": datasets.DatasetDict({"test": planted.gsm8k})})
    with pytest.raises(TypeError, match=r"a datasets\.Dataset or a list of strings"):
        mapgen.decontaminate(ds, "text", against={"gsm8k": "one benchmark text"})
    with pytest.raises(MissingColumnError, match=r"benchmark 'gsm8k' has no column\(s\) \['problem'\]"):
        mapgen.decontaminate(ds, "text", against=against, against_columns={"gsm8k": "problem"})
    with pytest.raises(ValueError, match=r"against_columns names \['math'\]"):
        mapgen.decontaminate(ds, "text", against=against, against_columns={"math": "problem"})
    with pytest.raises(ValueError, match="n is a number of words"):
        mapgen.decontaminate(ds, "text", against=against, n=0)
    with pytest.raises(TypeError, match="did you mean 'num_proc'"):
        mapgen.decontaminate(ds, "text", against=against, num_procs=2)


def test_a_second_benchmark_adds_its_flags_to_the_first_ones():
    # One benchmark now, another later: the first's flags stay (a new user's try), and the card says both.
    ds = datasets.Dataset.from_dict({"text": ["the cat sat", "dogs x here", "nothing"]})
    first, _ = mapgen.decontaminate(ds, "text", n=2, against={"a": ["cat sat"]})
    both, report = mapgen.decontaminate(first, "text", n=2, against={"b": ["dogs x"]})
    assert both["contaminated_by"][:] == [["a"], ["b"], []]
    assert (report.flagged, report.benchmarks["b"].flagged) == (1, 1)  # this call's benchmark alone
    again, _ = mapgen.decontaminate(both, "text", n=2, against={"a": ["nothing here at all"]})
    assert again["contaminated_by"][:] == [[], ["b"], []]  # "a" checked anew: its old flag replaced
    kept, removed = mapgen.decontaminate(first, "text", n=2, against={"b": ["dogs x"]}, remove=True)
    assert kept["contaminated_by"][:] == [["a"], []] and removed.removed == 1
