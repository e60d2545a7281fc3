"""Collective slowdown: a job's all-reduce iterations taking longer than its own baseline.

The baseline is the median all-reduce time of the job's recent normal iterations (it needs a few
first), so it follows a job whose message sizes drift but not one that is being slowed down right now.
Slow iterations form one incident until `clear_iterations` normal ones in a row end it (one stretched
stretch, one event). It is written open at its first slow iteration and closed once over, naming as
likely causes the links whose congestion episodes overlap the slow iterations and that those iterations
crossed. A job whose iteration numbers start again (a new run of it) starts a new baseline.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.detect.events import Batch, Event, event_us, make_event, ms_to_us, times_us

BLAME_KINDS = ("congestion", "pfc_storm")


@dataclass(frozen=True, kw_only=True)
class CollectiveConfig:
    """Collective-slowdown thresholds (defaults in pipeline/detect/README.md)."""

    factor: float = 1.25
    baseline_iterations: int = 5
    clear_iterations: int = 3
    baseline_window: int = 20
    blame_wait_ms: float = 1000.0
    congestion_memory_ms: float = 60_000.0


@dataclass(frozen=True)
class _Iteration:
    iteration: int
    ts: int
    ts_end: int
    allreduce_ms: float
    links: frozenset[str]


@dataclass(frozen=True)
class _Congestion:
    kind: str
    link: str
    direction: str
    ts: int
    ts_end: int
    value: float | None


@dataclass
class _Job:
    normal: deque[float]
    last_iteration: int = -1
    last_end: int = 0
    slow: list[_Iteration] = field(default_factory=list)
    baseline_ms: float = 0.0
    calm: int = 0  # normal iterations in a row since the last slow one
    updated: int = 0


class CollectiveDetector:
    """`collective_slowdown` events from `iterations` rows; congestion events fed to `observe` are blamed.

    Assumes each job's iterations arrive in iteration order (older ones are dropped). A finished slow
    episode waits `blame_wait_ms` of iteration time for congestion events that close after it.
    """

    def __init__(self, config: CollectiveConfig | None = None) -> None:
        self.config = config or CollectiveConfig()
        self._jobs: dict[str, _Job] = {}
        self._done: list[tuple[str, list[_Iteration], float]] = []
        self._congestion: list[_Congestion] = []
        self._outages: dict[str, list[int | None]] = {}  # link -> [failed, back or None], the latest per link
        self._latest = np.iinfo(np.int64).min

    def observe(self, events: list[Event]) -> None:
        """Remember congestion and PFC-storm events to blame, and link outages (fast_recovery, link_down,
        link_up): an iteration that crossed a link while it failed or came back is that failure's
        consequence, judged neither slow nor normal."""
        for event in events:
            kind, link = event["kind"], str(event["link"])
            if kind in BLAME_KINDS:
                self._congestion.append(_Congestion(
                    kind, link, event["direction"], event_us(event, "ts"), event_us(event, "ts_end"), event["value"]))
            elif kind in ("fast_recovery", "link_down"):
                back = json.loads(str(event["details"])).get("link_back_us") if kind == "fast_recovery" else None
                known = self._outages.get(link)
                if known is None or (known[1] is not None and known[1] < event_us(event, "ts")):
                    self._outages[link] = [event_us(event, "ts"), None]
                if back is not None:
                    self._outages[link][1] = int(back)
            elif kind == "link_up" and link in self._outages:
                self._outages[link][1] = event_us(event, "ts")

    def _during_outage(self, it: _Iteration) -> bool:
        """Whether an iteration crossed a link between its failure and its return (or since its failure)."""
        return any(link in it.links and down <= it.ts_end and (up is None or it.ts <= up)
                   for link, (down, up) in self._outages.items() if down is not None)

    def update(self, iterations: Batch) -> list[Event]:
        ts, ts_end = times_us(iterations["ts"]), times_us(iterations["ts_end"])
        if not len(ts):
            return []
        jobs = iterations["job"].astype(str)
        numbers = iterations["iteration"].astype(np.int64)
        opened: list[Event] = []
        for row in np.lexsort((ts, jobs)):
            links = frozenset(str(link) for link in iterations["links"][row])
            opened += self._iteration(jobs[row], _Iteration(int(numbers[row]), int(ts[row]), int(ts_end[row]),
                                                            float(iterations["allreduce_ms"][row]), links))
        self._latest = max(self._latest, int(ts_end.max()))
        horizon = self._latest - ms_to_us(self.config.congestion_memory_ms)
        self._congestion = [c for c in self._congestion if c.ts_end >= horizon]
        ready_by = self._latest - ms_to_us(self.config.blame_wait_ms)
        ready = [done for done in self._done if done[1][-1].ts_end <= ready_by]
        self._done = [done for done in self._done if done[1][-1].ts_end > ready_by]
        return opened + [self._event(*done, state="closed") for done in ready]

    def flush(self) -> list[Event]:
        """End of input: close finished and still-open slow stretches."""
        for job, state in self._jobs.items():
            if state.slow:
                self._done.append((job, state.slow, state.baseline_ms))
                state.slow = []
        events = [self._event(*done, state="closed") for done in self._done]
        self._done = []
        return events

    def _iteration(self, job: str, it: _Iteration) -> list[Event]:
        """Judge one iteration; returns the open row of a slowdown it starts."""
        config = self.config
        state = self._jobs.setdefault(job, _Job(normal=deque(maxlen=config.baseline_window)))
        if it.iteration <= state.last_iteration:
            if it.ts <= state.last_end:
                return []  # a repeat or a straggler of the current run
            self._finish(job, state)
            state.normal.clear()  # numbers start again: a new run of the job, judged on its own baseline
        state.last_iteration, state.last_end = it.iteration, it.ts_end
        if self._during_outage(it):
            return []
        if len(state.normal) >= config.baseline_iterations or state.slow:
            baseline = state.baseline_ms if state.slow else statistics.median(state.normal)
            if it.allreduce_ms > baseline * config.factor:
                state.calm = 0
                if state.slow:
                    state.slow.append(it)
                    return []
                state.baseline_ms, state.slow = baseline, [it]
                return [self._event(job, state.slow, baseline, state="open")]
        if state.slow:
            state.calm += 1
            if state.calm >= config.clear_iterations:
                self._finish(job, state)
        state.normal.append(it.allreduce_ms)
        return []

    def _finish(self, job: str, state: _Job) -> None:
        if state.slow:
            self._done.append((job, state.slow, state.baseline_ms))
        state.slow, state.calm = [], 0

    def _event(self, job: str, slow: list[_Iteration], baseline_ms: float, *, state: str) -> Event:
        worst = max(it.allreduce_ms for it in slow)
        blamed = self._blame(slow)
        first, last = slow[0].iteration, slow[-1].iteration
        span = f"iteration {first}" if first == last else f"iterations {first}-{last}"
        cause = f"; likely cause: {', '.join(b['link'] + ' ' + b['direction'] for b in blamed)}" if blamed else ""
        job_state = self._jobs.get(job)
        updated = max(self._latest, slow[-1].ts_end, (job_state.updated + 1) if job_state else 0)
        if job_state:
            job_state.updated = updated
        return make_event(
            "collective_slowdown", ts=slow[0].ts, ts_end=slow[-1].ts_end, severity="warning", job=job,
            link=blamed[0]["link"] if blamed else "", direction=blamed[0]["direction"] if blamed else "unknown",
            value=worst / baseline_ms, state=state, updated=updated, identity=(job, slow[0].ts),
            summary=f"job {job} all-reduce up to {worst / baseline_ms:.1f}x its baseline "
                    f"({worst:.2f} ms vs {baseline_ms:.2f} ms) over {span}{cause}",
            details={"baseline_ms": baseline_ms, "factor": self.config.factor,
                     "iterations": [{"iteration": it.iteration, "allreduce_ms": it.allreduce_ms} for it in slow],
                     "links": blamed},
        )

    def _blame(self, slow: list[_Iteration]) -> list[dict[str, Any]]:
        """Links (and directions) whose congestion overlaps slow iterations that crossed them, most overlap first."""
        overlap: dict[tuple[str, str], float] = defaultdict(float)
        peak: dict[tuple[str, str], float | None] = {}
        kinds: dict[tuple[str, str], set[str]] = defaultdict(set)
        for it in slow:
            for c in self._congestion:
                common = min(it.ts_end, c.ts_end) - max(it.ts, c.ts)
                if c.link in it.links and common >= 0:
                    key = (c.link, c.direction)
                    overlap[key] += common / 1000
                    kinds[key].add(c.kind)
                    if c.value is not None:
                        peak[key] = max(peak.get(key) or 0.0, c.value)
        ranked = sorted(overlap, key=lambda key: (-overlap[key], key))
        return [{"link": link, "direction": direction, "overlap_ms": overlap[(link, direction)],
                 "peak_ce_ratio": peak.get((link, direction)), "kinds": sorted(kinds[(link, direction)])}
                for link, direction in ranked]
