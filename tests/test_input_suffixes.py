"""One list of accepted input suffixes (``table.INPUT_SUFFIXES``) for the whole tool: the
console takes an upload and the inbox a file of its folder by that list, the reader reads a
workbook by its suffixes, the README names them; a tab text (``.txt``) or macro-enabled
workbook (``.xlsm``) upload is checked by the console over real HTTP exactly as the command
line's dry run reads it."""

from __future__ import annotations

import ast
import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest
import xlsxwriter
from polars.testing import assert_frame_equal

from reconcile.inbox import pending_inputs
from reconcile.intake import read_table, sheet_names
from reconcile.job import load_job
from reconcile.operations import get_operation
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from reconcile.table import INPUT_SUFFIXES, TEXT_SUFFIXES, WORKBOOK_SUFFIXES
from tests.console import RunningConsole, console_parts, csrf_of, serve
from tests.helpers import ROOT, read_results, run, write_job

PACKAGE = ROOT / "reconcile"
#: A row of each kind: one to send, one with an invalid date, one without its ID.
ROWS = [
    ["acme", order_id("acme", 1), "SPRING-0001", "31/12/2026"],
    ["acme", order_id("acme", 2), "SPRING-0002", "31/02/2026"],
    ["globex", "", "SPRING-0003", "31/12/2026"],
]
HEADER = ["Community", "Purchase History ID", "Voucher Code", "Voucher Expiry Date"]
#: The start of an OLE compound file: a stand-in for the macros (which reconcile never runs).
VBA_PROJECT = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)


def _unicode_text(path: Path) -> Path:
    """A file as Excel saves "Unicode Text": UTF-16 LE with its BOM, tab-delimited, CRLF."""
    lines = ["\t".join(row) for row in [HEADER, *ROWS]]
    path.write_bytes("\r\n".join(lines).encode("utf-16"))
    return path


def _comma_text(path: Path) -> Path:
    """A comma-separated file named ``.txt`` (UTF-8, LF)."""
    path.write_text("\n".join(",".join(row) for row in [HEADER, *ROWS]) + "\n", encoding="utf-8")
    return path


def _macro_workbook(path: Path) -> Path:
    """An ``.xlsm`` with its macro part, a notes sheet first; one ID typed as a number (only a
    workbook's reader sees that cell's type, and refuses it)."""
    with xlsxwriter.Workbook(path, {"strings_to_numbers": False}) as book:
        book.add_worksheet("Read me").write_string(0, 0, "Corrections are on the next sheet")
        sheet = book.add_worksheet("Corrections")
        for r, row in enumerate([HEADER, *ROWS]):
            sheet.write_row(r, 0, row)
        last = len(ROWS) + 1
        sheet.write_row(last, 0, ["acme", 456, "SPRING-0004", "31/12/2026"])
        book.add_vba_project(io.BytesIO(VBA_PROJECT), is_stream=True)
    return path


MAKERS = {"tab.txt": _unicode_text, "comma.txt": _comma_text, "macros.xlsm": _macro_workbook}


class TestOneList:
    """Every place that decides which files are inputs takes the one list."""

    def test_the_list_is_the_text_suffixes_then_the_workbook_suffixes(self) -> None:
        """``.csv`` and ``.txt`` are read as delimited text, ``.xlsx`` and ``.xlsm`` as
        workbooks, and those four are the accepted inputs."""
        assert TEXT_SUFFIXES == (".csv", ".txt")
        assert WORKBOOK_SUFFIXES == (".xlsx", ".xlsm")
        assert INPUT_SUFFIXES == (".csv", ".txt", ".xlsx", ".xlsm")

    def test_no_other_module_writes_a_list_of_input_suffixes(self) -> None:
        """No tuple, list or set of input suffixes is written anywhere in the package but in
        ``reconcile/table.py``, and no template lists them: a second list could disagree."""
        suffixes = set(INPUT_SUFFIXES)
        found = []
        for path in sorted(PACKAGE.rglob("*.py")):
            if path == PACKAGE / "table.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Tuple | ast.List | ast.Set) and any(
                    isinstance(e, ast.Constant) and e.value in suffixes for e in node.elts
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        for path in sorted((PACKAGE / "web" / "templates").glob("*.html")):
            if re.search(r"\.csv\s*,\s*\.", path.read_text(encoding="utf-8")):
                found.append(str(path.relative_to(ROOT)))
        assert found == []

    def test_the_inbox_takes_a_file_of_each_accepted_suffix_and_no_other(
        self, tmp_path: Path
    ) -> None:
        """An inbox folder's ``.csv``, ``.txt``, ``.xlsx`` and ``.xlsm`` files (any case) are
        its inputs; an old ``.xls``, a ``.pdf`` and a file without a suffix stay where they
        are."""
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        names = ["a.csv", "b.TXT", "c.xlsx", "d.xlsm", "e.xls", "f.pdf", "g"]
        for name in names:
            (inbox / name).write_bytes(b"community,purchaseHistoryID\n")
        job = load_job(write_job(tmp_path / "job.toml", input="inbox/", settle_seconds=0))
        ready = pending_inputs(job, now=4_000_000_000)
        assert [p.name for p in ready] == ["a.csv", "b.TXT", "c.xlsx", "d.xlsm"]
        assert {Path(n).suffix.lower() for n in names[:4]} == set(INPUT_SUFFIXES)

    def test_the_readme_names_every_accepted_suffix(self) -> None:
        """The README's INPUT row and its input file section name each suffix."""
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        row = next(line for line in readme.splitlines() if line.startswith("| `INPUT` |"))
        section = readme.partition("`table.INPUT_SUFFIXES`")[2][:200]
        for suffix in INPUT_SUFFIXES:
            assert f"`{suffix}`" in row and f"`{suffix}`" in section, suffix

    @pytest.mark.parametrize("name", sorted(MAKERS))
    def test_the_reader_takes_each_by_its_suffix(self, tmp_path: Path, name: str) -> None:
        """A ``.txt`` is read as text (no sheets), an ``.xlsm`` as a workbook (its sheets,
        the header found on the second one)."""
        path = MAKERS[name](tmp_path / name)
        table = read_table(path, get_operation("purchase-history").columns)
        workbook = path.suffix in WORKBOOK_SUFFIXES
        assert sheet_names(path) == (["Read me", "Corrections"] if workbook else [])
        assert table.sheet == ("Corrections" if workbook else None)
        assert table.frame.height == len(ROWS) + workbook


def _check(client: httpx.Client, path: Path) -> str:
    """Upload ``path`` through the form as a person does (a workbook of several sheets asks
    which one: the sheet the form chose is sent); the new run id."""
    fields = {"csrf_token": csrf_of(client.get("/new").text), "job": "purchase-history"}
    answer = client.post(
        "/check", data=fields, files={"file": (path.name, path.read_bytes(), "text/plain")}
    )
    if path.suffix in WORKBOOK_SUFFIXES:
        held = re.search(r'name="held" value="([0-9a-f]+)"', answer.text)
        chosen = re.search(r'<option value="([^"]+)" selected>', answer.text.split('id="sheet"')[1])
        assert held and chosen and chosen.group(1) == "Corrections", answer.text
        fields |= {"held": held.group(1), "sheet": chosen.group(1)}
        answer = client.post("/check", data=fields)
    assert answer.status_code == httpx.codes.SEE_OTHER, answer.text
    return answer.headers["location"].rsplit("/", 1)[-1]


@pytest.fixture
def console(tmp_path: Path, sandbox: SandboxServer) -> Iterator[RunningConsole]:
    """The console over the sandbox on 127.0.0.1 (its SQLite ledger in ``tmp_path``)."""
    folder = tmp_path / "console"
    folder.mkdir()
    parts = console_parts(folder, sandbox.url)
    yield from serve(parts)
    parts.console.close()
    parts.users.close()


class TestConsoleUploads:
    """The console over real HTTP takes what the command line takes, and reads it the same."""

    @pytest.mark.parametrize("name", sorted(MAKERS))
    def test_an_upload_is_checked_exactly_as_the_command_lines_dry_run_reads_it(
        self, console: RunningConsole, sandbox: SandboxServer, tmp_path: Path, name: str
    ) -> None:
        """Alice uploads a tab text, a comma text named ``.txt`` or an ``.xlsm`` through the
        form: it is checked (303 to its run), and its results are the very frame the command
        line's ``run --dry-run`` of the same file writes (same rows, statuses and messages,
        the workbook's number cell refused alike)."""
        path = MAKERS[name](tmp_path / name)
        with contextlib.closing(console.client("alice")) as alice:
            assert f'accept="{",".join(INPUT_SUFFIXES)}"' in alice.get("/new").text
            run_id = _check(alice, path)
        upload = console.console.upload(run_id)
        assert upload is not None and upload.original_name == name
        cli = tmp_path / "cli"
        cli.mkdir()
        job = write_job(cli / "job.toml", sandbox.url)
        cli_out = cli / "out.csv"
        assert run("run", path, "--job", job, "--out", cli_out, "--dry-run") == 1
        from_console, from_cli = read_results(upload.results), read_results(cli_out)
        assert_frame_equal(from_console, from_cli)
        statuses = from_cli.get_column("status").to_list()
        assert "invalid" in statuses and len(statuses) == len(ROWS) + (name == "macros.xlsm")
        if name == "macros.xlsm":
            errors = from_cli.filter(pl.col("row") == str(len(ROWS) + 2)).get_column("error")
            assert "stored as a number" in errors[0]

    def test_an_upload_of_another_kind_is_refused_naming_the_list(
        self, console: RunningConsole
    ) -> None:
        """A ``.pdf`` is refused (400) with the suffixes the console reads; nothing is kept."""
        with contextlib.closing(console.client("alice")) as alice:
            answer = alice.post(
                "/check",
                data={"csrf_token": csrf_of(alice.get("/new").text), "job": "purchase-history"},
                files={"file": ("fixes.pdf", b"%PDF-1.7", "application/pdf")},
            )
        assert answer.status_code == httpx.codes.BAD_REQUEST
        assert ", ".join(INPUT_SUFFIXES) in answer.text
        assert console.console.uploads() == []
