"""One `link_down` and one `link_up` per outage, whoever saw it first: the switch's counters (oper status,
polled) or the traffic (fast recovery's failure time, and the first packet on the link when it came back).

Counters miss an outage shorter than their polling interval; traffic misses a link that carried nothing.
Reports of the same transition on one link within `same_within_ms` are one. An outage whose down and up
are both known and shorter than `flap_max_ms` is also a `link_flap` (a brief loss that recovered before
routing could settle), unless one is already reported over it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pipeline.detect.events import Event, make_event, ms_to_us, times_us

OUTAGE_KINDS = ("link_down", "link_up")


@dataclass(frozen=True, kw_only=True)
class LinkStatusConfig:
    same_within_ms: float = 1000.0
    flap_max_ms: float = 100.0


class LinkStatus:
    """Passes events through, merging link_down/link_up reports and adding traffic-seen flaps."""

    def __init__(self, config: LinkStatusConfig | None = None) -> None:
        self.config = config or LinkStatusConfig()
        self._reported: dict[tuple[str, str], list[int]] = {}
        self._flaps: dict[str, list[tuple[int, int]]] = {}

    def merge(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            kind, link = str(event["kind"]), str(event["link"])
            ts = int(times_us(event["ts"]))
            if kind in OUTAGE_KINDS:
                if self._first(kind, link, ts):
                    out.append(event)
            elif kind == "link_flap":
                self._flaps.setdefault(link, []).append((ts, int(times_us(event["ts_end"]))))
                out.append(event)
            elif kind == "fast_recovery":
                out.append(event)
                out += self._outage(event, link, ts)
            else:
                out.append(event)
        return out

    def _first(self, kind: str, link: str, ts: int) -> bool:
        """True when no report of this transition on this link was made within `same_within_ms`."""
        window = ms_to_us(self.config.same_within_ms)
        seen = self._reported[(kind, link)] = [other for other in self._reported.get((kind, link), [])
                                               if other >= ts - 2 * window]  # bounded in a long run
        if any(abs(ts - other) <= window for other in seen):
            return False
        seen.append(ts)
        return True

    def _outage(self, failure: Event, link: str, down: int) -> list[Event]:
        details = json.loads(str(failure["details"]))
        device, back = str(failure["device"]), details.get("link_back_us")
        events: list[Event] = []
        if self._first("link_down", link, down):
            events.append(make_event("link_down", ts=down, ts_end=down, severity="critical", link=link,
                                     device=device, summary=f"{link} down, seen in the traffic",
                                     details={"source": "traffic"}))
        if back is None:
            return events
        if self._first("link_up", link, back):
            events.append(make_event("link_up", ts=back, ts_end=back, severity="info", link=link, device=device,
                                     summary=f"{link} up, traffic back", details={"source": "traffic"}))
        brief = back - down <= ms_to_us(self.config.flap_max_ms)
        self._flaps[link] = [(start, end) for start, end in self._flaps.get(link, [])
                             if end >= down - ms_to_us(self.config.same_within_ms)]
        overlapping = any(start <= back and down <= end for start, end in self._flaps[link])
        if brief and not overlapping:
            self._flaps.setdefault(link, []).append((down, back))
            events.append(make_event(
                "link_flap", ts=down, ts_end=back, severity="critical", link=link, device=device,
                summary=f"{link} flapped: down {(back - down) / 1000:.1f} ms", value=(back - down) / 1000,
                details={"source": "traffic", "down_ms": (back - down) / 1000}))
        return events
