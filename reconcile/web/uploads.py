"""A file the console checked: its dry run (plan), who checked it, and where its files are kept,
as the ``uploads`` table holds it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from reconcile.table import WORKBOOK_SUFFIXES

#: The ``uploads`` table's columns, in the order :func:`upload_of` reads them.
UPLOAD_COLUMNS = (
    "run_id, job, original_name, stored, results, maker, created_at, submitted_at, sheet"
)


@dataclasses.dataclass(frozen=True, slots=True)
class Upload:
    """A checked file: its dry run (plan) and where the console keeps its files."""

    run_id: str
    job: str
    original_name: str
    stored: Path
    results: Path
    maker: str
    created_at: str
    submitted_at: str | None
    sheet: str | None = None
    """The workbook's sheet the check read (None: a CSV, or a workbook's first sheet)."""

    @property
    def errors(self) -> Path:
        return self.results.with_name(f"{self.results.stem}.errors.csv")

    @property
    def is_workbook(self) -> bool:
        """An xlsx upload: its errors and results are offered as workbooks too."""
        return self.stored.suffix.lower() in WORKBOOK_SUFFIXES

    @property
    def download_stem(self) -> str:
        """The name its downloads start with: the uploaded file's, without folder or suffix."""
        return Path(self.original_name.replace("\\", "/")).stem or "corrections"

    def row(self) -> tuple[str | None, ...]:
        """The upload as a row of ``uploads`` (:data:`UPLOAD_COLUMNS`)."""
        return (
            self.run_id,
            self.job,
            self.original_name,
            str(self.stored),
            str(self.results),
            self.maker,
            self.created_at,
            self.submitted_at,
            self.sheet,
        )


def upload_of(row: Sequence[object]) -> Upload:
    """The upload of a row of ``uploads`` (:data:`UPLOAD_COLUMNS`)."""
    return Upload(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        Path(str(row[3])),
        Path(str(row[4])),
        str(row[5]),
        str(row[6]),
        _text(row[7]),
        _text(row[8]),
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)
