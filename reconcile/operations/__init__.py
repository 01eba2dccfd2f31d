"""The API operations reconcile can apply: one module each, registered here."""

from __future__ import annotations

from reconcile.exceptions import ConfigError
from reconcile.operations import (
    capillary_transaction,
    purchase_history,
    redemption_status,
    voucherify_order,
    voucherify_rollback,
)
from reconcile.operations.base import Classified, Column, Operation, Verdict

OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        purchase_history.OPERATION,
        redemption_status.OPERATION,
        voucherify_order.OPERATION,
        voucherify_rollback.OPERATION,
        capillary_transaction.OPERATION,
    )
}


def get_operation(name: str) -> Operation:
    """The operation called ``name``, or a ConfigError listing the known ones."""
    try:
        return OPERATIONS[name]
    except KeyError:
        known = ", ".join(sorted(OPERATIONS))
        raise ConfigError(f"unknown operation {name!r}: use one of {known}") from None


__all__ = ["OPERATIONS", "Classified", "Column", "Operation", "Verdict", "get_operation"]
