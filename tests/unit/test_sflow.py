"""sFlow v5 decoding against datagrams built here from the spec (sflow.org sFlow v5 and its dropped-packet
extension) with struct, independently of collectors.sflow: every sample kind, agent addresses, link
attribution, and damaged datagrams that must be counted, never raised, keeping what came before the damage."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scapy.contrib.erspan import ERSPAN_II
from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from collectors.collector import CollectorConfig
from collectors.decode import Decoder
from collectors.sflow import SflowBatch, SflowDecoder, with_sflow_interfaces
from collectors.sflow_source import SflowConfig, SflowSource
from pipeline import codec
from pipeline.errors import InputError
from pipeline.records import column_names
from pipeline.topology import Topology, load_topology

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
T0 = 1_700_000_000_000_000_000
AGENT = "192.0.2.1"  # samples/topology.yaml: ifindex 49 -> leaf1-spine1, 50 -> leaf1-spine2
NO_INTERFACE = 0x3FFFFFFF
MAC = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}


# -- an encoder written from the spec: XDR, big-endian, opaques padded to 4 bytes ------------------------
def opaque(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data + b"\0" * (-len(data) % 4)


def record(data_format: int, body: bytes) -> bytes:
    """A sample_record, flow_record or counter_record: format, then the body as an opaque."""
    return struct.pack(">I", data_format) + opaque(body)


def datagram(samples: list[bytes], *, agent: str = AGENT, sub_agent: int = 0, sequence: int = 1) -> bytes:
    address = ipaddress.ip_address(agent)
    agent_address = struct.pack(">I", 1 if address.version == 4 else 2) + address.packed
    return (struct.pack(">I", 5) + agent_address + struct.pack(">IIII", sub_agent, sequence, 60_000, len(samples))
            + b"".join(samples))


def raw_packet_header(frame: bytes, *, header_bytes: int = 128, protocol: int = 1, stripped: int = 4) -> bytes:
    """Flow record 1: header_protocol, frame_length (with the FCS the agent stripped), stripped, header."""
    return record(1, struct.pack(">III", protocol, len(frame) + stripped, stripped) + opaque(frame[:header_bytes]))


def extended_switch() -> bytes:
    return record(1001, struct.pack(">IIII", 100, 0, 100, 0))


def flow_sample(records: list[bytes], *, rate: int = 1, input_if: int = 49, output_if: int = NO_INTERFACE,
                expanded: bool = False, sequence: int = 1) -> bytes:
    if expanded:
        body = struct.pack(">IIIIIIIIIII", sequence, 0, input_if, rate, sequence * rate, 0, 0, input_if, 0,
                           output_if, len(records))
    else:
        body = struct.pack(">IIIIIIII", sequence, input_if, rate, sequence * rate, 0, input_if, output_if,
                           len(records))
    return record(3 if expanded else 1, body + b"".join(records))


def generic_counters(ifindex: int, *, status: int = 3, speed: int = 400_000_000_000, in_octets: int = 1000,
                     in_ucast: int = 10, in_multicast: int = 2, in_broadcast: int = 1, in_discards: int = 3,
                     in_errors: int = 4, out_octets: int = 2000, out_ucast: int = 20, out_errors: int = 0xFFFFFFFF
                     ) -> bytes:
    """Counter record 1; out_errors defaults to 0xFFFFFFFF, the spec's 'counter not available'."""
    return record(1, struct.pack(
        ">IIQIIQIIIIIIQIIIIII", ifindex, 6, speed, 1, status, in_octets, in_ucast, in_multicast, in_broadcast,
        in_discards, in_errors, 0, out_octets, out_ucast, 5, 6, 7, out_errors, 0))


def ethernet_counters(fcs_errors: int) -> bytes:
    return record(2, struct.pack(">13I", 1, fcs_errors, *range(11)))


def counters_sample(records: list[bytes], *, ifindex: int = 49, expanded: bool = False) -> bytes:
    if expanded:
        return record(4, struct.pack(">IIII", 1, 0, ifindex, len(records)) + b"".join(records))
    return record(2, struct.pack(">III", 1, ifindex, len(records)) + b"".join(records))


def discarded_packet(reason: int, records: list[bytes], *, input_ifindex: int = 49, output_ifindex: int = 0,
                     drops: int = 1) -> bytes:
    """sFlow drops structure: sequence_number, source_id type and index, drops, input, output, reason, then the
    discard records."""
    fixed = struct.pack(">IIIIIIII", 1, 0, 49, drops, input_ifindex, output_ifindex, reason, len(records))
    return record(5, fixed + b"".join(records))


# -- frames -------------------------------------------------------------------------------------------------
def plain(size: int = 200, *, src: str = "10.0.1.5", dst: str = "10.0.2.7") -> bytes:
    frame = Ether(**MAC) / IP(src=src, dst=dst, tos=2) / UDP(sport=50_000, dport=5000)
    return bytes(frame / Raw(b"\0" * (size - len(frame))))


def erspan(session: int) -> bytes:
    inner = Ether(**MAC) / IP(src="10.0.3.5", dst="10.0.4.7") / UDP(sport=1, dport=2) / Raw(b"\0" * 100)
    return bytes(Ether(**MAC) / IP(src="10.254.0.3", dst="198.51.100.10") / GRE(seqnum_present=1)
                 / ERSPAN_II(session_id=session) / inner)


@pytest.fixture(scope="module")
def topology() -> Topology:
    return with_sflow_interfaces(load_topology(SAMPLES / "topology.yaml"))


def decode(topology: Topology, datagrams: list[bytes]) -> tuple[SflowBatch, SflowDecoder]:
    decoder = SflowDecoder(topology)
    return decoder.decode_datagrams(datagrams, [T0 + i for i in range(len(datagrams))]), decoder


def links_of(topology: Topology, batch: SflowBatch, rate: int = 1) -> list[str]:
    decoded = Decoder(topology).decode(batch.packets[rate])
    return ["" if link < 0 else topology.links[link].id for link in decoded.link.tolist()]


# -- samples -------------------------------------------------------------------------------------------------
def test_flow_sample_header_becomes_a_packet_of_the_agents_port(topology: Topology) -> None:
    frame = plain(200)
    batch, decoder = decode(topology, [datagram([flow_sample([raw_packet_header(frame), extended_switch()])])])
    packets = batch.packets[1]
    assert len(packets) == 1 and packets.interfaces[packets.interface[0]] == f"sflow:{AGENT}/49"
    start = int(packets.offset[0])
    assert bytes(packets.data[start : start + packets.caplen[0]]) == frame[:128]
    assert (int(packets.caplen[0]), int(packets.wirelen[0]), int(packets.ts_ns[0])) == (128, 200, T0)
    decoded = Decoder(topology).decode(packets)
    assert links_of(topology, batch) == ["leaf1-spine1"]
    assert int(decoded.wire_len[0]) == 200  # the header was cut at 128 bytes: the IP total length tells
    assert decoder.stats.tallies["samples_flow"] == 1 and decoder.stats.tallies["skipped_flow_records"] == 1
    assert decoder.stats.malformed_total == 0


def test_output_port_attributes_when_the_input_port_is_unmapped(topology: Topology) -> None:
    samples = [flow_sample([raw_packet_header(plain())], input_if=7, output_if=50),
               flow_sample([raw_packet_header(plain())], input_if=7, output_if=8)]
    batch, _ = decode(topology, [datagram(samples)])
    assert links_of(topology, batch) == ["leaf1-spine2", ""]
    names = [batch.packets[1].interfaces[i] for i in batch.packets[1].interface]
    assert names == [f"sflow:{AGENT}/50", f"sflow:{AGENT}/7"]


def test_erspan_session_inside_the_header_comes_before_the_port(topology: Topology) -> None:
    batch, _ = decode(topology, [datagram([flow_sample([raw_packet_header(erspan(22), header_bytes=512)])])])
    assert links_of(topology, batch) == ["leaf2-spine2"]


def test_expanded_flow_samples_and_one_batch_per_sampling_rate(topology: Topology) -> None:
    samples = [flow_sample([raw_packet_header(plain())], rate=16, expanded=True),
               flow_sample([raw_packet_header(plain())], rate=1),
               flow_sample([raw_packet_header(plain()), raw_packet_header(plain(300))], rate=16, input_if=50)]
    batch, _ = decode(topology, [datagram(samples)])
    assert sorted(batch.packets) == [1, 16] and len(batch.packets[16]) == 3
    assert links_of(topology, batch, 16) == ["leaf1-spine1", "leaf1-spine2", "leaf1-spine2"]
    assert batch.packets[16].wirelen.tolist() == [200, 200, 300]


def test_ipv6_agent(topology: Topology) -> None:
    agent = "2001:db8::1"
    mapped = with_sflow_interfaces(dataclasses.replace(
        topology, sflow_ports={**topology.sflow_ports, (agent, 3): "leaf3-spine2"}))
    batch, _ = decode(mapped, [datagram([flow_sample([raw_packet_header(plain())], input_if=3),
                                         counters_sample([generic_counters(3)], ifindex=3)], agent=agent)])
    assert batch.packets[1].interfaces == (f"sflow:{agent}/3",)
    assert links_of(mapped, batch) == ["leaf3-spine2"]
    assert batch.counters["device"].tolist() == [agent] and batch.counters["link"].tolist() == ["leaf3-spine2"]


def test_other_header_protocols_sample_formats_and_enterprises_are_skipped_and_counted(topology: Topology) -> None:
    ipv4_header = raw_packet_header(plain()[14:], protocol=11)
    samples = [flow_sample([ipv4_header]), record(1 << 12 | 1, b"\0" * 8), record(7, b"")]
    batch, decoder = decode(topology, [datagram(samples)])
    assert batch.packets == {}
    assert decoder.stats.tallies["other_header_protocol"] == 1 and decoder.stats.tallies["skipped_samples"] == 2
    assert decoder.stats.malformed_total == 0


def test_counter_samples_generic_and_ethernet_become_counters_rows(topology: Topology) -> None:
    samples = [counters_sample([generic_counters(49), ethernet_counters(17)]),
               counters_sample([generic_counters(50, status=1, in_octets=2**40)], expanded=True, ifindex=50),
               counters_sample([ethernet_counters(3)], ifindex=9)]
    batch, decoder = decode(topology, [datagram(samples)])
    rows = batch.counters
    assert rows["ts"].tolist() == [np.datetime64(T0 // 1000, "us").item()] * 2
    assert rows["device"].tolist() == [AGENT, AGENT] and rows["ifname"].tolist() == ["49", "50"]
    assert rows["link"].tolist() == ["leaf1-spine1", "leaf1-spine2"]
    assert rows["source"].tolist() == ["sflow", "sflow"]
    assert rows["oper_up"].tolist() == [1, 0] and rows["speed_bps"].tolist() == [400_000_000_000] * 2
    assert rows["in_octets"].tolist() == [1000, 2**40] and rows["in_pkts"].tolist() == [13, 13]
    assert rows["out_octets"].tolist() == [2000, 2000] and rows["out_pkts"].tolist() == [31, 31]
    assert rows["in_discards"].tolist() == [3, 3] and rows["in_errors"].tolist() == [4, 4]
    assert rows["out_discards"].tolist() == [7, 7]
    assert rows["out_errors"].tolist() == [0, 0]  # not available (all ones) is 0
    assert rows["fcs_errors"].tolist() == [17, 0]
    assert rows["pfc_rx_pause"].tolist() == [0, 0] and rows["ecn_marked"].tolist() == [0, 0]
    assert decoder.stats.tallies["samples_counter"] == 3
    assert decoder.stats.tallies["skipped_counter_records"] == 1  # ethernet counters with no interface record


def test_drop_notifications_are_counted_by_reason_and_never_sampled_traffic(topology: Topology) -> None:
    samples = [discarded_packet(258, [raw_packet_header(plain())]), discarded_packet(259, []),
               discarded_packet(258, []), flow_sample([raw_packet_header(plain())])]
    batch, decoder = decode(topology, [datagram(samples)])
    assert len(batch.packets[1]) == 1
    assert decoder.stats.tallies["drop_notifications"] == 3 and decoder.stats.drop_reasons == {258: 2, 259: 1}


def test_drop_notifications_are_drops_rows_with_their_reason_and_link(topology: Topology) -> None:
    samples = [discarded_packet(259, [raw_packet_header(plain())], input_ifindex=49, output_ifindex=50, drops=3),
               discarded_packet(258, [], input_ifindex=7, output_ifindex=50),  # only the output port is mapped
               discarded_packet(4000, [], input_ifindex=7, output_ifindex=8)]  # neither; an unlisted reason
    batch, _ = decode(topology, [datagram(samples)])
    rows = batch.drops
    assert set(rows) == set(column_names("drops"))
    assert rows["device"].tolist() == [AGENT] * 3 and rows["source"].tolist() == ["sflow"] * 3
    assert rows["link"].tolist() == ["leaf1-spine1", "leaf1-spine2", ""]
    assert rows["input_ifindex"].tolist() == [49, 7, 7] and rows["output_ifindex"].tolist() == [50, 50, 8]
    assert rows["reason_code"].tolist() == [259, 258, 4000]
    assert rows["reason"].tolist() == ["no_buffer_space", "acl", "code_4000"]
    assert rows["unreported"].tolist() == [3, 1, 1]
    assert codec.to_arrow("drops", rows).num_rows == 3  # the record's schema takes them as they are


def test_lost_datagrams_from_sequence_numbers_per_agent_and_sub_agent(topology: Topology) -> None:
    sent = [datagram([], sequence=s) for s in (1, 2, 5)] + [datagram([], sequence=1, sub_agent=1),
                                                           datagram([], sequence=3, agent="192.0.2.2")]
    _, decoder = decode(topology, sent)
    assert decoder.stats.lost_datagrams == 2 and decoder.stats.datagrams == 5


# -- damage ------------------------------------------------------------------------------------------------
def valid() -> bytes:
    return datagram([flow_sample([raw_packet_header(plain())]), counters_sample([generic_counters(49)]),
                     flow_sample([raw_packet_header(plain(300)), extended_switch()], rate=8)])


def sample_ends(data: bytes) -> list[int]:
    """End of each sample of a datagram with an IPv4 agent."""
    ends, p = [], 28
    while p < len(data):
        p += 8 + struct.unpack_from(">I", data, p + 4)[0]
        ends.append(p)
    return ends


def checked(topology: Topology, datagrams: list[bytes]) -> tuple[SflowBatch, SflowDecoder]:
    """Decode; every packet view and counter row must lie inside what was received."""
    batch, decoder = decode(topology, datagrams)
    total = sum(len(d) for d in datagrams)
    for packets in batch.packets.values():
        assert ((packets.offset >= 0) & (packets.offset + packets.caplen <= total)).all()
        assert (packets.caplen <= packets.wirelen).all() and (packets.caplen > 0).all()
    assert len(batch.counters["ts"]) <= decoder.stats.tallies["samples_counter"] * 2
    return batch, decoder


def test_every_truncation_is_counted_and_keeps_the_samples_before_it(topology: Topology) -> None:
    data = valid()
    ends = sample_ends(data)
    for cut in range(len(data)):
        batch, decoder = checked(topology, [data[:cut]])
        whole = sum(end <= cut for end in ends)
        assert decoder.stats.malformed_total == 1, cut
        assert batch.sampled == (whole >= 1) + (whole >= 3), cut
        assert len(batch.counters["ts"]) == (whole >= 2), cut
    batch, decoder = checked(topology, [data])
    assert decoder.stats.malformed_total == 0 and batch.sampled == 2 and len(batch.counters["ts"]) == 1


@pytest.mark.parametrize("field", ["sample_count", "sample_length", "record_count", "record_length",
                                   "header_length", "counter_length", "sampling_rate"])
def test_corrupted_lengths_and_counts(topology: Topology, field: str) -> None:
    """A lie in the datagram's sample framing ends it; a lie inside one sample costs that sample only."""
    first, second = flow_sample([raw_packet_header(plain())]), flow_sample([raw_packet_header(plain(300))])
    third = counters_sample([generic_counters(49)])
    broken = bytearray(second)
    at = {"sample_length": 4, "record_count": 8 + 28, "record_length": 8 + 32 + 4, "header_length": 8 + 32 + 8 + 12,
          "sampling_rate": 8 + 8}
    if field == "sample_count":
        data = bytearray(datagram([first, second, third]))
        struct.pack_into(">I", data, 24, 0xFFFFFFFF)
        reason, kept = "sample_past_end", (2, 1)
    elif field == "counter_length":
        struct.pack_into(">I", broken := bytearray(third), 8 + 12 + 4, 40)
        data = bytearray(datagram([first, second, bytes(broken)]))
        reason, kept = "bad_counter_record", (2, 0)
    else:
        struct.pack_into(">I", broken, at[field], 0 if field == "sampling_rate" else 0xFFFFFF00)
        data = bytearray(datagram([first, bytes(broken), third]))
        reason = {"sample_length": "sample_past_end", "record_count": "record_past_end",
                  "record_length": "record_past_end", "header_length": "bad_raw_header",
                  "sampling_rate": "bad_sampling_rate"}[field]
        kept = (1, 0) if field == "sample_length" else (1, 1)
    batch, decoder = checked(topology, [bytes(data), valid()])
    assert decoder.stats.malformed == {**dict.fromkeys(decoder.stats.malformed, 0), reason: 1}
    assert (batch.sampled, len(batch.counters["ts"])) == (kept[0] + 2, kept[1] + 1)  # + the valid datagram's


def test_header_agent_and_version_damage(topology: Topology) -> None:
    data = valid()
    bad_version = struct.pack(">I", 4) + data[4:]
    bad_address = data[:4] + struct.pack(">I", 3) + data[8:]
    _, decoder = checked(topology, [b"", b"\0\0\0\x05", bad_version, bad_address, data])
    assert decoder.stats.malformed == {**dict.fromkeys(decoder.stats.malformed, 0), "truncated": 2,
                                       "bad_version": 1, "bad_agent_address": 1}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=600), max_size=8))
def test_random_bytes_never_raise(topology: Topology, datagrams: list[bytes]) -> None:
    checked(topology, datagrams)


def _declared_samples(data: bytes) -> int | None:
    """The sample count a datagram header declares (after an IPv4 or IPv6 agent address), None if unreadable."""
    address_type = struct.unpack_from(">I", data, 4)[0]
    at = {1: 24, 2: 36}.get(address_type)
    return None if at is None or len(data) < at + 4 else struct.unpack_from(">I", data, at)[0]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=12))
@example(changes=[(27, 0)])  # the header now declares no samples: nothing to count, nothing lost
def test_mutated_datagrams_never_raise(topology: Topology, changes: list[tuple[int, int]]) -> None:
    data = bytearray(valid())
    for at, value in changes:
        data[at % len(data)] = value
    batch, decoder = checked(topology, [bytes(data)])
    sound = decoder.stats.tallies["samples_flow"] + decoder.stats.tallies["samples_counter"]
    accounted = sound + decoder.stats.malformed_total + decoder.stats.tallies["skipped_samples"]
    assert accounted >= 1 or _declared_samples(bytes(data)) == 0  # a header may now declare no samples at all
    for packets in batch.packets.values():
        Decoder(topology).decode(packets)


# -- the source ----------------------------------------------------------------------------------------------
def test_source_binds_a_free_port_and_reports_a_taken_one_as_input_error() -> None:
    topology = load_topology(SAMPLES / "topology.yaml")
    with SflowSource(topology, SflowConfig(listen="127.0.0.1:0")) as source:
        assert source.port > 0
        with pytest.raises(InputError, match=rf"^--listen: 127\.0\.0\.1:{source.port} is in use: "):
            SflowSource(topology, SflowConfig(listen=f"127.0.0.1:{source.port}")).start()
    with pytest.raises(InputError, match=r"^--listen: no-such-host\.invalid:6343: not an address"):
        SflowSource(topology, SflowConfig(listen="no-such-host.invalid:6343")).start()
    with pytest.raises(InputError, match="port must be"):
        SflowSource(topology, SflowConfig(listen="127.0.0.1:70000")).start()


def test_source_turns_received_datagrams_into_flows_counters_and_drops() -> None:
    source = SflowSource(load_topology(SAMPLES / "topology.yaml"), SflowConfig(listen="127.0.0.1:0", tick_s=0.05))
    stop = threading.Event()
    steps = source.steps(stop)
    assert next(steps) == []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for sequence in (1, 2):
            sender.sendto(datagram([flow_sample([raw_packet_header(plain())], rate=4),
                                    counters_sample([generic_counters(49)]), discarded_packet(260, [])],
                                   sequence=sequence), ("127.0.0.1", source.port))
    tables: dict[str, list[dict[str, np.ndarray]]] = {}
    for step in steps:
        for table, columns in step:
            tables.setdefault(table, []).append(columns)
        if source.counts()["datagrams"] == 2:
            stop.set()
    flows = tables["flows"]
    assert sum(int(part["packets"].sum()) for part in flows) == 8  # 2 samples at 1 in 4
    assert {str(link) for part in flows for link in part["link"]} == {"leaf1-spine1"}
    assert {int(rate) for part in flows for rate in part["sampling_rate"]} == {4}
    assert sum(len(part["ts"]) for part in tables["counters"]) == 2
    assert [reason for part in tables["drops"] for reason in part["reason"]] == ["red", "red"]
    assert source.counts() == {
        "datagrams": 2, "samples_flow": 2, "samples_counter": 2, "drop_notifications": 2, "malformed": 0,
        "lost_datagrams": 0, "packets": 2, "malformed_packets": 0, "unattributed": 0,
        "flow_rows": source.counts()["flow_rows"], "flows_exported_early": 0, "counter_rows": 2, "drop_rows": 2,
    }


def test_datagrams_the_socket_holds_at_stop_are_decoded_before_the_final_flush() -> None:
    """A graceful stop reads what the kernel already holds: sent before the stop, those datagrams would
    otherwise be lost with nothing to count them (no later datagram shows their sequence gap)."""
    source = SflowSource(load_topology(SAMPLES / "topology.yaml"), SflowConfig(listen="127.0.0.1:0")).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for sequence in range(1, 201):
            sender.sendto(datagram([flow_sample([raw_packet_header(plain())])], sequence=sequence),
                          ("127.0.0.1", source.port))
    stop = threading.Event()
    stop.set()
    flows = [columns for step in source.steps(stop) for table, columns in step if table == "flows"]
    assert source.counts()["datagrams"] == 200
    assert sum(int(part["packets"].sum()) for part in flows) == 200


def test_a_quiet_agents_rows_leave_before_stop() -> None:
    """Packets are stamped on arrival: idle ticks move each collector's packet time on, ending its rows."""
    config = CollectorConfig(active_timeout_s=0.1, idle_timeout_s=0.1)
    source = SflowSource(load_topology(SAMPLES / "topology.yaml"), SflowConfig(listen="127.0.0.1:0", tick_s=0.05),
                         collector_config=config)
    stop = threading.Event()
    steps = source.steps(stop)
    next(steps)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(datagram([flow_sample([raw_packet_header(plain())], rate=2)]), ("127.0.0.1", source.port))
    deadline = time.monotonic() + 10
    packets = 0
    for step in steps:
        packets += sum(int(columns["packets"].sum()) for table, columns in step if table == "flows")
        if packets or time.monotonic() > deadline:
            stop.set()
            assert packets == 2, "the row left on an idle tick, before stop"
