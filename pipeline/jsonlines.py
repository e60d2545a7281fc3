"""JSON-lines input files (switch counters, saved gNMI notifications), read strictly.

`json.loads` alone lets through what a later stage chokes on or silently misreads: bytes that are not
UTF-8 (a traceback mid-file), `NaN`/`Infinity` (not JSON), a key written twice (the last one wins) and
nesting deep enough to exhaust the stack. Here each is a ValueError saying why, which the readers turn
into an InputError naming the file and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import InputError


def json_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of every line that is not blank; InputError if the file cannot be read."""
    try:
        handle = Path(path).open("rb")  # noqa: SIM115 - closed by the `with` below
    except OSError as exc:
        raise InputError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    with handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line


def json_value(line: bytes) -> Any:
    """The JSON value of one line; ValueError says what is wrong with it."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte 0x{line[exc.start]:02x} at column {exc.start + 1})") from None
    try:
        return json.loads(text, object_pairs_hook=_object, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise ValueError("not JSON: nested too deeply") from None


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key '{key}'")
        result[key] = value
    return result


def _constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")
