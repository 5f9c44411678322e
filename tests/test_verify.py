"""mapgen.verify: generations checked against references (math-verify, JSON schemas, the user's function),
failures of the check kept as data; rejection sampling with to_sft / flatten(verified_only=True) and
to_preference(chosen="verified") on a real generate output (the fault server's scripted answers)."""

import contextlib
import signal
import threading
import warnings

import datasets
import numpy as np
import pytest
from math_verify import parse
from math_verify import verify as math_verify
from pydantic import BaseModel

import mapgen
import mapgen.clean.verifiers

VERIFY_MODULE = mapgen.clean.verifiers

# Math-verify's own documented examples, each (reference, generation, whether math-verify accepts it), the
# reference as math-verify's gold. Where each is from (huggingface/Math-Verify, the 0.9 release):
#   README     README.md: "Example Usage", and the conversions "Key Features" lists ("frac13 -> 1/3",
#              "x = 1 -> 1", "10% -> 0.1", "10 cm -> 10", "β -> beta", "a < 2 == 2 > a") and
#              "Architecture" ("0.333333 ≈ 1/3", "a ≤ b equals b ≥ a");
#   parse()    the docstring of math_verify.parse: "The answer is $\frac{1}{2}$" and "The answer is 1/2"
#              both read as Rational(1, 2);
#   test_X     tests/test_all.py, the test function test_X: its (gold, pred, expected) parameters.
DISTANCE = (
    r"We use the distance formula:  \begin{align*} \sqrt{(2 - (-4))^2 + ((-6) - 3)^2} &= \sqrt{6^2 + (-9)^2}"
    r"\\ & = \sqrt{36 + 81}\\ & = \sqrt{117} = \boxed{3\sqrt{13}}. \end{align*}"
)
ROOTS = (
    r"By the Integer Root Theorem, the possible integer roots are all the divisors of 14 (including "
    r"negative divisors), which are $-14,$ $-7,$ $-2,$ $-1,$ $1,$ $2,$ $7,$ and $14.$  Checking, we find "
    r"that the only integer roots are $\boxed{-2,1}.$"
)
DOCUMENTED = [
    ("${1,3} \\cup {2,4}$", "${1,2,3,4}$", True),  # README, Example Usage
    ("$1/3$", "$\\frac13$", True),  # README, frac13 -> 1/3
    ("$1$", "$x = 1$", True),  # README, x = 1 -> 1
    ("$0.1$", "$10\\%$", True),  # README, 10% -> 0.1
    ("$0.1$", "10%", True),  # README, 10% -> 0.1
    ("$10$", "$10 \\text{ cm}$", True),  # README, 10 cm -> 10
    ("$10$", "10 cm", True),  # README, 10 cm -> 10
    ("$\\beta$", "$β$", True),  # README, β -> beta
    ("$\\frac{1}{3}$", "0.333333", True),  # README, 0.333333 ≈ 1/3 (and verify()'s docstring)
    ("$a \\leq b$", "$b \\geq a$", True),  # README, a ≤ b equals b ≥ a
    ("$a < 2$", "$2 > a$", True),  # README, a < 2 == 2 > a
    ("0.5", "The answer is $\\frac{1}{2}$", True),  # parse()
    ("0.5", "The answer is 1/2", True),  # parse()
    ("7425000", "7,425,000", True),  # test_number_extraction
    ("1000", "1000.0", True),  # test_number_extraction
    ("0.4", ".4", True),  # test_number_extraction
    ("1000.99", "$1,000.99", True),  # test_number_extraction
    ("2", "AZYUK2A", False),  # test_number_extraction
    ("10/9", "\\frac{10}{9}", True),  # test_simple_fraction_notation
    ("-10/9", "-\\frac{10}{9}", True),  # test_simple_fraction_notation
    ("$[0,9)$", "$[0,1)$", False),  # test_sets_handling
    ("$(0,9)$", "$[0,9)$", False),  # test_sets_handling
    ("$9$", "Answer \\[ 9 \\]", True),  # test_latex_notation
    ("$\\sqrt{3}$", "$\\sqrt3 $", True),  # test_latex_notation
    ("$1/3$", "$\\dfrac{1}{3} $", True),  # test_latex_notation
    ("$1/3$", "$\\boxed{\\frac{1}{3}}$", True),  # test_latex_notation
    ("$1/3$", "$k = \\frac{1}{3}$", True),  # test_latex_notation
    ("$28\\%$", "28 percent", True),  # test_percent_notation
    ("$0.28$", "28", False),  # test_percent_notation
    ("$28$", "28/100", False),  # test_percent_notation
    (
        "$2-2p$",
        "Since $x<2$, it follows that $|x-2|=2-x$. If $2-x=p$, then $x=2-p$. Thus $x-p=\\boxed{2-2p}$.",
        True,
    ),  # test_latex_notation_math
    ("$3\\sqrt{13}$", DISTANCE, True),  # test_latex_notation_math
    ("$-2,1$", ROOTS, True),  # test_latex_notation_math
    (
        "$\\{1\\pm\\sqrt{5},-2\\}$",
        "The roots of $P(x)$ are $-2$ and $1 \\pm \\sqrt{5}$, so the answer is "
        "$\\boxed{\\{1\\pm\\sqrt{5},-2\\}}.$",
        True,
    ),  # test_latex_notation_math
    ("$\\sqrt{2}+\\sqrt{5}$", "The answer is $\\boxed{\\sqrt 2+\\sqrt 5}$", True),  # test_latex_notation_math
    ("$\\frac{9}{4}\\pi$", "Therefore $\\boxed{\\frac94\\pi}$.", True),  # test_latex_notation_math
    ("$x >= 5$", "Therefore $x \\geq 5$ is the solution.", True),  # test_relations_math
    ("$x > 5$", "Therefore $x < 5$ is the solution.", False),  # test_relations_math
    ("$x \\geq 5$", "The solution is $x \\leq 5$", False),  # test_relations_math
    ("$x < 1$", "$-x > -1$", True),  # test_relations_math
    ("$x < 1$", "$x > -1$", False),  # test_relations_math
    ("$a +3z = 0$", "$0$", False),  # test_relations_math
    ("$2x + z = 1$", "$1$", False),  # test_relations_math
    ("$k=1$", "$1$", True),  # test_relations_math
    ("$2x+4y-3=0$", "$y=-\\frac{1}{2}x+\\frac{3}{4}$", True),  # test_relations_math
    (
        r"$\begin{pmatrix}1 & 0 \\ 0 & 1\end{pmatrix}$",
        r"The identity matrix is $ \begin{pmatrix}1 & 0 \\ 0 & 1\end{pmatrix} $.",
        True,
    ),  # test_matrix_extraction
    (
        r"$\begin{pmatrix}1 & 2 \\ 3 & 4\end{pmatrix}$",
        r"The matrix is $\begin{pmatrix}1 & 2 \\ 3 & 5\end{pmatrix}$",
        False,
    ),  # test_matrix_extraction
    ("$\\frac{1}{12}$", "$0.0833333333333333$", True),  # test_complex_math_expressions
    ("$(1,\\frac{9}{2})$", "$(1,4.5)$", True),  # test_complex_math_expressions
    ("$\\frac{x+2}{7}$", "$\\frac{x}{7}+\\frac{2}{7}$", True),  # test_complex_math_expressions
    ("$\\tan^2(y)+1$", "$\\sec^2(y)$", True),  # test_complex_math_expressions
    ("$34x+45y-20z+100=0$", "$-34x-45y+20z-100=0$", True),  # test_complex_math_expressions
    ("$2$", "$\\frac{1+\\sqrt{5}}{2}$", False),  # test_complex_math_expressions
    ("$1\\sqrt{19}$", "$1$", False),  # test_complex_math_expressions
    ("$x+2n+1$", "$x+1$", False),  # test_complex_math_expressions
]


def table(rows):
    """A dataset of one generation per reference."""
    return datasets.Dataset.from_dict(
        {"answer": [reference for reference, _, _ in rows], "generations": [[text] for _, text, _ in rows]}
    )


def test_math_accepts_equivalent_forms_and_rejects_wrong_answers_as_math_verify_documents():
    assert len(DOCUMENTED) >= 30
    assert sum(not accepted for _, _, accepted in DOCUMENTED) >= 10  # wrong answers too, not only right ones
    # The table is math-verify's: each case holds for math-verify called as its README calls it.
    assert [math_verify(parse(r), parse(g)) for r, g, _ in DOCUMENTED] == [a for _, _, a in DOCUMENTED]
    out = mapgen.verify(table(DOCUMENTED))
    wrong = [
        (reference, text, accepted, got)
        for (reference, text, accepted), got in zip(DOCUMENTED, out["verified"], strict=True)
        if got != [accepted]
    ]
    assert wrong == []
    assert list(out["verification_errors"]) == [[None]] * len(DOCUMENTED)


def test_a_bare_reference_is_read_as_latex():
    # The issue's example, and references as datasets hold them: no $...$ around them.
    rows = [
        ("\\frac{1}{2}", "0.5", True),
        ("0.5", "$\\frac{1}{2}$", True),
        ("2\\sqrt{2}", "$\\sqrt{8}$", True),  # read as text, 2\sqrt{2} would be the number 2
        ("2\\sqrt{2}", "2", False),
        ("72", "Natalia sold 48 + 24 = 72 clips.", True),
        ("72", "She sold 70.", False),
    ]
    assert [v[0] for v in mapgen.verify(table(rows))["verified"]] == [a for _, _, a in rows]


def test_a_number_reference_and_a_string_column():
    ds = datasets.Dataset.from_dict({"answer": [4, 10], "response": ["2 + 2 = 4", "It is 11."]})
    out = mapgen.verify(ds, "response")
    assert out.features["verified"] == datasets.Value("bool")
    assert list(out["verified"]) == [True, False]
    assert list(out["verification_errors"]) == [None, None]


def test_none_where_there_is_nothing_to_check_and_why():
    ds = datasets.Dataset.from_dict(
        {
            "answer": ["4", None, "  ", "4", "4"],
            "generations": [["4", None, "5"], ["4", None], ["4"], [None, None], []],
        }
    )
    out = mapgen.verify(ds)
    assert list(out["verified"]) == [[True, None, False], [None, None], [None], [None, None], []]
    assert list(out["verification_errors"]) == [
        [None, None, None],  # a failed generation: generation_errors says why
        ["input: no reference answer in 'answer'", None],
        ["input: no reference answer in 'answer'"],
        [None, None],
        [],
    ]
    assert out.features["verified"] == datasets.List(datasets.Value("bool"))


# A text math-verify reads for far over a second: tens of thousands of LaTeX spans, none of which parses
# (each try a fraction of a millisecond, every one tried before it gives up).
ENDLESS = " ".join(f"$\\frac{{{i}}}{{\\sqrt{{$" for i in range(60_000))


def test_a_check_that_runs_past_its_timeout_is_none_with_the_reason_and_the_others_are_kept():
    ds = datasets.Dataset.from_dict({"answer": ["4", ENDLESS], "generations": [["4", ENDLESS, "5"], ["4"]]})
    out = mapgen.verify(ds, timeout=1)
    assert list(out["verified"]) == [[True, None, False], [None]]
    errors = out["verification_errors"]
    assert errors[0][1] == "timeout: math-verify took over 1 s to parse the generation"
    assert errors[1] == ["timeout: math-verify took over 1 s to parse the reference"]


def test_num_proc_workers_give_the_same_verdicts_and_keep_the_timeout():
    # Each worker is a process whose main thread runs the map, so math-verify's signal.alarm is set there
    # (and SIGALRM unblocked for the check: see the test below), whatever ran in the parent before.
    rows = [*DOCUMENTED[:8], ("4", ENDLESS, None)]
    ds = table(rows)
    alone = mapgen.verify(ds, timeout=1)
    workers = mapgen.verify(ds, timeout=1, num_proc=2, batch_size=3)
    assert list(workers["verified"])[:8] == list(alone["verified"])[:8] == [[a] for _, _, a in rows[:8]]
    assert workers["verified"][8] == [None]
    assert workers["verification_errors"][8] == ["timeout: math-verify took over 1 s to parse the generation"]


@contextlib.contextmanager
def sigalrm_blocked():
    """SIGALRM blocked in this thread, as a thread that forks passes it on to its child; unblocked after,
    any alarm that came meanwhile taken first (its default action would end the test process)."""
    was = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    try:
        yield
    finally:
        signal.sigtimedwait({signal.SIGALRM}, 0)
        signal.pthread_sigmask(signal.SIG_SETMASK, was)


def test_workers_forked_from_a_thread_that_blocks_sigalrm_still_time_out():
    # fork copies the forking thread's signal mask: workers forked with SIGALRM blocked never took
    # math-verify's alarm, and the endless parse ran to its end (about 20 s here), found False.
    ds = table([("4", "4", True), ("4", ENDLESS, None)])
    with sigalrm_blocked():
        workers = mapgen.verify(ds, timeout=1, num_proc=2, batch_size=1)
    assert list(workers["verified"]) == [[True], [None]]
    assert workers["verification_errors"][1] == ["timeout: math-verify took over 1 s to parse the generation"]


# Read in about 3 s (unbounded): longer than a 1 s timeout, short enough to wait for.
SLOW = " ".join(f"$\\frac{{{i}}}{{\\sqrt{{$" for i in range(6_000))


def test_a_check_whose_alarm_never_came_is_none_with_the_timeout_not_false(monkeypatch):
    # The alarm lost for a reason the unblocking does not cover (here: workers forked with SIGALRM blocked,
    # the only thread each has, and the unblocking switched off): the parse runs to its end, and is still
    # no verdict, since it ran past its timeout.
    monkeypatch.setattr(VERIFY_MODULE, "_alarm_deliverable", contextlib.nullcontext)
    ds = table([("4", "4", True), ("4", SLOW, None)])
    with sigalrm_blocked():
        workers = mapgen.verify(ds, timeout=1, num_proc=2, batch_size=1)
    assert list(workers["verified"]) == [[True], [None]]
    assert workers["verification_errors"][1] == ["timeout: math-verify took over 1 s to parse the generation"]


def test_off_the_main_thread_it_checks_without_a_timeout_and_says_so(monkeypatch):
    monkeypatch.setattr(VERIFY_MODULE, "_warned_no_timeout", False)
    found = {}

    def run():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            found["out"] = mapgen.verify(table(DOCUMENTED[:4]))
        found["warnings"] = [str(w.message) for w in caught if issubclass(w.category, mapgen.MapgenWarning)]

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert list(found["out"]["verified"]) == [[True]] * 4
    assert len(found["warnings"]) == 1 and "signal.alarm" in found["warnings"][0]


class Answer(BaseModel):
    city: str
    population: int


@pytest.mark.parametrize(
    "schema",
    [
        Answer,
        {
            "type": "object",
            "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
            "required": ["city", "population"],
        },
    ],
    ids=["pydantic", "json-schema"],
)
def test_json_kind_checks_the_generation_against_the_schema(schema):
    ds = datasets.Dataset.from_dict(
        {
            "generations": [
                ['{"city": "Lima", "population": 10000000}', '{"city": "Lima"}', "Lima, 10 million", None],
                [' {"city": "Paris", "population": 2100000}\n', '{"city": "Paris", "population": "many"}'],
            ]
        }
    )
    out = mapgen.verify(ds, kind="json", schema=schema)  # no reference column: json reads none
    assert list(out["verified"]) == [[True, False, False, None], [True, False]]
    assert list(out["verification_errors"]) == [[None] * 4, [None, None]]


def test_json_kind_takes_any_type_pydantic_takes():
    ds = datasets.Dataset.from_dict({"generations": [["[1, 2, 3]", '["a"]', "[]"]]})
    assert list(mapgen.verify(ds, kind="json", schema=list[int])["verified"]) == [[True, False, True]]


def test_callable_kind_is_the_users_check_and_its_failures_are_data():
    def check(text, reference):
        if text == "boom":
            raise ValueError("cannot read it")
        if text == "unsure":
            return None
        if text == "number":
            return 1
        if text == "numpy":
            return np.bool_(True)
        return text.strip().lower() == reference

    ds = datasets.Dataset.from_dict(
        {"answer": ["lima"], "generations": [[" Lima", "Quito", "boom", "unsure", "number", "numpy", None]]}
    )
    out = mapgen.verify(ds, kind=check)
    assert out["verified"][0] == [True, False, None, None, None, True, None]
    assert out["verification_errors"][0] == [
        None,
        None,
        "verifier: check raised: ValueError: cannot read it",
        "verifier: check could not tell (it returned None)",
        "verifier: check returned int, not a bool",
        None,
        None,
    ]
    no_reference = mapgen.verify(ds, reference=None, kind=lambda text, ref: ref is None and text == "Quito")
    assert no_reference["verified"][0][:2] == [False, True]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"column": "answers"},
            mapgen.MissingColumnError,
            r"\['answers'\].*columns: \['answer', 'generations'\]",
        ),
        ({"reference": "gold"}, mapgen.MissingColumnError, r"\['gold'\]"),
        ({"kind": "code"}, ValueError, r"kind must be one of \['math', 'json'\]"),
        ({"kind": 3}, TypeError, r"kind must be one of"),
        ({"kind": "json"}, ValueError, r"needs schema="),
        ({"kind": "json", "schema": {"type": 12}}, ValueError, r"not a valid JSON schema"),
        ({"kind": "json", "schema": object()}, ValueError, r"schema must be a pydantic model"),
        ({"schema": Answer}, ValueError, r"schema= is for kind='json'"),
        ({"timeout": 0.5}, ValueError, r"timeout must be whole seconds"),
        ({"float_rounding": -1}, ValueError, r"float_rounding"),
        ({"batch_size": 0}, ValueError, r"batch_size"),
        ({"refrence": "answer"}, TypeError, r"did you mean 'reference'"),
    ],
)
def test_bad_configuration_raises_before_any_row(kwargs, error, message):
    with pytest.raises(error, match=message):
        mapgen.verify(table(DOCUMENTED[:1]), **kwargs)


def test_verify_wants_a_dataset():
    with pytest.raises(TypeError, match="DatasetDict, call it on each split"):
        mapgen.verify(datasets.DatasetDict({"train": table(DOCUMENTED[:1])}))


# Rejection sampling on a real generate output: eight answers a question, some right, some not.

QUESTIONS = ["What is 2 + 2?", "What is half of 3?", "What is 7 * 6?"]
ANSWERS = ["4", "\\frac{3}{2}", "42"]
REPLIES = [
    {"contains": "2 + 2", "reply": ["5", "The answer is $4$.", "four", "\\boxed{4}", "3", "22", "4.0", "-4"]},
    {"contains": "half of 3", "reply": ["1.5", "1", "$\\frac{3}{2}$", "2/3", "3/2", "0.5", "1.50", "3"]},
    {"contains": "7 * 6", "reply": ["41", "43", "13", "48", "1", "76", "36", "-42"]},  # never right
]


@pytest.fixture
def generated(fault_server):
    fault_server.configure(api_key=fault_server.api_key, replies=REPLIES)
    llm = mapgen.OpenAILLM("m", base_url=fault_server.base_url, api_key=fault_server.api_key, temperature=1.0)
    ds = datasets.Dataset.from_dict({"input": QUESTIONS, "answer": ANSWERS})
    return ds.map(mapgen.generate(llm, num_generations=8), batched=True)


def test_generate_8_keep_what_checks_out(generated):
    # The issue's three lines: generate 8 (the fixture), verify, keep what checks out.
    ds = mapgen.verify(generated)
    sft = mapgen.to_sft(ds, verified_only=True, keep_columns=["generation_index"])

    assert list(ds["verified"]) == [
        [False, True, False, True, False, False, True, False],
        [True, False, True, False, True, False, True, False],
        [False] * 8,
    ]
    messages, index = sft["messages"], sft["generation_index"]
    kept = [(m[0]["content"], m[1]["content"], i) for m, i in zip(messages, index, strict=True)]
    assert kept == [
        ("What is 2 + 2?", "The answer is $4$.", 1),
        ("What is 2 + 2?", "\\boxed{4}", 3),
        ("What is 2 + 2?", "4.0", 6),
        ("What is half of 3?", "1.5", 0),
        ("What is half of 3?", "$\\frac{3}{2}$", 2),
        ("What is half of 3?", "3/2", 4),
        ("What is half of 3?", "1.50", 6),
    ]
    # The answers' metadata stays with them: the card and usage count what was kept.
    assert sft.column_names == ["messages", "generation_index", "generation_model", "generation_metadata"]

    flat = mapgen.flatten(ds, verified_only=True)
    assert flat.num_rows == 7 and set(flat["verified"]) == {True}
    assert flat["verification_errors"] == [None] * 7

    pairs = mapgen.to_preference(ds, chosen="verified")
    assert list(zip(pairs["prompt"], pairs["chosen"], pairs["rejected"], strict=True)) == [
        ("What is 2 + 2?", "The answer is $4$.", "5"),
        ("What is half of 3?", "1.5", "1"),
    ]  # no pair for 7 * 6: nothing there checked out
    assert pairs.column_names == ["prompt", "chosen", "rejected"]
    every = mapgen.to_preference(ds, chosen="verified", pairs="all")
    assert every.num_rows == 3 * 5 + 4 * 4


def test_to_preference_by_verified_options_and_errors():
    ds = datasets.Dataset.from_dict(
        {
            "input": ["q1", "q2", "q3"],
            "generations": [["a", "b", "c", None], ["d", "e"], ["f", "g"]],
            "verified": [[False, True, False, True], [True, True], [None, False]],
        }
    )
    best_rest = mapgen.to_preference(ds, chosen="verified", pairs="best-rest")
    assert list(zip(best_rest["chosen"], best_rest["rejected"], strict=True)) == [("b", "a"), ("b", "c")]
    chat = mapgen.to_preference(ds, chosen="verified", format="chat")
    assert chat[0]["chosen"] == [{"role": "assistant", "content": "b"}]
    nothing = mapgen.to_preference(ds.select([1, 2]), chosen="verified")
    assert nothing.num_rows == 0 and nothing.column_names == ["prompt", "chosen", "rejected"]
    with pytest.raises(ValueError, match="min_margin compares ratings"):
        mapgen.to_preference(ds, chosen="verified", min_margin=1.0)
    with pytest.raises(ValueError, match=r"\['verified'\].*mapgen.verify"):
        mapgen.to_preference(ds.remove_columns("verified"), chosen="verified")
    with pytest.raises(ValueError, match="chosen must be one of"):
        mapgen.to_preference(ds, chosen="judge")


def test_verified_only_needs_verify_first(generated):
    with pytest.raises(ValueError, match=r"to_sft\(verified_only=True\).*mapgen.verify"):
        mapgen.to_sft(generated, verified_only=True)
    with pytest.raises(ValueError, match=r"flatten\(verified_only=True\).*mapgen.verify"):
        mapgen.flatten(generated, verified_only=True)
