"""The one declaration of every record column (DESIGN.md section 5, a contract).

`link_bins` extends the contract: per link, direction and 10 ms epoch-aligned bin, the RoCE ECN, CNP and
PFC counts the congestion detector and the live charts need at packet precision, which flow rows (cut at
the ≤1 s active timeout) cannot give. `iterations` extends it too: each all-reduce burst of a job found by
DFI, timed from packet timestamps, for the collective-slowdown detector and the per-job charts. `drops`
extends it too: the packets a switch reports it dropped (sFlow dropped-packet notifications), with why.

Kafka topics, Arrow schemas, ClickHouse DDL and the README's field list are all derived from the
tables below; change a column here, together with a migration and its tests.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Column:
    """A record column: its ClickHouse type, its Arrow type and the numpy dtype collectors fill."""

    name: str
    clickhouse: str
    arrow: pa.DataType
    numpy: str
    doc: str
    since: int = 1  # the migration that added the column (1: the raw tables of 001_raw_tables.sql)


def _ts(name: str, doc: str) -> Column:
    return Column(name, "DateTime64(6, 'UTC')", pa.timestamp("us", tz="UTC"), "datetime64[us]", doc)


def _lc(name: str, doc: str) -> Column:
    return Column(name, "LowCardinality(String)", pa.string(), "object", doc)


def _str(name: str, doc: str) -> Column:
    return Column(name, "String", pa.string(), "object", doc)


def _ip(name: str, doc: str) -> Column:
    return Column(name, "IPv6", pa.binary(16), "object", doc)


def _u(bits: int, name: str, doc: str) -> Column:
    return Column(name, f"UInt{bits}", getattr(pa, f"uint{bits}")(), f"uint{bits}", doc)


def _f(name: str, doc: str, *, nullable: bool = False) -> Column:
    return Column(name, "Nullable(Float64)" if nullable else "Float64", pa.float64(), "float64", doc)


FLOWS: tuple[Column, ...] = (
    _ts("ts_start", "first packet of the flow in this row"),
    _ts("ts_end", "last packet of the flow in this row"),
    _lc("exporter", "collector instance that produced the row"),
    _lc("link", "leaf-spine link id, '' when the packet could not be attributed"),
    _lc("direction", "up, down or unknown"),
    _lc("leaf", "leaf of the link"),
    _lc("spine", "spine of the link"),
    _ip("src_ip", "source address (IPv4 as v4-mapped IPv6)"),
    _ip("dst_ip", "destination address (IPv4 as v4-mapped IPv6)"),
    _u(16, "src_port", "L4 source port"),
    _u(16, "dst_port", "L4 destination port"),
    _u(8, "proto", "IP protocol number"),
    _u(16, "vlan", "802.1Q VLAN id of the monitored frame, 0 if untagged"),
    _u(32, "vni", "tunnel id: VXLAN or Geneve network identifier, GRE key, MPLS bottom label; 0 if none"),
    _u(8, "dscp", "DSCP of the first packet"),
    _u(32, "roce_qp", "BTH destination QP, 0 if not RoCE"),
    _u(64, "packets", "packets (scaled by sampling_rate)"),
    _u(64, "bytes", "original frame bytes on the monitored link (scaled by sampling_rate)"),
    _u(64, "ecn_ect", "ECN-capable packets (ECT(0), ECT(1) or CE)"),
    _u(64, "ecn_ce", "ECN congestion-experienced packets"),
    _u(64, "cnp", "RoCEv2 congestion notification packets"),
    _u(64, "roce_write", "RDMA WRITE packets"),
    _u(64, "roce_read", "RDMA READ request/response packets"),
    _u(64, "roce_send", "SEND packets"),
    _u(64, "roce_ack", "ACK/NAK packets"),
    _u(64, "psn_gaps", "PSN numbers skipped between consecutive packets"),
    _u(64, "naks", "NAKs (AETH syndrome 011)"),
    _lc("app", "DPI label (DESIGN.md section 6)"),
    _str("app_detail", "DPI detail, e.g. TLS SNI"),
    _lc("traffic_class", "DFI label (DESIGN.md section 6)"),
    Column("confidence", "Float32", pa.float32(), "float32", "DPI confidence, 0..1"),
    _lc("job", "collective group, '' if none"),
    _u(32, "sampling_rate", "1 for full mirrors, N for 1-in-N sampling"),
    _ts("ts_tail", "time of the flow's 3rd-to-last packet on this link so far (fast recovery: >=3 packets in 10 ms)"),
    _u(32, "psn_first", "BTH PSN of the first RoCE packet in this row (packets lost across a failover)"),
    _u(32, "psn_last", "BTH PSN of the last RoCE packet in this row"),
    *(replace(column, since=8) for column in (
        _ip("outer_src_ip", "tunnel (GRE, IP-in-IP, VXLAN, Geneve) source endpoint when the row is its inner flow, "
                            "else ::"),
        _ip("outer_dst_ip", "tunnel destination endpoint when the row is its inner flow, else ::"),
        _lc("time_source", "switch: packet times are the switch's ERSPAN III timestamps; capture: arrival times"),
        _f("mirror_delay_us", "switch-timed packets: mean capture time minus switch time (the mirror path), else 0"),
    )),
)

COUNTERS: tuple[Column, ...] = (
    _ts("ts", "time the switch took the sample"),
    _lc("device", "switch name"),
    _lc("ifname", "interface name"),
    _lc("link", "leaf-spine link id, '' if the interface is not a fabric link"),
    _u(8, "oper_up", "1 if operationally up"),
    _u(64, "speed_bps", "interface speed"),
    _u(64, "in_octets", "cumulative"),
    _u(64, "out_octets", "cumulative"),
    _u(64, "in_pkts", "cumulative"),
    _u(64, "out_pkts", "cumulative"),
    _u(64, "in_errors", "cumulative"),
    _u(64, "out_errors", "cumulative"),
    _u(64, "in_discards", "cumulative"),
    _u(64, "out_discards", "cumulative"),
    _u(64, "fcs_errors", "cumulative"),
    _u(64, "pfc_rx_pause", "cumulative PFC pause frames received"),
    _u(64, "pfc_tx_pause", "cumulative PFC pause frames sent"),
    _u(64, "ecn_marked", "cumulative packets ECN-marked by this port"),
    _lc("source", "sflow, snmp, gnmi or file"),
)

EVENTS: tuple[Column, ...] = (
    _ts("ts", "start of the event (fast_recovery: the failure time)"),
    _ts("ts_end", "end of the event"),
    _lc("kind", "fast_recovery, link_down, link_up, link_flap, congestion, pfc_storm, ecmp_imbalance, errors, "
        "collective_slowdown"),
    _lc("severity", "info, warning or critical"),
    _lc("link", "link the event is about, '' if none"),
    _lc("direction", "up, down or unknown"),
    _lc("device", "switch the event is about, '' if none"),
    _lc("job", "collective job the event is about (congestion: every job through it, most bytes first, "
        "comma-separated), '' if none"),
    _str("summary", "one line for people"),
    _f("convergence_ms", "fast_recovery: max of local and remote convergence", nullable=True),
    _f("local_convergence_ms", "fast_recovery: affected up flows back on another uplink", nullable=True),
    _f("remote_convergence_ms", "fast_recovery: affected down flows back on another downlink", nullable=True),
    _u(32, "flows_affected", "fast_recovery: flows on the link just before the failure"),
    _u(32, "flows_recovered", "fast_recovery: affected flows seen again elsewhere"),
    _u(64, "packets_lost", "fast_recovery: PSN numbers the affected RoCE flows skipped"),
    _f("value", "kind-specific figure (congestion: peak CE ratio)", nullable=True),
    _str("details", "JSON text"),
    replace(_str("event_id", "stable for the life of one incident: its open, update and close rows share it"),
            since=5),
    replace(_lc("state", "open while the incident goes on, closed once it ended"), since=5),
    replace(_ts("updated", "data time this row was written; readers keep each event_id's latest row"), since=5),
)

LINK_BIN_US = 10_000

LINK_BINS: tuple[Column, ...] = (
    _ts("ts", "start of the 10 ms bin, aligned to the epoch"),
    _lc("exporter", "collector instance that produced the row"),
    _lc("link", "leaf-spine link id"),
    _lc("direction", "up, down or unknown"),
    _lc("leaf", "leaf of the link"),
    _lc("spine", "spine of the link"),
    _ts("ts_first", "first packet in the bin"),
    _ts("ts_last", "last packet in the bin"),
    _u(64, "packets", "packets (scaled by sampling_rate)"),
    _u(64, "bytes", "original frame bytes (scaled by sampling_rate)"),
    _u(64, "roce_packets", "RoCEv2 packets"),
    _u(64, "roce_ect", "ECN-capable RoCEv2 packets"),
    _u(64, "roce_ce", "CE-marked RoCEv2 packets"),
    _u(64, "cnp", "RoCEv2 congestion notification packets"),
    _u(64, "pfc_pause", "PFC pause frames with a non-zero quanta"),
    _u(64, "pfc_quanta", "sum of the pause quanta over all priorities"),
    _ts("ts_first_ce", "first CE-marked packet in the bin (the epoch when none)"),
    _ts("ts_last_ce", "last CE-marked packet in the bin (the epoch when none)"),
    _u(32, "sampling_rate", "1 for full mirrors, N for 1-in-N sampling"),
)

ITERATIONS: tuple[Column, ...] = (
    _ts("ts", "first packet of the iteration's all-reduce burst among the job's flows"),
    _ts("ts_end", "last packet of the burst"),
    _lc("exporter", "collector instance that produced the row"),
    _lc("job", "collective group found by DFI"),
    _u(64, "iteration", "sequence number of the iteration within the job, from 0"),
    _f("allreduce_ms", "ts_end - ts in milliseconds"),
    _f("period_ms", "time since the previous iteration's start, 0 for the first"),
    _u(64, "packets", "packets of the burst on all links"),
    _u(64, "bytes", "bytes of the burst on all links"),
    _u(32, "flows", "flows of the job active in the burst"),
    Column("links", "Array(LowCardinality(String))", pa.list_(pa.string()), "object", "links the burst crossed"),
)

DROPS: tuple[Column, ...] = tuple(replace(column, since=7) for column in (
    _ts("ts", "arrival of the notification's datagram (sFlow carries only the agent's uptime)"),
    _lc("device", "the agent's address"),
    _lc("link", "leaf-spine link of the input (else the output) port, '' when neither is mapped"),
    _u(32, "input_ifindex", "ifIndex the dropped packet came in on, 0 if unknown"),
    _u(32, "output_ifindex", "ifIndex it was going out of, 0 if unknown"),
    _u(32, "reason_code", "sFlow drop reason: 0-15 ICMP unreachable codes, 256 and above Linux drop monitor's"),
    _lc("reason", "the reason's name (collectors.sflow_drops), code_<n> when not a known one"),
    _u(32, "unreported", "the agent's count of drops it could not report for lack of resources, cumulative"),
    _lc("source", "sflow"),
))

TABLES: dict[str, tuple[Column, ...]] = {
    "flows": FLOWS,
    "link_bins": LINK_BINS,
    "iterations": ITERATIONS,
    "counters": COUNTERS,
    "events": EVENTS,
    "drops": DROPS,
}


def topic(table: str) -> str:
    """Kafka topic of a table: its name carries the schema version."""
    return f"fabricscope.{table}.v{SCHEMA_VERSION}"


def dlq_topic(table: str) -> str:
    return f"{topic(table)}.dlq"


def column_names(table: str) -> list[str]:
    return [column.name for column in TABLES[table]]


@functools.cache
def arrow_schema(table: str) -> pa.Schema:
    """Arrow schema of a table; nullable only where ClickHouse is. Built once per table: every message
    encoded and decoded is checked against it."""
    return pa.schema(
        [pa.field(c.name, c.arrow, nullable=c.clickhouse.startswith("Nullable")) for c in TABLES[table]],
        metadata={"fabricscope.table": table, "fabricscope.version": str(SCHEMA_VERSION)},
    )


def repeated(value: object, size: int) -> np.ndarray:
    """An object column of `size` references to the one `value`: np.full (and np.where with a str) makes a
    new str per element, ~60 bytes each in every process, queue and pickle the rows pass through."""
    column = np.empty(size, dtype=object)
    column.fill(value)
    return column


def empty_columns(table: str, size: int) -> dict[str, np.ndarray]:
    """Zeroed numpy columns of a table (address columns filled with ::, other object columns with '')."""
    result: dict[str, np.ndarray] = {}
    for column in TABLES[table]:
        if column.clickhouse == "IPv6":
            result[column.name] = np.empty(size, dtype=object)
            result[column.name][:] = [bytes(16)] * size  # np.full would strip the zero bytes to b''
        elif column.numpy == "object":
            result[column.name] = repeated("", size)
        else:
            result[column.name] = np.zeros(size, dtype=column.numpy)
    return result
