"""The README cannot drift from the code: every CLI option and operation column is documented."""

from __future__ import annotations

import re

from reconcile import cli
from reconcile.operations import OPERATIONS
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _options() -> set[str]:
    options: set[str] = set()
    parser = cli._parser()
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for sub in action.choices.values():
            for sub_action in sub._actions:
                options.update(
                    o for o in sub_action.option_strings if o.startswith("--") and o != "--help"
                )
    return options


def test_every_cli_option_is_in_the_readme() -> None:
    missing = sorted(o for o in _options() if o not in README)
    assert not missing


def test_every_operation_column_is_in_the_readme() -> None:
    for operation in OPERATIONS.values():
        assert f"### {operation.name} columns" in README
        for column in operation.columns:
            assert re.search(rf"\| `{column.name}` \|", README), column.name


def test_the_two_setup_commands_are_there() -> None:
    assert (
        "uv run reconcile run sample_data/purchase-history.csv --job jobs/purchase-history.example.toml --sandbox"
        in README
    )
    assert "uv run pytest" in README
