"""DFI: the traffic class (DESIGN.md section 6) and training job of every flow row in a window, from behaviour.

Decided by behaviour, in this order, using only headers and timing (so truncated or encrypted payloads change
nothing):
- L2 control frames (no IP: LLDP, ARP, PFC) and CNP-only flows are `control`;
- RoCE data flows whose bursts recur with one period and start in step with other flows, among hosts that all
  send and receive, are `collective`, and those hosts are one `job` (collectors.dfi_jobs); other RoCE data
  flows are `p2p`; a RoCE ACK flow takes the class and job of the data flows it acknowledges;
- conversations moving data fast or in volume are `bulk`; packets marked network control (DSCP CS6/CS7)
  are `control`.
What behaviour leaves open — a small, slow conversation can be a keepalive, a rendezvous store, a shell or a
lookup — is settled by the role of its DPI app (APP_ROLES, from ports when payloads are gone); an unlabelled
small TCP conversation is `interactive`, anything else `other`.

Rows are grouped into flows by their key without the link, so the two mirrored copies of a flow (uplink at
the source leaf, downlink at the destination leaf) and its successive export rows count once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from collectors.dfi_jobs import BurstTrains, JobConfig, clusters, is_collective
from collectors.job_names import JobNames
from pipeline.addresses import fixed16
from pipeline.labels import TRAFFIC_CLASS_CODE

OTHER, COLLECTIVE, P2P, BULK, INTERACTIVE, CONTROL = (
    TRAFFIC_CLASS_CODE[name] for name in ("other", "collective", "p2p", "bulk", "interactive", "control")
)
TCP = 6
NETWORK_CONTROL_DSCP = (48, 56)  # CS6, CS7 (RFC 4594)

APP_ROLES: dict[str, int] = {
    **dict.fromkeys(("bgp", "bfd", "lldp", "arp", "pfc", "ntp", "ptp", "icmp", "rocev2-cnp"), CONTROL),
    "torch-c10d": CONTROL,  # rendezvous and barriers: small and periodic around a job's life
    **dict.fromkeys(("nvme-tcp", "iscsi", "nfs"), BULK),
    "tls": BULK,  # inside a training fabric: object-store checkpoints and datasets
    **dict.fromkeys(("ssh", "dns", "http", "vxlan"), INTERACTIVE),
}

ROW_COLUMNS = (
    "ts_start", "ts_end", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "vni", "dscp", "roce_qp",
    "packets", "bytes", "cnp", "roce_write", "roce_read", "roce_send", "roce_ack", "app", "confidence",
)


@dataclass(frozen=True, slots=True)
class DfiConfig:
    """Thresholds of the behaviour rules; `jobs` those of collective detection."""

    bulk_rate_bps: float = 1e9  # a conversation this fast moves data in bulk
    bulk_bytes: int = 64 << 20  # ... or one that moved this much in the window
    small_packet: int = 300  # mean packet size (bytes) of a small conversation
    min_duration_us: int = 1000  # rate of shorter conversations is taken over this
    burst_merge_us: int = 200  # burst starts of one flow closer than this are one (seen on two links)
    jobs: JobConfig = field(default_factory=JobConfig)


@dataclass(frozen=True, slots=True)
class FlowWindow:
    """Flow rows of a window: `rows` holds the ROW_COLUMNS as pipeline.records FLOWS fills them (IPs as
    16-byte network-order bytes objects or V16 values, times datetime64[us]); `bursts` the burst starts of each row."""

    rows: Mapping[str, np.ndarray]
    bursts: BurstTrains

    def __len__(self) -> int:
        return len(self.rows["packets"])


@dataclass(frozen=True, slots=True)
class FlowClasses:
    """Per row of the window: traffic_class code (pipeline.labels.TRAFFIC_CLASSES), job ('' if none) and the
    flow it belongs to (an index, equal for rows of one flow key without the link)."""

    traffic_class: np.ndarray  # uint8
    job: np.ndarray  # object, str
    flow: np.ndarray  # int64


def classify_flows(window: FlowWindow, config: DfiConfig | None = None, names: JobNames | None = None) -> FlowClasses:
    """Traffic class and job of every row of `window`; a job `names` knows takes its scheduler name."""
    config = config or DfiConfig()
    n = len(window)
    if n == 0:
        return FlowClasses(np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=object), np.zeros(0, dtype=np.int64))
    rows = window.rows
    src_host, dst_host, hosts = _hosts(rows)
    flow, first_row = _factorize([src_host, dst_host, *(rows[name] for name in ("src_port", "dst_port", "proto",
                                                                               "vni", "roce_qp"))])
    flows = _Flows.aggregate(rows, flow, first_row, src_host, dst_host)
    trains = _merge_trains(window.bursts, flow, len(first_row), config.burst_merge_us)

    traffic_class = np.full(len(first_row), OTHER, dtype=np.uint8)
    job = np.full(len(first_row), "", dtype=object)
    _classify_other(flows, config, traffic_class)
    _classify_roce(flows, trains, hosts, config.jobs, traffic_class, job, names or JobNames())
    return FlowClasses(traffic_class[flow], job[flow], flow)


def _hosts(rows: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Host id of each row's source and destination (ids follow address order), and each host's (hi, lo)
    address words."""
    addresses = np.concatenate([_ip_words(rows["src_ip"]), _ip_words(rows["dst_ip"])])
    host_ids, first_seen = _factorize([addresses[:, 0], addresses[:, 1]])
    n = len(host_ids) // 2
    return host_ids[:n], host_ids[n:], addresses[first_seen]


@dataclass(frozen=True, slots=True)
class _Flows:
    """Per-flow aggregates of the window's rows."""

    src_host: np.ndarray
    dst_host: np.ndarray
    src_port: np.ndarray
    dst_port: np.ndarray
    proto: np.ndarray
    vni: np.ndarray
    dscp: np.ndarray
    app: np.ndarray  # object, str
    packets: np.ndarray  # float64 sums
    bytes: np.ndarray
    cnp: np.ndarray
    roce_data: np.ndarray
    roce_ack: np.ndarray
    first_us: np.ndarray  # int64
    last_us: np.ndarray

    @classmethod
    def aggregate(
        cls, rows: Mapping[str, np.ndarray], flow: np.ndarray, first_row: np.ndarray, src_host: np.ndarray,
        dst_host: np.ndarray,
    ) -> _Flows:
        count = len(first_row)

        def total(*names: str) -> np.ndarray:
            summed = np.zeros(count, dtype=np.float64)
            for name in names:
                summed += np.bincount(flow, rows[name].astype(np.float64), count)
            return summed

        first_us = np.full(count, np.iinfo(np.int64).max, dtype=np.int64)
        last_us = np.full(count, np.iinfo(np.int64).min, dtype=np.int64)
        np.minimum.at(first_us, flow, _microseconds(rows["ts_start"]))
        np.maximum.at(last_us, flow, _microseconds(rows["ts_end"]))
        by_confidence = np.lexsort((-rows["confidence"].astype(np.float64), flow))
        most_confident = by_confidence[np.searchsorted(flow[by_confidence], np.arange(count))]
        return cls(
            src_host[first_row], dst_host[first_row], rows["src_port"][first_row], rows["dst_port"][first_row],
            rows["proto"][first_row], rows["vni"][first_row], rows["dscp"][first_row],
            np.asarray(rows["app"])[most_confident],
            total("packets"), total("bytes"), total("cnp"), total("roce_write", "roce_read", "roce_send"),
            total("roce_ack"), first_us, last_us,
        )


def _classify_other(flows: _Flows, config: DfiConfig, traffic_class: np.ndarray) -> None:
    """Everything but RoCE data and ACK flows: L2 and CNP control, then conversations by rate, DSCP, app role."""
    roles = _roles(flows.app)
    conversation = _conversations(flows, roce=False)
    count = conversation.max() + 1
    conv_bytes = np.bincount(conversation, flows.bytes, count)
    conv_packets = np.bincount(conversation, flows.packets, count)
    conv_first = np.full(count, np.iinfo(np.int64).max, dtype=np.int64)
    conv_last = np.full(count, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(conv_first, conversation, flows.first_us)
    np.maximum.at(conv_last, conversation, flows.last_us)
    duration_s = np.maximum(conv_last - conv_first, config.min_duration_us) / 1e6
    rate_bps = (conv_bytes * 8 / duration_s)[conversation]
    mean_size = (conv_bytes / np.maximum(conv_packets, 1))[conversation]

    bulk = (rate_bps >= config.bulk_rate_bps) | (conv_bytes[conversation] >= config.bulk_bytes)
    unlabelled_small_tcp = (roles < 0) & (flows.proto == TCP) & (mean_size <= config.small_packet)
    decided = [
        (flows.proto == 0, CONTROL),
        ((flows.cnp > 0) & (flows.cnp >= flows.packets), CONTROL),
        (bulk, BULK),
        (np.isin(flows.dscp, NETWORK_CONTROL_DSCP), CONTROL),
        (roles >= 0, roles),
        (unlabelled_small_tcp, INTERACTIVE),
    ]
    undecided = np.ones(len(traffic_class), dtype=bool)
    for rule, code in decided:
        take = undecided & rule
        traffic_class[take] = code[take] if isinstance(code, np.ndarray) else code
        undecided &= ~rule


def _classify_roce(
    flows: _Flows, trains: BurstTrains, hosts: np.ndarray, config: JobConfig, traffic_class: np.ndarray,
    job: np.ndarray, names: JobNames,
) -> None:
    """RoCE data flows: collective (and job) or p2p; ACK-only flows follow the data of their host pair."""
    not_cnp = flows.cnp < flows.packets
    data = np.flatnonzero((flows.roce_data > 0) & not_cnp)
    traffic_class[data] = P2P
    for group in clusters(trains, data, config):
        members = np.asarray(group)
        if is_collective(flows.src_host[members], flows.dst_host[members], config):
            traffic_class[members] = COLLECTIVE
            job[members] = _job_name(hosts, np.union1d(flows.src_host[members], flows.dst_host[members]), names)
    acks = np.flatnonzero((flows.roce_ack > 0) & (flows.roce_data == 0) & not_cnp)
    if not len(acks):
        return
    traffic_class[acks] = P2P
    pair = _conversations(flows, roce=True)
    collective_data = data[traffic_class[data] == COLLECTIVE]
    job_of_pair = dict(zip(pair[collective_data].tolist(), job[collective_data], strict=True))
    for ack in acks:
        name = job_of_pair.get(int(pair[ack]))
        if name is not None:
            traffic_class[ack] = COLLECTIVE
            job[ack] = name


def _roles(app: np.ndarray) -> np.ndarray:
    """APP_ROLES code of each flow's app, -1 where the app says nothing about the role."""
    names, inverse = np.unique(app.astype("S"), return_inverse=True)  # bytes: a quarter of str's memory
    return np.array([APP_ROLES.get(name.decode(), -1) for name in names], dtype=np.int64)[inverse]


def _conversations(flows: _Flows, *, roce: bool) -> np.ndarray:
    """Id joining both directions of a conversation; RoCE joins every QP between two hosts."""
    low, high = np.minimum(flows.src_host, flows.dst_host), np.maximum(flows.src_host, flows.dst_host)
    if roce:
        return _factorize([low, high, flows.vni])[0]
    forward = flows.src_host <= flows.dst_host
    low_port = np.where(forward, flows.src_port, flows.dst_port)
    high_port = np.where(forward, flows.dst_port, flows.src_port)
    return _factorize([low, high, low_port, high_port, flows.proto, flows.vni])[0]


def _merge_trains(bursts: BurstTrains, flow: np.ndarray, count: int, merge_us: int) -> BurstTrains:
    """Per flow, the sorted union of its rows' burst starts, starts closer than `merge_us` counted once."""
    lengths = np.diff(bursts.offsets)
    owner = np.repeat(flow, lengths)
    order = np.lexsort((bursts.start_us, owner))
    owner, start = owner[order], bursts.start_us[order]
    keep = np.ones(len(start), dtype=bool)
    keep[1:] = (owner[1:] != owner[:-1]) | (start[1:] - start[:-1] > merge_us)
    owner, start = owner[keep], start[keep]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=count))]).astype(np.int64)
    return BurstTrains(start.astype(np.int64), offsets)


def _factorize(columns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(id of each row's distinct key, first row of each id) for a key made of several integer columns."""
    order = np.lexsort(columns[::-1])
    new = np.ones(len(order), dtype=bool)
    for column in columns:
        ordered = column[order]
        new[1:] &= ordered[1:] == ordered[:-1]
    new = ~new
    new[0] = True
    ids = np.empty(len(order), dtype=np.int64)
    ids[order] = np.cumsum(new) - 1
    return ids, order[new]


def _ip_words(addresses: np.ndarray) -> np.ndarray:
    """(n, 2) uint64 words of 16-byte network-order addresses."""
    return fixed16(addresses).view(">u8").reshape(-1, 2).astype(np.uint64)


def _microseconds(times: np.ndarray) -> np.ndarray:
    return np.asarray(times).astype("datetime64[us]").astype(np.int64)


def _job_name(hosts: np.ndarray, members: np.ndarray, names: JobNames) -> str:
    """The scheduler's name of the job when `names` has one; else named after its lowest host address, which
    stays the same while the job runs."""
    addresses = [ipaddress.IPv6Address((int(hi) << 64) | int(lo)) for hi, lo in hosts[members]]
    lowest = addresses[int(np.argmin(members))]
    return names.name(addresses) or f"job-{lowest.ipv4_mapped or lowest}"
