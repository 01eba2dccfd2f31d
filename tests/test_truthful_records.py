"""Truthful records (issue 27): SIGTERM at any moment logs and records like SIGINT, and runs left
unfinished by a kill are marked ``interrupted`` by whatever opens the ledger next."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from reconcile import pipeline
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from reconcile.sandbox.state import FaultRule
from tests.helpers import KEYS, ROOT, credential_env, orders_csv, read_results, run, write_job


def start(*args: str | Path) -> subprocess.Popen[bytes]:
    """The CLI as a process of its own, with the sandbox keys in its environment."""
    env = {
        **os.environ,
        credential_env("api_key", "acme"): KEYS["acme"],
        credential_env("api_key", "globex"): KEYS["globex"],
    }
    return subprocess.Popen(
        [sys.executable, "-m", "reconcile.cli", *map(str, args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def log_events(err: bytes | str) -> list[dict[str, Any]]:
    """The JSON log lines of a run's stderr."""
    text = err.decode() if isinstance(err, bytes) else err
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def ledger_runs(state: Path) -> list[dict[str, Any]]:
    """The ledger's runs, read with plain sqlite3 (no Ledger: opening one marks runs)."""
    with sqlite3.connect(state / "ledger.sqlite3") as db:
        db.row_factory = sqlite3.Row
        found = [dict(r) for r in db.execute("SELECT * FROM runs ORDER BY started_at")]
    for record in found:
        record["counts"] = json.loads(record["counts"]) if record["counts"] else None
    return found


def ledger_states(state: Path, run_id: str) -> dict[str, set[str]]:
    """A run's request paths per ledger state."""
    with sqlite3.connect(state / "ledger.sqlite3") as db:
        rows = db.execute("SELECT state, path FROM requests WHERE run_id = ?", (run_id,))
        found: dict[str, set[str]] = {}
        for state_name, path in rows:
            found.setdefault(state_name, set()).add(path.rsplit("/", 1)[1])
    return found


def committed(sandbox: SandboxServer) -> Counter[str]:
    """How many times the sandbox applied each purchase history."""
    return Counter(
        r["path"].rsplit("/", 1)[1] for r in sandbox.state.requests if r.get("committed")
    )


def test_sigterm_while_the_input_is_read_is_logged_and_exits_143(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """SIGTERM before sending starts (the input still being read, from a pipe) no longer kills
    the process silently: a run.interrupted JSON line naming SIGTERM, exit 143 as README says,
    nothing sent and no results written."""
    fifo = tmp_path / "in.csv"
    os.mkfifo(fifo)
    job = write_job(tmp_path / "j.toml", sandbox.url)
    process = start("run", fifo, "--job", job, "--out", tmp_path / "out.csv")
    with fifo.open("w") as writer:  # returns once the run has opened the pipe
        writer.write(
            f"community,purchaseHistoryID,redemptionInstructions\nacme,{order_id('acme', 1)},x\n"
        )
        writer.flush()
        time.sleep(0.5)  # the run is blocked reading the rest
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err.decode()[-2000:]
    interrupted = [e for e in log_events(err) if e.get("event") == "run.interrupted"]
    assert interrupted and interrupted[0]["signal"] == "SIGTERM"
    assert sandbox.state.requests == []
    assert not (tmp_path / "out.csv").exists()


def test_sigterm_after_the_run_started_is_recorded_like_sigint(
    sandbox: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A real SIGTERM arriving between the run's start in the ledger and its first request:
    logged, the run recorded as interrupted (ledger, audit chain and manifest all say exit
    143), nothing sent; the same command then sends every row once."""
    for name, key in KEYS.items():
        monkeypatch.setenv(credential_env("api_key", name), key)
    real = pipeline.resolve_credentials

    def terminated_meanwhile(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)  # handled at the next bytecode, in this thread
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "resolve_credentials", terminated_meanwhile)
    rows = [("acme", order_id("acme", n)) for n in range(5)]
    source, out = orders_csv(tmp_path / "in.csv", rows), tmp_path / "out.csv"
    job = write_job(tmp_path / "j.toml", sandbox.url)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert run("run", source, "--job", job, "--out", out) == 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    events = log_events(capsys.readouterr().err)
    assert any(e["event"] == "run.interrupted" and e["signal"] == "SIGTERM" for e in events)
    assert sandbox.state.requests == []
    (recorded,) = ledger_runs(tmp_path / "state")
    assert recorded["exit_code"] == 143 and recorded["counts"]["ended"] == "interrupted"
    manifest = json.loads((tmp_path / "out.manifest.json").read_text())
    assert manifest["run_id"] == recorded["run_id"]
    assert (manifest["exit_code"], manifest["interrupted_by"]) == (143, "SIGTERM")
    with sqlite3.connect(tmp_path / "state" / "ledger.sqlite3") as db:
        (chained,) = db.execute("SELECT record FROM audit_chain WHERE kind = 'manifest'").fetchone()
    assert json.loads(chained)["exit_code"] == 143
    monkeypatch.setattr(pipeline, "resolve_credentials", real)
    assert run("run", source, "--job", job, "--out", out) == 0
    assert committed(sandbox) == Counter(i for _, i in rows)


def test_sigterm_mid_sending_then_the_rerun_resends_nothing(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """SIGTERM mid-sending (sandbox latency): the log line, exit 143; the results, the ledger
    and the sandbox agree on what was applied; runs list says interrupted; the re-run sends
    only the rest, each once."""
    sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=0.2)]
    rows = [("acme", order_id("acme", n)) for n in range(60)]
    source, out = orders_csv(tmp_path / "in.csv", rows), tmp_path / "out.csv"
    job = write_job(tmp_path / "j.toml", sandbox.url, rate_per_second=10, concurrency=2)
    process = start("run", source, "--job", job, "--out", out)
    wait_for(lambda: len(committed(sandbox)) >= 5)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err.decode()[-2000:]
    assert any(e.get("event") == "run.interrupted" for e in log_events(err))
    results = read_results(out)
    applied = set(results.filter(pl.col("status") == "applied").get_column("purchaseHistoryID"))
    (recorded,) = ledger_runs(tmp_path / "state")
    assert recorded["exit_code"] == 143
    assert ledger_states(tmp_path / "state", recorded["run_id"]).get("applied") == applied
    assert set(committed(sandbox)) == applied and 5 <= len(applied) < 60
    manifest = json.loads((tmp_path / "out.manifest.json").read_text())
    assert (manifest["exit_code"], manifest["interrupted_by"]) == (143, "SIGTERM")
    listing = subprocess.run(
        [sys.executable, "-m", "reconcile.cli", "runs", "--job", str(job)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    (line,) = [x for x in listing.stdout.splitlines() if recorded["run_id"] in x]
    assert "run (interrupted)" in line and " 143 " in line
    sandbox.state.faults.rules = []
    again = start("run", source, "--job", job, "--out", out)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()[-2000:]
    assert committed(sandbox) == Counter(i for _, i in rows)  # each row once, across both runs


def test_a_killed_run_is_marked_interrupted_but_a_running_one_is_not(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """While a run sends, ``runs`` (which opens the ledger) leaves it alone: it shows as
    running, no end recorded. Once it is SIGKILLed the next ``runs`` marks it interrupted
    (with its requests per state) instead of "(unfinished)" forever."""
    sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=0.2)]
    rows = [("acme", order_id("acme", n)) for n in range(60)]
    job = write_job(tmp_path / "j.toml", sandbox.url, rate_per_second=10, concurrency=1)
    process = start(
        "run", orders_csv(tmp_path / "in.csv", rows), "--job", job, "--out", tmp_path / "o.csv"
    )
    try:
        wait_for(lambda: len(committed(sandbox)) >= 3)
        assert run("runs", "--job", job) == 0
        assert "(running)" in capsys.readouterr().out
        (live,) = ledger_runs(tmp_path / "state")
        assert live["ended_at"] is None and live["counts"] is None
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    assert run("runs", "--job", job) == 0
    listing = capsys.readouterr().out
    assert "run (interrupted)" in listing and "requests: applied" in listing, listing
    (marked,) = ledger_runs(tmp_path / "state")
    assert marked["ended_at"] is not None and marked["exit_code"] is None
    assert marked["counts"]["ended"] == "interrupted"
    assert marked["counts"]["requests"]["applied"] >= 3


def test_a_run_in_another_thread_of_this_process_is_not_marked(tmp_path: Path) -> None:
    """The liveness lock is per open file: a console thread's run is alive to a ledger opened
    by another thread of the same process, and marked once its lock is released."""
    from reconcile import liveness
    from reconcile.database import Storage
    from reconcile.ledger import Ledger

    storage = Storage(tmp_path / "state")
    held, release = threading.Event(), threading.Event()

    def running() -> None:
        with liveness.holding(storage, "run-a"):
            ledger = Ledger(storage)
            ledger.start_run(
                {
                    "run_id": "run-a",
                    "started_at": "2026-01-01T00:00:00",
                    "dry_run": 0,
                    "operation": "purchase-history",
                    "base_url": "http://127.0.0.1:9",
                    "input_path": "in.csv",
                    "input_sha256": "0" * 64,
                    "operator": "test",
                    "tool_version": "test",
                }
            )
            ledger.close()
            held.set()
            release.wait(30)

    worker = threading.Thread(target=running)
    worker.start()
    try:
        assert held.wait(30)
        assert Ledger(storage).interrupted == []
        assert ledger_runs(storage.state_dir)[0]["ended_at"] is None
    finally:
        release.set()
        worker.join()
    assert Ledger(storage).interrupted == ["run-a"]


@pytest.mark.usefixtures("ledger_backend")
def test_killed_runs_are_marked_in_either_ledger(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite and PostgreSQL alike (the PostgreSQL run's liveness is a session advisory lock,
    released by the server when the process dies): running while it runs, interrupted once
    SIGKILLed, as ``runs`` shows it."""
    sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=0.2)]
    rows = [("acme", order_id("acme", n)) for n in range(40)]
    job = write_job(tmp_path / "j.toml", sandbox.url, rate_per_second=10, concurrency=1)
    source = orders_csv(tmp_path / "in.csv", rows)
    process = start("run", source, "--job", job, "--out", tmp_path / "o.csv")
    try:
        wait_for(lambda: len(committed(sandbox)) >= 2)
        assert run("runs", "--job", job) == 0
        assert "(running)" in capsys.readouterr().out
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    wait_for(lambda: run("runs", "--job", job) == 0 and "(interrupted)" in capsys.readouterr().out)
