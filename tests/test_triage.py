"""The triage rule as a table: the ledger's history of a request -> what this run does."""

from __future__ import annotations

import polars as pl
import pytest

from reconcile.ledger import IN_FLIGHT
from reconcile.triage import DECIDED, Action, decide

CASES = [
    # prior state, changed since, repeatable, force -> action
    (None, False, True, False, Action.SEND),
    ("failed", False, False, False, Action.SEND),
    ("rejected", False, True, False, Action.SEND),
    ("applied", False, True, False, Action.ALREADY_APPLIED),
    ("applied", False, False, False, Action.ALREADY_APPLIED),
    ("applied", True, True, False, Action.RESEND_CHANGED),
    ("applied", True, False, False, Action.HOLD_CHANGED),
    (IN_FLIGHT, False, True, False, Action.RESEND_IN_FLIGHT),
    (IN_FLIGHT, False, False, False, Action.HOLD_UNCERTAIN),
    ("unknown", False, True, False, Action.RESEND_UNKNOWN),
    ("unknown", False, False, False, Action.HOLD_UNCERTAIN),
    ("applied", False, False, True, Action.FORCE),
    ("unknown", False, False, True, Action.RESEND_UNKNOWN),
    (IN_FLIGHT, False, False, True, Action.RESEND_IN_FLIGHT),
]


@pytest.mark.parametrize("force", [False, True])
def test_decide_table(force: bool) -> None:
    """Every row of the table, evaluated at once as the run does (one polars expression)."""
    cases = [c for c in CASES if c[3] is force]
    frame = pl.DataFrame(
        {
            "prior": [c[0] for c in cases],
            "changed": [c[1] for c in cases],
            "repeatable": [c[2] for c in cases],
        },
        schema={"prior": pl.String, "changed": pl.Boolean, "repeatable": pl.Boolean},
    )
    actions = frame.select(
        decide(
            pl.col("prior"), changed=pl.col("changed"), repeatable=pl.col("repeatable"), force=force
        )
    ).to_series()
    assert actions.to_list() == [c[4].value for c in cases]


def test_only_held_and_applied_requests_are_decided_without_sending() -> None:
    """A refund is never sent twice blindly: every 'hold' ends unknown; nothing else but an
    applied request is kept from the wire."""
    assert DECIDED == {
        "already_applied": "already_applied",
        "hold_changed": "unknown",
        "hold_uncertain": "unknown",
    }
