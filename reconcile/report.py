"""The self-contained HTML report of a run (and its read-back section)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import polars as pl

from reconcile import atomic
from reconcile.dispatch import SendEvent
from reconcile.outcome import Status
from reconcile.results import error_kinds, summary
from reconcile.run_types import Manifest

STATUS_ORDER = [s.value for s in Status]
#: Bar colours per status in the report (the results workbook uses lighter fills of the same).
STATUS_INK = {
    "applied": "#2e7d32",
    "would_apply": "#1565c0",
    "already_applied": "#66bb6a",
    "invalid": "#c62828",
    "rejected": "#e53935",
    "failed": "#ef6c00",
    "unknown": "#f9a825",
    "skipped": "#9e9e9e",
}
TOP_ERRORS = 10


def write_report(
    path: Path, manifest: Manifest, outcomes: pl.DataFrame, events: Sequence[SendEvent]
) -> None:
    """One self-contained HTML file (inline CSS and SVG, no script, no network)."""
    counts = summary(outcomes)
    communities = sorted(set(counts.get_column("community")))
    statuses = [s for s in STATUS_ORDER if s in set(counts.get_column("status"))]
    cell = {(c, s): n for c, s, n in counts.iter_rows()}
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>reconcile run {escape(manifest['run_id'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>reconcile run <code>{escape(manifest['run_id'])}</code></h1>",
        "<p class='meta'>"
        + " · ".join(
            escape(str(x))
            for x in (
                manifest["operation"],
                "dry run" if manifest["dry_run"] else "real run",
                manifest["input"]["path"],
                f"{manifest['started_at']} → {manifest['ended_at']}",
                f"exit code {manifest['exit_code']}",
                *(f"header {k}: {v}" for k, v in (manifest.get("extra_headers") or {}).items()),
            )
        )
        + "</p>",
        "<h2>Rows per community and status</h2><table id='counts'><thead><tr><th>community</th>",
        *(f"<th>{escape(s)}</th>" for s in statuses),
        "<th>total</th></tr></thead><tbody>",
    ]
    for community in communities:
        parts.append(f"<tr><th>{escape(community)}</th>")
        for status in statuses:
            number = cell.get((community, status), 0)
            parts.append(
                f"<td data-community='{escape(community)}' data-status='{escape(status)}'>{number}</td>"
            )
        total = sum(cell.get((community, s), 0) for s in statuses)
        parts.append(
            f"<td data-community='{escape(community)}' data-status='total'>{total}</td></tr>"
        )
    parts.append(
        "</tbody><tfoot><tr><th>all</th>"
        + "".join(
            f"<td data-status='{escape(s)}' data-community='all'>"
            f"{sum(cell.get((c, s), 0) for c in communities)}</td>"
            for s in statuses
        )
        + f"<td data-status='total' data-community='all'>{outcomes.height}</td></tr></tfoot></table>"
    )
    parts.append(_bar_chart(communities, statuses, cell))
    parts.append(_top_errors(outcomes))
    if events:
        parts.append(_timeline(events))
    parts.append("</body></html>")
    atomic.write_text(path, "".join(parts))


def _bar_chart(
    communities: list[str], statuses: list[str], cell: dict[tuple[str, str], int]
) -> str:
    width, bar, gap, left = 640, 26, 14, 110
    largest = max([sum(cell.get((c, s), 0) for s in statuses) for c in communities] or [1]) or 1
    height = len(communities) * (bar + gap) + 40
    svg = [f"<h2>Chart</h2><svg id='chart' width='{width}' height='{height}' role='img'>"]
    for index, community in enumerate(communities):
        y = 10 + index * (bar + gap)
        svg.append(f"<text x='0' y='{y + 18}'>{escape(community)}</text>")
        x = float(left)
        for status in statuses:
            number = cell.get((community, status), 0)
            if not number:
                continue
            w = (width - left - 10) * number / largest
            svg.append(
                f"<rect x='{x:.1f}' y='{y}' width='{w:.1f}' height='{bar}' "
                f"fill='{STATUS_INK.get(status, '#777')}'><title>{escape(community)} "
                f"{escape(status)}: {number}</title></rect>"
            )
            x += w
    legend_y = height - 12
    for index, status in enumerate(statuses):
        x = index * 105
        svg.append(
            f"<rect x='{x}' y='{legend_y - 10}' width='10' height='10' fill='{STATUS_INK.get(status, '#777')}'/>"
            f"<text x='{x + 14}' y='{legend_y}' class='small'>{escape(status)}</text>"
        )
    svg.append("</svg>")
    return "".join(svg)


def _top_errors(outcomes: pl.DataFrame) -> str:
    """The :data:`TOP_ERRORS` most frequent kinds of error, "and N more kinds", then every kind
    in a table of its own (grouped by rule: the cell's value is not part of the kind)."""
    kinds = error_kinds(outcomes)
    if kinds.height == 0:
        return "<h2>Most frequent errors</h2><p>None.</p>"

    def table(frame: pl.DataFrame, table_id: str) -> str:
        rows = "".join(
            f"<tr><td class='n'>{n}</td><td>{escape(status)}</td><td>{escape(kind)}</td>"
            f"<td>{', '.join(str(r) for r in examples)}</td></tr>"
            for kind, n, examples, status in frame.select(
                "kind", "rows", "examples", "status"
            ).iter_rows()
        )
        return (
            f"<table id='{table_id}'><thead><tr><th>rows</th><th>status</th><th>error</th>"
            f"<th>example rows</th></tr></thead><tbody>{rows}</tbody></table>"
        )

    parts = ["<h2>Most frequent errors</h2>", table(kinds.head(TOP_ERRORS), "errors")]
    if kinds.height > TOP_ERRORS:
        parts.append(
            f"<p class='small'>… and {kinds.height - TOP_ERRORS} more kinds: every kind is "
            "in the table below.</p>"
        )
        parts.append(f"<h2>Every kind of error ({kinds.height})</h2>")
        parts.append(table(kinds, "all-errors"))
    return "".join(parts)


def _timeline(events: Sequence[SendEvent]) -> str:
    """Requests per second over the run; 429 answers and retries marked."""
    start = min(e.at for e in events)
    seconds = int(max(e.at for e in events) - start) + 1
    sent, limited, retried = [0] * seconds, [0] * seconds, [0] * seconds
    for event in events:
        second = int(event.at - start)
        sent[second] += 1
        limited[second] += event.http_status == 429
        retried[second] += event.retry
    width, height, bottom = 640, 160, 140
    step = width / seconds
    peak = max(sent) or 1
    svg = [
        "<h2>Requests over time</h2>",
        f"<p class='small'>{len(events)} requests in {seconds} s; "
        f"<span class='limited'>{sum(limited)} answered 429</span>; "
        f"<span class='retried'>{sum(retried)} retries</span>.</p>",
        f"<svg id='timeline' width='{width}' height='{height}' role='img'>",
    ]
    for second in range(seconds):
        x = second * step
        for value, colour in (
            (sent[second], "#1565c0"),
            (retried[second], "#ef6c00"),
            (limited[second], "#c62828"),
        ):
            if value:
                h = (bottom - 10) * value / peak
                svg.append(
                    f"<rect x='{x:.1f}' y='{bottom - h:.1f}' width='{max(step - 1, 1):.1f}' "
                    f"height='{h:.1f}' fill='{colour}'><title>second {second}: {value}</title></rect>"
                )
    svg.append(f"<text x='0' y='{height - 4}' class='small'>0 s</text>")
    svg.append(f"<text x='{width - 40}' y='{height - 4}' class='small'>{seconds} s</text></svg>")
    return "".join(svg)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:60em}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
td[data-status]{text-align:right}.meta,.small{color:#555;font-size:.9em}
.limited{color:#c62828}.retried{color:#ef6c00}.n{text-align:right}
svg text{font-size:12px}
"""


#: The report's verification section lists this many mismatching rows (the verify file has all).
VERIFY_SHOWN_ROWS = 100
_VERIFICATION = re.compile(r"<!-- verification -->.*?<!-- /verification -->", re.DOTALL)


def write_verification(
    path: Path, record: Mapping[str, Any], wrong: Sequence[Mapping[str, Any]]
) -> None:
    """Put a read-back's section in the run's report (replacing an earlier one's): who, when,
    counts per ``verify_status``, the number of reads and the mismatching rows (``wrong``:
    ``row``, ``community``, ``verify_status``, ``verify_detail``; at most
    :data:`VERIFY_SHOWN_ROWS` shown)."""
    counts = "".join(
        f"<tr><th>{escape(status)}</th><td data-verify='{escape(status)}'>{n}</td></tr>"
        for status, n in record["counts"].items()
    )
    rows = "".join(
        f"<tr><td class='n'>{escape(str(w['row']))}</td><td>{escape(str(w['community'] or ''))}"
        f"</td><td>{escape(str(w['verify_status']))}</td>"
        f"<td>{escape(str(w['verify_detail'] or ''))}</td></tr>"
        for w in wrong[:VERIFY_SHOWN_ROWS]
    )
    more = record.get("wrong_rows", len(wrong)) - min(len(wrong), VERIFY_SHOWN_ROWS)
    listed = (
        "<table id='mismatches'><thead><tr><th>row</th><th>community</th><th>verify_status</th>"
        f"<th>verify_detail</th></tr></thead><tbody>{rows}</tbody></table>"
        + (f"<p class='small'>… and {more} more in the verify file.</p>" if more > 0 else "")
        if rows
        else "<p>None: the API holds what every row read back says.</p>"
    )
    meta = " · ".join(
        escape(str(x))
        for x in (
            f"{record['at']} by {record['by']} ({record['source']})",
            f"{record['reads']} reads",
            f"exit code {record['exit_code']}",
            f"verify file {record['verify_file']} (SHA-256 {record['verify_sha256']})",
        )
    )
    section = (
        "<!-- verification --><section id='verification'><h2>Read-back verification</h2>"
        f"<p class='meta'>{meta}</p><table id='verify-counts'><thead><tr><th>verify_status</th>"
        f"<th>rows</th></tr></thead><tbody>{counts}</tbody></table>"
        f"<h3>Rows the API does not hold as written</h3>{listed}</section><!-- /verification -->"
    )
    text = _VERIFICATION.sub("", path.read_text(encoding="utf-8"))
    at = text.rfind("</body>")
    text = text[:at] + section + text[at:] if at >= 0 else text + section
    atomic.write_text(path, text)
