"""The verify stage against the sandbox over real HTTP: writes by the CLI, then reads back
(reconcile/verification.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import polars as pl
import pytest

from reconcile.api import load_job
from reconcile.sandbox import SandboxServer
from reconcile.verification import Verification, verify_file
from tests.helpers import run, write_csv, write_job

ORDERS = (
    "community,orderId,status,amount,metadata.tier\n"
    "acme,ord_acme0001,paid,1500,gold\n"
    "acme,acme-order-2,CANCELED,,silver\n"
    "globex,ord_globex0001,FULFILLED,700,\n"
)
CAPILLARY = (
    "community,identifierName,identifierValue,id,type,deliveryStatus,lineItems.itemCode,"
    "lineItems.extendedFields.ship_last_name,extendedFields.ship_first_name\n"
    "acme,mobile,919986000586,873547608,REGULAR,SHIPPED,sku_234_2,Lee,Ann\n"
    "acme,mobile,919986000586,873547608,REGULAR,SHIPPED,sku_234_3,Kim,Ann\n"
)


def written(
    tmp_path: Path, sandbox: SandboxServer, operation: str, text: str, **top: object
) -> tuple[Path, Path]:
    """A file written through the sandbox by ``reconcile run``: (file, job)."""
    job = write_job(tmp_path / "job.toml", sandbox.url, operation=operation, **top)
    data = write_csv(tmp_path / "in.csv", text)
    assert run("run", data, "--job", job, "--out", tmp_path / "out.csv") == 0
    return data, job


def verified(data: Path, job: Path) -> Verification:
    return verify_file(data, load_job(job), environ=os.environ)


def statuses(result: Verification) -> list[str]:
    return result.verdicts.get_column("verify_status").to_list()


def test_orders_verified_after_the_read_lag(
    tmp_path: Path, sandbox: SandboxServer, keys_in_env: dict[str, str]
) -> None:
    """With a read lag, the first reads show the old orders; settling reads again until they
    match: every row verified, exit 0, and only GETs were sent by verify."""
    sandbox.state.faults.read_lag = 1.0
    data, job = written(tmp_path, sandbox, "voucherify-order", ORDERS, verify_settle_seconds=10)
    before = len(sandbox.state.requests)
    started = time.monotonic()
    result = verified(data, job)
    assert statuses(result) == ["verified"] * 3, result.verdicts
    assert result.exit_code == 0
    assert time.monotonic() - started >= 0.5  # the lag was waited out, not ignored
    methods = {r["method"] for r in sandbox.state.requests[before:]}
    assert methods == {"GET"}
    assert result.reads > 3  # some reads were repeated while settling


def test_record_changed_behind_the_tool_names_rows_and_fields(
    tmp_path: Path, sandbox: SandboxServer, keys_in_env: dict[str, str]
) -> None:
    """Another writer cancels one order and drops a metadata key of another: exactly those
    rows are mismatches naming each field with both values; exit 4; no write sent."""
    data, job = written(tmp_path, sandbox, "voucherify-order", ORDERS, verify_settle_seconds=0)
    sandbox.state.other_writer("voucherifyOrders", {"id": "ord_acme0001"}, status="CANCELED")
    sandbox.state.other_writer("voucherifyOrders", {"id": "ord_acme0002"}, metadata={})
    before = len(sandbox.state.requests)
    result = verified(data, job)
    assert statuses(result) == ["mismatch", "mismatch", "verified"]
    assert result.verdicts.get_column("verify_detail").to_list()[:2] == [
        "status: wrote PAID, read CANCELED",
        "metadata.tier: wrote silver, read nothing",
    ]
    assert result.exit_code == 4
    assert {r["method"] for r in sandbox.state.requests[before:]} == {"GET"}


def test_rollback_verified_and_not_found(
    tmp_path: Path, sandbox: SandboxServer, keys_in_env: dict[str, str]
) -> None:
    """A rolled-back redemption reads ROLLED_BACK: verified; a redemption that does not exist
    is not_found (exit 4)."""
    data, job = written(
        tmp_path,
        sandbox,
        "voucherify-rollback",
        "community,redemptionId\nacme,r_acme0001\n",
        verify_settle_seconds=0,
    )
    assert statuses(verified(data, job)) == ["verified"]
    other = write_csv(
        tmp_path / "other.csv", "community,redemptionId\nacme,r_acme0002\nacme,r_nothing\n"
    )
    result = verified(other, job)
    assert statuses(result) == ["mismatch", "not_found"]
    assert (
        result.verdicts.get_column("verify_detail")[0]
        == "status: wrote ROLLED_BACK, read SUCCEEDED"
    )
    assert result.exit_code == 4


def test_capillary_one_get_per_transaction_and_item_drift(
    tmp_path: Path, sandbox: SandboxServer, keys_in_env: dict[str, str]
) -> None:
    """Two line-item rows of one transaction are served by one GET; deliveryStatus is named
    not verifiable; a line item changed behind the tool marks only its row; a
    transaction-level change marks both."""
    data, job = written(
        tmp_path, sandbox, "capillary-transaction", CAPILLARY, verify_settle_seconds=0
    )
    before = len(sandbox.state.requests)
    result = verified(data, job)
    assert statuses(result) == ["verified", "verified"]
    assert (
        result.verdicts.get_column("verify_detail").to_list()
        == ["deliveryStatus: not verifiable (the read does not return it)"] * 2
    )
    assert [r["method"] for r in sandbox.state.requests[before:]] == ["GET"]

    def drift_item(items: list[dict[str, object]]) -> list[dict[str, object]]:
        return [
            {**i, "extendedFields": {"ship_last_name": "X"}} if i["itemCode"] == "sku_234_3" else i
            for i in items
        ]

    sandbox.state.other_writer("capillaryTransactions", {"id": 873547608}, lineItems=drift_item)
    assert statuses(verified(data, job)) == ["verified", "mismatch"]
    sandbox.state.other_writer(
        "capillaryTransactions", {"id": 873547608}, extendedFields={"ship_first_name": "Bo"}
    )
    result = verified(data, job)
    assert statuses(result) == ["mismatch", "mismatch"]
    assert all(
        d.startswith("extendedFields.ship_first_name: wrote Ann, read Bo")
        for d in result.verdicts.get_column("verify_detail").to_list()
    )


def test_returning_ai_rows_never_verified_and_no_get(
    tmp_path: Path, sandbox: SandboxServer, keys_in_env: dict[str, str]
) -> None:
    """Returning.AI documents no read: rows are unverifiable (no answer kept), and verify sends
    no request at all."""
    text = "community,purchaseHistoryID,voucherCode,voucherExpiryDate\nacme,ORDTACME00001,NEW-1,31/12/2026\n"
    data, job = written(tmp_path, sandbox, "purchase-history", text)
    before = len(sandbox.state.requests)
    result = verified(data, job)
    assert statuses(result) == ["unverifiable"]
    assert result.exit_code == 0 and result.reads == 0
    assert sandbox.state.requests[before:] == []


def test_reads_paced_no_429_at_the_key_limit(
    tmp_path: Path, sandbox: SandboxServer, keys_in_env: dict[str, str]
) -> None:
    """A key limited to N requests a second sees no 429 from a verify paced at N."""
    rows = "".join(f"acme,ord_acme000{i},PAID,,\n" for i in range(1, 6))
    data, job = written(
        tmp_path,
        sandbox,
        "voucherify-order",
        ORDERS.splitlines()[0] + "\n" + rows,
        rate_per_second=4,
        verify_settle_seconds=0,
    )
    # N a second, as the job promises (never more in any one-second window).
    sandbox.state.faults.rate_per_second, sandbox.state.faults.burst = 4.0, 4.0
    before = len(sandbox.state.requests)
    result = verified(data, job)
    assert statuses(result) == ["verified"] * 5
    assert [r["status"] for r in sandbox.state.requests[before:]] == [200] * 5


def test_revoked_key_stops_only_its_community(
    tmp_path: Path, sandbox: SandboxServer, keys_in_env: dict[str, str], monkeypatch: object
) -> None:
    """A refused credential makes that community's reads read_failed (exit 1); the other
    community's rows are still verified."""
    data, job = written(tmp_path, sandbox, "voucherify-order", ORDERS, verify_settle_seconds=0)
    with sandbox.state.lock:
        sandbox.state._apps = {
            k: v for k, v in sandbox.state._apps.items() if k[0] != "app-acme-0001"
        }
    result = verified(data, job)
    assert statuses(result) == ["read_failed", "read_failed", "verified"]
    assert result.exit_code == 1
    assert (
        pl.Series(result.verdicts.get_column("verify_detail")).str.contains("read failed").sum()
        == 2
    )


def test_cli_verify_run_id_names_changed_rows_exit_4(
    tmp_path: Path, sandbox: SandboxServer, keys_in_env: dict[str, str], capsys: object
) -> None:
    """``reconcile verify RUN_ID --job JOB --out FILE`` reads back the run's applied rows: the
    row another writer changed is a mismatch in the output (input columns kept), exit 4, and
    the sandbox logged no write during verify; ``verify FILE`` without a run does the same."""
    from reconcile.ledger import Ledger
    from tests.helpers import read_results, storage_of

    data, job = written(tmp_path, sandbox, "voucherify-order", ORDERS, verify_settle_seconds=0)
    ledger = Ledger(storage_of(job))
    [last] = ledger.runs(limit=1)
    ledger.close()
    assert run("verify", last["run_id"], "--job", job, "--out", tmp_path / "v.csv") == 0
    sandbox.state.other_writer("voucherifyOrders", {"id": "ord_globex0001"}, status="PAID")
    before = len(sandbox.state.requests)
    assert run("verify", last["run_id"], "--job", job, "--out", tmp_path / "v.csv") == 4
    assert {r["method"] for r in sandbox.state.requests[before:]} == {"GET"}
    out = read_results(tmp_path / "v.csv")
    assert out.get_column("orderId").to_list() == ["ord_acme0001", "acme-order-2", "ord_globex0001"]
    assert out.get_column("verify_status").to_list() == ["verified", "verified", "mismatch"]
    assert out.get_column("verify_detail").to_list()[2] == "status: wrote FULFILLED, read PAID"
    assert run("verify", data, "--job", job, "--out", tmp_path / "f.csv") == 4


def test_cli_verify_of_a_dry_run_exits_2_saying_nothing_was_sent(
    tmp_path: Path,
    sandbox: SandboxServer,
    keys_in_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``verify RUN_ID`` of a dry run refuses (exit 2): nothing was sent, so it says so and
    names ``verify FILE --job JOB`` to check the file; the sandbox gets no request at all."""
    from reconcile.ledger import Ledger
    from tests.helpers import storage_of

    job = write_job(tmp_path / "job.toml", sandbox.url, operation="voucherify-order")
    data = write_csv(tmp_path / "in.csv", ORDERS)
    assert run("run", data, "--job", job, "--out", tmp_path / "out.csv", "--dry-run") == 0
    ledger = Ledger(storage_of(job))
    [dry] = ledger.runs(limit=1)
    ledger.close()
    capsys.readouterr()
    assert run("verify", dry["run_id"], "--job", job, "--out", tmp_path / "v.csv") == 2
    said = capsys.readouterr().err
    assert "was a dry run: nothing was sent" in said
    assert f"reconcile verify {data} --job {job}" in said
    assert sandbox.state.requests == [] and not (tmp_path / "v.csv").exists()


def test_python_api_verify(
    tmp_path: Path, sandbox: SandboxServer, keys_in_env: dict[str, str]
) -> None:
    """``reconcile.verify(path, job, rows=...)`` reads back the chosen rows only."""
    import reconcile

    data, job = written(tmp_path, sandbox, "voucherify-order", ORDERS, verify_settle_seconds=0)
    result = reconcile.verify(data, reconcile.load_job(job), rows=[3])
    assert result.verdicts.get_column("__row").to_list() == [3]
    assert result.exit_code == 0 and result.reads == 1


def test_run_with_verify_waits_out_the_read_lag(
    tmp_path: Path, sandbox: SandboxServer, keys_in_env: dict[str, str]
) -> None:
    """``run --verify``: the writes, then every applied row read back; with a read lag inside
    verify_settle_seconds all are verified (exit 0); with a lag longer than the window the
    reads still show the old orders: mismatch, exit 4, written beside the results."""
    from tests.helpers import read_results

    sandbox.state.faults.read_lag = 0.8
    job = write_job(
        tmp_path / "job.toml", sandbox.url, operation="voucherify-order", verify_settle_seconds=10
    )
    data = write_csv(tmp_path / "in.csv", ORDERS)
    assert run("run", data, "--job", job, "--out", tmp_path / "out.csv", "--verify") == 0
    assert (
        read_results(tmp_path / "out.verify.csv").get_column("verify_status").to_list()
        == ["verified"] * 3
    )
    sandbox.state.faults.read_lag = 30
    slow = write_job(
        tmp_path / "slow.toml", sandbox.url, operation="voucherify-order", verify_settle_seconds=0.5
    )
    other = write_csv(
        tmp_path / "other.csv", "community,orderId,status\nacme,ord_acme0003,FULFILLED\n"
    )
    assert run("run", other, "--job", slow, "--out", tmp_path / "o.csv", "--verify") == 4
    verdicts = read_results(tmp_path / "o.verify.csv")
    assert verdicts.get_column("verify_detail").to_list() == [
        "status: wrote FULFILLED, read CREATED"
    ]


def _rollbacks(sandbox: SandboxServer, redemption: str) -> tuple[int, int]:
    """(rollback POSTs the sandbox received, rollbacks it committed) for one redemption."""
    posts = [r for r in sandbox.state.requests if r["method"] == "POST" and redemption in r["path"]]
    [stored] = sandbox.state.find("voucherifyRedemptions", id=redemption)
    return len(posts), stored.get("rollbacks", 0)


def test_lost_answer_after_a_committed_rollback_settles_applied(
    tmp_path: Path, sandbox: SandboxServer, keys_in_env: dict[str, str]
) -> None:
    """The rollback commits, its answer is lost (502 after the write): unknown. ``run
    --verify`` reads ROLLED_BACK, so the ledger records it applied; the next run sends nothing."""
    from reconcile.sandbox.state import FaultRule
    from tests.helpers import read_results

    sandbox.state.faults.rules.append(FaultRule("error_after", match="r_acme0003", times=1))
    job = write_job(
        tmp_path / "job.toml", sandbox.url, operation="voucherify-rollback", verify_settle_seconds=0
    )
    data = write_csv(tmp_path / "in.csv", "community,redemptionId\nacme,r_acme0003\n")
    assert run("run", data, "--job", job, "--out", tmp_path / "out.csv", "--verify") == 1
    assert read_results(tmp_path / "out.csv").get_column("status").to_list() == ["unknown"]
    assert read_results(tmp_path / "out.verify.csv").get_column("verify_status").to_list() == [
        "verified"
    ]
    assert run("run", data, "--job", job, "--out", tmp_path / "again.csv") == 0
    assert read_results(tmp_path / "again.csv").get_column("status").to_list() == [
        "already_applied"
    ]
    assert _rollbacks(sandbox, "r_acme0003") == (1, 1)


def test_failure_before_anything_settles_failed_and_is_sent_once(
    tmp_path: Path, sandbox: SandboxServer, keys_in_env: dict[str, str]
) -> None:
    """The rollback fails before the write (502, nothing committed): unknown, and a rollback
    is never re-sent blind. The read shows SUCCEEDED past the settle window: failed "not
    applied, safe to send again"; the next run sends exactly that rollback once."""
    from reconcile.sandbox.state import FaultRule
    from tests.helpers import read_results

    sandbox.state.faults.rules.append(FaultRule("error_before", match="r_acme0004", times=1))
    job = write_job(
        tmp_path / "job.toml",
        sandbox.url,
        operation="voucherify-rollback",
        verify_settle_seconds=0.5,
    )
    data = write_csv(tmp_path / "in.csv", "community,redemptionId\nacme,r_acme0004\n")
    assert run("run", data, "--job", job, "--out", tmp_path / "out.csv", "--verify") == 1
    assert read_results(tmp_path / "out.csv").get_column("status").to_list() == ["unknown"]
    assert read_results(tmp_path / "out.verify.csv").get_column("verify_status").to_list() == [
        "mismatch"
    ]
    assert _rollbacks(sandbox, "r_acme0004") == (1, 0)
    assert run("run", data, "--job", job, "--out", tmp_path / "again.csv") == 0
    assert read_results(tmp_path / "again.csv").get_column("status").to_list() == ["applied"]
    assert _rollbacks(sandbox, "r_acme0004") == (2, 1)
    assert run("run", data, "--job", job, "--out", tmp_path / "third.csv") == 0
    assert _rollbacks(sandbox, "r_acme0004") == (2, 1)


def test_verify_sample_reads_a_share_of_the_records(
    tmp_path: Path, sandbox: SandboxServer, keys_in_env: dict[str, str]
) -> None:
    """``--verify-sample 40`` on 5 orders reads 2 of them (rounded up), only those rows are in
    the output; a share outside (0, 100] is refused (exit 2)."""
    from tests.helpers import read_results

    rows = "".join(f"acme,ord_acme000{i},PAID,,\n" for i in range(1, 6))
    text = ORDERS.splitlines()[0] + "\n" + rows
    data, job = written(tmp_path, sandbox, "voucherify-order", text, verify_settle_seconds=0)
    before = len(sandbox.state.requests)
    out = tmp_path / "v.csv"
    assert run("verify", data, "--job", job, "--out", out, "--verify-sample", "40") == 0
    assert len(sandbox.state.requests) - before == 2
    assert read_results(out).get_column("verify_status").to_list() == ["verified"] * 2
    with pytest.raises(SystemExit) as refused:
        run("verify", data, "--job", job, "--verify-sample", "0")
    assert refused.value.code == 2
    assert run("run", data, "--job", job, "--verify-sample", "5") == 2
