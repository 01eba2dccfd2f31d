"""Issue 31's acceptance for each vendor read, against the sandbox over real HTTP: ``run
--verify`` with a read lag waits it out (all verified, exit 0); a record changed behind the tool
makes ``verify RUN_ID`` name exactly that row and field (exit 4) while the sandbox logs no write.
Returning.AI documents no read: its rows are never verified and no GET is ever sent for them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from reconcile.ledger import Ledger
from reconcile.sandbox import SandboxServer
from tests.helpers import SAMPLE, read_results, run, storage_of, write_csv, write_job


@dataclasses.dataclass(frozen=True)
class Read:
    """One documented read: a file of its operation, and another writer's change to one of
    the records it wrote (table, which record, the change), with what verify must then say."""

    operation: str
    text: str
    table: str
    where: dict[str, Any]
    change: dict[str, Any]
    statuses: list[str]
    detail: str
    """The verify_detail of the one mismatching row."""
    records: int
    """Records the file writes: one read each (a Capillary transaction serves all its rows)."""


def _item_drift(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Another writer changes one line item's extended field (sku_234_3's)."""
    return [
        {**i, "extendedFields": {"ship_last_name": "X"}} if i["itemCode"] == "sku_234_3" else i
        for i in items
    ]


READS = {
    "voucherify order GET /v1/orders/{id}": Read(
        "voucherify-order",
        "community,orderId,status,metadata.tier\n"
        "acme,ord_acme0001,PAID,gold\n"
        "acme,ord_acme0002,FULFILLED,silver\n",
        "voucherifyOrders",
        {"id": "ord_acme0002"},
        {"metadata": {"tier": "bronze"}},
        ["verified", "mismatch"],
        "metadata.tier: wrote silver, read bronze",
        2,
    ),
    "voucherify rollback GET /v1/redemptions/{id}": Read(
        "voucherify-rollback",
        "community,redemptionId\nacme,r_acme0001\nacme,r_acme0002\n",
        "voucherifyRedemptions",
        {"id": "r_acme0001"},
        {"rolled_back": False},
        ["mismatch", "verified"],
        "status: wrote ROLLED_BACK, read SUCCEEDED",
        2,
    ),
    "capillary GET /v2/transactions/{id}?type=": Read(
        "capillary-transaction",
        "community,identifierName,identifierValue,id,type,lineItems.itemCode,"
        "lineItems.extendedFields.ship_last_name\n"
        "acme,mobile,919986000586,873547608,REGULAR,sku_234_2,Lee\n"
        "acme,mobile,919986000586,873547608,REGULAR,sku_234_3,Kim\n",
        "capillaryTransactions",
        {"id": 873547608},
        {"lineItems": _item_drift},
        ["verified", "mismatch"],
        "lineItems[sku_234_3].extendedFields.ship_last_name: wrote Kim, read X",
        1,
    ),
    "capillary GET /v2/transactions/getByBillNumber/{number}": Read(
        "capillary-transaction",
        "community,identifierName,identifierValue,number,type,extendedFields.ship_first_name\n"
        "acme,email,ann@example.com,BILL-2026-0042,REGULAR,Ann\n"
        "globex,,,BILL-77,NOT_INTERESTED,Bo\n",
        "capillaryTransactions",
        {"id": 990000001},
        {"extendedFields": {"ship_first_name": "Zed"}},
        ["verified", "mismatch"],
        "extendedFields.ship_first_name: wrote Bo, read Zed",
        2,
    ),
}


def _last_run(job: Path) -> str:
    ledger = Ledger(storage_of(job))
    try:
        [last] = ledger.runs(limit=1)
    finally:
        ledger.close()
    return str(last["run_id"])


def _methods(sandbox: SandboxServer, since: int) -> list[str]:
    return [r["method"] for r in sandbox.state.requests[since:]]


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
def test_each_read_waits_out_the_lag_then_names_another_writers_change(
    read: Read, tmp_path: Path, sandbox: SandboxServer, keys_in_env: dict[str, str]
) -> None:
    """``run --verify`` with a 4 s read lag (longer than a loaded machine takes from the last
    write to the first read, so the first reads are stale): the first reads still show the old records, the
    settle window reads again until every row is verified (exit 0). Another writer then changes
    one record; ``verify RUN_ID`` (a later job with no settle window) names exactly that row and
    field with both values, exit 4, and the sandbox saw only GETs during it."""
    sandbox.state.faults.read_lag = 4.0
    job = write_job(
        tmp_path / "job.toml", sandbox.url, operation=read.operation, verify_settle_seconds=30
    )
    data = write_csv(tmp_path / "in.csv", read.text)
    out = tmp_path / "out.csv"
    assert run("run", data, "--job", job, "--out", out, "--verify") == 0
    first = read_results(tmp_path / "out.verify.csv")
    assert first.get_column("verify_status").to_list() == ["verified"] * len(read.statuses)
    assert _methods(sandbox, 0).count("GET") > read.records, "no read was made again"

    sandbox.state.faults.read_lag = 0.0
    assert sandbox.state.other_writer(read.table, read.where, **read.change) == 1
    later = write_job(
        tmp_path / "later.toml", sandbox.url, operation=read.operation, verify_settle_seconds=0
    )
    before = len(sandbox.state.requests)
    verify_out = tmp_path / "v.csv"
    assert run("verify", _last_run(job), "--job", later, "--out", verify_out) == 4
    assert _methods(sandbox, before) == ["GET"] * read.records  # one read a record, no write
    found = read_results(verify_out)
    assert found.get_column("verify_status").to_list() == read.statuses
    mismatched = found.filter(found.get_column("verify_status") == "mismatch")
    assert mismatched.get_column("verify_detail").to_list() == [read.detail]


@pytest.mark.parametrize("operation", ["purchase-history", "redemption-status"])
def test_returning_ai_rows_are_never_verified_and_no_get_is_sent(
    operation: str,
    tmp_path: Path,
    sandbox: SandboxServer,
    keys_in_env: dict[str, str],
) -> None:
    """Both Returning.AI operations: ``run --verify`` of the shipped sample judges each row by
    its write's answer (each echoes what was sent: ``confirmed``), never ``verified``; ``verify
    RUN_ID`` later has no answer to go by: every row ``unverifiable``, exit 0. No GET is sent
    at any point."""
    job = write_job(tmp_path / "job.toml", sandbox.url, operation=operation)
    out = tmp_path / "out.csv"
    assert run("run", SAMPLE / f"{operation}.csv", "--job", job, "--out", out, "--verify") == 0
    statuses = read_results(tmp_path / "out.verify.csv").get_column("verify_status").to_list()
    assert statuses == ["confirmed"] * 5
    assert "GET" not in _methods(sandbox, 0) and len(sandbox.state.requests) == 5

    before = len(sandbox.state.requests)
    verify_out = tmp_path / "v.csv"
    assert run("verify", _last_run(job), "--job", job, "--out", verify_out) == 0
    later = read_results(verify_out).get_column("verify_status").to_list()
    assert later == ["unverifiable"] * 5
    assert sandbox.state.requests[before:] == []
