"""Incidents (`fabricscope events`) for people and programs.

The table gives one line per incident that fits a terminal: when, what, where, whether it is still open, then
the detector's summary less what the columns say, the jobs and what its details hold (how many flows, links,
iterations; not the raw JSON), cut to the width.
JSON carries every column, `details` as the object it is; CSV every column, `details` as its JSON text.
"""

from __future__ import annotations

import json
from typing import Any

from fabricscope.results import column_names, plain_value, to_csv
from pipeline.store import QueryResult
from pipeline.units import shown_time

TERMINAL_WIDTH = 120
TABLE_COLUMNS = ("time", "kind", "link", "state")
MIN_SUMMARY = 30  # the details' counts are left out before the summary gets shorter than this
ELLIPSIS = "…"
_SEPARATOR = "  "


def _details(text: Any) -> Any:
    """The details column as an object; text that is not JSON stays text."""
    if not isinstance(text, str) or not text:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def details_counts(details: Any) -> list[str]:
    """How many records each list in the details holds ('top flows: 3'), not the records."""
    if not isinstance(details, dict):
        return []
    return [f"{key.replace('_', ' ')}: {len(value)}" for key, value in details.items()
            if isinstance(value, list) and value and all(isinstance(item, dict) for item in value)]


def short_summary(summary: str, where: str, job: str) -> str:
    """The detector's summary without what the line says elsewhere: a lead naming the link or device
    ('congestion on leaf4-spine2 down: ') and a trailing list of the jobs."""
    lead, sep, rest = summary.partition(": ")
    if sep and where and where.split()[0] in lead:
        summary = rest
    return summary.removesuffix(f", jobs {', '.join(job.split(','))}") if job else summary


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + ELLIPSIS


def _where(row: dict[str, Any]) -> str:
    link = row.get("link") or row.get("device") or ""
    direction = row.get("direction")
    return f"{link} {direction}" if link and direction in ("up", "down") else str(link)


def _text(summary: str, job: str, counts: list[str], room: int) -> str:
    """Summary, then the jobs and the details' counts: the jobs always, the counts while the summary keeps
    MIN_SUMMARY characters; the summary is cut to what is left."""
    jobs = [f"jobs: {job}"] if job else []
    parts = jobs + counts
    if room - len(_tail(parts)) < min(MIN_SUMMARY, len(summary)):
        parts = jobs
    tail = _tail(parts)
    return _fit(summary, max(MIN_SUMMARY // 2, room - len(tail))) + tail


def _tail(parts: list[str]) -> str:
    return f" | {'; '.join(parts)}" if parts else ""


def to_lines(result: QueryResult, width: int = TERMINAL_WIDTH) -> str:
    """The incidents as an aligned table, one line each, none longer than `width`."""
    if not result.rows:
        return "(no incidents)"
    rows = [dict(zip(column_names(result), row, strict=False)) for row in result.rows]
    fixed = [[shown_time(row["ts"]), str(row.get("kind", "")), _where(row), str(row.get("state", ""))]
             for row in rows]
    widths = [max(len(name), *(len(cells[i]) for cells in fixed)) for i, name in enumerate(TABLE_COLUMNS)]
    room = width - sum(widths) - len(_SEPARATOR) * len(widths)
    lines = [_SEPARATOR.join([*(n.ljust(w) for n, w in zip(TABLE_COLUMNS, widths, strict=True)), "summary"])]
    for row, cells in zip(rows, fixed, strict=True):
        job = str(row.get("job") or "")
        summary = short_summary(str(row.get("summary") or ""), cells[2], job)
        text = _text(summary, job, details_counts(_details(row.get("details"))), room)
        line = _SEPARATOR.join([*(c.ljust(w) for c, w in zip(cells, widths, strict=True)), text])
        lines.append(_fit(line.rstrip(), width))
    return "\n".join(lines)


def to_json(result: QueryResult) -> str:
    """Every column of every incident; `details` as a JSON object, times ISO 8601 with Z."""
    columns = column_names(result)
    incidents = []
    for row in result.rows:
        incident = {column: plain_value(value) for column, value in zip(columns, row, strict=False)}
        if "details" in incident:
            incident["details"] = _details(incident["details"])
        incidents.append(incident)
    return json.dumps(incidents, ensure_ascii=False, allow_nan=False, default=str)


def render(result: QueryResult, output_format: str, width: int = TERMINAL_WIDTH) -> str:
    if output_format == "json":
        return to_json(result)
    if output_format == "csv":
        return to_csv(result)
    return to_lines(result, width)
