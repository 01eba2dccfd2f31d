"""The one error tree of reconcile.

ReconcileError
 +-- InputError     the input file cannot be used (nothing is sent)
 +-- ConfigError    the job file or command line cannot be used (nothing is sent)
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
