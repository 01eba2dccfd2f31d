"""Applying rows against the sandbox over real HTTP: every outcome the dispatch issue names."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest

from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from reconcile.sandbox.state import FaultRule
from tests.helpers import ROOT, credential_env, orders_csv, read_results, run, run_orders, write_job

FAST = {"backoff_base_seconds": 0.01}


def statuses(out: Path) -> list[str]:
    return read_results(out).get_column("status").to_list()


def run_one(
    sandbox: SandboxServer,
    tmp_path: Path,
    target: str,
    rules: list[FaultRule],
    **settings: object,
) -> tuple[int, dict[str, str]]:
    """One acme row changing ``target``, sent to the sandbox under fault ``rules``: the exit
    code and the row's result."""
    sandbox.state.faults.rules = rules
    job = write_job(tmp_path / "j.toml", sandbox.url, **settings)
    code, results = run_orders(job, [("acme", target)], tmp_path)
    return code, results.row(0, named=True)


def instructions(sandbox: SandboxServer, purchase_id: str) -> str:
    [found] = [
        r for r in sandbox.state.snapshot()["purchaseHistories"] if r["purchaseID"] == purchase_id
    ]
    return found["product"]["redemptionInstructions"]


def sent_paths(sandbox: SandboxServer) -> list[str]:
    return [r["path"] for r in sandbox.state.requests]


@pytest.mark.usefixtures("keys_in_env")
class TestOutcomes:
    def test_several_communities_applied(self, sandbox: SandboxServer, tmp_path: Path) -> None:
        rows = [(c, order_id(c, n)) for n in range(10) for c in ("acme", "globex")]
        source = orders_csv(tmp_path / "in.csv", rows)
        out = tmp_path / "out.csv"
        assert (
            run("run", source, "--job", write_job(tmp_path / "j.toml", sandbox.url), "--out", out)
            == 0
        )
        results = read_results(out)
        assert set(results.get_column("status")) == {"applied"}
        assert set(results.get_column("http_status")) == {"200"}
        assert set(results.get_column("attempts")) == {"1"}
        assert all(instructions(sandbox, i) == "Collect at the desk" for _, i in rows)
        communities = {r["community"] for r in sandbox.state.requests}
        assert communities == {"acme", "globex"}
        assert all(r["method"] == "PATCH" for r in sandbox.state.requests)
        from reconcile.version import __version__

        agents = {r["headers"]["user-agent"] for r in sandbox.state.requests}
        assert agents == {f"reconcile/{__version__} (+bulk corrections)"}
        assert {r["headers"]["content-type"] for r in sandbox.state.requests} == {
            "application/json"
        }

    def test_rejected_rows_carry_the_api_message(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        source = orders_csv(
            tmp_path / "in.csv", [("acme", "ORD999"), ("acme", order_id("acme", 1))]
        )
        out = tmp_path / "out.csv"
        assert (
            run("run", source, "--job", write_job(tmp_path / "j.toml", sandbox.url), "--out", out)
            == 1
        )
        results = read_results(out)
        first = results.row(0, named=True)
        assert (first["status"], first["http_status"], first["error"]) == (
            "rejected",
            "404",
            "Purchase history not found",
        )
        assert results.row(1, named=True)["status"] == "applied"

    def test_revoked_key_stops_only_its_community(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        sandbox.state.revoke("sandbox-key-acme")
        rows = [(c, order_id(c, n)) for n in range(8) for c in ("acme", "globex")]
        source = orders_csv(tmp_path / "in.csv", rows)
        out = tmp_path / "out.csv"
        job = write_job(tmp_path / "j.toml", sandbox.url, concurrency=2)
        assert run("run", source, "--job", job, "--out", out) == 1
        results = read_results(out)
        acme = results.filter(pl.col("community") == "acme")
        globex = results.filter(pl.col("community") == "globex")
        assert set(globex.get_column("status")) == {"applied"}
        failed = acme.filter(pl.col("status") == "failed")
        skipped = acme.filter(pl.col("status") == "skipped")
        assert 1 <= failed.height <= 2  # at most the in-flight requests hit the wall
        assert failed.height + skipped.height == 8
        assert set(failed.get_column("http_status")) == {"401"}
        assert set(skipped.get_column("error")) == {"not sent: community key rejected with 401"}
        assert sum(r["status"] == 401 for r in sandbox.state.requests) == failed.height

    def test_unset_key_variable_stops_the_run_before_anything_is_sent(
        self,
        sandbox: SandboxServer,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """An unset key of one community of two is a pre-flight error (issue 30): exit 2
        naming the variable, not a night of 'failed' rows; the other community is not sent
        either, and no results are written."""
        monkeypatch.delenv(credential_env("api_key", "globex"))
        rows = [("acme", order_id("acme", 1)), ("globex", order_id("globex", 1))]
        out = tmp_path / "out.csv"
        job = write_job(tmp_path / "j.toml", sandbox.url)
        assert run("run", orders_csv(tmp_path / "in.csv", rows), "--job", job, "--out", out) == 2
        err = capsys.readouterr().err
        assert "environment variable RECONCILE_TEST_API_KEY_GLOBEX (api_key) is unset" in err
        assert "ACME" not in err
        assert sandbox.state.requests == []
        assert not out.exists()

    def test_429_pauses_and_retries(self, sandbox: SandboxServer, tmp_path: Path) -> None:
        """The server allows 2/s; the job asks 50/s: 429s are waited out, not counted, all applied."""
        sandbox.state.faults.rate_per_second = 2
        sandbox.state.faults.burst = 2
        rows = [("acme", order_id("acme", n)) for n in range(6)]
        out = tmp_path / "out.csv"
        job = write_job(tmp_path / "j.toml", sandbox.url, max_attempts=1, **FAST)
        assert run("run", orders_csv(tmp_path / "in.csv", rows), "--job", job, "--out", out) == 0
        results = read_results(out)
        assert set(results.get_column("status")) == {"applied"}
        log = sandbox.state.requests
        limited = [r for r in log if r["status"] == 429]
        assert limited, "the test must provoke 429s"
        # After a 429 (Retry-After >= 1 s) the community waits before its next request.
        first_429 = limited[0]["time"]
        after = [r["time"] for r in log if r["time"] > first_429]
        assert after and min(after) - first_429 >= 0.9
        # attempts counts requests sent, 429s included, although max_attempts is 1.
        assert results.get_column("attempts").cast(pl.Int64).sum() == len(log)

    def test_a_long_retry_after_stops_the_community_instead_of_waiting(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        """A spent daily quota (429, Retry-After one hour) must not hold a nightly run: the
        community stops at once, its other rows are skipped, other communities go on."""
        first = order_id("acme", 1)
        sandbox.state.faults.rules = [
            FaultRule(kind="error_before", status=429, match=first, retry_after=3600)
        ]
        rows = [("acme", order_id("acme", n)) for n in range(1, 6)] + [
            ("globex", order_id("globex", 1))
        ]
        job = write_job(
            tmp_path / "j.toml", sandbox.url, concurrency=1, rate_limit_budget_seconds=60
        )
        started = time.monotonic()
        code, results = run_orders(job, rows, tmp_path)
        assert time.monotonic() - started < 30
        assert code == 1
        statuses = results.get_column("status").to_list()
        assert statuses == ["failed", "skipped", "skipped", "skipped", "skipped", "applied"]
        failed = results.row(0, named=True)
        assert failed["http_status"] == "429"
        assert "over rate_limit_budget_seconds = 60" in failed["error"]
        assert "run again later" in results.row(1, named=True)["error"]
        acme_sent = [r for r in sandbox.state.requests if r.get("community") == "acme"]
        assert len(acme_sent) == 1

    def test_429s_hold_a_community_at_most_its_rate_limit_budget(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        """Retry-After 1 s on every answer: waited out until 2.5 s of 429s, then stopped."""
        target = order_id("acme", 2)
        code, result = run_one(
            sandbox,
            tmp_path,
            target,
            [FaultRule(kind="error_before", status=429, match=target, retry_after=1)],
            rate_limit_budget_seconds=2.5,
        )
        assert code == 1
        # Two 429s waited out (2 s), the third would pass 2.5 s.
        assert (result["status"], result["attempts"], result["http_status"]) == (
            "failed",
            "3",
            "429",
        )
        assert len(sandbox.state.requests) == 3

    def test_502_before_commit_is_retried(self, sandbox: SandboxServer, tmp_path: Path) -> None:
        target = order_id("acme", 3)
        code, result = run_one(
            sandbox,
            tmp_path,
            target,
            [FaultRule(kind="error_before", status=502, match=target, times=2)],
            **FAST,
        )
        assert code == 0
        assert (result["status"], result["attempts"], result["http_status"]) == (
            "applied",
            "3",
            "200",
        )
        assert instructions(sandbox, target) == "Collect at the desk"

    def test_502_after_commit_is_retried(self, sandbox: SandboxServer, tmp_path: Path) -> None:
        target = order_id("acme", 4)
        code, result = run_one(
            sandbox,
            tmp_path,
            target,
            [FaultRule(kind="error_after", status=502, match=target, times=1)],
            **FAST,
        )
        assert code == 0
        assert (result["status"], result["attempts"]) == ("applied", "2")
        assert [r["committed"] for r in sandbox.state.requests] == [True, True]

    def test_409_after_an_ambiguous_failure_is_unknown(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        target = order_id("acme", 5)
        code, result = run_one(
            sandbox,
            tmp_path,
            target,
            [
                FaultRule(kind="error_after", status=502, match=target, times=1),
                FaultRule(kind="error_before", status=409, match=target, after=1, times=1),
            ],
            **FAST,
        )
        assert code == 1
        assert result["status"] == "unknown"
        assert "an earlier attempt may have applied it" in result["error"]

    def test_dropped_connection_is_retried(self, sandbox: SandboxServer, tmp_path: Path) -> None:
        target = order_id("acme", 6)
        code, result = run_one(
            sandbox, tmp_path, target, [FaultRule(kind="drop", match=target, times=1)], **FAST
        )
        assert code == 0
        assert result["attempts"] == "2"

    def test_retries_exhausted_is_failed_with_last_error(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        target = order_id("acme", 7)
        code, result = run_one(
            sandbox,
            tmp_path,
            target,
            [FaultRule(kind="error_before", status=503, match=target)],
            max_attempts=3,
            **FAST,
        )
        assert code == 1
        assert (result["status"], result["attempts"], result["http_status"]) == (
            "failed",
            "3",
            "503",
        )
        assert "gave up after 3 attempts" in result["error"]
        assert len(sandbox.state.requests) == 3

    def test_reject_guard_stops_a_community(self, sandbox: SandboxServer, tmp_path: Path) -> None:
        """A systematic mistake costs a handful of rows, not the file."""
        rows = [("acme", f"ORDMISSING{n}") for n in range(40)] + [("globex", order_id("globex", 1))]
        out = tmp_path / "out.csv"
        job = write_job(
            tmp_path / "j.toml", sandbox.url, concurrency=1, guard_window=10, max_reject_rate=0.5
        )
        assert run("run", orders_csv(tmp_path / "in.csv", rows), "--job", job, "--out", out) == 1
        results = read_results(out)
        acme = results.filter(pl.col("community") == "acme")
        assert acme.filter(pl.col("status") == "rejected").height == 6  # more than 50% of 10
        skipped = acme.filter(pl.col("status") == "skipped")
        assert skipped.height == 34
        assert "check the file for a systematic mistake" in skipped.get_column("error")[0]
        assert results.filter(pl.col("community") == "globex").get_column("status").to_list() == [
            "applied"
        ]

    def test_rate_never_exceeded_in_any_second(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        """rate_per_second = 4: no one-second window, the first included, sees a fifth request."""
        rows = [(c, order_id(c, n)) for n in range(12) for c in ("acme", "globex")]
        out = tmp_path / "out.csv"
        job = write_job(tmp_path / "j.toml", sandbox.url, rate_per_second=4, concurrency=8)
        assert run("run", orders_csv(tmp_path / "in.csv", rows), "--job", job, "--out", out) == 0
        times: dict[str, list[float]] = defaultdict(list)
        for entry in sandbox.state.requests:
            times[entry["community"]].append(entry["time"])
        for community, stamps in times.items():
            stamps.sort()
            assert len(stamps) == 12
            for i in range(len(stamps) - 4):
                assert stamps[i + 4] - stamps[i] > 1.0, (community, i, stamps)


def test_canary_key_never_written(
    sandbox: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A key appears in no log line (debug included), result or errors file."""
    canary = "canary-7f3a9c-DO-NOT-LEAK"
    sandbox.state.data["communities"][0]["keys"].append(
        {"key": canary, "permissions": ["purchase-history"]}
    )
    sandbox.state._keys[canary] = (
        sandbox.state.data["communities"][0],
        frozenset({"purchase-history"}),
    )
    monkeypatch.setenv(credential_env("api_key", "acme"), canary)
    monkeypatch.setenv(credential_env("api_key", "globex"), canary + "-wrong")
    rows = [("acme", order_id("acme", 1)), ("acme", "ORD404"), ("globex", order_id("globex", 1))]
    out = tmp_path / "out.csv"
    run(
        "run",
        orders_csv(tmp_path / "in.csv", rows),
        "--job",
        write_job(tmp_path / "j.toml", sandbox.url),
        "--out",
        out,
        "--verbose",
    )
    captured = capsys.readouterr()
    assert statuses(out) == ["applied", "rejected", "failed"]
    assert canary not in captured.out + captured.err
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "ledger.sqlite3" for p in written)
    for path in written:  # results, errors file, manifest, ledger
        assert canary.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_cleanly(
    sandbox: SandboxServer, tmp_path: Path, signum: int, code: int
) -> None:
    """SIGTERM/SIGINT: no new requests, in-flight ones finish, the rest skipped, results
    written, exit 143/130."""
    sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=0.2)]
    rows = [("acme", order_id("acme", n)) for n in range(60)]
    out = tmp_path / "out.csv"
    job = write_job(tmp_path / "j.toml", sandbox.url, rate_per_second=10, concurrency=2)
    env = {
        **os.environ,
        credential_env("api_key", "acme"): "sandbox-key-acme",
        credential_env("api_key", "globex"): "x",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconcile.cli",
            "run",
            str(orders_csv(tmp_path / "in.csv", rows)),
            "--job",
            str(job),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while len(sandbox.state.requests) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    assert process.returncode == code, err.decode()
    results = read_results(out)
    counts = dict(results.group_by("status").len().iter_rows())
    assert counts.get("skipped", 0) > 0 and counts.get("applied", 0) >= 5
    assert set(results.filter(pl.col("status") == "skipped").get_column("error")) == {
        "not sent: run interrupted"
    }
    # Every row reported applied is applied in the sandbox, and nothing else was sent.
    applied = (
        results.filter(pl.col("status") == "applied").get_column("purchaseHistoryID").to_list()
    )
    assert all(instructions(sandbox, i) == "Collect at the desk" for i in applied)
    committed = [r["path"].rsplit("/", 1)[1] for r in sandbox.state.requests if r.get("committed")]
    assert sorted(committed) == sorted(applied)
    assert any(
        json.loads(line).get("event") == "run.interrupted"
        for line in err.decode().splitlines()
        if line.startswith("{")
    )


@pytest.mark.usefixtures("keys_in_env")
def test_a_dry_run_sends_nothing(sandbox: SandboxServer, tmp_path: Path) -> None:
    """An auditor's dry run against a live base URL: every row shown, not one request made."""
    rows = [(c, order_id(c, n)) for n in range(5) for c in ("acme", "globex")]
    out = tmp_path / "out.csv"
    job = write_job(tmp_path / "j.toml", sandbox.url)
    assert (
        run("run", orders_csv(tmp_path / "in.csv", rows), "--job", job, "--out", out, "--dry-run")
        == 0
    )
    assert set(statuses(out)) == {"would_apply"}
    assert sandbox.state.requests == []


CERTIFICATE = ROOT / "tests" / "data" / "self-signed.crt"


@pytest.mark.usefixtures("keys_in_env")
def test_tls_certificates_are_verified(tmp_path: Path) -> None:
    """An HTTPS API on 127.0.0.1 with a self-signed certificate: reconcile refuses to talk to
    it (nothing sent), while a client that trusts that certificate gets answers from it."""
    import http.server
    import ssl
    import threading

    import httpx

    answered: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PATCH(self) -> None:
            answered.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERTIFICATE, ROOT / "tests" / "data" / "self-signed.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}"
    try:
        job = write_job(tmp_path / "j.toml", url, max_attempts=2, **FAST)
        code, results = run_orders(job, [("acme", "ORD1")], tmp_path)
        assert code == 1
        result = results.row(0, named=True)
        # Nothing reached the server: retried (safe), then failed, saying why.
        assert (result["status"], result["attempts"]) == ("failed", "2")
        assert "certificate" in result["error"].lower()
        assert "may have applied" not in result["error"]
        assert answered == []
        # The server itself is fine: trusting its certificate, a client is answered.
        trusted = ssl.create_default_context(cafile=str(CERTIFICATE))
        assert httpx.patch(f"{url}/v1/ping", verify=trusted).status_code == 200
        assert answered == ["/v1/ping"]
    finally:
        server.shutdown()
