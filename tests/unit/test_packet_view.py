"""The dashboard's packets view without a browser: what a request may say, how rows are marked, and the
pcap download's answers (the attachment, a 400 line for bad input), behind the login like every route."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dashboards.app import create_app
from dashboards.callbacks import packets_view
from dashboards.packets import PCAP_ROUTE, PacketListing, PacketRequest, marked_rows, parse_request, request_of_token
from dashboards.state import from_query_string, to_query_string
from pipeline.errors import InputError
from pipeline.store import Store, StoreConfig
from pipeline.topology import load_topology

TOPOLOGY_FILE = Path(__file__).resolve().parents[2] / "samples" / "topology.yaml"
T0 = 1_768_478_400_000_000_000
MS = 1_000_000


class FakePackets:
    """A PacketSource answering from fixed rows and bytes, counting what it was asked."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.asked: list[PacketRequest] = []

    def listing(self, packet_request: PacketRequest, rows: int) -> PacketListing:
        self.asked.append(packet_request)
        if packet_request.event == "unknown":
            raise InputError("event", "no incident 'unknown' in the store")
        return PacketListing(rows=self.rows[:rows], event_ns=T0 + 2 * MS, end_ns=T0 + 50 * MS, matched=len(self.rows))

    def pcapng(self, packet_request: PacketRequest) -> tuple[bytes, int]:
        self.asked.append(packet_request)
        if packet_request.event == "unknown":
            raise InputError("event", "no incident 'unknown' in the store")
        return b"\x0a\x0d\x0d\x0apcapng", 3


def packet(at_ms: float, psn: int, **fields: Any) -> dict[str, Any]:
    row = {"ts_ns": T0 + round(at_ms * MS), "link": "leaf2-spine2", "direction": "down", "src": "10.0.1.10",
           "dst": "10.0.2.10", "src_port": 49152, "dst_port": 4791, "opcode": 0x0a, "dest_qp": 7, "psn": psn,
           "aeth": "", "aeth_syndrome": None, "ecn": 2, "cnp": False, "length": 1086, "protocol": "RRoCE",
           "info": "RC RDMA Write Middle"}
    return {**row, **fields}


def test_a_request_validates_whole_or_names_the_bad_value() -> None:
    request = parse_request({"flow": "10.0.1.5:49152>10.0.2.7:4791/udp", "qp": "17", "link": "leaf1-spine1",
                             "from": "2026-01-15T12:00:00Z", "to": "2026-01-15T12:00:01Z", "limit": "50"})
    assert request.qp == 17 and request.start == datetime(2026, 1, 15, 12, tzinfo=UTC) and request.limit == 50
    assert request_of_token(request.token()) == request
    bad = [({}, "packets"), ({"event": "a", "flow": "1.2.3.4:1>1.2.3.5:2/udp"}, "packets"),
           ({"event": "x' OR 1=1"}, "event"), ({"flow": "nonsense"}, "flow"), ({"event": "a", "qp": "3"}, "qp"),
           ({"event": "a", "limit": "0"}, "limit"), ({"event": "a", "limit": "²"}, "limit"),
           ({"event": "a", "from": "2026-01-02", "to": "2026-01-01"}, "from"), ({"event": "a", "to": "soon"}, "to")]
    for values, named in bad:
        with pytest.raises(InputError) as raised:
            parse_request(values)
        assert raised.value.source == named, values
        assert "\n" not in str(raised.value)
    assert request_of_token("event=x%27") is None


def test_rows_are_marked_and_the_silence_around_the_incident_says_link_down() -> None:
    rows = [packet(0.0, 100), packet(0.1, 101, ecn=3), packet(0.2, 104),
            packet(0.3, 500, opcode=0x11, aeth="NAK", aeth_syndrome=0x60, src="10.0.2.10", dst="10.0.1.10"),
            packet(0.4, 105, opcode=0x81, cnp=True), packet(1.9, 103)]
    table = marked_rows(PacketListing(rows=rows, event_ns=T0 + 2 * MS, end_ns=T0 + 50 * MS, matched=6))
    assert [row["mark"] for row in table] == ["", "CE", "PSN gap", "NAK", "CNP", "gap", "PSN gap", "gap"]
    inner, tail = table[5], table[-1]
    assert inner["info"] == "no packets for 1.500 ms"
    assert tail["info"].startswith("no packets for 48.100 ms (to the end of the selected window) — link down")
    assert table[1]["ecn"] == "CE" and table[3]["opcode"] == "0x11" and table[4]["cnp"] == "CNP"
    assert table[0]["time"] == "2026-01-15 12:00:00.000000 UTC" and table[0]["delta_ms"] == "-2.000"


def test_the_view_opens_from_the_url_and_says_what_fails() -> None:
    topology = load_topology(TOPOLOGY_FILE)
    source = FakePackets([packet(0.0, 1), packet(0.1, 2)])
    closed = packets_view(source, topology, "?live=0")
    assert closed[0]["display"] == "none" and source.asked == []
    search = to_query_string(from_query_string("?live=0&packets=event%3Dabc123", topology.link_ids()))
    style, summary, download, close, rows, status = packets_view(source, topology, search)
    assert "display" not in style and status == ""
    assert summary.startswith("incident abc123: 2 of 2 packets")
    assert download == f"{PCAP_ROUTE}?event=abc123" and "packets" not in close
    assert [row.get("psn") for row in rows] == [1, 2, None] and rows[-1]["mark"] == "gap"
    failing = to_query_string(from_query_string("?live=0&packets=event%3Dunknown", topology.link_ids()))
    assert packets_view(source, topology, failing)[5] == "event: no incident 'unknown' in the store"
    assert packets_view(None, topology, search)[5] == "no packet store behind this dashboard"


def test_the_pcap_download_is_an_attachment_and_bad_input_one_line() -> None:
    source = FakePackets([])
    app = create_app(Store(StoreConfig(dsn="chdb:///nonexistent")), load_topology(TOPOLOGY_FILE), packets=source)
    client = app.server.test_client()
    answer = client.get(f"{PCAP_ROUTE}?event=abc123")
    assert answer.status_code == 200 and answer.data.startswith(b"\x0a\x0d\x0d\x0a")
    assert answer.headers["Content-Disposition"] == 'attachment; filename="fabricscope-abc123.pcapng"'
    for query, reason in (("flow=garbage", "flow: is not SRC:PORT>DST:PORT/PROTO"),
                          ("event=unknown", "event: no incident 'unknown' in the store")):
        refused = client.get(f"{PCAP_ROUTE}?{query}")
        assert refused.status_code == 400
        assert refused.get_data(as_text=True).startswith(f"fabricscope: {reason}")
        assert refused.get_data(as_text=True).count("\n") == 1
