"""Flow table: decoded packets aggregated per flow key and export interval into `flows` rows (DESIGN.md §5).

Each batch is grouped with one sort (by a 64-bit hash of the key, checked against the exact key) and reduced
with `reduceat`; the groups are merged into a persistent table kept as numpy columns and found by binary
search over the sorted hashes, so no Python object exists per packet or per flow (only flows whose hash
collides with another flow's are matched in a Python loop).

Rows: a flow's packets are cut into export intervals aligned to the epoch (`active_timeout_s` long); a row
is exported once packet time has passed the end of its interval, so the result does not depend on batch
boundaries. Packets arriving after their interval was exported make a further row for the same interval
(rows add up). A flow idle for `idle_timeout_s` of packet time is forgotten (its PSN and label state too).

The table holds at most `max_flows` flows (the memory bound against a flood of distinct flows): before a
batch that would take it past the bound, the flows idle longest are exported early (their open row leaves
as a normal row, as at an active timeout, so rows still add up to the flow's exact totals) and forgotten;
a later packet of such a flow starts it afresh (a new row, PSN and label state, like after an idle timeout).

Rows are also cut at pauses, so a link outage and its repair within one interval show as a hole between
rows, and each RoCE burst is a row of its own: a packet starts a new row when the gap since the flow's
previous packet on the link exceeds `pause_min_ms` and `pause_factor` times the smaller of the two gaps
before it (the flow needs 3 packets first). The smaller of two recent gaps is the flow's own packet
spacing, taken locally so the rule needs no sequential pass: a burst's spacing is µs, so the silence after
it cuts; a BFD session's spacing is tens of ms, so its next packet does not. A pause is known as soon as
packet time (the newest packet of any flow) has passed the flow's last packet by that much, not only when
its next packet comes: the row is exported then (`close_at`, kept per flow), so the last rows of flows on a
failed link, which have no next packet there, leave within milliseconds of the failure. With packets in
time order this cuts exactly where the next packet would have. Every batch of rows carries, besides the
FLOWS columns, BURST_START: whether the row began after a pause or is the flow's first on the link (a row
begun by an interval boundary continues a burst) — the collector's input to DFI, not a contract column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collectors import flow_segments, key_runs, protocols, radix
from collectors.flow_keys import KEY_FIELDS, flow_hash, packet_keys
from collectors.packets import DecodedPackets
from pipeline.addresses import to_bytes16
from pipeline.labels import APPS
from pipeline.records import column_names, repeated
from pipeline.topology import DIRECTIONS, Topology

DEFAULT_ACTIVE_TIMEOUT_S = 1.0
DEFAULT_IDLE_TIMEOUT_S = 15.0  # longer than the gaps between collective iterations, so jobs keep their flows
DEFAULT_PAUSE_MIN_MS = 1.0  # far above line-rate packet spacing, far below the compute time between iterations
DEFAULT_PAUSE_FACTOR = 8.0
BURST_START = "burst_start"
TIME_CAPTURE, TIME_SWITCH = "capture", "switch"  # `time_source`: whose clock timed the row's packets
_TIME_SOURCES = np.array([TIME_CAPTURE, TIME_SWITCH], dtype=object)  # indexed, so rows share the two strs
UNKNOWN_APP = APPS.index("unknown")
IDLE_SWEEP_S = 1.0  # how often (packet time) idle flows are looked for
# With export rows, DFI's window and the embedded store, < 1.2 GB for the process tree under a flood of 5M
# flows with 2 workers (bench/flow_memory.py; 128 MB left it at 1,183-1,206 MB PSS).
DEFAULT_TABLE_MEMORY_MB = 96

FLAG_COUNTERS = ("ecn_ect", "ecn_ce", "cnp", "roce_write", "roce_read", "roce_send", "roce_ack", "naks")
# switch_timed: packets timed by the switch (ERSPAN III); mirror_delay_ns: their capture time minus switch time, summed
COUNTERS = ("packets", "bytes", *FLAG_COUNTERS, "psn_gaps", "switch_timed", "mirror_delay_ns")
OUTER_FIELDS = ("outer_src_hi", "outer_src_lo", "outer_dst_hi", "outer_dst_lo")  # a tunnel's endpoints, per flow
# The open row's fields besides COUNTERS: first/last packet time, the flow's 3rd-to-last packet time so far
# (0 while it has fewer than 3 packets), the first/last RoCE PSN in the row (-1 while none) and whether the row
# began a burst.
ROW_FIELDS = ("row_first", "row_last", "row_tail", "row_psn_first", "row_psn_last", "row_burst")
_FLOW_STATE: tuple[tuple[str, str, object], ...] = (  # per flow, kept across rows: (name, dtype, initial)
    ("hash", "uint64", 0), ("dscp", "uint8", 0), *((name, "uint64", 0) for name in OUTER_FIELDS),
    ("app", "uint8", 0), ("confidence", "float32", 0),
    ("detail", "object", ""), ("last_psn", "int64", -1), ("ts_last", "int64", 0), ("ts_previous", "int64", 0),
    ("ts_third", "int64", 0), ("row_interval", "int64", -1), ("row_first", "int64", 0), ("row_last", "int64", 0),
    ("row_tail", "int64", 0), ("row_psn_first", "int64", -1), ("row_psn_last", "int64", -1),
    ("row_burst", "bool", False), ("close_at", "int64", np.iinfo(np.int64).max),
)
# Memory per flow held: every column's item (an object column holds a pointer to a shared string) and the sorted
# hash index (hash and slot); the table never allocates more slots than max_flows.
BYTES_PER_FLOW = (
    sum(np.dtype(dtype).itemsize for _, dtype in KEY_FIELDS)
    + sum(np.dtype(dtype).itemsize for _, dtype, _ in _FLOW_STATE)
    + len(COUNTERS) * np.dtype(np.uint64).itemsize
    + 2 * np.dtype(np.int64).itemsize
)
DEFAULT_MAX_FLOWS = DEFAULT_TABLE_MEMORY_MB * 2**20 // BYTES_PER_FLOW


@dataclass(frozen=True, slots=True)
class FlowTableConfig:
    """Timeouts in seconds of packet time; `exporter` names this collector in every row. A row is cut at a
    pause longer than `pause_min_ms` and `pause_factor` times the flow's recent packet spacing. At most
    `max_flows` flows are held (more only while one batch alone has more distinct flows)."""

    active_timeout_s: float = DEFAULT_ACTIVE_TIMEOUT_S
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    pause_min_ms: float = DEFAULT_PAUSE_MIN_MS
    pause_factor: float = DEFAULT_PAUSE_FACTOR
    exporter: str = ""
    sampling_rate: int = 1
    max_flows: int = DEFAULT_MAX_FLOWS

    def __post_init__(self) -> None:
        if self.max_flows < 1:
            raise ValueError("max_flows must be >= 1")
        if not 0 < self.active_timeout_s <= 1:
            raise ValueError("active_timeout_s must be in (0, 1] so the dashboard stays live")
        if self.idle_timeout_s < self.active_timeout_s:
            raise ValueError("idle_timeout_s must be at least active_timeout_s")
        if self.sampling_rate < 1:
            raise ValueError("sampling_rate must be >= 1")
        if self.pause_min_ms <= 0 or self.pause_factor < 1:
            raise ValueError("pause_min_ms must be > 0 and pause_factor >= 1")


class FlowTable:
    """Per-flow state and the current row of every active flow; `update` and `flush` return exported rows as
    numpy columns named as pipeline.records FLOWS.

    DPI hook: `update(decoded, app=..., confidence=..., detail=...)` takes per-packet app codes (indexes into
    pipeline.labels.APPS), confidences and optional detail strings; each flow keeps the label (and detail) of
    the packet with the highest confidence seen so far, and every row carries it ('unknown' while none).
    """

    def __init__(self, topology: Topology | None = None, config: FlowTableConfig | None = None) -> None:
        self.config = config or FlowTableConfig()
        self._active_ns = round(self.config.active_timeout_s * 1e9)
        self._pause_ns = round(self.config.pause_min_ms * 1e6)
        self._idle_ns = round(self.config.idle_timeout_s * 1e9)
        links = topology.links if topology else ()
        self._link_names = np.array([link.id for link in links] + [""], dtype=object)
        self._leaf_names = np.array([link.leaf for link in links] + [""], dtype=object)
        self._spine_names = np.array([link.spine for link in links] + [""], dtype=object)
        self._directions = np.array(DIRECTIONS, dtype=object)
        self._app_names = np.array(APPS, dtype=object)
        self._initial: dict[str, object] = {name: 0 for name, _ in KEY_FIELDS}
        self._initial.update({name: initial for name, _, initial in _FLOW_STATE})
        self._initial.update(dict.fromkeys(COUNTERS, 0))
        self._dtypes = {name: dtype for name, dtype in KEY_FIELDS}
        self._dtypes.update({name: dtype for name, dtype, _ in _FLOW_STATE})
        self._dtypes.update(dict.fromkeys(COUNTERS, "uint64"))
        self.early_exports = 0  # rows exported before their time because the table was full
        # what the last `update` saw, for the second opinion (collectors.second_opinion) to reuse: the flow hash
        # of each well-formed packet in batch order, and the index among them of the first packet of each flow
        # the batch created
        self.batch_hashes = np.zeros(0, dtype=np.uint64)
        self.batch_new = np.zeros(0, dtype=np.int64)
        self._clear()
        self._now = np.iinfo(np.int64).min
        self._last_sweep = np.iinfo(np.int64).min

    def __len__(self) -> int:
        """Flows currently held."""
        return self._size

    @property
    def nbytes(self) -> int:
        """Memory held by the table's columns and index (allocated capacity, not just used slots)."""
        columns = sum(column.nbytes for column in self._columns.values())
        return columns + self._sorted_hash.nbytes + self._sorted_slot.nbytes

    # -- public API -----------------------------------------------------------------------------------
    def update(
        self, decoded: DecodedPackets, app: np.ndarray | None = None, confidence: np.ndarray | None = None,
        detail: np.ndarray | None = None, now_ns: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Add one decoded batch (malformed packets are ignored); return the rows this batch completed.
        `now_ns`: the newest packet of the whole batch when `decoded` is one worker's share of it
        (collectors.shard_exchange), so packet time moves as it would with every packet here."""
        if (app is None) != (confidence is None) or (detail is not None and app is None):
            raise ValueError("app and confidence (and detail) label the packets together: pass both or neither")
        rows = np.flatnonzero(decoded.ok)
        exported: list[dict[str, np.ndarray]] = []
        self.batch_hashes, self.batch_new = self.batch_hashes[:0], self.batch_new[:0]
        if len(rows):
            labels = None if app is None or confidence is None else _Labels(app, confidence, detail)
            self._aggregate(decoded, rows, labels, exported)
            self._now = max(self._now, int(decoded.ts_ns[rows].max()))
        if now_ns is not None:
            self._now = max(self._now, now_ns)
        if len(rows) or now_ns is not None:
            self._expire(exported)
        return self._rows(exported)

    def advance(self, now_ns: int) -> dict[str, np.ndarray]:
        """Move packet time to `now_ns` with no packets (a live source's quiet moment): export the rows whose
        interval or pause that ends, as a later packet would have."""
        exported: list[dict[str, np.ndarray]] = []
        if now_ns > self._now:
            self._now = now_ns
            self._expire(exported)
        return self._rows(exported)

    def set_detail(self, hashes: np.ndarray, details: np.ndarray) -> None:
        """Give the held flows of `hashes` (flow_hash of their keys) the detail of the same index while DPI has
        no label for them (a second opinion, collectors.second_opinion); their later rows carry it."""
        place = np.searchsorted(self._sorted_hash, hashes)
        found = np.flatnonzero(place < len(self._sorted_hash))
        found = found[self._sorted_hash[place[found]] == hashes[found]]
        slots = self._sorted_slot[place[found]]
        unknown = self._columns["confidence"][slots] == 0
        self._columns["detail"][slots[unknown]] = details[found[unknown]]

    def drain(self, count: int) -> dict[str, np.ndarray]:
        """Export the open rows of the `count` flows idle longest and forget them: the end of input in parts, so
        that no step downstream has to take the whole table's rows at once."""
        exported: list[dict[str, np.ndarray]] = []
        self._forget_idlest(min(count, self._size), np.zeros(0, dtype=np.int64), exported)
        return self._rows(exported)

    def flush(self) -> dict[str, np.ndarray]:
        """Export every open row and forget all flows (end of input)."""
        block = self._take_rows(np.flatnonzero(self._columns["row_interval"][: self._size] >= 0))
        self._clear()  # release the table before building the rows: the peak stays one table's worth
        return self._rows([block])

    def _clear(self) -> None:
        self._size = 0
        self._columns = {name: np.zeros(0, dtype=dtype) for name, dtype in self._dtypes.items()}
        self._sorted_hash = np.zeros(0, dtype=np.uint64)
        self._sorted_slot = np.zeros(0, dtype=np.int64)

    # -- one batch ------------------------------------------------------------------------------------
    def _aggregate(
        self, decoded: DecodedPackets, rows: np.ndarray, labels: _Labels | None, exported: list[dict[str, np.ndarray]]
    ) -> None:
        keys = packet_keys(decoded, rows)
        hashes = flow_hash(keys)
        ts = decoded.ts_ns[rows]
        interval = ts // self._active_ns
        order, flow_start = _group(keys, hashes, interval)
        self.batch_hashes = hashes
        hashes, ts, interval = hashes[order], ts[order], interval[order]
        rows = rows[order]
        flow_id = np.cumsum(flow_start) - 1
        flow_first = np.flatnonzero(flow_start)
        slots, new = self._slots(
            {name: column[order[flow_first]] for name, column in keys.items()}, hashes[flow_first], exported
        )
        self._columns["dscp"][slots[new]] = decoded.dscp[rows[flow_first[new]]]
        for name in OUTER_FIELDS:
            self._columns[name][slots[new]] = getattr(decoded, name)[rows[flow_first[new]]]
        self.batch_new = order[flow_first[new]]
        if labels is not None:
            self._label(slots, flow_id, flow_first, labels, rows)

        gaps = self._psn_gaps(decoded, rows, slots, flow_id)
        pause, burst = self._pauses(ts, flow_id, flow_first, slots)
        seg_start = flow_start | pause
        seg_start[1:] |= interval[1:] != interval[:-1]
        starts = np.flatnonzero(seg_start)
        scale = np.uint64(self.config.sampling_rate)
        counts, wire_bytes, psn_gaps, first, last, psn_first, psn_last = _segment_sums(decoded, rows, starts, ts, gaps)
        flags = counts * scale
        segments = {name: flags[:, i] for i, name in enumerate(FLAG_COUNTERS)}
        segments["packets"] = np.diff(np.append(starts, len(rows))).astype(np.uint64) * scale
        segments["bytes"] = wire_bytes * scale
        segments["psn_gaps"] = psn_gaps
        timed = decoded.switch_timed[rows]
        segments["switch_timed"] = np.zeros(len(starts), dtype=np.uint64)
        segments["mirror_delay_ns"] = np.zeros(len(starts), dtype=np.uint64)
        if timed.any():
            segments["switch_timed"] = np.add.reduceat(timed, starts, dtype=np.uint64)
            delay = np.where(timed, np.maximum(decoded.capture_ts_ns[rows] - decoded.ts_ns[rows], 0), 0)
            segments["mirror_delay_ns"] = np.add.reduceat(delay, starts).astype(np.uint64)  # switch ahead: 0
        segments["row_first"], segments["row_last"] = first, last
        segments["row_interval"] = interval[starts]
        stops = np.append(starts[1:], len(rows)) - 1
        segments["row_tail"] = self._tails(ts, flow_id, flow_first, slots, stops)
        segments["row_psn_first"], segments["row_psn_last"] = psn_first, psn_last
        segments["row_burst"] = burst[starts]
        seg_slot = slots[flow_id[starts]]
        last_of_flow = np.ones(len(starts), dtype=np.bool_)
        last_of_flow[:-1] = flow_start[starts[1:]]
        self._merge(seg_slot, segments, flow_start[starts] & ~pause[starts], last_of_flow, exported)

    def _slots(
        self, keys: dict[str, np.ndarray], hashes: np.ndarray, exported: list[dict[str, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Table slot of each distinct flow key, and which of them were created now (after making room)."""
        left = np.searchsorted(self._sorted_hash, hashes, side="left")
        right = np.searchsorted(self._sorted_hash, hashes, side="right")
        slots = np.full(len(hashes), -1, dtype=np.int64)
        single = np.flatnonzero(right - left == 1)
        candidate = self._sorted_slot[left[single]]
        equal = np.ones(len(single), dtype=np.bool_)
        for name, _ in KEY_FIELDS:
            equal &= self._columns[name][candidate] == keys[name][single]
        slots[single[equal]] = candidate[equal]
        for i in np.flatnonzero((right - left > 1) | ((right - left == 1) & (slots == -1))):
            for slot in self._sorted_slot[left[i] : right[i]]:
                if all(self._columns[name][slot] == keys[name][i] for name, _ in KEY_FIELDS):
                    slots[i] = slot
        new = slots == -1
        missing = np.flatnonzero(new)
        renumbered = self._make_room(len(missing), slots[~new], exported)
        if renumbered is not None:
            slots[~new] = renumbered[slots[~new]]
        if len(missing):
            slots[missing] = self._allocate(
                {name: column[missing] for name, column in keys.items()}, hashes[missing]
            )
        return slots, new

    def _allocate(self, keys: dict[str, np.ndarray], hashes: np.ndarray) -> np.ndarray:
        count = len(hashes)
        first = self._size
        self._reserve(first + count)
        new = np.arange(first, first + count)
        for name, column in self._columns.items():
            column[new] = keys[name] if name in keys else self._initial[name]
        self._columns["hash"][new] = hashes
        self._size += count
        at = np.searchsorted(self._sorted_hash, hashes)
        self._sorted_hash = np.insert(self._sorted_hash, at, hashes)
        self._sorted_slot = np.insert(self._sorted_slot, at, new)
        return new

    def _reserve(self, size: int) -> None:
        capacity = len(self._columns["hash"])
        if size <= capacity:
            return
        capacity = max(size, min(2 * capacity, self.config.max_flows), 1024)
        for name, column in self._columns.items():
            grown = np.zeros(capacity, dtype=column.dtype)
            grown[: self._size] = column[: self._size]
            self._columns[name] = grown

    def _label(
        self, slots: np.ndarray, flow_id: np.ndarray, flow_first: np.ndarray, labels: _Labels, rows: np.ndarray
    ) -> None:
        """Keep, per flow, the app label (and its detail) with the highest confidence seen so far (`labels` are the
        batch's, `rows` the packets in group order)."""
        confidence = labels.confidence[rows].astype(np.float32)
        best = np.maximum.reduceat(confidence, flow_first)
        at_best = np.flatnonzero(confidence == best[flow_id])
        flows, first = np.unique(flow_id[at_best], return_index=True)
        better = best[flows] > self._columns["confidence"][slots[flows]]
        target = slots[flows[better]]
        source = rows[at_best[first[better]]]
        self._columns["confidence"][target] = best[flows[better]]
        self._columns["app"][target] = labels.app[source]
        if labels.detail is not None:
            self._columns["detail"][target] = labels.detail[source]

    def _pauses(
        self, ts: np.ndarray, flow_id: np.ndarray, flow_first: np.ndarray, slots: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per packet (in group order): whether it ends a pause (the row cut rule of the module docstring), and
        whether it starts a burst (a pause, or the flow's first packet). Reads the flow's last three packet
        times from before the batch, so call it before `_tails` moves them on."""
        count = np.diff(np.append(flow_first, len(ts)))  # packets of each flow in the batch
        remembered = [self._columns[name][slots] for name in ("ts_last", "ts_previous", "ts_third")]

        def back(k: int) -> np.ndarray:
            """Time of the flow's packet k before each packet (0 if none): the batch's own, except for a flow's
            first k packets, which reach back into the remembered times."""
            value = np.empty_like(ts)
            value[k:] = ts[:-k]
            for j in range(k):
                has = count > j
                value[flow_first[has] + j] = remembered[k - j - 1][has]
            return value

        previous, second, third = back(1), back(2), back(3)
        gap = ts - previous
        spacing = np.where(third > 0, np.minimum(previous - second, second - third), previous - second)
        pause = (second > 0) & (gap > self._pause_ns) & (gap > self.config.pause_factor * np.maximum(spacing, 0))
        return pause, pause | (previous == 0)

    def _psn_gaps(
        self, decoded: DecodedPackets, rows: np.ndarray, slots: np.ndarray, flow_id: np.ndarray
    ) -> np.ndarray:
        """PSN numbers skipped between consecutive data packets of each flow (24-bit wrap; a step back, as in a
        go-back-N retransmission, counts 0). ACKs and CNPs are not a sequence and do not take part. Not scaled
        by sampling_rate: under sampling the gaps measure the sampling, not loss (collectors.flow_segments)."""
        gaps = np.empty(len(rows), dtype=np.uint64)
        flow_segments.psn_gaps(rows, flow_id, slots, decoded.is_roce, decoded.bth_opcode, decoded.psn,
                               protocols.OPCODE_FAMILY, self._columns["last_psn"], gaps)
        return gaps

    def _tails(
        self, ts: np.ndarray, flow_id: np.ndarray, flow_first: np.ndarray, slots: np.ndarray, stops: np.ndarray
    ) -> np.ndarray:
        """Per segment, the time of the flow's 3rd-to-last packet up to the segment's last packet (0 while the
        flow has had fewer than 3), then remember each flow's last three packet times for the next batch."""
        flow = flow_id[stops]
        seen = stops - flow_first[flow] + 1  # packets of the flow in this batch up to the segment's end
        slot = slots[flow]
        last, previous, third = self._columns["ts_last"], self._columns["ts_previous"], self._columns["ts_third"]
        tail = np.where(seen >= 3, ts[np.maximum(stops - 2, 0)], np.where(seen == 2, last[slot], previous[slot]))
        flow_last = np.append(flow_first[1:], len(ts)) - 1
        count = flow_last - flow_first + 1
        third[slots] = np.where(
            count >= 3, ts[np.maximum(flow_last - 2, 0)], np.where(count == 2, last[slots], previous[slots])
        )
        previous[slots] = np.where(count >= 2, ts[np.maximum(flow_last - 1, 0)], last[slots])
        last[slots] = ts[flow_last]
        self._columns["close_at"][slots] = self._close_at(last[slots], previous[slots], third[slots])
        return tail

    def _close_at(self, last: np.ndarray, previous: np.ndarray, third: np.ndarray) -> np.ndarray:
        """Packet time after which a flow whose last three packets came at these times has paused: a packet
        later than this would start a new row by the pause rule (`_pauses`), so its open row is complete."""
        spacing = np.where(third > 0, np.minimum(last - previous, previous - third), last - previous)
        spacing = np.where(previous > 0, np.maximum(spacing, 0), 0)
        wait = np.maximum(np.floor(self.config.pause_factor * spacing).astype(np.int64), self._pause_ns)
        return np.where(previous > 0, last + wait, np.iinfo(np.int64).max)

    def _merge(
        self, seg_slot: np.ndarray, segments: dict[str, np.ndarray], continues: np.ndarray, last_of_flow: np.ndarray,
        exported: list[dict[str, np.ndarray]],
    ) -> None:
        """Fold batch segments into the flows' open rows: a flow's first segment in the batch adds up to the open
        row when it is in the same interval and no pause came between (`continues`); the flow's last segment,
        otherwise, closes the open row and opens a new one unless it is in an earlier interval; every other
        segment (cut off by a pause or an interval on both sides, or late) is a row of its own."""
        columns = self._columns
        current = columns["row_interval"][seg_slot]
        merge = continues & (segments["row_interval"] == current)
        reopen = last_of_flow & ~merge & (segments["row_interval"] >= current)
        alone = ~merge & ~reopen
        target = seg_slot[merge]
        for name in COUNTERS:
            columns[name][target] += segments[name][merge]
        columns["row_first"][target] = np.minimum(columns["row_first"][target], segments["row_first"][merge])
        columns["row_last"][target] = np.maximum(columns["row_last"][target], segments["row_last"][merge])
        columns["row_tail"][target] = segments["row_tail"][merge]
        psn_first, psn_last = columns["row_psn_first"][target], segments["row_psn_last"][merge]
        columns["row_psn_first"][target] = np.where(psn_first >= 0, psn_first, segments["row_psn_first"][merge])
        columns["row_psn_last"][target] = np.where(psn_last >= 0, psn_last, columns["row_psn_last"][target])
        target = seg_slot[reopen]
        exported.append(self._take_rows(target[columns["row_interval"][target] >= 0]))
        for name in (*COUNTERS, *ROW_FIELDS, "row_interval"):
            columns[name][target] = segments[name][reopen]
        if alone.any():
            block = self._flow_values(seg_slot[alone])
            for name in (*COUNTERS, *ROW_FIELDS):
                block[name] = segments[name][alone]
            exported.append(block)

    # -- timeouts and export --------------------------------------------------------------------------
    def _expire(self, exported: list[dict[str, np.ndarray]]) -> None:
        """Export rows whose interval has ended or whose flow has paused by packet time; every IDLE_SWEEP_S drop
        flows idle for idle_timeout_s."""
        size = self._size
        interval = self._columns["row_interval"][:size]
        ended = (interval < self._now // self._active_ns) | (self._columns["close_at"][:size] < self._now)
        done = np.flatnonzero((interval >= 0) & ended)
        exported.append(self._take_rows(done))
        if self._now - self._last_sweep < IDLE_SWEEP_S * 1e9:
            return
        self._last_sweep = self._now
        keep = (self._columns["ts_last"][:size] > self._now - self._idle_ns) | (interval >= 0)
        if not keep.all():
            self._keep(keep)

    def _make_room(
        self, incoming: int, busy: np.ndarray, exported: list[dict[str, np.ndarray]]
    ) -> np.ndarray | None:
        """Before `incoming` new flows are added, export the open rows of the flows idle longest (not the `busy`
        slots, which the batch updates) and forget them, so that the table stays within max_flows. Returns the
        new slot of every old slot if flows were forgotten."""
        excess = min(self._size + incoming - self.config.max_flows, self._size - len(busy))
        if excess <= 0:
            return None
        before = sum(len(block["link"]) for block in exported)
        renumbered = self._forget_idlest(excess, busy, exported)
        self.early_exports += sum(len(block["link"]) for block in exported) - before
        return renumbered

    def _forget_idlest(
        self, excess: int, busy: np.ndarray, exported: list[dict[str, np.ndarray]]
    ) -> np.ndarray | None:
        """Export the open rows of the `excess` flows idle longest, not `busy`, and forget those flows."""
        if excess <= 0:
            return None
        idleness = self._columns["ts_last"][: self._size].copy()
        idleness[busy] = np.iinfo(np.int64).max
        idlest = np.argpartition(idleness, excess - 1)[:excess]
        open_rows = idlest[self._columns["row_interval"][idlest] >= 0]
        exported.append(self._take_rows(open_rows))
        keep = np.ones(self._size, dtype=np.bool_)
        keep[idlest] = False
        return self._keep(keep)

    def _keep(self, keep: np.ndarray) -> np.ndarray:
        """Keep only the flows `keep` marks: the columns are compacted and the sorted index follows (its order
        is unchanged, so no sort is needed). Returns the new slot of every old one (-1: forgotten)."""
        size = self._size
        kept = int(keep.sum())
        for column in self._columns.values():
            column[:kept] = column[:size][keep]
        self._size = kept
        renumbered = np.cumsum(keep) - 1
        still = keep[self._sorted_slot]
        self._sorted_hash = self._sorted_hash[still]
        self._sorted_slot = renumbered[self._sorted_slot[still]]
        return renumbered

    def _flow_values(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        names = [name for name, _ in KEY_FIELDS] + ["dscp", *OUTER_FIELDS, "app", "confidence", "detail"]
        return {name: self._columns[name][slots] for name in names}

    def _take_rows(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        """The open rows of `slots` as an export block; the rows are closed (counters reset)."""
        block = self._flow_values(slots)
        for name in (*COUNTERS, *ROW_FIELDS):
            block[name] = self._columns[name][slots].copy()
            self._columns[name][slots] = self._initial[name]
        self._columns["row_interval"][slots] = -1
        return block

    def _rows(self, blocks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Concatenate export blocks into FLOWS columns."""
        blocks = [block for block in blocks if len(block["link"])]
        names = [name for name, _ in KEY_FIELDS] + ["dscp", *OUTER_FIELDS, "app", "confidence", "detail", *COUNTERS,
                                                     *ROW_FIELDS]
        if len(blocks) == 1:
            merged = blocks[0]
        elif blocks:
            merged = {name: np.concatenate([block[name] for block in blocks]) for name in names}
        else:
            merged = {name: self._columns[name][:0] for name in names}
        return self._flows_columns(merged)

    def _flows_columns(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        count = len(rows["link"])
        link = rows["link"].astype(np.int64)
        link[link >= len(self._link_names) - 1] = -1  # not a link of this topology: '' like unattributed
        result: dict[str, np.ndarray] = {
            "ts_start": (rows["row_first"] // 1000).astype("datetime64[us]"),
            "ts_end": (rows["row_last"] // 1000).astype("datetime64[us]"),
            "exporter": repeated(self.config.exporter, count),
            "link": self._link_names[link],
            "direction": self._directions[rows["direction"].astype(np.int64)],
            "leaf": self._leaf_names[link],
            "spine": self._spine_names[link],
            "src_ip": _ip_values(rows["src_hi"], rows["src_lo"]),
            "dst_ip": _ip_values(rows["dst_hi"], rows["dst_lo"]),
            "app": self._app_names[np.where(rows["confidence"] > 0, rows["app"].astype(np.int64), UNKNOWN_APP)],
            "app_detail": rows["detail"].astype(object),
            "traffic_class": repeated("", count),
            "confidence": rows["confidence"].astype(np.float32),
            "job": repeated("", count),
            "sampling_rate": np.full(count, self.config.sampling_rate, dtype=np.uint32),
            "ts_tail": (rows["row_tail"] // 1000).astype("datetime64[us]"),
            "psn_first": np.maximum(rows["row_psn_first"], 0).astype(np.uint32),
            "psn_last": np.maximum(rows["row_psn_last"], 0).astype(np.uint32),
            "outer_src_ip": _ip_values(rows["outer_src_hi"], rows["outer_src_lo"]),
            "outer_dst_ip": _ip_values(rows["outer_dst_hi"], rows["outer_dst_lo"]),
            "time_source": _TIME_SOURCES[(rows["switch_timed"] > 0).astype(np.int64)],
            "mirror_delay_us": rows["mirror_delay_ns"] / np.maximum(rows["switch_timed"], 1) / 1000,
        }
        for name in ("src_port", "dst_port", "proto", "vlan", "vni", "dscp", "roce_qp", *COUNTERS):
            result[name] = rows[name]
        flows = {name: result[name] for name in column_names("flows")}
        flows[BURST_START] = rows["row_burst"].astype(np.bool_)
        return flows


@dataclass(frozen=True, slots=True)
class _Labels:
    """DPI labels per packet of a batch (collectors.dpi.PacketLabels' columns)."""

    app: np.ndarray
    confidence: np.ndarray
    detail: np.ndarray | None


def _ip_values(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """16-byte network-order addresses as V16 values (the Arrow binary(16) / ClickHouse IPv6 layout): 16 bytes a
    row, where a Python bytes object each cost ~4 times that in every process the rows pass through."""
    return np.ascontiguousarray(to_bytes16(hi, lo)).view("V16").ravel()


def _group(
    keys: dict[str, np.ndarray], hashes: np.ndarray, interval: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sort order grouping packets by flow, then interval, then arrival; and where each flow starts in that
    order. Sorting is by hash; if two different keys share the hash bits sorted on, the batch is sorted by the
    keys themselves instead, so grouping is always exact."""
    columns = tuple(keys[name] for name, _ in KEY_FIELDS)
    order, prefix = _hash_order(hashes, interval)
    same_key = key_runs.same_as_previous(columns, order)
    if (~same_key & (prefix[1:] == prefix[:-1])).any():
        order = np.lexsort((interval, *reversed(columns)))
        same_key = key_runs.same_as_previous(columns, order)
    return order, np.concatenate(([True], ~same_key))


def _hash_order(hashes: np.ndarray, interval: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order by (hash, interval, arrival) with one unstable sort of packed 64-bit words: the top bits of the
    hash, then the interval within the batch, then the row index (which makes every word unique, so the
    sort keeps arrival order). Returns the order and the sorted hash prefixes."""
    span = interval - interval.min()
    index_bits = max(1, (len(hashes) - 1).bit_length())
    interval_bits = int(span.max()).bit_length()
    shift = np.uint64(index_bits + interval_bits)
    if index_bits + interval_bits > 40:  # too few hash bits left to sort on: sort on the full hash
        order = np.lexsort((interval, hashes))
        return order, hashes[order]
    packed = (hashes >> shift) << shift
    packed |= (span.astype(np.uint64) << np.uint64(index_bits)) | np.arange(len(hashes), dtype=np.uint64)
    packed = radix.sorted_words(packed)
    return (packed & np.uint64((1 << index_bits) - 1)).astype(np.int64), packed >> shift


def _segment_sums(decoded: DecodedPackets, rows: np.ndarray, starts: np.ndarray, ts: np.ndarray,
                  gaps: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per segment: flag counts (FLAG_COUNTERS columns), wire bytes, PSN gaps, first and last packet time, and
    the PSN of the first and last RoCE packet other than a CNP (-1 if none); collectors.flow_segments."""
    count = len(starts)
    counts = np.empty((count, len(FLAG_COUNTERS)), dtype=np.uint64)
    wire_bytes, psn_gaps = np.empty(count, dtype=np.uint64), np.empty(count, dtype=np.uint64)
    first, last, psn_first, psn_last = (np.empty(count, dtype=np.int64) for _ in range(4))
    flow_segments.segment_sums(rows, starts, ts, gaps, decoded.ecn, decoded.is_roce, decoded.bth_opcode,
                               decoded.aeth_syndrome, decoded.psn, decoded.wire_len, protocols.OPCODE_FAMILY,
                               counts, wire_bytes, psn_gaps, first, last, psn_first, psn_last)
    return counts, wire_bytes, psn_gaps, first, last, psn_first, psn_last
