"""Sent once across job files and clocks (issue 27): the run lock is on the target, not the job
file's name; "changed since" follows the ledger's order of writes, not the processes' clocks.
Real runs (processes) against the sandbox on 127.0.0.1, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from reconcile.database import SCHEMA_VERSION
from reconcile.ledger import Ledger
from reconcile.sandbox import Faults, SandboxServer, SandboxState, load_seed
from reconcile.sandbox.seeding import add_orders, order_id
from reconcile.sandbox.state import DEFAULT_SEED
from tests.helpers import CREDENTIALS, ROOT, credential_env, orders_csv, read_results, write_job

ROWS_PER_COMMUNITY = 1000  # 2,000 rows: acme and globex


def _env() -> dict[str, str]:
    """The test's environment (RECONCILE_LEDGER_URL from ``ledger_backend``) with every key."""
    env = {**os.environ}
    for community, found in CREDENTIALS.items():
        for credential, value in found.items():
            env[credential_env(credential, community)] = value
    return env


def _start(args: Sequence[str | Path], prefix: Sequence[str] = ()) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "reconcile", *map(str, args)],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def _wait(condition: Any, seconds: float = 60) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def big_sandbox() -> Iterator[SandboxServer]:
    """A sandbox with 1,000 orders per community."""
    seed = load_seed(DEFAULT_SEED)
    add_orders(seed, ROWS_PER_COMMUNITY)
    with SandboxServer(SandboxState(seed, Faults())) as server:
        yield server


@pytest.mark.usefixtures("ledger_backend")
def test_a_copy_and_a_hard_link_of_the_job_file_are_locked_out(
    big_sandbox: SandboxServer, tmp_path: Path
) -> None:
    """Two job files with one target (a copy in another folder whose state_dir is reached
    through a symlink, and a hard link) started while a run of 2,000 rows sends: each exits 2
    naming the holder (host, pid, run id); the sandbox's request log has every request once."""
    rows = [(c, order_id(c, n)) for n in range(ROWS_PER_COMMUNITY) for c in ("acme", "globex")]
    source = orders_csv(tmp_path / "in.csv", rows)
    job = write_job(tmp_path / "job.toml", big_sandbox.url, rate_per_second=40, concurrency=2)
    (tmp_path / "state").mkdir(exist_ok=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "state-link").symlink_to(tmp_path / "state")
    copy = tmp_path / "elsewhere" / "job-copy.toml"
    copy.write_text(
        job.read_text().replace(str(tmp_path / "state"), str(tmp_path / "elsewhere" / "state-link"))
    )
    link = tmp_path / "elsewhere" / "job-link.toml"
    os.link(job, link)

    first = _start(["run", source, "--job", job, "--out", tmp_path / "first.csv"])
    _wait(lambda: len(big_sandbox.state.requests) >= 20)
    for other, out in ((copy, "copy.csv"), (link, "link.csv")):
        code, err = _finish(_start(["run", source, "--job", other, "--out", tmp_path / out]))
        assert code == 2, err[-2000:]
        assert "is in progress" in err
        assert f"pid {first.pid} on host {socket.gethostname()}" in err
        assert re.search(r"run \d{8}T\d{6}Z-[0-9a-f]{6}", err), err[-2000:]
        assert not (tmp_path / out).exists()
    assert first.poll() is None, "the first run must still be sending for the test to mean it"
    code, err = _finish(first)
    assert code == 0, err[-2000:]
    sent = Counter(r["path"] for r in big_sandbox.state.requests)
    assert len(sent) == 2 * ROWS_PER_COMMUNITY
    assert set(sent.values()) == {1}


def _faketime() -> str:
    found = shutil.which("faketime")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("faketime is not installed: .ci/run installs Debian's faketime")
        pytest.skip("faketime is not installed here (apt install faketime)")
    return found


@pytest.mark.usefixtures("ledger_backend")
def test_a_revert_is_resent_when_the_middle_run_had_its_clock_an_hour_behind(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """A -> B -> A, the B run under ``faketime -1h`` (an NTP step, a restored VM, a second host):
    the third run still knows B came after the first A, re-sends A, and the API holds A."""
    behind = [_faketime(), "-f", "-1h"]
    rows = [("acme", order_id("acme", n)) for n in range(3)]
    job = write_job(tmp_path / "job.toml", sandbox.url)
    a = orders_csv(tmp_path / "a.csv", rows, "Collect at the desk")
    b = orders_csv(tmp_path / "b.csv", rows, "Ship it")
    for source, prefix, out in ((a, [], "1.csv"), (b, behind, "2.csv"), (a, [], "3.csv")):
        code, err = _finish(_start(["run", source, "--job", job, "--out", tmp_path / out], prefix))
        assert code == 0, err[-2000:]
    assert set(read_results(tmp_path / "2.csv").get_column("status")) == {"applied"}
    third = read_results(tmp_path / "3.csv")
    assert set(third.get_column("status")) == {"applied"}, third
    assert all(e.startswith("re-sent: run ") for e in third.get_column("error")), third
    assert len(sandbox.state.requests) == 9
    wanted = {order_id("acme", n) for n in range(3)}
    held = {
        r["purchaseID"]: r["product"]["redemptionInstructions"]
        for r in sandbox.state.snapshot()["purchaseHistories"]
        if r["purchaseID"] in wanted
    }
    assert held == dict.fromkeys(wanted, "Collect at the desk")


def test_a_ledger_of_the_old_schema_is_numbered_by_its_stamps_once(tmp_path: Path) -> None:
    """A version-1 ledger (no ``seq``): opening it adds the column, numbers its records in
    their stamps' order and sets the version; opening it again changes nothing; new writes are
    numbered after the old ones, and "changed since" then follows those numbers."""
    old = sqlite3.connect(tmp_path / "ledger.sqlite3")
    old.executescript(
        """
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, ended_at TEXT,
            dry_run INTEGER NOT NULL, operation TEXT NOT NULL, base_url TEXT NOT NULL,
            job_path TEXT, input_path TEXT NOT NULL, input_sha256 TEXT NOT NULL,
            results_path TEXT, operator TEXT NOT NULL, tool_version TEXT NOT NULL, counts TEXT,
            exit_code INTEGER);
        CREATE TABLE requests (run_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
            community TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL, target TEXT,
            state TEXT NOT NULL, http_status INTEGER, error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL,
            PRIMARY KEY (run_id, fingerprint));
        INSERT INTO runs VALUES ('r1', 't', NULL, 0, 'purchase-history', 'https://api', NULL,
            'in.csv', 'x', NULL, 'op', '0', NULL, NULL);
        INSERT INTO runs VALUES ('r2', 't', NULL, 0, 'purchase-history', 'https://api', NULL,
            'in.csv', 'x', NULL, 'op', '0', NULL, NULL);
        INSERT INTO requests VALUES ('r2', 'fB', 'acme', 'PATCH', '/v1/x', 'x', 'applied', 200,
            NULL, 1, '2026-01-01T02:00:00.000+00:00');
        INSERT INTO requests VALUES ('r1', 'fA', 'acme', 'PATCH', '/v1/x', 'x', 'applied', 200,
            NULL, 1, '2026-01-01T01:00:00.000+00:00');
        """
    )
    old.close()
    for _ in range(2):
        ledger = Ledger(tmp_path)
        numbered = dict(ledger.db.rows("SELECT fingerprint, seq FROM requests"))
        assert numbered == {"fA": 1, "fB": 2}
        assert ledger.db.one("PRAGMA user_version") == (SCHEMA_VERSION,)
        ledger.close()
    ledger = Ledger(tmp_path)
    try:
        prior = ledger.prior(["fA"])["fA"]
        assert prior.seq == 1
        changes = ledger.later_changes(
            "https://api",
            "purchase-history",
            pl.DataFrame({"community": ["acme"], "target": ["x"]}),
        )
        assert dict(changes.select("changed_by", "changed_seq").iter_rows()) == {"fA": 1, "fB": 2}
        from reconcile.ledger import FinishedRecord, RequestRecord

        record = RequestRecord("r3", "fC", "acme", "PATCH", "/v1/x", "x")
        ledger.commit([record], [])
        ledger.commit([], [FinishedRecord(record, "applied", 200, None, 1)])
        assert ledger.db.one("SELECT seq FROM requests WHERE fingerprint = 'fC'") == (4,)
    finally:
        ledger.close()


def test_a_postgres_ledger_of_version_1_is_migrated_and_refused_until_then(
    postgres: Any, sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PostgreSQL ledger of schema version 1 (no ``seq``, no ``run_locks``): a run stops with
    exit 2 naming ``reconcile ledger migrate`` and sends nothing; migrate says 1 -> 2, numbers
    the old records in their stamps' order, and a run then works and numbers after them."""
    import psycopg

    url = postgres.new_database("version_one")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE requests (run_id TEXT NOT NULL, fingerprint TEXT NOT NULL, "
            "community TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL, target TEXT, "
            "state TEXT NOT NULL, http_status INTEGER, error TEXT, attempts INTEGER NOT NULL "
            "DEFAULT 0, updated_at TEXT NOT NULL, PRIMARY KEY (run_id, fingerprint))"
        )
        for run_id, stamp in (("late", "2026-01-01T02:00"), ("early", "2026-01-01T01:00")):
            connection.execute(
                "INSERT INTO requests VALUES (%s, %s, 'acme', 'PATCH', '/v1/x', 'x', 'applied', "
                "200, NULL, 1, %s)",
                (run_id, f"f-{run_id}", stamp),
            )
        connection.execute("CREATE TABLE reconcile_schema (version INTEGER NOT NULL)")
        connection.execute("INSERT INTO reconcile_schema VALUES (1)")
    monkeypatch.setenv("RECONCILE_LEDGER_URL", url)
    source = orders_csv(tmp_path / "in.csv", [("acme", order_id("acme", 1))])
    job = write_job(tmp_path / "job.toml", sandbox.url)
    code, err = _finish(_start(["run", source, "--job", job, "--out", tmp_path / "o.csv"]))
    assert code == 2 and "reconcile ledger migrate" in err and "found 1" in err
    assert sandbox.state.requests == []
    migrated = subprocess.run(
        [sys.executable, "-m", "reconcile", "ledger", "migrate"],
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert migrated.returncode == 0 and f"1 -> {SCHEMA_VERSION}" in migrated.stdout
    code, err = _finish(_start(["run", source, "--job", job, "--out", tmp_path / "o.csv"]))
    assert code == 0, err[-2000:]
    with psycopg.connect(url, autocommit=True) as connection:
        numbered = dict(
            connection.execute("SELECT run_id, seq FROM requests ORDER BY seq").fetchall()
        )
    assert list(numbered)[:2] == ["early", "late"] and numbered["early"] == 1
    assert len(numbered) == 3 and max(numbered.values()) > 2
