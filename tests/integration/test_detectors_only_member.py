"""`ingest --no-sink`: the detectors as a member of their own, in a process of their own, beside a member that
runs the sink (here a thread around the session's store). A collector replays the link-failure sample into the
broker; the failure reaches ClickHouse through the sink, measured as the generator's truth says, and the
detectors' process opened no store and leaves its checkpoint when stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.bus import BusConfig
from pipeline.sink import Sink, SinkConfig
from pipeline.store import Store

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SAMPLE = "link_failure"
FABRICSCOPE = [sys.executable, "-m", "fabricscope.cli"]
WAIT_S = 120


def test_detectors_in_their_own_process_beside_the_sink(
        bus_config: BusConfig, clean_topics: list[str], store: Store, data_dir: Path, tmp_path: Path) -> None:
    group = f"split-{tmp_path.name}"
    sink = Sink(SinkConfig(group=group, batch_rows=20_000, batch_wait_s=0.2), bus=bus_config, store=store).start()
    log = tmp_path / "detect.log"
    with log.open("w") as stderr:
        detecting = subprocess.Popen(
            [*FABRICSCOPE, "ingest", "--no-sink", "--kafka", bus_config.bootstrap, "--topology",
             str(SAMPLES / "topology.yaml"), "--data-dir", str(data_dir), "--detect-group", f"{group}-detect",
             "--metrics", "off"], stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        replay = subprocess.run(
            [*FABRICSCOPE, "replay", str(SAMPLES / f"{SAMPLE}.pcap"), "--topology", str(SAMPLES / "topology.yaml"),
             "--kafka", bus_config.bootstrap, "--counters", str(SAMPLES / f"{SAMPLE}.counters.jsonl"),
             "--no-progress"], capture_output=True, text=True, timeout=WAIT_S)
        assert replay.returncode == 0, replay.stderr
        query = ("SELECT link, local_convergence_ms, remote_convergence_ms, flows_affected, flows_recovered, "
                 "packets_lost FROM incidents WHERE kind = 'fast_recovery' AND state = 'closed'")
        deadline = time.monotonic() + WAIT_S
        while not store.query(query).rows:
            assert detecting.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        detecting.send_signal(signal.SIGTERM)
        assert detecting.wait(timeout=WAIT_S) == 0, log.read_text()
    finally:
        if detecting.poll() is None:
            detecting.kill()
        sink.stop()

    want = next(event for event in json.loads((SAMPLES / f"{SAMPLE}.truth.json").read_text())["events"]
                if event["kind"] == "fast_recovery")
    (link, local, remote, affected, recovered, lost), = store.query(query).rows
    assert link == want["link"]
    assert abs(local - want["local_convergence_ms"]) <= 0.05 and abs(remote - want["remote_convergence_ms"]) <= 0.05
    assert (affected, recovered, lost) == (want["flows_affected"], want["flows_recovered"], want["packets_lost"])
    assert (data_dir / "detectors" / f"{group}-detect.state").is_file()  # saved on SIGTERM: open incidents go on
    assert not (data_dir / "clickhouse").exists()  # no store opened: it shares --data-dir with a sink member
    assert "detectors only" in log.read_text()
