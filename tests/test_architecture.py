"""The package's structure holds: imports point down the layers of the contract, one way.

The measures are tests/architecture.py's (every import counts: inside functions, under
``TYPE_CHECKING``, lazy); the contract is import-linter's, from ``[tool.importlinter]`` in
pyproject.toml, and a test breaks it on purpose in a copy of the package to show it is real.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests import architecture

ROOT = Path(__file__).resolve().parent.parent


def test_no_import_cycle_counting_every_import() -> None:
    """No group of the package's modules imports itself round, through any kind of import."""
    assert architecture.cycles(architecture.import_graph()) == []


def test_no_private_name_imported_across_modules() -> None:
    """A module uses only the public names of another (a ``_name`` stays where it is)."""
    assert architecture.private_imports() == []


def test_no_two_classes_share_a_name() -> None:
    """One name per concept: no class or type alias name is defined in two modules."""
    assert architecture.shared_class_names() == {}


def test_one_atomic_write_site() -> None:
    """Every file the tool writes whole goes through reconcile.atomic: one os.replace (or
    Path.replace, shutil.move) in the package, the inbox's archiving aside."""
    sites = architecture.replace_sites()
    assert len(sites) == 1, sites
    assert sites[0].startswith("reconcile.atomic:"), sites


def test_any_only_at_the_boundaries() -> None:
    """``Any`` stays at 10 uses or fewer in the whole package, where a value truly has no
    type (records are TypedDicts, wire JSON is reconcile.json_types.JSON); the issue asked
    under 80."""
    uses = architecture.any_uses()
    assert sum(uses.values()) <= 10, uses.most_common(10)


def test_function_level_imports_only_keep_heavy_modules_off_start_up() -> None:
    """An import inside a function is there only to keep a heavy third-party module (polars,
    httpx, starlette...) off the quick commands' start-up, never to hide a cycle."""
    assert architecture.needless_deferrals() == []


def test_the_sandbox_shares_no_code_with_the_tool() -> None:
    """The sandbox emulates the vendors: it imports only the server helpers and JSON types of
    the tool, never the code it is there to test (a shared bug would hide in both)."""
    graph = architecture.import_graph()
    allowed = {"reconcile.serving", "reconcile.json_types", "reconcile.version"}
    for module, imported in graph.items():
        if module.startswith("reconcile.sandbox"):
            outside = {m for m in imported if not m.startswith("reconcile.sandbox")}
            assert outside <= allowed, (module, outside - allowed)


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "reconcile", tmp_path / "reconcile", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(where: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(lint), "--no-cache"],
        cwd=where,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(where), "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_contract_holds() -> None:
    """``lint-imports`` (as .ci/run runs it) keeps every contract of pyproject.toml."""
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "added", "reported"),
    [
        # A lower layer importing a higher one: the layers contract.
        ("job.py", "import reconcile.cli", "reconcile.job -> reconcile.cli"),
        # One operation importing another: the independence contract.
        (
            "operations/redemption_status.py",
            "import reconcile.operations.purchase_history",
            "reconcile.operations.redemption_status -> reconcile.operations.purchase_history",
        ),
        # The sandbox importing the tool's rules: the forbidden contract.
        (
            "sandbox/state.py",
            "import reconcile.operations.rules",
            "reconcile.sandbox.state -> reconcile.operations.rules",
        ),
    ],
)
def test_a_forbidden_import_breaks_the_contract(
    tmp_path: Path, module: str, added: str, reported: str
) -> None:
    """The contract is real: one forbidden import, in a copy of the package, fails
    ``lint-imports`` and names the import."""
    copy = _copy(tmp_path)
    path = copy / "reconcile" / module
    path.write_text(path.read_text() + f"\n{added}  # noqa\n")
    done = _lint(copy)
    assert done.returncode != 0
    assert reported in done.stdout, done.stdout[-3000:]


def test_the_architecture_page_draws_the_contract() -> None:
    """docs/architecture.md shows the layers exactly as the contract lists them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [layers] = [c for c in config["contracts"] if c["id"] == "layers"]
    assert layers["exhaustive"] is True
    page = (ROOT / "docs" / "architecture.md").read_text()
    drawn = re.search(r"```text\n(.*?)```", page, re.DOTALL)
    assert drawn is not None, "docs/architecture.md has no ```text block of the layers"
    assert drawn.group(1).splitlines() == layers["layers"]
