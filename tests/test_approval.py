"""Maker-checker: what is sent is exactly what a second person approved, and the audit chain
shows any edit afterwards (issue 18)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from reconcile import approval
from reconcile.database import Storage, open_database
from reconcile.job import load_job
from reconcile.plan_store import rows_blob, rows_from_blob
from reconcile.sandbox import SandboxServer
from tests.helpers import orders_csv, read_results, run, storage_of, write_job

pytestmark = pytest.mark.usefixtures("ledger_backend")

ROWS = [("acme", "ORDTACME00001"), ("acme", "ORDTACME00002"), ("acme", "NOT-AN-ID")]


Switch = Callable[[str], None]


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch) -> Switch:
    """Switch the acting user (RECONCILE_USER), as two colleagues would."""

    def switch(name: str) -> None:
        monkeypatch.setenv("RECONCILE_USER", name)

    return switch


def dry_run(tmp_path: Path, job: Path, source: Path) -> str:
    """A dry run; its run id (from the manifest)."""
    out = tmp_path / "plan.csv"
    assert run("run", source, "--job", job, "--out", out, "--dry-run") in (0, 1)
    return str(json.loads((tmp_path / "plan.manifest.json").read_text())["run_id"])


def approved_by_bob(tmp_path: Path, job: Path, as_user: Switch, source: Path | None = None) -> str:
    """Alice dry-runs the file (ROWS unless ``source``), Bob approves: the plan's run id."""
    as_user("alice")
    run_id = dry_run(tmp_path, job, source or orders_csv(tmp_path / "in.csv", ROWS))
    as_user("bob")
    assert run("approve", run_id, "--job", job) == 0
    return run_id


def sandbox_requests(sandbox: SandboxServer) -> list[tuple[str, str, str]]:
    return [(r["method"], r["raw_path"], r.get("body", "")) for r in sandbox.state.requests]


@pytest.mark.usefixtures("keys_in_env")
class TestFlow:
    def test_the_maker_cannot_approve_their_own_plan(
        self,
        sandbox: SandboxServer,
        tmp_path: Path,
        as_user: Switch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Exit 2 and nothing recorded."""
        job = write_job(tmp_path / "job.toml", sandbox.url)
        as_user("alice")
        run_id = dry_run(tmp_path, job, orders_csv(tmp_path / "in.csv", ROWS))
        assert run("approve", run_id, "--job", job) == 2
        assert "alice made plan" in capsys.readouterr().err
        with approval.store(storage_of(job)) as audit:
            plan = audit.plan(run_id)
        assert plan is not None and plan.decision is None

    def test_a_second_user_approves_and_exactly_the_plan_is_sent(
        self, sandbox: SandboxServer, tmp_path: Path, as_user: Switch
    ) -> None:
        """The sandbox receives exactly the plan's would-apply requests; the manifest names the
        plan, its hash, the maker and the approver."""
        job = write_job(tmp_path / "job.toml", sandbox.url)
        as_user("alice")
        run_id = dry_run(tmp_path, job, orders_csv(tmp_path / "in.csv", ROWS))
        planned = read_results(tmp_path / "plan.csv")
        as_user("bob")
        assert run("approve", run_id, "--job", job, "--note", "checked with finance") == 0
        as_user("carol")
        out = tmp_path / "applied.csv"
        assert run("run", "--plan", run_id, "--job", job, "--out", out) == 1  # one row invalid
        would = planned.filter(planned["status"] == "would_apply")["request"].to_list()
        sent = [f"{m} {p} {b}" for m, p, b in sandbox_requests(sandbox)]
        assert sorted(sent) == sorted(would) and len(sent) == 2
        manifest = json.loads((tmp_path / "applied.manifest.json").read_text())
        with approval.store(storage_of(job)) as audit:
            plan = audit.plan(run_id)
        assert plan is not None
        assert (manifest["plan_run_id"], manifest["maker"], manifest["approver"]) == (
            run_id,
            "alice",
            "bob",
        )
        assert manifest["plan_sha256"] == plan.plan_sha256
        assert read_results(out)["status"].to_list() == ["applied", "applied", "invalid"]

    def test_a_file_changed_after_approval_sends_nothing_and_names_the_row(
        self,
        sandbox: SandboxServer,
        tmp_path: Path,
        as_user: Switch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        job = write_job(tmp_path / "job.toml", sandbox.url)
        source = orders_csv(tmp_path / "in.csv", ROWS)
        run_id = approved_by_bob(tmp_path, job, as_user, source)
        text = source.read_text()
        changed = 'acme,ORDTACME00002,"Collect at the back door"'
        source.write_text(text.replace('acme,ORDTACME00002,"Collect at the desk"', changed))
        assert run("run", "--plan", run_id, "--job", job, "--out", tmp_path / "o.csv") == 2
        err = capsys.readouterr().err
        assert "the input file changed since the plan" in err
        assert "row 3:" in err and "row 2:" not in err and "nothing was sent" in err
        assert sandbox.state.requests == []

    @pytest.mark.parametrize(
        ("change", "named"),
        [
            ({"base_url": "http://localhost:{port}"}, "job setting base_url changed"),
            ({"options": {"note": 1}}, "job setting options changed"),
        ],
    )
    def test_a_job_changed_after_approval_sends_nothing_and_names_the_setting(
        self,
        sandbox: SandboxServer,
        tmp_path: Path,
        as_user: Switch,
        capsys: pytest.CaptureFixture[str],
        change: dict[str, object],
        named: str,
    ) -> None:
        job = write_job(tmp_path / "job.toml", sandbox.url)
        run_id = approved_by_bob(tmp_path, job, as_user)
        settings = {
            k: (v.format(port=sandbox.port) if isinstance(v, str) else v) for k, v in change.items()
        }
        text = job.read_text()
        for key, value in settings.items():
            if key == "base_url":
                text = text.replace(f'base_url = "{sandbox.url}"', f'base_url = "{value}"')
            else:
                text = text.replace("[communities.acme]", "[options]\nnote = 1\n[communities.acme]")
        job.write_text(text)
        assert run("run", "--plan", run_id, "--job", job, "--out", tmp_path / "o.csv") == 2
        assert named in capsys.readouterr().err
        assert sandbox.state.requests == []

    def test_a_rejected_plan_cannot_be_applied_and_a_decision_is_final(
        self,
        sandbox: SandboxServer,
        tmp_path: Path,
        as_user: Switch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        job = write_job(tmp_path / "job.toml", sandbox.url)
        as_user("alice")
        run_id = dry_run(tmp_path, job, orders_csv(tmp_path / "in.csv", ROWS))
        as_user("bob")
        assert run("reject", run_id, "--job", job, "--note", "wrong month") == 0
        assert run("approve", run_id, "--job", job) == 2
        assert "already rejected by bob" in capsys.readouterr().err
        assert run("run", "--plan", run_id, "--job", job, "--out", tmp_path / "o.csv") == 2
        assert "was rejected by bob (wrong month)" in capsys.readouterr().err
        assert sandbox.state.requests == []

    def test_an_expired_approval_is_refused(
        self,
        sandbox: SandboxServer,
        tmp_path: Path,
        as_user: Switch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """approval_ttl_hours bounds how long an approval may wait to be applied."""
        job = write_job(tmp_path / "job.toml", sandbox.url, approval_ttl_hours=72)
        run_id = approved_by_bob(tmp_path, job, as_user)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=73)
        with pytest.raises(approval.ApprovalError, match="over approval_ttl_hours = 72"):
            approval.approved_plan(storage_of(job), run_id, load_job(job), later)
        job.write_text(
            job.read_text().replace("approval_ttl_hours = 72", "approval_ttl_hours = 1e-9")
        )
        assert run("run", "--plan", run_id, "--job", job, "--out", tmp_path / "o.csv") == 2
        assert "approval_ttl_hours" in capsys.readouterr().err
        assert sandbox.state.requests == []

    @pytest.mark.parametrize("case", ["unknown", "real run"])
    def test_what_cannot_be_approved(
        self, sandbox: SandboxServer, tmp_path: Path, as_user: Switch, case: str
    ) -> None:
        job = write_job(tmp_path / "job.toml", sandbox.url)
        run_id = "20260101T000000Z-000000"
        if case == "real run":
            as_user("alice")
            out = tmp_path / "real.csv"
            run("run", orders_csv(tmp_path / "in.csv", ROWS), "--job", job, "--out", out)
            run_id = json.loads((tmp_path / "real.manifest.json").read_text())["run_id"]
        as_user("bob")
        assert run("approve", run_id, "--job", job) == 2


@pytest.mark.usefixtures("keys_in_env")
class TestRequireApproval:
    def test_a_plain_run_is_refused_with_the_flow(
        self, sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        job = write_job(tmp_path / "job.toml", sandbox.url, require_approval=True)
        source = orders_csv(tmp_path / "in.csv", ROWS)
        assert run("run", source, "--job", job, "--out", tmp_path / "o.csv") == 2
        err = capsys.readouterr().err
        assert "require_approval" in err and "reconcile approve RUN_ID" in err
        assert sandbox.state.requests == []

    def test_the_inbox_waits_for_approval_then_applies(
        self, sandbox: SandboxServer, tmp_path: Path, as_user: Switch
    ) -> None:
        """Pass 1 plans the new file and keeps it; pass 2, unapproved, sends nothing; after the
        approval pass 3 applies it and archives it."""
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        source = orders_csv(inbox / "fixes.csv", ROWS[:2])
        job = write_job(
            tmp_path / "job.toml",
            sandbox.url,
            require_approval=True,
            input="inbox",
            results_dir="results",
            archive_dir="archive",
            settle_seconds=0,
        )
        as_user("cron")
        assert run("run", "--job", job) == 0
        assert source.exists() and sandbox.state.requests == []
        with approval.store(storage_of(job)) as audit:
            [(plan_id,)] = audit.db.rows("SELECT run_id FROM plans")
        assert run("run", "--job", job) == 0
        assert source.exists() and sandbox.state.requests == []
        as_user("bob")
        assert run("approve", plan_id, "--job", job) == 0
        as_user("cron")
        assert run("run", "--job", job) == 0
        assert not source.exists() and (tmp_path / "archive" / "fixes.csv").exists()
        assert len(sandbox.state.requests) == 2


@pytest.mark.usefixtures("keys_in_env")
class TestAudit:
    def history(self, sandbox: SandboxServer, tmp_path: Path, as_user: Switch) -> tuple[Path, str]:
        job = write_job(tmp_path / "job.toml", sandbox.url)
        run_id = approved_by_bob(tmp_path, job, as_user)
        assert run("run", "--plan", run_id, "--job", job, "--out", tmp_path / "o.csv") == 1
        return job, run_id

    def test_verify_passes_on_a_normal_history(
        self, sandbox: SandboxServer, tmp_path: Path, as_user: Switch
    ) -> None:
        job, _ = self.history(sandbox, tmp_path, as_user)
        assert run("audit", "verify", "--job", job) == 0

    @pytest.mark.parametrize(
        ("statement", "words"),
        [
            ("EDIT ROW 2", "stored plan rows do not hash"),
            ("DELETE FROM decisions", "the stored decision differs or was deleted"),
            (
                "UPDATE audit_chain SET record = replace(record, 'bob', 'mallory') "
                "WHERE kind = 'approval'",
                "its fields do not match its hash",
            ),
            ("DELETE FROM audit_chain WHERE kind = 'approval'", "does not follow the record"),
        ],
    )
    def test_verify_names_the_first_record_edited_behind_its_back(
        self,
        sandbox: SandboxServer,
        tmp_path: Path,
        as_user: Switch,
        capsys: pytest.CaptureFixture[str],
        statement: str,
        words: str,
    ) -> None:
        job, _ = self.history(sandbox, tmp_path, as_user)
        url = os.environ.get("RECONCILE_LEDGER_URL")
        db = open_database(Storage(load_job(job).state_dir, url))
        try:
            if statement == "EDIT ROW 2":  # one row of the stored plan, changed behind its back
                (blob,) = db.rows("SELECT rows FROM plans")[0]
                rows = rows_from_blob(bytes(blob))
                edited = rows.with_columns(
                    pl.when(pl.col("row") == 2)
                    .then(pl.col("request").str.replace("Collect", "Burn"))
                    .otherwise(pl.col("request"))
                    .alias("request")
                )
                db.run("UPDATE plans SET rows = ?", (rows_blob(edited),))
            else:
                db.run(statement)
        finally:
            db.close()
        capsys.readouterr()
        assert run("audit", "verify", "--job", job) == 1
        err = capsys.readouterr().err
        assert words in err.splitlines()[0] or words in err
        assert "record #" in err or "plan of run" in err

    def test_export_per_run_for_auditors(
        self, sandbox: SandboxServer, tmp_path: Path, as_user: Switch
    ) -> None:
        job, run_id = self.history(sandbox, tmp_path, as_user)
        out = tmp_path / "audit.csv"
        assert run("audit", "export", "--job", job, "--since", "2020-01-01", "--out", out) == 0
        with out.open(encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
        real = [r for r in rows if r["dry_run"] == "False"]
        assert len(rows) == 2 and len(real) == 1
        assert (real[0]["maker"], real[0]["approver"], real[0]["plan_run_id"]) == (
            "alice",
            "bob",
            run_id,
        )
        assert "applied 2" in real[0]["counts"] and real[0]["exit_code"] == "1"

    def test_runs_show_prints_the_plan_and_its_requests(
        self,
        sandbox: SandboxServer,
        tmp_path: Path,
        as_user: Switch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        job, run_id = self.history(sandbox, tmp_path, as_user)
        capsys.readouterr()
        assert run("runs", "show", run_id, "--job", job, "--requests") == 0
        out = capsys.readouterr().out
        assert f"plan {run_id}" in out and "maker alice" in out
        assert "approved by bob" in out
        assert "row 2 acme would_apply: PATCH /v1/purchase-histories/ORDTACME00001" in out


@pytest.mark.usefixtures("keys_in_env")
def test_the_python_api(sandbox: SandboxServer, tmp_path: Path, as_user: Switch) -> None:
    """The functions the CLI (and the console) call: approve, reject, approved_plan, verify."""
    job_path = write_job(tmp_path / "job.toml", sandbox.url)
    job = load_job(job_path)
    where = storage_of(job_path)
    as_user("alice")
    first = dry_run(tmp_path, job_path, orders_csv(tmp_path / "in.csv", ROWS))
    with pytest.raises(approval.ApprovalError, match="alice made plan"):
        approval.approve(where, first, user="alice")
    record = approval.approve(where, first, note="ok", user="bob")
    assert record["decision"] == "approved" and record["decided_by"] == "bob"
    cleared = approval.approved_plan(where, first, job, dt.datetime.now(dt.UTC))
    assert cleared.approver == "bob" and cleared.recorded.maker == "alice"
    assert cleared.rows["status"].to_list() == ["would_apply", "would_apply", "invalid"]
    second = dry_run(tmp_path, job_path, orders_csv(tmp_path / "in.csv", ROWS[:1]))
    assert approval.reject(where, second, note="no", user="bob")["decision"] == "rejected"
    assert approval.verify(where) == []


def test_help_lists_the_approval_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """`reconcile --help` names approve, reject and audit."""
    with pytest.raises(SystemExit):
        run("--help")
    out = capsys.readouterr().out
    assert all(command in out for command in ("approve", "reject", "audit"))
