"""Which local weights answer: the content hash of model files, computed once per file version.

Two GGUF files named alike and of equal size are different models; the same file copied to another
folder is the same model. So local weights enter fingerprints and response-store keys by the SHA-256 of
their bytes, never by where they lie. Hashing gigabytes is slow, so a digest is remembered by the file's
real path, size and modification time: in this process (a ``stat`` per lookup), and across runs in a
small JSON memo, ``weights.json`` in :func:`mapgen.core.paths.cache_dir`. A file rewritten in place gets a new
modification time, hence a new hash.

Example:
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "model.gguf").write_bytes(b"GGUF weights")
    >>> file_digest(folder / "model.gguf")[:12]
    '8a46a62632e2'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

from mapgen.core.paths import cache_dir

MEMO_FILE = "weights.json"
_CHUNK = 1 << 20

# Weight, config, tokenizer and chat-template files: everything a loader reads that can change an answer.
# README files, images and licences are left out; ``*.py`` counts only when remote code runs.
_MODEL_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".json", ".model", ".txt", ".tiktoken")
_TEMPLATE_SUFFIXES = (".jinja",)

_memo: dict[tuple[str, int, int], str] = {}
_memo_lock = threading.Lock()


def file_digest(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, hashed once per (real path, size, modification time)."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    key = (real, stat.st_size, stat.st_mtime_ns)
    digest = _memo.get(key)
    if digest is None:
        with _memo_lock:
            digest = _memo.get(key) or _read_memo(key) or _hash_and_remember(key)
            _memo[key] = digest
    return digest


def weights_digest(model: str | os.PathLike[str], *, gguf_file: str | None = None, code: bool = False) -> str:
    """One digest for a local model: a file's own digest, or a folder's model files (relative names and
    contents). With ``gguf_file`` only that GGUF file of the folder counts; ``code=True`` adds ``*.py``
    files (they run with ``trust_remote_code``).

    Example:
        >>> import pathlib, shutil, tempfile
        >>> a = pathlib.Path(tempfile.mkdtemp()) / "tiny"
        >>> a.mkdir(); _ = (a / "config.json").write_text("{}"); _ = (a / "README.md").write_text("hi")
        >>> b = pathlib.Path(shutil.copytree(a, pathlib.Path(tempfile.mkdtemp()) / "elsewhere"))
        >>> _ = (b / "README.md").write_text("changed")  # not a model file
        >>> weights_digest(a) == weights_digest(b)
        True
    """
    root = Path(model)
    if root.is_file():
        return file_digest(root)
    files = sorted(model_files(root, gguf_file=gguf_file, code=code))
    if not files:
        raise FileNotFoundError(f"{os.fspath(root)!r} holds no model files (weights, config, tokenizer).")
    listing = [[path.relative_to(root).as_posix(), file_digest(path)] for path in files]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def model_files(root: Path, *, gguf_file: str | None = None, code: bool = False) -> list[Path]:
    """The files of a model folder that decide its answers: weights, config, tokenizer, chat template
    (and ``*.py`` with ``code``); with ``gguf_file`` only that one of its GGUF files."""
    suffixes = _MODEL_SUFFIXES + _TEMPLATE_SUFFIXES + ((".py",) if code else ())
    chosen = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
            continue  # .git, .cache (huggingface_hub's download metadata), bytecode
        if not path.is_file() or path.suffix not in suffixes:
            continue
        if path.suffix == ".gguf" and gguf_file is not None and relative != Path(gguf_file):
            continue  # another GGUF of the folder: not the weights that answer
        chosen.append(path)
    return chosen


def _memo_path() -> Path:
    return cache_dir() / MEMO_FILE


def _load_memo() -> dict[str, list[object]]:
    try:
        data = json.loads(_memo_path().read_text())
    except (OSError, ValueError):
        return {}  # no memo yet, or an unreadable one: hashing again is only slower
    return data if isinstance(data, dict) else {}


def _read_memo(key: tuple[str, int, int]) -> str | None:
    real, size, mtime = key
    entry = _load_memo().get(real)
    if isinstance(entry, list) and entry[:2] == [size, mtime] and isinstance(entry[-1], str):
        return entry[-1]
    return None


def _hash_and_remember(key: tuple[str, int, int]) -> str:
    sha = hashlib.sha256()
    with open(key[0], "rb") as file:
        while chunk := file.read(_CHUNK):
            sha.update(chunk)
    digest = sha.hexdigest()
    # Read-modify-replace: concurrent writers may drop each other's new entries, which costs a rehash
    # later, never a wrong digest. A memo that cannot be written is skipped.
    with contextlib.suppress(OSError):
        # Files deleted since (a removed model, a temporary copy) are dropped as the memo is rewritten.
        memo = {path: entry for path, entry in _load_memo().items() if os.path.exists(path)}
        memo[key[0]] = [key[1], key[2], digest]
        target = _memo_path()
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".weights-", suffix=".json")
        try:
            with os.fdopen(handle, "w") as file:
                json.dump(memo, file)
            os.replace(temporary, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
    return digest
