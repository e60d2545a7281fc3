"""All-reduce congestion per link and direction from 10 ms `link_bins`: ECN-CE, CNP and PFC episodes.

A bin is congested when its RoCE CE ratio (bins with enough ECN-capable packets), its CNP count or its
PFC pause count crosses a threshold; congested bins closer than the merge gap form one episode, emitted
once the link has been quiet for that gap. Event times come from the first/last CE-marked packet of the
episode (DESIGN.md section 6), so they are as exact as the packet timestamps, not the bin edges.
Flow rows, when given, name the jobs and top flows that crossed the link during the episode.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from pipeline.detect.events import Batch, Event, make_event, ms_to_us, times_us
from pipeline.detect.flowkey import describe, flow_keys
from pipeline.records import LINK_BIN_US


@dataclass(frozen=True, kw_only=True)
class CongestionConfig:
    """Congestion and PFC-storm thresholds (defaults in pipeline/detect/README.md)."""

    ce_ratio: float = 0.05
    min_ect: int = 10
    cnp_per_bin: int = 10
    pfc_per_bin: int = 1
    merge_gap_ms: float = 50.0
    storm_ms: float = 100.0
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
    cnp: int = 0
    pause: int = 0
    quanta: int = 0
    peak_ratio: float | None = None


_BIN_COLUMNS = ("ts_first", "ts_last", "ts_first_ce", "ts_last_ce")
_COUNT_COLUMNS = ("roce_ect", "roce_ce", "cnp", "pfc_pause", "pfc_quanta")
_FLOW_COLUMNS = ("link", "direction", "job", "ts_start", "ts_end", "key", "bytes", "ecn_ce")


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
        self._storms: dict[tuple[str, str], _Run] = {}
        self._link_time: dict[tuple[str, str], int] = {}
        self._latest = np.iinfo(np.int64).min
        self._flows: list[dict[str, np.ndarray]] = []
        self._flows_seen = False

    def observe_flows(self, flows: Batch) -> None:
        """Keep the flow rows needed to name the jobs and top flows of open and coming episodes."""
        if not len(flows["ts_start"]):
            return
        self._flows_seen = True
        self._flows.append({
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
        enough = ect >= config.min_ect
        ratio = np.divide(ce, ect, out=np.zeros(len(ts)), where=enough)
        paused = bins["pfc_pause"].astype(np.int64) >= config.pfc_per_bin
        congested = (enough & (ratio >= config.ce_ratio)) | (bins["cnp"].astype(np.int64) >= config.cnp_per_bin)
        congested |= paused
        events: list[Event] = []
        order = np.argsort(ts, kind="stable")
        for row in order[congested[order]]:
            key = (links[row], directions[row])
            ended = self._extend(self._episodes, key, bins, int(row), int(ts[row]), config.merge_gap_ms,
                                 ratio[row] if enough[row] else None)
            if ended is not None:
                self._ended.append((key, ended))
            if paused[row]:
                ended = self._extend(self._storms, key, bins, int(row), int(ts[row]), config.storm_gap_ms, None)
                storm = None if ended is None else self._storm_event(key, ended)
                events += [storm] if storm is not None else []
        for key, latest in _latest_per_key(links, directions, ts).items():
            self._link_time[key] = max(self._link_time.get(key, latest), latest)
        self._latest = max(self._latest, int(ts.max()))
        return events + self._close_quiet()

    def flush(self) -> list[Event]:
        """End of input: emit every open episode and PFC storm."""
        events = [self._episode_event(key, run) for key, run in [*self._ended, *self._episodes.items()]]
        storms = [self._storm_event(key, run) for key, run in self._storms.items()]
        self._ended.clear()
        self._episodes.clear()
        self._storms.clear()
        self._flows.clear()
        return events + [storm for storm in storms if storm is not None]

    def _extend(self, runs: dict[tuple[str, str], _Run], key: tuple[str, str], bins: Batch, row: int,
                ts: int, gap_ms: float, ratio: float | None) -> _Run | None:
        """Add a marked bin to the link direction's open run; return the run it ended if the gap was too long."""
        ended = None
        run = runs.get(key)
        if run is not None and ts - (run.last_bin + LINK_BIN_US) > ms_to_us(gap_ms):
            ended = runs.pop(key)
            run = None
        first, last, first_ce, last_ce = (int(times_us(bins[c][row : row + 1])[0]) for c in _BIN_COLUMNS)
        ect, ce, cnp, pause, quanta = (int(bins[c][row]) for c in _COUNT_COLUMNS)
        if run is None:
            run = runs[key] = _Run(first_bin=ts, last_bin=ts, ts_first=first, ts_last=last)
        run.last_bin, run.ts_last, run.bins = ts, last, run.bins + 1
        if ce:
            run.ts_first_ce = run.ts_first_ce or first_ce
            run.ts_last_ce = last_ce
        run.ect, run.ce, run.cnp, run.pause, run.quanta = (
            run.ect + ect, run.ce + ce, run.cnp + cnp, run.pause + pause, run.quanta + quanta)
        if ratio is not None:
            run.peak_ratio = max(run.peak_ratio or 0.0, float(ratio))
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
        self._ended += [(k, self._episodes.pop(k)) for k, run in list(self._episodes.items())
                        if quiet(k, run, config.merge_gap_ms)]
        wait_ms = config.merge_gap_ms + (config.flows_wait_ms if self._flows_seen else 0)
        ready = [(k, run) for k, run in self._ended if quiet(k, run, wait_ms)]
        self._ended = [(k, run) for k, run in self._ended if not quiet(k, run, wait_ms)]
        events += [self._episode_event(key, run) for key, run in ready]
        self._prune_flows()
        return events

    def _prune_flows(self) -> None:
        """Forget flow rows that ended before every open episode and the lateness horizon."""
        if not self._flows:
            return
        keep_from = min([run.first_bin for run in self._episodes.values()]
                        + [run.first_bin for _, run in self._ended]
                        + [self._latest - ms_to_us(self.config.lateness_ms + self.config.flows_wait_ms)
                           - ms_to_us(self.config.merge_gap_ms) - LINK_BIN_US])
        kept = [{c: part[c][part["ts_end"] >= keep_from] for c in _FLOW_COLUMNS} for part in self._flows]
        self._flows = [part for part in kept if len(part["ts_end"])]

    def _episode_event(self, key: tuple[str, str], run: _Run) -> Event:
        link, direction = key
        ts = run.ts_first_ce or run.ts_first
        ts_end = run.ts_last_ce or run.ts_last
        jobs, top = self._flows_through(link, direction, run.first_bin, run.last_bin + LINK_BIN_US)
        ratio = "n/a" if run.peak_ratio is None else f"{run.peak_ratio:.1%}"
        return make_event(
            "congestion", ts=ts, ts_end=ts_end, severity="warning", link=link, direction=direction,
            job=jobs[0] if len(jobs) == 1 else "", value=run.peak_ratio,
            summary=f"congestion on {link} {direction}: peak CE ratio {ratio}, {run.cnp} CNP, {run.pause} PFC pauses"
                    + (f", jobs {', '.join(jobs)}" if jobs else ""),
            details={"ce": run.ce, "ect": run.ect, "cnp": run.cnp, "pfc_pause": run.pause,
                     "pfc_quanta": run.quanta, "bins": run.bins, "jobs": jobs, "top_flows": top},
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

    def _flows_through(self, link: str, direction: str, start: int, end: int) -> tuple[list[str], list[dict]]:
        """Jobs (by bytes) and top flows (by CE marks, then bytes) on the link direction within [start, end)."""
        if not self._flows:
            return [], []
        rows = {c: np.concatenate([part[c] for part in self._flows]) for c in _FLOW_COLUMNS}
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
