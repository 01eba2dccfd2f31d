"""The public Python API: the README's example runs, and a run driven from a thread can be
cancelled without losing an outcome (issue 16)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import reconcile
from reconcile.outcome import Status
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from reconcile.sandbox.state import FaultRule
from tests.helpers import ROOT, orders_csv, write_job


def test_the_readme_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The "Use it from Python" block, executed as written from the project folder."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use it from Python", 1)[1]
    [code] = re.findall(r"```python\n(.*?)```", section, flags=re.S)[:1]
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "17 1 16"
    assert printed[-1].endswith("0 {'would_apply': 5}")


def test_exports_are_the_documented_api() -> None:
    assert set(reconcile.__all__) >= {"load_job", "validate_file", "run", "RunSummary"}
    assert callable(reconcile.run) and callable(reconcile.validate_file)


def test_validate_file_sends_and_records_nothing(tmp_path: Path) -> None:
    job = reconcile.load_job(write_job(tmp_path / "job.toml"))
    source = orders_csv(tmp_path / "in.csv", [("acme", "ORDTACME00001"), ("acme", "nope")])
    checked = reconcile.validate_file(source, job)
    assert (checked.rows, checked.valid, checked.invalid) == (2, 1, 1)
    assert checked.errors.get_column("row").to_list() == [3]
    assert checked.requests.get_column("method").to_list() == ["PATCH"]
    assert not (tmp_path / "state").exists()


@pytest.mark.usefixtures("keys_in_env")
def test_requests_cut_off_past_the_grace_are_unknown_never_not_sent(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """Stopped while requests are out and the grace runs out before their answers: every
    request the API received is reported `unknown` (it may have applied), never `skipped`
    "not sent", and the ledger says so too, so no later run takes it for unsent."""
    sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=2)]
    rows = [("acme", order_id("acme", n)) for n in range(8)]
    source = orders_csv(tmp_path / "in.csv", rows)
    job = reconcile.load_job(
        write_job(tmp_path / "job.toml", sandbox.url, concurrency=2, interrupt_grace_seconds=0.5)
    )
    cancel = threading.Event()
    result: dict[str, Any] = {}

    def work() -> None:
        result["summary"] = reconcile.run(source, job, tmp_path / "out.csv", cancel=cancel)

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 30
    while len(sandbox.state.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    cancel.set()
    worker.join(timeout=60)
    assert not worker.is_alive()
    outcomes = result["summary"].outcomes
    received = {r["path"].rsplit("/", 1)[-1] for r in sandbox.state.requests}
    assert len(received) >= 2
    status_of = {rows[r - 2][1]: st for r, st in outcomes.select("__row", "status").iter_rows()}
    assert {status_of[i] for i in received} == {"applied"}  # answered before the stop
    # The two requests out when the grace ran out (concurrency 2): unknown, one attempt each.
    cut_off = outcomes.filter(pl.col("status") == "unknown")
    assert cut_off.height == 2 and cut_off.get_column("attempts").to_list() == [1, 1]
    assert "may have applied" in cut_off.get_column("error")[0]
    skipped = outcomes.filter(pl.col("status") == "skipped")
    assert skipped.height == len(rows) - len(received) - 2
    assert set(skipped.get_column("attempts").to_list()) == {0}


@pytest.mark.usefixtures("keys_in_env")
def test_a_run_in_a_thread_stops_on_cancel_and_loses_nothing(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """A server's worker thread runs the file; setting ``cancel`` after two answers stops it:
    exit code 130, the rest skipped, and every row the sandbox applied is reported applied."""
    sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=0.1)]
    rows = [("acme", order_id("acme", n)) for n in range(40)]
    source = orders_csv(tmp_path / "in.csv", rows)
    job = reconcile.load_job(
        write_job(tmp_path / "job.toml", sandbox.url, concurrency=1, interrupt_grace_seconds=5)
    )
    cancel = threading.Event()
    seen: list[tuple[str, Status]] = []
    result: dict[str, Any] = {}

    def progress(community: str, status: Status) -> None:
        seen.append((community, status))
        if len(seen) == 2:
            cancel.set()

    def work() -> None:
        result["summary"] = reconcile.run(
            source, job, tmp_path / "out.csv", on_progress=progress, cancel=cancel
        )

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive()
    summary = result["summary"]
    assert summary.exit_code == 130
    statuses = summary.outcomes.get_column("status").to_list()
    applied = statuses.count("applied")
    assert applied >= 2 and statuses.count("skipped") == 40 - applied
    committed = [r for r in sandbox.state.requests if r.get("committed")]
    assert len(committed) == applied
