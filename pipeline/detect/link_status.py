"""One `link_down` and one `link_up` per outage, timed by the earliest evidence: the switch's counters (oper
status, polled) or the traffic (the failure time of a fast recovery that cut flows, and the first packet on
the link when it came back).

Polled counters miss an outage shorter than their interval (on-change reports, gNMI ON_CHANGE or traps,
do not); traffic misses a link that carried nothing, and sees a link back only when flows return to it.
Reports of the same transition on one link within `same_within_ms` are one incident. The first report is
written at once (an operator is paged without waiting for the other source); when a later report of the
same transition is earlier (the traffic's failure time is known only once fast recovery has its evidence,
after the counters' oper-down), the incident is written again under the same `event_id`, timed by the
earlier report, which the `incidents` view then reads. An outage whose down and up are both known and
shorter than `flap_max_ms`, whoever reported them, is also a `link_flap` (a brief loss that recovered
before routing could settle), unless one is already reported over it; it is retimed with its outage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pipeline.detect.events import Event, event_us, iso, make_event, ms_to_us, revised, times_us

OUTAGE_KINDS = ("link_down", "link_up")
# Reports kept per transition kind and link, the latest by time. Not a window of time behind the newest: the
# sources' reports of one transition come out of time order by a batch or more (the traffic's only once fast
# recovery has its evidence, up to its timeout later; counters are not held to the records' clock), so the
# counters' report of the next outage must not drop the one the traffic's report of this outage merges into.
REPORTS_KEPT = 64


@dataclass(frozen=True, kw_only=True)
class LinkStatusConfig:
    same_within_ms: float = 1000.0
    flap_max_ms: float = 100.0


@dataclass(eq=False)
class _Report:
    """One transition of a link: the earliest time a source showed it, and the row last written for it (None
    when restored from a format-2 checkpoint, which kept only the time: such a report is never retimed)."""

    ts: int
    row: Event | None


@dataclass
class _Outage:
    """A link's latest outage: its down, its up once known, and the `link_flap` it made if it was brief."""

    down: _Report
    up: _Report | None = None
    flap: Event | None = None


def source_of(event: Event) -> str:
    """Which source reported an outage event: the traffic's say so in their details, the counters' do not."""
    return str(json.loads(str(event["details"])).get("source", "counters"))


class LinkStatus:
    """Passes events through, merging link_down/link_up reports and adding traffic-seen flaps."""

    def __init__(self, config: LinkStatusConfig | None = None) -> None:
        self.config = config or LinkStatusConfig()
        self._reported: dict[tuple[str, str], list[_Report]] = {}
        self._counter_flaps: dict[str, list[tuple[int, int]]] = {}  # link -> link_health's flaps (start, end)
        self._outages: dict[str, _Outage] = {}

    @classmethod
    def from_format_2(cls, old: LinkStatus) -> LinkStatus:
        """The state a format-2 checkpoint held (report times, flaps, outage starts; not the rows written) in
        this form: its reports still merge later ones, but are never rewritten."""
        state = vars(old)
        status = cls(state["config"])
        status._reported = {key: [_Report(ts, None) for ts in times] for key, times in state["_reported"].items()}
        status._counter_flaps = {link: list(flaps) for link, flaps in state["_flaps"].items()}
        for link, down in state["_down"].items():
            known = [report for report in status._reported.get(("link_down", link), []) if report.ts == down]
            status._outages[link] = _Outage(known[0] if known else _Report(down, None))
        return status

    def merge(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            kind, link = str(event["kind"]), str(event["link"])
            ts = int(times_us(event["ts"]))
            if kind in OUTAGE_KINDS:
                out += self._transition(event, kind, link, ts)
            elif kind == "link_flap":
                self._counter_flaps.setdefault(link, []).append((ts, int(times_us(event["ts_end"]))))
                out.append(event)
            elif kind == "fast_recovery":
                out.append(event)
                for derived in self._from_traffic(event, link, ts):
                    out += self._transition(derived, str(derived["kind"]), link, int(times_us(derived["ts"])))
            else:
                out.append(event)
        return out

    def _transition(self, event: Event, kind: str, link: str, ts: int) -> list[Event]:
        """A link_down or link_up report: written when it is the first of its transition or earlier than the
        one written; the outage it belongs to is checked for a flap (or its flap retimed)."""
        report, out = self._report(event, kind, link, ts)
        outage = self._outages.get(link)
        if kind == "link_down":
            if outage is None or outage.down is not report:
                self._outages[link] = _Outage(report)
                return out
        elif outage is None or (outage.up is not None and outage.up is not report) or report.ts < outage.down.ts:
            return out  # an up of no outage known here, or of one whose up was another
        else:
            outage.up = report
        return out + self._flap(outage, link, event)

    def _report(self, event: Event, kind: str, link: str, ts: int) -> tuple[_Report, list[Event]]:
        """The transition this report is of (a new one unless one was reported within `same_within_ms`), and
        the row to write: the event itself when new, the written one retimed when this report is earlier."""
        window = ms_to_us(self.config.same_within_ms)
        reports = self._reported.setdefault((kind, link), [])
        known = next((other for other in reports if abs(ts - other.ts) <= window), None)
        if known is None:
            known = _Report(ts, event)
            reports.append(known)
            if len(reports) > REPORTS_KEPT:  # bounded in a long run
                reports.remove(min(reports, key=lambda other: other.ts))
            return known, [event]
        if ts >= known.ts:
            return known, []
        first, known.ts = known.ts, ts
        if known.row is None:
            return known, []
        known.row = self._retimed(known.row, event, kind, link, first)
        return known, [known.row]

    @staticmethod
    def _retimed(row: Event, earlier: Event, kind: str, link: str, first: int) -> Event:
        """`row` written again at `earlier`'s time, its details listing every report of the transition."""
        details = json.loads(str(row["details"]))
        reports = details.get("reports") or [{"source": source_of(row), "ts": iso(first)}]
        ts, source = event_us(earlier, "ts"), source_of(earlier)
        state = "down" if kind == "link_down" else "up"
        return revised(row, ts=ts, ts_end=ts, updated=event_us(earlier, "updated"),
                       summary=f"{link} {state}, seen in the {source} {(first - ts) / 1000:.1f} ms before "
                               f"the {reports[0]['source']} reported it",
                       details={**details, "source": source, "reports": [*reports, {"source": source, "ts": iso(ts)}]})

    def _flap(self, outage: _Outage, link: str, trigger: Event) -> list[Event]:
        """A `link_flap` for an outage shorter than `flap_max_ms`, once, retimed when its down or up is. Strictly
        shorter: polled counters time an outage to their interval, and one that spans exactly one poll may
        have lasted longer."""
        if outage.up is None:
            return []
        down, up = outage.down.ts, outage.up.ts
        text = {"summary": f"{link} flapped: down {(up - down) / 1000:.1f} ms", "value": (up - down) / 1000}
        if outage.flap is not None:
            if (event_us(outage.flap, "ts"), event_us(outage.flap, "ts_end")) == (down, up):
                return []
            details = {**json.loads(str(outage.flap["details"])), "down_ms": (up - down) / 1000}
            outage.flap = revised(outage.flap, ts=down, ts_end=up, updated=event_us(trigger, "updated"),
                                  details=details, **text)
            return [outage.flap]
        if not 0 <= up - down < ms_to_us(self.config.flap_max_ms):
            return []
        self._counter_flaps[link] = [(start, end) for start, end in self._counter_flaps.get(link, [])
                                     if end >= down - ms_to_us(self.config.same_within_ms)]
        if any(start <= up and down <= end for start, end in self._counter_flaps[link]):
            return []
        outage.flap = make_event("link_flap", ts=down, ts_end=up, severity="critical", link=link,
                                 device=str(trigger["device"]), summary=str(text["summary"]), value=(up - down) / 1000,
                                 details={"source": source_of(trigger), "down_ms": (up - down) / 1000})
        return [outage.flap]

    @staticmethod
    def _from_traffic(failure: Event, link: str, down: int) -> list[Event]:
        """The link_down (and link_up, once the link carried traffic again) that a fast_recovery implies, written
        at the data time the failure's row was.

        Only a failure that cut flows shows the link going down in the traffic: one the counters' oper-down
        found on a quiet link is timed by its last packet, which may be long before the fault (a link idle
        between bursts), so it implies no link_down of its own (the counters' report stands). Traffic back on
        the link shows it up either way."""
        back, device = json.loads(str(failure["details"])).get("link_back_us"), str(failure["device"])
        known = event_us(failure, "updated")
        events = []
        if int(failure["flows_affected"]) > 0:
            events.append(make_event("link_down", ts=down, ts_end=down, severity="critical", link=link,
                                     device=device, summary=f"{link} down, seen in the traffic",
                                     details={"source": "traffic"}, updated=max(down, known)))
        if back is not None:
            events.append(make_event("link_up", ts=back, ts_end=back, severity="info", link=link, device=device,
                                     summary=f"{link} up, traffic back", details={"source": "traffic"},
                                     updated=max(back, known)))
        return events
