"""Issue 7's check: a sample replayed by tcpreplay from a mirror-source namespace at a known rate into the
capture interface, read live by CaptureSource. Every packet tcpreplay sent is either captured or counted
as a kernel drop, and with no drops the flows summed over the capture equal the sample's ground truth."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from netns import NetLab, needs_netns

from collectors.capture_source import CaptureSource
from collectors.source import Columns
from pipeline.topology import load_topology

pytestmark = [pytest.mark.netns, needs_netns]

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
KEY = ("link", "direction", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "vlan", "vni", "roce_qp")
SUMS = ("packets", "bytes", "ecn_ect", "ecn_ce", "cnp")
RATE_PPS = 20_000
WAIT_S = 20


def mirror_link(lab: NetLab) -> tuple[str, str, str]:
    """The mirror source's namespace and a veth from it into this namespace, where the collector captures:
    (namespace, send end, capture end). IPv6 is off on both ends so neither kernel adds frames of its own."""
    namespace = lab.namespace("mirror")
    lab.run(namespace, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
    send, capture = f"fs{lab.tag}m", f"fs{lab.tag}c"
    lab.veth(send, capture, ns_a=namespace, mtu=9000)
    subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{capture}.disable_ipv6=1"], check=True)
    return namespace, send, capture


def summed_flows(parts: list[Columns]) -> dict[tuple[object, ...], dict[str, int]]:
    """Flow rows summed per truth key over the whole capture (live rows are cut by arrival time)."""
    flows: dict[tuple[object, ...], dict[str, int]] = defaultdict(lambda: dict.fromkeys(SUMS, 0))
    for rows in parts:
        for i in range(len(rows["packets"])):
            key = tuple(
                _address(rows[name][i]) if name.endswith("_ip") else
                rows[name][i] if rows[name].dtype == object else int(rows[name][i])
                for name in KEY
            )
            for name in SUMS:
                flows[key][name] += int(rows[name][i])
    return dict(flows)


def _address(raw: bytes) -> str:
    address = ipaddress.IPv6Address(raw)
    return str(address.ipv4_mapped or address)


@pytest.mark.parametrize("name", ["mixed", "link_failure"])
def test_replayed_sample_is_captured_whole_and_equals_truth(name: str) -> None:
    truth = json.loads((SAMPLES / f"{name}.truth.json").read_text())
    with NetLab() as lab:
        namespace, send, capture = mirror_link(lab)
        source = CaptureSource(
            load_topology(SAMPLES / f"{name}.topology.yaml"), capture, block_bytes=1 << 20, blocks=64, timeout_ms=50
        )
        stop = threading.Event()
        steps = source.steps(stop)
        parts = [columns for table, columns in next(steps) if table == "flows"]  # the ring is open
        replay = lab.popen(
            namespace, ["tcpreplay", f"--intf1={send}", f"--pps={RATE_PPS}", str(SAMPLES / f"{name}.pcap")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + WAIT_S
        for step in steps:
            parts += [columns for table, columns in step if table == "flows"]
            kernel = source.kernel_stats()
            settled = replay.poll() is not None and source.counts()["packets"] + kernel.drops >= kernel.packets
            if (settled and kernel.packets >= truth["packets"]) or time.monotonic() > deadline:
                stop.set()
        output, errors = replay.communicate()
    assert replay.returncode == 0, errors
    sent = int(re.search(r"Successful packets:\s+(\d+)", output).group(1))  # type: ignore[union-attr]
    counts = source.counts()
    assert sent == truth["packets"]
    assert counts["packets"] + counts["kernel_drops"] == sent == source.kernel_stats().packets
    assert counts["malformed"] == 0
    flows = summed_flows(parts)
    assert sum(flow["packets"] for flow in flows.values()) == counts["packets"]
    if counts["kernel_drops"] == 0:
        expected = {tuple(flow[k] for k in KEY): {s: flow[s] for s in SUMS} for flow in truth["flows"]}
        assert set(flows) == set(expected)
        assert {key: flows[key] for key in expected if flows[key] != expected[key]} == {}
