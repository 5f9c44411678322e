"""Local weights are identified by their content, never by their folder (issue 10, item 10).

Two GGUF files of one name and size are two models; a copy in another folder is the same model. The
fingerprints are compared across a fresh process too: a digest that changed between processes would
miss the cache on every run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from datasets.fingerprint import Hasher

import mapgen
from mapgen.llms import _weights
from mapgen.llms.llamacpp import embedded_model_path
from mapgen.store import request_key


@pytest.fixture
def ggufs(tmp_path):
    """a/model.gguf (the embedded model), b/model.gguf (same size, bytes flipped near the end) and
    elsewhere/copy/model.gguf (a copy of a)."""
    a, b, copy = tmp_path / "a" / "model.gguf", tmp_path / "b" / "model.gguf", tmp_path / "elsewhere/copy"
    for folder in (a.parent, b.parent, copy):
        folder.mkdir(parents=True)
    shutil.copyfile(embedded_model_path(), a)
    data = bytearray(a.read_bytes())
    data[-100:-90] = bytes(255 - x for x in data[-100:-90])
    b.write_bytes(bytes(data))
    copy = copy / "model.gguf"
    shutil.copyfile(a, copy)
    assert a.stat().st_size == b.stat().st_size
    return a, b, copy


SCRIPT = """
import json, sys
import mapgen
paths = json.loads(sys.argv[1])
print(json.dumps([mapgen.fingerprint(mapgen.generate(mapgen.LlamaCppLLM(model_path=p))) for p in paths]))
"""


def fingerprints(paths, *, in_subprocess=False):
    if not in_subprocess:
        return [mapgen.fingerprint(mapgen.generate(mapgen.LlamaCppLLM(model_path=str(p)))) for p in paths]
    code = textwrap.dedent(SCRIPT)
    argument = json.dumps([str(p) for p in paths])
    out = subprocess.run([sys.executable, "-c", code, argument], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_two_gguf_files_of_one_name_and_size_are_two_models(ggufs):
    a, b, _ = ggufs
    fp_a, fp_b, fp_copy = fingerprints(ggufs)
    assert fp_a != fp_b
    assert fp_copy == fp_a  # the folder a file sits in does not matter
    assert fingerprints(ggufs, in_subprocess=True) == [fp_a, fp_b, fp_copy]

    # and so model b is never served model a's stored answers
    request = mapgen.Request(mapgen.Prompt("Say hi."))
    key_a, key_b = (
        request_key(Hasher.hash(mapgen.LlamaCppLLM(model_path=str(p)).fingerprint()), request) for p in (a, b)
    )
    assert key_a != key_b


def test_a_file_is_hashed_once_per_path_size_and_mtime(tmp_path):
    weights = tmp_path / "w.gguf"
    weights.write_bytes(b"GGUF one")
    stat = weights.stat()
    memo = mapgen.core.paths.cache_dir() / _weights.MEMO_FILE
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps({os.path.realpath(weights): [stat.st_size, stat.st_mtime_ns, "remembered"]}))
    # A fresh process finds the digest in the memo rather than reading the file...
    code = "import sys; from mapgen.llms._weights import file_digest; print(file_digest(sys.argv[1]))"
    run = [sys.executable, "-c", code, str(weights)]
    assert subprocess.run(run, check=True, capture_output=True, text=True).stdout.strip() == "remembered"
    # ...until the file changes: same size, another modification time.
    weights.write_bytes(b"GGUF two")
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    fresh = subprocess.run(run, check=True, capture_output=True, text=True).stdout.strip()
    assert fresh == _weights.file_digest(weights) != "remembered"
    assert json.loads(memo.read_text())[os.path.realpath(weights)][-1] == fresh


def model_folder(root, weights=b"\x00" * 64):
    root.mkdir(parents=True)
    (root / "config.json").write_text('{"model_type": "llama"}')
    (root / "tokenizer.json").write_text('{"version": "1.0"}')
    (root / "model.safetensors").write_bytes(weights)
    (root / "README.md").write_text("A model card.")
    return root


@pytest.mark.parametrize("backend", ["vllm", "transformers"])
def test_local_folders_are_identified_by_their_model_files(tmp_path, backend):
    def fp(folder, **options):
        cls = mapgen.vLLM if backend == "vllm" else mapgen.TransformersLLM
        return mapgen.fingerprint(mapgen.generate(cls(str(folder), **options)))

    a = model_folder(tmp_path / "a" / "tiny")
    copy = model_folder(tmp_path / "elsewhere" / "tiny")
    (copy / "README.md").write_text("Another card: not a model file.")
    other_weights = model_folder(tmp_path / "b" / "tiny", weights=b"\x01" * 64)
    other_tokenizer = model_folder(tmp_path / "c" / "tiny")
    (other_tokenizer / "tokenizer.json").write_text('{"version": "2.0"}')

    assert fp(copy) == fp(a)
    assert fp(other_weights) != fp(a)
    assert fp(other_tokenizer) != fp(a)
    # Code in the folder counts once it runs.
    (a / "modeling_tiny.py").write_text("pass")
    assert fp(a) == fp(copy)
    assert fp(a, trust_remote_code=True) != fp(copy, trust_remote_code=True)


def test_hub_ids_stay_the_identity_and_nothing_is_read():
    llm = mapgen.vLLM("org/model-7b", revision="abc123")
    state = llm.fingerprint()
    assert state["model"] == "org/model-7b" and state["revision"] == "abc123"
    assert llm.model_name == "org/model-7b"
    assert mapgen.TransformersLLM("org/model", revision="r1").fingerprint()["model"] == "org/model"


def test_a_gguf_folder_counts_only_the_chosen_gguf(tmp_path):
    folder = model_folder(tmp_path / "ggufs")
    (folder / "q4.gguf").write_bytes(b"GGUF q4")
    (folder / "q8.gguf").write_bytes(b"GGUF q8")
    q4 = mapgen.TransformersLLM(str(folder), gguf_file="q4.gguf").fingerprint()
    (folder / "q8.gguf").write_bytes(b"GGUF q8, requantized")
    assert mapgen.TransformersLLM(str(folder), gguf_file="q4.gguf").fingerprint() == q4
    assert mapgen.TransformersLLM(str(folder), gguf_file="q8.gguf").fingerprint() != q4
