"""YAML loading that remembers line numbers, so a bad file is rejected with file, line and reason.

Every input YAML (topology, scenario, --config, the dashboard's auth file) comes through `load_yaml`, so it is
the one place where anything PyYAML can throw (bytes that are not UTF-8, a value its constructors refuse such
as `2026-02-30`, nesting deep enough to exhaust the stack) becomes an InputError instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import InputError


class LineDict(dict[str, Any]):
    """A mapping from a YAML file with the line of itself and of each key (1-based)."""

    line: int
    key_lines: dict[str, int]


class LineList(list[Any]):
    """A sequence from a YAML file with the line of itself and of each item (1-based)."""

    line: int
    item_lines: list[int]


class _LineLoader(yaml.SafeLoader):
    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A value a constructor refuses (`!!int x`, a 30th of February) names its line, not a traceback."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            tag = node.tag.rsplit(":", 1)[-1]
            raise InputError(self.name, f"invalid {tag} value: {exc}", line=node.start_mark.line + 1) from exc

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:  # type: ignore[override]
        result = LineDict()
        result.line = node.start_mark.line + 1
        result.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool):
                raise InputError(self.name, "mapping keys must be scalars", line=key_node.start_mark.line + 1)
            key = str(key)
            if key in result:
                raise InputError(self.name, f"duplicate key '{key}'", line=key_node.start_mark.line + 1)
            result[key] = self.construct_object(value_node, deep=True)
            result.key_lines[key] = value_node.start_mark.line + 1
        return result

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> LineList:
        result = LineList(self.construct_object(child, deep=True) for child in node.value)
        result.line = node.start_mark.line + 1
        result.item_lines = [child.start_mark.line + 1 for child in node.value]
        return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _LineLoader.construct_sequence)


def load_yaml(path: str | Path, error: type[InputError] = InputError) -> LineDict:
    """Parse a YAML file whose top level is a mapping; raise `error` naming file and line on any fault."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise error(name, f"cannot read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(name, f"not UTF-8 text (byte 0x{raw[exc.start]:02x})",
                    line=raw.count(b"\n", 0, exc.start) + 1) from exc
    try:
        document = _parse(text, name)
    except InputError as exc:
        raise error(exc.source, exc.reason, line=exc.line) from exc
    except yaml.MarkedYAMLError as exc:
        raise error(name, f"invalid YAML: {exc.problem}",
                    line=exc.problem_mark.line + 1 if exc.problem_mark else None) from exc
    except yaml.reader.ReaderError as exc:
        raise error(name, f"invalid YAML: character #x{exc.character:04x} is not allowed",
                    line=text.count("\n", 0, exc.position) + 1) from exc
    except yaml.YAMLError as exc:
        raise error(name, f"invalid YAML: {exc}") from exc
    except RecursionError as exc:
        raise error(name, "invalid YAML: nested too deeply") from exc
    if not isinstance(document, LineDict):
        raise error(name, "top level must be a mapping", line=1)
    return document


def _parse(text: str, name: str) -> Any:
    loader = _LineLoader(text)  # checks the characters already: inside the caller's `try`
    loader.name = name
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def line_of(container: LineDict | LineList, key: str | int) -> int:
    """Line of a key (mapping) or item (sequence), falling back to the container's own line."""
    if isinstance(container, LineDict) and isinstance(key, str):
        return container.key_lines.get(key, container.line)
    if isinstance(container, LineList) and isinstance(key, int) and 0 <= key < len(container.item_lines):
        return container.item_lines[key]
    return container.line
