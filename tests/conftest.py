"""Shared fixtures: a real sandbox server on 127.0.0.1, test credentials in the environment."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconcile.sandbox import Faults, SandboxServer, SandboxState, load_seed
from reconcile.sandbox.seeding import add_orders
from reconcile.sandbox.state import DEFAULT_SEED
from tests.helpers import CREDENTIALS, GENERATED, KEYS, credential_env
from tests.postgres import PostgresServer, postgres_server
from tests.postgres import available as postgres_available


@pytest.fixture(autouse=True)
def private_state_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test reads or writes the user's own ledger: the default state dir is a temp one."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state-home")))


@pytest.fixture
def seed() -> dict[str, Any]:
    data = load_seed(DEFAULT_SEED)
    add_orders(data, GENERATED)
    return data


@pytest.fixture
def sandbox(seed: dict[str, Any]) -> Iterator[SandboxServer]:
    """A fresh sandbox per test; tests change ``sandbox.state.faults`` as they need."""
    with SandboxServer(SandboxState(seed, Faults())) as server:
        yield server


@pytest.fixture
def keys_in_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Every sandbox community's credentials in the variables :func:`write_job` names."""
    for community, found in CREDENTIALS.items():
        for credential, value in found.items():
            monkeypatch.setenv(credential_env(credential, community), value)
    return KEYS


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the test session (Debian's package, 127.0.0.1)."""
    if not postgres_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed: .ci/run installs Debian's postgresql")
        pytest.skip("PostgreSQL is not installed here (apt install postgresql)")
    with postgres_server() as server:
        yield server


_databases = itertools.count()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """A fresh database with reconcile's schema (``reconcile ledger migrate``)."""
    from reconcile.ledger_commands import migrate_url

    url = postgres.new_database(f"test_{next(_databases)}")
    migrate_url(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_backend(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str | None]:
    """Runs a test against each ledger: SQLite in state_dir, then PostgreSQL (through
    RECONCILE_LEDGER_URL, as a container would set it). With PostgreSQL no SQLite ledger may
    appear."""
    if request.param == "sqlite":
        yield None
        return
    url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("RECONCILE_LEDGER_URL", url)
    yield url
    assert not list(tmp_path.rglob("ledger.sqlite3")), "a SQLite ledger was written"


@pytest.fixture(scope="session")
def image() -> str:
    """The image deploy/build-image makes, built once a session (podman; in CI its absence is
    a failure, not a skip)."""
    import shutil
    import subprocess

    from tests.helpers import ROOT
    from tests.pods import engine_env

    if shutil.which("podman") is None:
        if os.environ.get("CI"):
            pytest.fail("podman is not installed: .ci/run installs podman, runc and mmdebstrap")
        pytest.skip("podman is not installed here (apt install podman runc mmdebstrap)")
    built = subprocess.run(
        [str(ROOT / "deploy" / "build-image"), "--tag", "localhost/reconcile:test"],
        env=engine_env(),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return built.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright, one per test module."""
    from playwright.sync_api import sync_playwright

    from tests.console import CHROMIUM

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture
def two_jobs(tmp_path: Path, sandbox: SandboxServer, ledger_backend: str | None) -> Iterator[Any]:
    """The console served on 127.0.0.1 with two jobs of different operations
    (purchase-history, redemption-status) over one ledger: SQLite, then PostgreSQL."""
    from tests.console import serve, two_job_parts

    parts = two_job_parts(tmp_path, sandbox.url)
    yield from serve(parts)
    parts.console.close()
    parts.users.close()
