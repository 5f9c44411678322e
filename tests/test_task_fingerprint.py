"""A task's map fingerprint covers what its output depends on (issue 19, item 3b): its fields, its template,
the code of its methods and the module-level values that code reads; not the rest of its module's text.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

import mapgen

TASK_MODULE = '''
from dataclasses import dataclass

import mapgen

UNIT = "cm"
SEPARATOR = ": "


def with_unit(text):
    return f"{text.strip()} {UNIT}"


@dataclass(frozen=True, kw_only=True)
class Measure(mapgen.Task):
    """How long a thing is."""

    template: str = "How long is {{ input }}?"
    outputs = ("length",)

    def parse(self, text):
        return {"length": "length" + SEPARATOR + with_unit(text)}
'''

UNRELATED_EDITS = {
    "an import": ("import mapgen\n", "import json\nimport mapgen\n"),
    "a comment": ("UNIT =", "# Lengths are written with their unit.\n\n\nUNIT ="),
    "an unrelated function": ("\n\n@dataclass", "\n\ndef unused(x):\n    return x * 2\n\n\n@dataclass"),
    "an unrelated constant": ('SEPARATOR = ": "\n', 'SEPARATOR = ": "\nVERSION = "2"\n'),
    "the class docstring": ("How long a thing is.", "The length of a thing, with its unit."),
    "a docstring for the parser": (
        "    def parse(self, text):\n",
        '    def parse(self, text):\n        """Unit."""\n',
    ),
    "a __future__ import": ("from dataclasses", "from __future__ import annotations\n\nfrom dataclasses"),
    "a review layout": (
        "    def parse",
        "    def review(self):\n        return super().review()\n\n    def parse",
    ),
}
OUTPUT_EDITS = {
    "a constant the parser reads": ('SEPARATOR = ": "', 'SEPARATOR = " = "'),
    "a constant a helper of the parser reads": ('UNIT = "cm"', 'UNIT = "mm"'),
    "the helper's code": ("text.strip()", "text.lower()"),
    "the template": ("How long is {{ input }}?", "What is the length of {{ input }}?"),
    "the parse method's body": ('"length" + SEPARATOR', '"size" + SEPARATOR'),
}


def task_fingerprint(folder, source: str, monkeypatch) -> str:
    """Import ``source`` as the module ``user_measure`` (afresh, from its own folder) and fingerprint a
    map function over its task."""
    folder.mkdir()
    module = import_fresh("user_measure", folder, source, monkeypatch)
    return mapgen.fingerprint(mapgen.generate(mapgen.LlamaCppLLM(), module.Measure()))


def import_fresh(name: str, folder, source: str, monkeypatch):
    """``source`` written to ``folder/<name>.py`` and imported as the module ``name``, afresh."""
    path = folder / f"{name}.py"
    path.write_text(source)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def base_fingerprint(tmp_path, monkeypatch):
    return task_fingerprint(tmp_path / "base", TASK_MODULE, monkeypatch)


def edited(old: str, new: str) -> str:
    assert old in TASK_MODULE
    return TASK_MODULE.replace(old, new, 1)


def test_reimporting_the_same_module_keeps_the_fingerprint(tmp_path, monkeypatch, base_fingerprint):
    assert task_fingerprint(tmp_path / "again", TASK_MODULE, monkeypatch) == base_fingerprint


@pytest.mark.parametrize("edit", sorted(UNRELATED_EDITS))
def test_an_unrelated_edit_to_the_tasks_module_keeps_the_fingerprint(
    tmp_path, monkeypatch, base_fingerprint, edit
):
    source = edited(*UNRELATED_EDITS[edit])
    assert task_fingerprint(tmp_path / "edited", source, monkeypatch) == base_fingerprint


@pytest.mark.parametrize("edit", sorted(OUTPUT_EDITS))
def test_an_edit_the_output_depends_on_changes_the_fingerprint(tmp_path, monkeypatch, base_fingerprint, edit):
    source = edited(*OUTPUT_EDITS[edit])
    assert task_fingerprint(tmp_path / "edited", source, monkeypatch) != base_fingerprint


def test_a_global_read_by_a_method_changes_the_digest_in_process():
    # A notebook re-runs a cell that sets a constant, without redefining the class.
    from mapgen.core.digest import code_digest

    namespace: dict = {"__name__": "notebook_cell"}
    exec("UNIT = 'cm'\nclass Reader:\n    def parse(self, text):\n        return text + UNIT\n", namespace)
    before = code_digest(namespace["Reader"])
    namespace["UNIT"] = "mm"
    assert code_digest(namespace["Reader"]) != before


# Built-in tasks: their code counts too (a mapgen release that changes a parser re-runs maps), the same in
# every process whatever the hash seed, and using a task does not change it.

BUILT_IN_SCRIPT = """
import json
import mapgen
from mapgen.core.digest import code_digest

tasks = [getattr(mapgen, name) for name in sorted(dir(mapgen)) if name.endswith("Task")]
tasks = [cls for cls in tasks if isinstance(cls, type) and issubclass(cls, mapgen.Task)]
print(json.dumps({cls.__qualname__: code_digest(cls) for cls in tasks}))
"""


def built_in_digests(seed: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    command = [sys.executable, "-c", BUILT_IN_SCRIPT]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout)


def test_built_in_tasks_digest_the_same_in_every_process_and_each_its_own():
    first = built_in_digests("1")
    assert built_in_digests("2") == first
    assert len(first) > 10
    assert len(set(first.values())) == len(first)


def test_using_a_built_in_task_leaves_its_fingerprint_as_it_was():
    task = mapgen.TextGenerationTask(template="Q: {{ input }} {% if input %}!{% endif %}")
    fn = mapgen.generate(mapgen.LlamaCppLLM(), task)
    before = mapgen.fingerprint(fn)
    task.prompt({"input": "x"})
    mapgen.UltraFeedbackTask.for_overall_quality().parse("Rating: 4\nRationale: fine")
    assert mapgen.fingerprint(fn) == before


# A task in a script (``__main__``) whose parser reads a module-level constant: editing the constant and
# running the script again re-runs the map instead of serving datasets' cached result.

SCRIPT = """
import json, sys
from dataclasses import dataclass

import datasets
import mapgen

UNIT = "cm"


@dataclass(frozen=True, kw_only=True)
class Measure(mapgen.Task):
    template: str = "How long is {{ input }}?"
    outputs = ("length",)

    def parse(self, text):
        return {"length": f"{text} {UNIT}"}


if __name__ == "__main__":
    ds = datasets.load_from_disk(sys.argv[1])
    llm = mapgen.OpenAILLM("fault", base_url=sys.argv[2], api_key=sys.argv[3])
    out = ds.map(mapgen.generate(llm, Measure(), cache=False), batched=True)
    files = [f["filename"] for f in out.cache_files]
    print(json.dumps({"length": list(out["length"]), "cache_files": files}))
"""


def run_script(folder, unit: str, saved: str, server) -> dict:
    script = folder / "measure.py"
    script.write_text(SCRIPT.replace('UNIT = "cm"', f"UNIT = {unit!r}"))
    command = [sys.executable, str(script), saved, server.base_url, server.api_key]
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_a_script_task_reruns_when_a_constant_its_parser_reads_changes(tmp_path, fault_server):
    saved = str(tmp_path / "things")
    import datasets

    datasets.Dataset.from_dict({"input": ["a pencil", "a bus"]}).save_to_disk(saved)

    first = run_script(tmp_path, "cm", saved, fault_server)
    again = run_script(tmp_path, "cm", saved, fault_server)
    assert again == first  # nothing changed: datasets' cache, no request
    assert fault_server.stats()["total"] == 2

    edited = run_script(tmp_path, "mm", saved, fault_server)
    assert edited["cache_files"] != first["cache_files"]
    assert all(length[0].endswith(" mm") for length in edited["length"]), edited["length"]
    assert fault_server.stats()["total"] == 4


# What a parser reads through a global that is a class or a module counts by content, not by name: a
# pydantic model it validates with (by its JSON schema and its own code), an enum (by its members), a value
# read as ``module.NAME`` from the user's own module, a plain class's attributes (``Cfg.OFFSET``).

READ_THROUGH_MODULE = """
import enum
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, field_validator

import helpers_mod
import mapgen
from mapgen.tasks.parsing import parse_model


class Ans(BaseModel):
    level: Literal["low", "high"]

    @field_validator("level", mode="before")
    @classmethod
    def lowercase(cls, value):
        return value.lower()


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Cfg:
    OFFSET = 3

    def shifted(self, n):
        return n + self.OFFSET


@dataclass(frozen=True, kw_only=True)
class Measure(mapgen.Task):
    template: str = "How long is {{ input }}?"
    outputs = ("level", "color", "scale", "offset")

    def parse(self, text):
        return {
            "level": parse_model(text, Ans).level,
            "color": Color(text).name,
            "scale": helpers_mod.SCALE * helpers_mod.double(len(text)),
            "offset": Cfg.OFFSET,
        }
"""

HELPERS_MODULE = """
SCALE = 2


def double(n):
    return 2 * n
"""

READ_THROUGH_EDITS = {
    "a pydantic model's field type": ('Literal["low", "high"]', 'Literal["low", "mid", "high"]'),
    "a pydantic model's validator": ("return value.lower()", "return value.strip().lower()"),
    "an enum's member value": ('BLUE = "blue"', 'BLUE = "navy"'),
    "an enum's new member": ('BLUE = "blue"\n', 'BLUE = "blue"\n    GREEN = "green"\n'),
    "a module's constant read as module.NAME": ("SCALE = 2", "SCALE = 3"),
    "a module's function read as module.name": ("return 2 * n", "return 3 * n"),
    "a plain class's attribute read as Cfg.NAME": ("OFFSET = 3", "OFFSET = 4"),
    "a plain class's method": ("return n + self.OFFSET", "return n - self.OFFSET"),
}
READ_THROUGH_UNRELATED_EDITS = {
    "a comment in the helper module": ("SCALE = 2", "# How much bigger.\nSCALE = 2"),
    "an unrelated constant in the helper module": ("SCALE = 2", "SCALE = 2\nUNUSED = 5"),
    "an unrelated function in the helper module": (
        "def double",
        "def triple(n):\n    return 3 * n\n\n\ndef double",
    ),
}


def read_through_fingerprint(folder, monkeypatch, old: str = "", new: str = "") -> str:
    """Fingerprint ``READ_THROUGH_MODULE``'s task with ``old`` replaced by ``new`` in it or in its helper
    module ``helpers_mod`` (both imported afresh, from ``folder``)."""
    task_source, helpers_source = READ_THROUGH_MODULE, HELPERS_MODULE
    if old:
        assert (old in task_source) != (old in helpers_source)
        task_source = task_source.replace(old, new, 1)
        helpers_source = helpers_source.replace(old, new, 1)
    folder.mkdir()
    import_fresh("helpers_mod", folder, helpers_source, monkeypatch)
    return task_fingerprint(folder / "task", task_source, monkeypatch)


@pytest.fixture
def read_through_base(tmp_path, monkeypatch):
    return read_through_fingerprint(tmp_path / "base", monkeypatch)


def test_reimporting_a_task_that_reads_through_classes_and_modules_keeps_the_fingerprint(
    tmp_path, monkeypatch, read_through_base
):
    assert read_through_fingerprint(tmp_path / "again", monkeypatch) == read_through_base


@pytest.mark.parametrize("edit", sorted(READ_THROUGH_EDITS))
def test_a_value_read_through_a_class_or_module_changes_the_fingerprint(
    tmp_path, monkeypatch, read_through_base, edit
):
    fingerprint = read_through_fingerprint(tmp_path / "edited", monkeypatch, *READ_THROUGH_EDITS[edit])
    assert fingerprint != read_through_base


@pytest.mark.parametrize("edit", sorted(READ_THROUGH_UNRELATED_EDITS))
def test_an_unrelated_edit_to_a_module_read_through_keeps_the_fingerprint(
    tmp_path, monkeypatch, read_through_base, edit
):
    fingerprint = read_through_fingerprint(
        tmp_path / "edited", monkeypatch, *READ_THROUGH_UNRELATED_EDITS[edit]
    )
    assert fingerprint == read_through_base


def test_a_dataclass_read_by_a_parser_counts_by_its_fields_and_defaults():
    from mapgen.core.digest import code_digest

    source = (
        "import dataclasses\n"
        "@dataclasses.dataclass\nclass Limits:\n    low: int = 1\n    high: int = 5\n"
        "class Reader:\n    def parse(self, text):\n        return Limits()\n"
    )
    digests = set()
    for edit in (
        "",
        "high: int = 6",
        "high: float = 5",
        "high: int = dataclasses.field(default_factory=list)",
    ):
        namespace: dict = {"__name__": "notebook_cell"}
        exec(source.replace("high: int = 5", edit) if edit else source, namespace)
        digests.add(code_digest(namespace["Reader"]))
    assert len(digests) == 4


def test_a_library_module_read_through_counts_by_name_only():
    # ``json.loads`` in a parser: the json module's own content is a library's, and counts by its name.
    from mapgen.core.digest import _Digest

    namespace: dict = {"__name__": "notebook_cell"}
    exec(
        "import json\nclass Reader:\n    def parse(self, text):\n        return json.loads(text)\n", namespace
    )
    state = json.dumps(_Digest().of_class(namespace["Reader"], frozenset()))
    assert '"json"' in state and "JSONDecoder" not in state and len(state) < 2000


CALLABLES_MODULE = """
import functools
from dataclasses import dataclass

import mapgen


def cut(n, text):
    return text[:n]


class Scaler:
    def __init__(self, factor):
        self.factor = factor

    def apply(self, text):
        return text * self.factor


CUT = functools.partial(cut, 3)
SCALER = Scaler(2)


@dataclass(frozen=True, kw_only=True)
class Measure(mapgen.Task):
    template: str = "How long is {{ input }}?"
    outputs = ("length",)

    def parse(self, text):
        return {"length": SCALER.apply(CUT(text))}
"""


@pytest.mark.parametrize(
    "edit",
    [
        ("return text[:n]", "return text[n:]"),  # the code of a function a partial wraps
        ("functools.partial(cut, 3)", "functools.partial(cut, 4)"),  # its arguments
        ("return text * self.factor", "return text * self.factor + text"),  # a global instance's method
        ("SCALER = Scaler(2)", "SCALER = Scaler(3)"),  # its attributes
    ],
)
def test_partials_and_instances_a_parser_calls_count_by_their_code_and_state(tmp_path, monkeypatch, edit):
    before = task_fingerprint(tmp_path / "before", CALLABLES_MODULE, monkeypatch)
    again = task_fingerprint(tmp_path / "again", CALLABLES_MODULE, monkeypatch)
    after = task_fingerprint(tmp_path / "after", CALLABLES_MODULE.replace(*edit), monkeypatch)
    assert before == again != after
