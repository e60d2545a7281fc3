"""Issue 7's check: each leaf of the sample fabric is a namespace that replays its own ERSPAN mirror stream
(the sample's records from its loopback 10.254.0.N) with tcpreplay at a known rate into a packet-broker
namespace, whose bridge floods them out of one port to the collector's capture interface, read live by
CaptureSource. Every packet the leaves sent is either captured or counted as a kernel drop, and with no
drops the flows summed over the capture equal the sample's ground truth."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from netns import NetLab, ip, needs_netns, needs_tcpreplay
from sample_flows import SAMPLES, summed_flows, truth_flows

from collectors.capture_source import CaptureConfig, CaptureSource
from collectors.pcapfile import open_capture
from collectors.recorder import Recorder, store_directory
from fabricscope.cli import main
from pipeline.topology import load_topology

pytestmark = [pytest.mark.netns, needs_netns, needs_tcpreplay]

RATE_PPS = 5_000  # per leaf
WAIT_S = 20
LEAVES = 4
OUTER_IPV4_SOURCE_LAST = 14 + 15  # last byte of the outer IPv4 source address after the Ethernet header


def leaf_spine_lab(lab: NetLab, leaves: int) -> tuple[list[tuple[str, str]], str]:
    """Leaf namespaces and their veths into a packet-broker namespace's bridge, plus the bridge's port to this
    namespace: ([(leaf namespace, send end)], capture end). IPv6 is off everywhere so no kernel adds frames."""
    quiet = ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]
    broker = lab.namespace("broker")
    lab.run(broker, quiet)
    # Where br_netfilter is loaded, its IP checks would drop the mirrored frames truncated to 128 bytes (their
    # IPv4 total length is the original's): a packet broker forwards frames without looking inside.
    lab.run(broker, ["sysctl", "-qew", "net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-arptables=0",
                     "net.bridge.bridge-nf-call-ip6tables=0"])
    # Without snooping the bridge joins no group of its own (224.0.0.106) and so sends no IGMP report.
    ip("link", "add", "fabric", "mtu", "9000", "type", "bridge", "mcast_snooping", "0", namespace=broker)
    ip("link", "set", "fabric", "up", namespace=broker)
    sources = []
    for n in range(1, leaves + 1):
        leaf = lab.namespace(f"leaf{n}")
        lab.run(leaf, quiet)
        send, port = f"fs{lab.tag}l{n}", f"fs{lab.tag}p{n}"
        lab.veth(send, port, ns_a=leaf, ns_b=broker)
        ip("link", "set", port, "master", "fabric", namespace=broker)
        sources.append((leaf, send))
    uplink, capture = f"fs{lab.tag}u", f"fs{lab.tag}c"
    lab.veth(uplink, capture, ns_a=broker)
    ip("link", "set", uplink, "master", "fabric", namespace=broker)
    subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{capture}.disable_ipv6=1"], check=True)
    return sources, capture


def tcpreplay_each(lab: NetLab, sources: list[tuple[str, str]], pcaps: list[Path]) -> list[subprocess.Popen[str]]:
    """One tcpreplay per leaf, each sending its leaf's capture out of its interface at RATE_PPS."""
    return [lab.popen(leaf, ["tcpreplay", f"--intf1={send}", f"--pps={RATE_PPS}", str(pcap)],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for (leaf, send), pcap in zip(sources, pcaps, strict=True)]


def split_by_leaf(pcap: Path, out: Path) -> list[Path]:
    """The sample's records in one pcap per leaf, keyed by the ERSPAN source 10.254.0.N (outer IPv4 source)."""
    with open_capture(pcap) as capture:
        header = bytes(capture.data[:24])
        records: dict[int, list[bytes]] = defaultdict(list)
        for batch in capture:
            for at, length in zip(batch.offset.tolist(), batch.caplen.tolist(), strict=True):
                records[int(batch.data[at + OUTER_IPV4_SOURCE_LAST])].append(bytes(batch.data[at - 16 : at + length]))
    paths = []
    for leaf, chunks in sorted(records.items()):
        path = out / f"leaf{leaf}.pcap"
        path.write_bytes(header + b"".join(chunks))
        paths.append(path)
    return paths


@pytest.mark.parametrize("name", ["mixed", "link_failure"])
def test_replayed_sample_is_captured_whole_and_equals_truth(name: str, tmp_path: Path) -> None:
    truth = json.loads((SAMPLES / f"{name}.truth.json").read_text())
    pcaps = split_by_leaf(SAMPLES / f"{name}.pcap", tmp_path)
    with NetLab() as lab:
        sources, capture = leaf_spine_lab(lab, LEAVES)
        assert len(pcaps) == LEAVES
        topology = load_topology(SAMPLES / f"{name}.topology.yaml")
        source = CaptureSource(
            topology, CaptureConfig(iface=capture, block_bytes=1 << 20, ring_mb=64, timeout_ms=50),
            recorder=Recorder(store_directory(tmp_path / "store"), topology),
        )
        stop = threading.Event()
        steps = source.steps(stop)
        parts = [columns for table, columns in next(steps) if table == "flows"]  # the ring is open
        replays = tcpreplay_each(lab, sources, pcaps)
        deadline = time.monotonic() + WAIT_S
        for step in steps:
            parts += [columns for table, columns in step if table == "flows"]
            kernel = source.kernel_stats()
            replayed = all(replay.poll() is not None for replay in replays)
            settled = replayed and source.counts()["packets"] + kernel.drops >= kernel.packets
            if (settled and kernel.packets >= truth["packets"]) or time.monotonic() > deadline:
                stop.set()
        outputs = [replay.communicate() for replay in replays]
    assert [replay.returncode for replay in replays] == [0] * LEAVES, [errors for _, errors in outputs]
    sent = sum(int(re.search(r"Successful packets:\s+(\d+)", output).group(1))  # type: ignore[union-attr]
               for output, _ in outputs)
    counts = source.counts()
    assert sent == truth["packets"]
    assert counts["packets"] + counts["kernel_drops"] == sent == source.kernel_stats().packets
    assert counts["malformed"] == 0
    flows = summed_flows(parts)
    assert sum(flow["packets"] for flow in flows.values()) == counts["packets"]
    if counts["kernel_drops"] == 0:
        expected = truth_flows(name)
        assert set(flows) == set(expected)
        assert {key: flows[key] for key in expected if flows[key] != expected[key]} == {}
        assert source.recorder is not None and source.recorder.counts()["recorder_packets"] == counts["packets"]
        recorded_link_equals_its_erspan_session(name, tmp_path)


def recorded_link_equals_its_erspan_session(name: str, tmp_path: Path) -> None:
    """`fabricscope packets` on the recorder's store: one link's copies are those of its ERSPAN session in the
    sample (tshark's filter), in order: tcpreplay sent each sample record as captured, so what the wire and the
    recorder saw is the sample's captured length."""
    out = tmp_path / "link.pcap"
    assert main(["packets", "--data-dir", str(tmp_path / "store"), "--topology",
                 str(SAMPLES / f"{name}.topology.yaml"), "--link", "leaf1-spine1", "--limit", "100000",
                 "--out", str(out)]) == 0
    fields = ["-T", "fields", "-E", "occurrence=l", "-e", "ip.src", "-e", "ip.dst", "-e", "infiniband.bth.psn"]
    sample = subprocess.run(["tshark", "-r", str(SAMPLES / f"{name}.pcap"), "-Y", "erspan.spanid == 11", *fields,
                             "-e", "frame.cap_len"], capture_output=True, text=True, check=True).stdout
    recorded = subprocess.run(["tshark", "-r", str(out), *fields, "-e", "frame.len"],
                              capture_output=True, text=True, check=True).stdout
    assert recorded.splitlines() == sample.splitlines() and sample


def test_two_capture_workers_share_the_frames_by_flow_and_give_one_row_per_link_bin(tmp_path: Path) -> None:
    """`capture --workers 2`: two rings in one PACKET_FANOUT_HASH group; every packet sent is captured by one
    of them or counted as a kernel drop, with no drops the flows equal the truth, and a link bin both workers
    hold a part of is one row."""
    name = "mixed"
    truth = json.loads((SAMPLES / f"{name}.truth.json").read_text())
    pcaps = split_by_leaf(SAMPLES / f"{name}.pcap", tmp_path)
    with NetLab() as lab:
        sources, capture = leaf_spine_lab(lab, LEAVES)
        source = CaptureSource(
            load_topology(SAMPLES / f"{name}.topology.yaml"),
            CaptureConfig(iface=capture, block_bytes=1 << 20, ring_mb=64, timeout_ms=50), workers=2,
        ).start()
        try:
            stop = threading.Event()
            steps = source.steps(stop)
            tables: dict[str, list[dict[str, np.ndarray]]] = defaultdict(list)
            for table, columns in next(steps):  # the workers' rings are open
                tables[table].append(columns)
            replays = tcpreplay_each(lab, sources, pcaps)
            deadline = time.monotonic() + WAIT_S
            for step in steps:
                for table, columns in step:
                    tables[table].append(columns)
                kernel = source.kernel_stats()
                replayed = all(replay.poll() is not None for replay in replays)
                settled = replayed and source.counts()["packets"] + kernel.drops >= kernel.packets
                if (settled and kernel.packets >= truth["packets"]) or time.monotonic() > deadline:
                    stop.set()
            outputs = [replay.communicate() for replay in replays]
        finally:
            source.stop()
    assert [replay.returncode for replay in replays] == [0] * LEAVES, [errors for _, errors in outputs]
    counts = source.counts()
    assert counts["packets"] + counts["kernel_drops"] == truth["packets"] == source.kernel_stats().packets
    flows = summed_flows(tables["flows"])
    assert sum(flow["packets"] for flow in flows.values()) == counts["packets"]
    bins = {name: np.concatenate([part[name] for part in tables["link_bins"]]) for name in ("ts", "link", "direction",
                                                                                           "packets")}
    keys = list(zip(bins["ts"].tolist(), bins["link"].tolist(), bins["direction"].tolist(), strict=True))
    assert len(keys) == len(set(keys)) > 0
    assert int(bins["packets"].sum()) == counts["packets"] - counts["unattributed"]
    if counts["kernel_drops"] == 0:
        expected = truth_flows(name)
        assert {key: flows[key] for key in expected if flows.get(key) != expected[key]} == {}
