"""The production path through the real broker: `replay --kafka` only produces, `ingest --topology` runs the
sink and the detectors as consumer-group members, and `events` then lists the truth's fast recovery; the
alert webhook of its config got each incident's open and close (and the update of the link_down the traffic
retimed after its close), the last alert of each carrying the incident's latest time, and the ledger says so."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from alert_receiver import Receiver

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
FABRICSCOPE = [sys.executable, "-m", "fabricscope.cli"]

pytestmark = pytest.mark.integration


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def fabricscope(*args: str) -> str:
    done = subprocess.run([*FABRICSCOPE, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_replay_to_kafka_then_ingest_with_detectors(broker: str, clean_topics: list[str], tmp_path: Path) -> None:
    data_dir = str(tmp_path / "store")
    receiver = Receiver().start()
    config = tmp_path / "fabricscope.yaml"
    config.write_text(f"alerts:\n  webhooks:\n    - {{name: ops, url: '{receiver.url}'}}\n")
    fabricscope(
        "replay", str(SAMPLES / "link_failure.pcap"), "--counters", str(SAMPLES / "link_failure.counters.jsonl"),
        "--topology", str(SAMPLES / "topology.yaml"), "--kafka", broker, "--no-progress",
    )
    fabricscope(
        "ingest", "--kafka", broker, "--topology", str(SAMPLES / "topology.yaml"), "--until-idle", "6",
        "--group", f"ingest-{tmp_path.name}", "--data-dir", data_dir, "--metrics", "off", "--config", str(config),
    )
    receiver.stop()
    truth = json.loads((SAMPLES / "link_failure.truth.json").read_text())
    flows = json.loads(fabricscope("query", "SELECT sum(packets) AS p FROM flows", "--format", "json",
                                   "--data-dir", data_dir))
    assert int(flows[0]["p"]) == sum(flow["packets"] for flow in truth["flows"])
    events = json.loads(fabricscope("events", "--kind", "fast_recovery", "--format", "json", "--data-dir", data_dir))
    want = next(event for event in truth["events"] if event["kind"] == "fast_recovery")
    assert len(events) == 1
    got = events[0]
    assert got["link"] == want["link"]
    assert abs(got["local_convergence_ms"] - want["local_convergence_ms"]) <= 0.05
    assert abs(got["remote_convergence_ms"] - want["remote_convergence_ms"]) <= 0.05
    assert (got["flows_affected"], got["flows_recovered"], got["packets_lost"]) == (
        want["flows_affected"], want["flows_recovered"], want["packets_lost"])

    incidents = json.loads(fabricscope("query", "SELECT event_id, kind, ts FROM incidents", "--format", "json",
                                       "--data-dir", data_dir))
    steps: dict[str, list[str]] = {}
    for body in receiver.bodies():
        steps.setdefault(body["event_id"], []).append(body["alert"])
    retimed = {incident["event_id"] for incident in incidents if incident["kind"] == "link_down"}
    assert len(retimed) == 1  # the counters' oper-down first, then the traffic's earlier failure time
    assert steps == {incident["event_id"]: ["open", "close", *(["update"] if incident["event_id"] in retimed else [])]
                     for incident in incidents}
    last = {body["event_id"]: instant(body["ts"]) for body in receiver.bodies()}
    assert last == {incident["event_id"]: instant(incident["ts"]) for incident in incidents}
    ledger = json.loads((tmp_path / "store" / "alerts" / "fabricscope-alerts.ledger").read_text())
    assert {event_id: step[1] for event_id, step in ledger["webhooks"]["ops"].items()} == dict.fromkeys(steps, "close")
