"""What Voucherify operations share: a project's X-App-Id / X-App-Token headers."""

from __future__ import annotations

import abc
from collections.abc import Mapping

from reconcile.operations.base import Operation, api_message


class VoucherifyOperation(Operation, abc.ABC):
    """A Voucherify project per community: ``app_id_env`` and ``app_token_env`` in the job."""

    credentials = ("app_id", "app_token")
    families = ("metadata",)
    #: Metadata declared as text (``metadata.code``, ``metadata.code:text``) holds codes.
    id_families = ("metadata",)

    def auth_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        return {"X-App-Id": credentials["app_id"], "X-App-Token": credentials["app_token"]}


def voucherify_message(body: bytes) -> str:
    """Voucherify errors: ``{"code", "key", "message", "details"}``: message and details."""
    import json

    try:
        data = json.loads(body)
    except ValueError:
        return api_message(body)
    if isinstance(data, dict) and data.get("message"):
        details = data.get("details")
        return f"{data['message']}: {details}" if details else str(data["message"])
    return api_message(body)
