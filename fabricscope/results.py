"""Query results for people and programs: an aligned text table, a JSON array of objects, or CSV.

JSON and CSV are complete (every value as the store has it, times ISO 8601 with Z to the µs); the table is for
reading: times to the ms with their zone, byte counts in SI units, IP protocols by name.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from pipeline.store import QueryResult
from pipeline.units import protocol_name, shown_time, si_bytes

FORMATS = ("table", "json", "csv")


def plain_value(value: Any) -> Any:
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
        return [plain_value(item) for item in value]
    if isinstance(value, dict):
        return {_key(key): plain_value(item) for key, item in value.items()}
    return value


def _key(key: Any) -> str:
    plain = plain_value(key)
    return plain if isinstance(plain, str) else json.dumps(plain, ensure_ascii=False, default=str)


def column_names(result: QueryResult) -> list[str]:
    """The result's column names; a statement that names none (KILL QUERY ... SYNC) gets _1, _2, ..."""
    width = max([len(result.columns)] + [len(row) for row in result.rows])
    return list(result.columns) + [f"_{i + 1}" for i in range(len(result.columns), width)]


def to_json(result: QueryResult) -> str:
    columns = column_names(result)
    return json.dumps([dict(zip(columns, map(plain_value, row), strict=False)) for row in result.rows],
                      ensure_ascii=False, allow_nan=False, default=str)


def _cell(value: Any) -> str:
    """The complete text of a value (CSV): arrays and maps as JSON, nothing as the empty string."""
    plain = plain_value(value)
    if plain is None:
        return ""
    if isinstance(plain, list | dict):
        return json.dumps(plain, ensure_ascii=False, default=str)
    return str(plain)


def _shown(column: str, value: Any) -> str:
    """A value for the table, by what it is and what its column holds."""
    if isinstance(value, datetime):
        return shown_time(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        if column == "bytes" or column.endswith("_bytes"):
            return si_bytes(value)
        if column == "proto" and isinstance(value, int):
            return protocol_name(value)
    return _cell(value)


def to_table(result: QueryResult) -> str:
    columns = column_names(result)
    if not columns:
        return "(no rows)"
    cells = [[_shown(column, value) for column, value in zip(columns, row, strict=False)]
             + [""] * (len(columns) - len(row)) for row in result.rows]
    widths = [max([len(name)] + [len(row[i]) for row in cells]) for i, name in enumerate(columns)]
    lines = ["  ".join(name.ljust(width) for name, width in zip(columns, widths, strict=True)).rstrip(),
             "  ".join("-" * width for width in widths)]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
              for row in cells]
    return "\n".join(lines)


def to_csv(result: QueryResult) -> str:
    """A header line and one line per row (RFC 4180 quoting); arrays and maps as JSON text in their cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(column_names(result))
    writer.writerows([_cell(value) for value in row] for row in result.rows)
    return out.getvalue().rstrip("\n")


def render(result: QueryResult, output_format: str) -> str:
    return {"json": to_json, "csv": to_csv}.get(output_format, to_table)(result)
