"""Hashes that outlive a library upgrade (issue 26): the plan hash and the audit chain are
computed over RFC 8785 values, chains and plans written by the old code keep verifying (and
are re-anchored), and a pending approval survives a new way of writing the same bodies."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile import approval, hashing
from reconcile.audit import GENESIS
from reconcile.database import Storage
from reconcile.operations import purchase_history
from reconcile.plan_store import rows_from_blob
from reconcile.sandbox import SandboxServer
from tests.helpers import orders_csv, run, storage_of, write_job
from tests.test_approval import ROWS, Switch, as_user, dry_run, sandbox_requests

__all__ = ["as_user"]  # the fixture, used by name

HEADER = {
    "run_id": "r1",
    "maker": "zoë",
    "hash_format": "RFC 8785",
    "ttl": 2.0,
    "\ue000": 1,
    "\U0001f600": [True, None],
}
ROWS_OF_PLAN = pl.DataFrame(
    {
        "row": [3, 2],
        "community": ["acme", "acme"],
        "status": ["invalid", "would_apply"],
        "request": [
            None,
            'PATCH /v1/purchase-histories/ORD1 {"redemptionInstructions":"say \\"hi\\"\\n"}',
        ],
        "error": ["purchaseHistoryID: bad\tid", None],
    }
).sort("row")

#: The plan above as RFC 8785 writes it, by hand from the spec: keys sorted by UTF-16 code
#: units (U+1F600 is D83D DE00, before U+E000), 2.0 written 2, the request's JSON text a
#: string whose quotes and backslashes are escaped once more, the tab as \t, no whitespace.
CANONICAL = (
    '{"header":{"hash_format":"RFC 8785","maker":"zoë","run_id":"r1","ttl":2,'
    '"\U0001f600":[true,null],"\ue000":1},'
    '"rows":[{"community":"acme","error":null,'
    r'"request":"PATCH /v1/purchase-histories/ORD1 {\"redemptionInstructions\":\"say \\\"hi\\\"\\n\"}",'
    '"row":2,"status":"would_apply"},'
    r'{"community":"acme","error":"purchaseHistoryID: bad\tid","request":null,"row":3,"status":"invalid"}]}'
).encode()
PLAN_SHA256 = "efce0cb12069cc223f665d3dc9492b12b76c1526df843ac6727083165015bdfc"


def test_the_plan_hash_of_a_fixed_plan_is_the_sha256_of_its_rfc_8785_bytes(
    tmp_path: Path,
) -> None:
    """The plan hash equals the SHA-256 of canonical bytes written out literally from the spec
    (not computed by the code under test), both from the hash function and when the store
    records the plan (which adds ``hash_format`` to the header)."""
    assert hashlib.sha256(CANONICAL).hexdigest() == PLAN_SHA256
    assert hashing.plan_hash(HEADER, ROWS_OF_PLAN) == PLAN_SHA256
    header = {k: v for k, v in HEADER.items() if k != "hash_format"}
    with approval.store(tmp_path) as audit:
        assert audit.record_plan(header, ROWS_OF_PLAN) == PLAN_SHA256
        assert audit.verify() == []


TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), TEXT), TEXT, st.one_of(st.none(), TEXT))))
def test_plan_rows_written_by_polars_are_exactly_rfc_8785(
    rows: list[tuple[str | None, str, str | None]],
) -> None:
    """Whatever the text (control characters, quotes, backslashes, U+2028, astral planes),
    the rows' JCS built with polars expressions, a few rows per slice, hashes as Trail of
    Bits' rfc8785 writes the same plan."""
    frame = pl.DataFrame(
        {
            "row": list(range(2, len(rows) + 2)),
            "community": [c for c, _, _ in rows],
            "status": [s for _, s, _ in rows],
            "request": [r for _, _, r in rows],
            "error": [None] * len(rows),
        },
        schema={
            "row": pl.Int64,
            "community": pl.String,
            "status": pl.String,
            "request": pl.String,
            "error": pl.String,
        },
    )
    header = {"run_id": "r", "hash_format": "RFC 8785"}
    slices = (frame.slice(n, 3) for n in range(0, max(frame.height, 1), 3))
    value = {"header": header, "rows": frame.to_dicts()}
    assert hashing.plan_hash(header, slices) == hashlib.sha256(rfc8785.dumps(value)).hexdigest()


# -- what the old code wrote -------------------------------------------------------------------


def old_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def old_plan_hash(header: dict[str, Any], rows: pl.DataFrame) -> str:
    """The plan hash before RFC 8785: the header's json.dumps line, then polars' NDJSON."""
    digest = hashlib.sha256(old_text(header).encode() + b"\n")
    digest.update(rows.select(hashing.PLAN_COLUMNS).write_ndjson().encode())
    return digest.hexdigest()


def make_legacy(storage: Storage) -> dict[str, str]:
    """Rewrite the ledger as the code before RFC 8785 wrote it: plan headers without
    ``hash_format`` and hashed over NDJSON, no ``format`` record, every chain record hashed as
    sha256(prev \\n kind \\n run_id \\n json.dumps text). Returns each plan's legacy hash."""
    legacy: dict[str, str] = {}
    with approval.store(storage) as audit, audit.db.transaction():
        for run_id, text, blob in audit.db.rows("SELECT run_id, header, rows FROM plans"):
            header = {k: v for k, v in json.loads(text).items() if k != "hash_format"}
            legacy[run_id] = old_plan_hash(header, rows_from_blob(bytes(blob)))
            audit.db.run(
                "UPDATE plans SET header = ?, plan_sha256 = ? WHERE run_id = ?",
                (old_text(header), legacy[run_id], run_id),
            )
        for run_id, text in audit.db.rows("SELECT run_id, record FROM decisions"):
            record = {**json.loads(text), "plan_sha256": legacy[run_id]}
            audit.db.run(
                "UPDATE decisions SET record = ? WHERE run_id = ?", (old_text(record), run_id)
            )
        previous = GENESIS
        chain = audit.db.rows("SELECT seq, kind, run_id, record FROM audit_chain ORDER BY seq")
        for seq, kind, run_id, text in chain:
            if kind == "format":
                audit.db.run("DELETE FROM audit_chain WHERE seq = ?", (seq,))
                continue
            record = {k: v for k, v in json.loads(text).items() if k != "hash_format"}
            if "plan_sha256" in record:
                record["plan_sha256"] = legacy[record.get("plan_run_id") or run_id]
            text = old_text(record)
            digest = hashlib.sha256(f"{previous}\n{kind}\n{run_id}\n{text}".encode()).hexdigest()
            audit.db.run(
                "UPDATE audit_chain SET record = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (text, previous, digest, seq),
            )
            previous = digest
    return legacy


def new_polars_ndjson(monkeypatch: pytest.MonkeyPatch) -> None:
    """A polars that writes the same rows' NDJSON with other bytes (non-ASCII escaped)."""
    original = pl.DataFrame.write_ndjson

    def write(self: pl.DataFrame, file: Any = None) -> Any:
        text = original(self)
        assert isinstance(text, str)
        lines = [json.dumps(json.loads(x)) + "\n" for x in text.splitlines()]
        if file is None:
            return "".join(lines)
        file.write("".join(lines).encode())
        return None

    monkeypatch.setattr(pl.DataFrame, "write_ndjson", write)


pytestmark_flow = pytest.mark.usefixtures("ledger_backend", "keys_in_env")


@pytestmark_flow
def test_a_chain_written_by_the_old_code_verifies_and_is_re_anchored(
    sandbox: SandboxServer,
    tmp_path: Path,
    as_user: Switch,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A chain and an approved plan written by the old code verify as they are; the approval
    still applies (each planned request sent once); the next append chains a ``format``
    record that re-anchors the legacy plan in RFC 8785, so that a polars writing other NDJSON
    bytes, which breaks the legacy plan hash, no longer breaks ``audit verify``. An edit of a
    legacy record is still found."""
    job = write_job(tmp_path / "job.toml", sandbox.url)
    as_user("alice")
    run_id = dry_run(tmp_path, job, orders_csv(tmp_path / "in.csv", ROWS, "Zoë's desk"))
    as_user("bob")
    assert run("approve", run_id, "--job", job) == 0
    storage = storage_of(job)
    legacy = make_legacy(storage)
    assert approval.verify(storage) == []
    with monkeypatch.context() as patched:
        new_polars_ndjson(patched)
        assert any("do not hash" in p for p in approval.verify(storage))  # the risk, shown

    as_user("carol")
    assert run("run", "--plan", run_id, "--job", job, "--out", tmp_path / "a.csv") == 1
    assert len(sandbox_requests(sandbox)) == 2
    manifest = json.loads((tmp_path / "a.manifest.json").read_text())
    assert manifest["plan_sha256"] == legacy[run_id]
    with approval.store(storage) as audit:
        formats = audit.db.rows("SELECT record FROM audit_chain WHERE kind = 'format'")
        blob = audit.db.one("SELECT header, rows FROM plans WHERE run_id = ?", (run_id,))
    assert blob is not None and len(formats) == 1
    rows = rows_from_blob(bytes(blob[1])).to_dicts()
    spec = {"header": json.loads(blob[0]), "rows": rows}
    anchored = json.loads(formats[0][0])["legacy_plans"]
    assert anchored == {run_id: hashlib.sha256(rfc8785.dumps(spec)).hexdigest()}
    assert approval.verify(storage) == []
    with monkeypatch.context() as patched:
        new_polars_ndjson(patched)
        assert approval.verify(storage) == []
    assert run("audit", "verify", "--job", job) == 0

    with approval.store(storage) as audit:
        audit.db.run(
            "UPDATE audit_chain SET record = replace(record, 'alice', 'mallory') "
            "WHERE kind = 'submission'"
        )
    assert any("submission" in p and "edited" in p for p in approval.verify(storage))


@pytestmark_flow
def test_a_plan_submitted_before_the_change_is_approved_and_applied_after(
    sandbox: SandboxServer, tmp_path: Path, as_user: Switch
) -> None:
    """A plan the old code recorded and submitted, still pending, is approved and applied by
    the new code: its decision carries the legacy hash, the rows are sent once, the chain
    verifies."""
    job = write_job(tmp_path / "job.toml", sandbox.url)
    as_user("alice")
    run_id = dry_run(tmp_path, job, orders_csv(tmp_path / "in.csv", ROWS))
    legacy = make_legacy(storage_of(job))
    as_user("bob")
    assert run("approve", run_id, "--job", job) == 0
    with approval.store(storage_of(job)) as audit:
        plan = audit.plan(run_id)
    assert plan is not None and plan.decision is not None
    assert plan.decision["plan_sha256"] == legacy[run_id] == plan.plan_sha256
    as_user("carol")
    assert run("run", "--plan", run_id, "--job", job, "--out", tmp_path / "a.csv") == 1
    assert run("run", "--plan", run_id, "--job", job, "--out", tmp_path / "b.csv") == 2
    assert len(sandbox_requests(sandbox)) == 2
    assert approval.verify(storage_of(job)) == []


def rewritten_bodies(monkeypatch: pytest.MonkeyPatch, change: str | None) -> None:
    """Bodies written otherwise than at the dry run (``json.dumps`` defaults: spaces, ``\\u``
    escapes), as a library upgrade might; ``change``: a value changed as well."""
    original = purchase_history.with_json_object

    def encode(frame: pl.DataFrame, fields: Any, alias: str) -> pl.DataFrame:
        bodies = original(frame, fields, alias).get_column(alias).to_list()
        values = [json.loads(b) for b in bodies]
        if change is not None:
            values = [{**v, "redemptionInstructions": change} for v in values]
        return frame.with_columns(pl.Series(alias, [json.dumps(v) for v in values]))

    monkeypatch.setattr(purchase_history, "with_json_object", encode)


@pytestmark_flow
def test_a_pending_approval_survives_a_new_way_of_writing_the_same_bodies(
    sandbox: SandboxServer,
    tmp_path: Path,
    as_user: Switch,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Approved bodies written ``{"redemptionInstructions":"Zoë's desk"}`` and rebuilt as
    ``{"redemptionInstructions": "Zo\\u00eb's desk"}`` are the same requests: the plan applies,
    each once. A body whose value changed is still refused, nothing sent."""
    job = write_job(tmp_path / "job.toml", sandbox.url)
    as_user("alice")
    source = orders_csv(tmp_path / "in.csv", ROWS, "Zoë's desk")
    first = dry_run(tmp_path, job, source)
    second = dry_run(tmp_path, job, source)
    as_user("bob")
    assert run("approve", first, "--job", job) == 0
    assert run("approve", second, "--job", job) == 0
    as_user("carol")
    with monkeypatch.context() as patched:
        rewritten_bodies(patched, change="Zoë's other desk")
        assert run("run", "--plan", second, "--job", job, "--out", tmp_path / "b.csv") == 2
        assert "differ from approved plan" in capsys.readouterr().err
    assert sandbox_requests(sandbox) == []
    with monkeypatch.context() as patched:
        rewritten_bodies(patched, change=None)
        assert run("run", "--plan", first, "--job", job, "--out", tmp_path / "a.csv") == 1
    sent = sandbox_requests(sandbox)
    assert len(sent) == 2
    assert all(b.startswith('{"redemptionInstructions": "Zo\\u00eb') for _, _, b in sent)


def test_a_record_hashed_the_legacy_way_after_the_format_record_is_reported(
    tmp_path: Path,
) -> None:
    """After the chain moved to RFC 8785, a record hashed the old way (an older version on
    another host, or a forgery) is named by ``verify``; the chain starts with its format
    record."""
    with approval.store(tmp_path) as audit:
        audit.record_action("r1", "alice", "sign-in")
        kinds = [k for (k,) in audit.db.rows("SELECT kind FROM audit_chain ORDER BY seq")]
        assert kinds == ["format", "action"] and audit.verify() == []
        previous = audit.head()
        text = old_text({"user": "bob", "action": "approve", "at": "x", "detail": ""})
        digest = hashlib.sha256(f"{previous}\naction\nr1\n{text}".encode()).hexdigest()
        audit.db.run(
            "INSERT INTO audit_chain (kind, run_id, record, prev_hash, hash) VALUES (?,?,?,?,?)",
            ("action", "r1", text, previous, digest),
        )
        problems = audit.verify()
    assert len(problems) == 1 and "hashed the legacy way after the chain moved" in problems[0]


def test_a_value_with_no_rfc_8785_form_is_a_clear_error(tmp_path: Path) -> None:
    """An integer beyond 2^53 - 1 (or NaN) in a recorded value is refused with a message
    saying why, and nothing is chained."""
    from reconcile.canonical_json import CanonicalJsonError

    with approval.store(tmp_path) as audit:
        with pytest.raises(CanonicalJsonError, match="exceeds safe integer"):
            audit.record_verification("r1", {"reads": 2**60})
        with pytest.raises(CanonicalJsonError, match="not a JSON value"):
            audit.record_verification("r1", {"reads": float("nan")})
        assert audit.db.rows("SELECT kind FROM audit_chain") == []
