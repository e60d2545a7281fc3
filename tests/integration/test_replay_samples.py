"""Every sample, end to end through the real parts: `fabricscope replay` (collector → embedded tansu broker
→ sink → chdb, detectors in process), then `fabricscope query` and `fabricscope events` as a user runs them.
Totals and events must equal the generator's ground truth written next to each sample."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
NAMES = ("mixed", "allreduce_congestion", "link_failure", "combo")
FABRICSCOPE = [sys.executable, "-m", "fabricscope.cli"]
CONVERGENCE_TOLERANCE_MS = 0.05
CONGESTION_TOLERANCE_US = 50_000
COUNTER_PERIOD_US = 100_000  # switches report oper status every 100 ms in the samples
TRAFFIC_EARLY_US = 10_000  # traffic shows a link down at its last packet, up to one packet gap before the fault
# Kinds the truth lists whenever they happen: the detectors must find each and invent none.
CHECKED_KINDS = ("fast_recovery", "congestion", "ecmp_imbalance", "link_down", "link_up", "link_flap")

pytestmark = pytest.mark.integration


def fabricscope(*args: str, data_dir: Path) -> str:
    done = subprocess.run(
        [*FABRICSCOPE, *args, "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module", params=NAMES)
def replayed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    name = request.param
    data_dir = tmp_path_factory.mktemp(f"replay-{name}")
    fabricscope(
        "replay", str(SAMPLES / f"{name}.pcap"), "--counters", str(SAMPLES / f"{name}.counters.jsonl"),
        "--topology", str(SAMPLES / "topology.yaml"), "--no-progress", data_dir=data_dir,
    )
    return name, data_dir


def truth(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / f"{name}.truth.json").read_text())


def test_flow_totals_per_app_equal_truth(replayed: tuple[str, Path]) -> None:
    name, data_dir = replayed
    rows = json.loads(fabricscope(
        "query",
        "SELECT app, sum(packets) AS packets, sum(bytes) AS bytes, sum(ecn_ce) AS ecn_ce, sum(cnp) AS cnp "
        "FROM flows GROUP BY app ORDER BY app",
        "--format", "json", data_dir=data_dir,
    ))
    expected: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(("packets", "bytes", "ecn_ce", "cnp"), 0))
    for flow in truth(name)["flows"]:
        for field in ("packets", "bytes", "ecn_ce", "cnp"):
            expected[flow["app"]][field] += flow[field]
    got = {row["app"]: {field: int(row[field]) for field in ("packets", "bytes", "ecn_ce", "cnp")} for row in rows}
    assert got == dict(expected)


def test_rollups_equal_raw_flows(replayed: tuple[str, Path]) -> None:
    _, data_dir = replayed
    tables = json.loads(fabricscope("query", "SELECT name FROM system.tables WHERE database = currentDatabase() "
                                    "AND name LIKE 'flows_%'", "--format", "json", data_dir=data_dir))
    rollups = [row["name"] for row in tables if not row["name"].startswith(".")]
    assert rollups, "the migrations define flow rollups"
    raw = json.loads(fabricscope("query", "SELECT sum(packets) AS p, sum(bytes) AS b FROM flows",
                                 "--format", "json", data_dir=data_dir))[0]
    for table in rollups:
        columns = json.loads(fabricscope("query", f"SELECT name FROM system.columns WHERE table = '{table}' "
                                         "AND database = currentDatabase()", "--format", "json", data_dir=data_dir))
        names = {row["name"] for row in columns}
        if not {"packets", "bytes"} <= names:
            continue
        rolled = json.loads(fabricscope("query", f"SELECT sum(packets) AS p, sum(bytes) AS b FROM {table}",
                                        "--format", "json", data_dir=data_dir))[0]
        assert (int(rolled["p"]), int(rolled["b"])) == (int(raw["p"]), int(raw["b"])), table


def test_events_equal_truth(replayed: tuple[str, Path]) -> None:
    name, data_dir = replayed
    events = json.loads(fabricscope("events", "--format", "json", data_dir=data_dir))
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        found[event["kind"]].append(event)
    expected: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in truth(name)["events"]:
        expected[event["kind"]].append(event)
    for kind in CHECKED_KINDS:
        assert len(found[kind]) == len(expected[kind]), (kind, found[kind], expected[kind])
    for want in expected["fast_recovery"]:
        got = next(e for e in found["fast_recovery"] if e["link"] == want["link"])
        assert abs(got["local_convergence_ms"] - want["local_convergence_ms"]) <= CONVERGENCE_TOLERANCE_MS
        assert abs(got["remote_convergence_ms"] - want["remote_convergence_ms"]) <= CONVERGENCE_TOLERANCE_MS
        assert (got["flows_affected"], got["flows_recovered"], got["packets_lost"]) == (
            want["flows_affected"], want["flows_recovered"], want["packets_lost"])
    for want in expected["congestion"]:
        got = next(e for e in found["congestion"] if (e["link"], e["direction"]) == (want["link"], want["direction"]))
        assert abs(_us(got["ts"]) - want["ts_us"]) <= CONGESTION_TOLERANCE_US
        assert abs(_us(got["ts_end"]) - want["ts_end_us"]) <= CONGESTION_TOLERANCE_US
    for kind in ("link_down", "link_up"):
        for want in expected[kind]:
            assert any(e["link"] == want["link"]
                       and -TRAFFIC_EARLY_US <= _us(e["ts"]) - want["ts_us"] <= COUNTER_PERIOD_US
                       for e in found[kind]), (kind, want)
    for want in expected["link_flap"]:
        assert any(e["link"] == want["link"] and abs(_us(e["ts"]) - want["ts_us"]) <= TRAFFIC_EARLY_US
                   and abs(_us(e["ts_end"]) - want["ts_end_us"]) <= TRAFFIC_EARLY_US for e in found["link_flap"]), want
    for want in expected["ecmp_imbalance"]:
        assert any(e["device"] == want["leaf"] for e in found["ecmp_imbalance"]), want


def _us(text: str) -> int:
    from datetime import datetime

    moment = datetime.fromisoformat(text.replace("Z", "")).replace(tzinfo=UTC)
    return round(moment.timestamp() * 1_000_000)
