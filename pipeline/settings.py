"""Where a component's settings came from, so a bad value is rejected where the user wrote it.

Every component has one frozen, keyword-only config dataclass with named default constants (the template
is pipeline.sink.SinkConfig) and a `validate(origin)` that raises InputError through `origin.error(key,
reason)`: `section.key: reason` at `file:line` for a value from the config file, `--flag: reason` for one
from the command line, and the bare key for one set in code. fabricscope.config builds the dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.errors import InputError


@dataclass(frozen=True, kw_only=True)
class Origin:
    """`section` of `file` (None: no config file), the line of each key written there, and the keys that
    came from command-line flags instead. A value that came from neither (a default) is named by its flag."""

    section: str
    file: str | None = None
    lines: Mapping[str, int] = field(default_factory=dict)
    flags: frozenset[str] = frozenset()
    flag_names: Mapping[str, str] = field(default_factory=dict)  # when not `--` + the key, e.g. --target
    sections: Mapping[str, str] = field(default_factory=dict)  # a key written in another section, e.g. service

    def error(self, key: str, reason: str) -> InputError:
        if key not in self.flags and self.file is not None and key in self.lines:
            section = self.sections.get(key, self.section)
            return InputError(self.file, f"{section}.{key}: {reason}", line=self.lines[key])
        return InputError(self.flag_names.get(key, flag_name(key)), reason)


IN_CODE = Origin(section="")


def flag_name(key: str) -> str:
    """The command-line flag of a setting: `ring_mb` → `--ring-mb`."""
    return "--" + key.replace("_", "-")


def split_host_port(text: str) -> tuple[str, int] | None:
    """HOST:PORT (IPv6 as [addr]:port) → (host, port), None when it is not of that form."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        return None
    return host, int(port)
