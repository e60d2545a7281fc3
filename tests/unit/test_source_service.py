"""The service shell every live source shares: settings from flags, config file and defaults; /metrics."""

from __future__ import annotations

import socket
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap
from test_sflow import SAMPLES, datagram, flow_sample, plain, raw_packet_header

from collectors.capture_source import CaptureConfig, CaptureSource
from collectors.decode_walk import MALFORMED_REASONS as PACKET_REASONS
from collectors.pcapfile import open_capture
from collectors.sflow import MALFORMED_REASONS as SFLOW_REASONS
from collectors.sflow import with_sflow_interfaces
from collectors.sflow_source import SflowConfig, SflowSource
from fabricscope.cli import build_parser
from fabricscope.config import Config, load_config
from fabricscope.metrics import Delivery, SourceMetrics, parse_listen, registry_of, serve_metrics
from pipeline.errors import InputError
from pipeline.source import Step
from pipeline.topology import load_topology


def _settled(argv: list[str], config: Path | None = None) -> Config:
    return load_config(build_parser("sflow").parse_args(
        ["sflow", *(["--config", str(config)] if config else []), *argv]))


def test_flags_win_over_the_config_file_which_wins_over_defaults(tmp_path: Path) -> None:
    config = tmp_path / "fabricscope.yaml"
    config.write_text("sflow:\n  listen: 0.0.0.0:6343\n  drain: 5\n  topology: /etc/t.yaml\n")
    settled = _settled(["--drain", "9"], config)
    assert (settled.sflow.listen, settled.service.drain, settled.topology) == ("0.0.0.0:6343", 9.0, "/etc/t.yaml")
    assert (settled.service.metrics, settled.service.buffer_memory_mb, settled.service.exporter) == (
        "127.0.0.1:9711", 256, "fabricscope")


def test_an_unknown_setting_names_the_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "fabricscope.yaml"
    config.write_text("sflow:\n  listen: 0.0.0.0:6343\n  lisen: 1\n")
    with pytest.raises(InputError, match=rf"{config}:3: sflow.lisen: unknown setting"):
        _settled(["--topology", "t.yaml"], config)


def test_a_config_value_of_the_wrong_type_names_the_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "fabricscope.yaml"
    config.write_text("sflow:\n  drain: soon\n")
    with pytest.raises(InputError, match=rf"{config}:2: sflow.drain: expected float, got 'soon'"):
        _settled(["--topology", "t.yaml"], config)


def test_the_topology_is_required_somewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FABRICSCOPE_TOPOLOGY", raising=False)
    with pytest.raises(InputError, match="--topology: required"):
        _settled([])
    monkeypatch.setenv("FABRICSCOPE_TOPOLOGY", "/etc/fabricscope/topology.yaml")
    assert _settled([]).topology == "/etc/fabricscope/topology.yaml"


class _CountingSource:
    name = "sflow"

    def start(self) -> _CountingSource:
        return self

    def stop(self) -> None:
        pass

    def steps(self, stop: threading.Event) -> Iterator[Step]:
        yield []

    def counts(self) -> Mapping[str, int]:
        return {"datagrams": 12, "malformed": 3}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_metrics_show_the_source_counts_and_delivery() -> None:
    delivery = Delivery(sent=Counter(flows=40, counters=2), dropped=Counter(flows=5), memory_bytes=1024)
    port = _free_port()
    server = serve_metrics(f"127.0.0.1:{port}", _CountingSource(), delivery)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        with pytest.raises(InputError, match=f"--metrics: cannot listen on 127.0.0.1:{port}"):
            serve_metrics(f"127.0.0.1:{port}", _CountingSource(), delivery)
    finally:
        server.shutdown()
    assert 'fabricscope_datagrams_total{source="sflow"} 12.0' in text
    assert 'fabricscope_malformed_total{source="sflow"} 3.0' in text
    assert 'fabricscope_records_sent_total{source="sflow",table="flows"} 40.0' in text
    assert 'fabricscope_records_dropped_total{source="sflow",table="flows"} 5.0' in text
    assert 'fabricscope_buffer_bytes{source="sflow",where="memory"} 1024.0' in text
    assert 'fabricscope_kafka_connected{source="sflow"} 0.0' in text


@pytest.mark.parametrize("text", ["6343", "host:", ":6343", "host:port", "h:70000"])
def test_a_bad_listen_address_is_named(text: str) -> None:
    with pytest.raises(InputError, match=f"--listen: '{text}' is not HOST:PORT"):
        parse_listen(text, "--listen")


def test_ipv6_listen_addresses_take_brackets() -> None:
    assert parse_listen("[::1]:6343", "--listen") == ("::1", 6343)


def test_metrics_split_a_real_sources_skips_by_reason() -> None:
    """Issue 13, item 3: what a live source skips is on /metrics by reason, summing to its total."""
    topology = with_sflow_interfaces(load_topology(SAMPLES / "topology.yaml"))
    bad_ip = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.1.5", dst="10.0.2.7", ihl=2)
                   / UDP() / Raw(b"\0" * 60))
    good = datagram([flow_sample([raw_packet_header(plain())]), flow_sample([raw_packet_header(bad_ip)])])
    sent = [good, good[:-7]]  # the second one cut inside its last sample
    source = SflowSource(topology, SflowConfig(listen="127.0.0.1:0")).start()
    stop = threading.Event()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for data in sent:
            sender.sendto(data, ("127.0.0.1", source.port))
        for _ in source.steps(stop):
            if source.counts()["datagrams"] == len(sent):
                stop.set()
    text = generate_latest(registry_of(SourceMetrics(source, Delivery()))).decode()
    counts = source.counts()
    for key, reasons in (("malformed", SFLOW_REASONS), ("malformed_packets", PACKET_REASONS[1:])):
        lines = [line for line in text.splitlines() if line.startswith(f"fabricscope_{key}_by_reason_total{{")]
        assert {line.split('reason="')[1].split('"')[0] for line in lines} == set(reasons)
        assert sum(float(line.rsplit(" ", 1)[1]) for line in lines) == counts[key] > 0


def test_metrics_count_a_capture_sources_unsupported_link_types_by_number(tmp_path: Path) -> None:
    """Issue 15: packets of a link type the decoder does not open are on /metrics by number, not malformed.
    The capture source's collector is fed from files (one 802.11 capture, one Ethernet) instead of its ring."""
    wifi, ethernet = tmp_path / "wifi.pcap", tmp_path / "ethernet.pcap"
    wrpcap(str(wifi), [Raw(b"\x08\x00" + bytes(30))] * 3, linktype=105)
    wrpcap(str(ethernet), [Ether() / IP(src="10.0.1.5", dst="10.0.2.7") / UDP()] * 2)
    source = CaptureSource(load_topology(SAMPLES / "topology.yaml"), CaptureConfig(iface="lo"))
    for path in (wifi, ethernet, wifi):
        with open_capture(path) as capture:
            for batch in capture:
                source.collector.process(batch)
    port = _free_port()
    server = serve_metrics(f"127.0.0.1:{port}", source, Delivery())
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    lines = [line for line in text.splitlines() if line.startswith("fabricscope_unsupported_link_type_packets_total")]
    assert lines == ['fabricscope_unsupported_link_type_packets_total{linktype="105",source="capture"} 6.0']
    assert 'fabricscope_packets_total{source="capture"} 8.0' in text
    assert 'fabricscope_malformed_total{source="capture"} 0.0' in text
