"""CONTRIBUTING.md's "Add an operation", followed to the letter: an operation module and a
sandbox module dropped into a copy of the package are the whole change. The copy lists the new
operation, validates its rows, and applies them through its emulated endpoint over real HTTP."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.helpers import ROOT

DEMO = ROOT / "tests" / "data" / "demo_operation"


@pytest.fixture(scope="module")
def package_with_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the package plus only the demo's two files (steps 1 and 2)."""
    root = tmp_path_factory.mktemp("contributor")
    package = root / "reconcile"
    shutil.copytree(ROOT / "reconcile", package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(DEMO / "operation.py", package / "operations" / "demo_note.py")
    shutil.copy(DEMO / "sandbox.py", package / "sandbox" / "demo_note.py")
    return root


def _reconcile(root: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root), "XDG_STATE_HOME": str(root / "state")}
    return subprocess.run(
        [sys.executable, "-m", "reconcile", *map(str, args)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _job(root: Path) -> Path:
    job = root / "demo.toml"
    job.write_text(
        'operation = "demo-note"\nbase_url = "https://notes.example.com"\n'
        '[communities.acme]\napi_key_env = "DEMO_KEY_ACME"\n'
        '[communities.globex]\napi_key_env = "DEMO_KEY_GLOBEX"\n',
        encoding="utf-8",
    )
    return job


def test_the_copy_runs_its_own_code_not_the_installed_package(package_with_demo: Path) -> None:
    """The subprocess imports the copy (else the test would prove nothing)."""
    found = _reconcile(package_with_demo, "operations")
    assert found.returncode == 0, found.stderr
    assert "demo-note: Demo: set an order note's text" in found.stdout
    assert "noteId" in found.stdout and "at most 200 characters" in found.stdout


def test_a_dropped_in_operation_validates_and_applies_through_its_sandbox_endpoint(
    package_with_demo: Path,
) -> None:
    """Rows are checked by the demo's schema and sent to the demo's endpoint, which the sandbox
    found by itself: a good row is applied (twice over HTTP: two communities), a bad one is a
    row error naming its column."""
    source = package_with_demo / "notes.csv"
    source.write_text(
        "community,noteId,text\nacme,n-1,Leave at the door\nglobex,n/2,Ring twice\nacme,n-3,\n",
        encoding="utf-8",
    )
    out = package_with_demo / "notes.results.csv"
    ran = _reconcile(
        package_with_demo,
        "run",
        source,
        "--job",
        _job(package_with_demo),
        "--sandbox",
        "--out",
        out,
    )
    assert ran.returncode == 1, ran.stderr  # one row invalid
    results = pl.read_csv(out, infer_schema=False)
    assert results.get_column("status").to_list() == ["applied", "applied", "invalid"]
    assert "text" in (results.get_column("error")[2] or "")
    dry = package_with_demo / "dry.csv"
    _reconcile(
        package_with_demo,
        "run",
        source,
        "--job",
        _job(package_with_demo),
        "--dry-run",
        "--out",
        dry,
    )
    requests = pl.read_csv(dry, infer_schema=False).get_column("request").to_list()
    assert requests[1].startswith("PUT /v1/notes/n%2F2")


def test_ci_run_exports_ci_before_the_tests() -> None:
    """.ci/run exports CI=1 before ``pytest`` (a plain assignment would not reach it), so the
    fixtures that fail under CI instead of skipping (no PostgreSQL, no Chromium) fail the run."""
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    exported = [i for i, line in enumerate(script) if line.strip() == "export CI=1"]
    tests = [i for i, line in enumerate(script) if line.strip().startswith("uv run pytest")]
    assert exported and tests and exported[0] < tests[0]
