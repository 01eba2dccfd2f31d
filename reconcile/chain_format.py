"""How an audit chain moves from the legacy hashes to RFC 8785 without breaking ``verify``.

A chain's records up to its first ``format`` record were hashed the legacy way (over the text
``json.dumps`` wrote, :func:`reconcile.hashing.legacy_record_hash`); that record and every one
after it are hashed over RFC 8785 values (:func:`reconcile.hashing.record_hash`). The first
append to a chain whose head is not RFC 8785 (a new chain, or one written by an older version)
chains the ``format`` record first, linked to the old head, so the old records keep verifying
as they were hashed and nothing can be slipped between the two parts.

The ``format`` record also **re-anchors the legacy plans**: a legacy plan hash covers the bytes
polars' ``write_ndjson`` wrote, which a polars upgrade may change. For each legacy plan whose
rows still hash to its recorded SHA-256, the record holds the RFC 8785 hash of the same header
and rows (``legacy_plans``: run id -> hash); ``verify`` checks those plans by that hash from
then on, whatever polars writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from reconcile.database import Database
from reconcile.hashing import (
    canonical_plan_hash,
    is_canonical_plan,
    legacy_plan_hash,
    legacy_record_hash,
    record_hash,
)
from reconcile.ledger import now_iso
from reconcile.plan_store import rows_from_blob
from reconcile.version import __version__

if TYPE_CHECKING:
    import polars as pl

FORMAT_KIND = "format"

#: What a ``format`` record says, besides when, by which version and the anchored plans.
FORMAT = {
    "canonical_json": "RFC 8785",
    "record_hash": "sha256(JCS({kind, prev_hash, record, run_id}))",
    "plan_hash": "sha256(JCS({header, rows}))",
}

Head = tuple[str, str, str, str, str]
"""A chain record as read: kind, run id, record text, prev_hash, hash."""


def is_canonical_head(head: Head | None) -> bool:
    """Whether the chain's newest record is hashed over RFC 8785 values."""
    if head is None:
        return False
    kind, run_id, text, prev_hash, stored = head
    return record_hash(prev_hash, kind, run_id, json.loads(text)) == stored


def anchors(db: Database) -> dict[str, str]:
    """Every legacy plan's RFC 8785 hash, as the chain's ``format`` records re-anchored them."""
    found: dict[str, str] = {}
    for (text,) in db.rows(
        "SELECT record FROM audit_chain WHERE kind = ? ORDER BY seq", (FORMAT_KIND,)
    ):
        found.update(json.loads(text).get("legacy_plans") or {})
    return found


def format_record(db: Database) -> dict[str, object]:
    """The ``format`` record to chain now: the legacy plans not yet anchored whose rows still
    hash to their recorded SHA-256, each with its RFC 8785 hash (a plan that does not is left
    out: ``verify`` keeps reporting it by its legacy hash)."""

    done = anchors(db)
    legacy: dict[str, str] = {}
    for run_id, text, recorded in db.rows("SELECT run_id, header, plan_sha256 FROM plans"):
        header = json.loads(text)
        if is_canonical_plan(header) or run_id in done:
            continue
        found = db.one("SELECT rows FROM plans WHERE run_id = ?", (run_id,))
        assert found is not None
        rows = rows_from_blob(bytes(found[0]))
        if legacy_plan_hash(header, rows) == recorded:
            legacy[str(run_id)] = canonical_plan_hash(header, rows)
    return {**FORMAT, "at": now_iso(), "tool_version": __version__, "legacy_plans": legacy}


def link_problem(where: str, canonical: bool, row: Head, record: object) -> str | None:
    """What is wrong with one record's hash, in the form its place in the chain demands."""
    kind, run_id, text, prev_hash, stored = row
    if canonical:
        if record_hash(prev_hash, kind, run_id, record) == stored:
            return None
        if legacy_record_hash(prev_hash, kind, run_id, text) == stored:
            return (
                f"{where}: hashed the legacy way after the chain moved to RFC 8785 (written "
                "by a reconcile from before RFC 8785 hashing, or forged). Fix: run one "
                "version of reconcile on every host that shares this ledger"
            )
    elif legacy_record_hash(prev_hash, kind, run_id, text) == stored:
        return None
    return f"{where}: its fields do not match its hash (edited)"


def plan_matches(
    header: Mapping[str, object], rows: pl.DataFrame, recorded: str, anchor: str | None
) -> bool:
    """Whether the stored rows hash as the chain says: an RFC 8785 plan by its own hash, a
    re-anchored legacy plan by its anchor, any other legacy plan by its legacy hash."""
    if is_canonical_plan(header):
        return canonical_plan_hash(header, rows) == recorded
    if anchor is not None:
        return canonical_plan_hash(header, rows) == anchor
    return legacy_plan_hash(header, rows) == recorded
