"""`make bench` starts its bench: the recipe's command, run from the repository root with --help, exits 0
(run as a script, bench/collector.py could not import the bench package, and nothing noticed)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_bench_recipe_runs() -> None:
    recipe = subprocess.run(["make", "-n", "--always-make", "bench"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.splitlines()
    command = shlex.split(next(line for line in recipe if "bench" in line and "python" in line))
    assert command[0].endswith("/python")
    run = subprocess.run([sys.executable, *command[1:], "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert "usage:" in run.stdout
