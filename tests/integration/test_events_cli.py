"""`fabricscope events` and `query` as an operator runs them, after `fabricscope replay` of samples/combo through
the real parts (collector → embedded broker → sink and detectors → chdb), with a config file that maps the
scheduler's jobs to their hosts as the generator placed them: the table fits a 120-column terminal, JSON
and CSV hold the same incidents, and the rows carry the scheduler's job names."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
FABRICSCOPE = [sys.executable, "-m", "fabricscope.cli"]
TRUTH: dict[str, Any] = json.loads((SAMPLES / "combo.truth.json").read_text())

pytestmark = pytest.mark.integration


def fabricscope(*args: str, data_dir: Path) -> str:
    done = subprocess.run([*FABRICSCOPE, *args, "--data-dir", str(data_dir)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("events-cli")
    config = data_dir / "fabricscope.yaml"
    config.write_text(yaml.safe_dump({"jobs": {name: job["hosts"] for name, job in TRUTH["jobs"].items()}}))
    fabricscope("replay", str(SAMPLES / "combo.pcap"), "--counters", str(SAMPLES / "combo.counters.jsonl"),
                "--topology", str(SAMPLES / "topology.yaml"), "--config", str(config), "--no-progress",
                data_dir=data_dir)
    return data_dir


def test_the_table_json_and_csv_show_the_same_incidents(data_dir: Path) -> None:
    incidents = json.loads(fabricscope("events", "--format", "json", data_dir=data_dir))
    rows = list(csv.DictReader(io.StringIO(fabricscope("events", "--format", "csv", data_dir=data_dir))))
    lines = fabricscope("events", data_dir=data_dir).splitlines()

    assert sorted(incident["kind"] for incident in incidents) == sorted(event["kind"] for event in TRUTH["events"])
    assert all(incident[name].endswith("Z") for incident in incidents for name in ("ts", "ts_end", "updated"))
    assert all(isinstance(incident["details"], dict) for incident in incidents)
    assert [{**row, "details": json.loads(row["details"])} for row in rows] == [
        {name: "" if value is None else str(value) if not isinstance(value, dict) else value
         for name, value in incident.items()} for incident in incidents]
    assert len(lines) == len(incidents) + 1 and max(map(len, lines)) <= 120
    assert not any("{" in line for line in lines)  # details summarised, never the raw JSON


def test_the_rows_carry_the_schedulers_job_names(data_dir: Path) -> None:
    names = set(TRUTH["jobs"])
    flows = list(csv.DictReader(io.StringIO(fabricscope(
        "query", "SELECT DISTINCT job FROM flows WHERE job != '' ORDER BY job", "--format", "csv",
        data_dir=data_dir))))
    iterations = json.loads(fabricscope("query", "SELECT DISTINCT job FROM iterations", "--format", "json",
                                        data_dir=data_dir))
    assert {row["job"] for row in flows} == {row["job"] for row in iterations} == names

    [congestion] = json.loads(fabricscope("events", "--kind", "congestion", "--format", "json", data_dir=data_dir))
    [want] = [event for event in TRUTH["events"] if event["kind"] == "congestion"]
    assert sorted(congestion["job"].split(",")) == sorted(want["jobs"])
    line = fabricscope("events", "--kind", "congestion", data_dir=data_dir).splitlines()[1]
    assert line.endswith(f"jobs: {congestion['job']}")
