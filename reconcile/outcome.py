"""What happened to a row or a request, as types: the statuses, one request's outcome, and why a
row was not this run's business.

Exit codes and inbox archiving decide from these, never from the wording of a message.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable


class Status(enum.StrEnum):
    APPLIED = "applied"
    WOULD_APPLY = "would_apply"
    INVALID = "invalid"
    REJECTED = "rejected"
    FAILED = "failed"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"
    ALREADY_APPLIED = "already_applied"


#: Called with (community, status) as each request ends (a progress bar, the console).
OnProgress = Callable[[str, Status], None]


#: Statuses that count as success for the exit code.
SUCCESS = frozenset({Status.APPLIED, Status.WOULD_APPLY, Status.ALREADY_APPLIED})


@dataclasses.dataclass(frozen=True, slots=True)
class RequestOutcome:
    """One request's end: every row of that request reports it."""

    request_id: int
    community: str
    status: Status
    http_status: int | None
    error: str | None
    attempts: int
    maybe_applied: bool = False
    """Failed, but an earlier attempt may have applied it (a 5xx after the write): the ledger
    keeps it as unknown, so later runs know the record may have changed."""


@dataclasses.dataclass(frozen=True, slots=True)
class Selection:
    """The communities a run was asked to send (``--community``); None: all of them. A row of
    another community is skipped and is not this run's business: it neither fails the exit
    code nor lets the inbox archive its file."""

    communities: frozenset[str] | None = None
