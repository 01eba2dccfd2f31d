"""``reconcile runs``: the ledger's runs as a table, and one run as readable text (or JSON)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from reconcile import approval
from reconcile.audit import escaped_text
from reconcile.database import Storage
from reconcile.json_types import as_object
from reconcile.ledger import Ledger, RunRecord


class HistoryLine(RunRecord):
    """A run of the ledger with what its manifest adds for the table."""

    kind: str
    target: str
    maker: str
    approver: object
    plan_run_id: object


COLUMNS = ("STARTED", "RUN ID", "KIND", "TARGET", "EXIT", "MAKER", "APPROVER", "ROWS", "INPUT")


def target_of(base_url: str) -> str:
    """``sandbox`` for a loopback base URL (the local sandbox: a rehearsal, not production),
    else the API's host."""
    host = urlsplit(base_url).hostname or base_url
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return "sandbox" if loopback else host


def _kind(run: RunRecord, manifest: Mapping[str, object]) -> str:
    """``dry run``, ``run``, ``plan run``; with how it ended when not normally: ``(running)``
    (no end yet, its process alive), ``(interrupted)`` (a signal, or its process gone: marked
    by the next ledger open), ``(crashed)`` (exit 3), ``(unusable)`` (exit 2)."""
    kind = "dry run" if run["dry_run"] else "plan run" if manifest.get("plan_run_id") else "run"
    ended = (run.get("counts") or {}).get("ended")
    code = run.get("exit_code")
    if ended:
        return f"{kind} ({ended})"
    if run.get("ended_at") is None:
        return f"{kind} (running)"
    if code is not None and code >= 128:
        return f"{kind} (interrupted)"
    return f"{kind} (crashed)" if code == 3 else kind


def _rows(run: RunRecord) -> str:
    """Counts per status; for a run stopped before its rows were counted, its requests per
    ledger state (``requests: applied 37, in_flight 2``)."""
    counts = run.get("counts") or {}
    if counts.get("ended"):
        requests = as_object(counts.get("requests"))
        return "requests: " + (", ".join(f"{k} {v}" for k, v in requests.items()) or "none")
    per_status = as_object(counts.get("per_status"))
    return ", ".join(f"{k} {v}" for k, v in per_status.items()) or "-"


def history(storage: Storage, limit: int = 50) -> list[HistoryLine]:
    """The newest ``limit`` runs, each a ledger record with its manifest's maker, approver and
    plan (``maker``, ``approver``, ``plan_run_id``), the target and the kind."""
    ledger = Ledger(storage)
    try:
        runs = ledger.runs(limit)
    finally:
        ledger.close()
    with approval.store(storage) as audit:
        manifests: dict[str, Mapping[str, object]] = {
            run["run_id"]: audit.manifest(run["run_id"]) or {} for run in runs
        }
    lines: list[HistoryLine] = []
    for run in runs:
        manifest = manifests[run["run_id"]]
        lines.append(
            {
                **run,
                "kind": _kind(run, manifest),
                "target": target_of(run["base_url"]),
                "maker": str(manifest.get("maker") or run["operator"]),
                "approver": manifest.get("approver"),
                "plan_run_id": manifest.get("plan_run_id"),
            }
        )
    return lines


def table(lines: Iterable[HistoryLine]) -> str:
    """Aligned columns under a header row; the input path last, so a long one never pushes the
    others (and stays one piece to copy)."""
    # A file name or user with a line break must not print a row of its own: each escaped.
    cells: list[tuple[str, ...]] = [
        tuple(
            escaped_text(cell)
            for cell in (
                str(line["started_at"]),
                str(line["run_id"]),
                str(line["kind"]),
                str(line["target"]),
                "-" if line.get("exit_code") is None else str(line["exit_code"]),
                str(line["maker"] or "-"),
                str(line["approver"] or "-"),
                _rows(line),
                str(line["input_path"]),
            )
        )
        for line in lines
    ]
    widths = [max(len(row[i]) for row in [COLUMNS, *cells]) for i in range(len(COLUMNS) - 1)]
    return "\n".join(
        "  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
        for row in [COLUMNS, *cells]
    )


def show_text(run: RunRecord, manifest: Mapping[str, object]) -> list[str]:
    """One run as lines a person reads (``runs show``); recorded values escaped, so none can
    print a line of its own."""
    lines = [
        f"run {run['run_id']}",
        f"  kind       {_kind(run, manifest)}",
        f"  operation  {run['operation']} -> {run['base_url']} ({target_of(run['base_url'])})",
        f"  input      {run['input_path']} (SHA-256 {run['input_sha256']})",
        f"  results    {run.get('results_path') or '-'}",
        f"  started    {run['started_at']} by {run['operator']}",
        f"  ended      {run.get('ended_at') or '- (running)'}",
        f"  exit code  {'-' if run.get('exit_code') is None else run['exit_code']}",
        f"  rows       {_rows(run)}",
    ]
    if manifest.get("error"):
        lines.append(f"  stopped by {manifest['error']}")
    requests = run.get("requests") or {}
    if requests:
        lines.append("  requests   " + ", ".join(f"{k} {v}" for k, v in requests.items()))
    if manifest.get("plan_run_id"):
        lines.append(
            f"  plan       {manifest['plan_run_id']} (SHA-256 {manifest.get('plan_sha256')}), "
            f"maker {manifest.get('maker')}, approver {manifest.get('approver')}"
        )
    return [escaped_text(line) for line in lines]


def as_json(run: RunRecord, manifest: Mapping[str, object], **extra: object) -> str:
    """The run for machines: the ledger's record, its manifest and ``extra`` (plan, checks)."""
    return json.dumps({**run, "manifest": dict(manifest), **extra}, indent=2, default=str)
