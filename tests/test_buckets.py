"""A large file's dry run in hash buckets (reconcile.buckets, issue 17): the same results, errors
file, counts and plan as the whole-file run, with the rules across rows intact when the rows
that meet in them are far apart in the file. The size thresholds are lowered so that small
files take the bucketed path."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from reconcile import buckets
from reconcile.approval import store
from reconcile.exceptions import InputError
from reconcile.job import load_job
from reconcile.pipeline import execute
from reconcile.run_types import RunOptions, RunResult
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from tests.helpers import orders_csv, run, storage_of, write_job

HEADER = (
    "Community,Purchase History ID,Redemption Instructions,Voucher Code,Voucher Expiry Date,Note"
)


def purchase_history_rows(count: int) -> list[str]:
    """Valid rows and every kind of mistake, cells Excel would run as formulas, quoted commas
    and line breaks inside cells, blank lines."""
    rng = random.Random(7)
    lines = []
    for n in range(count):
        community = "acme" if n % 2 else "globex"
        ident = f"{n:024x}"
        instructions, code, expiry = "", f"CODE-{n}", f"{rng.randint(1, 28):02d}/05/2027"
        kind = rng.random()
        if kind < 0.3:
            instructions, code, expiry = f'"Desk {n % 7}, bring ID\r\nand a bag"', "", ""
        elif kind < 0.35:
            expiry = "2027-01-31"
        elif kind < 0.4:
            ident = "2.02641E+19"
        elif kind < 0.45:
            code = "=HYPERLINK(1)"
        elif kind < 0.5:
            community = "initech"
        elif kind < 0.52:
            lines.append(";;;" if n % 3 else "")
        lines.append(f"{community},  {ident} ,{instructions},{code},{expiry},row {n}")
    return lines


def dry_run(source: Path, job: Path, out: Path, **options: Any) -> RunResult:
    return execute(source, load_job(job), out, RunOptions(dry_run=True, quiet=True, **options))


def both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: Path, job: Path, **options: Any
) -> tuple[RunResult, RunResult, list[buckets.Spilled]]:
    """The file dry-run whole, then in buckets; the buckets the second run made."""
    whole = dry_run(source, job, tmp_path / "whole" / "results.csv", **options)
    spilled: list[buckets.Spilled] = []
    spill = buckets.spill

    def recorded(*args: Any) -> buckets.Spilled | None:
        made = spill(*args)
        if made is not None:
            spilled.append(made)
        return made

    monkeypatch.setattr(buckets, "spill", recorded)
    monkeypatch.setattr(buckets, "LARGE_FILE_BYTES", 0)
    monkeypatch.setattr(buckets, "BUCKET_BYTES", 4096)
    monkeypatch.setattr(buckets, "ROWS_PER_WINDOW", 97)
    bucketed = dry_run(source, job, tmp_path / "bucketed" / "results.csv", **options)
    return whole, bucketed, spilled


def same_outputs(tmp_path: Path, whole: RunResult, bucketed: RunResult, job: Path) -> None:
    """Byte for byte the same results and errors files, the same counts and exit code, the
    same plan rows; the bucketed plan passes the audit check."""
    for name in ("results.csv", "results.errors.csv"):
        assert (tmp_path / "bucketed" / name).read_bytes() == (
            tmp_path / "whole" / name
        ).read_bytes()
    assert bucketed.manifest["counts"] == whole.manifest["counts"]
    assert bucketed.exit_code == whole.exit_code
    with store(storage_of(job)) as audit:
        planned = [audit.plan_rows(r.manifest["run_id"]) for r in (whole, bucketed)]
        assert audit.verify() == []
    assert planned[1].equals(planned[0])
    assert bucketed.outcomes.equals(whole.outcomes.drop("request"))


def test_a_large_file_in_buckets_gives_the_whole_file_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A purchase-history file with every kind of row, a BOM, CRLF line ends and the same record
    on its first and last rows: the bucketed dry run writes what the whole-file run writes, and
    the two far-apart rows name each other."""
    lines = purchase_history_rows(1500)
    lines.insert(0, "acme,000000000000000000000abc,Desk,,,first")
    lines.append("acme, 000000000000000000000abc,Desk 2,,,last")
    source = tmp_path / "large.csv"
    source.write_bytes(("\ufeff" + "\r\n".join([HEADER, *lines]) + "\r\n").encode())
    job = write_job(tmp_path / "job.toml")
    whole, bucketed, spilled = both_ways(tmp_path, monkeypatch, source, job)
    assert len(spilled) == 1 and spilled[0].buckets > 10
    same_outputs(tmp_path, whole, bucketed, job)
    errors = pl.read_csv(tmp_path / "bucketed" / "results.errors.csv", infer_schema=False)
    last_row = str(len(lines) + 1)
    pair = errors.filter(pl.col("row").is_in(["2", last_row]))
    assert pair.height == 2
    assert all(f"rows 2, {last_row}" in e for e in pair.get_column("error"))


def test_an_order_s_rows_far_apart_are_one_request_in_buckets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Voucherify order rows of one order at both ends of the file form one request (its
    items together), and an order whose far-apart rows disagree is refused on both rows, as in
    the whole-file run."""
    lines = ["community,orderId,status,amount,items.sku_id,items.quantity"]
    lines.append("acme,ord_far,PAID,100,sku_1,1")
    lines.append("acme,ord_clash,PAID,100,sku_1,1")
    lines += [f"acme,ord_{n},PAID,{n},sku_{n},{n % 5 + 1}" for n in range(800)]
    lines.append("acme,ord_clash,CANCELED,100,sku_2,1")
    lines.append("acme,ord_far,PAID,100,sku_2,3")
    source = tmp_path / "orders.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    job = write_job(tmp_path / "job.toml", operation="voucherify-order")
    whole, bucketed, spilled = both_ways(tmp_path, monkeypatch, source, job)
    assert len(spilled) == 1 and spilled[0].buckets > 5
    same_outputs(tmp_path, whole, bucketed, job)
    results = pl.read_csv(tmp_path / "bucketed" / "results.csv", infer_schema=False)
    far = results.filter(pl.col("orderId") == "ord_far")
    assert far.get_column("reconcile_status").to_list() == ["would_apply", "would_apply"]
    [request] = far.get_column("request").unique().to_list()
    items = json.loads(request.split(" ", 2)[2])["items"]
    assert [i["sku_id"] for i in items] == ["sku_1", "sku_2"]
    clash = results.filter(pl.col("orderId") == "ord_clash")
    assert clash.get_column("reconcile_status").to_list() == ["invalid", "invalid"]


def test_a_results_file_uploaded_again_in_buckets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A results file (formula cells guarded with a quote, our columns) dry-run again: the
    bucketed run drops the guards and our columns as the whole-file run does."""
    source = tmp_path / "large.csv"
    source.write_text("\n".join([HEADER, *purchase_history_rows(400)]) + "\n", encoding="utf-8")
    job = write_job(tmp_path / "job.toml")
    first = tmp_path / "first.csv"
    dry_run(source, job, first)
    whole, bucketed, spilled = both_ways(tmp_path, monkeypatch, first, job)
    assert len(spilled) == 1 and spilled[0].mapping.reuploaded
    same_outputs(tmp_path, whole, bucketed, job)


def test_a_file_not_in_utf8_is_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large Windows-1252 file is not bucketed (polars reads UTF-8 only): the whole-file
    reader recodes it, and the outputs are those of the whole-file run."""
    source = tmp_path / "large.csv"
    text = "\n".join([HEADER, *purchase_history_rows(300), "acme,000000000000000000000abc,Café,,,"])
    source.write_bytes(text.encode("cp1252"))
    job = write_job(tmp_path / "job.toml")
    _, _, spilled = both_ways(tmp_path, monkeypatch, source, job)
    assert spilled == []
    assert (tmp_path / "bucketed" / "results.csv").read_bytes() == (
        tmp_path / "whole" / "results.csv"
    ).read_bytes()
    assert "Café" in (tmp_path / "bucketed" / "results.csv").read_text(encoding="utf-8-sig")


@pytest.mark.usefixtures("keys_in_env")
def test_history_and_community_selection_in_buckets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox: SandboxServer
) -> None:
    """After a real run applied some orders over HTTP, a dry run of a file with those and
    others, for one community only, says in buckets what it says whole: already applied for
    the applied ones, would apply for the rest, skipped for the other community."""
    job = write_job(tmp_path / "job.toml", sandbox.url)
    applied = [(c, order_id(c, n)) for n in range(0, 60, 3) for c in ("acme", "globex")]
    assert (
        run(
            "run",
            orders_csv(tmp_path / "first.csv", applied),
            "--job",
            job,
            "--out",
            tmp_path / "first-results.csv",
        )
        == 0
    )
    every = [(c, order_id(c, n)) for n in range(120) for c in ("acme", "globex")]
    source = orders_csv(tmp_path / "again.csv", every)
    whole, bucketed, spilled = both_ways(
        tmp_path, monkeypatch, source, job, communities=frozenset({"acme"})
    )
    assert len(spilled) == 1 and spilled[0].buckets > 1
    same_outputs(tmp_path, whole, bucketed, job)
    statuses = bucketed.manifest["counts"]["per_community"]
    assert statuses["acme"] == {"already_applied": 20, "would_apply": 100}
    assert statuses["globex"] == {"skipped": 120}


@pytest.mark.parametrize(
    "text",
    [
        'sep=;\nCommunity;Purchase History ID;Redemption Instructions\nacme;ORD1;"a;b"\n'
        "globex;ORD2;x\nacme;ORD1;y\n",
        "Community\tPurchase History ID\tRedemption Instructions\nacme\tORD1\tx\n\t\t\n"
        "acme\tORD3\t=1+1\n",
        "Community,Purchase History ID,Redemption Instructions\nacme,ORD1\nacme\n",
        "Community,Redemption Instructions\nacme,x\n",
        "Community,Purchase History ID,Redemption Instructions\nacme,ORD1,x,extra\n",
    ],
    ids=["excel-sep-line", "tabs-and-blank-line", "short-rows", "missing-column", "long-row"],
)
def test_files_excel_writes_give_the_same_outputs_or_refusal_in_buckets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """Excel's sep= line, tabs, a blank line, short rows: the same outputs as read whole; a
    missing column or a row longer than the header: the same refusal (file, row, fix)."""
    source = tmp_path / "in.csv"
    source.write_text(text, encoding="utf-8")
    job = write_job(tmp_path / "job.toml")
    said = []
    for large, folder in ((1 << 40, "whole"), (0, "bucketed")):
        monkeypatch.setattr(buckets, "LARGE_FILE_BYTES", large)
        monkeypatch.setattr(buckets, "BUCKET_BYTES", 40)
        out = tmp_path / folder / "results.csv"
        try:
            dry_run(source, job, out)
        except InputError as refused:
            said.append(str(refused))
            continue
        said.append(out.read_text("utf-8-sig") + out.with_name("results.errors.csv").read_text())
    assert said[0] == said[1]
