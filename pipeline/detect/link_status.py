"""One `link_down` and one `link_up` per outage, whoever saw it first: the switch's counters (oper status,
polled) or the traffic (fast recovery's failure time, and the first packet on the link when it came back).

Polled counters miss an outage shorter than their interval (on-change reports, gNMI ON_CHANGE or traps,
do not); traffic misses a link that carried nothing, and sees a link back only when flows return to it.
Reports of the same transition on one link within `same_within_ms` are one. An outage whose down and up
are both known and shorter than `flap_max_ms`, whoever reported them, is also a `link_flap` (a brief loss
that recovered before routing could settle), unless one is already reported over it.
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
        self._down: dict[str, int] = {}  # link -> start of the outage reported last, until its up

    def merge(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            kind, link = str(event["kind"]), str(event["link"])
            ts = int(times_us(event["ts"]))
            if kind in OUTAGE_KINDS:
                out += self._transition(event, kind, link, ts)
            elif kind == "link_flap":
                self._flaps.setdefault(link, []).append((ts, int(times_us(event["ts_end"]))))
                out.append(event)
            elif kind == "fast_recovery":
                out.append(event)
                for derived in self._from_traffic(event, link, ts):
                    out += self._transition(derived, str(derived["kind"]), link, int(times_us(derived["ts"])))
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

    def _transition(self, event: Event, kind: str, link: str, ts: int) -> list[Event]:
        """A link_down or link_up report: passed on unless the other source told it first; an up that ends an
        outage shorter than `flap_max_ms` (whoever saw its down) also makes a `link_flap`."""
        if kind == "link_down":  # the earliest report of an outage times it, even one told second
            known = self._down.get(link)
            same = known is not None and abs(ts - known) <= ms_to_us(self.config.same_within_ms)
            self._down[link] = min(known, ts) if same and known is not None else ts
        if kind == "link_down":
            return [event] if self._first(kind, link, ts) else []
        down = self._down.get(link)
        flap = [] if down is None else self._flap(event, link, down, ts)
        return ([event] if self._first(kind, link, ts) else []) + flap

    def _flap(self, up_event: Event, link: str, down: int, up: int) -> list[Event]:
        """A `link_flap` for an outage shorter than `flap_max_ms`, once. Strictly shorter: polled counters
        time an outage to their interval, and one that spans exactly one poll may have lasted longer."""
        if not 0 <= up - down < ms_to_us(self.config.flap_max_ms):
            return []
        self._flaps[link] = [(start, end) for start, end in self._flaps.get(link, [])
                             if end >= down - ms_to_us(self.config.same_within_ms)]
        if any(start <= up and down <= end for start, end in self._flaps[link]):
            return []
        self._flaps[link].append((down, up))
        source = json.loads(str(up_event["details"])).get("source", "counters")
        return [make_event("link_flap", ts=down, ts_end=up, severity="critical", link=link,
                           device=str(up_event["device"]), summary=f"{link} flapped: down {(up - down) / 1000:.1f} ms",
                           value=(up - down) / 1000, details={"source": source, "down_ms": (up - down) / 1000})]

    @staticmethod
    def _from_traffic(failure: Event, link: str, down: int) -> list[Event]:
        """The link_down (and link_up, once the link carried traffic again) that a fast_recovery implies."""
        back, device = json.loads(str(failure["details"])).get("link_back_us"), str(failure["device"])
        events = [make_event("link_down", ts=down, ts_end=down, severity="critical", link=link, device=device,
                             summary=f"{link} down, seen in the traffic", details={"source": "traffic"})]
        if back is not None:
            events.append(make_event("link_up", ts=back, ts_end=back, severity="info", link=link, device=device,
                                     summary=f"{link} up, traffic back", details={"source": "traffic"}))
        return events
