"""Returning.AI rows during ``run --verify``: the write's own answer, kept at send time, confirms
them (reconcile/echoes.py); real HTTP to the sandbox, and the keeper's logic on its own."""

from __future__ import annotations

import json
from pathlib import Path

from reconcile.client import Answer
from reconcile.dispatch import PlannedRequest
from reconcile.echoes import Echoes
from reconcile.operations import get_operation
from reconcile.readback import VerifyStatus
from reconcile.sandbox import SandboxServer
from tests.helpers import read_results, run, write_csv, write_job

ROWS = (
    "community,purchaseHistoryID,voucherCode,voucherExpiryDate,redemptionInstructions\n"
    "acme,ORDTACME00001,NEW-1,31/12/2026,\n"
    "acme,ORDTACME00002,,,Collect at the desk\n"
)


def test_run_verify_confirms_returning_ai_rows_by_their_write_answer(
    tmp_path: Path, sandbox: SandboxServer, keys_in_env: dict[str, str]
) -> None:
    """``run --verify`` of purchase-history rows: each PATCH's answer echoed what was sent, so
    the rows are ``confirmed`` (never ``verified``) and no GET is sent. Run again, the rows are
    already applied: no answer this time, so they are ``unverifiable`` (still no GET)."""
    job = write_job(tmp_path / "job.toml", sandbox.url)
    data = write_csv(tmp_path / "in.csv", ROWS)
    assert run("run", data, "--job", job, "--out", tmp_path / "out.csv", "--verify") == 0
    verdicts = read_results(tmp_path / "out.verify.csv")
    assert verdicts.get_column("verify_status").to_list() == ["confirmed", "confirmed"]
    assert (
        verdicts.get_column("verify_detail").to_list()
        == ["the write's answer echoes every value sent (no read documented)"] * 2
    )
    assert [r["method"] for r in sandbox.state.requests] == ["PATCH", "PATCH"]

    assert run("run", data, "--job", job, "--out", tmp_path / "again.csv", "--verify") == 0
    assert (
        read_results(tmp_path / "again.csv").get_column("status").to_list()
        == ["already_applied"] * 2
    )
    again = read_results(tmp_path / "again.verify.csv")
    assert again.get_column("verify_status").to_list() == ["unverifiable"] * 2
    assert "no answer of the write kept" in again.get_column("verify_detail")[0]
    assert [r["method"] for r in sandbox.state.requests] == ["PATCH", "PATCH"]


def _request(request_id: int, body: dict[str, object]) -> PlannedRequest:
    return PlannedRequest(request_id, "acme", "PATCH", "/v1/x", json.dumps(body), True)


def _answer(status: int, body: object) -> Answer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Answer(status, raw, None)


def test_kept_answers_judge_each_request_and_keep_only_the_verdict() -> None:
    """An echoing 2xx answer confirms its request; one that differs keeps the difference in
    words (unverifiable); a body that is not JSON is unverifiable; error answers and requests
    never answered keep nothing. Only a byte per request is kept for the confirmed ones."""
    echoes = Echoes(get_operation("purchase-history"))
    sent = {"voucherCode": "NEW-1", "voucherExpiryDate": "31/12/2026"}
    stored = {"voucherCode": "NEW-1", "voucherExpiryDate": "2026-12-31T00:00:00.000Z"}
    echoes(_request(3, sent), _answer(200, {"data": stored}))
    echoes(_request(4, sent), _answer(200, {"data": {**stored, "voucherCode": "OLD"}}))
    echoes(_request(5, sent), _answer(200, b"<html>proxy</html>"))
    echoes(_request(6, sent), _answer(502, {"data": stored}))
    confirmed, differs, garbled = (echoes.verdict(i) for i in (3, 4, 5))
    assert confirmed is not None and confirmed.status is VerifyStatus.CONFIRMED
    assert differs is not None and differs.status is VerifyStatus.UNVERIFIABLE
    assert "voucherCode: wrote NEW-1, read OLD" in differs.detail
    assert garbled is not None and garbled.status is VerifyStatus.UNVERIFIABLE
    assert echoes.verdict(6) is None and echoes.verdict(99) is None
    assert len(echoes._status) == 6 and set(echoes._detail) == {4, 5}
    echoes(_request(4, sent), _answer(200, {"data": stored}))  # a retry's answer echoes
    assert echoes.verdict(4) is confirmed and set(echoes._detail) == {5}
    echoes.clear()
    assert echoes.verdict(3) is None


def test_operations_with_a_read_keep_no_answer() -> None:
    """Voucherify has a documented read: its write answers are never parsed nor kept."""
    echoes = Echoes(get_operation("voucherify-order"))
    assert not echoes.active
    echoes(_request(1, {"status": "PAID"}), _answer(200, {"status": "PAID"}))
    assert echoes.verdict(1) is None and len(echoes._status) == 0
