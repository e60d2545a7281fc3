"""All-reduce congestion per link and direction from 10 ms `link_bins`: ECN-CE episodes and PFC storms.

A bin is congested when its RoCE CE ratio (in bins with enough ECN-capable packets) crosses a threshold.
CE-marked bins closer than the merge gap form one run, reported as an episode if any of its bins was
congested, once the link direction has been quiet for that gap. Event times are the first/last
CE-marked packet of the episode (DESIGN.md section 6): packet timestamps, not bin edges.

CNPs travel back to the sender and PFC pauses to the upstream switch, away from the congested queue,
so alone they do not say which link direction is congested: they are counted into the episode of the
link (CNPs seen in the opposite direction, pauses in any), and open episodes of their own only when
`cnp_per_bin`/`pfc_per_bin` are set. CE marks stay on a packet after the hop that set them, so a
`down` run whose marks upward runs into the same spine account for is not reported. Flow rows, when
given, name the jobs and top flows of an episode.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from pipeline.detect.events import Batch, Event, make_event, ms_to_us, times_us
from pipeline.detect.flowkey import describe, flow_keys
from pipeline.records import LINK_BIN_US

OPPOSITE = {"up": "down", "down": "up"}


@dataclass(frozen=True, kw_only=True)
class CongestionConfig:
    """Congestion and PFC-storm thresholds (defaults in pipeline/detect/README.md); 0 turns a trigger off."""

    ce_ratio: float = 0.05
    min_ect: int = 10
    cnp_per_bin: int = 0
    pfc_per_bin: int = 0
    merge_gap_ms: float = 50.0
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
        kept = [{c: column[chunk["ts_end"] >= keep_from] for c, column in chunk.items()} for chunk in self.chunks]
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
        self._link_time: dict[tuple[str, str], int] = {}
        self._latest = np.iinfo(np.int64).min
        self._flows = _Recent()
        self._signals = _Recent()

    def observe_flows(self, flows: Batch) -> None:
        """Keep the flow rows needed to name the jobs and top flows of open and coming episodes."""
        self._flows.add({
            "link": flows["link"].astype(str), "direction": flows["direction"].astype(str),
            "job": flows["job"].astype(str), "ts_start": times_us(flows["ts_start"]),
            "ts_end": times_us(flows["ts_end"]), "key": flow_keys(flows),
            "bytes": flows["bytes"].astype(np.uint64), "ecn_ce": flows["ecn_ce"].astype(np.uint64),
        })

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
        for row in order[(congested | (ce > 0))[order]]:
            key = (links[row], directions[row])
            ended = self._extend(self._episodes, key, bins, int(row), int(ts[row]), config.merge_gap_ms,
                                 float(ratio[row]) if enough[row] else None)
            self._episodes[key].congested |= bool(congested[row])
            if ended is not None:
                self._end(key, ended)
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
        """End of input: emit every open congested episode and PFC storm."""
        for key, run in list(self._episodes.items()):
            self._end(key, run)
        events = [self._episode_event(key, run) for key, run in self._ended if not self._inherited(key, run)]
        storms = [self._storm_event(key, run) for key, run in self._storms.items()]
        self._ended.clear()
        self._ended_up.clear()
        self._episodes.clear()
        self._storms.clear()
        self._flows = _Recent()
        self._signals = _Recent()
        return events + [storm for storm in storms if storm is not None]

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
        """End runs whose link direction has been quiet for the gap; emit episodes once flow rows are in."""
        config = self.config
        global_time = self._latest - ms_to_us(config.lateness_ms)

        def quiet(key: tuple[str, str], run: _Run, gap_ms: float) -> bool:
            now = max(self._link_time.get(key, global_time), global_time)
            return now > run.last_bin + LINK_BIN_US + ms_to_us(gap_ms)

        events: list[Event] = []
        for key in [k for k, run in self._storms.items() if quiet(k, run, config.storm_gap_ms)]:
            storm = self._storm_event(key, self._storms.pop(key))
            events += [storm] if storm is not None else []
        for key in [k for k, run in self._episodes.items() if quiet(k, run, config.merge_gap_ms)]:
            self._end(key, self._episodes.pop(key))
        wait_ms = config.merge_gap_ms + config.flows_wait_ms
        ready = [(k, run) for k, run in self._ended if quiet(k, run, wait_ms)]
        self._ended = [(k, run) for k, run in self._ended if not quiet(k, run, wait_ms)]
        events += [self._episode_event(key, run) for key, run in ready if not self._inherited(key, run)]
        keep_from = min([run.first_bin for run in self._episodes.values()]
                        + [run.first_bin for _, run in self._ended]
                        + [global_time - ms_to_us(config.flows_wait_ms + config.merge_gap_ms) - LINK_BIN_US])
        self._flows.prune(keep_from - ms_to_us(config.merge_gap_ms))
        self._signals.prune(keep_from - ms_to_us(config.merge_gap_ms))
        self._ended_up = [(link, run) for link, run in self._ended_up if run.last_bin >= keep_from - LINK_BIN_US]
        return events

    def _end(self, key: tuple[str, str], run: _Run) -> None:
        """A run ended: congested ones wait to be emitted; upward ones are remembered as the source of
        the marks their packets carry further down."""
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

    def _episode_event(self, key: tuple[str, str], run: _Run) -> Event:
        link, direction = key
        start, end = run.first_bin, run.last_bin + LINK_BIN_US
        ts = run.ts_first_ce or run.ts_first
        ts_end = run.ts_last_ce or run.ts_last
        cnp, pause, quanta = self._signals_on(link, direction, start, end)
        jobs, top = self._flows_through(link, direction, start, end)
        ratio = "n/a" if run.peak_ratio is None else f"{run.peak_ratio:.1%}"
        return make_event(
            "congestion", ts=ts, ts_end=ts_end, severity="warning", link=link, direction=direction,
            job=jobs[0] if len(jobs) == 1 else "", value=run.peak_ratio,
            summary=f"congestion on {link} {direction}: peak CE ratio {ratio}, {run.ce} CE, {cnp} CNP, "
                    f"{pause} PFC pauses" + (f", jobs {', '.join(jobs)}" if jobs else ""),
            details={"ce": run.ce, "ect": run.ect, "cnp": cnp, "pfc_pause": pause, "pfc_quanta": quanta,
                     "bins": run.bins, "jobs": jobs, "top_flows": top},
        )

    def _storm_event(self, key: tuple[str, str], run: _Run) -> Event | None:
        """A PFC pause run long enough to be a storm, else nothing."""
        duration = run.last_bin + LINK_BIN_US - run.first_bin
        if duration < ms_to_us(self.config.storm_ms):
            return None
        link, direction = key
        return make_event(
            "pfc_storm", ts=run.ts_first, ts_end=run.ts_last, severity="critical", link=link,
            direction=direction, value=run.pause,
            summary=f"PFC storm on {link} {direction}: {run.pause} pause frames over {duration / 1000:.0f} ms",
            details={"pfc_pause": run.pause, "pfc_quanta": run.quanta, "bins": run.bins},
        )

    def _signals_on(self, link: str, direction: str, start: int, end: int) -> tuple[int, int, int]:
        """CNPs in the opposite direction and pauses in any direction of the link, within the merge gap
        around [start, end): pauses build before the first mark and CNPs trail the last by a round trip."""
        rows = self._signals.rows()
        if rows is None:
            return 0, 0, 0
        gap = ms_to_us(self.config.merge_gap_ms)
        here = (rows["link"] == link) & (rows["ts_end"] >= start - gap) & (rows["ts_end"] < end + gap)
        cnp = int(rows["cnp"][here & (rows["direction"] == OPPOSITE.get(direction, direction))].sum())
        return cnp, int(rows["pause"][here].sum()), int(rows["quanta"][here].sum())

    def _flows_through(self, link: str, direction: str, start: int, end: int) -> tuple[list[str], list[dict]]:
        """Jobs (by bytes) and top flows (by CE marks, then bytes) on the link direction within [start, end)."""
        rows = self._flows.rows()
        if rows is None:
            return [], []
        mask = ((rows["link"] == link) & (rows["direction"] == direction)
                & (rows["ts_end"] >= start) & (rows["ts_start"] < end))
        if not mask.any():
            return [], []
        job_bytes: dict[str, int] = defaultdict(int)
        for job, size in zip(rows["job"][mask], rows["bytes"][mask], strict=True):
            if job:
                job_bytes[job] += int(size)
        keys, inverse = np.unique(rows["key"][mask], return_inverse=True)
        size = np.bincount(inverse, weights=rows["bytes"][mask].astype(np.float64))
        marks = np.bincount(inverse, weights=rows["ecn_ce"][mask].astype(np.float64))
        job_of = dict(zip(inverse.tolist(), rows["job"][mask].tolist(), strict=True))
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
