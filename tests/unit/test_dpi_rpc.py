"""What the collector learns from the portmapper: across batches, bounded, and nothing from what is not a
successful answer to a question it saw. Frames are scapy-built and go through the real decoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from dpi_samples import MOUNTD, NLM, getport_call, getport_reply, mount_reply, record_marked, rpc_reply
from scapy.layers.inet import GRE, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

from collectors.decode import Decoder
from collectors.dpi import Classifier
from collectors.dpi_rpc import RpcPorts
from collectors.pcapfile import open_capture
from pipeline.labels import APPS

CLIENT, SERVER = "10.0.1.5", "10.0.2.7"


def exchange(xid: int, program: int, proto: int, port: int) -> list[Packet]:
    """A GETPORT call over UDP and the portmapper's answer."""
    return [
        Ether() / IP(src=CLIENT, dst=SERVER) / UDP(sport=700, dport=111) / Raw(getport_call(xid, program, 3, proto)),
        Ether() / IP(src=SERVER, dst=CLIENT) / UDP(sport=111, dport=700) / Raw(getport_reply(xid, port)),
    ]


def from_server(port: int, payload: bytes, proto: int = 17) -> Packet:
    l4 = UDP(sport=port, dport=701) if proto == 17 else TCP(sport=port, dport=703, flags="PA")
    return Ether() / IP(src=SERVER, dst=CLIENT) / l4 / Raw(payload)


def classify(classifier: Classifier, frames: list[Packet], path: Path) -> list[tuple[str, str]]:
    wrpcap(str(path), frames)
    batch = next(iter(open_capture(path)))
    labels = classifier.classify(batch.data, Decoder().decode(batch))
    return [(APPS[code], str(detail)) for code, detail in zip(labels.app, labels.detail, strict=True)]


def test_a_port_learned_in_one_batch_labels_the_next(tmp_path: Path) -> None:
    classifier = Classifier()
    classify(classifier, exchange(1, NLM, 6, 37345), tmp_path / "a.pcap")
    later = [from_server(37345, record_marked(rpc_reply(9)), proto=6), from_server(37345, b"\x00" * 40, proto=6),
             from_server(37346, record_marked(rpc_reply(9)), proto=6), from_server(37345, mount_reply(9))]
    assert classify(classifier, later, tmp_path / "b.pcap") == [
        ("nfs", "nlm"), ("nfs", "nlm"), ("unknown", ""), ("unknown", ""),  # other port; same port but UDP
    ]


def in_gre(frame: Packet) -> Packet:
    return Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / GRE(key_present=1, key=9, proto=0x0800) / frame[IP]


def in_vxlan(frame: Packet) -> Packet:
    return Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=61000, dport=4789) / VXLAN(vni=9) / frame


def test_ports_are_learned_inside_tunnels_whose_inner_flow_is_the_flow(tmp_path: Path) -> None:
    """GRE and VXLAN alike: the inner flow is the flow. Inside VXLAN the label stays `vxlan` (DESIGN.md
    section 6) and names the RPC program as the inner app."""
    reply = [from_server(37345, record_marked(rpc_reply(9)), proto=6)]
    learned = Classifier()
    classify(learned, [in_gre(frame) for frame in exchange(1, NLM, 6, 37345)], tmp_path / "gre.pcap")
    assert classify(learned, [in_gre(frame) for frame in reply], tmp_path / "gre-reply.pcap") == [("nfs", "nlm")]
    tenant = Classifier()
    classify(tenant, [in_vxlan(frame) for frame in exchange(1, NLM, 6, 37345)], tmp_path / "vxlan.pcap")
    assert len(tenant.rpc_ports) == 1
    assert classify(tenant, [in_vxlan(frame) for frame in reply], tmp_path / "vxlan-reply.pcap") == [
        ("vxlan", "inner=nfs nlm"),
    ]
    assert classify(Classifier(), [in_vxlan(frame) for frame in reply], tmp_path / "unlearned.pcap") == [
        ("vxlan", "inner=unknown"),
    ]


def test_the_oldest_learned_port_goes_first(tmp_path: Path) -> None:
    classifier = Classifier(RpcPorts(max_ports=2))
    frames = [*exchange(1, MOUNTD, 17, 20001), *exchange(2, MOUNTD, 17, 20002), *exchange(3, NLM, 17, 20003)]
    classify(classifier, frames, tmp_path / "learn.pcap")
    assert len(classifier.rpc_ports) == 2
    replies = [from_server(port, mount_reply(9)) for port in (20001, 20002, 20003)]
    assert classify(classifier, replies, tmp_path / "replies.pcap") == [
        ("unknown", ""), ("nfs", "mountd"), ("nfs", "nlm"),
    ]


def test_nothing_is_learned_from_unanswered_unregistered_or_garbled_exchanges(tmp_path: Path) -> None:
    rng = np.random.default_rng(111)
    garbage = [rng.integers(0, 256, int(rng.integers(1, 80)), dtype=np.uint8).tobytes() for _ in range(200)]
    frames = [
        exchange(1, MOUNTD, 17, 20001)[1],  # an answer to no question seen
        *exchange(2, MOUNTD, 17, 0),  # port 0: not registered
        exchange(3, MOUNTD, 17, 20003)[0],
        Ether() / IP(src=SERVER, dst=CLIENT) / UDP(sport=111, dport=700) / Raw(getport_reply(3, 20003)[:20]),  # cut
        *[Ether() / IP(src=CLIENT, dst=SERVER) / UDP(sport=700, dport=111) / Raw(payload) for payload in garbage],
        *[Ether() / IP(src=SERVER, dst=CLIENT) / UDP(sport=111, dport=700) / Raw(payload) for payload in garbage],
    ]
    classifier = Classifier()
    classify(classifier, frames, tmp_path / "noise.pcap")
    assert len(classifier.rpc_ports) == 0
