"""Fast recovery (DESIGN.md section 6): when a leaf-spine link fails, how long the data plane took to
move its flows elsewhere, how many flows made it and how many RoCE packets (PSNs) were skipped.

Link L = (leaf A, spine S) fails at `ts` = its last packet (of any kind, control traffic too) before
it fell silent while its flows (those it carried within `timeout_ms` before) continued elsewhere, or
its oper-down time from counters, whichever is first. Affected flows had >=3
packets on L in the `window_ms` before `ts` (the flow table's `ts_tail` column: time of the flow's
3rd-to-last packet on the link). An `up` flow recovers at its first packet on another uplink of A, a
`down` flow at its first packet on another downlink into A; both times come from row `ts_start`,
so precision is the packet timestamps', not the export interval's. Packets lost are the PSNs skipped
by RoCE data flows (rows with WRITE, READ or SEND packets); an ACK carries the PSN it acknowledges,
so an ACK flow skips PSNs by coalescing, not by loss, and is left out.

"Falls silent" is decided on rows, robustly to how the flow table cuts them: L's rows cover time up
to T and then nothing starts on L for at least `silence_ms` (at the end of its rows, or a hole
between them when the link came back), rows up to T + `silence_ms` have all arrived (the watermark:
latest row end seen minus `lateness_ms`), and at least one of its flows has a row on another link of
A starting in the hole (a failure between all-reduce bursts affects no flow, and is still reported).
A hole no flow moved out of is an idle pause, not a failure. Nor is a link whose flows all moved
only because another link through the same spine failed (the far side of that failure), or went
back to the link they had left when it failed (it was repaired).

No event without evidence (DESIGN.md section 6): a silence is a failure only if a flow it carried was
cut and reappeared on another link of the leaf (a RoCE data flow that skipped PSNs across the move, or
one that stayed away for longer than `gap_factor` times its own packet spacing), or, between bursts,
if flows moved while the link's own sessions (BFD, LLDP, BGP) fell silent. A flow that moved promptly
without loss is an ECMP rehash, no evidence. Convergence is measured on the interrupted flows: those
that skipped PSNs or were back elsewhere within `window_ms`; a flow whose burst had ended and that came
back on its next burst with nothing lost resumed after idle and is listed apart in the details.
Oper-down from counters is evidence on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import pandas as pd

from pipeline.detect.events import Batch, Event, make_event, ms_to_us, times_us
from pipeline.detect.flowkey import FLOW_KEY, KEY_COLUMNS, describe, far_addresses, flow_hashes, flow_keys
from pipeline.topology import Topology

PSN_MODULO = 1 << 24
DIRECTIONS = ("up", "down")
_DIRECTION_NAMES = np.array([*DIRECTIONS, "other"])
_OTHER = len(DIRECTIONS)  # direction code of rows neither up nor down (sessions of the link itself, merged coverage)
_COLUMNS = ("link", "leaf", "direction", "key", "flow", "ts_start", "ts_end", "ts_tail", "pause", "psn_first",
            "psn_last", "data", "dense")
_DETAIL_FLOWS = 100
_NEVER = np.iinfo(np.int64).max  # no such time yet
_KEY = np.dtype(f"V{FLOW_KEY.itemsize}")


@dataclass(frozen=True, kw_only=True)
class FastRecoveryConfig:
    """Fast-recovery windows (defaults in pipeline/detect/README.md)."""

    window_ms: float = 10.0
    silence_ms: float = 5.0
    timeout_ms: float = 2000.0
    lateness_ms: float = 50.0
    back_wait_ms: float = 100.0
    gap_factor: float = 2.0
    mirror_skew_ms: float = 1.0


@dataclass
class _Failure:
    """A declared failure and the flows the link carried before it (`affected`: those with >=3 packets in
    the window), waiting for the affected ones to recover or for the timeout."""

    link: str
    leaf: str
    spine: str
    ts: int
    trigger: str
    until: int | None
    keys: np.ndarray
    flows: np.ndarray  # flow_hashes of `keys`: what the flows are matched by
    directions: np.ndarray
    psn_last: np.ndarray
    data: np.ndarray
    affected: np.ndarray
    last_seen: np.ndarray  # each flow's last packet on the link up to the failure
    spacing: np.ndarray  # its packet spacing there (from its last three packets)
    pause: np.ndarray  # the pause before its last pair of packets there, 0 when not a pair (see `_pause`)
    moved_before: np.ndarray = field(init=False)  # on another link of the leaf before the failure (`_left_before`)
    recovered_at: np.ndarray = field(init=False)
    new_link: np.ndarray = field(init=False)
    psn_first: np.ndarray = field(init=False)
    updated: int = field(init=False, default=0)  # data time of the incident's latest row, 0 before the first
    far_leaves: np.ndarray | None = field(init=False, default=None)  # see FastRecoveryDetector._far_leaves
    # each flow's last packet on the link at its far leaf through the same spine before it moved (see
    # FastRecoveryDetector._far_last), -1 when it has none there
    far_last: np.ndarray = field(init=False)
    incident_ts: int | None = field(init=False, default=None)  # `ts` when first written: the incident's identity

    def __post_init__(self) -> None:
        self.recovered_at = np.full(len(self.keys), -1, dtype=np.int64)
        self.new_link = np.full(len(self.keys), "", dtype=object)
        self.psn_first = np.zeros(len(self.keys), dtype=np.int64)
        self.far_last = np.full(len(self.keys), -1, dtype=np.int64)


class FastRecoveryDetector:
    """`fast_recovery` events from `flows` rows, with oper-down from `counters` rows when present.

    Ordering assumed: once a row ending at `e` is seen, every row of a dense flow (one that can show a
    silence or be affected) that ended before `e - lateness_ms` is in. The collector gives this: its flow
    table exports a row once packet time passes the flow's last packet by pause_factor x the flow's packet
    spacing (8 x 5 ms = 40 ms at most for a flow with 3 packets in `window_ms`), and rows leave the collector
    in that order. A row still open (its flow still sending) is not in, so a hole is judged a failure only
    once the watermark has also passed the first packet of a flow that moved out of it: flows move only
    after the failure, so by then every row the failed link carried up to its failure is in. Emits each
    failure once all its affected flows recovered and the link came back or `back_wait_ms` passed (so a
    brief outage is reported with its end), or once the link came back, or once the watermark passes
    `ts + timeout_ms`, or at `flush`.
    """

    def __init__(self, config: FastRecoveryConfig | None = None, topology: Topology | None = None) -> None:
        self.config = config or FastRecoveryConfig()
        self.topology = topology  # the leaves' host prefixes: where each flow's far end is (`_far_leaves`)
        self._rows: dict[str, np.ndarray] | None = None  # compact: link, leaf and direction as codes
        self._judged: dict[str, int] = {}
        self._down_since: dict[str, int] = {}  # link -> start of the outage the counters show now
        self._downs: dict[str, list[int]] = {}  # link -> outage starts not judged yet
        # (leaf, spine) -> the counters' outage starts of its links within the timeout, judged or not
        self._reported_downs: dict[tuple[str, str], list[int]] = {}
        self._pending: list[_Failure] = []
        self._recent: list[_Failure] = []
        self._left: dict[str, set[int]] = {}  # link -> flow_hashes of the flows it carried when it failed
        # failed link -> (far leaf, its spine) -> flow_hashes of its flows whose far end is behind that leaf: they
        # left that leaf's link through the spine too, and go back to it when the failed link is repaired
        self._left_far: dict[str, dict[tuple[str, str], set[int]]] = {}
        self._undecided: dict[str, tuple[str, int]] = {}  # link -> (spine, start) of a hole still being judged
        self._link_codes: dict[str, int] = {}
        self._links: list[tuple[str, str, str]] = []  # by link code: (link, leaf, spine)
        self._leaf_codes: dict[str, int] = {}
        self._open_from: dict[int, int] = {}  # link code -> no failure of the link yet to be found is earlier
        self._latest = np.iinfo(np.int64).min

    def restored_from_format(self, version: int, topology: Topology | None) -> None:
        """Bring the state an older checkpoint held up to this one. Format 3 had no topology, and the counters'
        earlier reports are not known (a far side is then told only by the failures judged from rows); before
        format 5 the far sides' flows of earlier failures are not known (a flow going back to its link when
        such a failure is repaired is then taken for a move of its own); before format 6 the rows kept no
        pause before a pair (`_pause`), and the rows restored are taken for no pairs, and the failures restored
        for none moved before them."""
        if version < 4:
            self.topology = topology
            self._reported_downs = {}
        if version < 5:
            self._left_far = {}
        if self._rows is not None:
            self._rows["pause"] = np.zeros_like(self._rows["ts_tail"])
        for failure in (*self._pending, *self._recent):
            failure.pause = np.zeros(len(failure.flows), dtype=np.int64)
            failure.moved_before = np.zeros(len(failure.flows), dtype=bool)

    def observe_counters(self, counters: Batch) -> None:
        """Note when each link was reported operationally down (each outage once, however briefly: the up
        report may arrive before the flow rows reach the down time)."""
        ts = times_us(counters["ts"])
        for row in np.argsort(ts, kind="stable"):
            link = str(counters["link"][row])
            if not link:
                continue
            if counters["oper_up"][row]:
                self._down_since.pop(link, None)
            elif link not in self._down_since:
                self._down_since[link] = int(ts[row])
                self._downs.setdefault(link, []).append(int(ts[row]))
                self._note_reported_down(link, int(ts[row]))

    def _note_reported_down(self, link: str, ts: int) -> None:
        """Keep the outage by the leaf and spine the link joins (`_reported_down` asks by them); only with the
        topology, which names them."""
        if self.topology is None:
            return
        try:
            joins = self.topology.link(link)
        except KeyError:  # a port the counters map to no link of this topology
            return
        self._reported_downs.setdefault((joins.leaf, joins.spine), []).append(ts)

    def update(self, flows: Batch) -> list[Event]:
        links = self._link_codes_of(flows)
        keep = links >= 0
        if keep.any():
            wanted = (*KEY_COLUMNS, "direction", "ts_start", "ts_end", "ts_tail", "psn_first", "psn_last", "packets",
                      "roce_write", "roce_read", "roce_send")
            chunk = self._chunk({name: flows[name] if keep.all() else flows[name][keep] for name in wanted},
                                links[keep])
            self._rows = chunk if self._rows is None else {c: np.concatenate([self._rows[c], chunk[c]])
                                                           for c in _COLUMNS}
            self._latest = max(self._latest, int(chunk["ts_end"].max()))
        watermark = self._latest - ms_to_us(self.config.lateness_ms)
        self._declare(watermark, final=False)
        events = self._emit(watermark, final=False)
        self._prune(watermark)
        return events

    def _link_codes_of(self, flows: Batch) -> np.ndarray:
        """Each row's link code, -1 for rows of no link; a new link is noted with its leaf and spine."""
        rows, names = pd.factorize(flows["link"])
        first = np.zeros(len(names), dtype=np.int64)
        first[rows[::-1]] = np.arange(len(rows))[::-1]  # each link's first row
        codes = np.array([self._link_code(str(name), str(flows["leaf"][row]), str(flows["spine"][row])) if name
                          else -1 for name, row in zip(names, first.tolist(), strict=True)], dtype=np.int32)
        return codes[rows]

    def _chunk(self, flows: Batch, link: np.ndarray) -> dict[str, np.ndarray]:
        """The rows as the detector keeps them: link, leaf and direction as small integer codes (a flood of
        rows must not cost a Unicode string per row and column), the flows that have not had 3 packets yet
        merged into the time they cover (`_small_spans`). A flow the detector knows from another link keeps
        its key even so: its first row on a link it moves to is where it recovered (a storage flow's
        exchange of 2 packets; merged, its recovery would be read one exchange late)."""
        ts_start, ts_end, ts_tail = times_us(flows["ts_start"]), times_us(flows["ts_end"]), times_us(flows["ts_tail"])
        dense = self._dense(flows["packets"], ts_end - ts_start, np.where(ts_tail > 0, ts_end - ts_tail, 0))
        small = (ts_tail == 0) & dense
        hashes = flow_hashes(flows)
        if small.any():
            seen = [hashes[~small]] + ([self._rows["flow"]] if self._rows is not None else [])
            small &= ~np.isin(hashes, np.concatenate(seen))
        big = {name: column[~small] for name, column in flows.items()}
        rows, names = pd.factorize(big["direction"])
        code_of = np.array([DIRECTIONS.index(name) if name in DIRECTIONS else _OTHER for name in map(str, names)],
                           dtype=np.int8)
        chunk = {
            "link": link[~small], "direction": code_of[rows] if len(names) else np.zeros(0, dtype=np.int8),
            "key": flow_keys(big), "flow": hashes[~small], "ts_start": ts_start[~small], "ts_end": ts_end[~small],
            "ts_tail": ts_tail[~small], "pause": _pause(big["packets"], ts_start[~small], ts_tail[~small]),
            "psn_first": big["psn_first"].astype(np.int32),
            "psn_last": big["psn_last"].astype(np.int32),
            "data": (big["roce_write"] + big["roce_read"] + big["roce_send"]) > 0, "dense": dense[~small],
        }
        spans = self._small_spans(link[small], ts_start[small], ts_end[small])
        leaf_of = np.array([self._leaf_codes[leaf] for _, leaf, _ in self._links], dtype=np.int32)
        chunk = {c: np.concatenate([chunk[c], spans[c]]) for c in spans}
        chunk["leaf"] = leaf_of[chunk["link"]]
        return chunk

    def _link_code(self, link: str, leaf: str, spine: str) -> int:
        code = self._link_codes.get(link)
        if code is None:
            code = self._link_codes[link] = len(self._links)
            self._links.append((link, leaf, spine))
            self._leaf_codes.setdefault(leaf, len(self._leaf_codes))
        return code

    def _links_through(self, spine: str) -> dict[str, int]:
        """Leaf -> the code of its link to `spine`, for the links rows have come from."""
        return {leaf: code for code, (_, leaf, to) in enumerate(self._links) if to == spine}

    def _small_spans(self, link: np.ndarray, start: np.ndarray, end: np.ndarray) -> dict[str, np.ndarray]:
        """Rows of flows that have not had 3 packets yet (`ts_tail` 0) and are dense, kept only as the time they
        cover on their link. Such a flow can neither be affected nor show its own packet spacing, so nothing
        asks for it by key; its rows only tell when the link was busy. Each link's run of them whose gaps are
        within `silence_ms` becomes one row spanning it (no hole fits inside, so the link's holes are the
        same), with no flow key and no direction: a flood of distinct small flows costs a few rows per link
        and batch, not one per flow."""
        silence = ms_to_us(self.config.silence_ms)
        order = np.lexsort((start, link))
        link, start, end = link[order], start[order], end[order]
        bounds = np.append(np.flatnonzero(link != np.r_[-1, link[:-1]]), len(link)).tolist()
        runs = [np.zeros(0, dtype=np.int64)]
        for first, stop in pairwise(bounds):
            covered = np.maximum.accumulate(end[first:stop])
            runs.append(first + np.flatnonzero(np.r_[True, start[first + 1 : stop] > covered[:-1] + silence]))
        heads = np.concatenate(runs)
        count = len(heads)
        return {
            "link": link[heads], "direction": np.full(count, _OTHER, dtype=np.int8), "key": np.zeros(count, dtype=_KEY),
            "flow": np.zeros(count, dtype=np.uint64), "ts_start": start[heads],
            "ts_end": np.maximum.reduceat(end, heads) if count else end[:0], "ts_tail": np.zeros(count, dtype=np.int64),
            "pause": np.zeros(count, dtype=np.int64), "psn_first": np.full(count, -1, dtype=np.int32),
            "psn_last": np.full(count, -1, dtype=np.int32),
            "data": np.zeros(count, dtype=bool), "dense": np.ones(count, dtype=bool),
        }

    def _dense(self, packets: np.ndarray, span: np.ndarray, tail_span: np.ndarray) -> np.ndarray:
        """Rows whose packets are close enough to show a silence: a mean spacing within `silence_ms`, over the
        row's packets, or for a row of one packet over the flow's last three (`tail_span`, from its 3rd-to-last
        packet to its last; 0 when it has had fewer: the one packet is dense). A sparse flow's row (BFD,
        keepalives) may span an outage and its repair, so it must not hide the hole the dense flows leave; nor
        may a keepalive's row of one packet, exported long after it (at the session's idle timeout), be taken
        for the link back when it was the link's last packet before the failure."""
        packets = packets.astype(np.int64)
        silence = ms_to_us(self.config.silence_ms)
        return np.where(packets <= 1, tail_span <= 2 * silence, span <= silence * (packets - 1))

    def flush(self) -> list[Event]:
        """End of input: every row has arrived; declare what the data shows and emit every pending failure."""
        self._declare(np.iinfo(np.int64).max, final=True)
        events = self._emit(np.iinfo(np.int64).max, final=True)
        self._rows = None
        self._recent = []
        return events

    # -- failure detection ---------------------------------------------------------------------------
    def _declare(self, watermark: int, *, final: bool) -> None:
        """Judge, oldest first, every silent hole of every link not judged yet."""
        rows = self._rows
        if rows is None:
            return
        found: list[_Failure] = []
        # Rebuilt from the holes still being judged: a link whose rows filled its hole (it resumed) no longer
        # holds back the failures of other links through its spine (`_may_explain`), however its rows came.
        self._undecided = {}
        moves = _moves(rows)
        order = np.lexsort((rows["ts_start"], rows["link"]))
        first = np.flatnonzero(np.r_[True, rows["link"][order][1:] != rows["link"][order][:-1]])
        for part in np.split(order, first[1:]):
            code = int(rows["link"][part[0]])
            out = {name: column[moves["link"] == code] for name, column in moves.items()}
            found += self._judge_link(rows, code, part, out, watermark, final=final)
        for failure in sorted(found, key=lambda f: f.ts):
            if failure.trigger == "silence" and (self._knock_on(failure) or self._returning(failure)):
                continue
            self._pending.append(failure)
            self._recent.append(failure)
            self._left[failure.link] = set(failure.flows.tolist())
            self._left_far[failure.link] = self._far_links_left(failure)

    def _judge_link(self, rows: dict[str, np.ndarray], code: int, part: np.ndarray, out: dict[str, np.ndarray],
                    watermark: int, *, final: bool) -> list[_Failure]:
        """Failures among the holes of one link's rows (`part`: its row indexes by start time; `out`: the
        moves of flows off the link, see `_moves`)."""
        link = self._links[code][0]
        silence, timeout = ms_to_us(self.config.silence_ms), ms_to_us(self.config.timeout_ms)
        dense = part[rows["dense"][part]]
        shown = dense if len(dense) else part
        covered = np.maximum.accumulate(rows["ts_end"][shown])
        starts = rows["ts_start"][shown]
        hole = np.flatnonzero(starts[1:] > covered[:-1] + silence)
        judged = self._judged.get(link, np.iinfo(np.int64).min)
        # Before `since` rows were pruned to each flow's latest (`_latest_of_settled`): holes there are gaps
        # between the rows kept, not silences of the link, and were ruled out while every row was there.
        since = self._open_from.get(code, np.iinfo(np.int64).min)
        if not self._downs.get(link):  # an oper-down may fall in a hole judged already; nothing else does
            hole = hole[(covered[hole] > judged) & (covered[hole] >= since)]
        holes: list[tuple[int, int | None]] = [(int(covered[i]), int(starts[i + 1])) for i in hole]
        holes.append((int(covered[-1]), None))
        unshown = part[~rows["dense"][part]] if len(dense) else part[:0]
        failures: list[_Failure] = []
        ends = rows["ts_end"][part]
        for down in [down for down in self._downs.get(link, []) if watermark >= down]:
            self._downs[link].remove(down)
            at, until = next(((t, r) for t, r in holes if r is None or down < r))
            sparse = ends[(ends > at) & (ends <= down)]  # packets after the dense ones, before the report
            last = min(max(at, int(sparse.max()) if len(sparse) else at), down)
            declared = next((f for f in (*self._pending, *self._recent)
                             if f.link == link and at <= f.ts and (until is None or f.ts < until)), None)
            if declared is not None:  # the report confirms a failure of this hole
                if last > declared.ts:
                    failures.append(self._retimed(declared, rows, part, code, last, until))
                judged = self._judged[link] = max(judged, at, down)
            elif last > judged:
                failure = self._failure(rows, part, code, last, "oper_down", until, empty_ok=True)
                assert failure is not None  # empty_ok: oper-down needs no flow
                failures.append(failure)
                judged = self._judged[link] = max(at, down)
        for at, until in holes:
            if at <= judged or at < since:
                continue
            last = self._last_packet(rows, unshown, at, until, _moved_by(out, at))
            if not final and watermark < last + silence:
                break
            moved = _moved_out(out, last, until, timeout)
            if moved and not self._session_fell_silent(rows, part, last, watermark if until is None else until):
                # a flow that may show the cut (`_cut`): affected, or slower but spaced within window_ms and
                # still sending (its last packet within gap_factor spacings, its 3rd-to-last two before that)
                showing = ms_to_us((self.config.gap_factor + 2) * self.config.window_ms)
                moved = _moved_out(out, last, until, timeout, since=last - showing)
            failure = self._failure(rows, part, code, last, "silence", until) if moved else None
            evident = failure is not None and self._evidence(rows, part, failure, watermark)
            if evident and failure is not None and not final and watermark < self._first_move(failure):
                break
            settled = final or (until is not None and watermark >= until) or watermark >= at + timeout
            if not evident and not settled:
                self._undecided[link] = (self._links[code][2], last)
                break
            judged = self._judged[link] = at
            if evident and failure is not None:
                failures.append(failure)
        self._open_from[code] = next((at for at, _ in holes if at > judged and at >= since), int(covered[-1]))
        return failures

    def _retimed(self, declared: _Failure, rows: dict[str, np.ndarray], part: np.ndarray, code: int, ts: int,
                 until: int | None) -> _Failure:
        """The failure `declared` from a silence, at the later last packet before the counters' report (a sparse
        row that arrived after the silence was judged; a live exporter sends one long after): the same
        incident, written again with the flows the link carried up to then."""
        failure = self._failure(rows, part, code, ts, "oper_down", until, empty_ok=True)
        assert failure is not None  # empty_ok
        failure.incident_ts, failure.updated = declared.incident_ts, declared.updated
        self._pending = [f for f in self._pending if f is not declared]
        self._forget(declared)
        return failure

    def _last_packet(self, rows: dict[str, np.ndarray], unshown: np.ndarray, at: int, until: int | None,
                     moved_by: int | None) -> int:
        """The link's last packet before a hole in its dense rows: `at`, or a later packet of a sparse flow:
        one (BFD after the burst) that then fell silent for longer than its own spacing allows, or the first
        packet of a sparse row begun in the hole before any flow that left the link showed up elsewhere
        (`moved_by`: the link had failed by then; none when no flow left). A sparse row ending just before the
        link came back spans the outage and its repair, and says nothing of its end. Only rows the holes were
        not drawn from (`unshown`: the sparse ones, when the link has dense rows) can end or begin inside one."""
        if not len(unshown):
            return at
        ends, tails, starts = rows["ts_end"][unshown], rows["ts_tail"][unshown], rows["ts_start"][unshown]
        inside = ends > at
        begun = starts[:0]
        if moved_by is not None:
            inside &= ends < moved_by
            begun = starts[(starts > at) & (starts < moved_by)]
        if until is not None:
            spacing = np.where((tails > 0) & (tails < ends), (ends - tails) // 2, until - at)
            inside &= until - ends > self.config.gap_factor * spacing
        return int(max(ends[inside].max(initial=at), begun.max(initial=at)))

    def _failure(self, rows: dict[str, np.ndarray], part: np.ndarray, code: int, ts: int, trigger: str,
                 until: int | None, *, empty_ok: bool = False) -> _Failure | None:
        """The flows `link` (rows `part`) carried up to `ts` (last row per flow starting by then, ending
        within the timeout) and where they went; affected are those whose 3rd-to-last packet is within
        the window. None if the link carried no up or down flow, unless `empty_ok` (oper-down needs no flow
        to be a failure)."""
        recent = ts - ms_to_us(self.config.timeout_ms)
        on_link = part[(rows["ts_start"][part] <= ts) & (rows["ts_end"][part] >= recent)]
        on_link = on_link[rows["direction"][on_link] != _OTHER]
        if not len(on_link) and not empty_ok:
            return None
        order = on_link[np.lexsort((rows["ts_end"][on_link], rows["flow"][on_link]))]
        carried = order[np.r_[rows["flow"][order][1:] != rows["flow"][order][:-1], True]] if len(order) else order
        carried = carried[np.argsort(rows["key"][carried], kind="stable")]  # details list flows in key order
        link, leaf, spine = self._links[code]
        failure = _Failure(
            link=link, leaf=leaf, spine=spine, ts=ts, trigger=trigger, until=until, keys=rows["key"][carried],
            flows=rows["flow"][carried], directions=_DIRECTION_NAMES[rows["direction"][carried]],
            psn_last=rows["psn_last"][carried], data=rows["data"][carried],
            affected=_witnessed(rows["ts_tail"][carried], rows["ts_end"][carried], ts, until,
                                ms_to_us(self.config.window_ms)),
            last_seen=rows["ts_end"][carried],
            spacing=np.maximum((rows["ts_end"][carried] - rows["ts_tail"][carried]) // 2, 1),
            pause=rows["pause"][carried],
        )
        failure.moved_before = self._left_before(failure)
        failure.affected &= ~failure.moved_before
        self._recover(failure)
        return failure

    def _left_before(self, failure: _Failure) -> np.ndarray:
        """Per flow: already on another link of the leaf (same direction) between its last packet on the
        failed one and the failure. It moved while the link was up (an ECMP rehash: another link came back)
        and was not cut; a flow the failure cut shows up elsewhere only after it."""
        left = np.zeros(len(failure.flows), dtype=bool)
        if self._rows is None:
            return left
        flow, row = self._elsewhere(failure, self._rows["ts_start"] <= failure.ts)
        left[flow[self._rows["ts_start"][row] > failure.last_seen[flow]]] = True
        return left

    def _recover(self, failure: _Failure) -> None:
        """Each affected flow's first row after the failure on another link of the leaf, same direction."""
        rows = self._rows
        if rows is None:
            return
        until = np.iinfo(np.int64).max if failure.until is None else failure.until
        flow, row = self._elsewhere(failure, (rows["ts_start"] > failure.ts) & (rows["ts_start"] < until))
        order = np.lexsort((rows["ts_start"][row], flow))
        flow, row = flow[order], row[order]
        _, first = np.unique(flow, return_index=True)  # each flow's earliest row
        flow, row = flow[first], row[first]
        failure.recovered_at[flow] = rows["ts_start"][row]
        failure.new_link[flow] = [self._links[code][0] for code in rows["link"][row].tolist()]
        failure.psn_first[flow] = rows["psn_first"][row]
        self._far_last(failure)

    def _far_last(self, failure: _Failure) -> None:
        """Each flow's last packet, before it moved, on the link between its far leaf and the failure's spine:
        the same packets seen one hop upstream (a flow into the leaf) or downstream (a flow leaving it). A flow
        into the leaf still seen upstream after its last packet on the link was sending into the failure (its
        packets were dropped on the way, `_in_transit`); a flow leaving it last seen downstream before its last
        packet here was dropped beyond this link (`_dropped_beyond`). Only with the topology (far leaves)."""
        rows = self._rows
        far = self._far_leaves(failure)
        if rows is None or not far.any():
            return
        through = self._links_through(failure.spine)
        wanted = np.array([through.get(str(leaf), -1) for leaf in far.tolist()], dtype=np.int64)
        order = np.argsort(failure.flows, kind="stable")
        candidates = np.flatnonzero(np.isin(rows["link"], wanted[wanted >= 0]) & np.isin(rows["flow"], failure.flows))
        at = order[np.minimum(np.searchsorted(failure.flows[order], rows["flow"][candidates]), len(order) - 1)]
        moved = np.where(failure.recovered_at >= 0, failure.recovered_at,
                         np.iinfo(np.int64).max if failure.until is None else failure.until)
        mine = (wanted[at] == rows["link"][candidates]) & (rows["ts_start"][candidates] < moved[at])
        failure.far_last.fill(-1)
        np.maximum.at(failure.far_last, at[mine], rows["ts_end"][candidates[mine]])

    def _elsewhere(self, failure: _Failure, among: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows (of `among`, a mask over the rows) of the failure's flows on another link of its leaf, in
        the direction each had on the failed link: each flow's index in the failure and the row's index."""
        rows = self._rows
        assert rows is not None
        candidates = np.flatnonzero(among & (rows["leaf"] == self._leaf_codes[failure.leaf])
                                    & (rows["link"] != self._link_codes[failure.link]))
        flows, found = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
        for code, direction in enumerate(DIRECTIONS):
            wanted = np.flatnonzero(failure.directions == direction)
            here = candidates[rows["direction"][candidates] == code]
            if not len(wanted) or not len(here):
                continue
            order = wanted[np.argsort(failure.flows[wanted])]
            at = np.minimum(np.searchsorted(failure.flows[order], rows["flow"][here]), len(order) - 1)
            same = failure.flows[order][at] == rows["flow"][here]
            flows.append(order[at[same]])
            found.append(here[same])
        return np.concatenate(flows), np.concatenate(found)

    def _back_at(self, failure: _Failure) -> int | None:
        """When the failed link carried traffic again: the first start after the failure among its rows (its
        dense rows if it has any, as the silence rule reads them), or after the counters' report of it down,
        among all its rows (a keepalive's row of one packet is not dense, but once the link was reported
        down any packet on it is its return; one before the report was among its last), None while there is
        none."""
        rows = self._rows
        if rows is None:
            return None
        on_link = np.flatnonzero(rows["link"] == self._link_codes[failure.link])
        dense = on_link[rows["dense"][on_link]]
        shown = dense if len(dense) else on_link
        starts = rows["ts_start"]
        back = int(starts[shown][starts[shown] > failure.ts].min(initial=_NEVER))
        reported = [down for down in self._reported_downs.get((failure.leaf, failure.spine), ())
                    if failure.ts <= down < back]
        if reported:
            back = int(starts[on_link][starts[on_link] > max(reported)].min(initial=back))
        return None if back == _NEVER else back

    def _knock_on(self, failure: _Failure) -> bool:
        """True when every flow the silence cut (its affected flows that moved; when none was sending, every
        flow that moved) crossed another failed link through the same spine, within the timeout (the far side
        of that failure: its flows dropped at the spine until rerouted). A flow crossed it when it had been on
        that link, or when its far end is behind that link's leaf (the one way from this leaf through the
        spine to it, whether or not that link is mirrored). A link the counters reported down explains such
        a silence, and so does the far leaf's link itself when it shows every cut flow's last packet earlier
        than here (`_dropped_beyond`: it carried nothing of what they sent after, whether or not a failure of
        its own was found); when two silences each explain the other, the one more flows left is the
        failure."""
        window = ms_to_us(self.config.timeout_ms)
        moved = failure.recovered_at >= 0
        cut = moved & failure.affected if (moved & failure.affected).any() else moved
        if cut.any() and all(self._reported_down(str(leaf), failure.spine, failure.ts)
                             for leaf in set(self._far_leaves(failure)[cut].tolist())):
            return True
        if cut.any() and self._dropped_beyond(failure)[cut].all():
            return True
        for other in self._recent:
            if (other is failure or other.link == failure.link or other.spine != failure.spine
                    or abs(other.ts - failure.ts) > window or not self._crossed(failure, other)[cut].all()):
                continue
            if other.trigger == "oper_down":
                return True
            theirs = other.recovered_at >= 0
            if (not self._crossed(other, failure)[theirs].all()
                    or (int(moved.sum()), -failure.ts) < (int(theirs.sum()), -other.ts)):
                return True
        return False

    def _reported_down(self, leaf: str, spine: str, ts: int) -> bool:
        """Whether the counters reported a link between `leaf` and `spine` down from `window_ms` before `ts` to
        the timeout after it (a report lags the failure by its polling): a failure the detector may never
        judge from rows (a link not mirrored), whose far side a silence at `ts` still is."""
        earliest, latest = ts - ms_to_us(self.config.window_ms), ts + ms_to_us(self.config.timeout_ms)
        return any(earliest <= down <= latest for down in self._reported_downs.get((leaf, spine), ()))

    def _crossed(self, failure: _Failure, other: _Failure) -> np.ndarray:
        """Per flow of `failure`: whether it crossed `other`'s link (see `_knock_on`)."""
        return np.isin(failure.flows, other.flows) | (self._far_leaves(failure) == other.leaf)

    def _far_leaves(self, failure: _Failure) -> np.ndarray:
        """Per flow of the failure: the leaf at its far end (where an `up` flow goes, where a `down` one comes
        from) by the topology's host prefixes; '' when not known. Looked up once per failure, and only for
        the failures a far side is asked of: the detectors never search prefixes per row."""
        if failure.far_leaves is None:
            far = np.full(len(failure.keys), "", dtype=object)
            if self.topology is not None and len(far):
                addresses = far_addresses(failure.keys, failure.directions == "up")
                leaves = self.topology.leaf_index(addresses[:, 0], addresses[:, 1])
                names = np.array([leaf.name for leaf in self.topology.leaves] + [""], dtype=object)
                far = names[np.where(leaves >= 0, leaves, len(names) - 1)]
            failure.far_leaves = far
        return failure.far_leaves

    def _may_explain(self, failure: _Failure) -> bool:
        """Whether another link through the same spine fell silent first and is still being judged: if it
        failed, this silence may be its far side, so this one waits before it is written."""
        timeout = ms_to_us(self.config.timeout_ms)
        return any(link != failure.link and spine == failure.spine and failure.ts - timeout <= at <= failure.ts
                   for link, (spine, at) in self._undecided.items())

    def _forget(self, failure: _Failure) -> None:
        self._recent = [f for f in self._recent if f is not failure]
        self._left.pop(failure.link, None)
        self._left_far.pop(failure.link, None)

    def _far_links_left(self, failure: _Failure) -> dict[tuple[str, str], set[int]]:
        """The failure's flows by the far leaf's link through its spine: a flow between this leaf and that one
        crossed both links, and left both when the failure moved it to another spine."""
        far = self._far_leaves(failure)
        return {(str(leaf), failure.spine): set(failure.flows[far == leaf].tolist()) for leaf in set(far.tolist())
                if leaf}

    def _returning(self, failure: _Failure) -> bool:
        """True when every flow that moved went back to a link it had left when that link failed, or when the
        link at the flow's far end through the same spine failed: that link was repaired, and ECMP spreads the
        flows over its spine again (the move back belongs to that failure's incident). Also when every flow the
        silence cut went back to the link it had come from within `timeout_ms`, just as that link carried
        traffic again: a flap too brief to prove (its flows away no longer than their spacing allows), whose
        move back is no failure of the link they passed through."""
        cut = self._cut(failure)
        if cut.any() and self._bounced(failure)[cut].all():
            return True
        moved = np.flatnonzero(failure.recovered_at >= 0)
        return all(self._had_left(int(failure.flows[i]), str(failure.new_link[i])) for i in moved)

    def _bounced(self, failure: _Failure) -> np.ndarray:
        """Per flow: it had left the link it moved to within `timeout_ms` before the failure, and that link, or
        the one between the flow's far leaf and the same spine (the one that flapped may be at the far end),
        was silent from about when the flow left it to about when it came back (`window_ms` either way)."""
        bounced = np.zeros(len(failure.flows), dtype=bool)
        rows = self._rows
        if rows is None:
            return bounced
        recent = (rows["ts_end"] >= failure.ts - ms_to_us(self.config.timeout_ms)) & (rows["ts_start"] <= failure.ts)
        flow, row = self._elsewhere(failure, recent)
        links = np.array([self._links[code][0] for code in rows["link"][row].tolist()], dtype=object)
        mine = links == failure.new_link[flow]
        left = np.full(len(failure.flows), -1, dtype=np.int64)
        np.maximum.at(left, flow[mine], rows["ts_end"][row[mine]])
        far = self._far_leaves(failure)
        for i in np.flatnonzero(left >= 0).tolist():
            code = self._link_codes[str(failure.new_link[i])]
            spine = self._links[code][2]
            far_code = self._links_through(spine).get(str(far[i]), -1)
            bounced[i] = any(self._silent(c, int(left[i]), int(failure.recovered_at[i]))
                             for c in (code, far_code) if c >= 0)
        return bounced

    def _silent(self, code: int, left: int, back: int) -> bool:
        """Whether the link's dense rows have a hole of at least `silence_ms` from within `window_ms` after
        `left` to within `window_ms` of `back` (the far end of a flow's path sees it a little after this
        end does)."""
        rows = self._rows
        assert rows is not None
        window = ms_to_us(self.config.window_ms)
        on_link = np.flatnonzero((rows["link"] == code) & rows["dense"])
        order = on_link[np.argsort(rows["ts_start"][on_link], kind="stable")]
        starts, covered = rows["ts_start"][order], np.maximum.accumulate(rows["ts_end"][order])
        hole = np.flatnonzero(starts[1:] > covered[:-1] + ms_to_us(self.config.silence_ms))
        return bool(((covered[hole] <= left + window) & (np.abs(starts[hole + 1] - back) <= window)).any())

    def _had_left(self, flow: int, link: str) -> bool:
        if flow in self._left.get(link, ()):
            return True
        joins = self._links[self._link_codes[link]][1:]
        return any(flow in far.get(joins, ()) for far in self._left_far.values())

    def _interrupted(self, failure: _Failure) -> np.ndarray:
        """Affected flows the failure cut, the ones convergence is measured on: recovered elsewhere after
        skipping PSNs (a RoCE data flow cut mid-message loses the packets in flight), or back elsewhere
        within `window_ms` of their last packet on the link (still sending when it failed). The others had
        ended their burst: they came back later, on their next one, with nothing lost (resumed after idle)."""
        recovered = failure.affected & (failure.recovered_at >= 0)
        prompt = failure.recovered_at - failure.last_seen <= ms_to_us(self.config.window_ms)
        return recovered & (self._skipped(failure) | prompt | self._in_transit(failure))

    def _in_transit(self, failure: _Failure) -> np.ndarray:
        """Flows into the leaf seen on their far leaf's link through the spine after their last packet here
        (by more than `mirror_skew_ms`): still sending when the link failed, however long their sender took
        to reroute them (a remote convergence slower than `window_ms`)."""
        skew = ms_to_us(self.config.mirror_skew_ms)
        return (failure.directions == "down") & (failure.far_last > failure.last_seen + skew)

    def _dropped_beyond(self, failure: _Failure) -> np.ndarray:
        """Flows leaving the leaf last seen on their far leaf's link through the spine before their last
        packet here (by more than `mirror_skew_ms`): what they sent after it was lost beyond this link."""
        skew = ms_to_us(self.config.mirror_skew_ms)
        return (failure.directions == "up") & (failure.far_last >= 0) & (failure.far_last + skew < failure.last_seen)

    def _cut(self, failure: _Failure) -> np.ndarray:
        """Flows that show the failure themselves: interrupted ones that skipped PSNs or were away from the
        link for longer than their own packet spacing allows (an ECMP rehash moves a flow within it, without
        loss), and flows too slow to be affected (a packet every few ms, fewer than 3 in `window_ms`) that
        were still sending (their last packet within that allowance of the failure) and were away as long,
        back elsewhere within `window_ms` of the allowance (as soon as the fabric converged, not on a later
        burst); a flow spaced more than `window_ms` says nothing of it. A flow that sends pairs (a storage
        exchange of 2 packets every 5 ms) is spaced by half its pause on average: away, it also missed more
        than that pause by a spacing (the next pair of a flow rehashed leaves within its pause, give or take
        the jitter; a pair lost leaves a gap of two pauses)."""
        gap = failure.recovered_at - failure.last_seen
        allowed = self.config.gap_factor * failure.spacing
        away = (gap > allowed) & (gap > failure.pause + failure.spacing)
        window = ms_to_us(self.config.window_ms)
        slow = (~failure.affected & ~failure.moved_before & (failure.recovered_at >= 0) & (failure.spacing <= window)
                & (failure.ts - failure.last_seen <= allowed) & (gap <= allowed + window))
        return (self._interrupted(failure) & (self._skipped(failure) | away)) | (slow & away)

    @staticmethod
    def _skipped(failure: _Failure) -> np.ndarray:
        return failure.data & (failure.recovered_at >= 0) & (psn_skipped(failure.psn_last, failure.psn_first) > 0)

    def _first_move(self, failure: _Failure) -> int:
        """The first packet on another link of a cut flow (of any flow that moved, when none was)."""
        cut = self._cut(failure)
        movers = cut if cut.any() else failure.recovered_at >= 0
        return int(failure.recovered_at[movers].min())

    def _evidence(self, rows: dict[str, np.ndarray], part: np.ndarray, failure: _Failure, watermark: int) -> bool:
        """Whether a silent hole of a link is a failure (DESIGN.md section 6: no event without evidence).
        Not if the link carried anything inside it while its flows were moving (a sparse flow's packet
        before `window_ms` past the first flow back elsewhere: it was alive; a packet later than that may
        be the repaired link's, before its dense flows came back, and whether such a row has arrived when
        the hole is judged depends on the exporter's timing). Yes if an interrupted flow shows the cut
        itself (`_cut`). Between bursts, when no flow was sending: yes if flows moved to another link of the
        leaf while a session of the link itself (BFD, LLDP, BGP: neither `up` nor `down`, they never move),
        sending up to the failure, stayed silent for a hole longer than its own packet spacing allows (a
        hole shorter than that says nothing of a session that sends once a second, whatever its last
        exported row); an ECMP rehash moves flows but leaves those, and a burst that ended is no silence of
        theirs."""
        end = watermark if failure.until is None else failure.until
        movers = failure.recovered_at >= 0
        alive_by = min(end, self._first_move(failure) + ms_to_us(self.config.window_ms)) if movers.any() else end
        starts = rows["ts_start"][part]
        if ((starts > failure.ts) & (starts < alive_by)).any():
            return False
        if self._cut(failure).any():
            return True
        if not movers.any():
            return False
        return self._session_fell_silent(rows, part, failure.ts, end)

    def _session_fell_silent(self, rows: dict[str, np.ndarray], part: np.ndarray, ts: int, end: int) -> bool:
        """Whether a session of the link itself (neither up nor down), sending up to `ts`, stayed silent until
        `end` for longer than its own packet spacing allows: none of its packets known (a row's first,
        3rd-to-last and last) came within that allowance after `ts`. A session's row that ends later may
        span the hole with packets inside it (BFD every 300 ms is cut into rows only after 2.4 s)."""
        before = part[(rows["ts_end"][part] <= ts) & (rows["direction"][part] == _OTHER)]
        tail, last = rows["ts_tail"][before], rows["ts_end"][before]
        allowed = self.config.gap_factor * (last - tail) // 2
        silent = (tail > 0) & (tail < last) & (ts - last <= allowed) & (end - ts > allowed)
        if not silent.any():
            return False
        later = part[rows["ts_end"][part] > ts]
        known = np.concatenate([rows[column][later] for column in ("ts_start", "ts_tail", "ts_end")])
        flows = np.tile(rows["flow"][later], 3)
        sessions = zip(rows["flow"][before][silent].tolist(), allowed[silent].tolist(), strict=True)
        return any(not ((flows == flow) & (known > ts) & (known <= ts + allow)).any() for flow, allow in sessions)

    # -- emission ----------------------------------------------------------------------------------------
    def _emit(self, watermark: int, *, final: bool) -> list[Event]:
        """Write each failure open when declared, closed once its flows recovered and its link came back or
        `back_wait_ms` passed, once the link came back, at the timeout, or at the end of input."""
        timeout = ms_to_us(self.config.timeout_ms)
        events: list[Event] = []
        waiting: list[_Failure] = []
        for failure in self._pending:
            self._recover(failure)
            back = self._back_at(failure)  # a row of the link that arrived late may show it back earlier
            if back is not None and (failure.until is None or back < failure.until):
                failure.until = back
            if not failure.updated and failure.trigger == "silence":
                if not final and self._may_explain(failure):
                    waiting.append(failure)
                    continue
                if self._knock_on(failure) or self._returning(failure):  # a failure declared since explains it
                    self._forget(failure)
                    continue
            back = failure.until is not None and watermark >= failure.until
            done = bool((failure.recovered_at[failure.affected] >= 0).all())
            waited = watermark >= failure.ts + ms_to_us(self.config.back_wait_ms)
            if final or back or (done and waited) or watermark >= failure.ts + timeout:
                events.append(self._event(failure, state="closed"))
            else:
                if not failure.updated:
                    events.append(self._event(failure, state="open"))
                waiting.append(failure)
        self._pending = waiting
        return events + self._back_earlier()

    def _back_earlier(self) -> list[Event]:
        """Failures closed already whose link a row that arrived since shows back earlier: written again with
        that time. A flow that went on sending through the repaired link is exported only at the end of its
        export interval (the collector's active timeout), after a burst that came back later closed the
        failure; its row, in time order only within `timeout_ms`, is the link's return (and may make the
        outage a flap)."""
        events = []
        for failure in self._recent:
            if not failure.updated or failure.until is None or any(failure is f for f in self._pending):
                continue
            back = self._back_at(failure)
            if back is not None and back < failure.until:
                failure.until = back
                events.append(self._event(failure, state="closed"))
        return events

    def _event(self, failure: _Failure, *, state: str) -> Event:
        recovered = (failure.recovered_at >= 0) & failure.affected
        interrupted = self._interrupted(failure)
        resumed = recovered & ~interrupted
        delay_ms = (failure.recovered_at - failure.ts) / 1000
        converged = {d: float(delay_ms[interrupted & (failure.directions == d)].max())
                     if (interrupted & (failure.directions == d)).any() else None for d in DIRECTIONS}
        present = [v for v in converged.values() if v is not None]
        convergence = max(present) if present else None
        lost = psn_skipped(failure.psn_last, failure.psn_first)
        lost = np.where(recovered & failure.data, lost, 0)
        flows = [{"flow": describe(failure.keys[i]), "direction": str(failure.directions[i]),
                  "new_link": str(failure.new_link[i]) or None,
                  "convergence_ms": float(delay_ms[i]) if interrupted[i] else None,
                  "packets_lost": int(lost[i]) if recovered[i] and failure.data[i] else None}
                 for i in np.argsort(-np.where(interrupted, delay_ms, -np.inf))[:_DETAIL_FLOWS]
                 if failure.affected[i] and not resumed[i]]
        idle = [{"flow": describe(failure.keys[i]), "direction": str(failure.directions[i]),
                 "new_link": str(failure.new_link[i]), "back_after_ms": float(delay_ms[i])}
                for i in np.flatnonzero(resumed)[:_DETAIL_FLOWS]]
        affected, back = int(failure.affected.sum()), int(recovered.sum())
        ts_end = int(failure.recovered_at[recovered].max()) if back else failure.ts
        text = ", ".join(f"{name} {value:.3f} ms" for name, value in
                         (("local", converged["up"]), ("remote", converged["down"])) if value is not None)
        # no flow cut: those it carried came back on their next burst (or none was sending), nothing to converge
        outcome = f"converged {text}" if text else "no flow interrupted" if back == affected else "converged never"
        failure.updated = max(self._latest, failure.updated + 1)
        if failure.incident_ts is None:
            failure.incident_ts = failure.ts
        return make_event(
            "fast_recovery", ts=failure.ts, ts_end=ts_end, severity="warning" if back == affected else "critical",
            link=failure.link, device=failure.leaf, convergence_ms=convergence,
            local_convergence_ms=converged["up"], remote_convergence_ms=converged["down"],
            flows_affected=affected, flows_recovered=back, packets_lost=int(lost.sum()), value=convergence,
            state=state, updated=failure.updated,
            identity=(failure.link, "unknown", failure.leaf, "", failure.incident_ts),
            summary=f"{failure.link} failed ({failure.trigger.replace('_', '-')}): {outcome}, "
                    f"{back}/{affected} flows recovered, {int(lost.sum())} "
                    f"{'packet' if int(lost.sum()) == 1 else 'packets'} lost",
            details={"leaf": failure.leaf, "spine": failure.spine, "trigger": failure.trigger, "flows": flows,
                     "interrupted": int(interrupted.sum()),
                     "median_convergence_ms": float(np.median(delay_ms[interrupted])) if interrupted.any() else None,
                     "resumed_after_idle": idle, "link_back_us": failure.until},
        )

    def _prune(self, watermark: int) -> None:
        """Drop rows and remembered failures no longer needed by any open question."""
        config = self.config
        horizon = watermark - ms_to_us(config.timeout_ms + config.silence_ms + config.window_ms)
        keep_from = min([horizon] + [f.ts for f in self._pending])
        if self._rows is not None:
            kept = (self._rows["ts_end"] >= keep_from) & self._latest_of_settled()
            self._rows = {c: self._rows[c][kept] for c in _COLUMNS}
        self._recent = [f for f in self._recent if f.ts >= horizon]
        self._reported_downs = {joins: kept for joins, downs in self._reported_downs.items()
                                if (kept := [down for down in downs if down >= horizon])}

    def _latest_of_settled(self) -> np.ndarray:
        """Per-flow state instead of rows: a flow's rows on a link that ended before every question still open
        on its leaf (the earliest failure its links may yet show, `_open_from`, an oper-down not judged yet, a
        failure waiting for its flows) matter only through its latest one there. A failure found later takes
        each flow's last row on the link up to it, and looks for the flows on the other links of the leaf only
        after it; so a flow sending for seconds keeps one row per link, not one per burst. Sessions of the
        link itself (neither up nor down) keep their rows: they are few, and each gives its own spacing."""
        rows = self._rows
        assert rows is not None
        settled = np.full(len(self._leaf_codes), np.iinfo(np.int64).max, dtype=np.int64)
        for code, start in self._open_from.items():
            leaf = self._leaf_codes[self._links[code][1]]
            settled[leaf] = min(settled[leaf], start, *self._downs.get(self._links[code][0], ()))
        settled = np.minimum(settled, min([np.iinfo(np.int64).max] + [f.ts for f in self._pending]))
        old = np.flatnonzero((rows["direction"] != _OTHER) & (rows["ts_end"] < settled[rows["leaf"]]))
        keep = np.ones(len(rows["ts_end"]), dtype=bool)
        if len(old) > 1:
            old = old[np.lexsort((rows["ts_end"][old], rows["flow"][old], rows["link"][old]))]
            same = (rows["flow"][old][1:] == rows["flow"][old][:-1]) & (rows["link"][old][1:] == rows["link"][old][:-1])
            keep[old[:-1][same]] = False
        return keep


def _moves(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every time a flow left a link: consecutive rows of one flow (key, leaf and direction, up or down) by start
    time on two links; `link` the link it left, `start`/`end`/`tail` its last row there, `next` the start of its
    first row on the other. Computed once per batch for all links, so a hole no flow moved out of is ruled out
    without gathering the flows of the link (most holes are the pauses between bursts)."""
    flows = np.flatnonzero(rows["direction"] != _OTHER)
    key = rows["flow"][flows]
    order = np.lexsort((rows["ts_start"][flows], key, rows["direction"][flows], rows["leaf"][flows]))
    flows, key = flows[order], key[order]
    same_flow = ((key[1:] == key[:-1]) & (rows["direction"][flows][1:] == rows["direction"][flows][:-1])
                 & (rows["leaf"][flows][1:] == rows["leaf"][flows][:-1]))
    left = np.flatnonzero(same_flow & (rows["link"][flows][1:] != rows["link"][flows][:-1]))
    before, after = flows[left], flows[left + 1]
    return {"link": rows["link"][before], "start": rows["ts_start"][before], "end": rows["ts_end"][before],
            "tail": rows["ts_tail"][before], "next": rows["ts_start"][after]}


def _moved_out(out: dict[str, np.ndarray], ts: int, until: int | None, timeout: int, *,
               since: int | None = None) -> bool:
    """Whether a flow the link carried up to `ts` (its last row there started by `ts` and ended within the
    timeout before it) may have shown up on another link before `until`: the moves off the link (`out`)
    include one from such a row that happened before `until`. Without one, no flow of the hole moved and the
    hole is no failure: a flow seen elsewhere in the hole left the link after its carried row, and left it
    either by `ts` (a move here) or from a row of the link starting inside the hole (which says the link
    was alive). With `since`: only a flow whose 3rd-to-last packet there is since then (what evidence needs when
    no session of the link fell silent: a flow the failure cut)."""
    moved = (out["start"] <= ts) & (out["end"] >= ts - timeout)
    if since is not None:
        moved &= out["tail"] >= since
    if until is not None:
        moved &= out["next"] < until
    return bool(moved.any())


def _moved_by(out: dict[str, np.ndarray], at: int) -> int | None:
    """When the first flow that left the link at a hole starting at `at` showed up elsewhere (None while none
    did)."""
    arrived = out["next"][(out["end"] <= at) & (out["next"] > at)]
    return int(arrived.min()) if len(arrived) else None


def _pause(packets: np.ndarray, start: np.ndarray, tail: np.ndarray) -> np.ndarray:
    """Per row of 2 packets whose flow had a packet before them (`tail`, its 3rd-to-last): the time from that
    packet to the row's first, the pause between the flow's last two pairs; 0 for other rows (see `_cut`)."""
    return np.where((packets == 2) & (tail > 0) & (tail < start), start - tail, 0)


def _witnessed(ts_tail: np.ndarray, ts_end: np.ndarray, ts: int, until: int | None, window: int) -> np.ndarray:
    """Flows with >=3 packets on the link in the window before the failure. A row still running when the
    link came back (`until`) belongs to a sparse flow whose one row spans the outage and its repair: its
    tail is from after the repair, its packets before `ts` are unknown, and it is not counted."""
    affected = ts_tail >= ts - window
    return affected if until is None else affected & (ts_end <= until)


def psn_skipped(psn_last: np.ndarray, psn_first: np.ndarray) -> np.ndarray:
    """PSN numbers skipped from `psn_last` on the old link to `psn_first` on the new one, 24-bit wrap.

    A step back (the sender retransmitting from an earlier PSN: go-back-N after the loss) skips none.
    """
    forward = (psn_first.astype(np.int64) - psn_last.astype(np.int64) - 1) % PSN_MODULO
    return np.where(forward < PSN_MODULO // 2, forward, 0)
