"""The one error tree of reconcile.

ReconcileError
 +-- InputError     the input file cannot be used (nothing is sent)
 +-- ConfigError    the job file or command line cannot be used (nothing is sent)
 |    +-- ApprovalError  a plan cannot be approved, rejected or applied as asked
 |         +-- PlanStateError  ... because of where it stands (not submitted, withdrawn,
 |         |                   decided, applied): the console answers 409 Conflict
 |         +-- NoteError       ... because its note is unusable (too long): 400 Bad Request
 +-- RunLockedError another run of the same job holds the lock
"""

from __future__ import annotations


class ReconcileError(Exception):
    """Base class: every error reconcile raises on purpose."""


class InputError(ReconcileError):
    """The input file is unusable as a whole: the run stops before anything is sent."""


class ConfigError(ReconcileError):
    """The job file or the command line is unusable: the run stops before anything is sent."""


class RunLockedError(ReconcileError):
    """Another run of the same job is in progress."""


class ApprovalError(ConfigError):
    """A plan cannot be approved, rejected or applied as asked: nothing is recorded or sent."""


class PlanStateError(ApprovalError):
    """The plan is not in a state that allows what was asked: never submitted, withdrawn,
    already decided, or already applied. Nothing is recorded or sent."""


class NoteError(ApprovalError):
    """A decision's or withdrawal's note cannot be recorded (over MAX_NOTE_CHARS): nothing is
    recorded; the same decision with a shorter note goes through."""
