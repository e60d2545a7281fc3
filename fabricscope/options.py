"""Command-line flags for the fields of the components' config dataclasses.

A flag defaults to None ("not given"), so fabricscope.config can tell it from a config-file value; its help
ends with the dataclass field's default, so no command module repeats a default as a literal.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

NOT_GIVEN = None


def field_default(cls: type, key: str) -> Any:
    """The default of `cls`'s field `key` (a dataclass)."""
    for item in dataclasses.fields(cls):
        if item.name == key:
            if item.default is not dataclasses.MISSING:
                return item.default
            if item.default_factory is not dataclasses.MISSING:
                return item.default_factory()
    raise KeyError(f"{cls.__name__} has no field {key!r} with a default")


def shown(value: Any) -> str:
    """A default as --help shows it."""
    if value is None or value in ((), ""):
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        return ", ".join(str(item) for item in value)
    return str(value)


def option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, key: str, *flags: str,
           help: str, default: Any = NOT_GIVEN, **kwargs: Any) -> argparse.Action:
    """Add the flag(s) of `cls.key` (dest `key`), "(default: ...)" from the dataclass appended to `help`.
    `default` is only for an environment variable that stands in for the flag."""
    text = f"{help} (default: {shown(field_default(cls, key))})".replace("%", "%%")
    return parser.add_argument(*flags, dest=key, default=default, help=text, **kwargs)
