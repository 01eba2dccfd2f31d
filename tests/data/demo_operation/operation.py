"""A demonstration operation (CONTRIBUTING.md, "Add an operation"): ``PUT /v1/notes/{noteId}``
of a made-up notes API that sets an order note's text. Copied into ``reconcile/operations/`` by
``tests/test_contributing.py``, it is found there with nothing else in the tree naming it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reconcile.lazy import pa, pl
from reconcile.operations import rules
from reconcile.operations.base import (
    BearerKeyOperation,
    Column,
    request_lines,
    with_encoded_segment,
    with_json_object,
)

MAX_TEXT = 200


class DemoNote(BearerKeyOperation):
    name = "demo-note"
    summary = "Demo: set an order note's text (a made-up API, for CONTRIBUTING.md)"
    conflict_key = ("community", "noteId")
    columns = (
        Column("community", True, "required; a community of the job file"),
        Column("noteId", True, "required; the note to change", kind="id"),
        Column("text", True, f"required; at most {MAX_TEXT} characters"),
    )

    def column_rules(self, family_columns: Sequence[str]) -> dict[str, pa.Column]:
        return {
            "noteId": rules.record_id(),
            "text": pa.Column(
                str, nullable=False, checks=[rules.not_empty(), rules.max_chars(MAX_TEXT)]
            ),
        }

    def requests(self, valid: pl.DataFrame, options: Mapping[str, Any]) -> pl.DataFrame:
        frame = with_encoded_segment(valid, "noteId", "__segment")
        frame = with_json_object(frame, {"text": pl.col("text")}, "__body")
        return request_lines(
            frame,
            target=pl.col("noteId"),
            method="PUT",
            path=pl.lit("/v1/notes/") + pl.col("__segment"),
            body=pl.col("__body"),
            repeatable=pl.lit(True),  # setting a text twice leaves the same note
        )


OPERATION = DemoNote()
