"""Write ``pairs.jsonl``: the judge check's prompts, each with a better and a worse answer, checked here.

Every pair is written by this project (no dataset is copied) and checked by the code that makes it: the
arithmetic is computed with Python's integers, the conversions with exact factors, the dates with
``datetime``, the code snippets are run against test cases (the better one passes them all, the worse one
fails one or does not run), the instructions are checked by a small function (the better answer meets the
constraint, the worse one breaks it), and the capitals come from the table below (the worse answer a larger
or better-known city of the same country). A pair that does not check raises, so the file holds none.

The two answers of a pair have the same form and about the same length where the category allows, so that
only correctness tells them apart; in the instruction pairs the worse answer is often the longer one, which
is where a judge's length bias shows.

Run from the repository root, after editing; ``tests/test_judge_check.py`` checks that the shipped file is
what this script writes::

    .venv/bin/python mapgen/judging/data/make_pairs.py
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

SEED = 23
"""The seed of the drawn numbers and dates (issue 23)."""

PAIRS_FILE = Path(__file__).with_name("pairs.jsonl")

Pair = dict[str, str]


def pair(category: str, index: int, prompt: str, better: str, worse: str, check: str) -> Pair:
    return {
        "id": f"{category}-{index:02d}",
        "category": category,
        "prompt": prompt,
        "better": better,
        "worse": worse,
        "check": check,
    }


def number_in(text: str) -> float:
    """The last number written in ``text`` (thousands separators allowed)."""
    found = re.findall(r"-?\d[\d,]*(?:\.\d+)?", text)
    if not found:
        raise ValueError(f"no number in {text!r}")
    return float(found[-1].rstrip(",").replace(",", ""))


# Arithmetic -------------------------------------------------------------------------------------------


def arithmetic(rng: random.Random) -> list[Pair]:
    pairs = []
    kinds = ["+", "-", "×", "÷", "%"] * 4
    for index, kind in enumerate(kinds, 1):
        if kind == "+":
            a, b = rng.randint(1000, 9999), rng.randint(1000, 9999)
            right, expression, prompt = a + b, f"{a} + {b}", f"What is {a} + {b}?"
        elif kind == "-":
            a, b = rng.randint(5000, 9999), rng.randint(1000, 4999)
            right, expression, prompt = a - b, f"{a} - {b}", f"What is {a} - {b}?"
        elif kind == "×":
            a, b = rng.randint(12, 99), rng.randint(12, 99)
            right, expression, prompt = a * b, f"{a} * {b}", f"What is {a} × {b}?"
        elif kind == "÷":
            b, quotient = rng.randint(6, 29), rng.randint(12, 99)
            a = b * quotient
            right, expression, prompt = quotient, f"{a} // {b}", f"What is {a} ÷ {b}?"
        else:
            percent, base = rng.choice([5, 15, 20, 25, 30, 35, 40, 60, 75]), rng.randint(4, 40) * 20
            right, expression = percent * base // 100, f"{percent} * {base} // 100"
            prompt = f"What is {percent}% of {base}?"
        # A slip of one digit: a carry lost or added, the way people and models get sums wrong.
        wrong = right + rng.choice([-10, 10, -1, 1, 100]) if kind != "÷" else right + rng.choice([-1, 1])
        if eval(expression) != right or wrong == right or wrong < 0:  # our own expression, no input
            raise AssertionError(f"arithmetic pair {index}: {expression}")
        shown = prompt.removeprefix("What is ").removesuffix("?")
        better, worse = f"{shown} = {right}.", f"{shown} = {wrong}."
        assert number_in(better) == right and number_in(worse) == wrong
        check = f"python: {expression} == {right}; the worse answer says {wrong}"
        pairs.append(pair("arithmetic", index, prompt, better, worse, check))
    return pairs


# Unit conversions -------------------------------------------------------------------------------------

CONVERSIONS: list[tuple[str, str, Callable[[float], float], Callable[[float], float], str, int, int]] = [
    # from, to, the conversion, the mistaken one, what the mistake is, the value's range (low, high)
    ("kilometres", "miles", lambda x: x / 1.609344, lambda x: x * 1.609344, "multiplied instead", 5, 300),
    ("miles", "kilometres", lambda x: x * 1.609344, lambda x: x / 1.609344, "divided instead", 5, 300),
    ("degrees Celsius", "degrees Fahrenheit", lambda x: x * 9 / 5 + 32, lambda x: x * 9 / 5, "no +32", 3, 40),
    (
        "degrees Fahrenheit",
        "degrees Celsius",
        lambda x: (x - 32) * 5 / 9,
        lambda x: x * 5 / 9,
        "no -32",
        50,
        110,
    ),
    ("kilograms", "pounds", lambda x: x / 0.45359237, lambda x: x * 0.45359237, "inverse factor", 2, 120),
    ("pounds", "kilograms", lambda x: x * 0.45359237, lambda x: x / 0.45359237, "inverse factor", 2, 250),
    ("inches", "centimetres", lambda x: x * 2.54, lambda x: x / 2.54, "divided by 2.54", 2, 80),
    ("feet", "metres", lambda x: x * 0.3048, lambda x: x / 0.3048, "inverse factor", 3, 500),
    ("US gallons", "litres", lambda x: x * 3.785411784, lambda x: x / 3.785411784, "inverse factor", 2, 60),
    ("hours", "seconds", lambda x: x * 3600, lambda x: x * 60, "60 s per hour", 2, 24),
    ("days", "hours", lambda x: x * 24, lambda x: x * 12, "12 h per day", 2, 30),
    ("metres per second", "kilometres per hour", lambda x: x * 3.6, lambda x: x / 3.6, "divided", 2, 40),
    ("kilometres per hour", "metres per second", lambda x: x / 3.6, lambda x: x * 3.6, "multiplied", 10, 130),
    (
        "square metres",
        "square feet",
        lambda x: x / 0.3048**2,
        lambda x: x / 0.3048,
        "factor not squared",
        10,
        200,
    ),
    ("ounces", "grams", lambda x: x * 28.349523125, lambda x: x / 28.349523125, "inverse factor", 2, 40),
    ("nautical miles", "kilometres", lambda x: x * 1.852, lambda x: x * 1.609344, "statute miles", 5, 200),
    ("hectares", "square metres", lambda x: x * 10_000, lambda x: x * 100, "100 m² per hectare", 2, 50),
    ("minutes", "hours", lambda x: x / 60, lambda x: x / 100, "100 minutes per hour", 30, 600),
    ("centimetres", "millimetres", lambda x: x * 10, lambda x: x * 100, "100 mm per cm", 2, 90),
    ("litres", "millilitres", lambda x: x * 1000, lambda x: x * 100, "100 ml per litre", 2, 20),
]


def show(value: float) -> str:
    """``value`` to two decimals, without trailing zeros, with thousands separators."""
    text = f"{value:,.2f}".rstrip("0").rstrip(".")
    return text


def conversions(rng: random.Random) -> list[Pair]:
    pairs = []
    for index, (source, target, convert, mistake, why, low, high) in enumerate(CONVERSIONS, 1):
        value = rng.randint(low, high)
        right, wrong = convert(value), mistake(value)
        better = f"{value} {source} is {show(right)} {target}."
        worse = f"{value} {source} is {show(wrong)} {target}."
        if abs(number_in(better) - right) > 0.005 or abs(number_in(worse) - right) < 0.02 * abs(right):
            raise AssertionError(f"conversion pair {index}: {better} / {worse}")
        prompt = f"Convert {value} {source} to {target}, to two decimal places at most."
        check = f"python: exact factor gives {right:.6g}; the worse answer's mistake: {why}"
        pairs.append(pair("units", index, prompt, better, worse, check))
    return pairs


# Dates ------------------------------------------------------------------------------------------------


def day(date: dt.date) -> str:
    """``date`` as people write it: 14 March 1987."""
    return f"{date.day} {date:%B %Y}"


def call(date: dt.date) -> str:
    """``date`` as Python builds it: date(1987, 3, 14)."""
    return f"date({date.year}, {date.month}, {date.day})"


def dates(rng: random.Random) -> list[Pair]:
    def draw() -> dt.date:
        return dt.date(1900, 1, 1) + dt.timedelta(days=rng.randint(0, 200 * 365))

    pairs = []
    for index in range(1, 8):
        date = draw()
        right = f"{date:%A}"
        wrong = f"{date + dt.timedelta(days=rng.choice([-1, 1])):%A}"
        prompt = f"What day of the week is {day(date)}?"
        check = f"python: {call(date)}.strftime('%A') == {right!r}"
        pairs.append(
            pair("dates", index, prompt, f"{day(date)} is a {right}.", f"{day(date)} is a {wrong}.", check)
        )
    for index in range(8, 15):
        start = draw()
        end = start + dt.timedelta(days=rng.randint(20, 400))
        apart = (end - start).days
        counted = apart + 1  # both ends counted
        prompt = f"How many days after {day(start)} is {day(end)}?"
        check = f"python: ({call(end)} - {call(start)}).days == {apart}; the worse "
        check += "answer counts both ends"
        better = f"{day(end)} is {apart} days after {day(start)}."
        worse = f"{day(end)} is {counted} days after {day(start)}."
        pairs.append(pair("dates", index, prompt, better, worse, check))
    for index in range(15, 21):
        start = draw()
        days = rng.randint(30, 200)
        right_date = start + dt.timedelta(days=days)
        wrong_date = right_date + dt.timedelta(days=rng.choice([-1, 1]))
        prompt = f"What is the date {days} days after {day(start)}?"
        check = f"python: {call(start)} + timedelta(days={days}) == {call(right_date)}"
        better = f"{days} days after {day(start)} is {day(right_date)}."
        worse = f"{days} days after {day(start)} is {day(wrong_date)}."
        pairs.append(pair("dates", index, prompt, better, worse, check))
    return pairs


# Capitals ---------------------------------------------------------------------------------------------

CAPITALS = [
    # country, capital, a larger or better-known city that is not the capital
    ("Australia", "Canberra", "Sydney"),
    ("Canada", "Ottawa", "Toronto"),
    ("Turkey", "Ankara", "Istanbul"),
    ("Brazil", "Brasília", "Rio de Janeiro"),
    ("New Zealand", "Wellington", "Auckland"),
    ("Nigeria", "Abuja", "Lagos"),
    ("Pakistan", "Islamabad", "Karachi"),
    ("Morocco", "Rabat", "Casablanca"),
    ("Vietnam", "Hanoi", "Ho Chi Minh City"),
    ("the United Arab Emirates", "Abu Dhabi", "Dubai"),
    ("Kazakhstan", "Astana", "Almaty"),
    ("Ecuador", "Quito", "Guayaquil"),
    ("Myanmar", "Naypyidaw", "Yangon"),
    ("Cameroon", "Yaoundé", "Douala"),
    ("Belize", "Belmopan", "Belize City"),
    ("Saudi Arabia", "Riyadh", "Jeddah"),
    ("India", "New Delhi", "Mumbai"),
    ("Switzerland", "Bern", "Zurich"),
    ("Malta", "Valletta", "Birkirkara"),
    ("Uzbekistan", "Tashkent", "Samarkand"),
]


def capitals() -> list[Pair]:
    pairs = []
    for index, (country, capital, city) in enumerate(CAPITALS, 1):
        if capital == city:
            raise AssertionError(country)
        prompt = f"What is the capital of {country}?"
        better, worse = f"The capital of {country} is {capital}.", f"The capital of {country} is {city}."
        check = f"table: {capital} is the capital; {city} is a larger or better-known city of {country}"
        pairs.append(pair("capitals", index, prompt, better, worse, check))
    return pairs


# Code -------------------------------------------------------------------------------------------------

Cases = list[tuple[tuple[Any, ...], Any]]

CODE: list[tuple[str, str, str, str, Cases]] = [
    # task, function name, better source, worse source (a real bug), test cases ((args), expected)
    (
        "returns n! (the factorial of n, for n >= 0)",
        "factorial",
        "def factorial(n):\n    result = 1\n    for k in range(2, n + 1):\n"
        "        result *= k\n    return result\n",
        "def factorial(n):\n    result = 1\n    for k in range(2, n):\n"
        "        result *= k\n    return result\n",
        [((0,), 1), ((1,), 1), ((5,), 120), ((6,), 720)],
    ),
    (
        "reverses the order of the words in a sentence",
        "reverse_words",
        "def reverse_words(s):\n    return ' '.join(s.split()[::-1])\n",
        "def reverse_words(s):\n    return s[::-1]\n",
        [(("hello big world",), "world big hello"), (("one",), "one")],
    ),
    (
        "tells whether a string is a palindrome, ignoring case",
        "is_palindrome",
        "def is_palindrome(s):\n    s = s.lower()\n    return s == s[::-1]\n",
        "def is_palindrome(s):\n    return s == s[::-1]\n",
        [(("Level",), True), (("abba",), True), (("abc",), False)],
    ),
    (
        "returns 'FizzBuzz' for multiples of 15, 'Fizz' for multiples of 3, 'Buzz' for multiples of 5, "
        "else the number as a string",
        "fizzbuzz",
        "def fizzbuzz(n):\n    if n % 15 == 0:\n        return 'FizzBuzz'\n    if n % 3 == 0:\n"
        "        return 'Fizz'\n    if n % 5 == 0:\n        return 'Buzz'\n    return str(n)\n",
        "def fizzbuzz(n):\n    if n % 3 == 0:\n        return 'Fizz'\n    if n % 5 == 0:\n"
        "        return 'Buzz'\n    if n % 15 == 0:\n        return 'FizzBuzz'\n    return str(n)\n",
        [((3,), "Fizz"), ((10,), "Buzz"), ((30,), "FizzBuzz"), ((7,), "7")],
    ),
    (
        "returns the mean of a non-empty list of numbers",
        "mean",
        "def mean(xs):\n    return sum(xs) / len(xs)\n",
        "def mean(xs):\n    return sum(xs) // len(xs)\n",
        [(([1, 2],), 1.5), (([2, 4, 6],), 4.0)],
    ),
    (
        "counts the vowels (a, e, i, o, u, in either case) in a string",
        "count_vowels",
        "def count_vowels(s):\n    return sum(1 for c in s.lower() if c in 'aeiou')\n",
        "def count_vowels(s):\n    return sum(1 for c in s if c in 'aeiou')\n",
        [(("Apple",), 2), (("sky",), 0), (("EUOUAE",), 6)],
    ),
    (
        "returns the n-th Fibonacci number, with fib(0) = 0 and fib(1) = 1",
        "fib",
        "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
        "def fib(n):\n    a, b = 1, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
        [((0,), 0), ((1,), 1), ((2,), 1), ((10,), 55)],
    ),
    (
        "tells whether an integer n >= 2 is prime",
        "is_prime",
        "def is_prime(n):\n    for d in range(2, int(n ** 0.5) + 1):\n        if n % d == 0:\n"
        "            return False\n    return True\n",
        "def is_prime(n):\n    for d in range(2, n // 2):\n        if n % d == 0:\n"
        "            return False\n    return True\n",
        [((2,), True), ((4,), False), ((9,), False), ((13,), True)],
    ),
    (
        "returns the largest number of a non-empty list, without using max()",
        "largest",
        "def largest(xs):\n    best = xs[0]\n    for x in xs[1:]:\n"
        "        if x > best:\n            best = x\n    return best\n",
        "def largest(xs):\n    best = 0\n    for x in xs:\n        if x > best:\n            best = x\n"
        "    return best\n",
        [(([3, 9, 2],), 9), (([-5, -2, -8],), -2)],
    ),
    (
        "flattens a list of lists into one list",
        "flatten",
        "def flatten(lists):\n    out = []\n    for inner in lists:\n"
        "        out.extend(inner)\n    return out\n",
        "def flatten(lists):\n    out = []\n    for inner in lists:\n"
        "        out.append(inner)\n    return out\n",
        [(([[1, 2], [3]],), [1, 2, 3]), (([],), [])],
    ),
    (
        "returns the second largest distinct value of a list with at least two distinct values",
        "second_largest",
        "def second_largest(xs):\n    return sorted(set(xs))[-2]\n",
        "def second_largest(xs):\n    return sorted(xs)[-2]\n",
        [(([1, 5, 3],), 3), (([4, 7, 7],), 4)],
    ),
    (
        "counts how often each word occurs in a text, as a dict",
        "word_counts",
        "def word_counts(text):\n    counts = {}\n    for word in text.split():\n"
        "        counts[word] = counts.get(word, 0) + 1\n    return counts\n",
        "def word_counts(text):\n    counts = {}\n    for word in text.split(' '):\n"
        "        counts[word] = counts.get(word, 0) + 1\n    return counts\n",
        [(("a b a",), {"a": 2, "b": 1}), (("a  b",), {"a": 1, "b": 1})],
    ),
    (
        "returns the index of target in a sorted list, or -1 when it is absent (binary search)",
        "search",
        "def search(xs, target):\n    lo, hi = 0, len(xs) - 1\n    while lo <= hi:\n"
        "        mid = (lo + hi) // 2\n"
        "        if xs[mid] == target:\n            return mid\n        if xs[mid] < target:\n"
        "            lo = mid + 1\n        else:\n            hi = mid - 1\n    return -1\n",
        "def search(xs, target):\n    lo, hi = 0, len(xs) - 1\n    while lo < hi:\n"
        "        mid = (lo + hi) // 2\n"
        "        if xs[mid] == target:\n            return mid\n        if xs[mid] < target:\n"
        "            lo = mid + 1\n        else:\n            hi = mid - 1\n    return -1\n",
        [(([1, 3, 5, 7], 7), 3), (([1, 3, 5, 7], 1), 0), (([1, 3, 5], 4), -1), (([2], 2), 0)],
    ),
    (
        "merges two dicts into a new one; where both have a key, the second dict's value wins",
        "merge",
        "def merge(a, b):\n    return {**a, **b}\n",
        "def merge(a, b):\n    return {**b, **a}\n",
        [(({"x": 1}, {"x": 2, "y": 3}), {"x": 2, "y": 3})],
    ),
    (
        "splits a list into chunks of size n (the last chunk may be shorter)",
        "chunks",
        "def chunks(xs, n):\n    return [xs[i:i + n] for i in range(0, len(xs), n)]\n",
        "def chunks(xs, n):\n    return [xs[i:i + n] for i in range(0, len(xs) - n, n)]\n",
        [(([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]), (([1, 2], 2), [[1, 2]])],
    ),
    (
        "tells whether a year is a leap year in the Gregorian calendar",
        "is_leap",
        "def is_leap(year):\n    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)\n",
        "def is_leap(year):\n    return year % 4 == 0\n",
        [((2024,), True), ((1900,), False), ((2000,), True), ((2023,), False)],
    ),
    (
        "returns the items of a list in their first order, without repeats",
        "unique",
        "def unique(xs):\n    return list(dict.fromkeys(xs))\n",
        "def unique(xs):\n    return list(set(xs))\n",
        [(([3, 1, 3, 2],), [3, 1, 2]), ((["b", "a", "b"],), ["b", "a"])],
    ),
    (
        "returns the sum of the decimal digits of an integer (of its absolute value)",
        "digit_sum",
        "def digit_sum(n):\n    return sum(int(d) for d in str(abs(n)))\n",
        "def digit_sum(n):\n    return sum(int(d) for d in str(n))\n",
        [((123,), 6), ((-45,), 9)],
    ),
    (
        "adds two numbers",
        "add",
        "def add(a, b):\n    return a + b\n",
        "def add(a, b)\n    return a + b\n",
        [((2, 3), 5)],
    ),
    (
        "returns the average of a list of numbers, or 0 for an empty list",
        "average",
        "def average(xs):\n    if not xs:\n        return 0\n    return sum(xs) / len(xs)\n",
        "def average(xs):\n    total = sum(xs)\n    return totl / len(xs) if xs else 0\n",
        [(([],), 0), (([1, 2, 3],), 2.0)],
    ),
]


def run_cases(name: str, source: str, cases: Cases) -> list[str]:
    """What goes wrong when ``source`` (defining ``name``) runs on ``cases``: empty when all pass."""
    space: dict[str, Any] = {}
    try:
        exec(compile(source, name, "exec"), space)  # our own snippets, written above
    except SyntaxError as error:
        return [f"does not compile: SyntaxError: {error.msg}"]
    problems = []
    for args, expected in cases:
        call = f"{name}({', '.join(map(repr, args))})"
        try:
            got = space[name](*args)
        except Exception as error:
            problems.append(f"{call} raises {type(error).__name__}")
            continue
        if got != expected or type(got) is not type(expected):
            problems.append(f"{call} returns {got!r}, not {expected!r}")
    return problems


def code() -> list[Pair]:
    pairs = []
    for index, (what, name, good, bad, cases) in enumerate(CODE, 1):
        if run_cases(name, good, cases):
            raise AssertionError(f"code pair {index}: the better answer fails a test case")
        failures = run_cases(name, bad, cases)
        if not failures:
            raise AssertionError(f"code pair {index}: the worse answer passes every case")
        prompt = f"Write a Python function `{name}` that {what}."
        cases_run = f"{len(cases)} test case" + ("s" if len(cases) > 1 else "")
        check = f"ran {cases_run}: the better answer passes all; the worse one: {failures[0]}"
        fence = "```python\n{}```"
        pairs.append(pair("code", index, prompt, fence.format(good), fence.format(bad), check))
    return pairs


# Instructions -----------------------------------------------------------------------------------------


def words(text: str) -> int:
    return len(text.split())


INSTRUCTIONS: list[tuple[str, str, str, Callable[[str], bool], str]] = [
    # prompt, better (follows it), worse (breaks it), the check, what it checks
    (
        "Name three primary colours of light, answering in exactly 3 words.",
        "Red green blue",
        "Red, green, and blue.",
        lambda t: words(t) == 3,
        "exactly 3 words",
    ),
    ("Reply in all caps: what is the opposite of hot?", "COLD", "Cold", lambda t: t == t.upper(), "all caps"),
    (
        "Is 7 a prime number? Answer only 'yes' or 'no'.",
        "yes",
        "Yes, 7 is a prime number.",
        lambda t: t.strip().lower() in ("yes", "no"),
        "only yes or no",
    ),
    (
        "List the first five positive even numbers, separated by commas, with no other text.",
        "2, 4, 6, 8, 10",
        "Here they are: 2, 4, 6, 8, 10",
        lambda t: re.fullmatch(r"\d+(, \d+)*", t) is not None,
        "numbers and commas only",
    ),
    (
        "Name a fruit without using the letter 'a' anywhere in your answer.",
        "Kiwi",
        "Banana",
        lambda t: "a" not in t.lower(),
        "no letter a",
    ),
    (
        "Respond in lowercase only: which planet is the largest in our solar system?",
        "jupiter is the largest planet.",
        "Jupiter is the largest planet.",
        lambda t: t == t.lower(),
        "lowercase only",
    ),
    (
        'Answer in JSON with the keys "name" (a string) and "age" (an integer): Ana is 31 years old.',
        '{"name": "Ana", "age": 31}',
        '{"name": "Ana", "age": "thirty-one"}',
        lambda t: isinstance(json.loads(t).get("age"), int) and isinstance(json.loads(t).get("name"), str),
        "JSON with a string name and an integer age",
    ),
    (
        "What is 2 + 3? End your answer with the word 'done'.",
        "2 + 3 = 5, done",
        "2 + 3 = 5.",
        lambda t: t.rstrip(".").split()[-1] == "done",
        "ends with 'done'",
    ),
    (
        "In at most 6 words: why is the sky blue?",
        "Air scatters blue sunlight the most.",
        "The sky looks blue because the molecules of the air scatter the short blue wavelengths of sunlight "
        "much more strongly than the longer red ones.",
        lambda t: words(t) <= 6,
        "at most 6 words",
    ),
    (
        "How many legs does a spider have? Reply with a single number and nothing else.",
        "8",
        "A spider has 8 legs.",
        lambda t: t.strip().isdigit(),
        "a single number",
    ),
    (
        "In exactly two sentences, say what a noun is.",
        "A noun is a word that names a person, place, thing or idea. Examples are 'teacher', 'city' and "
        "'joy'.",
        "A noun is a word that names a person, place, thing or idea, such as 'teacher', 'city' or 'joy'.",
        lambda t: len(re.findall(r"[.!?](?:\s|$)", t)) == 2,
        "exactly two sentences",
    ),
    (
        "Translate 'thank you' into French, and put your answer in double quotes.",
        '"merci"',
        "merci",
        lambda t: t.startswith('"') and t.endswith('"'),
        "in double quotes",
    ),
    (
        "Spell the word 'cat' in capital letters with a hyphen between letters.",
        "C-A-T",
        "c-a-t",
        lambda t: t == "C-A-T",
        "capitals with hyphens",
    ),
    (
        "Sort these words alphabetically and write one per line: pear, apple, fig.",
        "apple\nfig\npear",
        "apple, fig, pear",
        lambda t: t.splitlines() == ["apple", "fig", "pear"],
        "one per line, sorted",
    ),
    (
        "Count from one to five in words, separated by commas.",
        "one, two, three, four, five",
        "1, 2, 3, 4, 5",
        lambda t: not any(c.isdigit() for c in t) and t.count(",") == 4,
        "words, not digits",
    ),
    (
        "Without using any digits, say how many days there are in a week.",
        "There are seven days in a week.",
        "There are 7 days in a week.",
        lambda t: not any(c.isdigit() for c in t),
        "no digits",
    ),
    (
        "Name three farm animals as a bulleted list, each line starting with '- '.",
        "- cow\n- sheep\n- pig",
        "cow, sheep, pig",
        lambda t: [line[:2] for line in t.splitlines()] == ["- "] * 3,
        "three lines starting with '- '",
    ),
    (
        "Write the word 'hello' exactly three times, separated by single spaces.",
        "hello hello hello",
        "hello hello",
        lambda t: t == "hello hello hello",
        "'hello' three times",
    ),
    (
        "Start your reply with 'Sure:' and then name the capital of France.",
        "Sure: Paris.",
        "The capital of France is Paris.",
        lambda t: t.startswith("Sure:"),
        "starts with 'Sure:'",
    ),
    (
        "Give a one-word answer: which is the largest ocean on Earth?",
        "Pacific",
        "The Pacific Ocean",
        lambda t: words(t) == 1,
        "one word",
    ),
]


def instructions() -> list[Pair]:
    pairs = []
    for index, (prompt, better, worse, follows, what) in enumerate(INSTRUCTIONS, 1):
        if not follows(better) or follows(worse):
            raise AssertionError(f"instruction pair {index}: {prompt}")
        check = f"python check ({what}): the better answer passes, the worse one fails"
        pairs.append(pair("instructions", index, prompt, better, worse, check))
    return pairs


def make_pairs() -> list[Pair]:
    """Every pair, checked, in a fixed order."""
    rng = random.Random(SEED)
    made = [*arithmetic(rng), *conversions(rng), *dates(rng), *capitals(), *code(), *instructions()]
    ids = [p["id"] for p in made]
    if len(set(ids)) != len(ids) or any(p["better"] == p["worse"] for p in made):
        raise AssertionError("ids repeat, or a pair's two answers are the same")
    return made


def render(pairs: list[Pair]) -> str:
    return "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs)


if __name__ == "__main__":
    PAIRS_FILE.write_text(render(make_pairs()), encoding="utf-8")
    print(f"wrote {PAIRS_FILE} ({len(make_pairs())} pairs)")
