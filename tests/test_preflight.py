"""Pre-flight (issue 27 point 3, issue 30): what a run will write or need is checked before the
first request; every problem in one message, exit 2, the sandbox's request log empty."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconcile import api
from reconcile.job import load_job
from reconcile.preflight import PreflightError
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from tests.helpers import credential_env, orders_csv, run, write_job

ROWS = [("acme", order_id("acme", 1)), ("globex", order_id("globex", 1))]


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A read-only folder that stops root too: a tmpfs mounted ``ro`` (chmod does not stop
    root, as the tests run). Skipped, saying why, where mounting is not allowed."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here ({mounted.stderr.strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def _errors(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err


@pytest.mark.usefixtures("keys_in_env")
def test_a_results_folder_that_is_a_file_stops_the_run_before_sending(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out`` under a file: exit 2 naming the file in the way; nothing sent, no run
    recorded in the ledger."""
    (tmp_path / "results").write_text("a file where a folder should be")
    job = write_job(tmp_path / "job.toml", sandbox.url)
    out = tmp_path / "results" / "tonight" / "out.csv"
    code = run("run", orders_csv(tmp_path / "in.csv", ROWS), "--job", job, "--out", out)
    assert code == 2
    err = _errors(capsys)
    assert f"{tmp_path / 'results'} is a file, not a folder" in err
    assert "nothing was sent" in err
    assert sandbox.state.requests == []
    assert not (tmp_path / "state" / "ledger.sqlite3").exists()


@pytest.mark.usefixtures("keys_in_env")
def test_a_read_only_results_folder_stops_the_run_before_sending(
    sandbox: SandboxServer, tmp_path: Path, read_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Results in a read-only folder: exit 2 naming it and the reason, nothing sent (before,
    all requests went out and the run then crashed writing its results)."""
    job = write_job(tmp_path / "job.toml", sandbox.url)
    out = read_only / "out.csv"
    code = run("run", orders_csv(tmp_path / "in.csv", ROWS), "--job", job, "--out", out)
    assert code == 2
    err = _errors(capsys)
    assert f"{read_only}: cannot be used: cannot be written (Read-only file system)" in err
    assert "results file out.csv, errors file out.errors.csv" in err
    assert sandbox.state.requests == []


@pytest.mark.usefixtures("keys_in_env")
def test_a_read_only_state_dir_is_exit_2_before_anything(
    sandbox: SandboxServer, tmp_path: Path, read_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ledger's folder cannot be written: exit 2 naming state_dir, not exit 3 with a
    generic line; nothing sent, no results written."""
    job = write_job(tmp_path / "job.toml", sandbox.url, state_dir=str(read_only))
    out = tmp_path / "out.csv"
    code = run("run", orders_csv(tmp_path / "in.csv", ROWS), "--job", job, "--out", out)
    assert code == 2
    err = _errors(capsys)
    assert f"state_dir {read_only}: cannot be used" in err and "Read-only file system" in err
    assert sandbox.state.requests == []
    assert not out.exists()


def test_every_problem_is_in_one_message(
    sandbox: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    keys_in_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A results folder under a file, a state dir under a file and two unset variables: one
    run, one message naming all four (one fix-and-retry), the JSON log's event too."""
    monkeypatch.delenv(credential_env("api_key", "acme"))
    monkeypatch.setenv(credential_env("api_key", "globex"), "")
    (tmp_path / "blocker").write_text("x")
    job = write_job(tmp_path / "job.toml", sandbox.url, state_dir=str(tmp_path / "blocker" / "s"))
    out = tmp_path / "blocker" / "out.csv"
    code = run("run", orders_csv(tmp_path / "in.csv", ROWS), "--job", job, "--out", out)
    assert code == 2
    err = _errors(capsys)
    assert "(4 problem(s))" in err
    assert "results folder (for the results file out.csv" in err
    assert f"state_dir {tmp_path / 'blocker' / 's'}: cannot be used" in err
    assert "RECONCILE_TEST_API_KEY_ACME (api_key) is unset, empty or only spaces" in err
    assert "RECONCILE_TEST_API_KEY_GLOBEX (api_key) is unset, empty or only spaces" in err
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(e["event"] == "run.unusable" for e in logged)
    assert keys_in_env["globex"] not in err
    assert sandbox.state.requests == []


@pytest.mark.usefixtures("keys_in_env")
def test_a_library_run_is_preflighted_too(
    sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console and programs call the pipeline, not the CLI: the same check stops them
    (PreflightError, a ConfigError) before anything is sent."""
    monkeypatch.delenv(credential_env("api_key", "globex"))
    job = load_job(write_job(tmp_path / "job.toml", sandbox.url))
    source = orders_csv(tmp_path / "in.csv", ROWS)
    with pytest.raises(PreflightError) as raised:
        api.run(source, job, tmp_path / "out.csv")
    assert raised.value.problems == [
        "community globex: environment variable RECONCILE_TEST_API_KEY_GLOBEX (api_key) is "
        "unset, empty or only spaces. Fix: export it (the keys file cron sources)"
    ]
    assert sandbox.state.requests == []


def test_a_dry_run_needs_no_keys(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Credentials are checked for real runs only: a dry run sends nothing, needs no key."""
    job = write_job(tmp_path / "job.toml", sandbox.url)
    out = tmp_path / "out.csv"
    source = orders_csv(tmp_path / "in.csv", ROWS)
    assert run("run", source, "--job", job, "--out", out, "--dry-run") == 0
    assert out.exists()


@pytest.mark.usefixtures("keys_in_env")
def test_a_missing_inbox_folder_is_exit_2_not_an_empty_inbox(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``input = "inbox/"`` with no such folder (a typo, an unmounted share): exit 2 naming
    it, never "inbox.empty" and exit 0; a folder that is there and empty stays exit 0; a
    results_dir under a file is exit 2 even with nothing to run."""
    job = write_job(tmp_path / "nightly.toml", sandbox.url, input="inbox/")
    assert run("run", "--job", job) == 2
    err = _errors(capsys)
    assert f"the folder {tmp_path / 'inbox'} does not exist" in err
    assert "inbox.empty" not in err
    (tmp_path / "inbox").mkdir()
    assert run("run", "--job", job) == 0
    assert "inbox.empty" in _errors(capsys)
    glob_job = write_job(tmp_path / "glob.toml", sandbox.url, input="drop/*.csv")
    assert run("run", "--job", glob_job) == 2
    assert f"the folder {tmp_path / 'drop'} does not exist" in _errors(capsys)
    (tmp_path / "taken").write_text("a file")
    blocked = write_job(
        tmp_path / "blocked.toml", sandbox.url, input="inbox/", results_dir="taken/results/"
    )
    assert run("run", "--job", blocked) == 2
    assert f"results_dir {tmp_path / 'taken' / 'results'}: cannot be used" in _errors(capsys)
