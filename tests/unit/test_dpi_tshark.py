"""The newer DPI shapes checked against Debian tshark: a scapy-written capture of ONC RPC on the ports the
portmapper hands out, QUIC v1/v2 Initials, HTTP/2 and gRPC, RDMA CM MADs and BFD echo/multihop is read by
our decoder and classifier and dissected by tshark. For every frame the generator's label must be what we
say and what tshark's fields say."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from dpi_samples import (
    CM_REP,
    CM_REQ,
    GRPC_PATH,
    MOUNTD,
    NLM,
    bfd_echo,
    getaddr_call,
    getaddr_reply,
    getport_call,
    getport_reply,
    grpc_request_headers,
    grpc_response_headers,
    h2c_request_headers,
    http2_client_preface,
    mount_call,
    mount_reply,
    quic_initial,
    rdma_cm_mad,
    record_marked,
    rpc_call,
    rpc_reply,
)
from requirements import require
from scapy.contrib.bfd import BFD
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

from collectors.decode import Decoder
from collectors.dpi import Classifier
from collectors.pcapfile import open_capture
from pipeline.labels import APPS

pytestmark = pytest.mark.tshark

CLIENT, SERVER = "10.0.1.5", "10.0.2.7"
MOUNTD_PORT, NLM_PORT = 20048, 37345  # what the portmapper hands out in this capture
H2C_PORT, GRPC_PORT, QUIC_PORT = 8080, 50051, 8443
FIELDS = ("frame.protocols", "rpc.program", "quic.version", "quic.long.packet_type", "quic.long.packet_type_v2",
          "http2.magic", "http2.type", "http2.headers.content_type", "http2.headers.path", "infiniband.mad.mgmtclass",
          "infiniband.mad.attributeid", "udp.dstport")
OPTIONS = ("-d", f"tcp.port=={H2C_PORT},http2", "-d", f"tcp.port=={GRPC_PORT},http2", "-d", "udp.port==4791,infiniband",
           "-o", "tcp.desegment_tcp_streams:FALSE")
RPC_PROGRAMS = {"100000": "portmapper", "100005": "mountd", "100021": "nlm"}
CM_ATTRIBUTES = {CM_REQ: "REQ", CM_REP: "REP"}


def _udp(payload: bytes, sport: int, dport: int, *, reply: bool = False) -> Packet:
    src, dst = (SERVER, CLIENT) if reply else (CLIENT, SERVER)
    return Ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(payload)


def _tcp(payload: bytes, sport: int, dport: int, *, reply: bool = False, after: bytes = b"") -> Packet:
    """A segment of a connection that already carried `after` in this direction."""
    src, dst = (SERVER, CLIENT) if reply else (CLIENT, SERVER)
    segment = TCP(sport=sport, dport=dport, flags="PA", seq=1 + len(after), ack=1)
    return Ether() / IP(src=src, dst=dst) / segment / Raw(payload)


# (frame, the app and detail it carries by construction)
CAPTURE: list[tuple[Packet, str, str]] = [
    (_udp(getport_call(1, MOUNTD, 3, 17), 700, 111), "nfs", "portmapper"),
    (_udp(getport_reply(1, MOUNTD_PORT), 111, 700, reply=True), "nfs", "portmapper"),
    (_udp(mount_call(2), 701, MOUNTD_PORT), "nfs", "mountd"),
    (_udp(mount_reply(2), MOUNTD_PORT, 701, reply=True), "nfs", "mountd"),
    (_tcp(record_marked(getaddr_call(3, NLM, 4, "tcp")), 702, 111), "nfs", "portmapper"),
    (_tcp(record_marked(getaddr_reply(3, f"{SERVER}.{NLM_PORT >> 8}.{NLM_PORT & 0xFF}")), 111, 702, reply=True),
     "nfs", "portmapper"),
    (_tcp(record_marked(rpc_call(4, NLM, 4, 0)), 703, NLM_PORT), "nfs", "nlm"),
    (_tcp(record_marked(rpc_reply(4)), NLM_PORT, 703, reply=True), "nfs", "nlm"),
    (_udp(quic_initial(0x00000001, 0b00), 50000, QUIC_PORT), "quic", "v1"),
    (_udp(quic_initial(0x6B3343CF, 0b01), 50001, QUIC_PORT), "quic", "v2"),
    (_tcp(http2_client_preface(), 41000, H2C_PORT), "http2", ""),
    (_tcp(h2c_request_headers(), 41000, H2C_PORT, after=http2_client_preface()), "http2", ""),
    (_tcp(http2_client_preface(), 41001, GRPC_PORT), "http2", ""),
    (_tcp(grpc_request_headers(), 41001, GRPC_PORT, after=http2_client_preface()), "grpc", GRPC_PATH),
    (_tcp(grpc_response_headers(), GRPC_PORT, 41001, reply=True), "grpc", ""),
    (rdma_cm_mad(CM_REQ), "rdma-cm", "REQ"),
    (rdma_cm_mad(CM_REP), "rdma-cm", "REP"),
    (_udp(bfd_echo(), 3785, 3785), "bfd", ""),
    (_udp(bytes(BFD(my_discriminator=7)), 49999, 4784), "bfd", ""),
]


def tshark_app(fields: dict[str, str]) -> tuple[str, str]:
    """(app, detail) of one frame from tshark's fields alone."""
    if fields["rpc.program"]:
        return "nfs", RPC_PROGRAMS[fields["rpc.program"]]
    if fields["quic.version"]:
        version = int(fields["quic.version"], 0)
        initial = (version == 1 and fields["quic.long.packet_type"] == "0") or (
            version == 0x6B3343CF and fields["quic.long.packet_type_v2"] == "1")
        return ("quic", {1: "v1", 0x6B3343CF: "v2"}[version]) if initial else ("unknown", "")
    if fields["http2.headers.content_type"].startswith("application/grpc"):
        return "grpc", fields["http2.headers.path"]
    if fields["http2.magic"] or fields["http2.type"] == "1":
        return "http2", ""
    if fields["infiniband.mad.mgmtclass"] and int(fields["infiniband.mad.mgmtclass"], 0) == 0x07:
        return "rdma-cm", CM_ATTRIBUTES[int(fields["infiniband.mad.attributeid"], 0)]
    if {"bfd", "bfd_echo"} & set(fields["frame.protocols"].split(":")):
        return "bfd", ""
    return "unknown", ""


def tshark_view(pcap: Path) -> list[tuple[str, str]]:
    command = ["tshark", "-n", "-r", str(pcap), *OPTIONS, "-T", "fields", "-E", "separator=\t", "-E",
               "occurrence=f"]
    for field in FIELDS:
        command += ["-e", field]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [tshark_app(dict(zip(FIELDS, line.split("\t"), strict=True))) for line in output.splitlines()]


def our_view(pcap: Path, classifier: Classifier) -> list[tuple[str, str]]:
    batch = next(iter(open_capture(pcap)))
    decoded = Decoder().decode(batch)
    assert decoded.ok.all()
    labels = classifier.classify(batch.data, decoded)
    return [(APPS[code], str(detail)) for code, detail in zip(labels.app, labels.detail, strict=True)]


@pytest.fixture(autouse=True)
def _tshark() -> None:
    require(shutil.which("tshark") is not None, "tshark is required (Debian package tshark; `make test` installs it)",
            everywhere=True)


def test_new_shapes_agree_with_tshark(tmp_path: Path) -> None:
    pcap = tmp_path / "dpi-new.pcap"
    wrpcap(str(pcap), [frame for frame, _, _ in CAPTURE])
    truth = [(app, detail) for _, app, detail in CAPTURE]
    assert tshark_view(pcap) == truth
    assert our_view(pcap, Classifier()) == truth


def test_replies_on_handed_out_ports_need_the_portmapper(tmp_path: Path) -> None:
    """Without the portmapper's answers in the capture, the replies from mountd's and nlm's ports name no
    program; the calls still do, by their program number."""
    pcap = tmp_path / "no-portmapper.pcap"
    wrpcap(str(pcap), [CAPTURE[i][0] for i in (2, 3, 6, 7)])
    assert our_view(pcap, Classifier()) == [("nfs", "mountd"), ("unknown", ""), ("nfs", "nlm"), ("unknown", "")]
