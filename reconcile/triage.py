"""Triage: what each planned request needs given the ledger's history.

Per request, vectorised over the whole plan: send it, or an outcome decided without sending
(``already_applied``, ``unknown``), with a note for the results. The rules are in ``triage``'s
docstring; ``planned`` turns what is left to send into dispatch's requests.
"""

from __future__ import annotations

import enum

import polars as pl

from reconcile import results
from reconcile.columns import REQUEST_ID
from reconcile.dispatch import PlannedRequest
from reconcile.job import Job
from reconcile.ledger import IN_FLIGHT, Ledger, fingerprints
from reconcile.outcome import RequestOutcome, Status
from reconcile.retry import NOT_REPEATED

RESENT = "re-sent: the previous run stopped while this request was in flight"


def with_fingerprints(requests: pl.DataFrame, job: Job) -> pl.DataFrame:
    """Planned requests with a ``fingerprint`` column (sha256: stable across versions)."""
    return requests.with_columns(fingerprints(job.base_url, job.operation, requests))


def triage(requests: pl.DataFrame, ledger: Ledger, job: Job, *, force: bool) -> pl.DataFrame:
    """Decide per request from the ledger's history: ``decided`` status (or null: send) and a
    ``note`` for the results.

    Applied before: ``already_applied``, unless another request changed (or may have changed)
    the same record since: then it is re-sent if repeatable, else ``unknown`` (a correction
    reverted by a later one is not "already applied"). In flight or unknown before, and not
    repeatable: ``unknown`` (a refund must never be sent twice blindly). In flight before and
    repeatable: re-sent, saying so. ``--force`` sends everything.
    """
    prior = ledger.prior(requests.get_column("fingerprint").unique().to_list())
    history = pl.DataFrame(
        {
            "fingerprint": list(prior),
            "prior_state": [p.state for p in prior.values()],
            "prior_run": [p.run_id for p in prior.values()],
            "prior_at": [p.updated_at for p in prior.values()],
            "prior_seq": [p.seq for p in prior.values()],
        },
        schema={
            "fingerprint": pl.String,
            "prior_state": pl.String,
            "prior_run": pl.String,
            "prior_at": pl.String,
            "prior_seq": pl.Int64,
        },
    )
    joined = requests.join(history, on="fingerprint", how="left", maintain_order="left")
    joined = joined.join(
        _changed_since(joined, ledger, job), on="fingerprint", how="left", maintain_order="left"
    )
    action = decide(
        pl.col("prior_state"),
        changed=pl.col("changed_run").is_not_null(),
        repeatable=pl.col("repeatable"),
        force=force,
    )
    return joined.with_columns(action.alias("action")).with_columns(
        pl.col("action")
        .replace_strict(DECIDED, default=None, return_dtype=pl.String)
        .alias("decided"),
        _note(pl.col("action")).alias("note"),
    )


class Action(enum.StrEnum):
    """What a planned request needs, given the ledger's history of the same request."""

    SEND = "send"
    """Never sent before, or sent and failed: send."""
    FORCE = "force"
    """``--force``: send whatever the history."""
    ALREADY_APPLIED = "already_applied"
    """Applied by an earlier run, and nothing changed the record since: not sent."""
    RESEND_CHANGED = "resend_changed"
    """Applied, then another request changed the record: setting it again is harmless."""
    HOLD_CHANGED = "hold_changed"
    """Applied, then the record changed, and the request must not be repeated: unknown."""
    HOLD_UNCERTAIN = "hold_uncertain"
    """In flight or unknown before, and not repeatable (a refund): unknown, never re-sent."""
    RESEND_IN_FLIGHT = "resend_in_flight"
    """In flight when a run died, and repeatable: re-sent."""
    RESEND_UNKNOWN = "resend_unknown"
    """An earlier run could not tell, and repeatable: re-sent."""


#: The outcome decided without sending (the others are sent).
DECIDED = {
    Action.ALREADY_APPLIED.value: Status.ALREADY_APPLIED.value,
    Action.HOLD_CHANGED.value: Status.UNKNOWN.value,
    Action.HOLD_UNCERTAIN.value: Status.UNKNOWN.value,
}


def decide(prior: pl.Expr, *, changed: pl.Expr, repeatable: pl.Expr, force: bool) -> pl.Expr:
    """The triage rule, one expression for every request at once: ``prior`` is the request's
    latest state in the ledger (null: never recorded), ``changed`` whether another request
    changed the same record after it was applied. tests/test_triage.py tables it."""
    applied = prior == Status.APPLIED.value
    resent = (
        pl.when(prior == IN_FLIGHT)
        .then(pl.lit(Action.RESEND_IN_FLIGHT.value))
        .when(prior == Status.UNKNOWN.value)
        .then(pl.lit(Action.RESEND_UNKNOWN.value))
    )
    if force:  # sent whatever the history; an uncertain one still says it is re-sent
        return resent.otherwise(pl.lit(Action.FORCE.value))
    return (
        pl.when(applied & changed & repeatable)
        .then(pl.lit(Action.RESEND_CHANGED.value))
        .when(applied & changed)
        .then(pl.lit(Action.HOLD_CHANGED.value))
        .when(applied)
        .then(pl.lit(Action.ALREADY_APPLIED.value))
        .when(prior.is_in([IN_FLIGHT, Status.UNKNOWN.value]) & ~repeatable)
        .then(pl.lit(Action.HOLD_UNCERTAIN.value))
        .otherwise(resent.otherwise(pl.lit(Action.SEND.value)))
    )


def _note(action: pl.Expr) -> pl.Expr:
    """What the results say about a decided or re-sent request."""
    run, at = pl.col("prior_run"), pl.col("prior_at")
    changed_run, changed_at = pl.col("changed_run"), pl.col("changed_at")
    notes = {
        Action.RESEND_CHANGED: pl.format(
            "re-sent: run {} changed this record at {}, after run {} had applied this",
            changed_run,
            changed_at,
            run,
        ),
        Action.HOLD_CHANGED: pl.format(
            "applied by run {} at {}, then run {} changed this record at {}: check it "
            "before sending it again (--force)",
            run,
            at,
            changed_run,
            changed_at,
        ),
        Action.ALREADY_APPLIED: pl.format("already applied by run {} at {}", run, at),
        Action.HOLD_UNCERTAIN: pl.format(
            "{} (run {} left it uncertain; --force re-sends)", pl.lit(NOT_REPEATED), run
        ),
        Action.RESEND_IN_FLIGHT: pl.lit(RESENT),
        Action.RESEND_UNKNOWN: pl.format(
            "re-sent: run {} could not tell whether it was applied", run
        ),
    }
    note = pl.lit(None, pl.String)
    for name, text in notes.items():
        note = pl.when(action == name.value).then(text).otherwise(note)
    return note


def _changed_since(requests: pl.DataFrame, ledger: Ledger, job: Job) -> pl.DataFrame:
    """Per fingerprint applied before: the latest other request on the same record after it
    (``changed_run``, ``changed_at``), if any. "After" is the ledger's order of writes
    (``seq``), never the stamps: two processes' clocks may disagree by an hour."""
    applied = requests.filter(pl.col("prior_state") == Status.APPLIED.value).select(
        "fingerprint", "community", pl.col("target").cast(pl.String), "prior_seq"
    )
    changes = ledger.later_changes(
        job.base_url, job.operation, applied.select("community", "target")
    )
    return (
        applied.join(changes, on=["community", "target"])
        .filter(
            (pl.col("changed_by") != pl.col("fingerprint"))
            & (pl.col("changed_seq") > pl.col("prior_seq"))
        )
        .sort("changed_seq")
        .group_by("fingerprint")
        .agg(pl.col("changed_run").last(), pl.col("changed_at").last())
    )


def decided_outcomes(triaged: pl.DataFrame) -> pl.DataFrame:
    return triaged.filter(pl.col("decided").is_not_null()).select(
        REQUEST_ID,
        pl.col("decided").alias("status"),
        pl.lit(None, pl.Int64).alias("http_status"),
        pl.col("note").alias("error"),
        pl.lit(0, pl.Int64).alias("attempts"),
    )


def planned(triaged: pl.DataFrame) -> list[PlannedRequest]:
    """The requests to send, as values for the dispatcher (the per-request part of the run)."""
    return [
        PlannedRequest(
            request_id=row[REQUEST_ID],
            community=row["community"],
            method=row["method"],
            path=row["path"],
            body=row["body"],
            target=row["target"],
            repeatable=row["repeatable"],
            fingerprint=row["fingerprint"],
            note=row["note"],
        )
        for row in triaged.filter(pl.col("decided").is_null()).iter_rows(named=True)
    ]


def outcomes_frame(outcomes: list[RequestOutcome]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            REQUEST_ID: [o.request_id for o in outcomes],
            "status": [o.status.value for o in outcomes],
            "http_status": [o.http_status for o in outcomes],
            "error": [o.error for o in outcomes],
            "attempts": [o.attempts for o in outcomes],
        },
        schema=results.OUTCOME_SCHEMA,
    )
