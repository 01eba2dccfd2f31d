"""Triage: what each planned request needs given the ledger's history.

Per request, vectorised over the whole plan: send it, or an outcome decided without sending
(``already_applied``, ``unknown``), with a note for the results. The rules are in ``triage``'s
docstring; ``planned`` turns what is left to send into dispatch's requests.
"""

from __future__ import annotations

import polars as pl

from reconcile import results
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
        },
        schema={
            "fingerprint": pl.String,
            "prior_state": pl.String,
            "prior_run": pl.String,
            "prior_at": pl.String,
        },
    )
    joined = requests.join(history, on="fingerprint", how="left", maintain_order="left")
    joined = joined.join(
        _changed_since(joined, ledger, job), on="fingerprint", how="left", maintain_order="left"
    )
    state = pl.col("prior_state")
    uncertain = state.is_in([IN_FLIGHT, Status.UNKNOWN.value])
    superseded = (state == Status.APPLIED.value) & pl.col("changed_run").is_not_null()
    return joined.with_columns(
        pl.when(pl.lit(force))
        .then(pl.lit(None, pl.String))
        .when(superseded & pl.col("repeatable"))
        .then(pl.lit(None, pl.String))
        .when(superseded)
        .then(pl.lit(Status.UNKNOWN.value))
        .when(state == Status.APPLIED.value)
        .then(pl.lit(Status.ALREADY_APPLIED.value))
        .when(uncertain & ~pl.col("repeatable"))
        .then(pl.lit(Status.UNKNOWN.value))
        .alias("decided"),
        pl.when(~pl.lit(force) & superseded & pl.col("repeatable"))
        .then(
            pl.format(
                "re-sent: run {} changed this record at {}, after run {} had applied this",
                pl.col("changed_run"),
                pl.col("changed_at"),
                pl.col("prior_run"),
            )
        )
        .when(~pl.lit(force) & superseded)
        .then(
            pl.format(
                "applied by run {} at {}, then run {} changed this record at {}: check it "
                "before sending it again (--force)",
                pl.col("prior_run"),
                pl.col("prior_at"),
                pl.col("changed_run"),
                pl.col("changed_at"),
            )
        )
        .when(~pl.lit(force) & (state == Status.APPLIED.value))
        .then(pl.format("already applied by run {} at {}", pl.col("prior_run"), pl.col("prior_at")))
        .when(~pl.lit(force) & uncertain & ~pl.col("repeatable"))
        .then(
            pl.format(
                "{} (run {} left it uncertain; --force re-sends)",
                pl.lit(NOT_REPEATED),
                pl.col("prior_run"),
            )
        )
        .when(state == IN_FLIGHT)
        .then(pl.lit(RESENT))
        .when(state == Status.UNKNOWN.value)
        .then(
            pl.format("re-sent: run {} could not tell whether it was applied", pl.col("prior_run"))
        )
        .alias("note"),
    )


def _changed_since(requests: pl.DataFrame, ledger: Ledger, job: Job) -> pl.DataFrame:
    """Per fingerprint applied before: the latest other request on the same record after it
    (``changed_run``, ``changed_at``), if any."""
    applied = requests.filter(pl.col("prior_state") == Status.APPLIED.value).select(
        "fingerprint", "community", pl.col("target").cast(pl.String), "prior_at"
    )
    changes = ledger.later_changes(
        job.base_url, job.operation, applied.select("community", "target")
    )
    return (
        applied.join(changes, on=["community", "target"])
        .filter(
            (pl.col("changed_by") != pl.col("fingerprint"))
            & (pl.col("changed_at") > pl.col("prior_at"))
        )
        .sort("changed_at")
        .group_by("fingerprint")
        .agg(pl.col("changed_run").last(), pl.col("changed_at").last())
    )


def decided_outcomes(triaged: pl.DataFrame) -> pl.DataFrame:
    return triaged.filter(pl.col("decided").is_not_null()).select(
        "__request",
        pl.col("decided").alias("status"),
        pl.lit(None, pl.Int64).alias("http_status"),
        pl.col("note").alias("error"),
        pl.lit(0, pl.Int64).alias("attempts"),
    )


def planned(triaged: pl.DataFrame) -> list[PlannedRequest]:
    """The requests to send, as values for the dispatcher (the per-request part of the run)."""
    return [
        PlannedRequest(
            request_id=row["__request"],
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
            "__request": [o.request_id for o in outcomes],
            "status": [o.status.value for o in outcomes],
            "http_status": [o.http_status for o in outcomes],
            "error": [o.error for o in outcomes],
            "attempts": [o.attempts for o in outcomes],
        },
        schema=results.OUTCOME_SCHEMA,
    )
