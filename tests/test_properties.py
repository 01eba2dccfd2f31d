"""Property tests per operation: arbitrary text in any cell of a well-formed file never crashes a
dry run, and no row said to be sendable breaks the operation's own rules as the sandbox enforces
them (issue 15)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from reconcile.exceptions import InputError
from reconcile.job import load_job
from reconcile.operations import OPERATIONS
from reconcile.pipeline import prepare
from reconcile.sandbox import Faults, SandboxState, create_app, load_seed
from reconcile.sandbox.state import DEFAULT_SEED
from tests.helpers import SAMPLE, write_job

#: Answers that depend on the sandbox's data, not on the request's form: an unknown record, a
#: taken code, Capillary's customer/line item/field lookups, a refund towards another status.
DATA_DEPENDENT = (
    "not found",
    "Not Found",
    "already",
    "(667)",
    "(668)",
    "(669)",
    "Line item not found",
    "Invalid extended field",
    "only allowed when moving to a refunded status",
    "Voucher code already exists",
)

CELL_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=30,
)
#: Text that looks like what spreadsheets hold: numbers in every form, dates, dots, quotes.
SHAPED = st.sampled_from(
    [
        "",
        " ",
        "0",
        "-0",
        "007",
        "1.2E+5",
        "2.02641E+19",
        "9999999999999999999",
        "18446744073709551616",
        "1e5",
        "21.00",
        "31/12/2026",
        "2026-12-31",
        "..",
        ".",
        "a/b",
        "null",
        "true",
        "[1,2]",
        '{"a":1}',
        "=1+1",
        "'-5",
        "€",
        "\t",
        "line\nbreak",
    ]
)


def _plain(header: str) -> str:
    return "".join(ch for ch in header.lower() if ch not in " _-")


def sample_rows(operation: str) -> tuple[list[str], list[list[str]]]:
    """The operation's sample file, with an empty column for each of its columns the sample
    leaves out (so every column can be given any text)."""
    with (SAMPLE / f"{operation}.csv").open(encoding="utf-8-sig", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    present = {_plain(h) for h in header}
    missing = [c for c in OPERATIONS[operation].column_names if _plain(c) not in present]
    return [*header, *missing], [[*row, *([""] * len(missing))] for row in rows]


def credentials(seed: dict[str, Any], community: str) -> dict[str, str]:
    """The community's credentials as the sandbox seed gives them, under the names the
    operations declare (``api_key``, ``app_id``, ``username`` ...)."""
    return SandboxState(seed).credentials()[community]


def _not_json(constant: str) -> None:
    raise AssertionError(f"{constant} in a request body: not JSON (RFC 8259)")


def sandbox_answer(client: TestClient, request: str, headers: dict[str, str]) -> tuple[int, str]:
    method, rest = request.split(" ", 1)
    path, _, body = rest.partition(" ")
    response = client.request(
        method,
        path,
        content=body.encode() if body else None,
        headers={**headers, "Content-Type": "application/json"},
    )
    return response.status_code, response.text


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_cell_crashes_a_dry_run_or_passes_what_the_api_refuses(
    operation: str, tmp_path: Path, data: st.DataObject
) -> None:
    """Any text in any cells of a sample file: the rows are checked and planned without an
    exception, and every row planned for sending is accepted by the sandbox's own
    implementation of the API's rules (or refused only for data the file cannot know)."""
    header, rows = sample_rows(operation)
    rows = [list(r) for r in rows]
    for _ in range(data.draw(st.integers(1, 6), label="changes")):
        row = data.draw(st.integers(0, len(rows) - 1), label="row")
        column = data.draw(st.integers(1, len(header) - 1), label="column")  # community stays
        rows[row][column] = data.draw(st.one_of(SHAPED, SHAPED, CELL_TEXT), label="cell")
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows([header, *rows])
    source = tmp_path / "in.csv"
    source.write_text(buffer.getvalue(), encoding="utf-8")
    job = load_job(write_job(tmp_path / "job.toml", operation=operation))
    try:
        prepared = prepare(source, job)
    except InputError:
        return  # the file as a whole is refused, with a message: not a crash
    planned = prepared.plan.requests
    seed = load_seed(DEFAULT_SEED)
    with TestClient(create_app(SandboxState(seed, Faults()))) as client:
        for request in planned.iter_rows(named=True):
            op = OPERATIONS[operation]
            headers = {
                **op.extra_headers(job.options),
                **op.auth_headers(credentials(seed, request["community"])),
            }
            status, text = sandbox_answer(client, request["request"], headers)
            refused_for_form = status == 400 and not any(w in text for w in DATA_DEPENDENT)
            assert not refused_for_form, (request["request"], text)
            assert status < 500, (request["request"], text)
    # Every body is standard JSON (no NaN or Infinity), every row has exactly one outcome.
    for body in planned.get_column("body").drop_nulls():
        json.loads(body, parse_constant=_not_json)
    assert prepared.validated.height == len(rows)
    assert (
        prepared.validated.filter(pl.col("__error").is_null()).height == prepared.plan.rows.height
    )
