"""Large CSV files in bounded memory: a dry run spreads the rows over hash buckets.

A dry run of a CSV file over ``LARGE_FILE_BYTES`` does not hold the file: polars streams it
once into Parquet buckets on disk, a row's bucket chosen by the hash of the operation's
:meth:`~reconcile.operations.base.Operation.partition_key` (over the same normalised values the
checks compare), so rows that meet in a rule across rows (the same record twice, the rows of one
order) always share a bucket. Each bucket then goes through the very same validate -> plan ->
outcomes as a whole file, and the outputs (results and errors files, the plan) are merged back
in row order a window of rows at a time. Peak memory is that of one bucket, plus the
outcome of each row (~60 bytes: status, error, community) that the run returns and counts
(bench/README.md).

Files this does not read as they are (not UTF-8, a line polars refuses) are read whole by
:mod:`reconcile.intake`, which recodes them or explains the problem.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import polars as pl

from reconcile import atomic
from reconcile.columns import ROW
from reconcile.header_row import csv_header, searched
from reconcile.intake import (
    UTF16_BOMS,
    check_width,
    excel_separator_line,
    sniff_delimiter,
    without_excel_guard,
)
from reconcile.operations.base import Operation
from reconcile.plan_store import PlanRows, plan_rows
from reconcile.results import errors_frame, neutralised, results_frame
from reconcile.table import WORKBOOK_SUFFIXES, HeaderMap, Table, header_map

#: Files over this size are dry-run in buckets (~2 million rows of a purchase-history file).
LARGE_FILE_BYTES = 128 * 2**20
#: Input bytes per bucket: the memory of one bucket is about that of a file this size.
BUCKET_BYTES = 32 * 2**20
#: Rows merged back (results, errors, plan) at a time.
ROWS_PER_WINDOW = 200_000
#: Rows per Parquet row group of a bucket's outputs (its rows sorted: a group spans a range).
ROWS_PER_GROUP = 16_384
BUCKET = "__bucket"
ORDER = "__order"
_INPUT = "__input{}"


@dataclasses.dataclass(frozen=True, slots=True)
class Spilled:
    """A large file's rows on disk, in buckets."""

    path: Path
    folder: Path
    buckets: int
    mapping: HeaderMap
    sha256: str

    def parts(self, bucket: int) -> list[Path]:
        return sorted((self.folder / f"{BUCKET}={bucket}").glob("*.parquet"))

    @property
    def has_rows(self) -> bool:
        return any(self.folder.glob(f"{BUCKET}=*/*.parquet"))

    def table(self, bucket: int) -> Table | None:
        """One bucket's rows as a Table (row order), or None for an empty bucket."""
        parts = self.parts(bucket)
        if not parts:
            return None
        return Table(
            path=self.path,
            frame=pl.read_parquet(parts).sort(ROW),
            canonical=self.mapping.canonical,
            extra=self.mapping.extra,
            sha256=self.sha256,
            reuploaded=self.mapping.reuploaded,
        )


def is_large(path: Path) -> bool:
    try:
        size = path.stat().st_size
    except OSError:
        return False  # the whole-file reader says why it cannot be read
    return path.suffix.lower() not in WORKBOOK_SUFFIXES and size > LARGE_FILE_BYTES


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(8 * 2**20):
            digest.update(chunk)
    return digest.hexdigest()


def spill(path: Path, operation: Operation, folder: Path) -> Spilled | None:
    """Stream ``path`` into buckets under ``folder``; None when it must be read whole (not
    UTF-8, a line polars refuses, an operation without a partition key). Raises InputError
    for headers that do not fit the operation, as the whole-file reader does."""
    key = operation.partition_key()
    if key is None:
        return None
    with path.open("rb") as handle:
        head = handle.read(65536)
    if head.startswith(UTF16_BOMS):
        return None
    rest, separator = excel_separator_line(head)
    with path.open("rb") as handle:  # a header too wide is refused before polars reads it
        if separator:
            handle.readline()
        check_width(path, handle, separator or sniff_delimiter(rest))
    scan = pl.scan_csv(
        path,
        has_header=False,
        infer_schema=False,
        separator=separator or sniff_delimiter(rest),
        quote_char='"',
        skip_lines=1 if separator else 0,
    )
    try:
        first = scan.head(1).collect()
    except pl.exceptions.PolarsError:
        return None
    if first.height == 0:
        return None
    required = [c.name for c in operation.columns if c.required]
    if csv_header(rest, separator, required)[1] > 0:
        return None  # title lines above the header: the whole-file reader finds it
    headers = [(h or "").strip() for h in first.row(0)]
    mapping = header_map(
        path, headers, operation.columns, operation.families, searched=searched(())
    )
    buckets = max(1, math.ceil(path.stat().st_size / BUCKET_BYTES))
    rows = mapping.apply(scan.slice(1))
    if mapping.reuploaded:
        rows = without_excel_guard(rows)
    try:
        _bucketed(rows, mapping, operation, key, buckets).sink_parquet(
            pl.PartitionBy(folder, key=BUCKET, include_key=False),
            compression="lz4",
            row_group_size=65536,
            mkdir=True,
        )
    except pl.exceptions.PolarsError:
        return None
    return Spilled(path, folder, buckets, mapping, _sha256(path))


def _bucketed(
    rows: pl.LazyFrame, mapping: HeaderMap, operation: Operation, key: pl.Expr, buckets: int
) -> pl.LazyFrame:
    """``rows`` (input columns under their headers) with each row's bucket, from the hash of
    the partition key over the operation's normalised columns (as validation sees them)."""
    inputs = {name: _INPUT.format(n) for n, name in enumerate(mapping.names)}
    names = operation.column_names + operation.family_columns(list(mapping.canonical))
    view = rows.rename(inputs).with_columns(
        pl.col(inputs[mapping.canonical[n]]).alias(n)
        if n in mapping.canonical
        else pl.lit(None, pl.String).alias(n)
        for n in names
    )
    keyed = operation.normalise(view, fold_every_column=True)
    return keyed.select(
        ROW,
        *(pl.col(temporary).alias(name) for name, temporary in inputs.items()),
        (key.hash(seed=0) % buckets).cast(pl.UInt32).alias(BUCKET),
    )


# -- each bucket judged, the outputs merged back in row order --------------------------------


RESULTS, ERRORS, PLAN, OUTCOMES = "results", "errors", "plan", "outcomes"
KINDS = (RESULTS, ERRORS, PLAN, OUTCOMES)


@dataclasses.dataclass(frozen=True, slots=True)
class Outputs:
    """Every bucket's results, errors, plan rows and outcomes, as Parquet files with an
    ``__order`` column (the input row), each sorted by it."""

    parts: Mapping[str, Sequence[Path]]

    def write_results(self, out: Path, errors: Path) -> None:
        """The results and errors CSV files, as :func:`reconcile.results.write_results`
        writes them for a whole file."""
        for kind, path in ((RESULTS, out), (ERRORS, errors)):
            frames = windows(self.parts[kind])
            write_csv_windows((neutralised(f.lazy()).collect() for f in frames), path)

    def outcomes(self) -> pl.DataFrame:
        """Every row's outcome in row order (without its request: the results file and the
        plan hold them)."""
        return pl.concat(list(windows(self.parts[OUTCOMES])))

    def plan_rows(self) -> PlanRows:
        return PlanRows(
            slices=lambda: windows(self.parts[PLAN]),
            stored=pl.scan_parquet(list(self.parts[PLAN])).drop(ORDER),
        )


def judge(spilled: Spilled, folder: Path, row_outcomes: Callable[[Table], pl.DataFrame]) -> Outputs:
    """Each bucket's rows judged by ``row_outcomes`` (validated, planned, the ledger asked),
    one bucket in memory at a time; its outputs written under ``folder``."""
    for kind in KINDS:
        (folder / kind).mkdir()
    for bucket in range(spilled.buckets):
        table = spilled.table(bucket)
        if table is None:
            continue
        outcomes = row_outcomes(table)
        frame = results_frame(table, outcomes)
        row = frame.columns[0]  # ``row``, or ``reconcile_row`` when the input has a "row"
        for kind, rows, order in (
            (RESULTS, frame, row),
            (ERRORS, errors_frame(table, frame), row),
            (PLAN, plan_rows(outcomes), "row"),
            (OUTCOMES, outcomes.drop("request"), ROW),
        ):
            rows.with_columns(pl.col(order).alias(ORDER)).write_parquet(
                folder / kind / f"{bucket}.parquet",
                compression="lz4",
                # Small row groups: a window of rows reads only the groups that hold it.
                row_group_size=ROWS_PER_GROUP,
            )
    return Outputs(
        {
            kind: sorted((folder / kind).glob("*.parquet"))
            for kind in (RESULTS, ERRORS, PLAN, OUTCOMES)
        }
    )


def windows(parts: Sequence[Path]) -> Iterator[pl.DataFrame]:
    """The rows of ``parts`` in ``__order``, a window of ROWS_PER_WINDOW rows at a time (each
    part's small row groups are sorted: a window reads only its own); ``__order`` dropped."""
    scan = pl.scan_parquet(list(parts))
    bounds = scan.select(pl.col(ORDER).min().alias("low"), pl.col(ORDER).max().alias("high"))
    low, high = bounds.collect().row(0)
    if low is None:
        yield scan.drop(ORDER).collect()
        return
    for start in range(low, high + 1, ROWS_PER_WINDOW):
        window = scan.filter(pl.col(ORDER).is_between(start, start + ROWS_PER_WINDOW - 1))
        yield window.sort(ORDER).drop(ORDER).collect()


def write_csv_windows(frames: Iterator[pl.DataFrame], path: Path) -> None:
    """One CSV file from ``frames`` (header and BOM once), synced, then renamed into place:
    the same bytes as writing their concatenation at once."""
    with atomic.opened(path) as handle:
        first = True
        for frame in frames:
            frame.write_csv(handle, include_header=first, include_bom=first)
            first = False
