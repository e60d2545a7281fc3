"""DFI in the collector's stream: rows of flows DFI knows leave at once, labelled; the others, and every row
after them, wait until packet time enters a new export interval; every record table of a step is counted."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import numpy as np
import pytest
from pcap_builders import pcap_header, pcap_record
from scapy.contrib.erspan import ERSPAN_II
from scapy.contrib.roce import BTH
from scapy.layers.inet import GRE, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw
from test_flows import SECOND, T0, concat, packets

from collectors.collector import Collector
from collectors.dfi_stream import DfiStream, DfiStreamConfig
from collectors.flows import BURST_START, FlowTable, FlowTableConfig
from collectors.replay import replay_batches
from pipeline.records import column_names
from pipeline.topology import load_topology

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def test_rows_are_held_until_the_next_interval_then_released_labelled() -> None:
    table, stream = FlowTable(), DfiStream()
    released = []
    for second in range(3):
        batch = concat(
            packets(5, ts_ns=T0 + second * SECOND + np.arange(5) * 1000),
            packets(2, ts_ns=T0 + second * SECOND + SECOND // 2 + np.arange(2), proto=6, is_roce=False,
                    dst_port=22, src_port=50000, wire_len=100),
        )
        rows = table.update(batch)
        step = stream.add(rows, int(batch.ts_ns.max()))
        # what the flow table exported before packet time entered this interval, and in the step that did:
        # the RoCE burst closes at its pause within its interval, the SSH pair in the next interval's step
        assert len(step.flows["ts_start"]) == [0, 3, 2][second]
        released.append(step.flows)
    released.append(stream.flush(table.flush()).flows)
    for rows in released:
        assert list(rows) == column_names("flows") and BURST_START not in rows
    traffic_class = np.concatenate([rows["traffic_class"] for rows in released])
    assert len(traffic_class) == 6 and set(traffic_class) == {"p2p", "interactive"}
    assert int(sum(rows["packets"].sum() for rows in released)) == 21


def test_rows_of_known_flows_leave_at_once_and_an_unknown_flow_holds_every_row_after_it() -> None:
    table, stream = FlowTable(), DfiStream()

    def step(*batches: object) -> list[tuple[int, int, str]]:
        batch = concat(*batches)
        labelled = stream.add(table.update(batch), int(batch.ts_ns.max())).flows
        return [(int(labelled["src_port"][i]), (int(labelled["ts_start"][i].astype(np.int64)) - T0 // 1000) // 100_000,
                 str(labelled["traffic_class"][i])) for i in range(len(labelled["ts_start"]))]

    def burst(at_ms: int, n: int = 5, **columns: object) -> object:
        return packets(n, ts_ns=T0 + at_ms * 1_000_000 + np.arange(n) * 1000, **columns)

    assert step(burst(0)) == []  # the burst's row is open
    assert step(burst(1000)) == [(49152, 0, "p2p")]  # held until this run, which classifies the flow
    assert step(burst(1500)) == [(49152, 10, "p2p")]  # closed by its pause, known: out at once
    assert step(burst(1600, 3, src_port=5), burst(1700)) == []  # a flow no run has seen: held, with its step
    assert step(burst(1800)) == []  # a known flow's row after it waits too: rows leave in order
    assert step(burst(2000)) == [(49152, 15, "p2p"), (5, 16, "p2p"), (49152, 17, "p2p"), (49152, 18, "p2p")]


def test_window_is_validated() -> None:
    with pytest.raises(ValueError, match="every_s"):
        DfiStreamConfig(window_s=0.5, every_s=1.0)


def test_every_table_of_a_step_is_counted() -> None:
    collector = Collector(load_topology(SAMPLES / "allreduce_congestion.topology.yaml"))
    steps = list(collector.run(replay_batches([SAMPLES / "allreduce_congestion.pcap"], progress=False)))
    assert [name for name, _ in steps[-1].tables()] == ["flows", "link_bins", "iterations"]
    totals = {name: sum(len(dict(step.tables())[name][column_names(name)[0]]) for step in steps)
              for name in ("flows", "link_bins", "iterations")}
    stats = collector.stats
    assert (stats.flow_rows, stats.link_bin_rows, stats.iteration_rows) == tuple(totals.values())
    assert totals["iterations"] == 18  # gpt-a's 8 and gpt-b's 10
    assert sum(len(step) for step in steps) == sum(totals.values())


def test_a_quiet_live_source_exports_by_advancing_time_without_packets() -> None:
    topology = load_topology(SAMPLES / "link_failure.topology.yaml")
    batches = list(replay_batches([SAMPLES / "link_failure.pcap"], progress=False))
    whole = Collector(topology)
    whole_packets = sum(int(step.flows["packets"].sum()) for step in whole.run(batches))
    live = Collector(topology)
    live_packets = sum(int(live.process(batch).flows["packets"].sum()) for batch in batches)
    last_ns = int(batches[-1].ts_ns.max())
    assert len(live.advance(last_ns - 1).flows["ts_start"]) == 0, "time that does not move ends nothing"
    quiet = live.advance(last_ns + 10 * SECOND)
    assert int(quiet.flows["packets"].sum()) > 0, "the last rows leave without another packet"
    assert len(quiet.link_bins["ts"]) > 0
    assert len(live.finish().flows["ts_start"]) == 0, "advancing past every timeout left nothing to flush"
    assert live_packets + int(quiet.flows["packets"].sum()) == whole_packets
    assert live.stats.flow_rows == whole.stats.flow_rows


def test_traffic_after_a_quiet_spell_longer_than_the_dfi_window_is_labelled_again() -> None:
    """A live source idles (advance empties DFI's window), then packets come back: nothing may break."""
    topology = load_topology(SAMPLES / "mixed.topology.yaml")
    batches = list(replay_batches([SAMPLES / "mixed.pcap"], progress=False))
    collector = Collector(topology)
    exported = sum(int(collector.process(batch).flows["packets"].sum()) for batch in batches)
    last_ns = int(batches[-1].ts_ns.max())
    for tick in range(1, 60):
        exported += int(collector.advance(last_ns + tick * SECOND // 2).flows["packets"].sum())
    later = [dataclasses.replace(batch, ts_ns=batch.ts_ns + 30 * SECOND) for batch in batches]
    exported += sum(int(step.flows["packets"].sum()) for step in collector.run(later))
    once = sum(int(step.flows["packets"].sum()) for step in Collector(topology).run(batches))
    assert exported == 2 * once


@pytest.mark.parametrize("days", [2, -2])
def test_a_two_day_jump_keeps_each_sides_rows_and_iterations(tmp_path: Path, days: int) -> None:
    """The sample cut in two with the second half two days later (or earlier): the rows and iterations of each
    half replayed alone (issue 13, item 2: one DFI run over rows days apart found no job, and after a step
    back the flow table, ahead of the packets, cut their flows and their iterations were lost)."""
    topology = load_topology(SAMPLES / "allreduce_congestion.topology.yaml")
    records = [
        (int(ts), bytes(batch.data[start : start + length]))
        for batch in replay_batches([SAMPLES / "allreduce_congestion.pcap"], progress=False)
        for start, length, ts in zip(batch.offset, batch.caplen, batch.ts_ns, strict=True)
    ]
    half, jump = len(records) // 2, days * 86_400 * SECOND

    def replayed(name: str, part: list[tuple[int, bytes]]) -> tuple[int, int]:
        path = tmp_path / name
        path.write_bytes(pcap_header(nano=True) + b"".join(pcap_record(ts, f, nano=True) for ts, f in part))
        collector = Collector(topology)
        steps = collector.run(replay_batches([path], progress=False))
        assert sum(int(step.flows["packets"].sum()) for step in steps) == len(part)
        return collector.stats.flow_rows, collector.stats.iteration_rows

    first, second = replayed("first.pcap", records[:half]), replayed("second.pcap", records[half:])
    alone = (first[0] + second[0], first[1] + second[1])
    moved = records[:half] + [(ts + jump, frame) for ts, frame in records[half:]]
    assert alone[1] > 0 and replayed("jump.pcap", moved) == alone


def test_a_flood_of_new_flows_within_one_interval_is_released_in_runs_and_the_window_is_bounded() -> None:
    table, stream = FlowTable(config=FlowTableConfig(max_flows=50)), DfiStream(DfiStreamConfig(max_rows=80))
    flows, released = 600, []
    for start in range(0, flows, 40):  # every flow new, all within one export interval
        index = np.arange(start, start + 40)
        batch = packets(40, dqpn=index, ts_ns=T0 + index * 1000)
        released.append(stream.add(table.update(batch), int(batch.ts_ns.max())).flows)
        assert stream._pending_rows < 80 // 4 + 40  # a run starts once a quarter of max_rows waits
        assert stream._window is None or len(stream._window["ts_end"]) <= 80
    before_flush = sum(len(rows["ts_start"]) for rows in released)
    released.append(stream.flush(table.flush()).flows)
    assert 0 < before_flush == table.early_exports  # released before the end of input, not held for it
    qp = np.concatenate([rows["roce_qp"] for rows in released])
    assert sorted(qp.tolist()) == list(range(flows))  # every flow's one packet, in exactly one row


def test_vxlan_tenant_flows_are_flows_of_their_own(tmp_path: Path) -> None:
    """Three tenant flows between one VTEP pair, on one outer 5-tuple and VNI, are three rows keyed by their
    inner 5-tuples, labelled `vxlan` with the inner app, the VTEPs kept and the link, direction and ECN from
    the outer path; RoCE inside keeps its QP and opcode counts; an ARP inside stays the outer flow."""
    def tenant(inner: Packet) -> bytes:
        return bytes(Ether() / IP(src="10.254.0.1", dst="198.51.100.10") / GRE(seqnum_present=1)
                     / ERSPAN_II(session_id=11) / Ether() / IP(src="10.0.1.1", dst="10.0.4.4", tos=0x03)
                     / UDP(sport=61000, dport=4789) / VXLAN(vni=5001) / Ether() / inner)

    http = [tenant(IP(src="172.16.0.1", dst="172.16.0.2") / TCP(sport=port, dport=80, flags="PA")
                   / Raw(b"GET / HTTP/1.1\r\n\r\n")) for port in (40000, 40001)]
    roce = tenant(IP(src="172.16.0.1", dst="172.16.0.3") / UDP(sport=49152, dport=4791) / BTH(opcode=0x0A, dqpn=77)
                  / Raw(bytes(32)))
    arp = tenant(ARP(psrc="172.16.0.1", pdst="172.16.0.9"))
    frames = [*http, *http, roce, roce, roce, arp]
    path = tmp_path / "vxlan.pcap"
    path.write_bytes(pcap_header(nano=True) + b"".join(pcap_record(T0 + i * 1000, f, nano=True)
                                                       for i, f in enumerate(frames)))
    steps = list(Collector(load_topology(SAMPLES / "topology.yaml")).run(replay_batches([path], progress=False)))
    flows = {name: np.concatenate([step.flows[name] for step in steps]) for name in steps[0].flows}
    rows = sorted(
        (str(ipaddress.ip_address(bytes(flows["src_ip"][i])).ipv4_mapped),
         str(ipaddress.ip_address(bytes(flows["dst_ip"][i])).ipv4_mapped), int(flows["src_port"][i]),
         int(flows["dst_port"][i]), int(flows["vni"][i]), int(flows["roce_qp"][i]), int(flows["packets"][i]),
         int(flows["roce_write"][i]), int(flows["ecn_ce"][i]), str(flows["app"][i]), str(flows["app_detail"][i]),
         str(ipaddress.ip_address(bytes(flows["outer_src_ip"][i])).ipv4_mapped), str(flows["link"][i]),
         str(flows["direction"][i]))
        for i in range(len(flows["packets"]))
    )
    assert rows == [
        ("10.0.1.1", "10.0.4.4", 61000, 4789, 5001, 0, 1, 0, 1, "vxlan", "", "None", "leaf1-spine1", "up"),
        ("172.16.0.1", "172.16.0.2", 40000, 80, 5001, 0, 2, 0, 2, "vxlan", "inner=http", "10.0.1.1", "leaf1-spine1",
         "up"),
        ("172.16.0.1", "172.16.0.2", 40001, 80, 5001, 0, 2, 0, 2, "vxlan", "inner=http", "10.0.1.1", "leaf1-spine1",
         "up"),
        ("172.16.0.1", "172.16.0.3", 49152, 4791, 5001, 77, 3, 3, 3, "vxlan", "inner=rocev2", "10.0.1.1",
         "leaf1-spine1", "up"),
    ]
