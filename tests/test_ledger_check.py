"""Exit 3 names its cause (issue 27 point 4): a damaged ledger says so and points to the new
``reconcile ledger check``, which reports sound (exit 0) or damaged (exit 3) and what to do."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import pytest

from reconcile import crash
from reconcile.database import LedgerDamaged
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from tests.helpers import GENERATED, orders_csv, run, write_job


def _applied_ledger(sandbox: SandboxServer, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A real run of every generated order of acme and globex: (job, input, ledger file), the
    WAL folded into the file so that the damage below hits pages a run reads."""
    rows = [(c, order_id(c, n)) for n in range(GENERATED) for c in ("acme", "globex")]
    source = orders_csv(tmp_path / "in.csv", rows)
    job = write_job(tmp_path / "job.toml", sandbox.url, rate_per_second=500, concurrency=8)
    assert run("run", source, "--job", job, "--out", tmp_path / "first.csv") == 0
    ledger = tmp_path / "state" / "ledger.sqlite3"
    folded = sqlite3.connect(ledger)
    folded.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    folded.close()
    return job, source, ledger


def _damage_the_middle(ledger: Path) -> None:
    """Overwrite the middle half of the file with garbage (a disk or a copy gone bad): the
    first pages (the schema) stay, table and index pages are hit."""
    size = ledger.stat().st_size
    assert size > 64 * 1024, "the ledger must span many pages for the test to mean it"
    with ledger.open("r+b") as handle:
        handle.seek(size // 4)
        handle.write(os.urandom(size // 2))


@pytest.mark.usefixtures("keys_in_env")
def test_a_damaged_ledger_stops_the_run_naming_the_file_and_ledger_check(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sound ledger checks out (exit 0); garbage in its middle: the next run exits 3 naming
    the file and 'reconcile ledger check', says it will not resume and sends nothing;
    'ledger check' says damaged (exit 3) and what to do."""
    job, source, ledger = _applied_ledger(sandbox, tmp_path)
    assert run("ledger", "check", "--job", job) == 0
    assert f"ledger {ledger}: sound (PRAGMA integrity_check: ok)" in capsys.readouterr().out
    sent = len(sandbox.state.requests)

    _damage_the_middle(ledger)
    assert run("run", source, "--job", job, "--out", tmp_path / "second.csv") == 3
    err = capsys.readouterr().err
    assert f"the ledger {ledger} is damaged" in err
    assert "reconcile ledger check" in err and "will NOT resume" in err
    assert len(sandbox.state.requests) == sent

    assert run("ledger", "check", "--state-dir", tmp_path / "state") == 3
    out = capsys.readouterr().out
    assert f"ledger {ledger}: DAMAGED" in out
    assert "Keep a copy of" in out and ".recover" in out


def test_ledger_check_without_a_ledger_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No ledger in the folder: exit 2 saying where it looked, not 'sound'."""
    assert run("ledger", "check", "--state-dir", tmp_path) == 2
    assert f"no ledger at {tmp_path / 'ledger.sqlite3'}" in capsys.readouterr().err


def test_ledger_check_on_postgres(postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A PostgreSQL ledger with reconcile's schema: connected, every table read, sound."""
    assert run("ledger", "check", "--ledger-url", postgres_url) == 0
    out = capsys.readouterr().out
    assert "sound (" in out and "tables)" in out


def test_exit_3_names_the_cause_and_its_path(capsys: pytest.CaptureFixture[str]) -> None:
    """A full disk (an OSError with its file) and an unexpected bug: the message carries the
    reason and the path, and says what a re-run does; a damaged ledger says it will not."""
    crash.explain(OSError(errno.ENOSPC, "No space left on device", "/srv/results/out.csv"))
    err = capsys.readouterr().err
    assert "the disk is full: /srv/results/out.csv (No space left on device)" in err
    assert "the same command resumes" in err
    crash.explain(ValueError("a bug"))
    assert "ValueError: a bug" in capsys.readouterr().err
    try:
        try:
            raise LedgerDamaged("/srv/state/ledger.sqlite3", "database disk image is malformed")
        except LedgerDamaged as inner:
            raise RuntimeError("while closing") from inner
    except RuntimeError as outer:
        crash.explain(outer)
    err = capsys.readouterr().err
    assert "/srv/state/ledger.sqlite3 is damaged (database disk image is malformed)" in err
    assert "will NOT resume" in err
