"""The PostgreSQL fixtures: Debian's ``postgres`` on 127.0.0.1, with a throwaway data directory.

- ``postgres_server`` (session): ``initdb`` into a temporary folder, then ``postgres -h 127.0.0.1 -p
  <free port> -k <that folder>`` with fsync off (a test database need not survive a power cut), password
  authentication over TCP (user ``mapgen``), stopped (fast shutdown) and deleted at the end.
  ``postgres_server.new_database()`` returns the URL of a fresh, empty database.
- ``postgres_url`` (session): the URL of one database on it, for tests that share it (a Ray cluster).
- ``store_url`` (per test, parametrized ``sqlite`` / ``postgresql``): sets ``MAPGEN_STORE`` to a fresh
  store of that kind, so a store test runs against both backends.
- ``restartable_postgres`` (per test): a server of the test module's own, not the session's, which the
  test may ``stop()`` (a fast shutdown, as ``pg_ctl stop -m fast``) and ``start()`` again; running again
  after the test.

Debian installs the binaries in ``/usr/lib/postgresql/<version>/bin``, off ``PATH``: they are looked
for there too. PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user
that Debian's package creates. Skips (fails in CI) when PostgreSQL or psycopg is missing; ``make
install-dev`` installs both.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import itertools
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.fixtures import free_port, skip_unless_ci

USER = "mapgen"
STARTUP_TIMEOUT = 60.0


def postgres_binary(name: str) -> str | None:
    """``name`` (``initdb``, ``postgres``) on ``PATH``, else in Debian's newest ``/usr/lib/postgresql``."""
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    candidates.sort(key=lambda path: int(Path(path).parents[1].name.split(".")[0]))
    return candidates[-1] if candidates else None


class PostgresServer:
    """A running PostgreSQL: ``url(database)``, ``new_database()``, and the ``password`` its URLs carry."""

    def __init__(self, port: int, password: str, log: Path) -> None:
        self.port = port
        self.password = password
        self.log = log
        self._names = itertools.count()
        self.command: list[str] = []
        self.user: pwd.struct_passwd | None = None
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the server (again, after :meth:`stop`); return once it accepts connections."""
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, **_run_as(self.user)
            )
        _wait_until_accepting(self, self.process)

    def stop(self) -> None:
        """A fast shutdown (``pg_ctl stop -m fast``): open transactions are rolled back, clients cut off."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database; return its URL."""
        import psycopg

        name = f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def _run_as(user: pwd.struct_passwd | None) -> dict:
    return {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _wait_until_accepting(server: PostgresServer, process: subprocess.Popen) -> None:
    import psycopg

    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if process.poll() is not None:
            ended = server.log.read_text()[-3000:]
            raise RuntimeError(f"postgres exited with {process.returncode}:\n{ended}")
        try:
            psycopg.connect(server.url(), connect_timeout=2).close()
            return
        except psycopg.OperationalError as error:
            if time.monotonic() > deadline:
                raise TimeoutError(f"postgres not ready:\n{server.log.read_text()[-3000:]}") from error
            time.sleep(0.1)


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL for the duration of the block."""
    initdb, postgres = postgres_binary("initdb"), postgres_binary("postgres")
    if initdb is None or postgres is None:
        skip_unless_ci("PostgreSQL is missing: apt-get install -y postgresql")
    if importlib.util.find_spec("psycopg") is None:
        skip_unless_ci("psycopg is not installed (pip install 'mapgen[postgres]')")
    user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    # Not under pytest's tmp folder: as root, the server's user must be able to reach it.
    root = Path(tempfile.mkdtemp(prefix="mapgen-postgres-"))
    password = secrets.token_hex(12)
    (root / "pwfile").write_text(password + "\n")
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
        os.chown(root / "pwfile", user.pw_uid, user.pw_gid)
    data, log = root / "data", root / "postgres.log"
    server = PostgresServer(free_port(), password, log)
    try:
        init = subprocess.run(
            [initdb, "-D", str(data), "-U", USER, f"--pwfile={root / 'pwfile'}", "--auth-host=scram-sha-256",
             "--auth-local=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
            capture_output=True, text=True, **_run_as(user),
        )  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        server.command = [
            postgres, "-D", str(data), "-h", "127.0.0.1", "-p", str(server.port), "-k", str(root),
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=200",
        ]  # fmt: skip
        server.user = user
        try:
            server.start()
            yield server
        finally:
            server.stop()  # fast shutdown: does not wait for clients to leave
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session (see the module docs)."""
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def _module_postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def restartable_postgres(_module_postgres: PostgresServer) -> Iterator[PostgresServer]:
    """A PostgreSQL server the test may stop and start (see the module docs)."""
    if not _module_postgres.running():
        _module_postgres.start()
    yield _module_postgres
    if not _module_postgres.running():
        _module_postgres.start()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL (``postgresql://mapgen:<password>@127.0.0.1:<port>/<db>``) of a database for the session."""
    return postgres_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """``MAPGEN_STORE`` for this test: a fresh SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store' / 'responses.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_server").new_database()
    os.environ["MAPGEN_STORE"] = url
    yield url
    # Not monkeypatch: a num_proc map replaces os.environ with a copy (datasets does), out of its reach.
    os.environ.pop("MAPGEN_STORE", None)
