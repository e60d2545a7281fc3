"""ECMP-imbalance ground truth: the contract's definition applied to the packets written, with the
detector's parameters (the caller passes them, normally pipeline.detect.ecmp.EcmpConfig()), so a skew
the hash produces by itself is listed just like an injected one.

Definition (the same words as pipeline/detect/README.md): per leaf and per epoch-aligned window of
`window_ms` (a packet's window is its µs timestamp floor-divided by the window), sum the wire bytes of
the packets on each of the leaf's uplinks in direction `up` (as the collector counts them: frame length
without the mirror encapsulation; direction from the addresses, `up` when the source is behind the leaf).
The uplinks in use are those that carried any such byte in the window; each one's share is its bytes
over theirs. A window is judged when at least two uplinks are in use and their bytes total at least
`min_bytes`; it is imbalanced when max |share − 1/n| over the n uplinks in use exceeds `threshold`, or
`threshold` × `clear_fraction` while the leaf's imbalance is open (so one hovering at the threshold stays one).
Windows holding a link failure count like any other: the failed uplink's share falls with the time it
was down, so the failure may show as imbalance next to its fast_recovery and link_down events; an uplink
down for the whole window carried nothing and is left out of n. The imbalanced windows of a leaf are one
event until `clear_windows` judged, balanced windows in a row or `idle_windows` windows in a row that are
not judged (quiet, or one uplink in use) end it: ts = first imbalanced window's start, ts_end = last
imbalanced window's end, `windows` = imbalanced windows, `shares` over the bytes summed across them,
`peak_deviation` and `peak_shares` from the most uneven.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class ImbalanceRule(Protocol):
    """The ECMP-imbalance parameters the truth applies: the detector's config has exactly these fields."""

    @property
    def window_ms(self) -> float: ...

    @property
    def threshold(self) -> float: ...

    @property
    def min_bytes(self) -> int: ...

    @property
    def clear_fraction(self) -> float: ...

    @property
    def clear_windows(self) -> int: ...

    @property
    def idle_windows(self) -> int: ...


@dataclass
class _Run:
    first: int
    last: int
    peak: float
    peak_shares: dict[str, float]
    bytes: dict[str, int] = field(default_factory=dict)
    windows: int = 0


def _shares(sizes: dict[str, int]) -> dict[str, float]:
    used = {link: size for link, size in sizes.items() if size > 0}
    total = sum(used.values())
    return {link: size / total for link, size in sorted(used.items())}


def _deviation(shares: dict[str, float]) -> float:
    return max(abs(share - 1 / len(shares)) for share in shares.values())


def imbalance_events(ts_ns: np.ndarray, wire: np.ndarray, uplink: np.ndarray, links: list[tuple[str, str]],
                     injected: dict[str, tuple[str, float]], rule: ImbalanceRule) -> list[dict[str, Any]]:
    """`ecmp_imbalance` truth events. Per record: `ts_ns`, `wire` bytes, `uplink` = index into `links` when
    the record is in direction `up` on a leaf-spine link, -1 otherwise. `links`: (link id, leaf) per index.
    `injected`: leaf -> (spine, share) of the scenario's ecmp_imbalance faults (they last the whole capture)."""
    window_us = round(rule.window_ms * 1000)
    up = uplink >= 0
    keys, inverse = np.unique((ts_ns[up] // 1000 // window_us) * len(links) + uplink[up], return_inverse=True)
    sums = np.zeros(len(keys), dtype=np.int64)
    np.add.at(sums, inverse, wire[up].astype(np.int64))
    per_window: dict[int, dict[str, int]] = {}
    for key, size in zip(keys.tolist(), sums.tolist(), strict=True):
        window, index = divmod(key, len(links))
        per_window.setdefault(window, {})[links[index][0]] = size
    events: list[dict[str, Any]] = []
    for leaf in sorted({leaf for _, leaf in links}):
        uplinks = [link for link, owner in links if owner == leaf]
        runs: list[_Run] = []
        open_run: _Run | None = None
        balanced = 0
        seen = 0
        for window in range(min(per_window, default=0), max(per_window, default=-1) + 1):
            sizes = {link: per_window.get(window, {}).get(link, 0) for link in uplinks}
            shares = _shares(sizes)
            judged = len(shares) >= 2 and sum(sizes.values()) >= rule.min_bytes
            bar = rule.threshold * (rule.clear_fraction if open_run is not None else 1.0)
            if judged and _deviation(shares) > bar:
                if open_run is None:
                    open_run = _Run(window, window, 0.0, {})
                    runs.append(open_run)
                open_run.last, open_run.windows, balanced, seen = window, open_run.windows + 1, 0, window
                if _deviation(shares) > open_run.peak:
                    open_run.peak, open_run.peak_shares = _deviation(shares), shares
                for link, size in sizes.items():
                    open_run.bytes[link] = open_run.bytes.get(link, 0) + size
            elif open_run is not None:
                balanced += judged
                seen = window if judged else seen
                if balanced >= rule.clear_windows or window - seen >= rule.idle_windows:
                    open_run = None
        events += [_event(leaf, run, window_us, injected.get(leaf)) for run in runs]
    return events


def _event(leaf: str, run: _Run, window_us: int, fault: tuple[str, float] | None) -> dict[str, Any]:
    return {
        "kind": "ecmp_imbalance", "leaf": leaf, "ts_us": run.first * window_us, "ts_end_us": (run.last + 1) * window_us,
        "shares": {link: round(share, 4) for link, share in _shares(run.bytes).items()},
        "peak_deviation": round(run.peak, 4),
        "peak_shares": {link: round(share, 4) for link, share in run.peak_shares.items()},
        "windows": run.windows, "bytes": dict(sorted(run.bytes.items())),
        "injected": fault is not None,
        "configured_spine": fault[0] if fault else None, "configured_share": fault[1] if fault else None,
    }
