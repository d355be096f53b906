"""A real PostgreSQL server on loopback for the history store's tests.

Debian's ``postgresql`` package (``/usr/lib/postgresql/VERSION/bin``) gives
``initdb`` and ``postgres``; PostgreSQL refuses to run as root, so when the
tests run as root the server runs as the ``postgres`` user, in a temporary
data directory it owns, its Unix socket in that directory, listening on
127.0.0.1 on a free port. The tests that need it are skipped, saying why,
only when the binaries are missing.

- ``postgres_server`` (one per session): a running server; each test gets a
  database of its own from ``postgres_url``.
- ``postgres_factory``: servers of the test's own, which it may stop and
  start again (a store outage).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["postgres_factory", "postgres_server", "postgres_url"]

USER = "anyprobe"
#: Seconds a server may take to start or stop (a bound, not an assertion).
START_LIMIT = 60.0


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One PostgreSQL server of the tests: ``start()``, ``stop()``, ``url(db)``."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.password = secrets.token_urlsafe(16)
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="anyprobe-pg-"))
        self.data = self.dir / "data"
        self.process: subprocess.Popen[bytes] | None = None
        self._run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            self._run_as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._run_as:
            os.chown(pwfile, self._run_as["user"], self._run_as["group"])
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                USER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            check=True,
            capture_output=True,
            env=self._env(),
            cwd=self.dir,
            timeout=START_LIMIT,
            **self._run_as,
        )

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}

    def url(self, database: str = "postgres", *, password: bool = True) -> str:
        auth = f"{USER}:{self.password}" if password else USER
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it accepts logins."""
        assert self.process is None
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [
                str(self.bin_dir / "postgres"),
                "-D",
                str(self.data),
                "-k",
                str(self.dir),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "synchronous_commit=off",
            ],
            stdout=log,
            stderr=log,
            env=self._env(),
            cwd=self.dir,
            **self._run_as,
        )
        log.close()
        import psycopg

        deadline = time.monotonic() + START_LIMIT
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log_text = (self.dir / "server.log").read_text(errors="replace")
                    self.stop()
                    raise RuntimeError(f"postgres did not start:\n{log_text[-2000:]}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server at once (PostgreSQL's fast shutdown: SIGINT)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=START_LIMIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _require_bin() -> Path:
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/postgres)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg 3 is not installed (pip install 'anyprobe[postgres]')")
    return bin_dir


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session, on 127.0.0.1."""
    server = PostgresServer(_require_bin())
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL (password included) of a new empty database of this test's."""
    return postgres_server.create_database(f"t_{secrets.token_hex(6)}")


@pytest.fixture
def postgres_factory() -> Iterator[Callable[[], PostgresServer]]:
    """Makes started servers of the test's own, stopped and removed at teardown."""
    made: list[PostgresServer] = []

    def make() -> PostgresServer:
        server = PostgresServer(_require_bin())
        made.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in made:
            server.remove()
