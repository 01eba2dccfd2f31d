"""A real PostgreSQL server for the tests: Debian's ``postgresql`` package, started by the test
run in a temporary folder on 127.0.0.1 (password authentication), stopped at the end.

Debian's package over the ``pgserver`` wheel: it is the server people run in production (same
major version as the distribution's), .ci/run installs it with apt like chromium, and it runs
as the ``postgres`` system user it creates when the tests run as root (PostgreSQL refuses root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

USER = "reconcile"


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def available() -> bool:
    return _binary("initdb") is not None and _binary("pg_ctl") is not None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    folder: Path
    port: int
    password: str

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{USER}:{secret}@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _ctl(self, *args: str) -> None:
        _as_postgres([_binary("pg_ctl") or "pg_ctl", "-D", str(self.folder / "data"), *args])

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self._ctl("-l", str(self.folder / "server.log"), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop("immediate")
        self.start()


def _as_postgres(command: list[str]) -> None:
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """initdb + start in a new temporary folder (outside pytest's, which only root may enter);
    stopped and removed at the end."""
    folder = Path(tempfile.mkdtemp(prefix="reconcile-postgres-"))
    password = secrets.token_urlsafe(16)
    (folder / "pwfile").write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(folder / "pwfile", "postgres")
    _as_postgres(
        [
            _binary("initdb") or "initdb",
            "-D",
            str(folder / "data"),
            "-U",
            USER,
            "--pwfile",
            str(folder / "pwfile"),
            "-A",
            "scram-sha-256",
            "--no-sync",
        ]
    )
    server = PostgresServer(folder, _free_port(), password)
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)
