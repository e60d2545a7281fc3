"""How long the dashboard takes to answer, per route: a histogram kept here, registry-neutral.

Flask hooks time every request (pages, assets, Dash callbacks) from before_request to after_request; the
wiring (fabricscope.metrics) reads `snapshot()` at scrape time and exports it as a Prometheus histogram.
The route is Flask's URL rule (`/_dash-update-component`, `/assets/<path:filename>`…), never the raw
path, so the number of series stays bounded.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from dataclasses import dataclass

from flask import Flask, Response, g, request

# Upper bounds in seconds, Prometheus' default buckets: a callback's query is ~5 ms to seconds.
DEFAULT_BUCKETS_S: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                                        7.5, 10.0)
UNMATCHED_ROUTE = "unmatched"
_STARTED = "fabricscope_request_started"


@dataclass(frozen=True)
class RouteLatency:
    """One route's histogram: requests per bucket (not cumulative; the last counts those above every
    bound), their total seconds and count."""

    buckets: tuple[int, ...]
    sum_s: float
    count: int


class RequestLatency:
    """Request durations per route, in fixed buckets; observe() and snapshot() are thread-safe."""

    def __init__(self, buckets_s: tuple[float, ...] = DEFAULT_BUCKETS_S) -> None:
        if list(buckets_s) != sorted(set(buckets_s)) or not buckets_s:
            raise ValueError("buckets must be distinct and ascending")
        self.buckets_s = buckets_s
        self._lock = threading.Lock()
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def observe(self, route: str, seconds: float) -> None:
        index = bisect_left(self.buckets_s, seconds)  # a bound is inclusive (le), as in Prometheus
        with self._lock:
            counts = self._counts.setdefault(route, [0] * (len(self.buckets_s) + 1))
            counts[index] += 1
            self._sums[route] = self._sums.get(route, 0.0) + seconds

    def snapshot(self) -> dict[str, RouteLatency]:
        with self._lock:
            return {route: RouteLatency(tuple(counts), self._sums[route], sum(counts))
                    for route, counts in self._counts.items()}


def install_request_timing(server: Flask, latency: RequestLatency) -> None:
    """Time every request of `server` into `latency`. Install it before any hook that may answer early
    (the login check) so those answers are timed too."""

    @server.before_request
    def _start() -> None:
        g.setdefault(_STARTED, time.perf_counter())

    @server.after_request
    def _stop(response: Response) -> Response:
        started = g.pop(_STARTED, None)
        if started is not None:
            rule = request.url_rule
            latency.observe(rule.rule if rule is not None else UNMATCHED_ROUTE, time.perf_counter() - started)
        return response
