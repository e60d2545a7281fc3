"""All-reduce congestion per link and direction from 10 ms `link_bins`: ECN-CE episodes and PFC storms.

A bin is congested when its RoCE CE ratio (in bins with enough ECN-capable packets) crosses a threshold.
An episode is one incident (DESIGN.md section 6): it starts at a CE-marked bin and spans the idle gaps
of the traffic it marks, so congestion that persists over many all-reduce iterations is one event. Bins
without enough ECN-capable packets neither extend nor end it; it ends after `clear_ms` of busy, unmarked
bins (counted across bursts) or `idle_ms` without ECN-capable traffic. It is written as open once a
congested bin is past the lateness bound (as soon as it is known), again when its peak CE ratio grows
by `update_ratio`, and closed once its flow rows are in. Event times are the first/last CE-marked
packet of the episode: packet timestamps, not bin edges.

CNPs travel back to the sender and PFC pauses to the upstream switch, away from the congested queue,
so alone they do not say which link direction is congested: they are counted into the episode of the
link (CNPs seen in the opposite direction, pauses in any), and open episodes of their own only when
`cnp_per_bin`/`pfc_per_bin` are set. CE marks stay on a packet after the hop that set them, so a
`down` run whose marks upward runs into the same spine account for is not reported. Flow rows, when
given, name the jobs and top flows of an episode.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline.detect.codes import intern, intern_pairs
from pipeline.detect.events import Batch, Event, make_event, ms_to_us, times_us
from pipeline.detect.flowkey import KEY_COLUMNS, describe, flow_keys
from pipeline.records import LINK_BIN_US

OPPOSITE = {"up": "down", "down": "up"}
SIGNAL_MARGIN_MS = 50.0  # CNPs and pauses counted this far around an episode: pauses lead, CNPs trail
MAX_BURST_DETAILS = 200


@dataclass(frozen=True, kw_only=True)
class CongestionConfig:
    """Congestion and PFC-storm thresholds (defaults in pipeline/detect/README.md); 0 turns a trigger off."""

    ce_ratio: float = 0.05
    min_ect: int = 10
    cnp_per_bin: int = 0
    pfc_per_bin: int = 0
    clear_ms: float = 100.0
    idle_ms: float = 1000.0
    update_ratio: float = 0.1
    storm_ms: float = 500.0
    storm_gap_ms: float = 10.0
    top_flows: int = 5
    lateness_ms: float = 1000.0
    flows_wait_ms: float = 1000.0


@dataclass
class _Run:
    """Consecutive marked bins of one link direction: a congestion episode or a PFC pause run."""

    first_bin: int
    last_bin: int
    ts_first: int
    ts_last: int
    ts_first_ce: int = 0
    ts_last_ce: int = 0
    bins: int = 0
    ce: int = 0
    ect: int = 0
    pause: int = 0
    quanta: int = 0
    peak_ratio: float | None = None
    congested: bool = False
    first_congested: int = 0  # start of the first congested bin
    last_busy: int = 0  # start of the latest bin with ECN-capable traffic
    clean_us: int = 0  # busy, unmarked bin time since the last marked bin
    bursts: list[list[int]] = field(default_factory=list)  # [first bin, CE marks] per burst of traffic
    announced: float | None = None  # peak CE ratio last written; None until the incident is open
    opened: bool = False  # some row of the incident was written
    updated: int = 0  # data time of its latest row
    ended_at: int = 0  # data time the episode was found over


class _Recent:
    """Column chunks kept while an episode may still need them (flow rows, CNP and pause bins)."""

    def __init__(self) -> None:
        self.chunks: list[dict[str, np.ndarray]] = []

    def add(self, chunk: dict[str, np.ndarray]) -> None:
        if len(chunk["ts_end"]):
            self.chunks.append(chunk)

    def rows(self) -> dict[str, np.ndarray] | None:
        if not self.chunks:
            return None
        return {c: np.concatenate([chunk[c] for chunk in self.chunks]) for c in self.chunks[0]}

    def prune(self, keep_from: int) -> None:
        self.retain(lambda chunk: chunk["ts_end"] >= keep_from)

    def retain(self, wanted: Callable[[dict[str, np.ndarray]], np.ndarray]) -> None:
        """Keep the rows `wanted` says yes to (a mask per chunk)."""
        kept = [{c: column[mask] for c, column in chunk.items()} for chunk in self.chunks
                if (mask := wanted(chunk)).any()]
        self.chunks = [chunk for chunk in kept if len(chunk["ts_end"])]


_BIN_COLUMNS = ("ts_first", "ts_last", "ts_first_ce", "ts_last_ce")
_COUNT_COLUMNS = ("roce_ect", "roce_ce", "pfc_pause", "pfc_quanta")


class CongestionDetector:
    """`congestion` and `pfc_storm` events from `link_bins` rows (and optional `flows` rows for details).

    Assumes each link direction's bins arrive in time order; across links a bin may arrive up to
    `lateness_ms` after bins that are later in time, which bounds how long a link with no more bins
    waits before its episode is closed.
    """

    def __init__(self, config: CongestionConfig | None = None) -> None:
        self.config = config or CongestionConfig()
        self._episodes: dict[tuple[str, str], _Run] = {}
        self._ended: list[tuple[tuple[str, str], _Run]] = []
        self._ended_up: list[tuple[str, _Run]] = []
        self._spine_of: dict[str, str] = {}
        self._storms: dict[tuple[str, str], _Run] = {}
        self._spans: dict[str, list[tuple[int, int]]] = {}  # link -> [first bin, end) of closed episodes
        self._link_time: dict[tuple[str, str], int] = {}
        self._latest = np.iinfo(np.int64).min
        self._flows = _Recent()
        self._signals = _Recent()
        self._pairs: dict[tuple[str, str], int] = {}  # (link, direction) -> code of the flow rows' `pair`
        self._jobs: dict[str, int] = {}  # job -> code of the flow rows' `job`

    def observe_flows(self, flows: Batch) -> None:
        """Keep the flow rows needed to name the jobs and top flows of open and coming episodes: rows of a link
        direction with an episode, or ending after its latest bin (a coming episode starts at a later bin).
        Link directions and jobs as codes, so a flood of rows is dropped (or kept) without a string per row."""
        pair = intern_pairs(self._pairs, flows["link"], flows["direction"])
        ts_end = times_us(flows["ts_end"])
        keep = ts_end > self._settled_until()[pair]
        if not keep.any():
            return
        kept = {name: flows[name][keep] for name in (*KEY_COLUMNS, "job", "ts_start", "bytes", "ecn_ce")}
        self._flows.add({
            "pair": pair[keep], "job": intern(self._jobs, kept["job"]),
            "ts_start": times_us(kept["ts_start"]), "ts_end": ts_end[keep], "key": flow_keys(kept),
            "bytes": kept["bytes"].astype(np.uint64), "ecn_ce": kept["ecn_ce"].astype(np.uint64),
        })

    def _settled_until(self) -> np.ndarray:
        """Per link direction code: flow rows ending by this time can be in no episode, open or coming. Bins of
        a link direction arrive in time order, so one without an episode opens its next at a bin after the
        latest seen; one with an episode (open, or ended and waiting for its rows) needs every row."""
        busy = set(self._episodes) | {key for key, _ in self._ended}
        before_all = np.iinfo(np.int64).min
        return np.array([before_all if key in busy else self._link_time.get(key, before_all) for key in self._pairs],
                        dtype=np.int64)

    def update(self, bins: Batch) -> list[Event]:
        config = self.config
        ts = times_us(bins["ts"])
        if not len(ts):
            return []
        links, directions = bins["link"].astype(str), bins["direction"].astype(str)
        ect, ce = bins["roce_ect"].astype(np.int64), bins["roce_ce"].astype(np.int64)
        cnp, pause = bins["cnp"].astype(np.int64), bins["pfc_pause"].astype(np.int64)
        enough = ect >= config.min_ect
        ratio = np.divide(ce, ect, out=np.zeros(len(ts)), where=enough)
        congested = enough & (ratio >= config.ce_ratio)
        if config.cnp_per_bin:
            congested |= cnp >= config.cnp_per_bin
        if config.pfc_per_bin:
            congested |= pause >= config.pfc_per_bin
        signals = (cnp > 0) | (pause > 0)
        self._signals.add({"link": links[signals], "direction": directions[signals], "ts_end": ts[signals],
                           "cnp": cnp[signals], "pause": pause[signals],
                           "quanta": bins["pfc_quanta"][signals].astype(np.int64)})
        events: list[Event] = []
        order = np.argsort(ts, kind="stable")
        clear, idle = ms_to_us(config.clear_ms), ms_to_us(config.idle_ms)
        marked_bins = congested | (ce > 0)
        # unmarked traffic matters only to a link direction with an episode open, or opening in this batch
        keys = np.char.add(np.char.add(links, "\x1f"), directions)
        episodes = [f"{link}\x1f{direction}" for link, direction in self._episodes] + keys[marked_bins].tolist()
        wanted = marked_bins | ((ect > 0) & np.isin(keys, episodes))
        for row in order[wanted[order]]:
            key = (links[row], directions[row])
            marked = bool(marked_bins[row])
            run = self._episodes.get(key)
            if run is not None and ts[row] > run.last_busy + LINK_BIN_US + idle:
                self._end(key, self._episodes.pop(key), at=run.last_busy + LINK_BIN_US + idle)
                run = None
            if run is None and not marked:
                continue
            if run is None:
                run = self._episodes[key] = _Run(first_bin=int(ts[row]), last_bin=int(ts[row]), ts_first=0,
                                                 ts_last=0, last_busy=int(ts[row]))
            self._add_bin(run, bins, int(row), int(ts[row]), marked=marked, busy=bool(enough[row]),
                          congested=bool(congested[row]), ratio=float(ratio[row]) if enough[row] else None)
            if run.clean_us >= clear:
                self._end(key, self._episodes.pop(key), at=int(ts[row]) + LINK_BIN_US)
        for row in order[(pause > 0)[order]]:
            key = (links[row], directions[row])
            ended = self._extend(self._storms, key, bins, int(row), int(ts[row]), config.storm_gap_ms, None)
            storm = None if ended is None else self._storm_event(key, ended)
            events += [storm] if storm is not None else []
        names, first = np.unique(links, return_index=True)
        self._spine_of.update(zip(names.tolist(), bins["spine"][first].astype(str).tolist(), strict=True))
        for key, latest in _latest_per_key(links, directions, ts).items():
            self._link_time[key] = max(self._link_time.get(key, latest), latest)
        self._latest = max(self._latest, int(ts.max()))
        return events + self._close_quiet()

    def flush(self) -> list[Event]:
        """End of input: close every episode (written once more if it was open) and PFC storm."""
        for key, run in list(self._episodes.items()):
            self._end(key, run, at=self._latest)
        events = [self._episode_event(key, run, state="closed") for key, run in self._ended
                  if run.opened or not self._inherited(key, run)]
        storms = [self._storm_event(key, run) for key, run in self._storms.items()]
        self._ended.clear()
        self._ended_up.clear()
        self._episodes.clear()
        self._storms.clear()
        self._flows = _Recent()
        self._signals = _Recent()
        return events + [storm for storm in storms if storm is not None]

    @staticmethod
    def _add_bin(run: _Run, bins: Batch, row: int, ts: int, *, marked: bool, busy: bool, congested: bool,
                 ratio: float | None) -> None:
        """Add a bin of the link direction's traffic to its open episode: a marked bin extends it and resets
        the clean stretch, a busy unmarked one adds to that stretch; either counts into the current burst."""
        if marked:
            first, last, first_ce, last_ce = (int(times_us(bins[c][row : row + 1])[0]) for c in _BIN_COLUMNS)
            ect, ce, pause, quanta = (int(bins[c][row]) for c in _COUNT_COLUMNS)
            run.ts_first = run.ts_first or first
            run.last_bin, run.ts_last, run.bins, run.clean_us = ts, last, run.bins + 1, 0
            if ce:
                run.ts_first_ce = run.ts_first_ce or first_ce
                run.ts_last_ce = last_ce
            run.ect, run.ce = run.ect + ect, run.ce + ce
            run.pause, run.quanta = run.pause + pause, run.quanta + quanta
            if ratio is not None:
                run.peak_ratio = max(run.peak_ratio or 0.0, ratio)
            if congested and not run.congested:
                run.congested, run.first_congested = True, ts
        elif busy:
            run.clean_us += LINK_BIN_US
        if int(bins["roce_ect"][row]) or marked:
            if not run.bursts or ts > run.last_busy + LINK_BIN_US:
                run.bursts.append([ts, 0])
            run.bursts[-1][1] += int(bins["roce_ce"][row])
            run.last_busy = ts

    @staticmethod
    def _extend(runs: dict[tuple[str, str], _Run], key: tuple[str, str], bins: Batch, row: int,
                ts: int, gap_ms: float, ratio: float | None) -> _Run | None:
        """Add a marked bin to the link direction's open run; return the run it ended if the gap was too long."""
        ended = None
        run = runs.get(key)
        if run is not None and ts - (run.last_bin + LINK_BIN_US) > ms_to_us(gap_ms):
            ended = runs.pop(key)
            run = None
        first, last, first_ce, last_ce = (int(times_us(bins[c][row : row + 1])[0]) for c in _BIN_COLUMNS)
        ect, ce, pause, quanta = (int(bins[c][row]) for c in _COUNT_COLUMNS)
        if run is None:
            run = runs[key] = _Run(first_bin=ts, last_bin=ts, ts_first=first, ts_last=last)
        run.last_bin, run.ts_last, run.bins = ts, last, run.bins + 1
        if ce:
            run.ts_first_ce = run.ts_first_ce or first_ce
            run.ts_last_ce = last_ce
        run.ect, run.ce, run.pause, run.quanta = run.ect + ect, run.ce + ce, run.pause + pause, run.quanta + quanta
        if ratio is not None:
            run.peak_ratio = max(run.peak_ratio or 0.0, ratio)
        return ended

    def _close_quiet(self) -> list[Event]:
        """End episodes whose link direction carried no ECN-capable traffic for `idle_ms`; write episodes
        as open once known past the lateness bound (again when their peak grows), closed once their flow
        rows are in."""
        config = self.config
        global_time = self._latest - ms_to_us(config.lateness_ms)

        def now(key: tuple[str, str]) -> int:
            return max(self._link_time.get(key, global_time), global_time)

        events: list[Event] = []
        for key in [k for k, run in self._storms.items()
                    if now(k) > run.last_bin + LINK_BIN_US + ms_to_us(config.storm_gap_ms)]:
            storm = self._storm_event(key, self._storms.pop(key))
            events += [storm] if storm is not None else []
        idle = ms_to_us(config.idle_ms)
        for key in [k for k, run in self._episodes.items() if now(k) > run.last_busy + LINK_BIN_US + idle]:
            run = self._episodes.pop(key)
            self._end(key, run, at=run.last_busy + LINK_BIN_US + idle)
        for key, run in self._episodes.items():
            known = run.congested and global_time >= run.first_congested + LINK_BIN_US
            grown = run.announced is None or (run.peak_ratio or 0.0) >= run.announced + config.update_ratio
            if known and grown and (run.opened or not self._inherited(key, run)):
                events.append(self._episode_event(key, run, state="open"))
                run.announced = run.peak_ratio or 0.0
        flows_wait = ms_to_us(config.flows_wait_ms)

        def ready(key: tuple[str, str], run: _Run) -> bool:
            return now(key) >= max(run.ended_at, run.last_bin + LINK_BIN_US + flows_wait)

        done = [(k, run) for k, run in self._ended if ready(k, run)]
        self._ended = [(k, run) for k, run in self._ended if not ready(k, run)]
        events += [self._episode_event(key, run, state="closed") for key, run in done
                   if run.opened or not self._inherited(key, run)]
        margin = ms_to_us(SIGNAL_MARGIN_MS)
        keep_from = min([run.first_bin for run in self._episodes.values()]
                        + [run.first_bin for _, run in self._ended]
                        + [global_time - flows_wait - idle - LINK_BIN_US])
        settled = self._settled_until()
        self._flows.retain(lambda rows: (rows["ts_end"] >= keep_from - margin)
                           & (rows["ts_end"] > settled[rows["pair"]]))
        self._signals.prune(keep_from - margin)
        self._ended_up = [(link, run) for link, run in self._ended_up if run.last_bin >= keep_from - LINK_BIN_US]
        storms_from = min([keep_from] + [run.first_bin for run in self._storms.values()])
        self._spans = {link: kept for link, spans in self._spans.items()
                       if (kept := [span for span in spans if span[1] >= storms_from - margin])}
        return events

    def _end(self, key: tuple[str, str], run: _Run, *, at: int) -> None:
        """An episode ended at data time `at`: congested ones wait for their flow rows; upward ones are
        remembered as the source of the marks their packets carry further down."""
        run.ended_at = at
        if run.congested:
            self._ended.append((key, run))
        if key[1] == "up":
            self._ended_up.append((key[0], run))

    def _inherited(self, key: tuple[str, str], run: _Run) -> bool:
        """True for a `down` run whose CE marks all came from upward runs into the same spine at the same
        time: ECN marks travel on with the packet, so the congestion was upstream, not on this link."""
        link, direction = key
        spine = self._spine_of.get(link)
        if direction != "down" or spine is None:
            return False
        upward = [*self._ended_up, *((k[0], r) for k, r in self._episodes.items() if k[1] == "up")]
        upstream = sum(r.ce for other, r in upward if other != link and self._spine_of.get(other) == spine
                       and r.first_bin <= run.last_bin and r.last_bin >= run.first_bin)
        return 0 < run.ce <= upstream

    def _episode_event(self, key: tuple[str, str], run: _Run, *, state: str) -> Event:
        link, direction = key
        start, end = run.first_bin, run.last_bin + LINK_BIN_US
        ts = run.ts_first_ce or run.ts_first
        ts_end = run.ts_last_ce or run.ts_last
        cnp, pause, quanta = self._signals_on(link, direction, start, end)
        jobs, top = self._flows_through(link, direction, start, end)
        marks = [ce for first, ce in run.bursts if first <= run.last_bin]
        ratio = "n/a" if run.peak_ratio is None else f"{run.peak_ratio:.1%}"
        run.opened, run.updated = True, max(self._latest, run.updated + 1)
        if state == "closed":
            self._spans.setdefault(link, []).append((start, end))
        return make_event(
            "congestion", ts=ts, ts_end=ts_end, severity="warning", link=link, direction=direction,
            job=",".join(jobs), value=run.peak_ratio, state=state, updated=run.updated,
            identity=(link, direction, run.first_bin),
            summary=f"congestion on {link} {direction}: peak CE ratio {ratio}, {run.ce} CE over {len(marks)} "
                    f"bursts, {cnp} CNP, {pause} PFC pauses" + (f", jobs {', '.join(jobs)}" if jobs else ""),
            details={"ce": run.ce, "ect": run.ect, "cnp": cnp, "pfc_pause": pause, "pfc_quanta": quanta,
                     "bins": run.bins, "bursts": len(marks), "marks_per_burst": marks[:MAX_BURST_DETAILS],
                     "jobs": jobs, "top_flows": top},
        )

    def _storm_event(self, key: tuple[str, str], run: _Run) -> Event | None:
        """A PFC pause run long enough to be a storm, else nothing; nothing either when it is the pauses of a
        congestion episode of the link (they are in that incident's details: one incident, one event)."""
        duration = run.last_bin + LINK_BIN_US - run.first_bin
        if duration < ms_to_us(self.config.storm_ms) or self._part_of_congestion(key[0], run):
            return None
        link, direction = key
        return make_event(
            "pfc_storm", ts=run.ts_first, ts_end=run.ts_last, severity="critical", link=link,
            direction=direction, value=run.pause,
            summary=f"PFC storm on {link} {direction}: {run.pause} pause frames over {duration / 1000:.0f} ms",
            details={"pfc_pause": run.pause, "pfc_quanta": run.quanta, "bins": run.bins},
        )

    def _part_of_congestion(self, link: str, storm: _Run) -> bool:
        """Whether a storm's pauses belong to a congestion episode of the same link: it overlaps the episode
        and ends no later than `storm_ms` after it (a storm that outlives its congestion is one of its own)."""
        start, end = storm.first_bin, storm.last_bin + LINK_BIN_US
        margin, outlive = ms_to_us(SIGNAL_MARGIN_MS), ms_to_us(self.config.storm_ms)
        episodes = [(run.first_bin, run.last_bin + LINK_BIN_US) for (other, _), run in
                    [*self._episodes.items(), *self._ended] if other == link and run.congested]
        return any(first - margin <= end and start <= last + margin and end <= last + outlive
                   for first, last in episodes + self._spans.get(link, []))

    def _signals_on(self, link: str, direction: str, start: int, end: int) -> tuple[int, int, int]:
        """CNPs in the opposite direction and pauses in any direction of the link, within SIGNAL_MARGIN_MS
        around [start, end): pauses build before the first mark and CNPs trail the last by a round trip."""
        rows = self._signals.rows()
        if rows is None:
            return 0, 0, 0
        gap = ms_to_us(SIGNAL_MARGIN_MS)
        here = (rows["link"] == link) & (rows["ts_end"] >= start - gap) & (rows["ts_end"] < end + gap)
        cnp = int(rows["cnp"][here & (rows["direction"] == OPPOSITE.get(direction, direction))].sum())
        return cnp, int(rows["pause"][here].sum()), int(rows["quanta"][here].sum())

    def _flows_through(self, link: str, direction: str, start: int, end: int) -> tuple[list[str], list[dict]]:
        """Jobs (by bytes) and top flows (by CE marks, then bytes) on the link direction within [start, end)."""
        rows = self._flows.rows()
        if rows is None:
            return [], []
        pair = self._pairs.get((link, direction), -1)
        mask = (rows["pair"] == pair) & (rows["ts_end"] >= start) & (rows["ts_start"] < end)
        if not mask.any():
            return [], []
        names = list(self._jobs)
        job_bytes: dict[str, int] = defaultdict(int)
        for job, size in zip(rows["job"][mask].tolist(), rows["bytes"][mask].tolist(), strict=True):
            if names[job]:
                job_bytes[names[job]] += int(size)
        keys, inverse = np.unique(rows["key"][mask], return_inverse=True)
        size = np.bincount(inverse, weights=rows["bytes"][mask].astype(np.float64))
        marks = np.bincount(inverse, weights=rows["ecn_ce"][mask].astype(np.float64))
        job_of = dict(zip(inverse.tolist(), [names[job] for job in rows["job"][mask].tolist()], strict=True))
        top = np.lexsort((-size, -marks))[: self.config.top_flows]
        flows = [{"flow": describe(keys[i]), "job": job_of[int(i)], "bytes": int(size[i]), "ecn_ce": int(marks[i])}
                 for i in top]
        return sorted(job_bytes, key=lambda job: -job_bytes[job]), flows


def _latest_per_key(links: np.ndarray, directions: np.ndarray, ts: np.ndarray) -> dict[tuple[str, str], int]:
    """Latest bin time per (link, direction) in a batch."""
    link_names, link_codes = np.unique(links, return_inverse=True)
    direction_names, direction_codes = np.unique(directions, return_inverse=True)
    pairs, inverse = np.unique(link_codes * len(direction_names) + direction_codes, return_inverse=True)
    latest = np.full(len(pairs), np.iinfo(np.int64).min)
    np.maximum.at(latest, inverse, ts)
    return {(str(link_names[pair // len(direction_names)]), str(direction_names[pair % len(direction_names)])): int(t)
            for pair, t in zip(pairs.tolist(), latest.tolist(), strict=True)}
