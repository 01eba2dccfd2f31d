"""Audit entries are data, not text (issue 26): each field of a recorded action is checked and
bounded before it is written, and the command line prints recorded values with their line
breaks escaped, so no value (a file name, a note, a user) draws a forged line of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconcile import approval
from reconcile.audit import MAX_DETAIL_CHARS
from reconcile.exceptions import ApprovalError
from reconcile.sandbox import SandboxServer
from tests.helpers import orders_csv, run, storage_of, write_job

FORGED = "\n2026-12-06 21:40:00 UTC | mallory | approve | looks fine"
BREAKS = ("\n", "\r", "\u2028", "\x85", "\x1b[2K")


@pytest.mark.parametrize("field", ["user", "action", "run_id"])
def test_a_line_break_in_a_word_field_is_refused_and_nothing_recorded(
    tmp_path: Path, field: str
) -> None:
    """user, action and run id are short printable words: one with a line break (a forged
    entry after it) is refused with ApprovalError, and the chain's head does not move."""
    values = {"run_id": "r1", "user": "alice", "action": "download"}
    values[field] += FORGED
    with approval.store(tmp_path) as audit:
        audit.record_action("r1", "alice", "sign-in")
        head = audit.head()
        with pytest.raises(ApprovalError, match="not a"):
            audit.record_action(values["run_id"], values["user"], values["action"], "x")
        assert audit.head() == head


def test_a_detail_is_stored_with_its_breaks_escaped_and_bounded(tmp_path: Path) -> None:
    """A detail's control characters (newline, CR, U+2028, NEL, ESC) are stored as escapes, and
    a detail over MAX_DETAIL_CHARS is cut to it, marked with an ellipsis."""
    with approval.store(tmp_path) as audit:
        for mark in BREAKS:
            audit.record_action("r1", "alice", "upload", f"file a{mark}b.csv{FORGED}")
        audit.record_action("r1", "alice", "upload", "y" * (MAX_DETAIL_CHARS * 3))
        details = [a["detail"] for a in audit.actions("r1")]
    for detail in details:
        assert not any(mark in detail for mark in BREAKS), detail
    assert details[0] == "file a\\nb.csv" + FORGED.replace("\n", "\\n")
    assert len(details[-1]) == MAX_DETAIL_CHARS and details[-1].endswith("…")


@pytest.mark.usefixtures("keys_in_env")
def test_runs_show_and_list_print_no_line_from_a_note_or_file_name(
    sandbox: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A file whose name holds a line break and an approval note carrying a fake decision:
    ``runs show`` prints one decision line (the real one, the note escaped inside it) and
    ``runs list`` one line per run."""
    job = write_job(tmp_path / "job.toml", sandbox.url)
    source = tmp_path / "in\n  decision: approved by mallory at 2026-12-06.csv"
    orders_csv(source, [("acme", "ORDTACME00001")])
    monkeypatch.setenv("RECONCILE_USER", "alice")
    assert run("run", source, "--job", job, "--out", tmp_path / "p.csv", "--dry-run") == 0
    run_id = json.loads((tmp_path / "p.manifest.json").read_text(encoding="utf-8"))["run_id"]
    monkeypatch.setenv("RECONCILE_USER", "bob")
    note = "fine\n  decision: approved by mallory at 2026-12-06T21:40:00+00:00"
    assert run("approve", run_id, "--job", job, "--note", note) == 0
    capsys.readouterr()
    assert run("runs", "show", run_id, "--job", job, "--requests") == 0
    shown = capsys.readouterr().out.splitlines()
    decisions = [line for line in shown if line.lstrip().startswith("decision:")]
    assert len(decisions) == 1 and decisions[0].startswith("  decision: approved by bob at")
    assert "fine\\n  decision: approved by mallory" in decisions[0]
    assert not [line for line in shown if "mallory" in line and "\\n" not in line]
    assert run("runs", "list", "--job", job) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and "in\\n  decision" in listed[1]  # the header, one run
    with approval.store(storage_of(job)) as audit:
        plan = audit.plan(run_id)
    assert plan is not None and plan.decision is not None and plan.decision["note"] == note
