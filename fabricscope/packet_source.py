"""The dashboard's packets: its PacketSource, answered from the packet store of the data dir.

The dashboard may not import the collectors; this wiring does, and hands the dashboard an object that
selects (collectors.packet_select), cuts (pcapng_writer) and dissects (collectors.dissect through tshark).
Where the packets are: the recorder's segments when `capture` or `demo` kept some, else the captures
`replay` read into this data dir (indexed under <data-dir>/packets/index, as `fabricscope packets --pcap`
does). An incident's window and link come from the dashboard's own open store (chdb admits one process per
data dir). Dissection is slow (tshark), and pyshark's asyncio subprocesses misbehave off the main thread of
a busy server (two at once break each other; in the served dashboard one sometimes never returned), so it
runs in a process of its own, one slice at a time, as `fabricscope packets` runs it; each listing is kept
per request, and request threads asking for the same one wait on the same result. The pcap needs no tshark.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dashboards.packets import PacketListing, PacketRequest
from pipeline.errors import FabricscopeError, InputError, one_line

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.pool import Pool

    from collectors.packet_select import PacketStore, Selection, Slice
    from collectors.packets import PacketBatch
    from pipeline.store import Store
    from pipeline.topology import Topology

INDEX_DIR = "index"  # the replayed captures' indexes, shared with `fabricscope packets --pcap`
MARGIN_S = 1.0  # around an incident, as `fabricscope packets --event` takes it by default
SCAN_LIMIT = 50_000  # packets read to find the view's rows around the incident
CACHED_LISTINGS = 16
DISSECT_TIMEOUT_S = 60.0  # one slice; past it the dissector is taken for hung, killed and started again
INCIDENT_SQL = "SELECT ts, ts_end, link FROM incidents WHERE event_id = {event_id:String} LIMIT 1"


def packet_store(data_dir: str | Path, topology: Topology) -> PacketStore:
    """The data dir's packets: the recorder's segments, else the replayed captures; InputError when neither."""
    from collectors.packet_select import PacketStore, replay_index_for
    from collectors.recorder import recorded_store, replayed_captures, segments_of, store_directory

    directory = store_directory(data_dir)
    if segments_of(directory):
        return recorded_store(directory, topology)
    replayed = [path for path in replayed_captures(directory) if path.exists()]
    if replayed:
        return PacketStore(replayed, topology, replay_index_for(directory / INDEX_DIR, topology))
    raise InputError("packets", f"no recorded packets and no replayed capture in {directory.resolve()} "
                     "(capture or demo record them; replay remembers its inputs)")


def _ns(moment: datetime) -> int:
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


class StorePackets:
    """The PacketSource of a data dir (see the module docstring); safe to share between request threads."""

    def __init__(self, store: Store, topology: Topology, data_dir: str | Path, *, margin_s: float = MARGIN_S) -> None:
        self.store = store
        self.topology = topology
        self.data_dir = data_dir
        self.margin_ns = round(margin_s * 1e9)
        self._lock = threading.Lock()
        self._listings: OrderedDict[tuple[PacketRequest, int], Future[PacketListing]] = OrderedDict()
        self._requests = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fabricscope-packets")
        self._dissector = _dissector()

    def pcapng(self, packet_request: PacketRequest) -> tuple[bytes, int]:
        from collectors.packet_select import DEFAULT_LIMIT
        from collectors.pcapng_writer import PcapngWriter

        selection, _ = self._selection(packet_request, packet_request.limit or DEFAULT_LIMIT)
        cut = packet_store(self.data_dir, self.topology).select(selection)
        with tempfile.TemporaryDirectory(prefix="fabricscope-pcap-") as scratch:
            path = Path(scratch) / "slice.pcapng"
            writer = PcapngWriter(path, cut.frames.linktype)
            try:
                writer.write(cut.frames)
            finally:
                writer.close()
            return path.read_bytes(), len(cut)

    def listing(self, packet_request: PacketRequest, rows: int) -> PacketListing:
        key = (packet_request, rows)
        with self._lock:
            found = self._listings.get(key)
            if found is None:
                found = self._listings[key] = self._requests.submit(self._listing, packet_request, rows)
                while len(self._listings) > CACHED_LISTINGS:
                    self._listings.popitem(last=False)
            self._listings.move_to_end(key)
        try:
            return found.result()
        except Exception:
            with self._lock:  # a failure is not kept: asked again (tshark installed, packets recorded), it retries
                if self._listings.get(key) is found:
                    del self._listings[key]
            raise

    def _listing(self, packet_request: PacketRequest, rows: int) -> PacketListing:
        from collectors.dissect import packet_rows, require_tshark

        require_tshark()  # said here, in the view, before any packet is read
        selection, event_ns = self._selection(packet_request, packet_request.limit or SCAN_LIMIT)
        cut = packet_store(self.data_dir, self.topology).select(selection)
        frames = _around(cut, event_ns, rows)
        try:
            listed = self._dissected(packet_rows, frames) if len(frames) else []
        except FabricscopeError:
            raise
        except Exception as exc:  # pyshark's and tshark's failures, translated at the boundary
            raise FabricscopeError(one_line(f"Wireshark's dissection failed: {exc}")) from exc
        for row, ts_ns in zip(listed, frames.ts_ns.tolist(), strict=True):
            row["ts_ns"] = ts_ns
        last_read = int(cut.frames.ts_ns[-1]) if len(cut) else None
        end_ns = selection.end_ns if event_ns is not None and not cut.capped else last_read
        return PacketListing(rows=listed, event_ns=event_ns, end_ns=end_ns, matched=len(cut), capped=cut.capped)

    def _dissected(self, packet_rows: Callable[[PacketBatch, Topology], list[dict[str, Any]]],
                   frames: PacketBatch) -> list[dict[str, Any]]:
        """`frames` dissected in the dissector process. One that hangs (pyshark's asyncio children now and then
        never return: the view then never filled, in the fresh-clone suite too) is killed, and the slice
        dissected once more in a new one."""
        for _ in range(2):
            pending = self._dissector.apply_async(packet_rows, (frames, self.topology))
            try:
                return pending.get(timeout=DISSECT_TIMEOUT_S)
            except multiprocessing.TimeoutError:
                self._dissector.terminate()
                self._dissector = _dissector()
        raise FabricscopeError(f"Wireshark's dissection did not finish within {DISSECT_TIMEOUT_S:.0f} s, twice")

    def _selection(self, packet_request: PacketRequest, limit: int) -> tuple[Selection, int | None]:
        """The collectors' Selection for a request and the incident's time (None for a flow)."""
        from collectors.packet_select import EARLIEST_NS, LATEST_NS, Selection, parse_flow

        start = _ns(packet_request.start) if packet_request.start else EARLIEST_NS
        end = _ns(packet_request.end) if packet_request.end else LATEST_NS
        link, event_ns = packet_request.link, None
        if packet_request.event:
            event_start, event_end, event_link = self._incident(packet_request.event)
            start, end = max(start, event_start - self.margin_ns), min(end, event_end + self.margin_ns)
            event_ns = event_start
            link = link or ("" if packet_request.flow else event_link)
        links = None
        if link:
            if link not in self.topology.link_ids():
                raise InputError("link", f"'{link}' is not a link of the topology")
            links = (self.topology.link(link).index,)
        flow = parse_flow(packet_request.flow, packet_request.qp) if packet_request.flow else None
        return Selection(start_ns=start, end_ns=end, links=links, flow=flow, limit=limit), event_ns

    def _incident(self, event_id: str) -> tuple[int, int, str]:
        rows = self.store.query(INCIDENT_SQL, parameters={"event_id": event_id}).rows
        if not rows:
            raise InputError("event", f"no incident '{event_id}' in the store")
        ts, ts_end, link = rows[0]
        return _ns(ts), _ns(ts_end), str(link)


def _dissector() -> Pool:
    """A process of its own for dissection, spawned (not forked from a server with threads)."""
    return multiprocessing.get_context("spawn").Pool(processes=1)


def _around(cut: Slice, event_ns: int | None, count: int) -> PacketBatch:
    """`count` frames of the slice: centred on the incident (filled from whichever side has more), else the first."""
    from collectors.packets import PacketBatch

    frames = cut.frames
    first = 0
    if event_ns is not None:
        at = int(np.searchsorted(frames.ts_ns, event_ns))
        first = max(0, min(at - count // 2, len(frames) - count))
    rows = slice(first, first + count)
    return PacketBatch(data=frames.data, offset=frames.offset[rows], caplen=frames.caplen[rows],
                       wirelen=frames.wirelen[rows], ts_ns=frames.ts_ns[rows], interface=frames.interface[rows],
                       interfaces=frames.interfaces, linktype=frames.linktype)
