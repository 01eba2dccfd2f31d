"""reconcile: validate a file of order corrections against an API's rules and apply it.

The Python API (``reconcile.api``), importable from here::

    import reconcile

    job = reconcile.load_job("jobs/purchase-history.example.toml")
    summary = reconcile.run("sample_data/purchase-history.csv", job, "out/ph.csv", dry_run=True)

Names are loaded on first use, so ``import reconcile`` (and the CLI's quick commands) stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconcile.version import __version__

if TYPE_CHECKING:
    from reconcile.api import RunSummary, Validation, load_job, run, validate_file, verify

__all__ = [
    "RunSummary",
    "Validation",
    "__version__",
    "load_job",
    "run",
    "validate_file",
    "verify",
]


def __getattr__(name: str) -> object:
    if name in __all__:
        from reconcile import api

        return getattr(api, name)
    raise AttributeError(f"module 'reconcile' has no attribute {name!r}")
