"""A note over audit.MAX_NOTE_CHARS (2,000 characters) is refused with a clear message and
nothing is recorded, whether it comes through the command line, the Python API or the console
(issue 26); a note of exactly the limit is recorded whole, never cut."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconcile import approval
from reconcile.audit import MAX_NOTE_CHARS
from reconcile.database import Storage
from reconcile.exceptions import ApprovalError, NoteError
from reconcile.sandbox import SandboxServer
from tests.console import RunningConsole, check_file, csrf_of
from tests.helpers import SAMPLE, orders_csv, run, storage_of, write_job

TOO_LONG = "n" * (MAX_NOTE_CHARS + 1)
AT_THE_LIMIT = "k" * MAX_NOTE_CHARS


def _head(storage: Storage) -> str:
    with approval.store(storage) as audit:
        return audit.head()


def _submitted_plan(
    tmp_path: Path, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, str]:
    """Alice dry-runs a file on the command line (which submits its plan): job and run id."""
    job = write_job(tmp_path / "job.toml", sandbox.url)
    monkeypatch.setenv("RECONCILE_USER", "alice")
    source = orders_csv(tmp_path / "in.csv", [("acme", "ORDTACME00001")])
    assert run("run", source, "--job", job, "--out", tmp_path / "plan.csv", "--dry-run") == 0
    manifest = json.loads((tmp_path / "plan.manifest.json").read_text(encoding="utf-8"))
    return job, str(manifest["run_id"])


@pytest.mark.usefixtures("keys_in_env")
def test_the_command_line_refuses_a_long_note_and_records_nothing(
    sandbox: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """approve, reject and withdraw with a 2,001-character note exit 2 naming the length and
    the limit; the audit chain's head does not move and the plan stays submitted and
    undecided; an approval with a note of exactly 2,000 characters is recorded whole."""
    job, run_id = _submitted_plan(tmp_path, sandbox, monkeypatch)
    storage = storage_of(job)
    before = _head(storage)
    capsys.readouterr()
    monkeypatch.setenv("RECONCILE_USER", "alice")
    assert run("withdraw", run_id, "--job", job, "--note", TOO_LONG) == 2
    monkeypatch.setenv("RECONCILE_USER", "bob")
    for verb in ("approve", "reject"):
        assert run(verb, run_id, "--job", job, "--note", TOO_LONG) == 2, verb
    err = capsys.readouterr().err
    assert err.count("reconcile: the note has 2,001 characters, over the 2,000 a note may") == 3
    assert TOO_LONG not in err
    assert _head(storage) == before
    with approval.store(storage) as audit:
        plan, standing = audit.plan(run_id), audit.standing(run_id)
    assert plan is not None and plan.decision is None
    assert standing is not None and standing[0] == "submission"
    assert run("approve", run_id, "--job", job, "--note", AT_THE_LIMIT) == 0
    with approval.store(storage) as audit:
        decided = audit.plan(run_id)
    assert decided is not None and decided.decision is not None
    assert decided.decision["note"] == AT_THE_LIMIT
    assert sandbox.state.requests == []  # deciding sends nothing


@pytest.mark.usefixtures("keys_in_env")
def test_the_python_api_raises_note_error_and_records_nothing(
    sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """approval.approve / reject / withdraw raise NoteError (an ApprovalError, so callers that
    catch those keep working) before anything is written."""
    job, run_id = _submitted_plan(tmp_path, sandbox, monkeypatch)
    storage = storage_of(job)
    before = _head(storage)
    with pytest.raises(NoteError, match="2,001 characters"):
        approval.approve(storage, run_id, note=TOO_LONG, user="bob")
    with pytest.raises(ApprovalError, match="shorten the note"):
        approval.reject(storage, run_id, note=TOO_LONG, user="bob")
    with pytest.raises(NoteError, match="nothing was recorded"):
        approval.withdraw(storage, run_id, note=TOO_LONG, user="alice")
    assert _head(storage) == before


def test_the_console_answers_400_for_a_long_note_and_records_nothing(
    running: RunningConsole, sandbox: SandboxServer
) -> None:
    """In the console an approval or a rejection with a 2,001-character note is 400 with the
    reason; no decision, no audit entry, nothing sent; the same approval with a short note
    then goes through (the plan was left as it was)."""
    alice = running.client("alice")
    run_id = check_file(alice, SAMPLE / "purchase-history.csv")
    alice.post(f"/runs/{run_id}/submit", data={"csrf_token": csrf_of(alice.get("/new").text)})
    bob = running.client("bob")
    token = csrf_of(bob.get(f"/runs/{run_id}").text)
    with approval.store(running.job.storage) as audit:
        before = audit.head()  # after bob's sign-in, which is recorded
    for verb in ("approve", "reject"):
        answer = bob.post(f"/runs/{run_id}/{verb}", data={"csrf_token": token, "note": TOO_LONG})
        assert answer.status_code == 400, verb
        assert "The note has 2,001 characters, over the 2,000 a note may have" in answer.text
        assert TOO_LONG not in answer.text
    with approval.store(running.job.storage) as audit:
        plan, actions, head = audit.plan(run_id), audit.actions(run_id), audit.head()
    assert plan is not None and plan.decision is None
    assert head == before
    assert [a["action"] for a in actions] == ["upload", "check", "submit"]
    assert sandbox.state.requests == []
    assert "Up to 2,000 characters" in bob.get(f"/runs/{run_id}").text
    answer = bob.post(f"/runs/{run_id}/approve", data={"csrf_token": token, "note": "ok"})
    assert answer.status_code == 303
