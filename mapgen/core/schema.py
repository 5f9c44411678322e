"""Answer schemas: a pydantic model (or a JSON schema dict) as the JSON schema backends constrain to,
as OpenAI's strict form, as Arrow column types, and as a model that validates answers.

One answer model is written once and everything else derives from it:

- :func:`answer_schema`: the JSON schema sent to constraining backends (llama.cpp grammars, OpenAI
  ``json_schema``, vLLM guided decoding) and entered in the response store's key. Titles are dropped and
  ``$ref`` s to ``$defs`` inlined (where not recursive): they do not change what a model may write, and
  a plain tree is what every backend's schema compiler takes.
- :func:`strict_schema`: OpenAI's strict structured outputs accept a subset of JSON schema: every object
  has ``additionalProperties: false`` and lists every property as required (an optional property is
  required and nullable instead), and ``default`` is not a keyword.
- :func:`arrow_types`: one Arrow type per top-level property: ``string``, ``integer`` (``int64``),
  ``number`` (``float64``), ``boolean``, enums (the values' type: strings for ``Enum`` s of strings),
  arrays (lists), nested objects (structs), nullable unions (the other member's type; Arrow values are
  nullable). A free-form object (no ``properties``) or a union of different types is kept as its JSON
  text in a ``string`` column: Arrow has no type for it.
- :func:`answer_model`: a pydantic model for a JSON schema dict, so that answers to a hand-written schema
  are validated by pydantic too.

Example:
    >>> from typing import Literal, Optional
    >>> from pydantic import BaseModel, Field
    >>> class Review(BaseModel):
    ...     sentiment: Literal["positive", "negative"]
    ...     stars: int = Field(ge=1, le=5)
    ...     tags: list[str]
    ...     summary: Optional[str] = None
    >>> answer_schema(Review)["properties"]["stars"]
    {'maximum': 5, 'minimum': 1, 'type': 'integer'}
    >>> {name: str(kind) for name, kind in arrow_types(answer_schema(Review)).items()}
    {'sentiment': 'string', 'stars': 'int64', 'tags': 'list<item: string>', 'summary': 'string'}
    >>> sorted(strict_schema(answer_schema(Review))["required"])
    ['sentiment', 'stars', 'summary', 'tags']
"""

import copy
import json
from collections.abc import Mapping
from types import GenericAlias
from typing import Any, Literal, Optional

import pyarrow as pa
from pydantic import ConfigDict

from mapgen.errors import NotStrict

JSON_TEXT = pa.string()
"""The Arrow type of a value kept as its JSON text (free-form objects, unions of different types)."""

_SCALARS = {"string": pa.string(), "integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}


def _without_description(schema: dict[str, Any], cls: type) -> None:
    schema.pop("description", None)


UNDOCUMENTED = ConfigDict(json_schema_extra=_without_description)
"""``model_config`` of an answer model whose docstring documents the code, not the answer: the
docstring stays out of its JSON schema, which constraining backends show the model (field
descriptions stay)."""


def is_model(value: Any) -> bool:
    """Whether ``value`` is a pydantic model class."""
    try:
        from pydantic import BaseModel
    except ImportError:  # pragma: no cover - pydantic is a dependency
        return False
    return isinstance(value, type) and issubclass(value, BaseModel)


def answer_schema(model: Any) -> dict[str, Any]:
    """The JSON schema of ``model`` (a pydantic model class, or a JSON schema dict, copied), without
    titles and with its ``$defs`` inlined unless a definition refers to itself.

    Raises:
        TypeError: ``model`` is neither.

    Example:
        >>> from pydantic import BaseModel
        >>> class Item(BaseModel):
        ...     name: str
        >>> class Order(BaseModel):
        ...     items: list[Item]
        >>> answer_schema(Order)
        {'properties': {'items': {'items': {'properties': {'name': {'type': 'string'}}, \
'required': ['name'], 'type': 'object'}, 'type': 'array'}}, 'required': ['items'], 'type': 'object'}
    """
    if is_model(model):
        schema = model.model_json_schema()
    elif isinstance(model, Mapping):
        schema = copy.deepcopy(dict(model))
    else:
        raise TypeError(f"an answer model is a pydantic model class or a JSON schema dict, got {model!r}.")
    definitions = schema.get("$defs", {})
    if definitions and not _recursive(definitions):
        schema = _inline(schema, definitions)
        schema.pop("$defs", None)
    return _without_titles(schema)


STRICT_UNSUPPORTED = frozenset(
    {"default", "minLength", "maxLength", "minProperties", "maxProperties", "uniqueItems"}
    | {"propertyNames", "unevaluatedProperties", "discriminator"}
)
"""Keywords OpenAI's strict mode refuses ("... is not permitted") that :func:`strict_schema` drops: each
only narrows what an answer may be (``discriminator`` only names the tag of a union whose members
already tell themselves apart), and validation checks them on every answer (an answer that fails is
asked again)."""

STRICT_REFUSED = frozenset(
    {"not", "if", "then", "else", "dependentRequired", "dependentSchemas", "patternProperties"}
    | {"contains", "minContains", "maxContains", "unevaluatedItems"}
)
"""Keywords OpenAI's strict mode refuses that have no strict form: dropped, they would let answers
through that the schema forbids, and nothing would check them (``patternProperties`` allows keys that
closing the object would forbid). :func:`strict_schema` raises :class:`NotStrict` for them."""

STRICT_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
"""The string ``format`` s OpenAI's strict mode takes; :func:`strict_schema` drops any other (pydantic
writes ``binary`` for ``bytes``, ``uri``, ``path``, ``password``...), which only narrows what an answer may
be: validation checks it."""

_TYPED = frozenset({"type", "anyOf", "$ref", "enum", "const"})
"""Keywords that give a subschema a kind strict mode takes; one with none of them (an ``Any`` field:
``{}``) is refused ("schema must have a 'type' key")."""


def strict_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` in the form OpenAI's strict structured outputs require ("Supported schemas" in OpenAI's
    structured outputs guide), translated construct by construct:

    - every object closed (``additionalProperties: false``) with every property required, a property
      that was optional made nullable (``anyOf`` with ``null``);
    - ``oneOf`` written as ``anyOf`` (pydantic writes a discriminated union as ``oneOf`` with a
      ``discriminator``; its members exclude each other by their tags already), ``allOf`` merged into
      one schema (pydantic once wrote a ``$ref`` with a description beside it so), a tuple's
      ``prefixItems`` as ``items`` of any of its members' types;
    - the keywords strict mode refuses that only narrow what an answer may be dropped
      (:data:`STRICT_UNSUPPORTED`: ``default``, ``minLength``, ``discriminator``...), and so is a
      ``format`` outside :data:`STRICT_FORMATS` (``binary``, ``uri``...).

    Answers valid under it are valid under ``schema`` once ``null`` s stand for absent optional fields,
    except for what was widened (dropped bounds, a tuple's positions, ``oneOf`` 's "exactly one"), which
    validation checks.

    Raises:
        NotStrict: a construct that has no strict form, named with where it is: a root that is not one
            object, a free-form object (a ``dict`` field, or ``{"type": "object"}``), which strict mode
            would close, an untyped subschema (an ``Any`` field: ``{}``; one with none of ``type``,
            ``anyOf``, ``oneOf``, ``allOf``, ``$ref``, ``enum``, ``const``), ``allOf`` members that
            disagree, or a keyword of :data:`STRICT_REFUSED` (``not``, ``if``, ``patternProperties``...).

    Example:
        >>> strict_schema({"type": "object", "properties": {"a": {"type": "string"}}})
        {'type': 'object', 'properties': {'a': {'anyOf': [{'type': 'string'}, {'type': 'null'}]}}, \
'additionalProperties': False, 'required': ['a']}
        >>> union = {"oneOf": [{"type": "string"}, {"type": "integer"}], "discriminator": {"mapping": {}}}
        >>> strict_schema({"type": "object", "properties": {"a": union}, "required": ["a"]})["properties"]
        {'a': {'anyOf': [{'type': 'string'}, {'type': 'integer'}]}}
    """

    def walk(node: Any, path: _Path) -> Any:
        """One subschema in strict form; only keywords whose values are subschemas are walked (an enum
        value or a ``const`` that is an object is a value, copied as it is)."""
        if not isinstance(node, Mapping):
            return copy.deepcopy(node)  # a boolean schema (additionalProperties: false)
        node = _translated(node, path)
        is_object = node.get("type") == "object" or "properties" in node
        if not is_object and _TYPED.isdisjoint(node):
            raise NotStrict(
                f"an untyped schema (an Any field: {{}}) at {_where(path)} has no strict form: strict mode "
                "wants a 'type'"
            )
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in STRICT_UNSUPPORTED or (key == "format" and not _strict_format(value)):
                continue
            if key in ("properties", "$defs", "definitions") and isinstance(value, Mapping):
                out[key] = {name: walk(sub, ((path, key), name)) for name, sub in value.items()}
            elif key in ("items", "anyOf") and isinstance(value, list):
                out[key] = [walk(item, ((path, key), i)) for i, item in enumerate(value)]
            elif key == "items" or (key == "additionalProperties" and not is_object):
                out[key] = walk(value, (path, key))
            else:  # a value, or an object's additionalProperties (set to false below)
                out[key] = copy.deepcopy(value)
        if "type" not in out and ("enum" in out or "const" in out):  # strict mode wants a type
            types = _json_types(out["enum"] if "enum" in out else [out["const"]])
            if types is not None:
                out["type"] = types
        if is_object:
            if "properties" not in node and node.get("additionalProperties") is not False:
                # Any object, or a free-form mapping (dict[str, X]): strict mode would close it to {} only.
                raise NotStrict(f"a free-form object (a dict field) at {_where(path)} has no strict form")
            properties = out.get("properties", {})
            required = set(node.get("required", ()))
            out["properties"] = {
                name: sub if name in required or _nullable(sub) else {"anyOf": [sub, {"type": "null"}]}
                for name, sub in properties.items()
            }
            out.setdefault("type", "object")  # strict mode wants every object typed
            out["additionalProperties"] = False
            out["required"] = list(properties)
        return out

    root = _translated(schema, None)
    if root.get("type", "object" if "properties" in root else None) != "object" or "anyOf" in root:
        raise NotStrict("the root of a strict schema is one object (not a union, not an array)")
    return walk(root, None)


_Path = Optional[tuple[Any, Any]]  # noqa: UP045 - a runtime alias
"""Where a node is in a schema, as ``(parent's path, key)`` pairs back to the root (``None``): cheap to
make for every node, spelt out (:func:`_where`) only for an error."""

_TRANSLATED = STRICT_REFUSED | {"allOf", "oneOf", "prefixItems", "unevaluatedProperties"}


def _json_types(values: list[Any]) -> str | list[str] | None:
    """The JSON Schema type(s) of scalar enum or const values (pydantic writes ``Literal[1, "a"]``
    untyped), or ``None`` when one is an object or an array.

    Example:
        >>> _json_types(["a", "b"]), _json_types([1, "a", None]), _json_types([{"k": 1}])
        ('string', ['integer', 'null', 'string'], None)
    """
    names = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}
    if any(type(v) not in names for v in values):
        return None
    found = sorted({names[type(v)] for v in values})
    return found[0] if len(found) == 1 else found


def _strict_format(value: Any) -> bool:
    """Whether ``value`` is a ``format`` strict mode takes."""
    return isinstance(value, str) and value in STRICT_FORMATS


def _where(path: _Path) -> str:
    """``path`` as a JSON pointer (``/properties/pet``)."""
    keys: list[str] = []
    while path is not None:
        path, key = path
        keys.append(str(key))
    return "/" + "/".join(reversed(keys))


def _translated(node: Mapping[str, Any], path: _Path) -> Mapping[str, Any]:
    """One node of :func:`strict_schema` with its own constructs translated (``allOf``, ``oneOf``,
    ``prefixItems``), before its keys are walked; raises :class:`NotStrict` for what has no strict form."""
    if _TRANSLATED.isdisjoint(node):  # most nodes
        return node
    while "allOf" in node:
        node = _merged(node, path)
    refused = sorted(STRICT_REFUSED.intersection(node))
    if refused:
        raise NotStrict(f"{refused[0]!r} at {_where(path)} has no strict form")
    if node.get("unevaluatedProperties") not in (None, False):
        raise NotStrict(f"'unevaluatedProperties' at {_where(path)} has no strict form")
    if "oneOf" in node:
        if "anyOf" in node:
            raise NotStrict(f"'oneOf' beside 'anyOf' at {_where(path)} has no strict form")
        node = {("anyOf" if key == "oneOf" else key): value for key, value in node.items()}
    if "prefixItems" in node:
        node = _tuple_items(node, path)
    return node


def _merged(node: Mapping[str, Any], path: _Path) -> dict[str, Any]:
    """``node`` with its ``allOf`` members merged into it: properties and ``required`` joined, the node's
    own annotations first; members that disagree on a keyword raise :class:`NotStrict`."""
    members = node["allOf"]
    if not isinstance(members, list) or not all(isinstance(m, Mapping) for m in members):
        raise NotStrict(f"'allOf' at {_where(path)} is not a list of schemas")
    merged = {key: value for key, value in node.items() if key != "allOf"}
    for member in members:
        for key, value in member.items():
            if key not in merged or merged[key] == value or key in ("description", "title", "examples"):
                merged.setdefault(key, value)
            elif key == "properties" and isinstance(value, Mapping):
                clash = [n for n in value if n in merged[key] and merged[key][n] != value[n]]
                if clash:
                    raise NotStrict(f"'allOf' members at {_where(path)} disagree on property {clash[0]!r}")
                merged[key] = {**merged[key], **value}
            elif key == "required" and isinstance(value, list):
                merged[key] = [*merged[key], *(n for n in value if n not in merged[key])]
            else:
                raise NotStrict(f"'allOf' members at {_where(path)} disagree on {key!r}: no strict form")
    return merged


def _tuple_items(node: Mapping[str, Any], path: _Path) -> dict[str, Any]:
    """A tuple (``prefixItems``) as an array whose items are any of its members' types; its length
    bounds stay. One that allows further items of any type has no strict form."""
    members = list(node["prefixItems"])
    rest = node.get("items", True)
    if rest is True and node.get("maxItems", len(members) + 1) > len(members):
        raise NotStrict(f"a tuple with open-ended items at {_where(path)} has no strict form")
    if isinstance(rest, Mapping):
        members.append(rest)
    kinds: list[Any] = []
    for member in members:
        if member not in kinds:
            kinds.append(member)
    out = {key: value for key, value in node.items() if key not in ("prefixItems", "items")}
    out["items"] = kinds[0] if len(kinds) == 1 else {"anyOf": kinds}
    return out


def arrow_types(schema: Mapping[str, Any]) -> dict[str, pa.DataType]:
    """The Arrow type of each top-level property of an object ``schema`` (see the module docs).

    Raises:
        ValueError: ``schema`` is not an object with properties, or is recursive.
    """
    if "$defs" in schema:
        raise ValueError("a recursive answer model has no Arrow type: give it a fixed depth.")
    properties = schema.get("properties")
    if schema.get("type", "object") != "object" or not isinstance(properties, Mapping) or not properties:
        raise ValueError(
            "a structured answer is a JSON object with properties (a pydantic model, or a schema of "
            f"type 'object'); each property becomes a column. Got {json.dumps(schema)[:200]}."
        )
    return {name: arrow_type(sub) for name, sub in properties.items()}


def arrow_type(node: Mapping[str, Any]) -> pa.DataType:
    """The Arrow type of one JSON schema node (see the module docs)."""
    options = node.get("anyOf") or node.get("oneOf")
    if options:
        kinds = {str(t): t for t in (arrow_type(o) for o in options if o.get("type") != "null")}
        return next(iter(kinds.values())) if len(kinds) == 1 else JSON_TEXT
    if "const" in node:
        return _value_type([node["const"]])
    if "enum" in node:
        return _value_type(node["enum"])
    kind = node.get("type")
    if isinstance(kind, list):  # ["string", "null"]
        others = [k for k in kind if k != "null"]
        return arrow_type({**node, "type": others[0]}) if len(others) == 1 else JSON_TEXT
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array":
        items = node.get("items")
        return pa.list_(arrow_type(items) if isinstance(items, Mapping) else JSON_TEXT)
    if kind == "object" and node.get("properties"):
        return pa.struct([pa.field(name, arrow_type(sub)) for name, sub in node["properties"].items()])
    return JSON_TEXT


def to_arrow_value(value: Any, kind: pa.DataType) -> Any:
    """A validated answer's JSON value (``model_dump(mode="json")``) shaped for a column of ``kind``:
    the value itself, with what Arrow cannot type kept as JSON text."""
    if value is None:
        return None
    if kind == JSON_TEXT and not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if pa.types.is_list(kind) and isinstance(value, list):
        return [to_arrow_value(item, kind.value_type) for item in value]
    if pa.types.is_struct(kind) and isinstance(value, Mapping):
        return {field.name: to_arrow_value(value.get(field.name), field.type) for field in kind}
    if pa.types.is_floating(kind) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def answer_model(schema: Mapping[str, Any], name: str = "Answer") -> type:
    """A pydantic model that validates answers to an object ``schema``: property types, ``required``,
    nullable unions, enums and ``const`` (as ``Literal``), nested objects and arrays, and the bounds
    ``minimum``/``maximum``, ``exclusiveMinimum``/``exclusiveMaximum``, ``minLength``/``maxLength``,
    ``minItems``/``maxItems`` and ``pattern``. Other keywords are not checked.

    Example:
        >>> Model = answer_model({"type": "object", "properties": {"n": {"type": "integer", "maximum": 3}},
        ...                       "required": ["n"]})
        >>> Model.model_validate_json('{"n": 2}').n
        2
    """
    from pydantic import ConfigDict, create_model

    arrow_types(schema)  # the same checks: an object with properties, not recursive
    required = set(schema.get("required", ()))
    fields: dict[str, Any] = {}
    for position, (prop, sub) in enumerate(schema["properties"].items()):
        annotation = _annotation(sub, f"{name}_{position}")
        if prop in required:
            fields[prop] = (annotation, _field(sub, ...))
        else:
            fields[prop] = (Optional[annotation], _field(sub, None))  # noqa: UP045 - a runtime type
    return create_model(name, __config__=ConfigDict(protected_namespaces=()), **fields)


def _annotation(node: Mapping[str, Any], name: str) -> Any:
    from typing import Annotated, Union

    options = node.get("anyOf") or node.get("oneOf")
    if options:
        members = [_annotation(o, f"{name}_{i}") for i, o in enumerate(options) if o.get("type") != "null"]
        annotation = members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007
        nullable = any(o.get("type") == "null" for o in options)
        return Optional[annotation] if nullable else annotation  # noqa: UP045
    if "const" in node:
        return Literal[node["const"]]
    if "enum" in node:
        return Literal[tuple(node["enum"])]
    kind: Any = node.get("type")  # a JSON value
    if isinstance(kind, list):
        members = [_annotation({**node, "type": k}, name) for k in kind if k != "null"]
        annotation = members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007
        return Optional[annotation] if "null" in kind else annotation  # noqa: UP045
    constraints = _constraints(node)
    if kind == "array":
        items = node.get("items")
        # list[item], for an item type built at run time
        annotation = (
            GenericAlias(list, _annotation(items, f"{name}_item")) if isinstance(items, Mapping) else list
        )
    elif kind == "object" and node.get("properties"):
        return answer_model(node, name)
    else:
        annotation = {"string": str, "integer": int, "number": float, "boolean": bool, "object": dict}.get(
            kind, Any
        )
    if constraints:
        from pydantic import Field

        return Annotated[annotation, Field(**constraints)]
    return annotation


def _constraints(node: Mapping[str, Any]) -> dict[str, Any]:
    names = {
        "minimum": "ge",
        "maximum": "le",
        "exclusiveMinimum": "gt",
        "exclusiveMaximum": "lt",
        "minLength": "min_length",
        "maxLength": "max_length",
        "minItems": "min_length",
        "maxItems": "max_length",
        "pattern": "pattern",
    }
    return {names[key]: value for key, value in node.items() if key in names}


def _field(node: Mapping[str, Any], default: Any) -> Any:
    from pydantic import Field

    return Field(default, description=node.get("description"))


def _value_type(values: list[Any]) -> pa.DataType:
    """The Arrow type of enum values: int64, float64, bool or string (also for mixed kinds)."""
    kinds = {type(v) for v in values if v is not None}
    if kinds == {bool}:
        return pa.bool_()
    if kinds == {int}:
        return pa.int64()
    if kinds and kinds <= {int, float}:
        return pa.float64()
    return pa.string()


def _nullable(node: Mapping[str, Any]) -> bool:
    kind = node.get("type")
    options = node.get("anyOf") or node.get("oneOf") or ()
    return (
        kind == "null"
        or (isinstance(kind, list) and "null" in kind)
        or any(o.get("type") == "null" for o in options)
    )


def _refs(node: Any) -> set[str]:
    if isinstance(node, Mapping):
        found = {node["$ref"].rsplit("/", 1)[-1]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


def _recursive(definitions: Mapping[str, Any]) -> bool:
    """Whether a definition reaches itself through ``$ref`` s."""

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for ref in _refs(definitions.get(start, {})):
            if ref == target or (ref not in seen and reaches(ref, target, seen | {ref})):
                return True
        return False

    return any(reaches(name, name, {name}) for name in definitions)


def _inline(node: Any, definitions: Mapping[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    if not isinstance(node, Mapping):
        return node
    if isinstance(node.get("$ref"), str):
        target = _inline(definitions[node["$ref"].rsplit("/", 1)[-1]], definitions)
        extra = {k: _inline(v, definitions) for k, v in node.items() if k != "$ref"}
        return {**target, **extra}
    return {key: _inline(value, definitions) for key, value in node.items() if key != "$defs"}


def _without_titles(node: Any, *, names: bool = False) -> Any:
    """``node`` without ``title`` keywords; under ``properties`` (``names``), keys are property names
    and a property called ``title`` stays."""
    if isinstance(node, list):
        return [_without_titles(item) for item in node]
    if not isinstance(node, Mapping):
        return node
    if names:
        return {key: _without_titles(value) for key, value in node.items()}
    return {
        key: _without_titles(value, names=key in ("properties", "$defs"))
        for key, value in node.items()
        if key != "title"
    }
