"""Where a read-back is kept, wherever it was made (``run --verify``, ``reconcile verify``, the
console's "Verify now"): the verify file, a ``verification`` record in the audit chain (who,
when, counts, reads, the SHA-256 of the verify file), the run's HTML report and the terminal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NotRequired, TypedDict, cast

import polars as pl

from reconcile import approval, report
from reconcile.columns import ROW
from reconcile.results import write_csvs_atomic
from reconcile.table import RESULT_PREFIX

if TYPE_CHECKING:
    from reconcile.database import Storage
    from reconcile.run_types import Prepared
    from reconcile.verification import Verification

#: Rows a read-back found the API does not hold as written.
WRONG = ("mismatch", "not_found")
#: The audit record keeps this many of them (the verify file, whose hash it has, keeps all).
RECORDED_WRONG_ROWS = 100
#: The terminal lists this many.
PRINTED_WRONG_ROWS = 10


class WrongRow(TypedDict):
    """A row read back that the API does not hold as written."""

    row: int
    community: str | None
    verify_status: str
    verify_detail: str | None


class InputFile(TypedDict):
    path: str
    sha256: str


class VerificationRecord(TypedDict):
    """A ``verification`` record of the audit chain (what :func:`record` chains)."""

    run_id: str
    by: str
    at: str
    source: str
    input: InputFile
    reads: int
    sample_percent: float | None
    counts: dict[str, int]
    exit_code: int
    # Records chained before the mismatching rows were kept have neither.
    wrong_rows: NotRequired[int]
    wrong: NotRequired[list[WrongRow]]
    verify_file: str
    verify_sha256: str


@dataclasses.dataclass(frozen=True, slots=True)
class Written:
    """A verify file written, and what it says."""

    path: Path
    counts: dict[str, int]
    """Rows per ``verify_status``."""
    wrong: list[WrongRow]
    """The first :data:`RECORDED_WRONG_ROWS` rows in :data:`WRONG`: ``row``, ``community``,
    ``verify_status``, ``verify_detail``."""
    wrong_rows: int


def write_verify_file(prepared: Prepared, verdicts: pl.DataFrame, out: Path) -> Written:
    """The input's columns and the verdicts of the rows read back (``row`` and the verdict
    columns prefixed where the input has a column of that name), as results files are written:
    whole or not at all, formula-like cells neutralised."""
    table = prepared.table.frame
    judged = verdicts.with_columns(pl.col(ROW).cast(table.schema[ROW]))
    frame = table.join(judged, on=ROW, how="inner")
    inputs = set(table.columns)
    names = {c: f"{RESULT_PREFIX}{c}" if c in inputs else c for c in judged.columns if c != ROW}
    names[ROW] = f"{RESULT_PREFIX}row" if "row" in inputs else "row"
    verdict_columns = [c for c in names if c != ROW]
    write_csvs_atomic({out: frame.select(*table.columns, *verdict_columns).rename(names)})
    counts = dict(judged.group_by("verify_status").len().sort("verify_status").iter_rows())
    communities = prepared.validated.select(ROW, "community")
    wrong = judged.filter(pl.col("verify_status").is_in(WRONG)).join(
        communities.with_columns(pl.col(ROW).cast(judged.schema[ROW])), on=ROW, how="left"
    )
    listed = wrong.sort(ROW).head(RECORDED_WRONG_ROWS).rename({ROW: "row"})
    columns = listed.select("row", "community", "verify_status", "verify_detail")
    return Written(
        out,
        {str(k): int(v) for k, v in counts.items()},
        [
            WrongRow(row=row, community=community, verify_status=status, verify_detail=detail)
            for row, community, status, detail in columns.iter_rows()
        ],
        wrong.height,
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record(
    storage: Storage,
    run_id: str,
    written: Written,
    result: Verification,
    *,
    user: str,
    source: str,
    input_path: Path,
    input_sha256: str,
    sample_percent: float | None = None,
    report_path: Path | None = None,
) -> VerificationRecord:
    """Chain the verification (``run_id`` "" when a file was verified with no run) and, when
    the run's report exists, put the verification in it. Returns the record."""
    entry: VerificationRecord = {
        "run_id": run_id,
        "by": user,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source": source,
        "input": {"path": str(input_path), "sha256": input_sha256},
        "reads": int(result.reads),
        "sample_percent": sample_percent,
        "counts": written.counts,
        "exit_code": int(result.exit_code),
        "wrong_rows": written.wrong_rows,
        "wrong": written.wrong,
        "verify_file": str(written.path),
        "verify_sha256": file_sha256(written.path),
    }
    with approval.store(storage) as audit:
        audit.record_verification(run_id, entry)
    if report_path is not None and report_path.is_file():
        report.write_verification(report_path, entry, written.wrong)
    return entry


def print_written(written: Written, reads: int) -> None:
    """The terminal's lines: reads, counts, where the file is, the first mismatching rows."""
    counts = ", ".join(f"{s} {n}" for s, n in written.counts.items())
    print(f"verify: {reads} reads; {counts}; {written.path}")
    for line in written.wrong[:PRINTED_WRONG_ROWS]:
        print(
            f"  row {line['row']} ({line['community'] or ''}): {line['verify_status']}: "
            f"{line['verify_detail']}"
        )
    if written.wrong_rows > PRINTED_WRONG_ROWS:
        print(f"  ... and {written.wrong_rows - PRINTED_WRONG_ROWS} more in {written.path}")


def describe(entry: VerificationRecord) -> str:
    """One verification in a line (``runs show``)."""
    counts = ", ".join(f"{s} {n}" for s, n in entry["counts"].items()) or "no rows"
    sample = f", a {entry['sample_percent']:g}% sample" if entry.get("sample_percent") else ""
    return (
        f"{entry['at']}  by {entry['by']} ({entry['source']}{sample}): {counts}; "
        f"{entry['reads']} reads; exit {entry['exit_code']}; {entry['verify_file']} "
        f"(SHA-256 {entry['verify_sha256']})"
    )


def print_verifications(storage: Storage, run_id: str) -> None:
    """``runs show``: every verification of the run, oldest first, with its mismatching rows."""
    with approval.store(storage) as audit:
        # The chain holds what :func:`record` wrote.
        found = [cast(VerificationRecord, e) for e in audit.verifications(run_id)]
    if not found:
        print(
            "verifications: none (reconcile verify RUN_ID --job JOB reads the run back)",
            file=sys.stderr,
        )
        return
    print("verifications:")
    for entry in found:
        print(f"  {describe(entry)}")
        for line in entry.get("wrong", [])[:PRINTED_WRONG_ROWS]:
            print(f"    row {line['row']}: {line['verify_status']}: {line['verify_detail']}")
        if entry.get("wrong_rows", 0) > PRINTED_WRONG_ROWS:
            print(f"    ... and {entry['wrong_rows'] - PRINTED_WRONG_ROWS} more in its file")
