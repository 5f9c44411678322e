"""A real ``argilla-server`` for the tests: its own virtual environment, SQLite, Redis, in-memory search.

argilla-server pins older ``pydantic`` and ``httpx`` than mapgen uses, so it lives in a virtual
environment of its own, created once and reused (``~/.cache/mapgen/argilla-server-venv``, or
``$MAPGEN_ARGILLA_SERVER_VENV``). Its database is SQLite in a temporary folder; its job queue needs a Redis
server (Debian's ``redis-server``, started by the fixture); and since Elasticsearch and OpenSearch cannot
be installed here, it searches with :mod:`tests.servers.argilla_memory_search`, registered under the name
``memory`` before the server starts. The database migrations and the owner user are made through the
server's own Python functions, and the app is served with ``uvicorn.run`` rather than the server's CLI.

Commands (stdlib only at the top level: this file runs under both virtual environments)::

    python tests/servers/argilla_server.py install       # create the server's venv (the Makefile does)
    <server venv>/bin/python tests/servers/argilla_server.py serve --port 6900 --home DIR \\
        --redis-url redis://127.0.0.1:6379/0 --api-key KEY
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import venv
from pathlib import Path

SERVER_REQUIREMENT = "argilla-server==2.8.0"
HERE = Path(__file__).resolve().parent
OWNER = {"username": "owner", "password": "owner-password", "workspace": "argilla"}


def server_venv() -> Path:
    """Where the server's virtual environment lives."""
    configured = os.environ.get("MAPGEN_ARGILLA_SERVER_VENV")
    if configured:
        return Path(configured)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mapgen" / "argilla-server-venv"


def server_python() -> Path | None:
    """The server venv's Python, or ``None`` when the venv or argilla-server in it is missing."""
    python = server_venv() / "bin" / "python"
    if not python.exists():
        return None
    found = subprocess.run(
        [str(python), "-c", "import argilla_server, uvicorn"], capture_output=True, check=False
    )
    return python if found.returncode == 0 else None


def install() -> Path:
    """Create the server's virtual environment with argilla-server in it (once; a no-op after)."""
    python = server_python()
    if python is not None:
        print(f"argilla-server venv ready: {server_venv()}")
        return python
    path = server_venv()
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    python = path / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", SERVER_REQUIREMENT], check=True)
    print(f"argilla-server venv created: {path}")
    return python


def serve(port: int, home: str, redis_url: str, api_key: str) -> None:
    """Run the server in this process (under the server's venv): migrate, add the owner, serve."""
    os.environ.update(
        ARGILLA_HOME_PATH=home,
        ARGILLA_REDIS_URL=redis_url,
        ARGILLA_SEARCH_ENGINE="memory",
        ARGILLA_ENABLE_TELEMETRY="0",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_OFFLINE="1",
    )
    # This file's folder is on sys.path when it runs as a script, and its name would shadow the
    # argilla_server package: drop it, and load the search engine module by its path.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    import asyncio
    import importlib.util

    import uvicorn

    spec = importlib.util.spec_from_file_location("argilla_memory_search", HERE / "argilla_memory_search.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # registers the "memory" engine
    from argilla_server.cli.database.migrate import migrate_db
    from argilla_server.cli.database.users.create import _create
    from argilla_server.models import UserRole

    migrate_db(revision="head")
    asyncio.run(
        _create(
            first_name="Owner",
            username=OWNER["username"],
            role=UserRole.owner,
            password=OWNER["password"],
            api_key=api_key,
            workspace=[OWNER["workspace"]],
        )
    )
    from argilla_server import app

    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="create the server's virtual environment")
    run = commands.add_parser("serve", help="run the server (inside its virtual environment)")
    run.add_argument("--port", type=int, required=True)
    run.add_argument("--home", required=True)
    run.add_argument("--redis-url", required=True)
    run.add_argument("--api-key", required=True)
    args = parser.parse_args()
    if args.command == "install":
        install()
    else:
        serve(args.port, args.home, args.redis_url, args.api_key)


if __name__ == "__main__":
    main()
