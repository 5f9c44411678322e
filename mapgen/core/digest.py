"""A digest of what a class's code does: the fingerprint's share of a task's parser and prompt code.

A task's output depends on its fields, its template, the code of its methods and the module-level values
that code reads; not on the rest of its module's text. So :func:`code_digest` hashes, for the class and
each base outside the standard library and installed packages (mapgen's own bases included: a release that
changes a parser must re-run maps):

- every method's code (bytecode, constants and names, nested functions too; never line numbers, file names
  or docstrings, so moving code or rewording a comment keeps caches), with its defaults and closure;
- the other class attributes that are not dataclass fields (the fields are fingerprinted by value);
- the globals that code reads, by value: plain data as itself, functions by their code (and theirs in
  turn, to a bounded depth), other objects by ``datasets``' Hasher, as ``datasets`` hashes a map
  function's globals. A class of the user's (or mapgen's) counts by what it holds: a pydantic model by its
  JSON schema, an enum by its members, a dataclass by its fields and defaults, each, as a plain class,
  with its own attributes and methods' code; a module of the user's by the values its code reads from it
  (``helpers.SCALE``, ``helpers.double``: the attribute names that follow the global in the bytecode).
  Libraries' modules and classes count by name only (``json.loads`` does not drag the json module in).

Libraries' functions and classes count by name: their code changes with their version, as ``datasets``'
own pickler refers to them. The digest is the same in every process (no ids, addresses or set order), and
its work is bounded: each function, class and module is walked once, to a bounded depth.

Example:
    >>> namespace = {"__name__": "notebook"}
    >>> exec("UNIT = 'cm'\\nclass Measure:\\n    def parse(self, text): return text + UNIT", namespace)
    >>> before = code_digest(namespace["Measure"])
    >>> namespace["UNIT"] = "mm"  # a constant the parser reads
    >>> code_digest(namespace["Measure"]) != before
    True
"""

from __future__ import annotations

import dataclasses
import dis
import enum
import functools
import hashlib
import json
import os
import re
import sys
import sysconfig
import types
from collections.abc import Collection, Mapping
from typing import Any

from datasets.fingerprint import Hasher

__all__ = ["code_digest"]

_MAX_DEPTH = 8
"""How many global functions deep the digest follows calls; deeper ones count by name."""

_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL"})
_ATTRIBUTE_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_LIBRARY_DIRS = tuple(
    os.path.join(os.path.realpath(sysconfig.get_paths()[key]), "") for key in ("stdlib", "platstdlib")
)
_FLAGS = 0xFFFF
"""The code flags that say what a function is (a generator, takes *args...); the ones above say which
``__future__`` imports its module made, which show in the bytecode where they matter."""
_SCALARS = (type(None), bool, int, float, complex, str, bytes, type(Ellipsis))
_BUILTINS = (types.BuiltinFunctionType, types.MethodDescriptorType, types.WrapperDescriptorType)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_ENUM_STATE = frozenset({"_member_names_", "_member_map_", "_value2member_map_", "_unhashable_values_"})
"""An enum's own tables of its members, which count once, by name and value."""


def code_digest(cls: type, exclude: Collection[str] = ()) -> str:
    """A short digest of ``cls``'s code and of the module-level values it reads (see the module's text),
    less the attributes named in ``exclude`` (methods that never change output), in every class.

    Example:
        >>> class Shout:
        ...     def parse(self, text): return text.upper()
        >>> class Whisper:
        ...     def parse(self, text): return text.lower()
        >>> code_digest(Shout) == code_digest(Shout), code_digest(Shout) == code_digest(Whisper)
        (True, False)
    """
    state = _Digest().of_class(cls, frozenset(exclude))
    return hashlib.sha256(json.dumps(state, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


class _Digest:
    """One walk over a class's code, in a fixed order: a function, class or module met again (a shared
    helper, a recursion, a method's ``__class__``) is named, not hashed again, so the state grows with the
    code, not with the paths through it."""

    def __init__(self) -> None:
        self.seen: dict[int, object] = {}  # by id; holding the objects keeps the ids unique
        self.hashed: dict[int, tuple[object, list[Any]]] = {}  # Hasher's states, by id, with their objects

    def first_visit(self, obj: object) -> bool:
        if id(obj) in self.seen:
            return False
        self.seen[id(obj)] = obj
        return True

    def of_class(self, cls: type, exclude: frozenset[str], depth: int = 0) -> list[Any]:
        """The class's own attributes and those of its bases outside libraries, less dataclass fields
        (fingerprinted by value, or by :meth:`field`) and ``exclude``; methods by their code."""
        fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        skipped = fields | exclude
        bases = []
        for base in cls.__mro__:
            if not _follows(base.__module__):
                continue
            self.first_visit(base)
            members: Mapping[str, Any] | None = (
                vars(base).get("_member_map_") if issubclass(base, enum.Enum) else None
            )
            attributes = {
                name: self.value(value, depth)
                for name, value in vars(base).items()
                if not _is_dunder(name)
                and not name.startswith("_abc_")
                and name not in skipped
                # (ABCMeta's `_abc_impl` caches the subclasses met so far: state, not code)
                and not (members is not None and (name in _ENUM_STATE or name in members))
                # (an enum's members count by :meth:`klass`; `_member_map_` and the like repeat them)
            }
            bases.append([_name(base), attributes])
        return bases

    def klass(self, cls: type, depth: int) -> Any:
        """A class by what it holds: a pydantic model by its JSON schema, an enum by its members, a
        dataclass by its fields; each with its own attributes and methods' code. Libraries' by name."""
        if not _follows(cls.__module__) or depth > _MAX_DEPTH:
            return ["class", _name(cls)]
        if not self.first_visit(cls):
            return ["seen", _name(cls)]
        state: list[Any] = ["class", _name(cls)]
        if _is_pydantic_model(cls):
            state.append(["schema", self.schema(cls, depth)])
        elif issubclass(cls, enum.Enum):
            members = [
                [name, self.value(member.value, depth + 1)] for name, member in cls.__members__.items()
            ]
            state.append(["members", members])
        elif dataclasses.is_dataclass(cls):
            state.append(["fields", [self.field(f, depth) for f in dataclasses.fields(cls)]])
        state.append(self.of_class(cls, frozenset(), depth + 1))
        return state

    def schema(self, model: Any, depth: int) -> Any:
        try:
            return self.value(model.model_json_schema(), depth + 1)
        except Exception:  # a model with no JSON schema (a field of an arbitrary type): its fields' types
            fields = getattr(model, "model_fields", {})
            return [[name, _annotation(f.annotation), _annotation(f.default)] for name, f in fields.items()]

    def field(self, f: dataclasses.Field[Any], depth: int) -> Any:
        default = None if f.default is dataclasses.MISSING else self.value(f.default, depth + 1)
        factory = f.default_factory
        made = None if factory is dataclasses.MISSING else self.value(factory, depth + 1)
        return [f.name, _annotation(f.type), default, made, f.init, f.kw_only is True]

    def module(self, module: types.ModuleType, paths: Collection[tuple[str, ...]], depth: int) -> Any:
        """A module by the values read from it (``module.NAME``, ``module.sub.NAME``); a library's, or
        one passed on whole, by name."""
        if not _follows(module.__name__) or depth > _MAX_DEPTH:
            return ["module", module.__name__]
        reads = {}
        for path in paths:
            value: Any = module
            for i, attribute in enumerate(path):
                try:
                    value = getattr(value, attribute)
                except Exception:  # (a module's __getattr__ may raise anything)
                    reads[".".join(path[: i + 1])] = ["missing"]
                    break
                if not isinstance(value, types.ModuleType) or not _follows(value.__name__):
                    reads[".".join(path[: i + 1])] = self.value(value, depth + 1)
                    break
            else:
                if path:
                    reads[".".join(path)] = ["module", value.__name__]
        return ["module", module.__name__, reads]

    def value(self, value: Any, depth: int) -> Any:
        """A JSON-able state of one value, the same in every process."""
        if isinstance(value, _SCALARS):
            return [type(value).__name__, repr(value)]
        if isinstance(value, (list, tuple)):
            return [type(value).__name__, [self.value(item, depth) for item in value]]
        if isinstance(value, (set, frozenset)):
            return [type(value).__name__, _sorted(self.value(item, depth) for item in value)]
        if isinstance(value, Mapping):
            items = ([self.value(k, depth), self.value(v, depth)] for k, v in value.items())
            return [type(value).__name__, _sorted(items)]
        if isinstance(value, types.ModuleType):
            return ["module", value.__name__]
        if isinstance(value, type):
            return self.klass(value, depth)
        if isinstance(value, enum.Enum):
            return ["enum", _name(type(value)), value.name, self.value(value.value, depth)]
        if isinstance(value, re.Pattern):
            return ["pattern", self.value(value.pattern, depth), value.flags]
        if isinstance(value, types.FunctionType):
            return self.function(value, depth)
        if isinstance(value, (staticmethod, classmethod)):
            return [type(value).__name__, self.value(value.__func__, depth)]
        if isinstance(value, property):
            return ["property", [self.value(f, depth) for f in (value.fget, value.fset, value.fdel)]]
        if isinstance(value, functools.cached_property):
            return ["cached_property", self.value(value.func, depth)]
        if callable(value) and hasattr(value, "__wrapped__"):  # functools.lru_cache and the like
            return ["wrapped", _name(type(value)), self.value(value.__wrapped__, depth)]
        if isinstance(value, _BUILTINS):
            return ["builtin", getattr(value, "__module__", None) or "", value.__qualname__]
        if isinstance(value, functools.partial):  # a pickle names its function only: its code counts
            arguments = [self.value(a, depth) for a in value.args]
            keywords = self.value(dict(value.keywords), depth)
            return ["partial", self.value(value.func, depth), arguments, keywords]
        if _follows(type(value).__module__) and hasattr(value, "__dict__") and depth <= _MAX_DEPTH:
            # an instance of the user's class: its methods' code and its attributes
            if not self.first_visit(value):
                return ["seen", _name(type(value))]
            state = self.value(dict(vars(value)), depth + 1)
            return ["instance", self.klass(type(value), depth + 1), state]
        if id(value) not in self.hashed:  # (a template environment read by several functions: pickled once)
            try:
                self.hashed[id(value)] = (value, ["object", _name(type(value)), Hasher.hash(value)])
            except Exception:  # an object no pickler can save: its type is what is left to say
                self.hashed[id(value)] = (value, ["object", _name(type(value))])
        return self.hashed[id(value)][1]

    def function(self, fn: types.FunctionType, depth: int) -> Any:
        if not _follows(fn.__module__) or depth > _MAX_DEPTH:
            return ["function", fn.__module__ or "", fn.__qualname__]
        if not self.first_visit(fn):
            return ["seen", fn.__module__ or "", fn.__qualname__]
        cells = []
        for cell in fn.__closure__ or ():
            try:
                cells.append(self.value(cell.cell_contents, depth + 1))
            except ValueError:  # a cell not yet filled
                cells.append(None)
        reads = {}
        for name, paths in _global_reads(fn.__code__):
            if name not in fn.__globals__:
                continue
            value = fn.__globals__[name]
            if isinstance(value, types.ModuleType):
                reads[name] = self.module(value, paths, depth + 1)
            else:
                reads[name] = self.value(value, depth + 1)
        defaults = [self.value(fn.__defaults__, depth), self.value(fn.__kwdefaults__, depth)]
        return ["function", _code(fn.__code__, fn.__doc__), defaults, cells, reads]


def _code(code: types.CodeType, doc: str | None = None) -> list[Any]:
    """Bytecode, constants (nested code too) and names: no line numbers or file names, no docstring."""
    consts = list(code.co_consts)
    if doc is not None and consts and consts[0] == doc:
        consts[0] = None
    return [
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags & _FLAGS,
        code.co_code.hex(),
        [_code(c) if isinstance(c, types.CodeType) else _constant(c) for c in consts],
        list(code.co_names),
        list(code.co_varnames),
        list(code.co_freevars),
        list(code.co_cellvars),
    ]


def _constant(value: Any) -> Any:
    if isinstance(value, (tuple, frozenset)):  # frozenset order follows the (salted) string hash: sorted
        items = [_code(c) if isinstance(c, types.CodeType) else _constant(c) for c in value]
        return [type(value).__name__, items if isinstance(value, tuple) else _sorted(items)]
    return [type(value).__name__, repr(value)]


@functools.lru_cache(maxsize=4096)  # code is immutable, and disassembling it is most of a digest's time
def _global_reads(code: types.CodeType) -> tuple[tuple[str, tuple[tuple[str, ...], ...]], ...]:
    """The global names ``code`` and the code nested in it read or write, first use first, each with the
    attribute paths read from it (``helpers.SCALE`` reads ``("SCALE",)`` from ``helpers``; the name alone
    reads ``()``)."""
    reads: dict[str, dict[tuple[str, ...], None]] = {}
    _collect_reads(code, reads)
    return tuple((name, tuple(paths)) for name, paths in reads.items())


def _collect_reads(code: types.CodeType, reads: dict[str, dict[tuple[str, ...], None]]) -> None:
    name: str | None = None  # the global whose attributes the instructions now read
    path: list[str] = []
    for instruction in dis.get_instructions(code):
        if name is not None:
            if instruction.opname in _ATTRIBUTE_OPS:
                path.append(instruction.argval)
                continue
            if instruction.opname == "EXTENDED_ARG":
                continue
            reads[name][tuple(path)] = None
            name = None
        if instruction.opname in _GLOBAL_OPS:
            reads.setdefault(instruction.argval, {})
            if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                name, path = instruction.argval, []
    if name is not None:
        reads[name][tuple(path)] = None
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _collect_reads(const, reads)


@functools.lru_cache(maxsize=1024)
def _follows(module_name: str | None) -> bool:
    """Whether code from this module counts by its content: scripts, notebooks, the user's modules and
    mapgen's own; the standard library and installed packages count by name."""
    if not module_name or module_name == "__main__" or module_name.split(".")[0] == "mapgen":
        return True
    module = sys.modules.get(module_name)
    if module is None:  # code made at run time (exec, a notebook cell)
        return True
    file = getattr(module, "__file__", None)
    if file is None:  # built into the interpreter
        return False
    path = os.path.realpath(file)
    parts = path.split(os.sep)
    return not ("site-packages" in parts or "dist-packages" in parts or path.startswith(_LIBRARY_DIRS))


def _is_dunder(name: str) -> bool:
    # Object protocol (the dataclass-made __init__, __eq__, __repr__...), not prompt or parse code.
    return name.startswith("__") and name.endswith("__")


def _is_pydantic_model(cls: type) -> bool:
    pydantic = sys.modules.get("pydantic")  # (not imported here: a model's module has imported it)
    return pydantic is not None and issubclass(cls, pydantic.BaseModel)


def _annotation(annotation: Any) -> str:
    """A type annotation (or a default shown as one) as text, the same in every process."""
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type):
        return _name(annotation)
    return _ADDRESS.sub("", repr(annotation))


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _sorted(items: Any) -> list[Any]:
    return sorted(items, key=lambda item: json.dumps(item, sort_keys=True, separators=(",", ":")))
