"""The API operations reconcile can apply: one module each, found here by discovery.

A module of this package that defines ``OPERATION`` (an :class:`Operation`) is an operation; no
list elsewhere names it (CONTRIBUTING.md: "Add an operation").
"""

from __future__ import annotations

import importlib
import pkgutil

from reconcile.exceptions import ConfigError
from reconcile.operations.base import Classified, Column, Operation, Verdict


def _discover() -> dict[str, Operation]:
    found: dict[str, Operation] = {}
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        operation = getattr(importlib.import_module(f"{__name__}.{module}"), "OPERATION", None)
        if isinstance(operation, Operation):
            found[operation.name] = operation
    return found


OPERATIONS: dict[str, Operation] = _discover()


def get_operation(name: str) -> Operation:
    """The operation called ``name``, or a ConfigError listing the known ones."""
    try:
        return OPERATIONS[name]
    except KeyError:
        known = ", ".join(sorted(OPERATIONS))
        raise ConfigError(f"unknown operation {name!r}: use one of {known}") from None


__all__ = ["OPERATIONS", "Classified", "Column", "Operation", "Verdict", "get_operation"]
