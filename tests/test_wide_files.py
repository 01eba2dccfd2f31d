"""A limit on columns (table.MAX_COLUMNS), refused from the header line before rows are parsed,
for the command line, the bucketed reader and the console; header mapping is linear."""

from __future__ import annotations

import html
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reconcile import buckets
from reconcile.exceptions import InputError
from reconcile.intake import read_table
from reconcile.operations import get_operation
from reconcile.sandbox import SandboxServer
from reconcile.table import MAX_COLUMNS, header_map
from tests.console import console_parts, csrf_of, serve, sign_in
from tests.helpers import read_results, run, write_job

OPERATION = get_operation("purchase-history")


def _wide(path: Path, columns: int, rows: int = 1) -> Path:
    """``community,purchaseHistoryID,redemptionInstructions`` then ``columns - 3`` more, and
    ``rows`` valid rows."""
    headers = ["community", "purchaseHistoryID", "redemptionInstructions"]
    headers += [f"hd{i:06d}" for i in range(columns - len(headers))]
    blank = "," * (columns - 3)
    lines = [",".join(headers)] + [f"acme,ORD{n},Show the code{blank}" for n in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def million(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = _wide(tmp_path_factory.mktemp("wide") / "wide.csv", 1_000_000, rows=0)
    assert 8 * 2**20 < path.stat().st_size < 10 * 2**20
    return path


def test_a_million_column_csv_is_refused_naming_file_and_limit(million: Path) -> None:
    """The reader refuses a ~9 MB CSV of 1,000,000 header columns with the file and the limit
    (before polars parses it: this test would take minutes on the old quadratic mapping), in
    well under a second (the header line's separators are counted, not parsed one by one)."""
    started = time.perf_counter()
    with pytest.raises(InputError) as caught:
        read_table(million, OPERATION.columns, families=OPERATION.families)
    assert time.perf_counter() - started < 0.5
    message = str(caught.value)
    assert str(million) in message and "1,000,000 columns" in message
    assert f"{MAX_COLUMNS:,}" in message and "Fix:" in message


def test_the_command_line_exits_2_on_a_million_column_csv(million: Path, tmp_path: Path) -> None:
    """``run`` of the wide file exits 2 (bad input), with no results file."""
    out = tmp_path / "out.csv"
    code = run("run", million, "--job", write_job(tmp_path / "j.toml"), "--out", out, "--dry-run")
    assert code == 2 and not out.exists()


def test_the_bucketed_reader_refuses_it_too(million: Path, tmp_path: Path) -> None:
    """Large files are read in buckets (scan_csv): the same refusal, from the header line."""
    with pytest.raises(InputError, match="over the 1,000"):
        buckets.spill(million, OPERATION, tmp_path)


def test_quoted_separators_do_not_count_as_columns(tmp_path: Path) -> None:
    """The header is read as CSV (quotes respected): 1,000 columns, one holding 5,000 commas
    inside quotes, are within the limit and the file is read."""
    path = _wide(tmp_path / "q.csv", MAX_COLUMNS)
    text = path.read_text(encoding="utf-8").replace("hd000000,", '"' + "," * 5000 + '",', 1)
    path.write_text(text, encoding="utf-8")
    table = read_table(path, OPERATION.columns, families=OPERATION.families)
    assert table.frame.height == 1


def test_only_the_header_line_counts_whatever_ends_it(tmp_path: Path) -> None:
    """The fast count stops at the header's end, be it \\n or \\r\\n: 600 rows of 3 cells
    each are never taken for one 1,800-cell header."""
    rows = "".join(f"acme,ORDTACME{n:05d},Show it{{end}}" for n in range(600))
    for end in ("\n", "\r\n"):
        path = tmp_path / "ends.csv"
        header = "community,purchaseHistoryID,redemptionInstructions" + end
        path.write_bytes((header + rows.format(end=end)).encode())
        table = read_table(path, OPERATION.columns, families=OPERATION.families)
        assert table.frame.height == 600, repr(end)


def test_a_thousand_columns_still_work(tmp_path: Path) -> None:
    """A file of exactly MAX_COLUMNS columns is validated and planned (a dry run); one more
    column is refused."""
    out = tmp_path / "out.csv"
    job = write_job(tmp_path / "j.toml")
    assert run("run", _wide(tmp_path / "ok.csv", MAX_COLUMNS, 2), "--job", job, "--out", out,
               "--dry-run") == 0  # fmt: skip
    assert read_results(out).get_column("status").to_list() == ["would_apply"] * 2
    over = _wide(tmp_path / "over.csv", MAX_COLUMNS + 1)
    assert run("run", over, "--job", job, "--out", tmp_path / "o2.csv", "--dry-run") == 2


def test_header_mapping_is_linear_in_columns(tmp_path: Path) -> None:
    """Duplicate and extra columns are found with sets: 1,000 distinct extra headers map (the
    limit itself) and a duplicate at the end is still named."""
    headers = ["community", "purchaseHistoryID"] + [f"x{i}" for i in range(MAX_COLUMNS - 2)]
    mapping = header_map(tmp_path / "f.csv", headers, OPERATION.columns, OPERATION.families)
    assert len(mapping.extra) == MAX_COLUMNS - 2
    headers[-1] = "x0"
    with pytest.raises(InputError, match="two columns are called 'x0'"):
        header_map(tmp_path / "f.csv", headers, OPERATION.columns, OPERATION.families)


@pytest.fixture
def console_url(tmp_path: Path, sandbox: SandboxServer) -> Iterator[str]:
    parts = console_parts(tmp_path, sandbox.url)
    for running in serve(parts):
        yield running.url
    parts.console.close()
    parts.users.close()


def test_the_console_refuses_a_million_column_upload(million: Path, console_url: str) -> None:
    """An upload goes through the same intake: 400 with the count and the limit (which name the
    page gives the file, upload name or stored copy, is the error page's concern, not this)."""
    with httpx.Client(base_url=console_url, timeout=30) as alice:
        sign_in(alice, "alice")
        answer = alice.post(
            "/check",
            data={"csrf_token": csrf_of(alice.get("/new").text), "job": "purchase-history"},
            files={"file": ("wide.csv", million.read_bytes(), "text/csv")},
        )
    assert answer.status_code == 400, answer.status_code
    text = html.unescape(answer.text)
    assert "1,000,000 columns, over the 1,000" in text
