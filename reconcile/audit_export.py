"""The auditors' export: one CSV line per run since a date, from the manifests in the chain."""

from __future__ import annotations

import csv
import datetime as dt
import sys
from pathlib import Path
from typing import IO

from reconcile import atomic
from reconcile.audit import AuditStore

COLUMNS = (
    "run_id",
    "started_at",
    "dry_run",
    "operation",
    "base_url",
    "maker",
    "approver",
    "plan_run_id",
    "plan_sha256",
    "input_sha256",
    "counts",
    "exit_code",
)


def export(audit: AuditStore, since: dt.datetime, out: Path | None) -> int:
    """Per run since ``since``: maker, approver, plan and input hashes, counts, exit code;
    to ``out`` (written whole or not at all), or to stdout when ``out`` is None (nothing
    written on disk: works on a full disk). Returns the number of runs written."""
    if out is None:
        return _export(audit, since, sys.stdout)
    with atomic.opened(out, "w", encoding="utf-8-sig", newline="") as handle:
        return _export(audit, since, handle)


def _export(audit: AuditStore, since: dt.datetime, handle: IO[str]) -> int:
    written = 0
    writer = csv.writer(handle)
    writer.writerow(COLUMNS)
    for run_id, manifest in audit.chained_manifests():
        if dt.datetime.fromisoformat(manifest["started_at"]) < since:
            continue
        counts = (manifest.get("counts") or {}).get("per_status", {})
        writer.writerow(
            [
                _safe(run_id),
                manifest["started_at"],
                manifest["dry_run"],
                _safe(manifest["operation"]),
                _safe(manifest["base_url"]),
                _safe(manifest.get("maker") or manifest.get("operator")),
                _safe(manifest.get("approver") or ""),
                _safe(manifest.get("plan_run_id") or ""),
                manifest.get("plan_sha256") or "",
                manifest["input"]["sha256"],
                "; ".join(f"{k} {v}" for k, v in sorted(counts.items())),
                manifest.get("exit_code"),
            ]
        )
        written += 1
    return written


def _safe(value: object) -> str:
    """A cell Excel would run as a formula gets a leading quote (as in results files)."""
    text = str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r", "\n") else text
