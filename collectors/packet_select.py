"""Select mirrored packets by flow, link and time from capture files, through our own decoder.

A packet is matched on what our flow rows mean: the monitored frame's 5-tuple after ERSPAN/GRE
decapsulation (a tunnel's inner one, VXLAN's too), the BTH destination QP, and the link the topology attributes
the mirrored copy to. Each file's chunk index (collectors.packet_index) says which chunks can hold a match,
so only those are decoded; the rest of the file is only walked record by record. The slice is the matching
frames as captured, copied out of the files, in file order, at most `limit` of them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from collectors import protocols
from collectors.decode import Decoder
from collectors.packet_index import ChunkIndex, ChunkIndexBuilder, index_path, tuple_hash
from collectors.packets import DecodedPackets, PacketBatch
from collectors.pcapfile import open_capture
from collectors.pcapng_writer import copy_frames
from pipeline.addresses import words_of
from pipeline.errors import InputError
from pipeline.topology import Topology

DEFAULT_LIMIT = 1000
EARLIEST_NS, LATEST_NS = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
PROTOCOL_NAMES = {"tcp": protocols.IP_TCP, "udp": protocols.IP_UDP}
_ENDPOINT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[0-9.]+):(\d+)")
_FLOW = re.compile(rf"{_ENDPOINT.pattern}>{_ENDPOINT.pattern}/(\w+)")


@dataclass(frozen=True)
class FlowFilter:
    """One flow's key as the flows table has it: addresses as (hi, lo) words, ports, IP protocol, and the
    BTH destination QP (None: any QP)."""

    src: tuple[int, int]
    dst: tuple[int, int]
    src_port: int
    dst_port: int
    proto: int
    qp: int | None = None

    def tuple_hash(self) -> int:
        columns = {"src_hi": np.array([self.src[0]], np.uint64), "src_lo": np.array([self.src[1]], np.uint64),
                   "dst_hi": np.array([self.dst[0]], np.uint64), "dst_lo": np.array([self.dst[1]], np.uint64),
                   "src_port": np.array([self.src_port]), "dst_port": np.array([self.dst_port]),
                   "proto": np.array([self.proto])}
        return int(tuple_hash(columns)[0])

    def matches(self, decoded: DecodedPackets) -> np.ndarray:
        match = ((decoded.src_hi == self.src[0]) & (decoded.src_lo == self.src[1])
                 & (decoded.dst_hi == self.dst[0]) & (decoded.dst_lo == self.dst[1])
                 & (decoded.src_port == self.src_port) & (decoded.dst_port == self.dst_port)
                 & (decoded.proto == self.proto))
        if self.qp is not None:
            match &= decoded.is_roce & (decoded.dqpn == self.qp)
        return np.asarray(match, dtype=bool)


def parse_flow(text: str, qp: int | None = None) -> FlowFilter:
    """`SRC:PORT>DST:PORT/PROTO` (IPv6 in brackets, PROTO tcp, udp or a number) into a FlowFilter."""
    found = _FLOW.fullmatch(text.strip())
    if not found:
        raise InputError("--flow", f"'{text}' is not SRC:PORT>DST:PORT/PROTO (e.g. 10.0.1.5:49152>10.0.2.7:4791/udp)")
    src, src_port, dst, dst_port, proto_text = found.groups()
    try:
        src_words, dst_words = words_of(src.strip("[]")), words_of(dst.strip("[]"))
    except ValueError as exc:
        raise InputError("--flow", f"'{text}': {exc}") from None
    proto = PROTOCOL_NAMES.get(proto_text.lower(), int(proto_text) if proto_text.isdigit() else -1)
    if not 0 <= proto <= 255:
        raise InputError("--flow", f"'{proto_text}' is not tcp, udp or an IP protocol number")
    if int(src_port) > 65535 or int(dst_port) > 65535:
        raise InputError("--flow", f"'{text}': a port is above 65535")
    if qp is not None and not 0 <= qp < 1 << 24:
        raise InputError("--qp", f"{qp} is not a 24-bit queue pair number")
    return FlowFilter(src_words, dst_words, int(src_port), int(dst_port), proto, qp)


def flow_text(flow: FlowFilter) -> str:
    """The flow as `parse_flow` reads it."""
    def endpoint(words: tuple[int, int], port: int) -> str:
        address = ipaddress.IPv6Address((words[0] << 64) | words[1])
        shown = str(address.ipv4_mapped) if address.ipv4_mapped else f"[{address}]"
        return f"{shown}:{port}"

    qp = f" qp {flow.qp}" if flow.qp is not None else ""
    return f"{endpoint(flow.src, flow.src_port)}>{endpoint(flow.dst, flow.dst_port)}/{flow.proto}{qp}"


@dataclass(frozen=True)
class Selection:
    """Which packets: times [start_ns, end_ns] (ns since the epoch), links (topology indexes; None: any),
    one flow (None: any); at most `limit` of them."""

    start_ns: int = EARLIEST_NS
    end_ns: int = LATEST_NS
    links: tuple[int, ...] | None = None
    flow: FlowFilter | None = None
    limit: int = DEFAULT_LIMIT

    def rows(self, decoded: DecodedPackets) -> np.ndarray:
        """Indexes of the decoded packets this selection takes."""
        match = decoded.ok & (decoded.ts_ns >= self.start_ns) & (decoded.ts_ns <= self.end_ns)
        if self.links is not None:
            match &= np.isin(decoded.link, np.array(self.links, dtype=np.int16))
        if self.flow is not None:
            match &= self.flow.matches(decoded)
        return np.flatnonzero(match)

    def chunks(self, index: ChunkIndex) -> np.ndarray:
        links = None if self.links is None else np.array(self.links, dtype=np.int64)
        return index.matching(start_ns=self.start_ns, end_ns=self.end_ns, links=links,
                              flow_hash=None if self.flow is None else self.flow.tuple_hash())


@dataclass(frozen=True)
class Slice:
    """The selected frames as one batch of their own (`frames.data` holds only them), and whether more
    packets matched than the limit let in."""

    frames: PacketBatch
    capped: bool

    def __len__(self) -> int:
        return len(self.frames)


class _SliceBuilder:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.capped = False
        self.linktype: int | None = None
        self._parts: list[tuple[np.ndarray, PacketBatch]] = []

    @property
    def full(self) -> bool:
        return self.count >= self.limit

    def take(self, batch: PacketBatch, rows: np.ndarray, source: str) -> None:
        if not len(rows):
            return
        if self.linktype is not None and batch.linktype != self.linktype:
            raise InputError(source, f"link type {batch.linktype} differs from {self.linktype} of the earlier "
                             "captures; select from one link type at a time")
        self.linktype = batch.linktype
        room = self.limit - self.count
        if len(rows) > room:
            rows, self.capped = rows[:room], True
        caplen = batch.caplen[rows].astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(caplen)[:-1]]).astype(np.int64)
        data = np.empty(int(caplen.sum()), dtype=np.uint8)
        copy_frames(batch.data, batch.offset[rows], caplen, data, starts)
        names = np.array(batch.interfaces or ("",), dtype=object)[batch.interface[rows]]
        part = PacketBatch(data=data, offset=starts, caplen=batch.caplen[rows], wirelen=batch.wirelen[rows],
                           ts_ns=batch.ts_ns[rows], interface=np.zeros(len(rows), np.uint16), interfaces=("",),
                           linktype=batch.linktype)
        self._parts.append((names, part))
        self.count += len(rows)

    def build(self) -> Slice:
        if not self._parts:
            empty = np.empty(0, dtype=np.int64)
            frames = PacketBatch(np.empty(0, np.uint8), empty, empty.astype(np.uint32), empty.astype(np.uint32),
                                 empty, empty.astype(np.uint16), ("",))
            return Slice(frames, capped=False)
        names = np.concatenate([names for names, _ in self._parts])
        interfaces, interface = np.unique(names.astype(str), return_inverse=True)
        sizes = [len(part.data) for _, part in self._parts]
        shift = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        frames = PacketBatch(
            data=np.concatenate([part.data for _, part in self._parts]),
            offset=np.concatenate([part.offset + at for (_, part), at in zip(self._parts, shift, strict=True)]),
            caplen=np.concatenate([part.caplen for _, part in self._parts]),
            wirelen=np.concatenate([part.wirelen for _, part in self._parts]),
            ts_ns=np.concatenate([part.ts_ns for _, part in self._parts]),
            interface=interface.astype(np.uint16),
            interfaces=tuple(str(name) for name in interfaces),
            linktype=self.linktype or 1,
        )
        return Slice(frames, capped=self.capped)


def _rows_of(batch: PacketBatch, rows: np.ndarray) -> PacketBatch:
    return PacketBatch(data=batch.data, offset=batch.offset[rows], caplen=batch.caplen[rows],
                       wirelen=batch.wirelen[rows], ts_ns=batch.ts_ns[rows], interface=batch.interface[rows],
                       interfaces=batch.interfaces, linktype=batch.linktype)


def _wanted_rows(index: ChunkIndex, wanted: np.ndarray, first: int, count: int) -> np.ndarray:
    """Rows of the batch holding records [first, first + count) that fall in a wanted chunk."""
    records = np.arange(first, first + count)
    chunk = np.searchsorted(index.first_record, records, side="right") - 1
    chunk = np.clip(chunk, 0, len(wanted) - 1)
    return np.flatnonzero(wanted[chunk])


class PacketStore:
    """Capture files (replayed inputs or the recorder's segments) and where each one's chunk index lives
    (`index_for`). A missing index is built by a full decode of the file and saved when `build_missing`
    (replayed inputs); otherwise (a segment still being written) the whole file is decoded for each lookup."""

    def __init__(self, captures: Sequence[Path], topology: Topology, index_for: Callable[[Path], Path], *,
                 build_missing: bool = True) -> None:
        self.captures = [Path(path) for path in captures]
        self.topology = topology
        self.index_for = index_for
        self.build_missing = build_missing
        self.decoded_packets = 0  # how many packets lookups decoded (the indexes keep this small)

    def select(self, selection: Selection) -> Slice:
        result = _SliceBuilder(selection.limit)
        for capture in self.captures:
            for batch, decoded in self._candidates(capture, selection):
                rows = selection.rows(decoded)
                if len(rows) and result.full:
                    result.capped = True
                    return result.build()
                result.take(batch, rows, str(capture))
        return result.build()

    def index(self, capture: Path) -> ChunkIndex | None:
        """The capture's index, built now if missing and `build_missing`."""
        path = self.index_for(capture)
        if path.exists():
            return ChunkIndex.load(path)
        if not self.build_missing:
            return None
        builder = ChunkIndexBuilder(len(self.topology.links))
        decoder = Decoder(self.topology)
        with open_capture(capture) as reader:
            for batch in reader:
                builder.add(decoder.decode(batch))
                self.decoded_packets += len(batch)
        index = builder.build()
        index.save(path)
        return index

    def _candidates(self, capture: Path, selection: Selection) -> Iterator[tuple[PacketBatch, DecodedPackets]]:
        """Batches of `capture` that may hold a match (only their rows in matching chunks), decoded."""
        index = self.index(capture)
        wanted = selection.chunks(index) if index is not None else None
        if wanted is not None and not wanted.any():
            return
        decoder = Decoder(self.topology)
        with open_capture(capture) as reader:
            first = 0
            for batch in reader:
                rows = np.arange(len(batch)) if index is None or wanted is None \
                    else _wanted_rows(index, wanted, first, len(batch))
                first += len(batch)
                if len(rows):
                    part = _rows_of(batch, rows)
                    self.decoded_packets += len(part)
                    yield part, decoder.decode(part)


def replay_index_for(index_dir: Path, topology: Topology) -> Callable[[Path], Path]:
    """Indexes of replayed inputs: in `index_dir`, keyed by the file's path, size, mtime and the topology."""
    return lambda capture: index_path(index_dir, capture, topology)
