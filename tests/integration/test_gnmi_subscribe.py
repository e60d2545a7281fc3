"""GnmiSource against a gNMI server (issue 7).

Debian ships no gNMI target, so the server here is our own: grpcio serving pygnmi's generated gNMI service,
streaming OpenConfig interface state for two interfaces (one as JSON_IETF containers, one as typed
leaves, with openconfig-qos ECN and PFC leaves), and ending or dropping the stream to make the source
subscribe again.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pygnmi.spec.v080 import gnmi_pb2, gnmi_pb2_grpc

from collectors.gnmi import GnmiConfig, GnmiSource, GnmiTarget
from pipeline.topology import Topology

TOPOLOGY = """\
fabric: lab
spines: [spine1, spine2]
leaves:
  leaf1: {hosts: ["10.0.1.0/24"]}
counters:
  - {device: leaf1, ifname: Ethernet1/1, link: leaf1-spine1}
  - {device: leaf1, ifname: Ethernet2, link: leaf1-spine2}
"""
SAMPLES = 3  # notifications per interface in each stream


def octets(session: int, sample: int) -> int:
    """The in-octets the server sends: tells session and sample apart in the rows."""
    return 1_000_000 * session + 1000 * sample


def ecn_marks(session: int, sample: int) -> int:
    """The ECN marks the server sends for queue 3 of Ethernet2 (queue 4 always has 5)."""
    return 100 * session + sample


def path(text: str) -> gnmi_pb2.Path:
    """A gNMI Path from `a/b[k=v]/c` text (one key per element; a key value may hold '/')."""
    elements = []
    for name, key, value in re.findall(r"([^/\[]+)(?:\[([^=]+)=([^\]]*)\])?", text):
        elements.append(gnmi_pb2.PathElem(name=name, key={key: value} if key else {}))
    return gnmi_pb2.Path(elem=elements)


class Target(gnmi_pb2_grpc.gNMIServicer):
    """A switch's gNMI server, scripted per subscription: the first stream is dropped (UNAVAILABLE) after
    SAMPLES notifications per interface, the second ends cleanly, the third streams until cancelled."""

    def __init__(self) -> None:
        self.requests: list[gnmi_pb2.SubscribeRequest] = []
        self.sent = 0
        self.lock = threading.Lock()

    def Capabilities(self, request: Any, context: Any) -> gnmi_pb2.CapabilityResponse:
        return gnmi_pb2.CapabilityResponse(supported_encodings=[gnmi_pb2.JSON_IETF], gNMI_version="0.8.0")

    def Subscribe(self, requests: Iterator[gnmi_pb2.SubscribeRequest], context: Any) -> Iterator[Any]:
        with self.lock:
            self.requests.append(next(requests))
            session = len(self.requests)
        for sample in range(SAMPLES if session < 3 else 1000):
            if not context.is_active():
                return
            yield from self.notifications(session, sample)
            if sample == 0:
                yield gnmi_pb2.SubscribeResponse(sync_response=True)
            time.sleep(0.05)
        if session == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "linecard restarting")

    def notifications(self, session: int, sample: int) -> Iterator[gnmi_pb2.SubscribeResponse]:
        stamp = time.time_ns()
        state = {"openconfig-interfaces:oper-status": "UP", "openconfig-interfaces:counters": {
            "in-octets": str(octets(session, sample)), "out-octets": "77", "in-unicast-pkts": "10",
            "in-multicast-pkts": "1", "out-unicast-pkts": "5", "in-errors": "2", "in-fcs-errors": "3"}}
        whole = gnmi_pb2.Notification(timestamp=stamp, update=[gnmi_pb2.Update(
            path=path("interfaces/interface[name=Ethernet1/1]/state"),
            val=gnmi_pb2.TypedValue(json_ietf_val=json.dumps(state).encode()))])
        interface, qos = "interfaces/interface[name=Ethernet2]", "qos/interfaces/interface[interface-id=Ethernet2]"
        pfc = f"{qos}/pfc/pfc-priorities/pfc-priority[dot1p=3]/state/statistics"
        leaves = gnmi_pb2.Notification(timestamp=stamp, update=[
            gnmi_pb2.Update(path=path(f"{interface}/state/counters/in-octets"),
                            val=gnmi_pb2.TypedValue(uint_val=octets(session, sample) + 1)),
            gnmi_pb2.Update(path=path(f"{interface}/state/counters/out-octets"), val=gnmi_pb2.TypedValue(uint_val=88)),
            gnmi_pb2.Update(path=path(f"{interface}/state/oper-status"), val=gnmi_pb2.TypedValue(string_val="DOWN")),
            gnmi_pb2.Update(path=path(f"{interface}/ethernet/state/port-speed"),
                            val=gnmi_pb2.TypedValue(string_val="openconfig-if-ethernet:SPEED_400GB")),
            gnmi_pb2.Update(path=path(f"{qos}/output/queues/queue[name=3]/state/ecn-marked-pkts"),
                            val=gnmi_pb2.TypedValue(uint_val=ecn_marks(session, sample))),
            gnmi_pb2.Update(path=path(f"{qos}/output/queues/queue[name=4]/state/ecn-marked-pkts"),
                            val=gnmi_pb2.TypedValue(uint_val=5)),
            gnmi_pb2.Update(path=path(f"{pfc}/pause-frames-rx"), val=gnmi_pb2.TypedValue(uint_val=40)),
            gnmi_pb2.Update(path=path(f"{pfc}/pause-frames-tx"), val=gnmi_pb2.TypedValue(uint_val=2))])
        with self.lock:
            self.sent += 2
        yield gnmi_pb2.SubscribeResponse(update=whole)
        yield gnmi_pb2.SubscribeResponse(update=leaves)


@pytest.fixture
def target() -> Iterator[tuple[Target, int]]:
    servicer = Target()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    gnmi_pb2_grpc.add_gNMIServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, port
    server.stop(grace=None).wait()


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(name),
                                                               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.parametrize("trusted", [True, False])
def test_tls_target_verified_against_path_root(tmp_path: Path, topology: Topology, trusted: bool) -> None:
    cert, key = self_signed(tmp_path, "leaf1")
    stranger, _ = self_signed(tmp_path, "stranger")
    servicer = Target()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    gnmi_pb2_grpc.add_gNMIServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        root = cert if trusted else stranger
        source = GnmiSource(topology, GnmiConfig(targets=(GnmiTarget("leaf1", "127.0.0.1", port, path_root=str(root),
                                                             connect_timeout_s=1),), tick_s=0.1, first_backoff_s=0.1))
        stop = threading.Event()
        rows = 0
        deadline = time.monotonic() + 15
        for step in source.steps(stop):
            rows += sum(len(batch["ts"]) for _table, batch in step)
            if rows or source.counts()["errors"] >= 2 or time.monotonic() > deadline:
                stop.set()
    finally:
        server.stop(grace=None).wait()
    if trusted:
        assert rows > 0 and len(servicer.requests) == 1
    else:  # a server whose certificate the root does not vouch for is never subscribed to
        assert rows == 0 and servicer.requests == [] and source.counts()["errors"] >= 2


def test_rows_from_a_subscription_that_is_dropped_ended_and_resumed(target: tuple[Target, int],
                                                                    topology: Topology) -> None:
    servicer, port = target
    source = GnmiSource(topology, GnmiConfig(targets=(GnmiTarget("leaf1", "127.0.0.1", port, insecure=True,
                                                         connect_timeout_s=2),),
                                   interval=2.5, tick_s=0.1, first_backoff_s=0.1))
    stop = threading.Event()
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    for step in source.steps(stop):
        for table, batch in step:
            assert table == "counters"
            rows.extend({name: batch[name][i] for name in batch} for i in range(len(batch["ts"])))
        if any(row["in_octets"] >= octets(3, 2) for row in rows) or time.monotonic() > deadline:
            stop.set()

    sessions = {int(row["in_octets"]) // 1_000_000 for row in rows}
    assert sessions == {1, 2, 3}  # the source came back after the drop and after the end
    counts = source.counts()
    assert counts["reconnects"] == 2 and counts["errors"] == 1  # the drop is an error, the clean end is not
    assert counts["malformed"] == 0 and counts["rows"] == len(rows)
    assert counts["notifications"] <= servicer.sent and counts["notifications"] >= 4 * SAMPLES

    first = [row for row in rows if row["ifname"] == "Ethernet1/1" and row["in_octets"] == octets(1, 1)]
    assert len(first) == 1
    assert first[0]["link"] == "leaf1-spine1" and first[0]["oper_up"] == 1
    assert (first[0]["in_pkts"], first[0]["out_pkts"], first[0]["in_errors"], first[0]["fcs_errors"]) == (11, 5, 2, 3)
    assert first[0]["out_octets"] == 77 and first[0]["source"] == "gnmi"
    second = [row for row in rows if row["ifname"] == "Ethernet2" and row["in_octets"] == octets(2, 2) + 1]
    assert len(second) == 1
    assert (second[0]["link"], second[0]["oper_up"], second[0]["speed_bps"]) == ("leaf1-spine2", 0, 400 * 10**9)
    assert (second[0]["ecn_marked"], second[0]["pfc_rx_pause"], second[0]["pfc_tx_pause"]) == (
        ecn_marks(2, 2) + 5, 40, 2)
    assert first[0]["ecn_marked"] == first[0]["pfc_rx_pause"] == 0  # Ethernet1/1 reports no QoS leaves
    for ifname in ("Ethernet1/1", "Ethernet2"):  # each interface's rows in the order the server sent them
        ordered = [row["in_octets"] for row in rows if row["ifname"] == ifname]
        assert ordered == sorted(ordered)
    assert all(np.datetime64(0, "us") < row["ts"] for row in rows)

    request = servicer.requests[0].subscribe
    assert request.mode == gnmi_pb2.SubscriptionList.STREAM and request.encoding == gnmi_pb2.JSON_IETF
    assert [(entry.mode, entry.sample_interval) for entry in request.subscription] == [
        (gnmi_pb2.SAMPLE, 2_500_000_000)] * 2


def test_an_absent_target_is_counted_and_retried_until_stopped(topology: Topology) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")  # bound, never started: nothing answers there
    source = GnmiSource(topology, GnmiConfig(targets=(GnmiTarget("leaf1", "127.0.0.1", port, insecure=True,
                                                         connect_timeout_s=0.3),), tick_s=0.1, first_backoff_s=0.05))
    stop = threading.Event()
    steps = 0
    deadline = time.monotonic() + 20
    for step in source.steps(stop):
        assert step == []
        steps += 1
        if source.counts()["reconnects"] >= 2 or time.monotonic() > deadline:
            stop.set()
    counts = source.counts()
    assert counts["errors"] >= 2 and counts["rows"] == 0 and steps >= 1
    server.stop(grace=None)
