"""Fidelity: every request means exactly what its rows say, for exactly the record they name, and
no cell can crash a run (issue 15)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
from pathlib import Path

import anyio
import pytest

from reconcile.client import make_client, send
from reconcile.operations import get_operation
from reconcile.operations.base import encode_segment
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.state import FaultRule
from tests.helpers import KEYS, read_results, run, write_job

CAPILLARY = get_operation("capillary-transaction")
HEADER = "community,identifierName,identifierValue,id,number,deliveryStatus,lineItems.itemCode"


def capillary_job(tmp_path: Path, base_url: str, *, skip_downstream: bool) -> Path:
    job = tmp_path / "capillary.toml"
    job.write_text(
        f'operation = "capillary-transaction"\nbase_url = "{base_url}"\nrate_per_second = 50\n'
        f'backoff_base_seconds = 0.01\nstate_dir = "{tmp_path / "state"}"\n'
        f"[options]\nskip_downstream = {str(skip_downstream).lower()}\n"
        '[communities.acme]\nusername_env = "CAP_USER"\npassword_env = "CAP_PASSWORD"\n'
    )
    return job


@pytest.fixture
def capillary_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAP_USER", "acme.api")
    monkeypatch.setenv("CAP_PASSWORD", "sandbox-password-acme")


def dry_run(tmp_path: Path, job: Path, *lines: str) -> tuple[int, list[dict[str, str | None]]]:
    source = tmp_path / "in.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    code = run("run", source, "--job", job, "--out", out, "--dry-run")
    return code, list(read_results(out).iter_rows(named=True))


def request_of(row: dict[str, str | None]) -> tuple[str, str, dict[str, object]]:
    method, path, body = str(row["request"]).split(" ", 2)
    return method, path, json.loads(body)


class TestCapillaryTransactions:
    """One definition of "the same transaction" groups rows and checks that they agree."""

    def test_an_id_and_a_bill_number_of_other_customers_are_two_requests(
        self, tmp_path: Path
    ) -> None:
        """id=100 for one customer and number=100 for another were merged into one request:
        the second customer's line item landed on the first one's transaction."""
        job = capillary_job(tmp_path, "https://eu.api.capillarytech.com", skip_downstream=True)
        code, rows = dry_run(
            tmp_path,
            job,
            HEADER,
            "acme,mobile,+919986000586,100,,SHIPPED,sku_1",
            "acme,email,a+b@x.com,,100,DELIVERED,sku_2",
        )
        assert code == 0
        assert [r["status"] for r in rows] == ["would_apply", "would_apply"]
        first, second = (request_of(r) for r in rows)
        assert first[1] == "/v2/transactions?identifierName=mobile&identifierValue=%2B919986000586"
        assert first[2] == {
            "id": 100,
            "deliveryStatus": "SHIPPED",
            "lineItems": [{"itemCode": "sku_1"}],
        }
        assert second[1] == "/v2/transactions?identifierName=email&identifierValue=a%2Bb%40x.com"
        assert second[2] == {
            "number": "100",
            "deliveryStatus": "DELIVERED",
            "lineItems": [{"itemCode": "sku_2"}],
        }

    def test_the_same_id_for_two_customers_is_two_transactions(self, tmp_path: Path) -> None:
        """The customer is part of what names a transaction: no row's change goes to another
        customer's request."""
        job = capillary_job(tmp_path, "https://eu.api.capillarytech.com", skip_downstream=True)
        code, rows = dry_run(
            tmp_path,
            job,
            HEADER,
            "acme,mobile,111,100,,SHIPPED,sku_1",
            "acme,mobile,222,100,,DELIVERED,sku_2",
        )
        assert code == 0
        first, second = (request_of(r) for r in rows)
        assert first != second
        assert first[2]["lineItems"] == [{"itemCode": "sku_1"}]
        assert second[2]["lineItems"] == [{"itemCode": "sku_2"}]

    def test_0100_and_100_are_one_transaction(self, tmp_path: Path) -> None:
        """The id is a number to the API: two spellings of it are one request, sent as 100."""
        job = capillary_job(tmp_path, "https://eu.api.capillarytech.com", skip_downstream=True)
        code, rows = dry_run(
            tmp_path,
            job,
            HEADER,
            "acme,mobile,111,0100,,SHIPPED,sku_1",
            "acme,mobile,111,100,,SHIPPED,sku_2",
        )
        assert code == 0
        first, second = (request_of(r) for r in rows)
        assert first == second
        assert first[2] == {
            "id": 100,
            "deliveryStatus": "SHIPPED",
            "lineItems": [{"itemCode": "sku_1"}, {"itemCode": "sku_2"}],
        }

    def test_rows_of_one_transaction_that_disagree_are_all_invalid_naming_each_other(
        self, tmp_path: Path
    ) -> None:
        """Which value wins would depend on row order: every row of the group is refused, and
        its message names the group's rows."""
        job = capillary_job(tmp_path, "https://eu.api.capillarytech.com", skip_downstream=True)
        code, rows = dry_run(
            tmp_path,
            job,
            HEADER,
            "acme,mobile,111,0100,,SHIPPED,sku_1",
            "acme,mobile,111,100,,DELIVERED,sku_2",
            "acme,mobile,111,101,,DELIVERED,sku_2",
        )
        assert code == 1
        assert [r["status"] for r in rows] == ["invalid", "invalid", "would_apply"]
        for row in rows[:2]:
            assert "rows 2, 3 are one transaction" in str(row["error"])
            assert "disagree on 'deliveryStatus'" in str(row["error"])

    @pytest.mark.parametrize(
        ("cells", "words"),
        [
            ("100,,SHIPPED,sku_1,1.2E+5", "lineItems.id: '1.2E+5' is not a whole number"),
            ("9999999999999999999,,SHIPPED,,", "is larger than the API accepts"),
            ("100,,SHIPPED,,9999999999999999999", "is larger than the API accepts"),
            ("100,,SHIPPED,,-3", "is not a whole number"),
        ],
    )
    def test_a_cell_no_number_type_holds_is_a_row_error_not_a_crash(
        self, tmp_path: Path, cells: str, words: str
    ) -> None:
        """A strict cast of 1.2E+5 or of 19 digits above 2**63 ended the run (exit 3)."""
        job = capillary_job(tmp_path, "https://eu.api.capillarytech.com", skip_downstream=True)
        code, rows = dry_run(
            tmp_path,
            job,
            f"{HEADER},lineItems.id",
            f"acme,mobile,111,{cells}",
            "acme,mobile,111,200,,SHIPPED,sku_9,",
        )
        assert code == 1
        assert [r["status"] for r in rows] == ["invalid", "would_apply"]
        assert words in str(rows[0]["error"])


@pytest.mark.usefixtures("capillary_env")
class TestCapillaryDownstreamSideEffects:
    """Only SKIP-DOWNSTREAM makes a transaction update safe to repeat (the doc)."""

    def run_once_with_a_502_after_the_write(
        self, sandbox: SandboxServer, tmp_path: Path, *, skip_downstream: bool
    ) -> dict[str, str | None]:
        sandbox.state.faults.rules = [FaultRule(kind="error_after", status=502, times=1)]
        source = tmp_path / "in.csv"
        source.write_text(f"{HEADER}\nacme,mobile,919986000586,873547608,,SHIPPED,sku_234_2\n")
        out = tmp_path / "out.csv"
        job = capillary_job(tmp_path, sandbox.url, skip_downstream=skip_downstream)
        run("run", source, "--job", job, "--out", out)
        [row] = read_results(out).iter_rows(named=True)
        return row

    def test_without_skip_downstream_an_uncertain_update_is_unknown_and_not_resent(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        """Loyalty actions may have fired: the update is not sent again."""
        row = self.run_once_with_a_502_after_the_write(sandbox, tmp_path, skip_downstream=False)
        assert (row["status"], row["attempts"]) == ("unknown", "1")
        assert len(sandbox.state.requests) == 1

    def test_with_skip_downstream_it_is_retried(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        """A data-import style update sets values only: retried and applied."""
        row = self.run_once_with_a_502_after_the_write(sandbox, tmp_path, skip_downstream=True)
        assert (row["status"], row["attempts"]) == ("applied", "2")


class TestApiMessages:
    """The results' error carries the API's own words, whatever the vendor's error shape."""

    @pytest.mark.usefixtures("capillary_env")
    def test_a_capillary_400_other_than_667_668_669_keeps_its_message(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        """It used to say only "HTTP 400"."""
        source = tmp_path / "in.csv"
        source.write_text(
            "community,identifierName,identifierValue,id,lineItems.itemCode\n"
            "acme,mobile,919986000586,873547608,sku_nope\n"
        )
        out = tmp_path / "out.csv"
        job = capillary_job(tmp_path, sandbox.url, skip_downstream=True)
        assert run("run", source, "--job", job, "--out", out) == 1
        [row] = read_results(out).iter_rows(named=True)
        assert row["status"] == "rejected"
        assert row["error"] == "Line item not found (400)"

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (
                b'{"errors":[{"status":false,"code":1234,"message":"Bad field"}]}',
                "Bad field (1234)",
            ),
            (
                b'{"errors":[{"code":1,"message":"A"},{"code":2,"message":"B"}],"warnings":[]}',
                "A (1); B (2)",
            ),
            (b'{"message":"Not found","meta":{}}', "Not found"),
            (b"<html>Bad gateway</html>", "<html>Bad gateway</html>"),
            (b"[1, 2]", "[1, 2]"),
        ],
    )
    def test_every_error_shape(self, body: bytes, message: str) -> None:
        assert CAPILLARY.classify(400, body).message == message


class TestPathSegments:
    """Every path segment reaches the API as the exact ID: dot segments are never resolved."""

    #: IDs of only dots are refused by the file rules (tests/test_dot_segments.py); these are sent.
    IDS = ("a/b", "q?x=1", "h#frag", "100%", "a+b", "with space", "...", ".hidden", "ünïcödé")

    def test_the_raw_path_decodes_back_to_the_id(self, sandbox: SandboxServer) -> None:
        """Through the tool's own client, the sandbox's raw path holds each ID as one segment
        (purchase-history's path, whose IDs the file rules keep to ObjectIds and ORD...)."""

        async def exchange() -> None:
            headers = {"Authorization": f"Bearer {KEYS['acme']}"}
            async with make_client(timeout_seconds=5, max_connections=2) as client:
                for value in self.IDS:
                    path = f"/v1/purchase-histories/{encode_segment(value)}"
                    await send(client, "PATCH", sandbox.url + path, headers=headers, body="{}")

        anyio.run(exchange)
        raw = [entry["raw_path"] for entry in sandbox.state.requests]
        prefix = "/v1/purchase-histories/"
        assert all(r.startswith(prefix) and "/" not in r[len(prefix) :] for r in raw)
        assert [urllib.parse.unquote(r[len(prefix) :]) for r in raw] == list(self.IDS)

    @pytest.mark.usefixtures("keys_in_env")
    @pytest.mark.parametrize(
        ("operation", "column", "template"),
        [
            ("voucherify-order", "orderId", "/v1/orders/{}"),
            ("voucherify-rollback", "redemptionId", "/v1/redemptions/{}/rollback"),
        ],
    )
    def test_every_operation_with_an_id_in_its_path(
        self, sandbox: SandboxServer, tmp_path: Path, operation: str, column: str, template: str
    ) -> None:
        """A run of the operation sends each ID to its own resource, as one path segment (``...``
        and ``.hidden`` included)."""
        extra = ",status" if operation == "voucherify-order" else ""
        lines = [f"community,{column}{extra}"]
        for value in self.IDS:
            quoted = '"' + value.replace('"', '""') + '"'
            lines.append(f"acme,{quoted}{',PAID' if extra else ''}")
        source = tmp_path / "in.csv"
        source.write_text("\n".join(lines) + "\n", encoding="utf-8")
        job = write_job(tmp_path / "job.toml", sandbox.url, operation=operation)
        out = tmp_path / "out.csv"
        run("run", source, "--job", job, "--out", out)
        statuses = read_results(out).get_column("status").to_list()
        assert "invalid" not in statuses
        raw = [entry["raw_path"] for entry in sandbox.state.requests]
        assert len(raw) == len(self.IDS)
        head, _, tail = template.partition("{}")
        ids = []
        for path in raw:
            assert path.startswith(head) and path.endswith(tail), path
            segment = path[len(head) : len(path) - len(tail)]
            assert "/" not in segment, path
            ids.append(urllib.parse.unquote(segment))
        assert sorted(ids) == sorted(self.IDS)


def test_a_closed_pipe_ends_quietly() -> None:
    """``reconcile operations | head`` ended with a BrokenPipeError traceback."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from reconcile.cli import main; sys.exit(main())",
            "operations",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.close()  # the reader is gone before the first line is written
    _, stderr = process.communicate(timeout=60)
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr
    assert process.returncode == 141


def workbook(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    """An .xlsx whose cells have the types given: str is a text cell, int/float a number cell,
    datetime a date cell (as a spreadsheet stores what it parsed)."""
    import datetime as dt

    import xlsxwriter

    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet()
    date = book.add_format({"num_format": "dd/mm/yyyy"})
    sheet.write_row(0, 0, header)
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row):
            if isinstance(value, dt.datetime):
                sheet.write_datetime(r, c, value, date)
            elif isinstance(value, (int, float)):
                sheet.write_number(r, c, value)
            elif value is not None:
                sheet.write_string(r, c, str(value))
    book.close()
    return path


def dry_run_file(tmp_path: Path, source: Path, operation: str) -> list[dict[str, str | None]]:
    out = tmp_path / "out.csv"
    job = write_job(tmp_path / "job.toml", operation=operation)
    assert run("run", source, "--job", job, "--out", out, "--dry-run") in (0, 1)
    return list(read_results(out).iter_rows(named=True))


class TestSpreadsheetDamage:
    """Judged by the cell's type, not by whether its text parses as a number."""

    def test_text_cells_of_digits_are_what_they_say(self, tmp_path: Path) -> None:
        """A column formatted as Text, as the README advises, was refused as 'a number cell'."""
        source = workbook(
            tmp_path / "in.xlsx",
            ["community", "orderId", "source_id", "metadata.location_id"],
            [["acme", "000123456789012345678901", "000456", "007"]],
        )
        [row] = dry_run_file(tmp_path, source, "voucherify-order")
        assert row["status"] == "would_apply", row["error"]
        assert str(row["request"]) == (
            'PUT /v1/orders/000123456789012345678901 {"source_id":"000456",'
            '"metadata":{"location_id":"007"}}'
        )

    @pytest.mark.parametrize(
        ("column", "cell"),
        [
            ("source_id", 4000123456789012345),  # a 19-digit gift card, rounded to 15 digits
            ("source_id", 1.5),
            ("metadata.location_id", 1e20),
            ("referrer_id", 123456789012345678),
        ],
    )
    def test_number_cells_that_a_spreadsheet_changed_are_refused(
        self, tmp_path: Path, column: str, cell: float
    ) -> None:
        """Codes are text to the API: a number past 15 digits, with decimals or an exponent is
        not what was typed."""
        source = workbook(
            tmp_path / "in.xlsx", ["community", "orderId", column], [["acme", "ord_1", cell]]
        )
        [row] = dry_run_file(tmp_path, source, "voucherify-order")
        assert row["status"] == "invalid"
        assert f"{column}: cell C2 holds the number" in str(row["error"])
        assert "Format the column as Text and type the value again" in str(row["error"])
        assert "numeric_ids" not in str(row["error"])  # no option accepts a changed number

    def test_a_number_beside_codes_with_leading_zeros_is_refused(self, tmp_path: Path) -> None:
        """0099887766 kept as text beside 99887766 as a number: the number lost its zeros."""
        source = workbook(
            tmp_path / "in.xlsx",
            ["community", "orderId", "source_id"],
            [["acme", "ord_1", "0099887766"], ["acme", "ord_2", 99887766]],
        )
        rows = dry_run_file(tmp_path, source, "voucherify-order")
        assert [r["status"] for r in rows] == ["would_apply", "invalid"]

    def test_a_number_in_an_id_column_is_refused_unless_the_job_accepts_it(
        self, tmp_path: Path
    ) -> None:
        """An ID stored as a number may have lost its leading zeros (0099887766 -> 99887766):
        refused by default; a job whose IDs are truly numbers accepts the column, and the
        whole number is then sent as its text (an amount is a number either way)."""
        source = workbook(
            tmp_path / "in.xlsx",
            ["community", "orderId", "source_id", "amount"],
            [["acme", "ord_1", 99887766, 2100]],
        )
        [row] = dry_run_file(tmp_path, source, "voucherify-order")
        assert row["status"] == "invalid"
        assert 'numeric_ids.source_id = "accept"' in str(row["error"])
        job = write_job(tmp_path / "job.toml", operation="voucherify-order")
        job.write_text(job.read_text() + '\n[numeric_ids]\nsource_id = "accept"\n')
        out = tmp_path / "accepted.csv"
        assert run("run", source, "--job", job, "--out", out, "--dry-run") == 0
        [row] = read_results(out).iter_rows(named=True)
        assert '{"amount":2100,"source_id":"99887766"}' in str(row["request"])

    def test_dates_read_in_a_month_first_locale_are_refused(self, tmp_path: Path) -> None:
        """01/02/2027 became 2 January while 31/12/2026 stayed text: the date cells may have day
        and month swapped; the text dates are what was typed."""
        import datetime as dt

        header = ["community", "purchaseHistoryID", "voucherCode", "voucherExpiryDate"]
        source = workbook(
            tmp_path / "in.xlsx",
            header,
            [
                ["acme", "ORDTACME00001", "NEW-1", dt.datetime(2027, 1, 2)],
                ["acme", "ORDTACME00002", "NEW-2", "31/12/2026"],
            ],
        )
        rows = dry_run_file(tmp_path, source, "purchase-history")
        assert [r["status"] for r in rows] == ["invalid", "would_apply"]
        assert "month-first locale" in str(rows[0]["error"])

    def test_text_that_only_looks_like_excel_notation_is_a_value(self, tmp_path: Path) -> None:
        """A hex ID of digits and one e (22 digits before it: no spreadsheet writes that) is a
        value; E-notation a spreadsheet writes (2.02641E+19, 12E3, 1E5) is refused in an ID
        column unless the job's numeric_ids accepts the column."""
        job = write_job(tmp_path / "job.toml", operation="purchase-history")
        code, rows = dry_run(
            tmp_path,
            job,
            "community,purchaseHistoryID,redemptionInstructions",
            "acme,5123456789012345678901e5,Collect at the desk",
            "acme,2.02641E+19,Collect at the desk",
        )
        assert [r["status"] for r in rows] == ["would_apply", "invalid"]
        job = write_job(tmp_path / "job.toml", operation="voucherify-order")
        code, rows = dry_run(
            tmp_path, job, "community,orderId,source_id", "acme,ord_1,12E3", "acme,ord_2,1E5"
        )
        assert code == 1 and [r["status"] for r in rows] == ["invalid", "invalid"]
        assert "'12E3' is the number 12000 written in E-notation" in str(rows[0]["error"])
        job.write_text(job.read_text() + '\n[numeric_ids]\nsource_id = "accept"\n')
        code, rows = dry_run(
            tmp_path, job, "community,orderId,source_id", "acme,ord_1,12E3", "acme,ord_2,1E5"
        )
        assert code == 0
        assert '"source_id":"12E3"' in str(rows[0]["request"])


def test_a_file_saved_by_libreoffice_calc(tmp_path: Path) -> None:
    """sample_data/purchase-history-spreadsheet.xlsx was made by LibreOffice Calc from a CSV with
    default import settings (its first ID column formatted as Text): the 24-digit ID text cell
    is kept, the 19-digit code Calc rounded (4000123456789009920) and the date it read month
    first are refused, the date it left as text is sent as written."""
    out = tmp_path / "out.csv"
    code = run(
        "run",
        Path(__file__).parents[1] / "sample_data" / "purchase-history-spreadsheet.xlsx",
        "--job",
        Path(__file__).parents[1] / "jobs" / "purchase-history.example.toml",
        "--out",
        out,
        "--state-dir",
        tmp_path,
        "--dry-run",
    )
    rows = list(read_results(out).iter_rows(named=True))
    assert code == 1
    assert [r["status"] for r in rows] == ["would_apply", "invalid", "invalid", "would_apply"]
    assert "cell C3 holds the number 4000123456789009920" in str(rows[1]["error"])
    assert "month-first locale" in str(rows[2]["error"])
    assert '"voucherExpiryDate":"28/02/2027"' in str(rows[3]["request"])


def test_a_workbook_that_expands_past_the_limit_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A zip bomb (small file, huge sheet) stops the run with exit 2 and a clear message, from
    the zip directory's declared sizes; nothing is parsed or sent."""
    from reconcile import workbook as reader

    monkeypatch.setattr(reader, "MAX_EXPANDED_BYTES", 2**20)
    rows: list[list[object]] = [["acme", f"ORDTACME{n:05d}", "x" * 200] for n in range(20_000)]
    source = workbook(
        tmp_path / "bomb.xlsx", ["community", "purchaseHistoryID", "redemptionInstructions"], rows
    )
    assert source.stat().st_size < 2**20  # small on disk, large once expanded
    job = write_job(tmp_path / "job.toml", operation="purchase-history")
    assert run("run", source, "--job", job, "--out", tmp_path / "o.csv", "--dry-run") == 2
    assert "expands to" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


def test_a_sheet_declaring_too_many_cells_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sheet whose declared dimension (rows x columns) passes the cell limit is refused with
    its size named, before the sheet is read."""
    from reconcile import workbook as reader

    monkeypatch.setattr(reader, "MAX_CELLS", 1_000)
    rows: list[list[object]] = [["acme", f"ORDTACME{n:05d}", "x"] for n in range(400)]
    source = workbook(
        tmp_path / "wide.xlsx", ["community", "purchaseHistoryID", "redemptionInstructions"], rows
    )
    job = write_job(tmp_path / "job.toml", operation="purchase-history")
    assert run("run", source, "--job", job, "--out", tmp_path / "o.csv", "--dry-run") == 2
    assert "401 rows x 3 columns" in capsys.readouterr().err


def test_a_workbook_whose_zip_directory_lies_about_sizes_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A zip bomb that declares its sheet small (directory and local header patched) passes the
    declared-size check, so each part is read through once in bounded chunks: zipfile stops at
    the declared size and the CRC no longer matches, and the file is refused (exit 2) before
    fastexcel parses it."""
    import struct
    import zipfile

    rows: list[list[object]] = [["acme", f"ORDTACME{n:05d}", "x" * 50] for n in range(2_000)]
    source = workbook(
        tmp_path / "liar.xlsx", ["community", "purchaseHistoryID", "redemptionInstructions"], rows
    )
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        sheet = next(i for i in archive.infolist() if i.filename.startswith("xl/worksheets/"))
    struct.pack_into("<I", data, sheet.header_offset + 22, 50_000)  # local header: size
    name = sheet.filename.encode()
    central = data.index(b"PK\x01\x02")
    while data[central + 46 : central + 46 + len(name)] != name:
        central = data.index(b"PK\x01\x02", central + 4)
    struct.pack_into("<I", data, central + 24, 50_000)  # central directory: size
    source.write_bytes(bytes(data))
    with zipfile.ZipFile(source) as archive:  # the directory now claims a small sheet
        assert (
            next(i for i in archive.infolist() if i.filename == sheet.filename).file_size == 50_000
        )
    job = write_job(tmp_path / "job.toml", operation="purchase-history")
    assert run("run", source, "--job", job, "--out", tmp_path / "o.csv", "--dry-run") == 2
    assert "damaged or malicious" in capsys.readouterr().err
