"""Link health from switch counters: oper-status changes, flaps, error/discard/FCS rates, utilisation.

Counters are cumulative and sampled every few seconds per interface, so the detector keeps one small
state per (device, ifname) and walks the few rows of a batch in time order. Deltas go through
`counter_deltas`, which tells a 32- or 64-bit wrap from a reset (a reboot drops the counter to a small
value) by what the interface speed allows, so a rate is never a huge spike either way.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from pipeline.detect.events import US_PER_S, Batch, Event, iso, make_event, ms_to_us, times_us
from pipeline.topology import Topology

OCTET_COUNTERS: tuple[str, ...] = ("in_octets", "out_octets")
FRAME_COUNTERS: tuple[str, ...] = (
    "in_pkts", "out_pkts", "in_errors", "out_errors", "in_discards", "out_discards", "fcs_errors",
    "pfc_rx_pause", "pfc_tx_pause", "ecn_marked",
)
COUNTERS: tuple[str, ...] = OCTET_COUNTERS + FRAME_COUNTERS
ERROR_COUNTERS: tuple[str, ...] = ("in_errors", "out_errors", "in_discards", "out_discards", "fcs_errors")
MIN_FRAME_BYTES = 64
TWO_32 = np.uint64(2**32)


@dataclass(frozen=True, kw_only=True)
class LinkHealthConfig:
    """Link-health thresholds (defaults in pipeline/detect/README.md)."""

    flap_transitions: int = 3
    flap_window_ms: float = 60_000.0
    error_rate_per_s: float = 1.0
    wrap_slack: float = 1.1


def counter_deltas(prev: np.ndarray, cur: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Increase of cumulative uint64 counters from `prev` to `cur`, at most `limit` (float) if wrapped.

    A drop is a 32-bit wrap when both values fit 32 bits and the wrapped increase is within `limit` and
    half the 32-bit range; else a 64-bit wrap under the same rule; else a reset, counted as `cur` (what
    the counter gathered since it restarted from zero).
    """
    prev = prev.astype(np.uint64)
    cur = cur.astype(np.uint64)
    grew = cur >= prev
    modular = cur - prev
    fits32 = (prev < TWO_32) & (cur < TWO_32)
    wrapped32 = np.where(fits32, (TWO_32 - np.where(fits32, prev, 0)) + cur, 0).astype(np.uint64)
    wrap32 = ~grew & fits32 & (wrapped32.astype(np.float64) <= np.minimum(limit, 2.0**31))
    wrap64 = ~grew & ~wrap32 & (modular.astype(np.float64) <= np.minimum(limit, 2.0**63))
    return np.where(grew | wrap64, modular, np.where(wrap32, wrapped32, cur)).astype(np.uint64)


def wrap_limits(speed_bps: float, elapsed_us: int, slack: float) -> np.ndarray:
    """Largest increase each of COUNTERS can show over `elapsed_us` at line rate (inf if speed unknown)."""
    if speed_bps <= 0:
        return np.full(len(COUNTERS), np.inf)
    octets = speed_bps / 8 * elapsed_us / US_PER_S * slack
    return np.array([octets] * len(OCTET_COUNTERS) + [octets / MIN_FRAME_BYTES] * len(FRAME_COUNTERS))


def counter_rates(batch: Batch, topology: Topology, *, wrap_slack: float = 1.1) -> dict[str, np.ndarray]:
    """Per link, direction and sample interval: bits/s, packets/s and utilisation (for the dashboard).

    On a leaf's port `out` is the link's `up` direction; on a spine's port it is `down`. Rows of ports
    that are not fabric links are skipped. Returns columns ts_start, ts_end, device, link, direction,
    bps, pps, utilisation, one row per interval and direction.
    """
    ts = times_us(batch["ts"])
    order = np.lexsort((ts, batch["ifname"].astype(str), batch["device"].astype(str)))
    values = np.stack([batch[name].astype(np.uint64) for name in COUNTERS], axis=1)
    out: dict[str, list[object]] = {k: [] for k in ("ts_start", "ts_end", "device", "link", "direction",
                                                    "bps", "pps", "utilisation")}
    for before, after in pairwise(order):
        device, link = str(batch["device"][after]), str(batch["link"][after])
        same = device == batch["device"][before] and batch["ifname"][after] == batch["ifname"][before]
        elapsed = int(ts[after] - ts[before])
        if not same or not link or elapsed <= 0:
            continue
        speed = float(batch["speed_bps"][after]) or topology.link(link).speed_gbps * 1e9
        delta = counter_deltas(values[before], values[after], wrap_limits(speed, elapsed, wrap_slack))
        seconds = elapsed / US_PER_S
        out_direction = "up" if topology.link(link).leaf == device else "down"
        in_direction = "down" if out_direction == "up" else "up"
        for direction, octets, pkts in ((out_direction, delta[1], delta[3]), (in_direction, delta[0], delta[2])):
            bps = float(octets) * 8 / seconds
            out["ts_start"].append(ts[before])
            out["ts_end"].append(ts[after])
            out["device"].append(device)
            out["link"].append(link)
            out["direction"].append(direction)
            out["bps"].append(bps)
            out["pps"].append(float(pkts) / seconds)
            out["utilisation"].append(bps / speed)
    result = {k: np.array(v, dtype=object) for k, v in out.items() if k in ("device", "link", "direction")}
    for k in ("ts_start", "ts_end"):
        result[k] = np.array(out[k], dtype=np.int64).astype("datetime64[us]")
    for k in ("bps", "pps", "utilisation"):
        result[k] = np.array(out[k], dtype=np.float64)
    return result


def traffic_rates(bins: Batch, topology: Topology, *, window_ms: float = 1000.0) -> dict[str, np.ndarray]:
    """Per link, direction and epoch-aligned window: bits/s and utilisation from `link_bins` bytes (already
    scaled by the sampling rate) — the utilisation of links whose switches report no counters.

    Returns columns ts (window start), link, direction, bps, utilisation, sorted by window, link, direction.
    """
    window_us = ms_to_us(window_ms)
    known = np.isin(bins["link"].astype(str), topology.link_ids())
    links = bins["link"][known].astype(str)
    directions = bins["direction"][known].astype(str)
    windows = times_us(bins["ts"][known]) // window_us
    order = np.lexsort((directions, links, windows))
    links, directions, windows = links[order], directions[order], windows[order]
    starts = np.flatnonzero(np.r_[True, (windows[1:] != windows[:-1]) | (links[1:] != links[:-1])
                                  | (directions[1:] != directions[:-1])]) if len(order) else np.array([], int)
    sums = np.add.reduceat(bins["bytes"][known][order].astype(np.float64), starts) if len(order) else np.zeros(0)
    bps = sums * 8 * US_PER_S / window_us
    speed = np.array([topology.link(link).speed_gbps * 1e9 for link in links[starts]], dtype=np.float64)
    return {
        "ts": (windows[starts] * window_us).astype("datetime64[us]"),
        "link": links[starts].astype(object),
        "direction": directions[starts].astype(object),
        "bps": bps,
        "utilisation": bps / speed,
    }


@dataclass
class _Episode:
    """An open flap or error episode."""

    first: int
    last: int
    count: int = 0
    peak: float = 0.0
    totals: dict[str, int] = field(default_factory=dict)


@dataclass
class _Port:
    """The last sample of one interface, and its open error episode."""

    link: str
    ts: int
    oper_up: bool
    values: np.ndarray
    errors: _Episode | None = None


@dataclass
class _Oper:
    """Oper status of a link (down while either end reports down), or of a port that is not a fabric link."""

    link: str
    device: str
    ifname: str
    down_ends: set[tuple[str, str]] = field(default_factory=set)
    transitions: deque[int] = field(default_factory=deque)
    flap: _Episode | None = None

    @property
    def name(self) -> str:
        return self.link or f"{self.device} {self.ifname}"


class LinkHealthDetector:
    """link_down, link_up, link_flap and errors from `counters` rows.

    A fabric link is down from the first of its two ends reporting down until both report up again, so
    each change is one event, named by the device that reported it. Assumes each interface's rows
    arrive in time order (older rows are dropped); an interface's first sample sets its baseline and
    raises nothing.
    """

    def __init__(self, config: LinkHealthConfig | None = None) -> None:
        self.config = config or LinkHealthConfig()
        self._ports: dict[tuple[str, str], _Port] = {}
        self._opers: dict[str, _Oper] = {}

    def update(self, batch: Batch) -> list[Event]:
        ts = times_us(batch["ts"])
        values = np.stack([batch[name].astype(np.uint64) for name in COUNTERS], axis=1)
        events: list[Event] = []
        for row in np.argsort(ts, kind="stable"):
            key = (str(batch["device"][row]), str(batch["ifname"][row]))
            link, up = str(batch["link"][row]), bool(batch["oper_up"][row])
            port = self._ports.get(key)
            if port is None:
                self._ports[key] = _Port(link=link, ts=int(ts[row]), oper_up=up, values=values[row])
                if not up:
                    self._oper(key, link).down_ends.add(key)
                continue
            if ts[row] <= port.ts:
                continue
            events += self._sample(key, link, port, int(ts[row]), up, float(batch["speed_bps"][row]), values[row])
        return events

    def flush(self) -> list[Event]:
        """End of input: close every open flap and error episode."""
        events: list[Event] = []
        for oper in self._opers.values():
            if oper.flap is not None:
                events.append(self._flap_event(oper, oper.flap))
                oper.flap = None
        for (device, ifname), port in self._ports.items():
            if port.errors is not None:
                events.append(self._errors_event(device, ifname, port.link, port.errors))
                port.errors = None
        return events

    def _oper(self, key: tuple[str, str], link: str) -> _Oper:
        return self._opers.setdefault(link or f"{key[0]} {key[1]}", _Oper(link=link, device=key[0], ifname=key[1]))

    def _sample(
        self, key: tuple[str, str], link: str, port: _Port, ts: int, up: bool, speed: float, values: np.ndarray
    ) -> list[Event]:
        device, ifname = key
        config = self.config
        elapsed = ts - port.ts
        delta = counter_deltas(port.values, values, wrap_limits(speed, elapsed, config.wrap_slack))
        events = self._oper_change(key, link, port, ts, up) if up != port.oper_up else self._flap_calm(key, link, ts)
        rates = {name: float(delta[COUNTERS.index(name)]) * US_PER_S / elapsed for name in ERROR_COUNTERS}
        peak = max(rates.values())
        if peak >= config.error_rate_per_s:
            if port.errors is None:
                port.errors = _Episode(first=port.ts, last=ts, totals=dict.fromkeys(ERROR_COUNTERS, 0))
            port.errors.last, port.errors.count = ts, port.errors.count + 1
            port.errors.peak = max(port.errors.peak, peak)
            for name in ERROR_COUNTERS:
                port.errors.totals[name] += int(delta[COUNTERS.index(name)])
        elif port.errors is not None:
            events.append(self._errors_event(device, ifname, link, port.errors))
            port.errors = None
        port.link, port.ts, port.oper_up, port.values = link, ts, up, values
        return events

    def _flap_calm(self, key: tuple[str, str], link: str, ts: int) -> list[Event]:
        """Close the flap episode of the port's link once it has been calm for the flap window."""
        oper = self._oper(key, link)
        if oper.flap is None or ts - oper.flap.last <= ms_to_us(self.config.flap_window_ms):
            return []
        flap, oper.flap = oper.flap, None
        return [self._flap_event(oper, flap)]

    def _oper_change(self, key: tuple[str, str], link: str, port: _Port, ts: int, up: bool) -> list[Event]:
        """A port changed oper status: the link changes when its first end goes down or its last comes up."""
        device, ifname = key
        events = self._flap_calm(key, link, ts)
        oper = self._oper(key, link)
        was_down = bool(oper.down_ends)
        if up:
            oper.down_ends.discard(key)
        else:
            oper.down_ends.add(key)
        if was_down == bool(oper.down_ends):
            return events
        events.append(make_event(
            "link_up" if up else "link_down", ts=ts, ts_end=ts, severity="info" if up else "critical", link=link,
            device=device, summary=f"{link or 'port'} {'up' if up else 'down'}, reported by {device} {ifname}",
            details={"ifname": ifname, "previous_sample": iso(port.ts)},
        ))
        window = ms_to_us(self.config.flap_window_ms)
        oper.transitions.append(ts)
        while oper.transitions and oper.transitions[0] < ts - window:
            oper.transitions.popleft()
        if oper.flap is not None:
            oper.flap.last, oper.flap.count = ts, oper.flap.count + 1
        elif len(oper.transitions) >= self.config.flap_transitions:
            oper.flap = _Episode(first=oper.transitions[0], last=ts, count=len(oper.transitions))
        return events

    @staticmethod
    def _flap_event(oper: _Oper, flap: _Episode) -> Event:
        return make_event(
            "link_flap", ts=flap.first, ts_end=flap.last, severity="critical", link=oper.link, device=oper.device,
            value=flap.count, summary=f"{oper.name} changed oper status {flap.count} times",
            details={"ifname": oper.ifname, "transitions": flap.count},
        )

    @staticmethod
    def _errors_event(device: str, ifname: str, link: str, errors: _Episode) -> Event:
        rising = ", ".join(f"{name} +{count}" for name, count in errors.totals.items() if count)
        return make_event(
            "errors", ts=errors.first, ts_end=errors.last, severity="warning", link=link, device=device,
            value=errors.peak, summary=f"{device} {ifname} ({link}) errors rising: {rising}",
            details={"ifname": ifname, "peak_per_s": errors.peak, "samples": errors.count, **errors.totals},
        )
