"""IDs of only dots are refused before anything is built: no encoding survives every resolver."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from reconcile.sandbox import SandboxServer
from tests.helpers import read_results, run, write_job

IDS = (".", "..", " .. ", "...", "a.b", ".hidden")
REFUSED = {".", "..", " .. "}


@pytest.mark.parametrize(
    ("operation", "column", "extra", "path"),
    [
        ("voucherify-order", "orderId", ("status", "PAID"), "/v1/orders/"),
        ("voucherify-rollback", "redemptionId", None, "/v1/redemptions/"),
        ("purchase-history", "purchaseHistoryID", ("voucherCode", "V1"), "/v1/purchase-hist"),
    ],
)
def test_dots_only_path_ids_are_invalid_in_a_dry_run(
    tmp_path: Path, operation: str, column: str, extra: tuple[str, str] | None, path: str
) -> None:
    """Every operation with an ID in its path marks ``.``, ``..`` and `` .. `` invalid with a
    message saying why; ``...``, ``a.b`` and ``.hidden`` are planned as requests (where the
    operation's own ID format allows them), percent-encoded as one segment."""
    header = f"community,{column}" + (f",{extra[0]}" if extra else "")
    lines = [header] + [f'acme,"{v}"' + (f",{extra[1]}" if extra else "") for v in IDS]
    source = tmp_path / "in.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    job = write_job(tmp_path / "job.toml", operation=operation)
    out = tmp_path / "out.csv"
    run("run", source, "--job", job, "--out", out, "--dry-run")
    rows = read_results(out).sort("row").iter_rows(named=True)
    for value, row in zip(IDS, rows, strict=True):
        row["reconcile_status"] = row.get("reconcile_status", row["status"])
        if value in REFUSED:
            assert row["reconcile_status"] == "invalid", row
            assert "only dots" in row["error"] and "%2E" in row["error"], row
            assert row["request"] is None
        elif operation == "purchase-history":  # its IDs are ObjectIds or ORD...: a format error
            assert row["reconcile_status"] == "invalid", row
            assert "only dots" not in row["error"], row
        else:
            assert row["reconcile_status"] == "would_apply", row
            segment = urllib.parse.quote(value, safe="") if value != "..." else "%2E%2E%2E"
            assert row["request"].split(" ")[1].startswith(path + segment), row


@pytest.mark.usefixtures("keys_in_env")
def test_a_real_run_sends_three_dots_as_one_segment_and_never_a_dots_only_id(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """Against the sandbox: ``...`` reaches it as one encoded segment of /v1/orders/ (the
    sandbox's log holds the raw path as it arrived), while ``.`` and ``..`` rows send nothing."""
    source = tmp_path / "in.csv"
    lines = ["community,orderId,status", "acme,.,PAID", 'acme," .. ",PAID', "acme,...,PAID"]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    job = write_job(tmp_path / "job.toml", sandbox.url, operation="voucherify-order")
    run("run", source, "--job", job, "--out", tmp_path / "out.csv")
    sent = [(r["method"], r["raw_path"]) for r in sandbox.state.requests]
    assert sent and all(path.startswith("/v1/orders/%2E%2E%2E") for _, path in sent), sent
    results = read_results(tmp_path / "out.csv").sort("row")
    statuses = results.get_column("reconcile_status").to_list()  # "status" is the order's
    assert statuses[:2] == ["invalid", "invalid"] and statuses[2] != "invalid"
