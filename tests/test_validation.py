"""Every rule of the purchase-history endpoint, as the API states it, one row at a time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pandera.errors import SchemaErrors

from reconcile.intake import read_table
from reconcile.operations import Operation, get_operation
from reconcile.validate import duplicated, passes_checks
from tests.helpers import SAMPLE, validation_errors

OP = get_operation("purchase-history")


def row(**cells: str | None) -> dict[str, str | None]:
    base: dict[str, str | None] = {
        "community": "acme",
        "purchaseHistoryID": "ORD202641612055614747",
    }
    base.update(cells)
    return base


VALID = {
    "instructions only": row(redemptionInstructions="Collect at the counter"),
    "voucher pair": row(voucherCode="NEW-1", voucherExpiryDate="31/12/2026"),
    "all three": row(
        redemptionInstructions="x", voucherCode="NEW-1", voucherExpiryDate="31/12/2026"
    ),
    "object id": row(purchaseHistoryID="507f1f77bcf86cd799439011", redemptionInstructions="x"),
    "object id upper": row(
        purchaseHistoryID="507F1F77BCF86CD799439011", redemptionInstructions="x"
    ),
    "instructions 10000": row(redemptionInstructions="a" * 10000),
    "code 512": row(voucherCode="c" * 512, voucherExpiryDate="31/12/2026"),
    "leap day 2028": row(voucherCode="A", voucherExpiryDate="29/02/2028"),
    "leap day 2000": row(voucherCode="A", voucherExpiryDate="29/02/2000"),
    "padded values are trimmed": row(
        redemptionInstructions="  x  ", voucherCode=" A ", voucherExpiryDate=" 01/01/2027 "
    ),
    "padded id": row(purchaseHistoryID="  ORD1  ", redemptionInstructions="x"),
    "tabs, newlines and no-break spaces are trimmed": row(
        purchaseHistoryID="\u00a0ORD1\t",
        voucherCode="\r\nA\n",
        voucherExpiryDate="01/01/2027\u00a0",
    ),
}

INVALID = {
    # name: (row, words the error must contain)
    "community empty": (row(community=None, redemptionInstructions="x"), "community: is empty"),
    "community blank": (row(community="  ", redemptionInstructions="x"), "community: is blank"),
    "community unknown": (
        row(community="initech", redemptionInstructions="x"),
        "not a community of the job file",
    ),
    "id empty": (
        row(purchaseHistoryID=None, redemptionInstructions="x"),
        "purchaseHistoryID: is empty",
    ),
    "id excel damage": (
        row(purchaseHistoryID="2.02641E+19", redemptionInstructions="x"),
        "turned into a number by Excel",
    ),
    "id plain number": (
        row(purchaseHistoryID="202641612055614747", redemptionInstructions="x"),
        "is not a purchase history ID",
    ),
    "id 23 hex": (
        row(purchaseHistoryID="507f1f77bcf86cd79943901", redemptionInstructions="x"),
        "is not a purchase history ID",
    ),
    "id 25 hex": (
        row(purchaseHistoryID="507f1f77bcf86cd7994390111", redemptionInstructions="x"),
        "is not a purchase history ID",
    ),
    "id ORD only": (
        row(purchaseHistoryID="ORD", redemptionInstructions="x"),
        "is not a purchase history ID",
    ),
    "id ORD with dash": (
        row(purchaseHistoryID="ORD-12", redemptionInstructions="x"),
        "is not a purchase history ID",
    ),
    "instructions blank": (row(redemptionInstructions="   "), "redemptionInstructions: is blank"),
    "instructions 10001": (row(redemptionInstructions="a" * 10001), "longer than 10000 characters"),
    "code blank": (row(voucherCode=" ", voucherExpiryDate="31/12/2026"), "voucherCode: is blank"),
    "code 513": (
        row(voucherCode="c" * 513, voucherExpiryDate="31/12/2026"),
        "longer than 512 characters",
    ),
    "code without date": (row(voucherCode="A"), "go together"),
    "date without code": (row(voucherExpiryDate="31/12/2026"), "go together"),
    "nothing to change": (row(), "nothing to change"),
    "date blank": (row(voucherCode="A", voucherExpiryDate="  "), "voucherExpiryDate: is blank"),
    "31 February": (
        row(voucherCode="A", voucherExpiryDate="31/02/2026"),
        "not a real calendar date",
    ),
    "29/02/2027": (
        row(voucherCode="A", voucherExpiryDate="29/02/2027"),
        "not a real calendar date",
    ),
    "29/02/2100": (
        row(voucherCode="A", voucherExpiryDate="29/02/2100"),
        "not a real calendar date",
    ),
    "day 00": (row(voucherCode="A", voucherExpiryDate="00/01/2027"), "not a real calendar date"),
    "month 13": (row(voucherCode="A", voucherExpiryDate="15/13/2027"), "not a real calendar date"),
    "US order 01/13": (row(voucherCode="A", voucherExpiryDate="01/13/2027"), "US order"),
    "ISO": (row(voucherCode="A", voucherExpiryDate="2026-12-31"), "year first"),
    "US order": (row(voucherCode="A", voucherExpiryDate="12/31/2026"), "US order"),
    "two-digit year": (row(voucherCode="A", voucherExpiryDate="31/12/26"), "two-digit year"),
    "one-digit day": (
        row(voucherCode="A", voucherExpiryDate="1/02/2027"),
        "two digits for day and month",
    ),
    "words": (row(voucherCode="A", voucherExpiryDate="next Tuesday"), "is not a date"),
    "dots": (row(voucherCode="A", voucherExpiryDate="31.12.2026"), "is not a date"),
}


class TestRules:
    @pytest.mark.parametrize("name", sorted(VALID))
    def test_valid_rows_pass(self, name: str) -> None:
        assert validation_errors(OP, VALID[name]) == [None]

    @pytest.mark.parametrize("name", sorted(INVALID))
    def test_invalid_rows_are_explained(self, name: str) -> None:
        bad, words = INVALID[name]
        [error] = validation_errors(OP, bad)
        assert error is not None and words in error

    def test_one_message_per_wrong_date_shape(self) -> None:
        """A wrong date gets its one hint, not every date message at once."""
        [error] = validation_errors(OP, row(voucherCode="A", voucherExpiryDate="2026-12-31"))
        assert error is not None and error.count(";") == 0

    def test_all_errors_of_a_row_are_collected(self) -> None:
        [error] = validation_errors(
            OP,
            row(
                community="initech",
                purchaseHistoryID="2.1E+19",
                voucherCode="c" * 513,
                voucherExpiryDate="2026-01-01",
            ),
        )
        assert error is not None
        for words in ("not a community", "Excel", "longer than 512", "year first"):
            assert words in error

    def test_messages_show_the_value(self) -> None:
        [error] = validation_errors(OP, row(voucherCode="A", voucherExpiryDate="12/31/2026"))
        assert error == (
            "voucherExpiryDate: '12/31/2026' looks like month/day (US order): write day first, "
            "DD/MM/YYYY, e.g. 31/12/2026"
        )

    def test_duplicates_invalidate_every_copy_naming_the_rows(self) -> None:
        errors = validation_errors(
            OP,
            row(redemptionInstructions="a"),
            row(purchaseHistoryID="ORD9", redemptionInstructions="b"),
            row(redemptionInstructions="c"),
            row(community="globex", redemptionInstructions="d"),
        )
        assert errors[1] is None and errors[3] is None  # other id; other community
        for error in (errors[0], errors[2]):
            assert error is not None and "are on rows 2, 4: keep one row" in error

    def test_a_large_duplicate_group_lists_ten_rows(self) -> None:
        errors = validation_errors(OP, *[row(redemptionInstructions=str(n)) for n in range(13)])
        assert (
            errors[0] is not None and "rows 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 3 more:" in errors[0]
        )


@st.composite
def day_month_year(draw: st.DrawFn) -> tuple[int, int, int]:
    return (
        draw(st.integers(1, 31)),
        draw(st.integers(1, 12)),
        draw(st.integers(1900, 2400)),
    )


def _is_real(day: int, month: int, year: int) -> bool:
    try:
        dt.date(year, month, day)
    except ValueError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(st.lists(day_month_year(), min_size=1, max_size=30))
def test_date_validation_agrees_with_the_calendar(dates: list[tuple[int, int, int]]) -> None:
    """Any DD/MM/YYYY is accepted exactly when the calendar has that day."""
    rows = [
        row(
            purchaseHistoryID=f"ORD{i}",
            voucherCode="A",
            voucherExpiryDate=f"{d:02d}/{m:02d}/{y:04d}",
        )
        for i, (d, m, y) in enumerate(dates)
    ]
    errors = validation_errors(OP, *rows)
    for (d, m, y), error in zip(dates, errors, strict=True):
        assert (error is None) == _is_real(d, m, y), (d, m, y, error)


def _pandera_failing_rows(operation: Operation, frame: pl.DataFrame) -> set[int]:
    """Positions of the rows pandera itself fails, validating every row (no pre-screen)."""
    normalised = operation.normalise(frame.lazy()).collect()
    schema = operation.schema(["acme", "globex"], operation.family_columns(normalised.columns))
    try:
        schema.validate(normalised, lazy=True)
    except SchemaErrors as exc:
        return set(exc.failure_cases.get_column("index").drop_nulls().to_list())
    return set()


def _screened_failing_rows(operation: Operation, frame: pl.DataFrame) -> set[int]:
    normalised = operation.normalise(frame.lazy()).collect()
    schema = operation.schema(["acme", "globex"], operation.family_columns(normalised.columns))
    passing = passes_checks(normalised, schema)
    assert passing is not None, "every shipped schema is made of rules.check/frame_check"
    return set((~passing).arg_true().to_list())


@pytest.mark.parametrize(
    "sample", sorted(p.name for p in SAMPLE.glob("*.csv")), ids=lambda name: name
)
def test_the_one_pass_screen_agrees_with_pandera_on_every_sample(sample: str) -> None:
    """validate() hands pandera only the rows the one-pass screen fails: both must agree."""
    operation = get_operation(sample.removesuffix(".csv").removesuffix("-mistakes"))
    table = read_table(SAMPLE / sample, operation.columns, families=operation.families)
    names = operation.column_names + operation.family_columns(list(table.canonical))
    frame = table.operation_view(names)
    assert _screened_failing_rows(operation, frame) == _pandera_failing_rows(operation, frame)


CELL = st.one_of(
    st.none(),
    st.sampled_from(
        ["", " ", "acme", "initech", "ORD1", "2.02641E+19", "507f1f77bcf86cd799439011"]
    ),
    st.sampled_from(
        ["31/12/2026", "29/02/2027", "2026-12-31", "12/31/2026", "1/2/2027", "31/12/26"]
    ),
    st.text(max_size=12),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries({c: CELL for c in OP.column_names}), min_size=1, max_size=20))
def test_the_one_pass_screen_agrees_with_pandera_on_any_rows(
    rows: list[dict[str, str | None]],
) -> None:
    frame = pl.DataFrame(rows, schema=dict.fromkeys(OP.column_names, pl.String))
    assert _screened_failing_rows(OP, frame) == _pandera_failing_rows(OP, frame)


KEY_CELL = st.one_of(
    st.none(), st.sampled_from(["", "a", "b", "ORD1", "ORD2"]), st.text(max_size=3)
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(KEY_CELL, KEY_CELL), min_size=1, max_size=30))
def test_hashed_duplicate_detection_agrees_with_polars_exact_one(
    keys: list[tuple[str | None, str | None]],
) -> None:
    frame = pl.DataFrame(keys, schema=["community", "id"], orient="row")
    exact = frame.select(pl.struct("community", "id").is_duplicated()).to_series()
    assert duplicated(frame, ["community", "id"]).to_list() == exact.to_list()


def test_duplicates_need_every_key_column_equal() -> None:
    """Per-column hashes are seeded apart, so equal or swapped values do not cancel out."""
    frame = pl.DataFrame({"a": ["x", "y", "x"], "b": ["x", "y", "x"]})
    assert duplicated(frame, ["a", "b"]).to_list() == [True, False, True]
    swapped = pl.DataFrame({"a": ["p", "q"], "b": ["q", "p"]})
    assert duplicated(swapped, ["a", "b"]).to_list() == [False, False]


def test_a_check_whose_code_raises_stops_validation_instead_of_passing_its_rows() -> None:
    """pandera reports a check that raised without a row; such rows must not pass as valid
    (and be sent): validation stops, naming the check."""
    import pandera.polars as pa

    base = type(get_operation("purchase-history"))

    def crash(data: object) -> bool:
        raise ValueError("boom")

    class Broken(base):  # type: ignore[valid-type, misc]
        def column_rules(self, family_columns: Sequence[str]) -> dict[str, pa.Column]:
            found: dict[str, pa.Column] = super().column_rules(family_columns)
            found["purchaseHistoryID"] = pa.Column(str, checks=[pa.Check(crash, error="crashes")])
            return found

    with pytest.raises(RuntimeError, match="crashes"):
        validation_errors(Broken(), {"community": "acme", "purchaseHistoryID": "ORD1"})
