"""`fabricscope capture` as the service it runs as: a sample replayed by tcpreplay into the capture interface,
/metrics scraped while it runs, then SIGTERM — the final flush must bring every packet's flow row to Kafka
(through the outbox) or to ClickHouse (embedded), and the process must exit 0 saying what it counted."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from netns import NetLab, mirror_link, needs_netns, needs_tcpreplay

from pipeline import codec, records
from pipeline.bus import BusConfig, Consumer

pytestmark = [pytest.mark.integration, pytest.mark.netns, needs_netns, needs_tcpreplay]

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SAMPLE = "mixed"
RATE_PPS = 20_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    match = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _start(arguments: list[str]) -> subprocess.Popen[str]:
    service = subprocess.Popen([sys.executable, "-m", "fabricscope.cli", *arguments], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert service.stderr is not None
    for line in service.stderr:
        if "receiving" in line:
            return service
    service.wait(timeout=30)
    raise AssertionError(f"capture never started receiving (exit {service.returncode})")


def _run_capture(extra: list[str]) -> tuple[int, str, float]:
    """Replay the sample into a capture service; return its exit code, what it printed after SIGTERM and the
    packets /metrics counted before it."""
    truth = json.loads((SAMPLES / f"{SAMPLE}.truth.json").read_text())
    metrics = _free_port()
    with NetLab() as lab:
        namespace, send, capture = mirror_link(lab)
        service = _start(["capture", "--iface", capture, "--topology", str(SAMPLES / f"{SAMPLE}.topology.yaml"),
                          "--metrics", f"127.0.0.1:{metrics}", *extra])
        try:
            replay = lab.run(namespace, ["tcpreplay", f"--intf1={send}", f"--pps={RATE_PPS}",
                                         str(SAMPLES / f"{SAMPLE}.pcap")])
            assert replay.returncode == 0, replay.stderr
            deadline = time.monotonic() + 30
            while _metric(metrics, "fabricscope_packets_total") < truth["packets"] and time.monotonic() < deadline:
                time.sleep(0.2)
            counted = _metric(metrics, "fabricscope_packets_total")
            service.send_signal(signal.SIGTERM)
            _, said = service.communicate(timeout=120)
        finally:
            if service.poll() is None:
                service.kill()
    return service.returncode, said, counted


def test_sigterm_flushes_every_flow_row_through_kafka(bus_config: BusConfig, clean_topics: list[str],
                                                      tmp_path: Path) -> None:
    truth = json.loads((SAMPLES / f"{SAMPLE}.truth.json").read_text())
    # the packet recorder writes under --data-dir even when the records go to Kafka
    code, said, counted = _run_capture(["--kafka", bus_config.bootstrap, "--data-dir", str(tmp_path / "data")])
    assert code == 0, said
    assert counted == truth["packets"]
    assert f"{truth['packets']} packets" in said and "0 kernel_drops" in said and "0 dropped" in said
    consumer = Consumer(bus_config, group="capture-service-test", topics=[records.topic("flows")]).start()
    packets = 0
    for _ in range(120):
        packets += sum(int(codec.decode("flows", r.value)["packets"].to_numpy().sum()) for r in consumer.poll(250))
        if packets >= truth["packets"]:
            break
    consumer.stop()
    assert packets == sum(flow["packets"] for flow in truth["flows"])


def test_sigterm_in_embedded_mode_leaves_every_row_in_clickhouse(tmp_path: Path) -> None:
    truth = json.loads((SAMPLES / f"{SAMPLE}.truth.json").read_text())
    data_dir = tmp_path / "store"
    code, said, _ = _run_capture(["--data-dir", str(data_dir)])
    assert code == 0, said
    query = subprocess.run(
        [sys.executable, "-m", "fabricscope.cli", "query", "SELECT sum(packets) AS packets FROM flows",
         "--format", "json", "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=120,
    )
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout)[0]["packets"] == sum(flow["packets"] for flow in truth["flows"])
