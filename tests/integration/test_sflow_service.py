"""`fabricscope sflow` as the service it runs as: pmacctd's sfprobe exports a sample to it, /metrics counts the
datagrams while it runs, and SIGTERM flushes every flow row through the outbox into Kafka before it exits 0."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from pmacct import FILLER_IP, pmacctd, with_filler
from sample_flows import SAMPLES, truth_flows

from pipeline import codec, records
from pipeline.bus import BusConfig, Consumer

pytestmark = pytest.mark.integration

SAMPLE = "mixed"


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    line = next((line for line in text.splitlines() if line.startswith(name + "{")), None)
    return float(line.rsplit(" ", 1)[1]) if line else 0.0


def test_sigterm_flushes_what_pmacct_sent_through_kafka(
    tmp_path: Path, bus_config: BusConfig, clean_topics: list[str]
) -> None:
    listen, metrics = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM)
    service = subprocess.Popen(
        [sys.executable, "-m", "fabricscope.cli", "sflow", "--listen", f"127.0.0.1:{listen}", "--kafka",
         bus_config.bootstrap, "--metrics", f"127.0.0.1:{metrics}", "--topology", str(SAMPLES / "topology.yaml")],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert service.stderr is not None
        assert any("receiving" in line for line in service.stderr), "the service never started receiving"
        pcap = tmp_path / f"{SAMPLE}.pcap"
        with_filler(SAMPLES / f"{SAMPLE}.pcap", pcap)
        probe, log = pmacctd(tmp_path, pcap, listen)
        deadline, last, quiet_since = time.monotonic() + 60, -1.0, time.monotonic()
        while time.monotonic() < deadline:
            datagrams = _metric(metrics, "fabricscope_datagrams_total")
            if datagrams != last:
                last, quiet_since = datagrams, time.monotonic()
            finished = "finished reading PCAP capture file" in log.read_text()
            if finished and last > 0 and time.monotonic() - quiet_since > 1.5:
                break
            time.sleep(0.2)
        probe.terminate()
        probe.wait(timeout=10)
        assert last > 0 and _metric(metrics, "fabricscope_lost_datagrams_total") == 0
        service.send_signal(signal.SIGTERM)
        _, said = service.communicate(timeout=120)
    finally:
        if service.poll() is None:
            service.kill()
    assert service.returncode == 0, said
    assert "0 dropped" in said

    consumer = Consumer(bus_config, group="sflow-service-test", topics=[records.topic("flows")]).start()
    expected = sum(flow["packets"] for flow in truth_flows(SAMPLE).values())
    packets = 0
    for _ in range(120):
        for record in consumer.poll(250):
            rows = codec.to_columns(codec.decode("flows", record.value))
            ours = [str(ipaddress.IPv6Address(ip).ipv4_mapped) != FILLER_IP for ip in rows["src_ip"]]
            packets += int(rows["packets"][ours].sum())
        if packets >= expected:
            break
    consumer.stop()
    assert packets == expected
