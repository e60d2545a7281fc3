"""The allocator settings every command starts with."""

from __future__ import annotations

import os
import subprocess
import sys

ARROW_POOL = ("from fabricscope.allocator import return_freed_memory; return_freed_memory(); "
              "import pyarrow; print(pyarrow.default_memory_pool().backend_name)")


def _arrow_pool(environment: dict[str, str]) -> str:
    """The pool Arrow chose in a fresh interpreter (it reads the variable once, at its first import)."""
    run = subprocess.run([sys.executable, "-c", ARROW_POOL], env=environment, capture_output=True, text=True,
                         check=True)
    return run.stdout.strip()


def test_arrow_buffers_come_from_the_system_allocator() -> None:
    """mimalloc, Arrow's default, kept ~280 MB an embedded store's inserts had freed (bench.flow_memory)."""
    environment = {name: value for name, value in os.environ.items() if name != "ARROW_DEFAULT_MEMORY_POOL"}
    assert _arrow_pool(environment) == "system"


def test_an_operators_choice_of_arrow_pool_is_kept() -> None:
    assert _arrow_pool({**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}) == "mimalloc"
