"""Query results for people and programs: a JSON array of objects, or an aligned text table."""

from __future__ import annotations

import ipaddress
import json
import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pipeline.store import QueryResult

FORMATS = ("table", "json")


def _plain(value: Any) -> Any:
    """A JSON-able value: times in ISO 8601 (Z for UTC), addresses as text, NaN as null."""
    if isinstance(value, datetime | date):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value.ipv4_mapped or value) if isinstance(value, ipaddress.IPv6Address) else str(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def to_json(result: QueryResult) -> str:
    return json.dumps([dict(zip(result.columns, map(_plain, row), strict=True)) for row in result.rows],
                      ensure_ascii=False)


def to_table(result: QueryResult) -> str:
    if not result.columns:
        return "(no rows)"
    cells = [[("" if value is None else str(_plain(value))) for value in row] for row in result.rows]
    widths = [max([len(name)] + [len(row[i]) for row in cells]) for i, name in enumerate(result.columns)]
    lines = ["  ".join(name.ljust(width) for name, width in zip(result.columns, widths, strict=True)).rstrip(),
             "  ".join("-" * width for width in widths)]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
              for row in cells]
    return "\n".join(lines)


def render(result: QueryResult, output_format: str) -> str:
    return to_json(result) if output_format == "json" else to_table(result)
