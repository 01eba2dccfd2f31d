"""The operator's night (issue 30): a broken night is never quiet, and the end of a run says
what to open and what the exit code means."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from reconcile import exit_codes, run_summary
from reconcile.report import TOP_ERRORS, write_report
from reconcile.results import error_kinds
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from tests.helpers import CREDENTIALS, ROOT, credential_env, orders_csv, run, write_job


def _cli(
    *args: str | Path, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed CLI as cron runs it: stdout and stderr are not terminals (JSON logs)."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "reconcile", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )


def _events(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def _inbox_job(tmp_path: Path, url: str, inbox: str = "inbox/") -> Path:
    return write_job(
        tmp_path / "nightly.toml",
        url,
        input=inbox,
        results_dir="results/",
        archive_dir="archive/",
        settle_seconds=30,
    )


def test_a_missing_inbox_folder_is_exit_2_naming_it(tmp_path: Path) -> None:
    """An inbox path that does not exist (a typo, an unmounted share) is a broken job: exit 2
    naming the folder, not `inbox.empty` and exit 0. The same for a glob's folder."""
    for inbox, missing in (("inbox/", "inbox"), ("drop/*.csv", "drop")):
        job = _inbox_job(tmp_path, "https://api.example.invalid", inbox)
        ran = _cli("run", "--job", job)
        assert ran.returncode == 2, ran.stderr
        assert f"{tmp_path / missing} does not exist" in ran.stderr
        assert "inbox.empty" not in ran.stderr


def test_empty_and_not_ready_inboxes_are_told_apart(tmp_path: Path) -> None:
    """`inbox.empty` only when the folder holds no file; files still being written give a
    warning `inbox.not_ready` (with their number), never `inbox.empty`."""
    (tmp_path / "inbox").mkdir()
    job = _inbox_job(tmp_path, "https://api.example.invalid")
    empty = _cli("run", "--job", job, "--dry-run")
    assert empty.returncode == 0
    assert [e["event"] for e in _events(empty.stderr)] == ["inbox.empty"]
    orders_csv(tmp_path / "inbox" / "fresh.csv", [("acme", order_id("acme", 1))])
    busy = _cli("run", "--job", job, "--dry-run")
    assert busy.returncode == 0
    events = {e["event"]: e for e in _events(busy.stderr)}
    assert "inbox.empty" not in events
    assert events["inbox.not_ready"]["level"] == "warning"
    assert events["inbox.not_ready"]["files"] == 1


def test_a_night_with_failed_rows_logs_its_summary_at_warning(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """`run.summary` is a warning carrying the exit code when a row did not apply (monitoring
    filters on level), and info on a clean night."""
    job = write_job(tmp_path / "job.toml", sandbox.url)
    rows = [("acme", order_id("acme", 1)), ("acme", "ORD404NOTTHERE")]
    source = orders_csv(tmp_path / "in.csv", rows)
    keys = {
        credential_env(credential, community): value
        for community, found in CREDENTIALS.items()
        for credential, value in found.items()
    }
    bad = _cli("run", source, "--job", job, "--out", tmp_path / "bad.csv", env_extra=keys)
    assert bad.returncode == 1, bad.stderr
    summary = next(e for e in _events(bad.stderr) if e["event"] == "run.summary")
    assert summary["level"] == "warning" and summary["exit_code"] == 1
    good_rows = orders_csv(tmp_path / "good.csv", [("acme", order_id("acme", 2))])
    good = _cli("run", good_rows, "--job", job, "--out", tmp_path / "good.out.csv", env_extra=keys)
    assert good.returncode == 0, good.stderr
    summary = next(e for e in _events(good.stderr) if e["event"] == "run.summary")
    assert summary["level"] == "info" and summary["exit_code"] == 0


def _outcomes(errors: list[str | None], status: str = "invalid") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "__row": list(range(2, 2 + len(errors))),
            "community": ["acme"] * len(errors),
            "status": [status if e else "would_apply" for e in errors],
            "error": errors,
        }
    )


def test_the_end_of_a_run_names_the_files_the_first_errors_and_the_exit_code(
    tmp_path: Path,
) -> None:
    """Under the counts: results, errors file and report paths (one line each, so they can be
    copied), the first three rows that did not apply, and what the exit code means; the
    approval hint only for a job with an approval step, naming that job file."""
    out = tmp_path / "a very long folder name that a terminal would wrap" / "out.csv"
    out.parent.mkdir()
    for suffix in ("errors.csv", "report.html"):
        out.with_name(f"out.{suffix}").write_text("x")
    outcomes = _outcomes([None, "Community: is empty: fill it in", "x: bad", "y: bad", "z: bad"])
    manifest = {"run_id": "R1", "dry_run": True, "plan_sha256": "ab", "exit_code": 1}
    lines = run_summary.screen_lines(outcomes, out, manifest)
    assert lines[:3] == [
        f"results: {out}",
        f"errors:  {out.with_name('out.errors.csv')}",
        f"report:  {out.with_name('out.report.html')}",
    ]
    assert lines[3] == "first of 4 rows that did not apply:"
    assert lines[4] == "  row 3 (acme) invalid: Community: is empty: fill it in"
    assert len([line for line in lines if line.startswith("  row ")]) == 3
    assert lines[-1] == exit_codes.meaning(1) and "errors file" in lines[-1]
    assert not any("approve" in line for line in lines)
    job = tmp_path / "jobs" / "nightly.toml"
    hinted = run_summary.screen_lines(outcomes, out, manifest, approval_job=job)
    assert (
        hinted[-1]
        == f"plan recorded: a colleague approves it with 'reconcile approve R1 --job {job}'"
    )


def test_the_terminal_summary_of_a_dry_run_without_approval_has_no_approval_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real dry run on a terminal: the table, the files and the exit line; no approval hint
    (the job has no approval step), and with `require_approval` the hint names the job file."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    source = orders_csv(tmp_path / "in.csv", [("acme", order_id("acme", 1)), ("nobody", "x")])
    plain = write_job(tmp_path / "plain.toml")
    assert run("run", source, "--job", plain, "--out", tmp_path / "p.csv", "--dry-run") == 1
    shown = capsys.readouterr().out
    assert f"results: {tmp_path / 'p.csv'}" in shown
    assert f"errors:  {tmp_path / 'p.errors.csv'}" in shown
    assert "exit 1: some row did not apply" in shown
    assert "approve" not in shown
    (tmp_path / "gated").mkdir()
    gated = write_job(tmp_path / "gated" / "gated.toml", require_approval=True)
    assert run("run", source, "--job", gated, "--out", tmp_path / "g.csv", "--dry-run") == 1
    shown = capsys.readouterr().out
    assert "reconcile approve " in shown and f"--job {gated}'" in shown
    assert "--job JOB" not in shown


def test_error_kinds_are_grouped_by_rule_not_by_cell_value() -> None:
    """Three bad dates with different values are one kind; a two-problem message counts under
    both of its kinds; row lists do not split a rule either."""
    kinds = error_kinds(
        _outcomes(
            [
                "Date: '2026-12-31' is written year first",
                "Date: '2025-01-02' is written year first",
                "Date: '1999-09-09' is written year first; Code: is empty: fill it in",
                "the same 'ID' are on rows 3, 4: keep one",
                "the same 'ID' are on rows 7, 8: keep one",
            ]
        )
    )
    assert kinds.select("kind", "rows").rows() == [
        ("Date: '…' is written year first", 3),
        ("the same 'ID' are on rows …: keep one", 2),
        ("Code: is empty: fill it in", 1),
    ]
    assert kinds.get_column("examples").to_list()[0] == [2, 3, 4]


def test_the_report_folds_error_kinds_after_ten_and_lists_them_all_below(tmp_path: Path) -> None:
    """With more kinds than the top list holds, the report says "and N more kinds" and has a
    table of every kind; with fewer, no such table."""
    many = [f"Column {i}: is empty: fill it in" for i in range(TOP_ERRORS + 3)]
    manifest = {
        "run_id": "R1",
        "operation": "purchase-history",
        "dry_run": True,
        "input": {"path": "in.csv"},
        "started_at": "a",
        "ended_at": "b",
        "exit_code": 1,
    }
    report = tmp_path / "report.html"
    write_report(report, manifest, _outcomes(many), [])
    html = report.read_text()
    assert "and 3 more kinds" in html
    every = html.split("id='all-errors'", 1)[1]
    assert all(f"Column {i}: is empty" in every for i in range(TOP_ERRORS + 3))
    write_report(report, manifest, _outcomes(many[:2]), [])
    assert "all-errors" not in report.read_text() and "more kinds" not in report.read_text()


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["runs", "show"], ["run_id", "--requests", "--json"]),
        (["runs", "list"], ["--json", "--state-dir"]),
        (["audit", "verify"], ["--head", "Recompute"]),
        (["audit", "export"], ["--since", "--out"]),
        (["ledger", "copy"], ["--to", "SQLite ledger"]),
        (["ledger", "migrate"], ["running it again is safe", "--ledger-url"]),
        (["users", "add"], ["--role", "approves or rejects", "standard input"]),
        (["users", "disable"], ["sessions"]),
    ],
)
def test_every_sub_command_has_its_own_help(
    command: list[str], expected: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`reconcile runs show --help` (and the others) print that action's usage and options,
    not the parent command's."""
    with pytest.raises(SystemExit) as exited:
        run(*command, "--help")
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"usage: reconcile {' '.join(command)} ")
    assert all(text in shown for text in expected), shown


def test_run_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """`run --help` lists every exit code with its meaning."""
    with pytest.raises(SystemExit):
        run("run", "--help")
    shown = capsys.readouterr().out
    for code, meaning in exit_codes.MEANINGS.items():
        assert f"  {code:<4} {meaning[:30]}" in shown


def test_a_misspelt_job_key_gets_a_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rate_per_secnd` in a job file: exit 2 with "did you mean 'rate_per_second'?"; in a
    community table too."""
    job = tmp_path / "job.toml"
    job.write_text(
        'operation = "purchase-history"\nbase_url = "https://x.example"\nrate_per_secnd = 3\n'
    )
    assert run("run", "in.csv", "--job", job) == 2
    assert "did you mean 'rate_per_second'?" in capsys.readouterr().err
    job.write_text(
        'operation = "purchase-history"\nbase_url = "https://x.example"\n'
        "[communities.acme]\nconcurency = 3\n"
    )
    assert run("run", "in.csv", "--job", job) == 2
    assert "did you mean 'concurrency'?" in capsys.readouterr().err


def test_dry_run_results_in_a_results_folder_are_named_as_dry_runs(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """In a shared results folder a dry run's results say so in their name, so nobody takes
    them for what was sent."""
    (tmp_path / "inbox").mkdir()
    job = _inbox_job(tmp_path, sandbox.url)
    source = orders_csv(tmp_path / "inbox" / "fixes.csv", [("acme", order_id("acme", 1))])
    stamp = time.time() - 120
    os.utime(source, (stamp, stamp))
    assert run("run", "--job", job, "--dry-run") == 0
    names = [p.name for p in (tmp_path / "results").glob("*.results.csv")]
    assert len(names) == 1 and names[0].endswith(".dry-run.results.csv"), names


def test_the_systemd_unit_fails_on_rows_that_did_not_apply() -> None:
    """The shipped unit no longer treats exit 1 as success: a night with failed rows shows in
    `systemctl --failed` (and the CronJob's pods fail on any exit but 0)."""
    unit = (ROOT / "jobs" / "reconcile-nightly.service").read_text()
    settings = [line for line in unit.splitlines() if not line.startswith("#")]
    assert not any(line.startswith("SuccessExitStatus") for line in settings)
    cronjob = (ROOT / "deploy" / "cronjob.yaml").read_text()
    assert "restartPolicy: Never" in cronjob and "|| true" not in cronjob


def test_runs_show_names_a_row_without_community_in_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A planned row whose community cell is empty is listed as `(no community)` by
    `runs show --requests`, never as `None`."""
    source = orders_csv(tmp_path / "in.csv", [("acme", order_id("acme", 1)), ("", "ORDX")])
    job = write_job(tmp_path / "job.toml")
    assert run("run", source, "--job", job, "--out", tmp_path / "o.csv", "--dry-run") == 1
    run_id = json.loads((tmp_path / "o.manifest.json").read_text())["run_id"]
    capsys.readouterr()
    assert run("runs", "show", run_id, "--job", job, "--requests") == 0
    shown = capsys.readouterr().out
    assert "row 3 (no community) invalid: community: is empty" in shown
    assert "None" not in shown


def test_a_key_of_only_spaces_is_unset_for_the_pre_flight(
    sandbox: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A keys file line `KEY=   ` is as good as no key: exit 2 naming the variable, nothing
    sent (it used to send acme and fail globex with 401s)."""
    for community, found in CREDENTIALS.items():
        for credential, value in found.items():
            monkeypatch.setenv(credential_env(credential, community), value)
    monkeypatch.setenv(credential_env("api_key", "globex"), "   ")
    job = write_job(tmp_path / "job.toml", sandbox.url)
    rows = [("acme", order_id("acme", 1)), ("globex", order_id("globex", 1))]
    source = orders_csv(tmp_path / "in.csv", rows)
    assert run("run", source, "--job", job, "--out", tmp_path / "o.csv") == 2
    assert credential_env("api_key", "globex") in capsys.readouterr().err
    assert sandbox.state.requests == []


def test_results_that_would_overwrite_the_input_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--out` naming the input (or an edited errors file run with `--out` beside it) is
    exit 2 before anything, and the analyst's file is left as it was."""
    source = orders_csv(tmp_path / "same.csv", [("acme", order_id("acme", 1))])
    before = source.read_bytes()
    job = write_job(tmp_path / "job.toml")
    assert run("run", source, "--job", job, "--out", source, "--dry-run") == 2
    assert "is the input file" in capsys.readouterr().err
    fixed = tmp_path / "x.errors.csv"
    fixed.write_bytes(before)
    assert run("run", fixed, "--job", job, "--out", tmp_path / "x.csv", "--dry-run") == 2
    assert source.read_bytes() == before and fixed.read_bytes() == before


@pytest.mark.usefixtures("keys_in_env")
def test_a_base_url_in_other_case_is_the_same_target_for_the_ledger(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """`HTTP://127.0.0.1:PORT/` and `http://127.0.0.1:PORT` are one API: a row applied through
    one spelling is `already_applied` through the other, nothing sent again."""
    source = orders_csv(tmp_path / "in.csv", [("acme", order_id("acme", 1))])
    shouted = write_job(tmp_path / "a.toml", sandbox.url.upper() + "/")
    assert run("run", source, "--job", shouted, "--out", tmp_path / "a.csv") == 0
    plain = write_job(tmp_path / "b.toml", sandbox.url)
    assert run("run", source, "--job", plain, "--out", tmp_path / "b.csv") == 0
    statuses = pl.read_csv(tmp_path / "b.csv", infer_schema=False).get_column("status")
    assert statuses.to_list() == ["already_applied"]
    assert len(sandbox.state.requests) == 1
