"""One exception tree: every error class of the packages derives from FabricscopeError and is drawn in the
docstring of pipeline/errors.py (private helpers that never leave their module excepted)."""

from __future__ import annotations

import ast
from pathlib import Path

import pipeline.errors
from collectors.snmp import BadAnswer, PollFailed
from pipeline.errors import FabricscopeError, SourceError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("collectors", "pipeline", "dashboards", "simulator", "fabricscope")
BUILTIN_ERRORS = {"Exception", "BaseException", "ValueError", "RuntimeError", "TypeError", "KeyError", "OSError"}


def error_classes() -> dict[str, list[str]]:
    """Public classes whose bases include a builtin exception or a class of the tree, by name → bases."""
    found: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    bases = [ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases]
                    if any(base in BUILTIN_ERRORS or base.endswith(("Error", "Failed")) for base in bases):
                        found[node.name] = bases
    return found


def test_every_error_class_is_in_the_tree_and_drawn() -> None:
    classes = error_classes()
    assert {name: bases for name, bases in classes.items()
            if name != "FabricscopeError" and set(bases) & BUILTIN_ERRORS} == {}
    drawing = pipeline.errors.__doc__ or ""
    assert [name for name in classes if name not in drawing] == []


def test_a_failed_poll_is_a_retriable_source_error() -> None:
    failed = PollFailed("timeout")
    assert isinstance(failed, SourceError) and isinstance(failed, FabricscopeError)
    assert failed.retriable and failed.reason == "timeout"
    assert isinstance(BadAnswer("truncated"), PollFailed) and str(BadAnswer("truncated")) == "malformed: truncated"
