"""The demonstration operation's emulated endpoint: ``PUT /v1/notes/{noteId}`` stores the text
in its own table (copied into ``reconcile/sandbox/`` by ``tests/test_contributing.py``)."""

from __future__ import annotations

from typing import Any

from reconcile.sandbox.endpoint import ApiError, Call, Endpoint, js_trim
from reconcile.sandbox.state import SandboxState


def apply(state: SandboxState, call: Call) -> tuple[int, dict[str, Any]]:
    if (
        not isinstance(call.body, dict)
        or set(call.body) != {"text"}
        or not js_trim(str(call.body["text"]))
    ):
        raise ApiError(400, "text is required")
    notes = state.table("demoNotes")
    found = [
        n
        for n in notes
        if n["id"] == call.params["noteId"] and n["community"] == call.community["id"]
    ]
    if call.fail_mid_write:
        raise ApiError(500, "Internal server error")
    if found:
        found[0]["text"] = call.body["text"]
    else:
        notes.append(
            {
                "id": call.params["noteId"],
                "community": call.community["id"],
                "text": call.body["text"],
            }
        )
    return 200, {"id": call.params["noteId"], "text": call.body["text"]}


ENDPOINT = Endpoint(
    name="demo-note",
    method="PUT",
    path="/v1/notes/{noteId}",
    permission=None,
    apply=apply,
)
