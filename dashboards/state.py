"""The view's state, kept in the URL so a view can be shared: parsing never fails, it drops what it cannot trust.

Every field is validated here, before anything reaches a query: links against the topology, labels against
their tuples, addresses through `ipaddress`, times through ISO parsing with a bounded span. Whatever does not
validate is replaced by the default, so a hostile or garbled URL gives the default view, never an error.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

from dashboards.packets import request_of_token
from pipeline.labels import APPS, TRAFFIC_CLASSES

RANGES: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT_RANGE = "5m"
MAX_SPAN = timedelta(days=31)
MIN_SPAN = timedelta(milliseconds=10)
SPAN_PADDING = 0.02  # of a data span, on each side
ARRIVING = timedelta(seconds=15)  # a store whose newest record is older is not "live", whatever the mode
HEATMAP_METRICS: dict[str, str] = {
    "util": "utilisation (% of link speed, busiest direction)",
    "share": "uplink share (% of the leaf's bytes through each spine)",
    "ce": "ECN-CE ratio (CE / ECN-capable RoCE packets)",
    "pfc": "PFC pause frames",
}
DEFAULT_METRIC = "util"
MAX_TEXT = 64
MAX_QUERY_STRING = 2048
EVENT_SEPARATOR = "@"
INCIDENT_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True, slots=True)
class ViewState:
    """What the page shows; every field already validated."""

    live: bool = True
    range: str = DEFAULT_RANGE
    start: datetime | None = None
    end: datetime | None = None
    link: str = ""
    metric: str = DEFAULT_METRIC
    app: str = ""
    traffic_class: str = ""
    job: str = ""
    host: str = ""
    port: int | None = None
    event: str = ""
    packets: str = ""  # the packets view's request (dashboards.packets.PacketRequest.token), '' when closed
    incident: str = ""  # the event_id whose details the incident panel shows, '' when closed

    def event_key(self) -> tuple[str, datetime] | None:
        """(link, failure time) of the selected fast-recovery event, if any."""
        return parse_event(self.event)


def event_token(link: str, ts: datetime) -> str:
    """The URL form of one fast-recovery event: `<link>@<ISO time with µs>`."""
    return f"{link}{EVENT_SEPARATOR}{_as_utc(ts).isoformat(timespec='microseconds')}"


def parse_event(token: str) -> tuple[str, datetime] | None:
    link, sep, when = token.rpartition(EVENT_SEPARATOR)
    ts = parse_time(when) if sep else None
    return (link, ts) if link and ts is not None else None


def parse_time(text: str) -> datetime | None:
    """An ISO-8601 time as aware UTC, or None when it is not one (or absurdly far from today)."""
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        return None
    try:
        value = _as_utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
    except ValueError:
        return None
    return value if 1970 <= value.year <= 2200 else None


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _text(value: object) -> str:
    """Free text from the user, bounded and stripped of control characters; still only ever a bound parameter."""
    if not isinstance(value, str):
        return ""
    return "".join(ch for ch in value if ch.isprintable()).strip()[:MAX_TEXT]


def _choice(value: object, allowed: Iterable[str], default: str = "") -> str:
    return value if isinstance(value, str) and value in set(allowed) else default


def _host(value: object) -> str:
    text = _text(value)
    try:
        return str(ipaddress.ip_address(text)) if text else ""
    except ValueError:
        return ""


def _port(value: object) -> int | None:
    text = _text(value) if not isinstance(value, int) else str(value)
    digits = text.isascii() and text.isdigit() and len(text) <= 5  # '²'.isdigit() is True, int('²') fails
    return int(text) if digits and int(text) <= 65535 else None


def _incident(value: object) -> str:
    """An event_id (the detectors write 16 hex digits), or '' when it is not one."""
    text = _text(value)
    return text if INCIDENT_ID.fullmatch(text) else ""


def _packets(value: object) -> str:
    """The packets view's request, canonical, or '' when it is not a valid one."""
    found = request_of_token(value) if isinstance(value, str) else None
    return found.token() if found is not None else ""


def _flag(value: object, default: bool) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).lower()
    if text in {"1", "true", "on", "yes"}:
        return True
    if text in {"0", "false", "off", "no"}:
        return False
    return default


def build_state(values: dict[str, object], link_ids: Iterable[str], *, live: bool = True) -> ViewState:
    """A ViewState from untrusted values (URL parameters or control values), each checked on its own;
    `live` is the mode when the values do not say."""
    links = set(link_ids)
    start, end = parse_time(str(values.get("from", ""))), parse_time(str(values.get("to", "")))
    if start is None or end is None or not MIN_SPAN <= end - start <= MAX_SPAN:
        start = end = None
    event = _text(values.get("event"))
    key = parse_event(event)
    return ViewState(
        live=_flag(values.get("live"), live) if start is None else False,
        range=_choice(values.get("range"), RANGES, DEFAULT_RANGE),
        start=start,
        end=end,
        link=_choice(values.get("link"), links),
        metric=_choice(values.get("metric"), HEATMAP_METRICS, DEFAULT_METRIC),
        app=_choice(values.get("app"), APPS),
        traffic_class=_choice(values.get("class"), TRAFFIC_CLASSES),
        job=_text(values.get("job")),
        host=_host(values.get("host")),
        port=_port(values.get("port")),
        event=event_token(*key) if key is not None and key[0] in links else "",
        packets=_packets(values.get("packets")),
        incident=_incident(values.get("incident")),
    )


def from_query_string(search: str | None, link_ids: Iterable[str], *, live: bool = True) -> ViewState:
    """Parse `location.search` (with or without the leading '?'); anything unusable falls back to defaults."""
    text = (search or "")[:MAX_QUERY_STRING].lstrip("?")
    values: dict[str, object] = {}
    for key, value in parse_qsl(text, keep_blank_values=False):
        values.setdefault(key, value)
    return build_state(values, link_ids, live=live)


def to_query_string(state: ViewState) -> str:
    """`?...` holding the mode and the fields that differ from the default view, in a stable order."""
    default = ViewState()
    pairs: list[tuple[str, str]] = []
    names = {"traffic_class": "class", "start": "from", "end": "to"}
    for field in dataclasses.fields(ViewState):
        value = getattr(state, field.name)
        if field.name != "live" and value == getattr(default, field.name):
            continue
        if isinstance(value, datetime):
            text = value.isoformat(timespec="microseconds")
        elif isinstance(value, bool):
            text = "1" if value else "0"
        else:
            text = str(value)
        pairs.append((names.get(field.name, field.name), text))
    return f"?{urlencode(pairs)}" if pairs else ""


def window(state: ViewState, latest: datetime | None, now: datetime,
           earliest: datetime | None = None) -> tuple[datetime, datetime]:
    """The [start, end) the page shows: an explicit history range, else the chosen range ending at the newest
    data; when `earliest` (the first record of that range, asked for only when nothing is recent) is later
    than the range's start, the data's own span, padded, so a 260 ms capture fills the charts instead of their
    right-most pixel.

    Ending at the newest data rather than at the wall clock keeps a replayed capture (or a paused pipeline)
    on screen; in a live fabric the two are the same within the export interval.
    """
    if state.start is not None and state.end is not None:
        return state.start, state.end
    end = _as_utc(latest) + timedelta(microseconds=1) if latest is not None else _as_utc(now)
    start = end - RANGES[state.range]
    if earliest is not None and _as_utc(earliest) > start:
        return padded_span(_as_utc(earliest), end)
    return start, end


def padded_span(first: datetime, end: datetime) -> tuple[datetime, datetime]:
    """[first, end) widened by SPAN_PADDING on each side, at least MIN_SPAN wide: the data's span with its first
    and last points off the charts' edges."""
    pad = max((end - first) * SPAN_PADDING, (MIN_SPAN - (end - first)) / 2, timedelta(0))
    return first - pad, end + pad


def is_recent(latest: datetime | None, now: datetime, range_name: str) -> bool:
    """Whether the newest record lies within the chosen range of the wall clock."""
    return latest is not None and _as_utc(latest) >= _as_utc(now) - RANGES[range_name]


_MARKUP: dict[str, str | int | None] = {"[": "(", "]": ")", "*": " ", "_": "\\_", "`": "'"}


def state_link(text: str, state: ViewState) -> str:
    """A markdown link (a table cell, a search result) to this page showing `state`; `text` made safe inside
    the link (no brackets, no markup)."""
    return f"[{text.translate(str.maketrans(_MARKUP))}]({to_query_string(state)})"


def empty_note(rows: Sequence[object], what: str, **filters: object) -> str:
    """What an empty table means, with the filters that emptied it ("No flows in this window with link
    leaf1-spine1, port 4791."); '' when there are rows."""
    if rows:
        return ""
    shown = ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in filters.items() if value not in ("", None))
    return f"No {what} in this window" + (f" with {shown}." if shown else ".")


def window_text(state: ViewState, start: datetime, end: datetime, latest: datetime | None, now: datetime) -> str:
    """The window in words, to the ms with its zone, and whether the page is live: "live" only while data
    is arriving, never for a capture from January."""
    start, end = _as_utc(start), _as_utc(end)
    last = f"{end:%H:%M:%S.%f}"[:-3] if start.date() == end.date() else _ms_text(end)
    shown = f"{_ms_text(start)} → {last} UTC"
    if latest is None:
        return f"{shown} · no data yet"
    if not state.live:
        return f"{shown} · history"
    age = _as_utc(now) - _as_utc(latest)
    if age <= ARRIVING:
        return f"{shown} · live"
    return f"{shown} · no data since {_ms_text(_as_utc(latest))} UTC ({_age_text(age)} ago)"


def _ms_text(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S.%f}"[:-3]


def _age_text(age: timedelta) -> str:
    """A wall-clock age in its largest whole unit, singular or plural as it should be."""
    seconds = int(age.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}" + ("" if count == 1 else "s")
    return f"{seconds} s"


def window_payload(state: ViewState, start: datetime, end: datetime) -> dict[str, str]:
    """What the window store hands the sections: the canonical state and the resolved times."""
    return {"search": to_query_string(state), "start": start.isoformat(timespec="microseconds"),
            "end": end.isoformat(timespec="microseconds")}


def read_window(data: object, link_ids: Iterable[str]) -> tuple[ViewState, datetime, datetime] | None:
    """The sections' inputs back from the browser, validated again (a client can send anything)."""
    if not isinstance(data, dict):
        return None
    start, end = parse_time(str(data.get("start", ""))), parse_time(str(data.get("end", "")))
    if start is None or end is None or not MIN_SPAN <= end - start <= MAX_SPAN:
        return None
    return from_query_string(str(data.get("search", "")), link_ids), start, end
