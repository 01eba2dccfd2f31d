"""Reading finance teams' files: encodings, delimiters, line ends, headers, row numbers."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from reconcile.exceptions import InputError
from reconcile.intake import read_table
from reconcile.operations import get_operation
from tests.helpers import read_results, run, write_csv, write_job

OP = get_operation("purchase-history")


ROWS = [
    ["acme", "ORD0001", "Café “crème”, 2nd floor", "", ""],
    ["acme", "507f1f77bcf86cd799439011", "", "CODE-Ü1", "31/12/2026"],
    ["globex", "ORD0002", "Line one\nLine two, with comma", "X-2", "01/01/2027"],
    ["acme", "ORD0003", 'He said "hi"', "", ""],
    ["initech", "ORD0004", "", "", ""],
]
CANONICAL = [
    "community",
    "purchaseHistoryID",
    "redemptionInstructions",
    "voucherCode",
    "voucherExpiryDate",
]
HUMAN = [
    "Community",
    "Purchase History ID",
    "Redemption Instructions",
    "Voucher Code",
    "Voucher Expiry Date",
]


def _csv(headers: list[str], sep: str, newline: str) -> str:
    def cell(value: str) -> str:
        if any(ch in value for ch in (sep, '"', "\n")):
            return '"' + value.replace('"', '""').replace("\n", newline) + '"'
        return value

    lines = [sep.join(headers)] + [sep.join(cell(v) for v in row) for row in ROWS]
    return newline.join(lines) + newline


VARIANTS = {
    "utf8-comma-lf": (CANONICAL, ",", "\n", "utf-8", b""),
    "utf8-bom": (CANONICAL, ",", "\n", "utf-8", b"\xef\xbb\xbf"),
    "semicolon": (CANONICAL, ";", "\n", "utf-8", b""),
    "tab": (CANONICAL, "\t", "\n", "utf-8", b""),
    "crlf": (CANONICAL, ",", "\r\n", "utf-8", b""),
    "cp1252-semicolon-crlf-human": (HUMAN, ";", "\r\n", "cp1252", b""),
    # Excel's "sep=" first line names the delimiter; Excel hides it (the header stays row 1).
    "excel-sep-line": (CANONICAL, ";", "\r\n", "utf-8", b"sep=;\r\n"),
    # Excel's "Unicode Text" (.txt): UTF-16 LE with a BOM, tab-delimited, CRLF.
    "utf16-tab-crlf-human": (HUMAN, "\t", "\r\n", "utf-16-le", b"\xff\xfe"),
    "human-snake": (
        [
            "community",
            "purchase_history_id",
            "redemption-instructions",
            "VOUCHER CODE",
            "voucher_expiry_date",
        ],
        ",",
        "\n",
        "utf-8",
        b"",
    ),
}


def _dry_run(tmp_path: Path, name: str) -> pl.DataFrame:
    headers, sep, newline, encoding, bom = VARIANTS[name]
    source = tmp_path / f"{name}.csv"
    source.write_bytes(bom + _csv(headers, sep, newline).encode(encoding))
    job = write_job(tmp_path / "job.toml")
    out = tmp_path / f"{name}.results.csv"
    assert run("run", source, "--job", job, "--out", out, "--dry-run") == 1
    return read_results(out)


class TestFileVariants:
    @pytest.mark.parametrize("name", sorted(VARIANTS))
    def test_same_statuses_and_byte_exact_values(self, tmp_path: Path, name: str) -> None:
        """Every Excel flavour gives the statuses and requests of the plain UTF-8 file."""
        reference = _dry_run(tmp_path, "utf8-comma-lf")
        variant = _dry_run(tmp_path, name)
        assert variant.get_column("status").to_list() == reference.get_column("status").to_list()
        assert variant.get_column("request").to_list() == reference.get_column("request").to_list()
        assert variant.get_column("row").to_list() == ["2", "3", "4", "5", "6"]
        # Values as the finance person typed them, accents and quotes included.
        assert variant.columns[1:6] == VARIANTS[name][0]
        assert variant.get_column(variant.columns[3]).to_list()[0] == "Café “crème”, 2nd floor"
        body = variant.get_column("request").to_list()[2]
        assert '"redemptionInstructions":"Line one\\nLine two, with comma"' in body

    def test_every_cell_is_text_and_leading_zeros_stay(self, tmp_path: Path) -> None:
        """IDs never become numbers: 000123 stays 000123, 1e5 stays 1e5."""
        path = write_csv(tmp_path / "z.csv", "community,purchaseHistoryID,extra\nacme,000123,1e5\n")
        table = read_table(path, OP.columns)
        assert table.frame.row(0) == (2, "acme", "000123", "1e5")
        assert all(t == pl.String for n, t in table.frame.schema.items() if n != "__row")

    def test_unknown_columns_are_carried_through(self, tmp_path: Path) -> None:
        path = write_csv(tmp_path / "u.csv", "Note,community,purchaseHistoryID\nhello,acme,ORD1\n")
        table = read_table(path, OP.columns)
        assert table.extra == ["Note"]
        assert table.canonical == {
            "community": "community",
            "purchaseHistoryID": "purchaseHistoryID",
        }

    def test_row_numbers_match_the_spreadsheet(self, tmp_path: Path) -> None:
        """A record spanning lines is one spreadsheet row; blank lines are not records."""
        text = 'community,purchaseHistoryID,redemptionInstructions\nacme,ORD1,"a\nb"\n\n,,\nacme,ORD2,c\n'
        table = read_table(write_csv(tmp_path / "r.csv", text), OP.columns)
        assert table.frame.get_column("__row").to_list() == [2, 5]

    def test_result_columns_in_an_input_are_ignored(self, tmp_path: Path) -> None:
        """A results or errors file can be uploaded again as it is."""
        text = "row,community,purchaseHistoryID,status,error\n2,acme,ORD1,invalid,oops\n"
        table = read_table(write_csv(tmp_path / "e.csv", text), OP.columns)
        assert table.frame.columns == ["__row", "community", "purchaseHistoryID"]


class TestUnusableFiles:
    def test_missing_required_column_exits_2_naming_it(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = write_csv(tmp_path / "m.csv", "community,voucherCode\nacme,X\n")
        assert (
            run(
                "run",
                path,
                "--job",
                write_job(tmp_path / "j.toml"),
                "--dry-run",
                "--out",
                tmp_path / "o.csv",
            )
            == 2
        )
        err = capsys.readouterr().err
        assert "purchaseHistoryID" in err and str(path) in err
        assert not (tmp_path / "o.csv").exists()

    def test_undecodable_file_says_so(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.csv"
        path.write_bytes(b"community,purchaseHistoryID\nacme,ORD\x81\x8d\n")
        with pytest.raises(InputError, match=r"bad\.csv.*neither UTF-8 nor Windows-1252"):
            read_table(path, OP.columns)

    def test_broken_utf16_says_so(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.txt"
        path.write_bytes(
            b"\xff\xfe" + "community\tpurchaseHistoryID\n".encode("utf-16-le") + b"\x00"
        )
        with pytest.raises(InputError, match=r"bad\.txt.*UTF-16"):
            read_table(path, OP.columns)

    def test_two_headers_for_one_column(self, tmp_path: Path) -> None:
        path = write_csv(
            tmp_path / "d.csv", "community,Purchase History ID,purchase_history_id\na,b,c\n"
        )
        with pytest.raises(InputError, match="both mean 'purchaseHistoryID'"):
            read_table(path, OP.columns)

    def test_a_row_with_too_many_cells_is_named(self, tmp_path: Path) -> None:
        """An unquoted delimiter would shift values into the wrong columns: stop, name the row."""
        path = write_csv(
            tmp_path / "r.csv",
            "community;purchaseHistoryID;redemptionInstructions\nacme;ORD1;ok\nacme;ORD2;Desk; 2nd floor\n",
        )
        with pytest.raises(
            InputError, match=r"row 3 has 4 cells but the header has 3: .*';' without quotes"
        ):
            read_table(path, OP.columns)

    def test_empty_file(self, tmp_path: Path) -> None:
        with pytest.raises(InputError, match="empty"):
            read_table(write_csv(tmp_path / "e.csv", "  \n"), OP.columns)

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(InputError, match="cannot open"):
            read_table(tmp_path / "nope.csv", OP.columns)
