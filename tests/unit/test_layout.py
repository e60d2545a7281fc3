"""The package boundaries DESIGN.md section 1 draws: collectors → pipeline ← dashboards, the wiring apart."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("collectors", "pipeline", "dashboards", "simulator", "fabricscope")

# package -> packages it must never import
FORBIDDEN: dict[str, set[str]] = {
    "pipeline": {"collectors", "dashboards", "simulator", "fabricscope"},
    "collectors": {"dashboards", "simulator", "fabricscope"},
    "dashboards": {"collectors", "simulator", "fabricscope"},
    "simulator": {"collectors", "dashboards", "fabricscope", "pipeline.detect"},
}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions count too)."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def crossings(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module in imported_modules(path):
            if any(module == banned or module.startswith(banned + ".") for banned in FORBIDDEN[package]):
                found.append(f"{path.relative_to(ROOT)} imports {module}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_the_layout_allows(package: str) -> None:
    assert crossings(package) == []


def test_a_forbidden_import_is_found(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from collectors.pcapfile import open_capture\n", encoding="utf-8")
    assert imported_modules(module) == {"collectors.pcapfile"}


def test_every_package_exists() -> None:
    assert all((ROOT / package / "__init__.py").is_file() for package in PACKAGES)
