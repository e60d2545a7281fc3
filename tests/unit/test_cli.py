"""The command line contract (DESIGN.md section 7): every command has --help, bad input exits 2 with one
line that names the file or field, and nothing starts before the input is checked."""

from __future__ import annotations

import json
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


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated embedded store, made in a process of its own (chdb serves one directory per process)."""
    directory = tmp_path_factory.mktemp("query")
    subprocess.run([sys.executable, "-c", "import sys\nfrom pipeline.migrate import migrate\n"
                    "from pipeline.store import Store, StoreConfig, embedded_dsn\n"
                    "with Store(StoreConfig(dsn=embedded_dsn(sys.argv[1]))) as store:\n    migrate(store)\n",
                    str(directory)], check=True, timeout=120)
    return directory


@pytest.mark.parametrize("how", ["TRUNCATE", "APPEND"])
def test_query_into_outfile_is_refused_and_the_store_stays_whole(data_dir: Path, how: str) -> None:
    metadata = data_dir / "clickhouse" / "metadata" / "default" / "flows.sql"
    before = metadata.read_bytes()
    line = one_line_error(fabricscope("query", f"SELECT 1 INTO OUTFILE '{metadata}' {how}", "--data-dir",
                                      str(data_dir)))
    assert "query: SQL: " in line and "INTO OUTFILE" in line
    assert metadata.read_bytes() == before
    done = fabricscope("query", "SELECT count() AS n FROM flows", "--format", "json", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"n": 0}]


@pytest.mark.parametrize("sql, reason", [
    ("SELECT file('/etc/passwd')", "file()"),
    ("SELECT * FROM (SELECT FILE('/etc/passwd'))", "FILE()"),
    ("SELECT * FROM url('http://127.0.0.1:9/', CSV, 'a String')", "url()"),
    ("SELECT 1; SELECT 2", "several statements"),
    ("SELECT 1 SETTINGS readonly = 0", "SETTINGS"),
    ("SET readonly = 0", "not a read"),
    ("KILL QUERY WHERE 1 SYNC", "not a read"),
    ("INSERT INTO flows (app) VALUES ('x')", "not a read"),
    ("DROP TABLE flows", "not a read"),
])
def test_query_that_is_not_a_single_read_exits_2_with_one_line(data_dir: Path, sql: str, reason: str) -> None:
    done = fabricscope("query", sql, "--data-dir", str(data_dir))
    line = one_line_error(done)
    assert "query: SQL: " in line and reason in line
    assert "root:" not in done.stdout


def test_query_json_renders_system_tables(data_dir: Path) -> None:
    done = fabricscope("query", "SELECT * FROM system.tables WHERE database = 'default'", "--format", "json",
                       "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    tables = json.loads(done.stdout)
    assert any(table["name"] == "flows" and len(table["uuid"]) == 36 for table in tables)


@pytest.mark.parametrize(("extra", "named", "reason"), [
    ((), "--no-sink", "needs --topology"),
    (("--topology", str(SAMPLES / "topology.yaml")), "--no-sink", "needs --kafka"),
    (("--topology", str(SAMPLES / "topology.yaml"), "--kafka", "127.0.0.1:9", "--until-idle", "5"), "--until-idle",
     "needs the sink"),
])
def test_ingest_without_the_sink_needs_its_detectors_and_a_shared_broker(
        tmp_path: Path, extra: tuple[str, ...], named: str, reason: str) -> None:
    fresh = tmp_path / "fabricscope"
    line = one_line_error(fabricscope("ingest", "--no-sink", "--data-dir", str(fresh), "--metrics", "off", *extra))
    assert named in line and reason in line
    assert not fresh.exists(), "nothing is opened before the input is checked"


def test_the_process_entry_keeps_start_up_out_of_the_collector_and_a_callers_main_does_not(tmp_path: Path) -> None:
    """Run as the process (no argv), main freezes what start-up made and collects as usual afterwards; called
    with argv by another program, it leaves that program's collector as it was."""
    replay = ["replay", str(SAMPLES / "mixed.pcap"), "--topology", str(SAMPLES / "mixed.topology.yaml"),
              "--no-progress"]
    script = (
        "import gc, sys\n"
        "from fabricscope.cli import main\n"
        f"assert main({[*replay, '--out', str(tmp_path / 'called.jsonl')]!r}) == 0\n"
        "print(gc.get_freeze_count(), gc.isenabled())\n"
        f"sys.argv = ['fabricscope', *{[*replay, '--out', str(tmp_path / 'own.jsonl')]!r}]\n"
        "assert main() == 0\n"
        "print(gc.get_freeze_count() > 10_000, gc.isenabled())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.splitlines() == ["0 True", "True True"]
    assert (tmp_path / "own.jsonl").read_bytes() == (tmp_path / "called.jsonl").read_bytes()
