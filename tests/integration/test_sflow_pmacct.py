"""Issue 7's check against a real sFlow agent: Debian pmacctd with its sfprobe plugin reads a sample pcap and
exports sFlow v5 to SflowSource on loopback. With 1-in-1 sampling the flows equal the sample's ground truth;
with 1-in-N they agree within sampling error and say N; an `sflow:` topology entry attributes frames that
carry no ERSPAN, and sfprobe's counter samples arrive as `counters` rows of that link.

Every pcap given to pmacctd ends with FILLER frames (tests/pmacct.py says why) whose flows are ignored.
sfprobe copies at most 128 bytes of each frame, so the collector recovers lengths from the inner IP
header, as for any truncated mirror.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from pmacct import AGENT, FILLER, FILLER_IP, IFINDEX, IFSPEED, pmacctd, with_filler
from requirements import requires
from sample_flows import KEY, SAMPLES, SUMS, summed_flows, truth_flows
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from collectors.sflow_source import SflowConfig, SflowSource
from pipeline.source import Columns
from pipeline.topology import load_topology

pytestmark = requires(shutil.which("pmacctd") is not None, "Debian pmacct is not installed (make test installs it)")

VXLAN_PORT = 4789
QUIET_S = 1.5  # pmacctd has finished when its log says so and no datagram came for this long
# a run stops when its samples came and pmacctd went quiet; this only bounds a broken one (in the fresh-clone
# suite the two-play test reached 40 s with one play's samples, and took 66 s to pass beside a running demo)
DEADLINE_S = 180
SIGMAS = 4


def collect(source: SflowSource, process: subprocess.Popen[str], log: Path, *, samples: int = 0
            ) -> dict[str, list[Columns]]:
    """Run the source until pmacctd has read its file (every replay), `samples` flow samples have come, and it
    has gone quiet; the tables it yielded. Its sfprobe plugin exports behind the reader: on a loaded machine it
    went quiet for longer than QUIET_S after the log said the file was read, with 1,050 of 5,622 samples sent."""
    tables: dict[str, list[Columns]] = defaultdict(list)
    stop = threading.Event()
    deadline = time.monotonic() + DEADLINE_S
    last, quiet_since = -1, time.monotonic()
    try:
        for step in source.steps(stop):
            for table, columns in step:
                tables[table].append(columns)
            datagrams = source.counts()["datagrams"]
            if datagrams != last:
                last, quiet_since = datagrams, time.monotonic()
            finished = "finished reading PCAP capture file" in log.read_text()
            complete = finished and source.counts()["samples_flow"] >= samples
            if (complete and time.monotonic() - quiet_since > QUIET_S) or time.monotonic() > deadline:
                stop.set()
    finally:
        process.terminate()
        process.wait(timeout=10)
    return tables


def without_filler(parts: list[Columns], plays: int = 1) -> dict[tuple[object, ...], dict[str, int]]:
    """Flows summed per truth key, the filler's left out (at most FILLER packets a play must be there)."""
    flows = summed_flows(parts)
    assert sum(sums["packets"] for key, sums in flows.items() if key[2] == FILLER_IP) <= FILLER * plays
    return {key: sums for key, sums in flows.items() if key[2] != FILLER_IP}


def truth_vteps(name: str) -> dict[tuple[object, ...], tuple[str, str]]:
    """The VTEPs of each VXLAN tenant flow of the sample's truth, by truth key."""
    truth = json.loads((SAMPLES / f"{name}.truth.json").read_text())
    return {tuple(flow[k] for k in KEY): (flow["outer_src_ip"], flow["outer_dst_ip"])
            for flow in truth["flows"] if flow["app"] == "vxlan"}


def by_vtep(flows: dict[tuple[object, ...], dict[str, int]],
            vteps: dict[tuple[object, ...], tuple[str, str]] | None = None) -> dict[tuple[object, ...], dict[str, int]]:
    """VXLAN flows summed per (link, direction, VTEPs, VNI). sfprobe's 128 bytes of an ERSPAN II mirrored
    VXLAN frame end before the tenant's IP header (50 + 14 + 20 + 8 + 8 + 14 + 20 = 134 bytes), so the
    collector keeps such a packet in its outer VTEP-to-VTEP flow (README, "Encapsulations"), whose UDP
    source port the truth does not record: the truth's tenant flows (`vteps` given) and the collector's
    outer flows (UDP to 4789) are compared by what both know."""
    folded: dict[tuple[object, ...], dict[str, int]] = defaultdict(lambda: dict.fromkeys(SUMS, 0))
    for key, sums in flows.items():
        link, direction, src, dst, _, dst_port, _, _, vni, _ = key
        if vteps is not None and key in vteps:
            key = (link, direction, *vteps[key], vni)
        elif vteps is None and dst_port == VXLAN_PORT:
            key = (link, direction, src, dst, vni)
        for column in SUMS:
            folded[key][column] += sums[column]
    return dict(folded)


def per_link(flows: dict[tuple[object, ...], dict[str, int]]) -> dict[str, dict[str, int]]:
    links: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SUMS, 0))
    for key, sums in flows.items():
        for name in SUMS:
            links[str(key[0])][name] += sums[name]
    return links


@pytest.mark.parametrize("name", ["mixed", "allreduce_congestion"])
def test_unsampled_export_equals_truth(tmp_path: Path, name: str) -> None:
    pcap = tmp_path / f"{name}.pcap"
    with_filler(SAMPLES / f"{name}.pcap", pcap)
    source = SflowSource(load_topology(SAMPLES / "topology.yaml"), SflowConfig(listen="127.0.0.1:0")).start()
    process, log = pmacctd(tmp_path, pcap, source.port)
    expected = truth_flows(name)
    tables = collect(source, process, log, samples=sum(flow["packets"] for flow in expected.values()))
    counts = source.counts()
    assert counts["lost_datagrams"] == 0 and counts["malformed"] == 0 and counts["malformed_packets"] == 0
    assert counts["samples_flow"] >= sum(flow["packets"] for flow in expected.values())
    flows, expected = by_vtep(without_filler(tables["flows"])), by_vtep(expected, truth_vteps(name))
    assert set(flows) == set(expected)
    assert {key: (flows[key], want) for key, want in expected.items() if flows[key] != want} == {}
    assert {int(rate) for part in tables["flows"] for rate in part["sampling_rate"]} == {1}


def test_sampled_export_estimates_truth_within_sampling_error(tmp_path: Path) -> None:
    """With 1-in-N sampling a link's packet estimate (N x samples) is N times a binomial count of mean
    T/N, so its standard deviation is sqrt(N T (1 - 1/N)) <= sqrt(N T); bytes likewise with T replaced by
    the sum of squared frame sizes, bounded by largest frame x bytes. Four deviations on each of 8 links
    fail a correct collector about once in 2,000 runs."""
    name, rate = "link_failure", 10
    pcap = tmp_path / f"{name}.pcap"
    with_filler(SAMPLES / f"{name}.pcap", pcap)
    source = SflowSource(load_topology(SAMPLES / "topology.yaml"), SflowConfig(listen="127.0.0.1:0")).start()
    process, log = pmacctd(tmp_path, pcap, source.port, sampling=rate)
    tables = collect(source, process, log)
    assert source.counts()["lost_datagrams"] == 0 and source.counts()["malformed"] == 0
    assert {int(r) for part in tables["flows"] for r in part["sampling_rate"]} == {rate}
    largest = max(flow["bytes"] / flow["packets"] for flow in truth_flows(name).values()) * 2
    ours, truth = per_link(without_filler(tables["flows"])), per_link(truth_flows(name))
    assert set(ours) == set(truth)
    for link, want in truth.items():
        got = ours[link]
        assert abs(got["packets"] - want["packets"]) <= SIGMAS * math.sqrt(rate * want["packets"]), link
        assert abs(got["bytes"] - want["bytes"]) <= SIGMAS * math.sqrt(rate * largest * want["bytes"]), link


def plain_frames() -> list[Ether]:
    """Frames of leaf1's hosts with no mirror encapsulation: only the sflow: entry can name their link."""
    frames = []
    for i in range(40):
        frames.append(Ether(src="02:00:00:00:01:05", dst="02:00:00:00:02:07") / IP(src="10.0.1.5", dst="10.0.2.7")
                      / UDP(sport=50_000, dport=4791) / Raw(b"\x0a" + b"\0" * (200 + i)))
        if i % 4 == 0:
            frames.append(Ether(src="02:00:00:00:02:07", dst="02:00:00:00:01:05")
                          / IP(src="10.0.2.7", dst="10.0.1.5", tos=3) / TCP(sport=4420, dport=40_000) / Raw(b"x" * 60))
    return frames


def test_sflow_entry_attributes_plain_frames_and_counter_samples_arrive(tmp_path: Path) -> None:
    """sfprobe's first counter poll comes 1-20 s after it starts (random), and its clock only ticks when
    packets come: the file is played at 11 s and 22 s (pmacctd waits the delay before each play), so by the
    second play its clock has passed 20 s. A poll may fall in the middle of a play (the plugin ticks between
    packets), so the counts are only bounded."""
    frames = plain_frames()
    plain = tmp_path / "plain.pcap"
    wrpcap(str(plain), frames)
    pcap = tmp_path / "plain-filler.pcap"
    with_filler(plain, pcap)
    plays = 2
    expected: dict[tuple[object, ...], dict[str, int]] = defaultdict(lambda: dict.fromkeys(SUMS, 0))
    for frame in frames:
        ip = frame[IP]
        key = ("leaf1-spine1", "up" if ip.src == "10.0.1.5" else "down", ip.src, ip.dst, ip.sport, ip.dport,
               ip.proto, 0, 0, 0)
        for name, value in (("packets", 1), ("bytes", len(frame)), ("ecn_ect", int(ip.tos & 3 in (1, 2, 3))),
                            ("ecn_ce", int(ip.tos & 3 == 3)), ("cnp", 0)):
            expected[key][name] += value * plays
    source = SflowSource(load_topology(SAMPLES / "topology.yaml"), SflowConfig(listen="127.0.0.1:0")).start()
    process, log = pmacctd(tmp_path, pcap, source.port, replays=plays, delay_s=11)
    # every play's frames, and the filler of every play but the last (the next play's packets push it out)
    tables = collect(source, process, log, samples=len(frames) * plays + FILLER * (plays - 1))
    assert source.counts()["lost_datagrams"] == 0 and source.counts()["malformed"] == 0
    assert without_filler(tables["flows"], plays) == dict(expected)
    assert tables["counters"], source.counts()
    counters = {name: np.concatenate([part[name] for part in tables["counters"]]) for name in tables["counters"][0]}
    assert set(counters["link"]) == {"leaf1-spine1"}
    assert set(counters["device"]) == {AGENT} and set(counters["ifname"]) == {str(IFINDEX)}
    assert set(counters["source"]) == {"sflow"} and set(counters["oper_up"]) == {1}
    assert set(counters["speed_bps"]) == {IFSPEED}
    assert ((counters["in_pkts"] > 0) & (counters["in_pkts"] <= (len(frames) + FILLER) * plays)).all()
    assert (counters["in_octets"] > 0).all()
    assert source.counts()["samples_counter"] == len(counters["ts"]) == source.counts()["counter_rows"]
