"""``mapgen.verify``: check each generation against the row's reference answer, for rejection sampling.

Three kinds of check, each writing ``verified`` (``True`` / ``False``, ``None`` where nothing could be
checked) aligned with the generations, and ``verification_errors`` (why a check could not be made):

- ``kind="math"``: mathematical equivalence with HuggingFace's `math-verify
  <https://github.com/huggingface/Math-Verify>`_ (``parse`` then ``verify``): ``\\frac{1}{2}`` equals
  ``0.5``, ``{1,3} \\cup {2,4}`` equals ``{1,2,3,4}``, ``$28\\%$`` equals ``0.28``; a reference of words
  alone (``Paris``) is text, not math: ``None`` with a ``parse`` reason;
- ``kind="json"``: the generation is JSON that a pydantic model (or any type pydantic's ``TypeAdapter``
  takes) or a JSON schema dict (with the ``jsonschema`` package) accepts;
- ``kind=<callable>``: the user's own ``check(generation, reference) -> bool``.

math-verify bounds each parse and each comparison with ``signal.alarm``, which works only in a process's
main thread. ``Dataset.map`` calls the check there, in the calling process and in each ``num_proc`` worker
(each a process of its own, its tasks run on its main thread), so the timeout is set in both. SIGALRM is
unblocked for each check: a worker forked from a thread that blocks it inherits that mask, and would never
take the alarm. A check that returns after its timeout all the same (its alarm lost, or held up in C code,
which a signal does not stop) took its time, but is ``None`` with the timeout error, never a verdict.
Called from another thread (a thread pool, a web server's handler), the checks run without a timeout, said
once in a :class:`~mapgen.MapgenWarning`: a pathological expression can then take as long as sympy takes.
Never is an unchecked answer ``True``.

Running generated code against tests is no kind here: that needs a sandbox this module does not have.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from itertools import product
from typing import Any, Literal, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mapgen.core.columns import VERIFICATION_ERRORS, VERIFIED, VERIFY_COLUMNS
from mapgen.core.keywords import checked_keywords
from mapgen.core.optional import optional_import
from mapgen.errors import INPUT, PARSE, TIMEOUT, MapgenWarning, MissingColumnError, error_text
from mapgen.mapping.steps import record_step

logger = logging.getLogger(__name__)

VERIFIER = "verifier"
"""The kind of a check that raised (math-verify's comparison, the user's function): ``verifier: ...``."""

KINDS = ("math", "json")

_DELIMITED = re.compile(r"\$|\\\(|\\\[|\\boxed")
"""A reference already in a LaTeX environment (math-verify reads LaTeX only inside one)."""

_WORDS = re.compile(r"[^\W\d_]+(?:[\s'-]+[^\W\d_]+)*")
"""A reference made of words alone (letters, no digit, no LaTeX): text, which math-verify would read as a
product of symbols. One letter alone (a multiple-choice answer, a variable) is math-verify's to read."""

_SHOWN = 80
"""Characters of a text quoted in an error."""

_warned_no_timeout = False


@checked_keywords
def verify(
    ds: Any,
    column: str = "generations",
    reference: str | None = "answer",
    kind: Literal["math", "json"] | Callable[[Any, Any], bool | None] = "math",
    *,
    schema: Any = None,
    timeout: int | None = 5,
    float_rounding: int = 6,
    strict: bool = True,
    num_proc: int | None = None,
    batch_size: int = 1000,
) -> Any:
    """Check every generation in ``column`` against the row's ``reference``; the dataset with
    ``verified`` and ``verification_errors`` added (replaced, when it has them), and its record of this
    step (parameters, answers verified, rejected and unchecked) for :func:`mapgen.dataset_card`
    (:mod:`mapgen.mapping.steps`).

    ``column`` holds a list of generations per row (what :func:`mapgen.generate` writes: ``verified`` is
    then a list of the same length, one value per generation), or one string per row (``verified`` one
    value). Each value is ``True`` (it checks out), ``False`` (it does not: a wrong answer, no answer
    math-verify could find, JSON the schema refuses), or ``None``: the generation is ``None`` (a failed
    answer: ``generation_errors`` says why), the row has no reference, or the check itself failed, which
    ``verification_errors`` says, led by its kind, as mapgen's other error columns are:
    ``input: no reference answer in 'answer'``, ``parse: ...``, ``timeout: ...``, ``verifier: ...``. A
    failing check is data, never an exception out of the map.

    Kinds:

    - ``"math"``: math-verify's ``parse`` reads the generation (LaTeX in ``$...$``, ``\\(...\\)``,
      ``\\[...\\]``, ``\\boxed{}``, or a plain number or expression; the last answer it finds) and its
      ``verify`` compares it with the reference, with ``float_rounding`` (decimal places) and ``strict``
      (``False``: variables matched by position, sets comparable with tuples). A reference in no LaTeX
      environment (``\\frac{1}{2}``, ``0.5``, a dataset's bare ``answer``) is read as one LaTeX expression,
      as if in ``$...$``, else as text. ``timeout`` bounds each parse and each comparison (whole seconds;
      ``None``: no bound). Both texts are math-verify's to read: ``verify`` is not symmetric, the reference
      is its gold.
    - ``"json"``: the generation is one JSON document (a ``dict`` or ``list`` value is taken as parsed)
      that ``schema`` accepts: a pydantic model, any type pydantic's ``TypeAdapter`` takes
      (``list[int]``), or a JSON schema dict (which needs the ``jsonschema`` package). The reference is not
      read (pass ``reference=None``, or leave the default: a missing ``answer`` column is no error).
    - a callable ``check(generation, reference) -> bool``: ``True`` / ``False`` as it returns them, ``None``
      (with the reason) where it returns ``None`` or anything else, or raises. With ``reference=None`` it
      gets ``None`` for the reference. It must be picklable by ``dill`` for ``num_proc`` (a lambda is).

    Runs as a batched ``Dataset.map`` (``num_proc`` workers, ``batch_size`` rows at a time, datasets'
    cache). Running generated code is no kind: it needs a sandbox (docs/clean_data.md).

    Raises:
        TypeError: ``ds`` is not a ``datasets.Dataset``, or ``kind`` is neither a kind nor callable.
        ValueError: ``kind`` is not a kind; ``schema`` is missing for ``"json"``, given for another kind, or
            is no schema; ``timeout``, ``float_rounding`` or ``batch_size`` is out of range.
        mapgen.MissingColumnError: ``column``, or the ``reference`` a kind reads, is not a column.
        ImportError: ``"math"`` without ``math-verify``, or a JSON schema dict without ``jsonschema``
            (``pip install 'mapgen[clean]'``).

    Example:
        >>> import datasets, mapgen
        >>> ds = datasets.Dataset.from_dict({
        ...     "input": ["Half of 1?", "2 + 2?"],
        ...     "generations": [["$\\\\frac{1}{2}$", "0.5", "1/3"], ["4", None]],
        ...     "answer": ["0.5", "4"],
        ... })
        >>> checked = mapgen.verify(ds)
        >>> list(checked["verified"])
        [[True, True, False], [True, None]]
        >>> list(mapgen.verify(ds, kind=lambda text, answer: text == answer)["verified"])
        [[False, True, False], [True, None]]
    """
    import datasets

    if not isinstance(ds, datasets.Dataset):
        raise TypeError(
            "verify takes a datasets.Dataset (for a DatasetDict, call it on each split), got "
            f"{type(ds).__name__}."
        )
    checker = _checker(kind, schema, timeout, float_rounding, strict)
    reads_reference = reference is not None and not isinstance(checker, _Json)
    wanted = [column, *([reference] if reads_reference and reference is not None else [])]
    missing = [name for name in wanted if name not in ds.column_names]
    if missing:
        raise MissingColumnError(
            f"verify reads column(s) {missing}, which the dataset does not have (columns: "
            f"{ds.column_names}). Name the generations with column=, the reference answers with reference=."
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}.")
    per_row = not _is_list(ds, column)
    value = datasets.Value("bool"), datasets.Value("string")
    added = value if per_row else tuple(datasets.List(v) for v in value)
    features = datasets.Features(
        {
            **{name: f for name, f in ds.features.items() if name not in VERIFY_COLUMNS},
            VERIFIED: added[0],
            VERIFICATION_ERRORS: added[1],
        }
    )
    check = partial(
        _check_batch,
        checker=checker,
        column=column,
        reference=reference if reads_reference else None,
        per_row=per_row,
    )
    if len(ds):
        out = ds.map(
            check, batched=True, batch_size=batch_size, num_proc=num_proc, features=features, desc="Verify"
        )
    else:  # datasets' map skips an empty dataset: the columns are added all the same
        out = ds.remove_columns([name for name in VERIFY_COLUMNS if name in ds.column_names])
        for name in VERIFY_COLUMNS:
            out = out.add_column(name, pa.array([], features.arrow_schema.field(name).type))
    parameters: dict[str, Any] = {"column": column, "reference": reference if reads_reference else None}
    parameters["kind"] = kind
    if isinstance(checker, _Math):
        parameters |= {"timeout": timeout, "float_rounding": float_rounding, "strict": strict}
    if isinstance(checker, _Json):
        parameters["schema"] = getattr(schema, "__name__", None) or "a JSON schema"
    return record_step(ds, out, "verify", parameters, _verdicts(out))


def _verdicts(ds: Any) -> dict[str, int]:
    """How many checked answers were ``verified`` (``True``), ``rejected`` (``False``) and ``unchecked``
    (``None``), counted with Arrow over the column (flattened where it holds a list per row)."""
    column = ds.data.table.column(VERIFIED)
    values = pc.list_flatten(column) if pa.types.is_list(column.type) else column
    verified = int(pc.sum(values).as_py() or 0)
    checked = len(values) - values.null_count
    return {"verified": verified, "rejected": checked - verified, "unchecked": values.null_count}


def _is_list(ds: Any, column: str) -> bool:
    kind = ds.features.arrow_schema.field(column).type
    return bool(pa.types.is_list(kind) or pa.types.is_large_list(kind))


def _checker(
    kind: Any, schema: Any, timeout: int | None, float_rounding: int, strict: bool
) -> _Math | _Json | _Callable:
    """The check ``kind`` names, its options validated: every mistake raises here, before any row."""
    if isinstance(kind, str) and kind not in KINDS:
        raise ValueError(
            f"kind must be one of {list(KINDS)} or a function (generation, reference) -> bool, got {kind!r}."
        )
    if not isinstance(kind, str) and not callable(kind):
        raise TypeError(
            f"kind must be one of {list(KINDS)} or a function (generation, reference) -> bool, got {kind!r}."
        )
    if kind == "json":
        if schema is None:
            raise ValueError(
                "verify(kind='json') needs schema=: a pydantic model, a type (list[int]), or a JSON schema "
                "dict."
            )
        _validator(schema)  # refuses what is no schema now, not in every row
        return _Json(schema)
    if schema is not None:
        raise ValueError(f"schema= is for kind='json'; kind={kind!r} takes none.")
    if callable(kind):
        return _Callable(kind)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1):
        raise ValueError(
            f"timeout must be whole seconds >= 1 (math-verify's signal.alarm counts whole seconds), or None "
            f"for no bound; got {timeout!r}."
        )
    if isinstance(float_rounding, bool) or not isinstance(float_rounding, int) or float_rounding < 0:
        raise ValueError(
            f"float_rounding must be a whole number of decimal places >= 0, got {float_rounding!r}."
        )
    optional_import("math_verify", "clean", "mapgen.verify(kind='math')")
    return _Math(timeout=timeout, float_rounding=float_rounding, strict=bool(strict))


Verdict = tuple[bool | None, str | None]
"""One check's result: ``verified`` and ``verification_errors``."""

T = TypeVar("T")


def _check_batch(
    batch: Mapping[str, list[Any]],
    *,
    checker: _Math | _Json | _Callable,
    column: str,
    reference: str | None,
    per_row: bool,
) -> dict[str, list[Any]]:
    verified: list[Any] = []
    errors: list[Any] = []
    references = batch[reference] if reference is not None else [None] * len(batch[column])
    for value, answer in zip(batch[column], references, strict=True):
        generations = [value] if per_row else list(value or [])
        found = _check_row(checker, generations, answer, reference)
        verified.append(found[0][0] if per_row else [v for v, _ in found])
        errors.append(found[0][1] if per_row else [e for _, e in found])
    return {VERIFIED: verified, VERIFICATION_ERRORS: errors}


def _check_row(
    checker: _Math | _Json | _Callable, generations: list[Any], answer: Any, reference: str | None
) -> list[Verdict]:
    """The verdicts of one row's generations (the reference read once for all of them)."""
    if not any(g is not None for g in generations):
        return [(None, None)] * len(generations)
    if reference is not None and (answer is None or (isinstance(answer, str) and not answer.strip())):
        missing = error_text(INPUT, f"no reference answer in {reference!r}")
        return [(None, None if g is None else missing) for g in generations]
    if isinstance(checker, _Math):
        gold, failure = checker.read_reference(answer)
        if failure is not None:
            return [(None, None if g is None else failure) for g in generations]
        return [(None, None) if g is None else checker.check(g, gold) for g in generations]
    return [(None, None) if g is None else checker.check(g, answer) for g in generations]


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _alarm_deliverable() -> Iterator[None]:
    """SIGALRM unblocked in this thread for the block, blocked again after if it was. Where every thread
    of a process blocks it (a ``num_proc`` worker forked from a thread that does: fork copies that thread's
    mask into the worker's only thread), math-verify's alarm stays pending and the check runs to its end."""
    if not hasattr(signal, "pthread_sigmask"):  # no signal masks (Windows: math-verify times with a process)
        yield
        return
    was = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
    try:
        yield
    finally:
        if signal.SIGALRM in was:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


def _failure(kind: str, error: BaseException, what: str) -> str:
    return error_text(kind, f"{what}: {type(error).__name__}: {error}")


@dataclass(frozen=True)
class _Math:
    """math-verify's ``parse`` and ``verify``, every failure of its own kept as a reason."""

    timeout: int | None
    float_rounding: int
    strict: bool

    def _timeout(self) -> int | None:
        """The timeout math-verify can keep here: none off the main thread, where ``signal`` refuses."""
        global _warned_no_timeout
        if self.timeout is None or _main_thread():
            return self.timeout
        if not _warned_no_timeout:
            _warned_no_timeout = True
            warnings.warn(
                "mapgen.verify(kind='math') runs off the main thread, where math-verify cannot set its "
                "signal.alarm timeout: its checks run unbounded. Call it from the main thread, or use "
                "num_proc.",
                MapgenWarning,
                stacklevel=2,
            )
        return None

    def _bounded(self, call: Callable[[int | None], T]) -> T:
        """``call(timeout)``, a math-verify call given the timeout it may keep here; a
        ``TimeoutException`` where it ran past the timeout, even if its alarm never stopped it."""
        from math_verify.errors import TimeoutException

        timeout = self._timeout()
        if timeout is None:
            return call(None)
        start = time.monotonic()
        with _alarm_deliverable():
            result = call(timeout)
        if time.monotonic() - start > timeout:  # the alarm was lost: the verdict still says it could not tell
            raise TimeoutException(f"math-verify's call ran past its {timeout} s timeout")
        return result

    def _parse(self, text: str) -> list[Any]:
        from math_verify import parse

        return self._bounded(lambda timeout: list(parse(text, parsing_timeout=timeout, raise_on_error=True)))

    def _compare(self, gold: Any, answer: Any, timeout: int | None) -> bool:
        from math_verify import verify

        return bool(
            verify(
                gold,
                answer,
                float_rounding=self.float_rounding,
                strict=self.strict,
                timeout_seconds=timeout,
                raise_on_error=True,
            )
        )

    def read_reference(self, answer: Any) -> tuple[list[Any], str | None]:
        """The reference parsed (its gold), or the reason it could not be."""
        from math_verify.errors import TimeoutException

        if isinstance(answer, (list, tuple, dict)):
            return [], error_text(
                INPUT, f"the reference {_shown(str(answer))} is a {type(answer).__name__}, not one answer"
            )
        text = str(answer).strip()
        if _WORDS.fullmatch(text) and any(len(word) > 1 for word in re.findall(r"[^\W\d_]+", text)):
            # "Paris" read as math is the product P*a*r*i*s: an anagram would match it, "Paris" would not
            return [], error_text(
                PARSE,
                f"the reference {_shown(text)} is text, not a math expression: check text answers with "
                "kind=<your function>",
            )
        try:
            gold = [] if _DELIMITED.search(text) else self._parse(f"${text}$")
            gold = gold or self._parse(text)
        except TimeoutException:
            return [], error_text(TIMEOUT, f"math-verify took over {self.timeout} s to parse the reference")
        except Exception as error:  # math-verify's own failure: data, as the rows are
            return [], _failure(PARSE, error, "math-verify could not parse the reference")
        if not gold:
            return [], error_text(PARSE, f"math-verify found no answer in the reference {_shown(text)}")
        return gold, None

    def check(self, generation: Any, gold: list[Any]) -> Verdict:
        from math_verify.errors import TimeoutException

        try:
            answer = self._parse(str(generation))
        except TimeoutException:
            return None, error_text(
                TIMEOUT, f"math-verify took over {self.timeout} s to parse the generation"
            )
        except Exception as error:
            return None, _failure(PARSE, error, "math-verify could not parse the generation")
        if not answer:
            return False, None  # no answer in it: math-verify's verify says False too
        # Each (reference, answer) reading pair alone, as math-verify's verify pairs them, so that one pair
        # that fails does not hide another that matches.
        failure = None
        for g, t in product(gold, answer):
            try:
                if self._bounded(partial(self._compare, g, t)) and not self._bounded(partial(_apart, g, t)):
                    return True, None
            except TimeoutException:
                failure = failure or error_text(TIMEOUT, f"math-verify took over {self.timeout} s to compare")
            except Exception as error:
                failure = failure or _failure(VERIFIER, error, "math-verify's comparison failed")
        return (None, failure) if failure else (False, None)


def _apart(gold: Any, answer: Any, timeout: int | None) -> bool:
    """Whether two exact numbers (sympy expressions with no float in them) that math-verify found equal
    differ all the same. math-verify compares such expressions with ``evalf(chop=True)``, which takes any
    difference below about 1e-15 for none: ``1/2004!`` equals ``1/2006!``, and ``2^-99`` equals ``2^-98``
    (Math-Verify#14). Their exact difference says otherwise. Anything else (a float, a set, an equation,
    a symbol) is math-verify's to judge."""
    from math_verify.utils import timeout as bounded
    from sympy import Basic, Float

    exact = all(isinstance(x, Basic) and x.is_number and not x.has(Float) for x in (gold, answer))
    return exact and bounded(timeout)(lambda: (gold - answer).simplify().is_zero is False)()


def _validator(schema: Any) -> Callable[[Any], bool]:
    """A function that says whether a generation (JSON text, or a value already parsed) fits ``schema``."""
    if isinstance(schema, Mapping):
        jsonschema = optional_import(
            "jsonschema", "clean", "mapgen.verify(kind='json') with a JSON schema dict"
        )
        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as error:
            raise ValueError(f"schema is not a valid JSON schema: {error.message}") from None
        validator = cls(schema)

        def fits_schema(generation: Any) -> bool:
            try:
                value = json.loads(generation) if isinstance(generation, (str, bytes)) else generation
            except ValueError:  # not JSON (json.JSONDecodeError), so not what was asked
                return False
            return bool(validator.is_valid(value))

        return fits_schema
    from pydantic import TypeAdapter, ValidationError

    try:
        adapter: TypeAdapter[Any] = TypeAdapter(schema)
    except Exception as error:
        raise ValueError(
            f"schema must be a pydantic model, a type pydantic's TypeAdapter takes, or a JSON schema dict; "
            f"got {schema!r} ({type(error).__name__}: {error})."
        ) from None

    def fits_type(generation: Any) -> bool:
        try:  # pydantic's JSON mode for text (invalid JSON is a ValidationError too), else its Python mode
            if isinstance(generation, (str, bytes)):
                adapter.validate_json(generation)
            else:
                adapter.validate_python(generation)
        except ValidationError:
            return False
        return True

    return fits_type


@dataclass(frozen=True)
class _Json:
    """Valid JSON that ``schema`` accepts; the validator built once per process, never pickled."""

    schema: Any

    def __getstate__(self) -> dict[str, Any]:
        return {"schema": self.schema}  # not the validator: pydantic's and jsonschema's need not pickle

    def check(self, generation: Any, _reference: Any) -> Verdict:
        fits = self.__dict__.get("_fits")
        if fits is None:
            fits = _validator(self.schema)
            object.__setattr__(self, "_fits", fits)
        try:
            return fits(generation), None
        except Exception as error:  # the validator's own failure (a recursion too deep)
            return None, _failure(VERIFIER, error, "the JSON check failed")


@dataclass(frozen=True)
class _Callable:
    """The user's ``check(generation, reference)``."""

    function: Callable[[Any, Any], Any]

    def check(self, generation: Any, reference: Any) -> Verdict:
        name = getattr(self.function, "__name__", type(self.function).__name__)
        try:
            result = self.function(generation, reference)
        except Exception as error:
            return None, _failure(VERIFIER, error, f"{name} raised")
        if isinstance(result, (bool, np.bool_)):
            return bool(result), None
        if result is None:
            return None, error_text(VERIFIER, f"{name} could not tell (it returned None)")
        return None, error_text(VERIFIER, f"{name} returned {type(result).__name__}, not a bool")
