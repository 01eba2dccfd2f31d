"""A read-back is kept everywhere the run is: the terminal, the results file's verify columns,
the run's HTML report, the audit chain and ``runs show`` (reconcile/verify_record.py); real
HTTP to the sandbox."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from reconcile import approval
from reconcile.ledger import Ledger
from reconcile.sandbox import SandboxServer
from tests.helpers import read_results, run, storage_of, write_csv, write_job

HEADER = "community,orderId,status\n"
FIRST = "acme,ord_acme0001,PAID\n"
SECOND = "acme,ord_acme0002,FULFILLED\n"


def _drifted_run(
    tmp_path: Path, sandbox: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, Path, str]:
    """ord_acme0001 written, then cancelled by another writer; ``run --verify`` of it with
    ord_acme0002: (job, file, the --verify run's id)."""
    job = write_job(
        tmp_path / "job.toml", sandbox.url, operation="voucherify-order", verify_settle_seconds=0
    )
    first = write_csv(tmp_path / "first.csv", HEADER + FIRST)
    assert run("run", first, "--job", job, "--out", tmp_path / "first.out.csv") == 0
    sandbox.state.other_writer("voucherifyOrders", {"id": "ord_acme0001"}, status="CANCELED")
    data = write_csv(tmp_path / "in.csv", HEADER + FIRST + SECOND)
    capsys.readouterr()
    assert run("run", data, "--job", job, "--out", tmp_path / "out.csv", "--verify") == 4
    ledger = Ledger(storage_of(job))
    [last] = ledger.runs(limit=1)
    ledger.close()
    return job, data, str(last["run_id"])


def test_run_verify_shows_its_read_back_on_the_terminal_in_results_and_report(
    tmp_path: Path,
    sandbox: SandboxServer,
    keys_in_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``run --verify`` prints the reads, the counts per verify_status and the mismatching row
    with its detail; the results file has ``verify_status``/``verify_detail`` per row; the
    run's HTML report has a verification section with the counts, reads and that row."""
    _drifted_run(tmp_path, sandbox, capsys)
    printed = capsys.readouterr().out
    assert f"verify: 2 reads; mismatch 1, verified 1; {tmp_path / 'out.verify.csv'}" in printed
    assert "  row 2 (acme): mismatch: status: wrote PAID, read CANCELED" in printed
    results = read_results(tmp_path / "out.csv")
    assert results.get_column("reconcile_status").to_list() == ["already_applied", "applied"]
    assert results.get_column("verify_status").to_list() == ["mismatch", "verified"]
    assert results.get_column("verify_detail").to_list() == [
        "status: wrote PAID, read CANCELED",
        None,
    ]
    report = (tmp_path / "out.report.html").read_text(encoding="utf-8")
    section = re.search(r"<section id='verification'>.*?</section>", report)
    assert section is not None
    assert "<td data-verify='mismatch'>1</td>" in section.group()
    assert "<td data-verify='verified'>1</td>" in section.group()
    assert "2 reads" in section.group()
    assert "<td>status: wrote PAID, read CANCELED</td>" in section.group()


def test_each_verification_is_in_the_audit_chain_and_runs_show(
    tmp_path: Path,
    sandbox: SandboxServer,
    keys_in_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``run --verify`` and a later ``verify RUN_ID`` each chain a ``verification`` record:
    who (RECONCILE_USER), when, counts, reads, the SHA-256 of the verify file it wrote and the
    mismatching rows; ``runs show`` lists both; the report shows the latest one only;
    ``audit verify`` passes, and fails once a verification record is edited."""
    monkeypatch.setenv("RECONCILE_USER", "dana")
    job, _, run_id = _drifted_run(tmp_path, sandbox, capsys)
    monkeypatch.setenv("RECONCILE_USER", "erin")
    sandbox.state.other_writer("voucherifyOrders", {"id": "ord_acme0001"}, status="PAID")
    later = tmp_path / "later.verify.csv"
    assert run("verify", run_id, "--job", job, "--out", later) == 0
    storage = storage_of(job)
    with approval.store(storage) as audit:
        first, second = audit.verifications(run_id)
    assert (first["by"], first["source"], second["by"], second["source"]) == (
        "dana",
        "run --verify",
        "erin",
        "reconcile verify",
    )
    assert first["counts"] == {"mismatch": 1, "verified": 1} and first["reads"] == 2
    assert first["exit_code"] == 4 and second["counts"] == {"verified": 2}
    assert first["wrong"] == [
        {
            "row": 2,
            "community": "acme",
            "verify_status": "mismatch",
            "verify_detail": "status: wrote PAID, read CANCELED",
        }
    ]
    for entry, path in ((first, tmp_path / "out.verify.csv"), (second, later)):
        assert entry["verify_file"] == str(path)
        assert entry["verify_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    report = (tmp_path / "out.report.html").read_text(encoding="utf-8")
    assert report.count("<section id='verification'>") == 1 and "by erin" in report
    assert "None: the API holds what every row read back says." in report

    capsys.readouterr()
    assert run("runs", "show", run_id, "--job", job) == 0
    shown = capsys.readouterr().out.split("verifications:\n", 1)[1]
    assert "by dana (run --verify): mismatch 1, verified 1; 2 reads; exit 4" in shown
    assert "    row 2: mismatch: status: wrote PAID, read CANCELED" in shown
    assert f"by erin (reconcile verify): verified 2; 2 reads; exit 0; {later}" in shown

    assert approval.verify(storage) == []
    assert run("audit", "verify", "--job", job) == 0
    with approval.store(storage) as audit:
        audit.db.run(
            "UPDATE audit_chain SET record = replace(record, '\"mismatch\":1', '\"mismatch\":0') "
            "WHERE kind = 'verification'"
        )
    problems = approval.verify(storage)
    assert problems and "(verification of run " in problems[0]


def test_verifying_a_file_with_no_run_is_chained_too(
    tmp_path: Path,
    sandbox: SandboxServer,
    keys_in_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``verify FILE`` (an auditor's "is this done?") chains its verification under no run id,
    naming the file and its SHA-256."""
    monkeypatch.setenv("RECONCILE_USER", "auditor")
    job = write_job(
        tmp_path / "job.toml", sandbox.url, operation="voucherify-order", verify_settle_seconds=0
    )
    data = write_csv(tmp_path / "in.csv", HEADER + "acme,ord_acme0001,CREATED\n")
    assert run("verify", data, "--job", job, "--out", tmp_path / "v.csv") == 0
    with approval.store(storage_of(job)) as audit:
        [entry] = audit.verifications("")
    assert entry["by"] == "auditor" and entry["counts"] == {"verified": 1}
    assert entry["input"] == {
        "path": str(data),
        "sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
    }
