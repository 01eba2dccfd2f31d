"""The dry run an auditor reads: every row's status, and exactly what would be sent."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from reconcile.exceptions import ConfigError
from reconcile.job import load_job
from tests.helpers import SAMPLE, read_results, run, write_csv, write_job

JOB = SAMPLE.parent / "jobs" / "purchase-history.example.toml"


class TestDryRun:
    def test_sample_file_would_apply_every_row_without_keys(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No key variables are set: a dry run needs none and sends nothing."""
        monkeypatch.delenv("RETURNING_AI_KEY_ACME", raising=False)
        out = tmp_path / "r.csv"
        assert (
            run("run", SAMPLE / "purchase-history.csv", "--job", JOB, "--out", out, "--dry-run")
            == 0
        )
        results = read_results(out)
        assert results.columns == [
            "row",
            "Community",
            "Purchase History ID",
            "Redemption Instructions",
            "Voucher Code",
            "Voucher Expiry Date",
            "Note",
            "status",
            "http_status",
            "error",
            "attempts",
            "request",
        ]
        assert set(results.get_column("status")) == {"would_apply"}
        assert results.get_column("request").to_list()[0] == (
            "PATCH /v1/purchase-histories/ORD202641612055614747 "
            '{"voucherCode":"SPRING-2026-0001","voucherExpiryDate":"31/12/2026"}'
        )

    def test_mistakes_file_reports_every_row(self, tmp_path: Path) -> None:
        out = tmp_path / "r.csv"
        assert (
            run(
                "run",
                SAMPLE / "purchase-history-mistakes.csv",
                "--job",
                JOB,
                "--out",
                out,
                "--dry-run",
            )
            == 1
        )
        results = read_results(out)
        source = pl.read_csv(SAMPLE / "purchase-history-mistakes.csv", infer_schema=False)
        assert results.height == source.height
        invalid = results.filter(pl.col("status") == "invalid")
        assert invalid.height == source.height - 1  # one row (a formula-like code) is valid
        assert invalid.get_column("error").null_count() == 0
        assert invalid.get_column("request").null_count() == invalid.height
        errors = read_results(tmp_path / "r.errors.csv")
        assert errors.height == invalid.height
        assert errors.columns[-2:] == ["status", "error"]
        # The rows of the original file, which messages such as duplicates refer to.
        assert errors.columns[0] == "row"
        assert errors.get_column("row").to_list() == invalid.get_column("row").to_list()

    def test_body_has_only_provided_fields_trimmed(self, tmp_path: Path) -> None:
        path = write_csv(
            tmp_path / "in.csv",
            "community,purchaseHistoryID,redemptionInstructions,voucherCode,voucherExpiryDate\n"
            'acme,  ORD7 ,"  Say ""hi"" \t",,\n',
        )
        out = tmp_path / "r.csv"
        assert (
            run("run", path, "--job", write_job(tmp_path / "j.toml"), "--out", out, "--dry-run")
            == 0
        )
        request = read_results(out).get_column("request").item()
        method, target, body = request.split(" ", 2)
        assert (method, target) == ("PATCH", "/v1/purchase-histories/ORD7")
        assert json.loads(body) == {"redemptionInstructions": 'Say "hi"'}

    def test_cells_excel_would_run_are_neutralised(self, tmp_path: Path) -> None:
        """OWASP CSV injection: the results file shows formulas as text; the request is exact."""
        path = write_csv(
            tmp_path / "in.csv",
            "community,purchaseHistoryID,voucherCode,voucherExpiryDate,Comment\n"
            'acme,ORD1,=1+2,31/12/2026,+cmd\nacme,ORD2,@SUM(A1),31/12/2026,-x\nacme,ORD3,"\tTAB",31/12/2026,ok\n',
        )
        out = tmp_path / "r.csv"
        assert (
            run("run", path, "--job", write_job(tmp_path / "j.toml"), "--out", out, "--dry-run")
            == 0
        )
        results = read_results(out)
        assert results.get_column("voucherCode").to_list() == ["'=1+2", "'@SUM(A1)", "'\tTAB"]
        assert results.get_column("Comment").to_list() == ["'+cmd", "'-x", "ok"]
        bodies = [json.loads(r.split(" ", 2)[2]) for r in results.get_column("request")]
        assert [b["voucherCode"] for b in bodies] == ["=1+2", "@SUM(A1)", "TAB"]

    def test_path_segment_is_percent_encoded(self) -> None:
        from reconcile.operations.base import with_encoded_segment

        frame = pl.DataFrame({"id": ["ORD1", "a/b c", "é?#"]})
        encoded = with_encoded_segment(frame, "id", "seg").get_column("seg").to_list()
        assert encoded == ["ORD1", "a%2Fb%20c", "%C3%A9%3F%23"]

    def test_results_file_is_utf8_with_bom_for_excel(self, tmp_path: Path) -> None:
        out = tmp_path / "r.csv"
        run("run", SAMPLE / "purchase-history.csv", "--job", JOB, "--out", out, "--dry-run")
        assert out.read_bytes().startswith(b"\xef\xbb\xbf")

    def test_summary_is_logged_per_community_and_status(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        run(
            "run",
            SAMPLE / "purchase-history-mistakes.csv",
            "--job",
            JOB,
            "--out",
            tmp_path / "r.csv",
            "--dry-run",
        )
        events = [
            json.loads(line)
            for line in capsys.readouterr().err.splitlines()
            if line.startswith("{")
        ]
        [summary] = [e for e in events if e["event"] == "run.summary"]
        counts = {(c["community"], c["status"]): c["rows"] for c in summary["counts"]}
        assert counts[("acme", "would_apply")] == 1
        assert counts[("initech", "invalid")] == 1


class TestJobFile:
    def test_example_job_loads(self) -> None:
        job = load_job(JOB)
        assert job.operation == "purchase-history"
        assert job.communities["globex"].rate_per_second == 2
        assert job.communities["acme"].credential_envs == {"api_key": "RETURNING_AI_KEY_ACME"}

    @pytest.mark.parametrize(
        ("text", "words"),
        [
            ('operation = "purchase-history"\n', "base_url: missing"),
            ('operation = "x"\nbase_url = "u"\nrate = 5\n', "rate: unknown key"),
            ('operation = "x"\nbase_url = "u"\nrate_per_second = 0\n', "must be a number above 0"),
            (
                'operation = "x"\nbase_url = "u"\n[communities.a]\napi_key = "secret"\n',
                "never put a key",
            ),
            ('operation = "x"\nbase_url = "u"\nmax_reject_rate = 2\n', "max_reject_rate"),
            (
                'operation = "x"\nbase_url = "u"\nrate_limit_budget_seconds = -1\n',
                "rate_limit_budget_seconds: must be a number above 0",
            ),
            ('operation = "x"\nbase_url = "api.returning.ai"\n', "not an http(s) URL"),
            (
                'operation = "x"\nbase_url = "http://api.returning.ai"\n',
                "would send the API keys unencrypted",
            ),
            ("operation = [\n", "not valid TOML"),
        ],
    )
    def test_bad_job_files_name_the_key_and_fix(
        self, tmp_path: Path, text: str, words: str
    ) -> None:
        path = tmp_path / "bad.toml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=r"bad\.toml") as caught:
            load_job(path)
        assert words in str(caught.value)

    def test_plain_http_only_on_this_machine(self, tmp_path: Path) -> None:
        job = load_job(write_job(tmp_path / "j.toml", "http://127.0.0.1:8080/"))
        assert job.base_url == "http://127.0.0.1:8080"
        with pytest.raises(ConfigError, match=r"--base-url.*unencrypted"):
            job.with_overrides(base_url="http://10.0.0.7")
        source = write_csv(
            tmp_path / "in.csv", "community,purchaseHistoryID,redemptionInstructions\nacme,ORD1,x\n"
        )
        flags = ["--job", write_job(tmp_path / "j.toml"), "--base-url", "http://10.0.0.7"]
        assert run("run", source, *flags, "--out", tmp_path / "o.csv") == 2
        assert not (tmp_path / "o.csv").exists()

    def test_unknown_operation_exits_2(self, tmp_path: Path) -> None:
        job = write_job(tmp_path / "j.toml")
        code = run(
            "run",
            SAMPLE / "purchase-history.csv",
            "--job",
            job,
            "--operation",
            "nope",
            "--dry-run",
            "--out",
            tmp_path / "o.csv",
        )
        assert code == 2

    def test_flags_override_the_file(self) -> None:
        job = load_job(JOB).with_overrides(
            rate_per_second=9.0, concurrency=7, base_url="https://x/"
        )
        assert job.base_url == "https://x"
        assert {c.rate_per_second for c in job.communities.values()} == {9.0}
        assert {c.concurrency for c in job.communities.values()} == {7}
