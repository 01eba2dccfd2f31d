"""Durable runs: the ledger across crashes, the run lock, --force, the manifest, the errors file."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile.database import Storage
from reconcile.ledger import FinishedRecord, Ledger, RequestRecord, fingerprint, fingerprints
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from reconcile.sandbox.state import FaultRule
from tests.helpers import (
    KEYS,
    ROOT,
    credential_env,
    orders_csv,
    read_results,
    run,
    run_orders,
    write_job,
)


def start(args: list[str | Path]) -> subprocess.Popen[bytes]:
    """The CLI as a process, with the test's environment (RECONCILE_LEDGER_URL included)."""
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


def wait_for(condition, seconds: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def in_flight_paths(state_dir: Path) -> set[str]:
    """The paths the ledger (SQLite, or PostgreSQL under RECONCILE_LEDGER_URL) has in flight."""
    ledger = Ledger(Storage(state_dir, os.environ.get("RECONCILE_LEDGER_URL")))
    try:
        return {p for (p,) in ledger.db.rows("SELECT path FROM requests WHERE state = 'in_flight'")}
    finally:
        ledger.close()


@pytest.mark.usefixtures("ledger_backend")
def test_sigkill_at_several_points_then_resume(sandbox: SandboxServer, tmp_path: Path) -> None:
    """Killed three times mid-run, re-run each time: every row applied exactly once, except the
    requests in flight at a kill (re-sent once), and the last results say applied/already."""
    sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=0.05)]
    rows = [(c, order_id(c, n)) for n in range(40) for c in ("acme", "globex")]
    source = orders_csv(tmp_path / "in.csv", rows)
    job = write_job(tmp_path / "job.toml", sandbox.url, rate_per_second=40, concurrency=4)
    out = tmp_path / "out.csv"
    command = ["run", source, "--job", job, "--out", out]
    maybe_twice: Counter[str] = Counter()
    for kill_after in (10, 30, 55):
        process = start(command)
        wait_for(
            lambda n=kill_after: sum(1 for r in sandbox.state.requests if r.get("committed")) >= n
        )
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert process.returncode == -signal.SIGKILL
        for path in in_flight_paths(tmp_path / "state"):
            maybe_twice[path.rsplit("/", 1)[1]] += 1
    final = start(command)
    _, err = final.communicate(timeout=60)
    assert final.returncode == 0, err.decode()[-2000:]

    results = read_results(out)
    assert set(results.get_column("status")) <= {"applied", "already_applied"}
    assert results.filter(pl.col("status") == "already_applied").height >= 55 - sum(
        maybe_twice.values()
    )
    sent = Counter(r["path"].rsplit("/", 1)[1] for r in sandbox.state.requests)
    assert set(sent) == {target for _, target in rows}
    for target, count in sent.items():
        assert count <= 1 + maybe_twice[target], (target, count)
    resent = results.filter(pl.col("error").str.starts_with("re-sent")).get_column(
        "purchaseHistoryID"
    )
    assert set(resent) <= set(maybe_twice)
    for record in sandbox.state.snapshot()["purchaseHistories"]:
        if record["purchaseID"] in sent:
            assert record["product"]["redemptionInstructions"] == "Collect at the desk"


@pytest.mark.usefixtures("ledger_backend")
def test_second_run_of_a_job_exits_2_and_a_crashed_lock_does_not_block(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=0.2)]
    source = orders_csv(tmp_path / "in.csv", [("acme", order_id("acme", n)) for n in range(50)])
    job = write_job(tmp_path / "job.toml", sandbox.url, rate_per_second=5, concurrency=1)
    first = start(["run", source, "--job", job, "--out", tmp_path / "a.csv"])
    wait_for(lambda: len(sandbox.state.requests) >= 1)
    began = time.monotonic()
    second = start(["run", source, "--job", job, "--out", tmp_path / "b.csv"])
    _, err = second.communicate(timeout=30)
    assert second.returncode == 2
    assert "is in progress" in err.decode()
    assert time.monotonic() - began < 10
    assert not (tmp_path / "b.csv").exists()
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    sandbox.state.faults.rules = []
    third = start(
        [
            "run",
            source,
            "--job",
            job,
            "--out",
            tmp_path / "c.csv",
            "--rate",
            "100",
            "--concurrency",
            "4",
        ]
    )
    _, err = third.communicate(timeout=60)
    assert third.returncode == 0, err.decode()[-2000:]


def test_a_damaged_ledger_stops_with_its_own_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not 1 (rows failed) nor a bare traceback: monitoring can tell a crash from bad rows,
    and the message names the file, says a re-run will not resume, points to ledger check."""
    job = write_job(tmp_path / "job.toml")
    (tmp_path / "state").mkdir()
    ledger = tmp_path / "state" / "ledger.sqlite3"
    ledger.write_bytes(b"not a database at all" * 100)
    source = orders_csv(tmp_path / "in.csv", [("acme", "ORD1")])
    assert run("run", source, "--job", job, "--out", tmp_path / "out.csv", "--dry-run") == 3
    err = capsys.readouterr().err
    damaged = [json.loads(line) for line in err.splitlines() if '"run.ledger_damaged"' in line]
    assert damaged and "not a database" in damaged[0]["error"]
    assert f"the ledger {ledger} is damaged" in err
    assert "will NOT resume" in err and "reconcile ledger check" in err
    assert "resumes without sending anything twice" not in err
    assert not (tmp_path / "out.csv").exists()


def test_a_state_dir_that_is_a_file_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "state").write_text("a file, not a folder")
    job = write_job(tmp_path / "job.toml")
    source = orders_csv(tmp_path / "in.csv", [("acme", "ORD1")])
    assert run("run", source, "--job", job, "--out", tmp_path / "out.csv", "--dry-run") == 2
    err = capsys.readouterr().err
    assert f"state_dir {tmp_path / 'state'}: cannot be used" in err


@pytest.mark.usefixtures("keys_in_env")
@pytest.mark.usefixtures("ledger_backend")
class TestLedger:
    def test_applied_rows_are_not_sent_again_unless_forced(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        source = orders_csv(tmp_path / "in.csv", [("acme", order_id("acme", n)) for n in range(5)])
        job = write_job(tmp_path / "job.toml", sandbox.url)
        out = tmp_path / "out.csv"
        assert run("run", source, "--job", job, "--out", out) == 0
        first_run = json.loads((tmp_path / "out.manifest.json").read_text())["run_id"]
        assert len(sandbox.state.requests) == 5

        assert run("run", source, "--job", job, "--out", out) == 0
        results = read_results(out)
        assert set(results.get_column("status")) == {"already_applied"}
        assert set(results.get_column("attempts")) == {"0"}
        assert all(
            e.startswith(f"already applied by run {first_run} at ")
            for e in results.get_column("error")
        )
        assert len(sandbox.state.requests) == 5

        assert run("run", source, "--job", job, "--out", out, "--force") == 0
        assert set(read_results(out).get_column("status")) == {"applied"}
        assert len(sandbox.state.requests) == 10

    def test_a_changed_correction_is_a_new_request(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        job = write_job(tmp_path / "job.toml", sandbox.url)
        target = [("acme", order_id("acme", 1))]
        run(
            "run",
            orders_csv(tmp_path / "a.csv", target, "First text"),
            "--job",
            job,
            "--out",
            tmp_path / "o.csv",
        )
        run(
            "run",
            orders_csv(tmp_path / "b.csv", target, "Second text"),
            "--job",
            job,
            "--out",
            tmp_path / "o.csv",
        )
        assert read_results(tmp_path / "o.csv").get_column("status").to_list() == ["applied"]

    def test_a_correction_reverted_by_a_later_one_is_sent_again(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        """First text, then Second text, then First text again: the third run must apply it
        (its fingerprint was applied once, but a later request changed the record since)."""
        job = write_job(tmp_path / "job.toml", sandbox.url)
        target = order_id("acme", 1)
        for text in ("First text", "Second text", "First text"):
            source = orders_csv(tmp_path / f"{text}.csv", [("acme", target)], text)
            code = run("run", source, "--job", job, "--out", tmp_path / "out.csv")
            assert code == 0
            result = read_results(tmp_path / "out.csv").row(0, named=True)
            assert result["status"] == "applied"
        assert result["error"].startswith("re-sent: run ")
        assert "changed this record at" in result["error"]
        assert len(sandbox.state.requests) == 3
        [record] = [
            r for r in sandbox.state.snapshot()["purchaseHistories"] if r["purchaseID"] == target
        ]
        assert record["product"]["redemptionInstructions"] == "First text"
        # Applied last: already applied again.
        assert run("run", source, "--job", job, "--out", tmp_path / "out.csv") == 0
        assert read_results(tmp_path / "out.csv").get_column("status").to_list() == [
            "already_applied"
        ]
        assert len(sandbox.state.requests) == 3

    def test_a_failed_request_that_may_have_applied_counts_as_a_change(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        """Second text failed after retries, but each attempt was written before its 502: the
        record holds it. Asking for First text again must send it, not call it applied."""
        job = write_job(
            tmp_path / "job.toml", sandbox.url, max_attempts=2, backoff_base_seconds=0.01
        )
        target = order_id("acme", 1)
        out = tmp_path / "out.csv"

        def correct(text: str) -> dict[str, str]:
            source = orders_csv(tmp_path / "in.csv", [("acme", target)], text)
            run("run", source, "--job", job, "--out", out)
            return read_results(out).row(0, named=True)

        assert correct("First text")["status"] == "applied"
        sandbox.state.faults.rules = [FaultRule(kind="error_after", status=502, match=target)]
        failed = correct("Second text")
        assert (failed["status"], failed["attempts"]) == ("failed", "2")
        assert "may have applied it" in failed["error"]
        sandbox.state.faults.rules = []
        again = correct("First text")
        assert again["status"] == "applied"
        assert "changed this record" in again["error"]
        [record] = [
            r for r in sandbox.state.snapshot()["purchaseHistories"] if r["purchaseID"] == target
        ]
        assert record["product"]["redemptionInstructions"] == "First text"

    def test_fingerprint_includes_the_base_url(self) -> None:
        """A rehearsal against the sandbox never makes production think a row is applied."""
        sandbox = fingerprint(
            "http://127.0.0.1:1", "purchase-history", "acme", "PATCH", "/v1/x", "{}"
        )
        production = fingerprint(
            "https://api.returning.ai", "purchase-history", "acme", "PATCH", "/v1/x", "{}"
        )
        assert sandbox != production
        assert sandbox == fingerprint(
            "http://127.0.0.1:1", "purchase-history", "acme", "PATCH", "/v1/x", "{}"
        )

    def test_a_known_fingerprint_never_changes(self) -> None:
        """Ledgers written by earlier versions keep matching: the definition is frozen."""
        assert (
            fingerprint(
                "https://api.returning.ai",
                "purchase-history",
                "acme",
                "PATCH",
                "/v1/x",
                '{"a":"é"}',
            )
            == "ccf69c745327665323040266b07a16731e5ece9136392aeae5db3cf1cc7fbca5"
        )

    def test_dry_run_marks_nothing_applied_but_shows_what_is(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        rows = [("acme", order_id("acme", n)) for n in range(3)]
        job = write_job(tmp_path / "job.toml", sandbox.url)

        def statuses(chosen: list[tuple[str, str]], *flags: str) -> list[str]:
            code, results = run_orders(job, chosen, tmp_path, *flags)
            assert code == 0
            return results.get_column("status").to_list()

        assert statuses(rows, "--dry-run") == ["would_apply"] * 3
        assert statuses(rows[:1]) == ["applied"]
        assert len(sandbox.state.requests) == 1
        assert statuses(rows, "--dry-run") == ["already_applied", "would_apply", "would_apply"]
        # --force would send everything again; and a ledger larger than the file is looked
        # up request by request instead of read whole: the same answers.
        assert statuses(rows, "--dry-run", "--force") == ["would_apply"] * 3
        assert statuses(rows[1:]) == ["applied", "applied"]
        assert statuses(rows[:1], "--dry-run") == ["already_applied"]
        assert len(sandbox.state.requests) == 3

    def test_manifest(self, sandbox: SandboxServer, tmp_path: Path) -> None:
        import hashlib

        rows = [
            ("acme", order_id("acme", 1)),
            ("globex", order_id("globex", 1)),
            ("acme", "ORD404"),
        ]
        source = orders_csv(tmp_path / "in.csv", rows)
        job = write_job(tmp_path / "job.toml", sandbox.url)
        assert run("run", source, "--job", job, "--out", tmp_path / "out.csv") == 1
        manifest = json.loads((tmp_path / "out.manifest.json").read_text())
        assert manifest["input"] == {
            "path": str(source),
            "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        }
        assert manifest["operation"] == "purchase-history" and manifest["base_url"] == sandbox.url
        assert manifest["job_file"] == str(job) and manifest["dry_run"] is False
        assert manifest["tool_version"] and "@" in manifest["operator"]
        assert manifest["started_at"] <= manifest["ended_at"]
        assert manifest["exit_code"] == 1
        assert manifest["counts"]["per_status"] == {"applied": 2, "rejected": 1}
        assert manifest["counts"]["per_community"] == {
            "acme": {"applied": 1, "rejected": 1},
            "globex": {"applied": 1},
        }
        text = (tmp_path / "out.manifest.json").read_text()
        assert KEYS["acme"] not in text and KEYS["globex"] not in text

    def test_errors_file_is_an_input_that_reruns_cleanly(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        source = tmp_path / "in.csv"
        source.write_text(
            "Community;Purchase History ID;Redemption Instructions;Voucher Code;Voucher Expiry Date;Note\n"
            f"acme;{order_id('acme', 1)};Desk A;;;fine\n"
            "acme;ORD404;Desk B;;;unknown order\n"
            f"acme;{order_id('acme', 2)};;-NEW-9;2026-12-31;ISO date\n",
            encoding="cp1252",
        )
        job = write_job(tmp_path / "job.toml", sandbox.url)
        assert run("run", source, "--job", job, "--out", tmp_path / "out.csv") == 1
        errors_file = tmp_path / "out.errors.csv"
        errors = read_results(errors_file)
        assert errors.get_column("status").to_list() == ["rejected", "invalid"]
        assert errors.get_column("Note").to_list() == ["unknown order", "ISO date"]
        # Excel's guard on a code starting with '-' is in the file, not in what is sent again.
        assert errors.get_column("Voucher Code").to_list() == [None, "'-NEW-9"]
        # The finance person fixes the two rows in Excel and uploads the file as it is.
        fixed = errors.with_columns(
            pl.col("Purchase History ID").replace({"ORD404": order_id("acme", 3)}),
            pl.col("Voucher Expiry Date").replace({"2026-12-31": "31/12/2026"}),
        )
        fixed.write_csv(errors_file, include_bom=True)
        assert run("run", errors_file, "--job", job, "--out", tmp_path / "again.csv") == 0
        again = read_results(tmp_path / "again.csv")
        assert again.get_column("status").to_list() == ["applied", "applied"]
        assert again.get_column("Note").to_list() == ["unknown order", "ISO date"]
        assert '"voucherCode":"-NEW-9"' in again.get_column("request")[1]

    def test_runs_lists_and_shows(
        self, sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`runs` is a table under a header naming each column (sandbox runs as `sandbox`, the
        exit code, maker); `runs show` is readable text, `--json` the same run for machines."""
        source = orders_csv(tmp_path / "in.csv", [("acme", order_id("acme", 1))])
        job = write_job(tmp_path / "job.toml", sandbox.url)
        run("run", source, "--job", job, "--out", tmp_path / "dry.csv", "--dry-run")
        run("run", source, "--job", job, "--out", tmp_path / "real.csv")
        capsys.readouterr()
        assert run("runs", "--state-dir", tmp_path / "state") == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 3
        assert lines[0].split() == [
            "STARTED",
            "RUN",
            "ID",
            "KIND",
            "TARGET",
            "EXIT",
            "MAKER",
            "APPROVER",
            "ROWS",
            "INPUT",
        ]
        assert "dry run" in lines[2] and "would_apply 1" in lines[2]
        real = lines[1].split()
        assert real[2:5] == ["run", "sandbox", "0"] and "applied" in real
        assert lines[1].endswith(str(source))
        real_id = json.loads((tmp_path / "real.manifest.json").read_text())["run_id"]
        assert run("runs", "show", "2", "--job", job) == 2  # a prefix of both runs: ambiguous
        assert run("runs", "show", real_id, "--job", job) == 0
        text = capsys.readouterr().out
        assert f"run {real_id}" in text and "exit code  0" in text
        assert "rows       applied 1" in text and "(sandbox)" in text
        assert run("runs", "show", real_id, "--job", job, "--json") == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["run_id"] == real_id and shown["dry_run"] == 0
        assert shown["counts"]["per_status"] == {"applied": 1}
        assert shown["requests"] == {"applied": 1}
        assert shown["manifest"]["exit_code"] == 0 and shown["verifications"] == []
        assert run("runs", "list", "--json", "--job", job) == 0
        listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [r["kind"] for r in listed] == ["run", "dry run"]
        assert run("runs", "show", "nope", "--job", job) == 2

    def test_runs_of_an_empty_state_dir_says_where_it_looked(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An empty or wrong state dir is not silence: stderr names it and how to point
        `runs` at a job's ledger."""
        assert run("runs", "--state-dir", tmp_path / "nowhere") == 0
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith("no runs in ") and "--job" in captured.err


TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(
            ['"', "\\", "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "/", "é", "€", "\u2028"]
        ),
        st.characters(codec="utf-8"),
    ),
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            TEXT, st.sampled_from(["PATCH", "PUT", "POST"]), TEXT, st.one_of(st.none(), TEXT)
        ),
        min_size=1,
        max_size=20,
    ),
    TEXT,
)
def test_vectorised_fingerprints_equal_the_definition(
    rows: list[tuple[str, str, str, str | None]], base_url: str
) -> None:
    """The polars-built fingerprints are the very ones ``fingerprint`` gives, whatever the text:
    a difference would make a re-run forget what was applied."""
    requests = pl.DataFrame(
        rows,
        schema={"community": pl.String, "method": pl.String, "path": pl.String, "body": pl.String},
        orient="row",
    )
    expected = [fingerprint(base_url, "op", *row) for row in rows]
    assert fingerprints(base_url, "op", requests).to_list() == expected


@pytest.mark.parametrize("others", [0, 20], ids=["ledger larger than the file", "file larger"])
def test_prior_keeps_the_latest_applied_record_else_the_latest(tmp_path: Path, others: int) -> None:
    """Both lookups (one query per chunk, or the whole ledger when it is the smaller) agree."""
    ledger = Ledger(tmp_path)

    def outcome(run_id: str, key: str, state: str) -> None:
        record = RequestRecord(run_id, key, "acme", "PATCH", "/", "target")
        ledger.commit([], [FinishedRecord(record, state, http_status=None, error=None, attempts=1)])
        time.sleep(0.002)  # distinct timestamps: the order is the ledger's time order

    outcome("r1", "applied-then-failed", "applied")
    outcome("r2", "applied-then-failed", "failed")
    outcome("r1", "unknown-then-in-flight", "unknown")
    outcome("r2", "unknown-then-in-flight", "in_flight")
    outcome("r1", "only-failed", "failed")
    outcome("r1", "applied-twice", "applied")
    outcome("r3", "applied-twice", "applied")
    outcome("r4", "applied-twice", "failed")
    wanted = ["applied-then-failed", "unknown-then-in-flight", "only-failed", "never-sent"]
    wanted.append("applied-twice")
    found = ledger.prior(wanted + [f"other-{n}" for n in range(others)])
    ledger.close()
    assert {key: (p.state, p.run_id) for key, p in found.items()} == {
        "applied-then-failed": ("applied", "r1"),
        "unknown-then-in-flight": ("in_flight", "r2"),
        "only-failed": ("failed", "r1"),
        "applied-twice": ("applied", "r3"),  # the latest application
    }


def test_a_ledger_from_before_targets_is_migrated(tmp_path: Path) -> None:
    """Ledgers written before the target column keep working: the column is added, their
    records keep answering ``prior`` (they just cannot tell later changes)."""
    old = sqlite3.connect(tmp_path / "ledger.sqlite3")
    old.executescript(
        """
        CREATE TABLE requests (run_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
            community TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
            state TEXT NOT NULL, http_status INTEGER, error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL,
            PRIMARY KEY (run_id, fingerprint));
        INSERT INTO requests VALUES ('r1', 'f1', 'acme', 'PATCH', '/v1/x', 'applied', 200, NULL,
            1, '2026-01-01T00:00:00.000+00:00');
        """
    )
    old.close()
    ledger = Ledger(tmp_path)
    columns = ledger.db.columns("requests")
    assert "target" in columns
    assert ledger.prior(["f1"])["f1"].state == "applied"
    targets = pl.DataFrame({"community": ["acme"], "target": ["x"]})
    assert ledger.later_changes("https://api", "purchase-history", targets).is_empty()
    ledger.close()
