"""Query results for people and programs: a JSON array of objects, or an aligned text table."""

from __future__ import annotations

import ipaddress
import json
import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from pipeline.store import QueryResult

FORMATS = ("table", "json")


def _plain(value: Any) -> Any:
    """A JSON-able value for any ClickHouse type, losing nothing a reader needs.

    Times in ISO 8601 with their zone, Z for UTC (a naive datetime from the driver is UTC, never shown
    zone-less); UUIDs, addresses (an IPv4-mapped IPv6 as the IPv4), Decimals (exact) and Time as text;
    bytes as UTF-8 text with any other byte escaped; arrays, tuples, maps and named tuples as JSON arrays
    and objects; NaN and infinities as null (JSON has none).
    """
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, ipaddress.IPv6Address):
        return str(value.ipv4_mapped or value)
    if isinstance(value, ipaddress.IPv4Address | UUID | Decimal | timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {_key(key): _plain(item) for key, item in value.items()}
    return value


def _key(key: Any) -> str:
    plain = _plain(key)
    return plain if isinstance(plain, str) else json.dumps(plain, ensure_ascii=False, default=str)


def _columns(result: QueryResult) -> list[str]:
    """The result's column names; a statement that names none (KILL QUERY ... SYNC) gets _1, _2, ..."""
    width = max([len(result.columns)] + [len(row) for row in result.rows])
    return list(result.columns) + [f"_{i + 1}" for i in range(len(result.columns), width)]


def to_json(result: QueryResult) -> str:
    columns = _columns(result)
    return json.dumps([dict(zip(columns, map(_plain, row), strict=False)) for row in result.rows],
                      ensure_ascii=False, allow_nan=False, default=str)


def _cell(value: Any) -> str:
    plain = _plain(value)
    if plain is None:
        return ""
    if isinstance(plain, list | dict):
        return json.dumps(plain, ensure_ascii=False, default=str)
    return str(plain)


def to_table(result: QueryResult) -> str:
    columns = _columns(result)
    if not columns:
        return "(no rows)"
    cells = [[_cell(value) for value in row] + [""] * (len(columns) - len(row)) for row in result.rows]
    widths = [max([len(name)] + [len(row[i]) for row in cells]) for i, name in enumerate(columns)]
    lines = ["  ".join(name.ljust(width) for name, width in zip(columns, widths, strict=True)).rstrip(),
             "  ".join("-" * width for width in widths)]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
              for row in cells]
    return "\n".join(lines)


def render(result: QueryResult, output_format: str) -> str:
    return to_json(result) if output_format == "json" else to_table(result)
