"""mapgen's exceptions: every one is a ``MapgenError`` defined in ``mapgen.errors`` (but the few private ones
named below), each still the built-in class it was, and still found where it was defined before."""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

import mapgen
import mapgen.cli
from mapgen import errors
from mapgen.errors import MapgenError

PACKAGE = Path(mapgen.__file__).resolve().parent

PRIVATE = {
    "mapgen.cli.CommandError": "main() turns it into a message and exit status 2",
    "mapgen.cli.InterruptedRun": "main() turns it into a message and exit status 130",
    "mapgen.llms.provider_batches._JobFailed": "an APIError of one kind, raised and read in its module",
}
"""Exceptions that stay beside their only user: none reaches a caller of mapgen."""

NOT_MAPGEN_ERRORS = {errors.Interrupted}
"""A ``KeyboardInterrupt``: a ``MapgenError`` is an ``Exception``, which ``except Exception`` would catch."""

EXCEPTION_NAMES = ("Error", "Exception", "Warning", "KeyboardInterrupt", "Interrupt")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in mapgen/, by ``module.name`` (found in the source, then imported)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        module = importlib.import_module(name)
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                cls = getattr(module, node.name)
                if isinstance(cls, type) and issubclass(cls, BaseException) and cls.__module__ == name:
                    found[f"{name}.{node.name}"] = cls
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):  # a class inside a function or class: judged by its bases' names
            if isinstance(node, ast.ClassDef) and id(node) not in top:
                bases = [ast.unparse(base).rpartition(".")[2] for base in node.bases]
                assert not any(base.endswith(EXCEPTION_NAMES) for base in bases), (
                    f"{name}: the exception class {node.name} belongs in mapgen.errors"
                )
    return found


def test_every_exception_is_a_mapgen_error_in_mapgen_errors():
    found = exception_classes()
    assert set(PRIVATE) <= set(found)
    assert len(found) >= 19  # the count, plus the bases MapgenError and MapgenWarning
    for name, cls in found.items():
        if cls not in NOT_MAPGEN_ERRORS:
            assert issubclass(cls, MapgenError), name
        assert name in PRIVATE or cls.__module__ == "mapgen.errors", f"{name} belongs in mapgen.errors"


def test_the_module_docstring_lists_every_public_class():
    public = [
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, BaseException) and name[0] != "_"
    ]
    for name in public:
        assert f"``{name}``" in errors.__doc__, name


@pytest.mark.parametrize(
    "cls, builtin",
    [
        (errors.InputError, ValueError),
        (errors.ParseError, ValueError),
        (errors.InvalidOutput, ValueError),
        (errors.AmbiguousScore, ValueError),
        (errors.MissingColumnError, ValueError),
        (errors.ImageError, ValueError),
        (errors.NotStrict, ValueError),
        (errors.DamagedAnswer, ValueError),
        (errors.FatalAPIError, RuntimeError),
        (errors.StoreError, RuntimeError),
        (errors.DeviceError, RuntimeError),
        (errors.CacheWarning, UserWarning),
        (errors.StoreWarning, UserWarning),
        (errors.SchemaWarning, UserWarning),
    ],
)
def test_the_built_in_base_still_catches_it(cls, builtin):
    error = cls("text", "reason") if cls is errors.InputError else cls("reason")
    with pytest.raises(builtin):
        raise error
    with pytest.raises(MapgenError):
        raise error


def test_an_interrupt_stays_out_of_except_exception():
    assert issubclass(errors.Interrupted, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        try:
            raise errors.Interrupted("interrupted: 3 answers are kept")
        except Exception:  # what a program's catch-all must not swallow
            pytest.fail("Ctrl-C was caught as an Exception")


def test_mapgen_warnings_are_filtered_as_one():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        warnings.simplefilter("ignore", errors.MapgenWarning)  # the filter added last is matched first
        warnings.warn("unhashable", errors.CacheWarning, stacklevel=1)
        warnings.warn("not mapgen's", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["not mapgen's"]


@pytest.mark.parametrize(
    "module, name",
    [
        ("mapgen", "InputError"),
        ("mapgen", "ParseError"),
        ("mapgen", "InvalidOutput"),
        ("mapgen", "MissingColumnError"),
        ("mapgen", "CacheWarning"),
        ("mapgen", "StoreWarning"),
        ("mapgen", "Interrupted"),
        ("mapgen", "BatchPending"),
        ("mapgen", "FatalAPIError"),
        ("mapgen", "StoreError"),
        ("mapgen", "MapgenError"),
        ("mapgen", "MapgenWarning"),
        ("mapgen.tasks", "InputError"),
        ("mapgen.tasks.base", "InputError"),
        ("mapgen.tasks.base", "ParseError"),
        ("mapgen.tasks.parsing", "ParseError"),
        ("mapgen.tasks.parsing", "InvalidOutput"),
        ("mapgen.tasks.parsing", "AmbiguousScore"),
        ("mapgen.mapping.map_function", "MissingColumnError"),
        ("mapgen.mapping.map_function", "CacheWarning"),
        ("mapgen.llms.devices", "DeviceError"),
        ("mapgen.llms._http", "APIError"),
        ("mapgen.llms._http", "scrub"),
        ("mapgen.store", "StoreWarning"),
        ("mapgen.store.base", "StoreWarning"),
        ("mapgen.store.base", "DamagedAnswer"),
        ("mapgen.core.images", "ImageError"),
        ("mapgen.core.schema", "NotStrict"),
        ("mapgen.runtime.interrupts", "Interrupted"),
    ],
)
def test_the_old_homes_still_resolve(module, name):
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_mapgen_exports_the_base():
    assert {"MapgenError", "MapgenWarning"} <= set(mapgen.__all__)


def test_fields_moved_unchanged():
    api = errors.APIError("HTTP 429: slow", status=429, retryable=True, retry_after=2.0)
    assert (api.status, api.kind, api.retryable, api.fatal) == (429, "http_429", True, False)
    assert api.retry_after == 2.0
    assert api.with_context(3, 60.0).args[0] == "HTTP 429: slow (after 3 attempts)"
    assert errors.APIError.invalid_answer("no choices").kind == errors.INVALID_ANSWER
    assert errors.APIError.timeout(5).kind == errors.TIMEOUT
    pending = errors.BatchPending(["batch_a", "batch_b"], pending=4)
    assert (pending.jobs, pending.pending) == (["batch_a", "batch_b"], 4)
    assert errors.InputError("conversation", "no user turn").input == "conversation"
    assert errors.InvalidOutput.kind == errors.INVALID_OUTPUT and errors.ImageError.kind == errors.INPUT
    assert mapgen.cli.InterruptedRun(3).kept == 3
