"""The command line contract (DESIGN.md section 7): every command has --help, bad input exits 2 with one
line that names the file or field, and nothing starts before the input is checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fabricscope.cli import COMMANDS

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def fabricscope(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fabricscope.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [name for name, _ in COMMANDS])
def test_every_command_has_help(command: str) -> None:
    done = fabricscope(command, "--help")
    assert done.returncode == 0, done.stderr
    assert "--data-dir" in done.stdout and "usage: fabricscope" in done.stdout


def test_top_level_help_lists_every_command() -> None:
    done = fabricscope("--help")
    assert done.returncode == 0
    assert all(name in done.stdout for name, _ in COMMANDS)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_broken_topology_is_rejected_with_file_and_line(tmp_path: Path) -> None:
    topology = tmp_path / "topology.yaml"
    topology.write_text("fabric: pod1\nspines: [spine1]\nleaves:\n  leaf1: {hosts: [not-a-prefix]}\n")
    out = tmp_path / "flows.jsonl"
    line = one_line_error(
        fabricscope("replay", str(SAMPLES / "mixed.pcap"), "--topology", str(topology), "--out", str(out))
    )
    assert f"{topology}:4:" in line and "not an IP prefix" in line
    assert not out.exists(), "nothing is written before the input is checked"


def test_missing_capture_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "absent.pcap"
    line = one_line_error(
        fabricscope("replay", str(missing), "--topology", str(SAMPLES / "topology.yaml"), "--out",
                    str(tmp_path / "x.jsonl"))
    )
    assert str(missing) in line


def test_not_a_capture_is_named(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.pcap"
    bogus.write_text("these are not packets\n")
    line = one_line_error(
        fabricscope("replay", str(bogus), "--topology", str(SAMPLES / "topology.yaml"), "--out",
                    str(tmp_path / "x.jsonl"))
    )
    assert str(bogus) in line and "pcap" in line


def test_bad_speed_is_named() -> None:
    line = one_line_error(
        fabricscope("replay", str(SAMPLES / "mixed.pcap"), "--topology", str(SAMPLES / "topology.yaml"),
                    "--speed", "fast")
    )
    assert "--speed" in line


def test_replay_out_writes_jsonl_flows(tmp_path: Path) -> None:
    out = tmp_path / "flows.jsonl"
    done = fabricscope("replay", str(SAMPLES / "mixed.pcap"), "--topology", str(SAMPLES / "topology.yaml"),
                       "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert len(lines) > 0
    assert f"{len(lines)} flow rows written" in done.stderr
