"""Returning.AI documents no read: during ``run --verify`` the write's own answer is what proves
it, so each answer is judged as it comes back (:func:`reconcile.readback.confirmation`) and only
the verdict is kept, not the answer: one byte per request, plus the words of those whose answer
differs. Only for operations that declare where their answer echoes what was sent
(:meth:`~reconcile.operations.base.Operation.echoed`); for the others nothing is kept at all.
"""

from __future__ import annotations

import json

from reconcile.client import Answer
from reconcile.dispatch import PlannedRequest
from reconcile.operations.base import Operation
from reconcile.readback import RowVerdict, VerifyStatus, confirmation

_NONE, _CONFIRMED, _DIFFERS = 0, 1, 2
_CONFIRMED_VERDICT = confirmation((), {})


def declares_echo(operation: Operation) -> bool:
    """The operation says where its write's answer echoes the values sent."""
    return type(operation).echoed is not Operation.echoed


class Echoes:
    """The echo verdict of each request's successful answer, by request id (a
    :data:`reconcile.dispatch.OnAnswer` hook)."""

    def __init__(self, operation: Operation) -> None:
        self.operation = operation
        self.active = declares_echo(operation)
        self._status = bytearray()
        self._detail: dict[int, str] = {}

    def __call__(self, request: PlannedRequest, answer: Answer) -> None:
        if not self.active or not 200 <= answer.status < 300 or request.body is None:
            return
        sent = self.operation.echoed(json.loads(request.body))
        if not sent:
            return
        try:
            record = json.loads(answer.body)
        except ValueError:
            verdict = RowVerdict(
                VerifyStatus.UNVERIFIABLE, "no read documented; the write's answer is not JSON"
            )
        else:
            verdict = confirmation(sent, record)
        self._keep(request.request_id, verdict)

    def _keep(self, request_id: int, verdict: RowVerdict) -> None:
        if request_id < 0:
            return
        if request_id >= len(self._status):
            self._status.extend(bytes(request_id + 1 - len(self._status)))
        if verdict.status is VerifyStatus.CONFIRMED:
            self._status[request_id] = _CONFIRMED
            self._detail.pop(request_id, None)
        else:
            self._status[request_id] = _DIFFERS
            self._detail[request_id] = verdict.detail

    def verdict(self, request_id: int) -> RowVerdict | None:
        """The kept verdict of the request's answer; None when no answer was kept."""
        if not 0 <= request_id < len(self._status):
            return None
        status = self._status[request_id]
        if status == _CONFIRMED:
            return _CONFIRMED_VERDICT
        if status == _DIFFERS:
            return RowVerdict(VerifyStatus.UNVERIFIABLE, self._detail[request_id])
        return None

    def clear(self) -> None:
        """Forget every answer (the next input's request ids start again)."""
        self._status, self._detail = bytearray(), {}
