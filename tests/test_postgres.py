"""The PostgreSQL ledger's own behaviour, on a real server: its schema command, the errors that
stop a run before anything is sent, shards on several processes, a server restart mid-run, and
copying a SQLite ledger into it. (The ledger suite itself runs on both: ``ledger_backend``.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from reconcile.database import SCHEMA_VERSION
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from reconcile.sandbox.state import FaultRule
from tests.helpers import CREDENTIALS, ROOT, credential_env, orders_csv, read_results, write_job
from tests.postgres import PostgresServer


def _env(url: str | None) -> dict[str, str]:
    env = {**os.environ}
    env.pop("RECONCILE_LEDGER_URL", None)
    if url is not None:
        env["RECONCILE_LEDGER_URL"] = url
    for community, found in CREDENTIALS.items():
        for credential, value in found.items():
            env[credential_env(credential, community)] = value
    return env


def _start(url: str | None, *args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reconcile", *map(str, args)],
        cwd=ROOT,
        env=_env(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _reconcile(url: str | None, *args: str | Path) -> subprocess.CompletedProcess[str]:
    process = _start(url, *args)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _wait(condition: object, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _in_flight(url: str) -> int:
    with psycopg.connect(url) as connection:
        found = connection.execute(
            "SELECT COUNT(*) FROM requests WHERE state = 'in_flight'"
        ).fetchone()
    return int(found[0]) if found else 0


def test_migrate_is_idempotent_and_a_missing_schema_stops_the_run(
    postgres: PostgresServer, tmp_path: Path, sandbox: SandboxServer
) -> None:
    """Without the schema a run exits 2 naming 'reconcile ledger migrate' and sends nothing;
    migrate creates it, a second migrate has nothing to do, and the run then works."""
    url = postgres.new_database("migrate_check")
    job = write_job(tmp_path / "job.toml", sandbox.url)
    source = orders_csv(tmp_path / "in.csv", [("acme", order_id("acme", 1))])
    refused = _reconcile(url, "run", source, "--job", job, "--out", tmp_path / "o.csv")
    assert refused.returncode == 2
    assert "reconcile ledger migrate" in refused.stderr and sandbox.state.requests == []
    first = _reconcile(None, "ledger", "migrate", "--ledger-url", url)
    assert first.returncode == 0 and f"none -> {SCHEMA_VERSION}" in first.stdout
    again = _reconcile(None, "ledger", "migrate", "--ledger-url", url)
    assert "nothing to do" in again.stdout
    assert postgres.password not in first.stdout + again.stdout  # the URL is shown redacted
    ran = _reconcile(url, "run", source, "--job", job, "--out", tmp_path / "o.csv")
    assert ran.returncode == 0, ran.stderr


def test_a_version_2_database_is_refused_until_migrate_adds_the_upload_sheet(
    postgres: PostgresServer, tmp_path: Path, sandbox: SandboxServer
) -> None:
    """A database migrated before issue 30 (version 2: no uploads.sheet column) stops a run
    with exit 2 naming 'reconcile ledger migrate'; migrate brings it to version 3 and adds the
    column the console records a workbook's sheet in."""
    url = postgres.new_database("migrate_from_2")
    assert _reconcile(None, "ledger", "migrate", "--ledger-url", url).returncode == 0
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("ALTER TABLE uploads DROP COLUMN sheet")
        connection.execute("UPDATE reconcile_schema SET version = 2")
    job = write_job(tmp_path / "job.toml", sandbox.url)
    source = orders_csv(tmp_path / "in.csv", [("acme", order_id("acme", 1))])
    refused = _reconcile(url, "run", source, "--job", job, "--out", tmp_path / "o.csv")
    assert refused.returncode == 2 and "reconcile ledger migrate" in refused.stderr
    upgraded = _reconcile(None, "ledger", "migrate", "--ledger-url", url)
    assert SCHEMA_VERSION == 3 and "2 -> 3" in upgraded.stdout, upgraded.stdout
    with psycopg.connect(url) as connection:
        columns = connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'uploads'"
        ).fetchall()
    assert ("sheet",) in columns


@pytest.mark.parametrize("case", ["wrong password", "no such host", "not a URL"])
def test_an_unusable_ledger_url_is_exit_2_before_anything_is_sent(
    postgres: PostgresServer, tmp_path: Path, sandbox: SandboxServer, case: str
) -> None:
    url = {
        "wrong password": postgres.url("postgres", password="not-the-password"),
        "no such host": "postgresql://reconcile@no-such-host.invalid/reconcile",
        "not a URL": "mysql://reconcile@127.0.0.1/reconcile",
    }[case]
    job = write_job(tmp_path / "job.toml", sandbox.url)
    source = orders_csv(tmp_path / "in.csv", [("acme", order_id("acme", 1))])
    ran = _reconcile(url, "run", source, "--job", job, "--out", tmp_path / "o.csv")
    assert ran.returncode == 2, ran.stderr
    assert "ledger" in ran.stderr and "not-the-password" not in ran.stderr
    assert sandbox.state.requests == []


def test_two_shards_run_side_by_side_and_the_same_shard_twice_exits_2(
    postgres_url: str, tmp_path: Path, sandbox: SandboxServer
) -> None:
    """Two processes, one per community, one PostgreSQL ledger: both run at once and every
    row is applied exactly once; a second process on a community being sent to exits 2 at
    once. (Each shard sends for ~8 s: a loaded machine takes seconds to start the third.)"""
    sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=0.2)]
    rows = [(c, order_id(c, n)) for n in range(40) for c in ("acme", "globex")]
    source = orders_csv(tmp_path / "in.csv", rows)
    job = write_job(tmp_path / "job.toml", sandbox.url, rate_per_second=100, concurrency=1)

    def shard(community: str, out: str) -> tuple[str | Path, ...]:
        return ("run", source, "--job", job, "--community", community, "--out", tmp_path / out)

    acme = _start(postgres_url, *shard("acme", "a.csv"))
    globex = _start(postgres_url, *shard("globex", "g.csv"))
    _wait(lambda: {r.get("community") for r in sandbox.state.requests} >= {"acme", "globex"})
    twice = _reconcile(postgres_url, *shard("acme", "x.csv"))
    assert twice.returncode == 2 and "is in progress" in twice.stderr
    for process in (acme, globex):
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-2000:]
    sent = Counter(r["path"] for r in sandbox.state.requests)
    assert len(sent) == 80 and set(sent.values()) == {1}
    assert not list(tmp_path.rglob("ledger.sqlite3"))


def test_a_postgres_restart_mid_run_stops_with_exit_3_then_resumes(
    postgres: PostgresServer, postgres_url: str, tmp_path: Path, sandbox: SandboxServer
) -> None:
    """The database restarted during a run: the run stops at once, exit 3, naming the
    database; the same command afterwards finishes the file, and only requests in flight at
    the restart reached the API twice (repeatable PATCHes)."""
    sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=0.1)]
    rows = [("acme", order_id("acme", n)) for n in range(60)]
    source = orders_csv(tmp_path / "in.csv", rows)
    job = write_job(tmp_path / "job.toml", sandbox.url, rate_per_second=50, concurrency=2)
    command = ("run", source, "--job", job, "--out", tmp_path / "o.csv")
    process = _start(postgres_url, *command)
    _wait(lambda: len(sandbox.state.requests) >= 10)
    postgres.restart()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 3, err[-2000:]
    assert "ledger database postgresql://reconcile@127.0.0.1" in err
    assert "stopped sending at once" in err
    assert postgres.password not in err
    stopped_at = len(sandbox.state.requests)
    assert stopped_at < 60
    time.sleep(0.5)
    assert len(sandbox.state.requests) == stopped_at  # nothing more went out
    resumed = _reconcile(postgres_url, *command)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    results = read_results(tmp_path / "o.csv")
    assert set(results.get_column("status")) <= {"applied", "already_applied"}
    sent = Counter(r["path"] for r in sandbox.state.requests)
    assert len(sent) == 60 and sum(n - 1 for n in sent.values()) <= 2


def test_a_sqlite_ledger_copied_into_postgres_keeps_its_history(
    postgres_url: str, tmp_path: Path, sandbox: SandboxServer
) -> None:
    """Rows applied under the SQLite ledger are 'already applied' under PostgreSQL after
    'ledger copy'; a second copy adds nothing; the copied audit chain verifies."""
    rows = [("acme", order_id("acme", n)) for n in range(5)]
    source = orders_csv(tmp_path / "in.csv", rows)
    job = write_job(tmp_path / "job.toml", sandbox.url)
    assert (
        _reconcile(None, "run", source, "--job", job, "--out", tmp_path / "a.csv").returncode == 0
    )
    copied = _reconcile(None, "ledger", "copy", "--job", job, "--to", postgres_url)
    assert copied.returncode == 0, copied.stderr
    assert "requests 5" in copied.stdout and "runs 1" in copied.stdout
    again = _reconcile(None, "ledger", "copy", "--job", job, "--to", postgres_url)
    assert "requests 0" in again.stdout and "audit chain 0" in again.stdout
    verified = _reconcile(postgres_url, "audit", "verify", "--job", job)
    assert verified.returncode == 0, verified.stderr
    before = len(sandbox.state.requests)
    ran = _reconcile(postgres_url, "run", source, "--job", job, "--out", tmp_path / "b.csv")
    assert ran.returncode == 0, ran.stderr
    assert set(read_results(tmp_path / "b.csv").get_column("status")) == {"already_applied"}
    assert len(sandbox.state.requests) == before
    with psycopg.connect(postgres_url) as connection:
        (runs,) = connection.execute("SELECT COUNT(*) FROM runs").fetchone() or (0,)
    assert runs == 2


def test_a_killed_refund_ends_unknown_and_is_never_resent(
    postgres_url: str, tmp_path: Path, sandbox: SandboxServer
) -> None:
    """A coin refund in flight when its process is SIGKILLed is 'unknown' in the next run (on
    PostgreSQL as on SQLite) and is not sent again without --force."""
    sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=1.0)]
    source = tmp_path / "refunds.csv"
    refunded = "695e00030000000000000000"  # the seed's "refunded" status of acme
    source.write_text(
        f"community,transactionId,statusId,refundCoins\nacme,ORD202507013831,{refunded},yes\n"
    )
    job = write_job(tmp_path / "job.toml", sandbox.url, operation="redemption-status")
    command = ("run", source, "--job", job, "--out", tmp_path / "o.csv")
    process = _start(postgres_url, *command)
    _wait(lambda: _in_flight(postgres_url) >= 1)
    time.sleep(0.3)  # the request is at the server (1 s latency), its answer not back yet
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    sandbox.state.faults.rules = []
    again = _reconcile(postgres_url, *command)
    assert again.returncode == 1, again.stderr[-2000:]
    results = read_results(tmp_path / "o.csv")
    assert results.get_column("status").to_list() == ["unknown"]
    assert sum(r["method"] == "PUT" for r in sandbox.state.requests) == 1
