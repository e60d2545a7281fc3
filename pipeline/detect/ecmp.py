"""ECMP imbalance: how evenly a leaf spreads its upward bytes over its uplinks, per time window.

The definition is pipeline/detect/README.md's (the generator's truth, simulator/imbalance.py,
applies it to the packets it writes). Each epoch-aligned window gives every uplink of a leaf its share
of the leaf's `up` bytes. An uplink that carried nothing in the window is left out (a link dead all
window is link_down's and fast_recovery's news, not ECMP's), so n counts the uplinks in use; one that
failed within the window keeps its smaller share.

One sustained imbalance is one incident: it opens when the deviation exceeds `threshold` and lasts while
it exceeds `threshold` × `clear_fraction`; windows that are not judged (too few bytes, one uplink in use)
neither extend nor end it, and a balanced window or two between uneven ones do not split it; it ends after
`clear_windows` balanced windows in a row or `idle_windows` unjudged ones. A deviation hovering at the
threshold (the demo's leaf4 at 32-35% over a 3 s job period) was one event per crossing before the
balanced windows were counted, and one per congestion episode on its spine before the lower bar to stay
open (63-65% in each window of the episode: it ended and opened again 8 s later).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from pipeline.detect.events import Batch, Event, make_event, ms_to_us, times_us
from pipeline.topology import Topology


@dataclass(frozen=True, kw_only=True)
class EcmpConfig:
    """ECMP-imbalance thresholds (defaults in pipeline/detect/README.md)."""

    window_ms: float = 1000.0
    threshold: float = 0.15
    clear_fraction: float = 0.67
    min_bytes: int = 1_000_000
    lateness_ms: float = 1000.0
    clear_windows: int = 3
    idle_windows: int = 10


@dataclass
class _Episode:
    first_window: int
    last_window: int
    peak: float
    peak_shares: dict[str, float]
    bytes: dict[str, int] = field(default_factory=dict)
    windows: int = 0
    last_seen: int = 0  # the last window judged or found quiet for this leaf
    balanced: int = 0  # balanced windows in a row since the last uneven one
    idle: int = 0  # unjudged windows in a row since the last judged one


def window_shares(uplink_bytes: dict[str, int]) -> dict[str, float]:
    """Each uplink's share of the bytes over the uplinks that carried any."""
    used = {link: size for link, size in uplink_bytes.items() if size > 0}
    total = sum(used.values())
    return {link: size / total for link, size in sorted(used.items())} if total else {}


def deviation(shares: dict[str, float]) -> float:
    """max |share - 1/n| over the n uplinks in use."""
    return max(abs(share - 1 / len(shares)) for share in shares.values()) if shares else 0.0


class EcmpDetector:
    """`ecmp_imbalance` events from `link_bins` rows (direction `up`), per leaf of `topology`.

    Windows close once bins `lateness_ms` past their end have been seen (bins may arrive out of order
    across links within that bound).
    """

    def __init__(self, topology: Topology, config: EcmpConfig | None = None) -> None:
        self.config = config or EcmpConfig()
        self._leaf_of = {link.id: link.leaf for link in topology.links}
        self._uplinks: dict[str, list[str]] = defaultdict(list)
        for link in topology.links:
            self._uplinks[link.leaf].append(link.id)
        self._pending: dict[int, dict[str, int]] = {}  # window -> uplink -> bytes (plain dicts: picklable)
        self._episodes: dict[str, _Episode] = {}
        self._latest = np.iinfo(np.int64).min
        self._judged_through = np.iinfo(np.int64).min

    def update(self, bins: Batch) -> list[Event]:
        window_us = ms_to_us(self.config.window_ms)
        ts = times_us(bins["ts"])
        if not len(ts):
            return []
        self._latest = max(self._latest, int(ts.max()))
        links = bins["link"].astype(str)
        mask = ((bins["direction"].astype(str) == "up") & np.isin(links, list(self._leaf_of))
                & (ts // window_us > self._judged_through))
        windows = ts[mask] // window_us
        names, link_index = np.unique(links[mask], return_inverse=True)
        keys, inverse = np.unique(windows * max(len(names), 1) + link_index, return_inverse=True)
        sums = np.zeros(len(keys), dtype=np.uint64)
        np.add.at(sums, inverse, bins["bytes"][mask].astype(np.uint64))
        for key, size in zip(keys.tolist(), sums.tolist(), strict=True):
            window, index = divmod(key, len(names))
            uplinks = self._pending.setdefault(window, {})
            uplinks[str(names[index])] = uplinks.get(str(names[index]), 0) + size
        closable = (self._latest - ms_to_us(self.config.lateness_ms)) // window_us - 1
        return self._close_windows(closable)

    def flush(self) -> list[Event]:
        """End of input: judge every pending window, the last partial one included, and close episodes."""
        events = self._close_windows(max(self._pending, default=0))
        for leaf in list(self._episodes):
            events.append(self._event(leaf, self._episodes.pop(leaf)))
        return events

    def _close_windows(self, last: int) -> list[Event]:
        """Judge windows up to index `last`, oldest first, opening, extending and ending each leaf's episode."""
        events: list[Event] = []
        self._judged_through = max(self._judged_through, last)
        for window in sorted(w for w in self._pending if w <= last):
            per_link = self._pending.pop(window)
            for leaf, uplinks in self._uplinks.items():
                events += self._skip_quiet(leaf, window - 1)
                uplink_bytes = {link: per_link.get(link, 0) for link in uplinks}
                shares = window_shares(uplink_bytes)
                worst = deviation(shares)
                judged = len(shares) >= 2 and sum(uplink_bytes.values()) >= self.config.min_bytes
                bar = self.config.threshold * (self.config.clear_fraction if leaf in self._episodes else 1.0)
                if judged and worst > bar:
                    events += self._uneven(leaf, window, worst, shares, uplink_bytes)
                else:
                    events += self._even_or_quiet(leaf, window, judged)
        for leaf in list(self._episodes):
            events += self._skip_quiet(leaf, last)
        return events

    def _uneven(self, leaf: str, window: int, worst: float, shares: dict[str, float],
                uplink_bytes: dict[str, int]) -> list[Event]:
        episode = self._episodes.get(leaf)
        opened = episode is None
        if episode is None:
            episode = self._episodes[leaf] = _Episode(window, window, worst, shares)
        episode.last_window = episode.last_seen = window
        episode.windows, episode.balanced, episode.idle = episode.windows + 1, 0, 0
        if worst > episode.peak:
            episode.peak, episode.peak_shares = worst, shares
        for link, size in uplink_bytes.items():
            episode.bytes[link] = episode.bytes.get(link, 0) + size
        return [self._event(leaf, episode, state="open")] if opened else []

    def _even_or_quiet(self, leaf: str, window: int, judged: bool) -> list[Event]:
        episode = self._episodes.get(leaf)
        if episode is None:
            return []
        episode.last_seen = window
        if judged:
            episode.balanced, episode.idle = episode.balanced + 1, 0
        else:
            episode.idle += 1
        if episode.balanced >= self.config.clear_windows or episode.idle >= self.config.idle_windows:
            return [self._event(leaf, self._episodes.pop(leaf))]
        return []

    def _skip_quiet(self, leaf: str, through: int) -> list[Event]:
        """Windows with no bins of any uplink, up to `through`, are unjudged windows of the leaf's episode."""
        episode = self._episodes.get(leaf)
        if episode is None or through <= episode.last_seen:
            return []
        episode.idle += through - episode.last_seen
        episode.last_seen = through
        if episode.idle >= self.config.idle_windows:
            return [self._event(leaf, self._episodes.pop(leaf))]
        return []

    def _event(self, leaf: str, episode: _Episode, state: str = "closed") -> Event:
        window_us = ms_to_us(self.config.window_ms)
        shares = window_shares(episode.bytes)
        summary = ", ".join(f"{link} {share:.0%}" for link, share in shares.items())
        return make_event(
            "ecmp_imbalance", ts=episode.first_window * window_us, ts_end=(episode.last_window + 1) * window_us,
            severity="warning", device=leaf, direction="up", value=episode.peak,
            summary=f"{leaf} uplinks unevenly loaded: {summary}",
            details={"shares": shares, "peak_shares": episode.peak_shares, "expected_share": 1 / len(shares),
                     "peak_deviation": episode.peak, "windows": episode.windows, "bytes": dict(episode.bytes)},
            state=state, identity=(leaf, episode.first_window),
            updated=(max(episode.last_seen, episode.last_window) + 1) * window_us,
        )
