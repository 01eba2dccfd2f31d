"""Helpers the tests share: job files, CSV inputs, CLI runs read back, test credentials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from reconcile import cli
from reconcile.operations import Operation
from reconcile.validate import ERROR, validate

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
KEYS = {"acme": "sandbox-key-acme", "globex": "sandbox-key-globex"}
APPS = {
    "acme": ("app-acme-0001", "sandbox-token-acme"),
    "globex": ("app-globex-0001", "sandbox-token-globex"),
}
GENERATED = 300


def orders_csv(
    path: Path, rows: list[tuple[str, str]], instructions: str = "Collect at the desk"
) -> Path:
    """A CSV of (community, purchaseHistoryID) rows that change the instructions."""
    lines = ["community,purchaseHistoryID,redemptionInstructions"]
    quoted = '"' + instructions.replace('"', '""') + '"'
    lines += [f"{c},{i},{quoted}" for c, i in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_job(path: Path, base_url: str = "https://api.example.invalid", **top: Any) -> Path:
    """A job file for acme and globex, keys in RECONCILE_TEST_KEY_*; ``top`` adds settings."""
    settings = {
        "operation": "purchase-history",
        "base_url": base_url,
        "rate_per_second": 50,
        "concurrency": 4,
        "state_dir": str(path.parent / "state"),
        **top,
    }
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    for name in ("acme", "globex"):
        upper = name.upper()
        lines += [
            f"[communities.{name}]",
            f'api_key_env = "RECONCILE_TEST_KEY_{upper}"',
            f'app_id_env = "RECONCILE_TEST_APP_ID_{upper}"',
            f'app_token_env = "RECONCILE_TEST_APP_TOKEN_{upper}"',
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def read_results(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False, encoding="utf8")


def run(*args: str | Path) -> int:
    """The CLI, in-process, as a user would call it."""
    return cli.main([str(a) for a in args])


def run_orders(
    job: Path, rows: list[tuple[str, str]], folder: Path, *flags: str
) -> tuple[int, pl.DataFrame]:
    """The CLI on an orders CSV of ``rows`` (written in ``folder``): exit code and results."""
    out = folder / "out.csv"
    code = run("run", orders_csv(folder / "in.csv", rows), "--job", job, "--out", out, *flags)
    return code, read_results(out)


def validation_errors(
    operation: Operation, *rows: dict[str, str | None], families: tuple[str, ...] = ()
) -> list[str | None]:
    """Validate rows (missing keys = empty cells; ``families``: family columns such as
    ``metadata.location``) for the communities acme and globex; each row's error text."""
    names = operation.column_names + list(families)
    records = [{c: r.get(c) for c in names} for r in rows]
    frame = pl.DataFrame(records, schema=dict.fromkeys(names, pl.String))
    frame = frame.with_row_index("__row", offset=2)
    headers = {c: c for c in names}
    return validate(frame, operation, ["acme", "globex"], headers).get_column(ERROR).to_list()


def run_sample(tmp_path: Path, sample: str, job: str, out: Path, *flags: str) -> int:
    """The CLI on a shipped sample file and example job, its ledger under ``tmp_path``."""
    return run(
        "run",
        SAMPLE / sample,
        "--job",
        ROOT / "jobs" / job,
        "--out",
        out,
        "--state-dir",
        tmp_path,
        *flags,
    )
