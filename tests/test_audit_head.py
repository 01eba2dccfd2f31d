"""A chain head kept outside the database (issue 26): every run prints it, and
``audit verify --head`` tells a chain that still extends it from one rebuilt after a rewrite."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import rfc8785

from reconcile import approval
from reconcile.sandbox import SandboxServer
from tests.helpers import run, storage_of, write_job
from tests.test_approval import Switch, approved_by_bob, as_user

pytestmark = pytest.mark.usefixtures("ledger_backend")

__all__ = ["as_user"]  # the fixture, used by name


def rewrite_first_manifest(job: Path) -> None:
    """What an insider with database access could do: edit the first manifest in the chain and
    recompute every later record's link and hash, so that the chain verifies on its own."""
    with approval.store(storage_of(job)) as audit, audit.db.transaction():
        chain = audit.db.rows(
            "SELECT seq, kind, run_id, record, prev_hash FROM audit_chain ORDER BY seq"
        )
        edited = False
        previous = chain[0][4]
        for seq, kind, run_id, text, _ in chain:
            record = json.loads(text)
            if kind == "manifest" and not edited:
                record = {**record, "operator": "mallory"}
                edited = True
            text = rfc8785.dumps(record).decode()
            # The record hash as the README specifies it, recomputed with any JCS library.
            value = {"kind": kind, "prev_hash": previous, "record": record, "run_id": run_id}
            digest = hashlib.sha256(rfc8785.dumps(value)).hexdigest()
            audit.db.run(
                "UPDATE audit_chain SET record = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (text, previous, digest, seq),
            )
            previous = digest
        assert edited


@pytest.mark.usefixtures("keys_in_env")
def test_the_head_is_printed_and_a_rebuilt_chain_fails_verify_head(
    sandbox: SandboxServer,
    tmp_path: Path,
    as_user: Switch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The manifest, the JSON ``run.summary`` and ``audit export`` carry the chain's head;
    ``audit verify --head`` passes on the unchanged chain, and after an earlier entry is
    rewritten and every later hash recomputed, plain ``verify`` passes but ``--head OLD`` exits
    1 saying the head is not in the chain."""
    job = write_job(tmp_path / "job.toml", sandbox.url)
    run_id = approved_by_bob(tmp_path, job, as_user)
    as_user("carol")
    capsys.readouterr()
    assert run("run", "--plan", run_id, "--job", job, "--out", tmp_path / "a.csv") == 1
    events = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    [summary] = [e for e in events if e["event"] == "run.summary"]
    head = json.loads((tmp_path / "a.manifest.json").read_text())["audit_head"]
    assert summary["audit_head"] == head == approval.chain_head(storage_of(job))
    assert (
        run("audit", "export", "--job", job, "--since", "2000-01-01", "--out", tmp_path / "e.csv")
        == 0
    )
    assert f"audit chain head: {head}" in capsys.readouterr().out

    assert run("audit", "verify", "--job", job, "--head", head) == 0
    assert f"extends head {head}" in capsys.readouterr().out
    rewrite_first_manifest(job)
    assert run("audit", "verify", "--job", job) == 0
    capsys.readouterr()
    assert run("audit", "verify", "--job", job, "--head", head) == 1
    err = capsys.readouterr().err
    assert f"head {head} is not a record of this audit chain" in err
    assert "rewritten or rebuilt" in err
