"""DPI labels from payload signatures, from ports, on truncated and garbage payloads, and through VXLAN."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from dpi_samples import (
    FRAMES_BY_PAYLOAD,
    MORE_FRAMES_BY_PAYLOAD,
    PORT_ONLY_FRAMES,
    SERVER_NAME,
    client_hello,
    tcp,
    tls_application_data,
    udp,
    vxlan,
)
from dpi_scapy import decoded_batch
from scapy.contrib.roce import BTH
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from collectors.dpi import VXLAN_BASE, PacketLabels, classify
from collectors.dpi_signatures import LIKELY, PORT_ONLY
from pipeline.labels import APP_CODE, APPS


def labels_of(frames: list[Packet], snaplen: int | list[int] | None = None) -> PacketLabels:
    data, decoded = decoded_batch(frames, snaplen)
    return classify(data, decoded)


def names(labels: PacketLabels) -> list[str]:
    return [APPS[code] for code in labels.app]


PAYLOAD_CASES = [*FRAMES_BY_PAYLOAD.items(), *MORE_FRAMES_BY_PAYLOAD]


def test_every_label_but_vxlan_and_unknown_has_a_payload_or_header_sample() -> None:
    assert set(FRAMES_BY_PAYLOAD) == set(APPS) - {"vxlan", "unknown"}


@pytest.mark.parametrize(("app", "frame"), PAYLOAD_CASES, ids=[app for app, _ in PAYLOAD_CASES])
def test_label_from_payload_or_header_is_confident(app: str, frame: Packet) -> None:
    labels = labels_of([frame])
    assert names(labels) == [app]
    assert labels.confidence[0] >= LIKELY


@pytest.mark.parametrize(("app", "frame"), PORT_ONLY_FRAMES, ids=[app for app, _ in PORT_ONLY_FRAMES])
def test_label_from_port_alone_is_weaker(app: str, frame: Packet) -> None:
    labels = labels_of([frame])
    assert names(labels) == [app]
    assert labels.confidence[0] == PORT_ONLY


def test_payload_outranks_port() -> None:
    labels = labels_of([tcp(b"GET / HTTP/1.1\r\n\r\n", 443), tcp(b"SSH-2.0-dropbear\r\n", 80)])
    assert names(labels) == ["http", "ssh"]
    assert (labels.confidence > PORT_ONLY).all()


def test_request_lines_of_other_schemes_are_not_http() -> None:
    """SIP's request line has HTTP's shape; only HTTP's request-target forms make it HTTP (RFC 9112 3.2)."""
    http = [b"GET http://proxy.example/x HTTP/1.1\r\n", b"OPTIONS * HTTP/1.1\r\n",
            b"CONNECT example.org:443 HTTP/1.1\r\n", b"CONNECT 192.0.2.1:443 HTTP/1.1\r\n"]
    other = [b"OPTIONS sip:bob@example.org SIP/2.0\r\n", b"GET rtsp://cam/stream RTSP/1.0\r\n",
             b"GET example.org HTTP/1.1\r\n"]
    labels = labels_of([tcp(line, 41000) for line in http + other])
    assert names(labels) == ["http"] * len(http) + ["unknown"] * len(other)


def test_unrecognised_traffic_is_unknown_with_zero_confidence() -> None:
    frames = [tcp(b"hello there", 41000), udp(b"\x01\x02\x03", 50000), tcp(b"", 41000)]
    labels = labels_of(frames)
    assert names(labels) == ["unknown"] * 3
    assert (labels.confidence == 0).all()
    assert list(labels.detail) == ["", "", ""]


def test_tls_client_hello_carries_the_server_name() -> None:
    labels = labels_of([FRAMES_BY_PAYLOAD["tls"], tcp(tls_application_data(), 443)])
    assert names(labels) == ["tls", "tls"]
    assert list(labels.detail) == [SERVER_NAME, ""]
    assert labels.confidence[0] > labels.confidence[1] > PORT_ONLY


def test_client_hello_cut_mid_server_name_is_tls_without_detail() -> None:
    frame = tcp(client_hello(), 443)
    raw = bytes(frame)
    middle_of_name = raw.index(SERVER_NAME.encode()) + len(SERVER_NAME) // 2
    labels = labels_of([frame], snaplen=middle_of_name)
    assert names(labels) == ["tls"]
    assert labels.confidence[0] == 1.0
    assert labels.detail[0] == ""


def test_ssh_banner_is_the_detail() -> None:
    labels = labels_of([FRAMES_BY_PAYLOAD["ssh"]])
    assert labels.detail[0] == "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13"


def _payload_start(frame: Packet) -> int:
    raw = bytes(frame)
    return len(raw) - len(bytes(frame[Raw])) if Raw in frame else len(raw)


# A message cut before its own header was captured is still, certainly, a packet of the transport carrying it.
CARRIER = {"rdma-cm": "rocev2"}


@pytest.mark.parametrize(("app", "frame"), PAYLOAD_CASES, ids=[app for app, _ in PAYLOAD_CASES])
def test_truncation_at_every_byte_never_yields_another_confident_label(app: str, frame: Packet) -> None:
    snaplens = list(range(1, len(bytes(frame)) + 1))
    labels = labels_of([frame] * len(snaplens), snaplens)
    for label, confidence in zip(names(labels), labels.confidence, strict=True):
        assert label in (app, CARRIER.get(app)) or confidence <= PORT_ONLY
    assert names(labels)[-1] == app


def test_signature_cut_before_its_last_byte_falls_back_to_the_port() -> None:
    bgp = tcp(b"\xff" * 16 + b"\x00\x13\x04", 179)
    http = tcp(b"GET /x HTTP/1.1\r\n", 8080)
    start = _payload_start(bgp)
    labels = labels_of([bgp], snaplen=start + 18)
    assert (names(labels), float(labels.confidence[0])) == (["bgp"], PORT_ONLY)
    for captured in range(1, 5):
        labels = labels_of([http], snaplen=_payload_start(http) + captured)
        assert names(labels) == ["unknown"]


WELL_KNOWN = [(app, frame) for app, frame in PORT_ONLY_FRAMES if app not in {"rocev2", "vxlan"}]
# Their signatures check a few header bits on their own port, so random bytes pass them now and then.
FEW_BIT_SIGNATURES = {"iscsi", "bfd", "dns", "ntp", "ptp"}


def random_payloads(rng: np.random.Generator, count: int, longest: int) -> list[bytes]:
    return [rng.integers(0, 256, int(rng.integers(1, longest)), dtype=np.uint8).tobytes() for _ in range(count)]


@pytest.mark.parametrize(("app", "frame"), WELL_KNOWN, ids=[f"{app}-{i}" for i, (app, _) in enumerate(WELL_KNOWN)])
def test_garbage_on_a_well_known_port_gets_only_the_port_label(app: str, frame: Packet) -> None:
    rng = np.random.default_rng(APP_CODE[app])
    labels = labels_of([frame / Raw(payload) for payload in random_payloads(rng, 1000, 300)])
    assert set(names(labels)) == {app}
    payload_matches = np.count_nonzero(labels.confidence > PORT_ONLY)
    assert payload_matches <= (10 if app in FEW_BIT_SIGNATURES else 0)


def test_garbage_on_other_ports_matches_no_signature() -> None:
    rng = np.random.default_rng(7)
    frames = []
    for payload in random_payloads(rng, 3000, 120):
        port = int(rng.integers(33000, 60000))
        frames.append(tcp(payload, port) if rng.random() < 0.5 else udp(payload, port))
    labels = labels_of(frames)
    assert set(names(labels)) == {"unknown"}


def test_vxlan_names_the_inner_app_and_its_detail() -> None:
    inner_http = Ether() / IP(src="10.0.1.5", dst="10.0.2.7") / TCP(sport=40000, dport=80) / Raw(b"GET / HTTP/1.1\r\n")
    inner_tls = Ether() / IP(src="10.0.1.5", dst="10.0.2.7") / TCP(sport=40001, dport=443) / Raw(client_hello())
    inner_roce = FRAMES_BY_PAYLOAD["rocev2"]
    inner_syn = Ether() / IP(src="10.0.1.5", dst="10.0.2.7") / TCP(sport=40002, dport=45000, flags="S")
    labels = labels_of([vxlan(inner_http), vxlan(inner_tls), vxlan(inner_roce), vxlan(inner_syn)])
    assert names(labels) == ["vxlan"] * 4
    assert list(labels.detail) == ["inner=http", f"inner=tls {SERVER_NAME}", "inner=rocev2", "inner=unknown"]
    assert labels.confidence[2] == 1.0
    assert labels.confidence[1] > labels.confidence[0] > labels.confidence[3] > PORT_ONLY


def test_vxlan_whose_inner_frame_was_cut_names_only_what_was_seen() -> None:
    frame = vxlan(FRAMES_BY_PAYLOAD["http"])
    inner_ip = len(bytes(frame)) - len(bytes(frame[VXLAN].payload[IP]))
    labels = labels_of([frame] * 2, [inner_ip + 10, inner_ip + 20 + 10])  # cut in the inner IP, TCP header
    assert names(labels) == ["vxlan", "vxlan"]
    assert list(labels.detail) == ["", "inner=unknown"]
    assert (labels.confidence == VXLAN_BASE).all()


def test_flow_merge_by_highest_confidence_keeps_the_server_name() -> None:
    """The flow table keeps each flow's most confident row; a TLS flow's is its ClientHello."""
    flow = [tcp(b"", 443), tcp(client_hello(), 443), tcp(tls_application_data(), 443), tcp(b"\x8a" * 40, 443)]
    labels = labels_of(flow)
    best = int(np.argmax(labels.confidence))
    assert (APPS[labels.app[best]], labels.detail[best]) == ("tls", SERVER_NAME)


def test_malformed_rows_are_unknown() -> None:
    data, decoded = decoded_batch([FRAMES_BY_PAYLOAD["tls"], FRAMES_BY_PAYLOAD["bgp"]])
    labels = classify(data, dataclasses.replace(decoded, ok=np.array([False, True])))
    assert names(labels) == ["unknown", "bgp"]
    assert (labels.confidence[0], labels.detail[0]) == (0, "")


def test_invalid_bth_opcode_is_not_confident_rocev2() -> None:
    frame = udp(BTH(opcode=0x1F, dqpn=3) / Raw(bytes(16)), 4791, sport=49152)
    labels = labels_of([frame])
    assert (names(labels), float(labels.confidence[0])) == (["rocev2"], PORT_ONLY)


def test_empty_batch() -> None:
    labels = labels_of([])
    assert len(labels) == 0
    assert labels.app.dtype == np.uint8
    assert labels.confidence.dtype == np.float32
