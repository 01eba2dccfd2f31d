"""The names of the columns the tool adds to a file's frames, below every layer that uses them.

Each starts with ``__`` so that it can never be one of the file's own columns (a header is
trimmed text the file's author wrote; the results file names ours ``reconcile_*`` when they
clash, :mod:`reconcile.results`).
"""

from __future__ import annotations

#: Each input row's number in the file (its line for a CSV, its row for a sheet).
ROW = "__row"
#: A row's validation error in words (null: valid).
ERROR = "__error"
#: The request a valid row belongs to (rows of one request share it).
REQUEST_ID = "__request"
