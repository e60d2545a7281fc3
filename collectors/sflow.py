"""sFlow v5 datagrams (sflow.org, "sFlow Version 5", with the dropped-packet extension) as packet batches,
`counters` rows and `drops` rows (one per dropped-packet notification, with its reason).

sFlow is XDR: big-endian 32-bit words, every opaque padded to 4 bytes, every sample and record prefixed by
its format and length, so a reader can skip what it does not know. The walk over a whole batch of datagrams
is compiled (like collectors.offsets): per-sample Python would cost more than the rest of the collector.
Sampled headers are not copied: the batches point into the buffer the datagrams were received into.

A datagram whose framing is broken is counted as malformed by reason, keeping the samples before the break;
a sample whose own length is sound but whose content is not is counted and skipped alone.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

import numba
import numpy as np

from collectors.header_table import offset, size
from collectors.offsets import MAX_CAPLEN
from collectors.packets import PacketBatch
from collectors.sflow_drops import reason_name
from collectors.wire import be32
from pipeline import records
from pipeline.topology import Topology

VERSION = 5
INTERFACE_PREFIX = "sflow:"

# Field tables: collectors.header_table's sflow_* tables, in the spec's order and with its names.
# A datagram: version, agent_address (type, then 0/4/16 bytes), sub_agent_id, sequence_number, uptime,
# samples<>; each sample_record: data_format (enterprise << 12 | format), then its sample_data as an opaque.
ADDRESS_UNKNOWN, ADDRESS_IP_V4, ADDRESS_IP_V6 = 0, 1, 2
FLOW_SAMPLE = 1
COUNTERS_SAMPLE = 2
FLOW_SAMPLE_EXPANDED = 3
COUNTERS_SAMPLE_EXPANDED = 4
DISCARDED_PACKET = 5  # the dropped-packet extension
RAW_PACKET_HEADER = 1  # flow record
HEADER_PROTOCOL_ETHERNET = 1  # ETHERNET-ISO88023
IF_COUNTERS = 1  # counter record: generic interface counters, 88 bytes
ETHERNET_COUNTERS = 2  # counter record: dot3Stats*, 13 x 4 bytes; dot3StatsFCSErrors is the second
_FS, _FSX, _DP = "sflow_flow_sample", "sflow_flow_sample_expanded", "sflow_discarded_packet"
_RH, _IF, _ETH = "sflow_raw_packet_header", "sflow_if_counters", "sflow_ethernet_counters"
# Offsets and sizes the compiled walk reads (numba freezes module-level ints, not dicts).
FS_RATE, FS_INPUT, FS_OUTPUT, FS_RECORDS = (
    offset(_FS, "sampling_rate"), offset(_FS, "input"), offset(_FS, "output"), offset(_FS, "flow_records"))
FSX_RATE, FSX_INPUT_FORMAT = offset(_FSX, "sampling_rate"), offset(_FSX, "input_format")
FSX_INPUT_VALUE, FSX_OUTPUT_FORMAT = offset(_FSX, "input_value"), offset(_FSX, "output_format")
FSX_OUTPUT_VALUE, FSX_RECORDS = offset(_FSX, "output_value"), offset(_FSX, "flow_records")
DP_REASON, DP_RECORDS = offset(_DP, "reason"), offset(_DP, "discard_records")
DP_INPUT, DP_OUTPUT, DP_DROPS = offset(_DP, "inputifindex"), offset(_DP, "outputifindex"), offset(_DP, "drops")
DR_REASON, DR_INPUT, DR_OUTPUT, DR_DROPS = range(4)  # columns of the drop rows the walk writes
RH_PROTOCOL, RH_FRAME_LENGTH = offset(_RH, "header_protocol"), offset(_RH, "frame_length")
RH_STRIPPED, RH_HEADER_LENGTH = offset(_RH, "stripped"), offset(_RH, "header")
IF_INDEX, IF_SPEED, IF_STATUS = offset(_IF, "ifIndex"), offset(_IF, "ifSpeed"), offset(_IF, "ifStatus")
IF_IN_OCTETS, IF_IN_UCAST = offset(_IF, "ifInOctets"), offset(_IF, "ifInUcastPkts")
IF_IN_MULTICAST, IF_IN_BROADCAST = offset(_IF, "ifInMulticastPkts"), offset(_IF, "ifInBroadcastPkts")
IF_IN_DISCARDS, IF_IN_ERRORS = offset(_IF, "ifInDiscards"), offset(_IF, "ifInErrors")
IF_OUT_OCTETS, IF_OUT_UCAST = offset(_IF, "ifOutOctets"), offset(_IF, "ifOutUcastPkts")
IF_OUT_MULTICAST, IF_OUT_BROADCAST = offset(_IF, "ifOutMulticastPkts"), offset(_IF, "ifOutBroadcastPkts")
IF_OUT_DISCARDS, IF_OUT_ERRORS = offset(_IF, "ifOutDiscards"), offset(_IF, "ifOutErrors")
ETH_FCS_ERRORS = offset(_ETH, "dot3StatsFCSErrors")
FLOW_SAMPLE_FIXED = size(_FS)  # bytes up to the first flow record
FLOW_SAMPLE_EXPANDED_FIXED = size(_FSX)
COUNTERS_SAMPLE_FIXED = size("sflow_counters_sample")
COUNTERS_SAMPLE_EXPANDED_FIXED = size("sflow_counters_sample_expanded")
DISCARDED_PACKET_FIXED = size(_DP)
RAW_PACKET_HEADER_FIXED = size(_RH)
IF_COUNTERS_SIZE = size(_IF)
ETHERNET_COUNTERS_SIZE = size(_ETH)
IF_STATUS_OPER_UP = 2  # ifStatus bit 0 = ifAdminStatus up, bit 1 = ifOperStatus up
NO_INTERFACE = 0x3FFFFFFF  # compact input/output: the packet came from / went to the agent itself
UNKNOWN_32 = 0xFFFFFFFF  # a counter the agent does not have
UNKNOWN_64 = 0xFFFFFFFFFFFFFFFF
_PORT_MASK = (1 << 33) - 1

# Malformed reasons (index into the walk's `tallies`); the first three end the datagram's header, the next
# one its sample framing, the rest one sample.
TRUNCATED = 0  # shorter than the datagram header
BAD_VERSION = 1
BAD_AGENT_ADDRESS = 2
SAMPLE_PAST_END = 3  # a sample's length runs past the datagram (or the sample count does)
BAD_SAMPLE = 4  # a sample shorter than its fixed fields
RECORD_PAST_END = 5  # a record's length runs past its sample (or the record count does)
BAD_RAW_HEADER = 6  # header longer than its record, stripped > frame_length, frame_length absurd
BAD_COUNTER_RECORD = 7  # a counter record shorter than its fixed size
BAD_SAMPLING_RATE = 8  # sampling_rate 0
MALFORMED_REASONS = (
    "truncated", "bad_version", "bad_agent_address", "sample_past_end", "bad_sample", "record_past_end",
    "bad_raw_header", "bad_counter_record", "bad_sampling_rate",
)
# Other tallies: what was read, and what was skipped because this collector has no use for it.
SAMPLES_FLOW = 9
SAMPLES_COUNTER = 10
DROP_NOTIFICATIONS = 11
SKIPPED_SAMPLES = 12  # sample formats other than 1-5 or of another enterprise
SKIPPED_FLOW_RECORDS = 13  # flow records other than raw_packet_header (extended_switch, ...)
SKIPPED_COUNTER_RECORDS = 14  # counter records other than generic/ethernet, or ethernet without generic
OTHER_HEADER_PROTOCOL = 15  # raw_packet_header of a protocol other than Ethernet, or empty
TALLIES = (*MALFORMED_REASONS, "samples_flow", "samples_counter", "drop_notifications", "skipped_samples",
           "skipped_flow_records", "skipped_counter_records", "other_header_protocol")

# Columns of the compiled walk's counter rows.
CT_IFINDEX, CT_SPEED, CT_OPER_UP, CT_IN_OCTETS, CT_IN_PKTS, CT_OUT_OCTETS, CT_OUT_PKTS = range(7)
CT_IN_ERRORS, CT_OUT_ERRORS, CT_IN_DISCARDS, CT_OUT_DISCARDS, CT_FCS_ERRORS = range(7, 12)
COUNTER_COLUMNS = ("speed_bps", "oper_up", "in_octets", "in_pkts", "out_octets", "out_pkts", "in_errors",
                   "out_errors", "in_discards", "out_discards", "fcs_errors")  # CT_SPEED onwards
MIN_RAW_RECORD = 8 + RAW_PACKET_HEADER_FIXED + 1  # bytes of the smallest record that yields a packet
MIN_COUNTER_ROW = 8 + IF_COUNTERS_SIZE
MIN_DROP = 8 + DISCARDED_PACKET_FIXED


@numba.njit(cache=True, inline="always")
def _counter32(buf: np.ndarray, p: int) -> np.uint64:
    value = be32(buf, p)
    return np.uint64(0) if value == UNKNOWN_32 else np.uint64(value)


@numba.njit(cache=True, inline="always")
def _counter64(buf: np.ndarray, p: int) -> np.uint64:
    value = (np.uint64(be32(buf, p)) << np.uint64(32)) | np.uint64(be32(buf, p + 4))
    return np.uint64(0) if value == np.uint64(UNKNOWN_64) else value


@numba.njit(cache=True, inline="always")
def _interface(fmt: int, value: int) -> int:
    """ifIndex of a single-interface input/output, -1 for none, unknown, discarded or several."""
    return value if fmt == 0 and value != 0 and value != NO_INTERFACE else -1


@numba.njit(cache=True)
def _flow_sample(
    buf: np.ndarray, p: int, end: int, expanded: bool, d: int, n: int,
    pk_offset: np.ndarray, pk_caplen: np.ndarray, pk_wirelen: np.ndarray, pk_datagram: np.ndarray,
    pk_rate: np.ndarray, pk_input: np.ndarray, pk_output: np.ndarray, tallies: np.ndarray,
) -> tuple[int, int]:
    """(malformed reason or -1, packets written so far) for the flow sample in buf[p:end]."""
    if end - p < (FLOW_SAMPLE_EXPANDED_FIXED if expanded else FLOW_SAMPLE_FIXED):
        return BAD_SAMPLE, n
    if expanded:
        rate, count = be32(buf, p + FSX_RATE), be32(buf, p + FSX_RECORDS)
        source_in = _interface(be32(buf, p + FSX_INPUT_FORMAT), be32(buf, p + FSX_INPUT_VALUE))
        source_out = _interface(be32(buf, p + FSX_OUTPUT_FORMAT), be32(buf, p + FSX_OUTPUT_VALUE))
        q = p + FLOW_SAMPLE_EXPANDED_FIXED
    else:
        rate, count = be32(buf, p + FS_RATE), be32(buf, p + FS_RECORDS)
        word_in, word_out = be32(buf, p + FS_INPUT), be32(buf, p + FS_OUTPUT)  # format in the top 2 bits
        source_in = _interface(word_in >> 30, word_in & NO_INTERFACE)
        source_out = _interface(word_out >> 30, word_out & NO_INTERFACE)
        q = p + FLOW_SAMPLE_FIXED
    if rate == 0:
        return BAD_SAMPLING_RATE, n
    first = n
    skipped_records, other_protocol = 0, 0
    for _ in range(count):
        if end - q < 8:
            return RECORD_PAST_END, first
        fmt, length = be32(buf, q), be32(buf, q + 4)
        body = q + 8
        if length > end - body:
            return RECORD_PAST_END, first
        if fmt != RAW_PACKET_HEADER:
            skipped_records += 1
        else:
            if length < RAW_PACKET_HEADER_FIXED:
                return BAD_RAW_HEADER, first
            protocol, frame_length = be32(buf, body + RH_PROTOCOL), be32(buf, body + RH_FRAME_LENGTH)
            stripped, header_length = be32(buf, body + RH_STRIPPED), be32(buf, body + RH_HEADER_LENGTH)
            wirelen = frame_length - stripped
            if header_length > length - RAW_PACKET_HEADER_FIXED or stripped > frame_length \
                    or wirelen > MAX_CAPLEN or header_length > wirelen:
                return BAD_RAW_HEADER, first
            if protocol != HEADER_PROTOCOL_ETHERNET or header_length == 0:
                other_protocol += 1
            elif n == len(pk_offset):  # unreachable while the caller sizes by MIN_RAW_RECORD; never write past
                return BAD_SAMPLE, first
            else:
                pk_offset[n] = body + RAW_PACKET_HEADER_FIXED
                pk_caplen[n] = header_length
                pk_wirelen[n] = wirelen
                pk_datagram[n] = d
                pk_rate[n] = rate
                pk_input[n] = source_in
                pk_output[n] = source_out
                n += 1
        q = body + length
    tallies[SKIPPED_FLOW_RECORDS] += skipped_records
    tallies[OTHER_HEADER_PROTOCOL] += other_protocol
    tallies[SAMPLES_FLOW] += 1
    return -1, n


@numba.njit(cache=True)
def _counters_sample(
    buf: np.ndarray, p: int, end: int, expanded: bool, d: int, n: int,
    ct_datagram: np.ndarray, ct_values: np.ndarray, tallies: np.ndarray,
) -> tuple[int, int]:
    """(malformed reason or -1, counter rows written so far): a row per generic interface record, the
    ethernet record that follows it adding its FCS errors."""
    fixed = COUNTERS_SAMPLE_EXPANDED_FIXED if expanded else COUNTERS_SAMPLE_FIXED
    if end - p < fixed:
        return BAD_SAMPLE, n
    count = be32(buf, p + fixed - 4)
    q = p + fixed
    first = n
    skipped = 0
    for _ in range(count):
        if end - q < 8:
            return RECORD_PAST_END, first
        fmt, length = be32(buf, q), be32(buf, q + 4)
        body = q + 8
        if length > end - body:
            return RECORD_PAST_END, first
        if fmt == IF_COUNTERS:
            if length < IF_COUNTERS_SIZE:
                return BAD_COUNTER_RECORD, first
            if n == len(ct_datagram):
                return BAD_SAMPLE, first
            row = ct_values[n]
            row[:] = 0
            row[CT_IFINDEX] = be32(buf, body + IF_INDEX)
            row[CT_SPEED] = _counter64(buf, body + IF_SPEED)
            row[CT_OPER_UP] = 1 if be32(buf, body + IF_STATUS) & IF_STATUS_OPER_UP else 0
            row[CT_IN_OCTETS] = _counter64(buf, body + IF_IN_OCTETS)
            row[CT_IN_PKTS] = _counter32(buf, body + IF_IN_UCAST) \
                + _counter32(buf, body + IF_IN_MULTICAST) + _counter32(buf, body + IF_IN_BROADCAST)
            row[CT_OUT_OCTETS] = _counter64(buf, body + IF_OUT_OCTETS)
            row[CT_OUT_PKTS] = _counter32(buf, body + IF_OUT_UCAST) \
                + _counter32(buf, body + IF_OUT_MULTICAST) \
                + _counter32(buf, body + IF_OUT_BROADCAST)
            row[CT_IN_ERRORS] = _counter32(buf, body + IF_IN_ERRORS)
            row[CT_OUT_ERRORS] = _counter32(buf, body + IF_OUT_ERRORS)
            row[CT_IN_DISCARDS] = _counter32(buf, body + IF_IN_DISCARDS)
            row[CT_OUT_DISCARDS] = _counter32(buf, body + IF_OUT_DISCARDS)
            ct_datagram[n] = d
            n += 1
        elif fmt == ETHERNET_COUNTERS:
            if length < ETHERNET_COUNTERS_SIZE:
                return BAD_COUNTER_RECORD, first
            if n > first:
                ct_values[n - 1, CT_FCS_ERRORS] = _counter32(buf, body + ETH_FCS_ERRORS)
            else:
                skipped += 1  # no interface record to attach it to: a row without oper status would lie
        else:
            skipped += 1
        q = body + length
    tallies[SKIPPED_COUNTER_RECORDS] += skipped
    tallies[SAMPLES_COUNTER] += 1
    return -1, n


@numba.njit(cache=True)
def _discarded_packet(
    buf: np.ndarray, p: int, end: int, d: int, n: int, dr_datagram: np.ndarray, dr_values: np.ndarray,
    tallies: np.ndarray,
) -> tuple[int, int]:
    """(malformed reason or -1, drop rows so far); its flow records are checked for framing only."""
    if end - p < DISCARDED_PACKET_FIXED or n == len(dr_datagram):
        return BAD_SAMPLE, n
    reason, count = be32(buf, p + DP_REASON), be32(buf, p + DP_RECORDS)
    q = p + DISCARDED_PACKET_FIXED
    for _ in range(count):
        if end - q < 8 or be32(buf, q + 4) > end - q - 8:
            return RECORD_PAST_END, n
        q += 8 + be32(buf, q + 4)
    dr_datagram[n] = d
    dr_values[n, DR_REASON] = reason
    dr_values[n, DR_INPUT] = be32(buf, p + DP_INPUT)
    dr_values[n, DR_OUTPUT] = be32(buf, p + DP_OUTPUT)
    dr_values[n, DR_DROPS] = be32(buf, p + DP_DROPS)
    tallies[DROP_NOTIFICATIONS] += 1
    return -1, n + 1


@numba.njit(cache=True)
def walk(
    buf: np.ndarray, dg_offset: np.ndarray, dg_length: np.ndarray,
    dg_status: np.ndarray, dg_agent: np.ndarray, dg_sub_agent: np.ndarray, dg_sequence: np.ndarray,
    pk_offset: np.ndarray, pk_caplen: np.ndarray, pk_wirelen: np.ndarray, pk_datagram: np.ndarray,
    pk_rate: np.ndarray, pk_input: np.ndarray, pk_output: np.ndarray,
    ct_datagram: np.ndarray, ct_values: np.ndarray, dr_datagram: np.ndarray, dr_values: np.ndarray,
    tallies: np.ndarray,
) -> tuple[int, int, int]:
    """Every datagram buf[dg_offset[d] : + dg_length[d]]; returns (packets, counter rows, drops) written.

    dg_status[d] is -1 for a sound datagram, else the malformed reason that ended it; dg_agent[d] holds the
    address family (0, 4 or 6) then the 16 address bytes (IPv4 in the first 4).
    """
    n_packets, n_counters, n_drops = 0, 0, 0
    for d in range(len(dg_offset)):
        p, end = dg_offset[d], dg_offset[d] + dg_length[d]
        dg_status[d] = -1
        dg_agent[d, :] = 0
        if end - p < 8:
            dg_status[d] = TRUNCATED
        elif be32(buf, p) != VERSION:
            dg_status[d] = BAD_VERSION
        else:
            address_type = be32(buf, p + 4)
            size = 4 if address_type == ADDRESS_IP_V4 else 16 if address_type == ADDRESS_IP_V6 else \
                0 if address_type == ADDRESS_UNKNOWN else -1
            if size < 0:
                dg_status[d] = BAD_AGENT_ADDRESS
            elif end - p < 8 + size + 16:
                dg_status[d] = TRUNCATED
            else:
                dg_agent[d, 0] = 4 if size == 4 else 6 if size == 16 else 0
                dg_agent[d, 1 : 1 + size] = buf[p + 8 : p + 8 + size]
                p += 8 + size
                dg_sub_agent[d] = be32(buf, p)
                dg_sequence[d] = be32(buf, p + 4)
                count = be32(buf, p + 12)
                p += 16
                for _ in range(count):
                    if end - p < 8 or be32(buf, p + 4) > end - p - 8:
                        dg_status[d] = SAMPLE_PAST_END
                        break
                    data_format, length = be32(buf, p), be32(buf, p + 4)
                    body, nxt = p + 8, p + 8 + length
                    reason = -1
                    if data_format in (FLOW_SAMPLE, FLOW_SAMPLE_EXPANDED):
                        reason, n_packets = _flow_sample(
                            buf, body, nxt, data_format == FLOW_SAMPLE_EXPANDED, d, n_packets, pk_offset,
                            pk_caplen, pk_wirelen, pk_datagram, pk_rate, pk_input, pk_output, tallies)
                    elif data_format in (COUNTERS_SAMPLE, COUNTERS_SAMPLE_EXPANDED):
                        reason, n_counters = _counters_sample(
                            buf, body, nxt, data_format == COUNTERS_SAMPLE_EXPANDED, d, n_counters, ct_datagram,
                            ct_values, tallies)
                    elif data_format == DISCARDED_PACKET:
                        reason, n_drops = _discarded_packet(buf, body, nxt, d, n_drops, dr_datagram, dr_values,
                                                            tallies)
                    else:
                        tallies[SKIPPED_SAMPLES] += 1
                    if reason >= 0:
                        tallies[reason] += 1
                    p = nxt
        if dg_status[d] >= 0:
            tallies[dg_status[d]] += 1
    return n_packets, n_counters, n_drops


@dataclass
class SflowStats:
    """Running totals of the decoder; `malformed` by reason (MALFORMED_REASONS), drops by reason code."""

    datagrams: int = 0
    tallies: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TALLIES, 0))
    drop_reasons: dict[int, int] = field(default_factory=dict)
    lost_datagrams: int = 0  # gaps in each agent's datagram sequence numbers

    @property
    def malformed(self) -> dict[str, int]:
        return {reason: self.tallies[reason] for reason in MALFORMED_REASONS}

    @property
    def malformed_total(self) -> int:
        return sum(self.tallies[reason] for reason in MALFORMED_REASONS)


@dataclass(frozen=True, slots=True)
class SflowBatch:
    """What one batch of datagrams held: sampled packets by sampling rate, `counters` and `drops` rows."""

    packets: dict[int, PacketBatch]
    counters: dict[str, np.ndarray]
    drops: dict[str, np.ndarray]

    @property
    def sampled(self) -> int:
        return sum(len(batch) for batch in self.packets.values())


def sflow_interface(agent: str, ifindex: int) -> str:
    """The capture-interface name a sampled packet gets, which the topology maps to the sflow: entry's link."""
    return f"{INTERFACE_PREFIX}{agent}/{ifindex}"


def with_sflow_interfaces(topology: Topology) -> Topology:
    """The topology with every `sflow:` entry also listed as an interface mirror, so the packet decoder
    attributes sampled packets by interface name after ERSPAN session and mirror VLAN, as for any capture."""
    named = {sflow_interface(agent, ifindex): link for (agent, ifindex), link in topology.sflow_ports.items()}
    return dataclasses.replace(topology, interfaces={**topology.interfaces, **named})


class SflowDecoder:
    """Decodes batches of datagrams against one topology; keeps `stats` and the interface names it made.

    Interface names only grow (one per agent and port seen), so the packet decoder's table per names tuple
    stays small in a long run.
    """

    MAX_INTERFACES = 65_535  # PacketBatch.interface is uint16; later ports share the last name

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.stats = SflowStats()
        self._agents: dict[bytes, str] = {}
        self._names: dict[str, int] = {}
        self._interfaces: tuple[str, ...] = ()
        self._sequences: dict[tuple[str, int], int] = {}

    def decode_datagrams(self, datagrams: Sequence[bytes], arrival_ns: Sequence[int] | np.ndarray) -> SflowBatch:
        """Datagrams as separate byte strings (tests, replays): concatenated once, then `decode`."""
        lengths = np.array(list(map(len, datagrams)), dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64) if len(datagrams) else lengths
        data = np.frombuffer(b"".join(datagrams), dtype=np.uint8)
        return self.decode(data, offsets, lengths, np.asarray(arrival_ns, dtype=np.int64))

    def decode(self, data: np.ndarray, offset: np.ndarray, length: np.ndarray, arrival_ns: np.ndarray) -> SflowBatch:
        """Datagram d is data[offset[d] : offset[d] + length[d]], received at arrival_ns[d]; the packet batches
        returned are views onto `data`."""
        n = len(offset)
        total = int(length.sum()) if n else 0
        if n and (int(offset.min()) < 0 or int(length.min()) < 0 or int((offset + length).max()) > len(data)):
            raise ValueError("datagram offsets/lengths outside the buffer")
        dg_status = np.empty(n, dtype=np.int64)
        dg_agent = np.empty((n, 17), dtype=np.uint8)
        dg_sub_agent = np.zeros(n, dtype=np.int64)
        dg_sequence = np.zeros(n, dtype=np.int64)
        room = total // MIN_RAW_RECORD + 1
        pk = {name: np.empty(room, dtype=np.int64) for name in ("offset", "datagram", "rate", "input", "output")}
        pk_caplen = np.empty(room, dtype=np.uint32)
        pk_wirelen = np.empty(room, dtype=np.uint32)
        ct_datagram = np.empty(total // MIN_COUNTER_ROW + 1, dtype=np.int64)
        ct_values = np.empty((len(ct_datagram), len(COUNTER_COLUMNS) + 1), dtype=np.uint64)
        dr_datagram = np.empty(total // MIN_DROP + 1, dtype=np.int64)
        dr_values = np.empty((len(dr_datagram), 4), dtype=np.int64)
        tallies = np.zeros(len(TALLIES), dtype=np.int64)
        n_packets, n_counters, n_drops = walk(
            data, offset.astype(np.int64), length.astype(np.int64), dg_status, dg_agent, dg_sub_agent, dg_sequence,
            pk["offset"], pk_caplen, pk_wirelen, pk["datagram"], pk["rate"], pk["input"], pk["output"],
            ct_datagram, ct_values, dr_datagram, dr_values, tallies,
        )
        self.stats.datagrams += n
        for name, count in zip(TALLIES, tallies.tolist(), strict=True):
            self.stats.tallies[name] += count
        for reason, count in zip(*np.unique(dr_values[:n_drops, DR_REASON], return_counts=True), strict=True):
            self.stats.drop_reasons[int(reason)] = self.stats.drop_reasons.get(int(reason), 0) + int(count)
        agent_id, agents = self._agent_ids(dg_agent)
        self._count_lost(agent_id, agents, dg_status, dg_sub_agent, dg_sequence)
        columns = {name: column[:n_packets] for name, column in pk.items()}
        batches = self._batches(data, columns, pk_caplen[:n_packets], pk_wirelen[:n_packets], agent_id, agents,
                                arrival_ns)
        counters = self._counters(agents[agent_id], arrival_ns, ct_datagram[:n_counters], ct_values[:n_counters])
        drops = self._drops(agents[agent_id], arrival_ns, dr_datagram[:n_drops], dr_values[:n_drops])
        return SflowBatch(packets=batches, counters=counters, drops=drops)

    def _agent_ids(self, dg_agent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index of every datagram's agent into the returned agent texts ('' when the address is UNKNOWN),
        each distinct address parsed once."""
        if not len(dg_agent):
            return np.zeros(0, dtype=np.int64), np.empty(0, dtype=object)
        keys, inverse = np.unique(dg_agent.view(np.dtype((np.void, 17))).ravel(), return_inverse=True)
        names = np.empty(len(keys), dtype=object)
        for i, key in enumerate(keys):
            raw = key.tobytes()
            name = self._agents.get(raw)
            if name is None:
                size = {4: 4, 6: 16}.get(raw[0], 0)
                name = self._agents[raw] = str(ipaddress.ip_address(raw[1 : 1 + size])) if size else ""
            names[i] = name
        return inverse.ravel().astype(np.int64), names

    def _count_lost(
        self, agent_id: np.ndarray, agents: np.ndarray, status: np.ndarray, sub_agent: np.ndarray,
        sequence: np.ndarray,
    ) -> None:
        """Datagrams missing between consecutive sequence numbers of one agent and sub-agent (a lower
        number is a restart, not a loss). Python runs once per agent and sub-agent, not per datagram."""
        read = (status < 0) | (status >= SAMPLE_PAST_END)  # the header, sequence number included, was read
        source = (agent_id << 32) | sub_agent
        for key in np.unique(source[read]).tolist():
            numbers = sequence[read & (source == key)]
            name = (str(agents[key >> 32]), key & 0xFFFFFFFF)
            last = self._sequences.get(name)
            steps = np.diff(numbers if last is None else np.concatenate(([last], numbers)))
            self.stats.lost_datagrams += int((steps[steps > 0] - 1).sum())
            self._sequences[name] = int(numbers[-1])

    def _interface_index(self, name: str) -> int:
        index = self._names.get(name)
        if index is None:
            if len(self._interfaces) >= self.MAX_INTERFACES:
                return self.MAX_INTERFACES - 1
            index = self._names[name] = len(self._interfaces)
            self._interfaces = (*self._interfaces, name)
        return index

    def _batches(
        self, data: np.ndarray, pk: dict[str, np.ndarray], caplen: np.ndarray, wirelen: np.ndarray,
        agent_id: np.ndarray, agents: np.ndarray, arrival_ns: np.ndarray,
    ) -> dict[int, PacketBatch]:
        """One PacketBatch per sampling rate; a packet's interface is its agent and input ifIndex, or the
        output ifIndex when only that one is mapped to a link. Python runs once per distinct port."""
        if not len(caplen):
            return {}
        agent = agent_id[pk["datagram"]]
        port_in = (agent << 33) | (pk["input"] + 1)  # ifIndex -1 (none) .. 2**32 - 1 fits in 33 bits
        port_out = (agent << 33) | (pk["output"] + 1)
        ports, inverse = np.unique(np.concatenate([port_in, port_out]), return_inverse=True)
        found = [(str(agents[k >> 33]), (k & _PORT_MASK) - 1) for k in ports.tolist()]
        mapped = np.array([port in self.topology.sflow_ports for port in found], dtype=bool)
        by_in, by_out = inverse.ravel()[: len(agent)], inverse.ravel()[len(agent) :]
        chosen = np.where(~mapped[by_in] & mapped[by_out], by_out, by_in)
        used = np.zeros(len(found), dtype=bool)
        used[chosen] = True
        index = np.zeros(len(found), dtype=np.uint16)
        for i in np.flatnonzero(used).tolist():
            index[i] = self._interface_index(self._port_name(*found[i]))
        interface = index[chosen]
        ts_ns = arrival_ns[pk["datagram"]]
        batches = {}
        for rate in np.unique(pk["rate"]).tolist():
            rows = np.flatnonzero(pk["rate"] == rate)
            batches[int(rate)] = PacketBatch(
                data=data, offset=pk["offset"][rows], caplen=caplen[rows], wirelen=wirelen[rows],
                ts_ns=ts_ns[rows], interface=interface[rows], interfaces=self._interfaces,
            )
        return batches

    @staticmethod
    def _port_name(agent: str, ifindex: int) -> str:
        return sflow_interface(agent, ifindex) if ifindex >= 0 else f"{INTERFACE_PREFIX}{agent}"

    def _counters(
        self, agents: np.ndarray, arrival_ns: np.ndarray, datagram: np.ndarray, values: np.ndarray
    ) -> dict[str, np.ndarray]:
        """A `counters` row per generic interface record: `ts` is the datagram's arrival (sFlow carries only the
        agent's uptime), `device` the agent's address, `ifname` the ifIndex; columns sFlow lacks stay 0."""
        rows = records.empty_columns("counters", len(datagram))
        if not len(datagram):
            return rows
        device = agents[datagram]
        ifindex = values[:, CT_IFINDEX].astype(np.int64)
        rows["ts"] = (arrival_ns[datagram] // 1000).astype("datetime64[us]")
        rows["device"] = device
        rows["ifname"] = np.array([str(i) for i in ifindex.tolist()], dtype=object)
        rows["link"] = np.array([(self.topology.link_for_sflow(a, i) if a else None) or ""
                                 for a, i in zip(device.tolist(), ifindex.tolist(), strict=True)], dtype=object)
        for index, name in enumerate(COUNTER_COLUMNS, start=CT_SPEED):
            rows[name] = values[:, index].astype(rows[name].dtype)
        rows["source"] = records.repeated("sflow", len(datagram))
        return rows

    def _drops(
        self, agents: np.ndarray, arrival_ns: np.ndarray, datagram: np.ndarray, values: np.ndarray
    ) -> dict[str, np.ndarray]:
        """A `drops` row per dropped-packet notification; its link is the input port's, else the output's."""
        rows = records.empty_columns("drops", len(datagram))
        if not len(datagram):
            return rows
        device = agents[datagram]
        rows["ts"] = (arrival_ns[datagram] // 1000).astype("datetime64[us]")
        rows["device"] = device
        rows["link"] = np.array([
            (self.topology.link_for_sflow(agent, port_in) or self.topology.link_for_sflow(agent, port_out)
             if agent else None) or ""
            for agent, port_in, port_out in zip(device.tolist(), values[:, DR_INPUT].tolist(),
                                                values[:, DR_OUTPUT].tolist(), strict=True)], dtype=object)
        rows["input_ifindex"] = values[:, DR_INPUT].astype(np.uint32)
        rows["output_ifindex"] = values[:, DR_OUTPUT].astype(np.uint32)
        rows["reason_code"] = values[:, DR_REASON].astype(np.uint32)
        rows["reason"] = np.array([reason_name(code) for code in values[:, DR_REASON].tolist()], dtype=object)
        rows["unreported"] = values[:, DR_DROPS].astype(np.uint32)
        rows["source"] = records.repeated("sflow", len(datagram))
        return rows
