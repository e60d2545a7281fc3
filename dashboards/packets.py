"""The packets of an incident or a flow: what is asked (PacketRequest), who answers (PacketSource), how the
rows are marked for the eye, and the `download pcap` route.

This package may not import the collectors, so the answering side (select, cut, dissect) is handed in by
the wiring as a PacketSource, the way /metrics is. A request is parsed from untrusted values (URL or query
string) and either validates whole or is refused with one line: the route answers 400 with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

from flask import Flask, Response, request

from pipeline.errors import FabricscopeError, InputError

PCAP_ROUTE = "/packets.pcapng"
VIEW_ROWS = 200  # packets the view lists around the event (the pcap takes up to the source's limit)
MAX_LIMIT = 100_000
GAP_MS = 1.0  # a pause between two listed packets longer than this gets a row of its own
PSN_MODULUS = 1 << 24
ACK_OPCODE, CNP_OPCODE = 0x11, 0x81
ECN_NAMES = ("Not-ECT", "ECT(1)", "ECT(0)", "CE")
ECN_CE = 3
_EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_FLOW = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[0-9.]+):\d{1,5}>(\[[0-9A-Fa-f:.]+\]|[0-9.]+):\d{1,5}/\w{1,5}")
_LINK = re.compile(r"[A-Za-z0-9_.#-]{1,64}")


@dataclass(frozen=True)
class PacketRequest:
    """Which packets: an incident (`event`, its window and link) or a flow (`flow` as `fabricscope packets
    --flow` reads it, optional BTH destination `qp`), narrowed by `link` and [start, end]; at most `limit`
    (None: the source's default)."""

    event: str = ""
    flow: str = ""
    qp: int | None = None
    link: str = ""
    start: datetime | None = None
    end: datetime | None = None
    limit: int | None = None

    def args(self) -> dict[str, str]:
        """The query-string form parse_request reads back."""
        values = {"event": self.event, "flow": self.flow, "qp": "" if self.qp is None else str(self.qp),
                  "link": self.link, "from": _iso(self.start), "to": _iso(self.end),
                  "limit": "" if self.limit is None else str(self.limit)}
        return {name: value for name, value in values.items() if value}

    def token(self) -> str:
        return urlencode(self.args())

    def described(self) -> str:
        what = f"incident {self.event}" if self.event else f"flow {self.flow}" + (f" qp {self.qp}" if self.qp else "")
        return what + (f" on {self.link}" if self.link else "")


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat(timespec="microseconds")


def _time(name: str, text: str) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(name, f"'{text[:64]}' is not an ISO 8601 time") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _number(name: str, text: str, top: int) -> int | None:
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and 0 < int(text) <= top):
        raise InputError(name, f"'{text[:16]}' is not a whole number from 1 to {top}")
    return int(text)


def parse_request(values: Mapping[str, str]) -> PacketRequest:
    """A PacketRequest from untrusted values; InputError (one line) naming the first bad one."""
    event, flow, link = (str(values.get(name, "")).strip() for name in ("event", "flow", "link"))
    if bool(event) == bool(flow):
        raise InputError("packets", "give one of event=ID or flow=SRC:PORT>DST:PORT/PROTO")
    if event and not _EVENT_ID.fullmatch(event):
        raise InputError("event", "is not an incident id")
    if flow and not _FLOW.fullmatch(flow):
        raise InputError("flow", "is not SRC:PORT>DST:PORT/PROTO (e.g. 10.0.1.5:49152>10.0.2.7:4791/udp)")
    if link and not _LINK.fullmatch(link):
        raise InputError("link", "is not a link id")
    qp = _number("qp", str(values.get("qp", "")).strip(), PSN_MODULUS - 1)
    if qp is not None and not flow:
        raise InputError("qp", "needs flow=")
    start, end = _time("from", str(values.get("from", "")).strip()), _time("to", str(values.get("to", "")).strip())
    if start is not None and end is not None and start > end:
        raise InputError("from", "is after to")
    limit = _number("limit", str(values.get("limit", "")).strip(), MAX_LIMIT)
    return PacketRequest(event=event, flow=flow, qp=qp, link=link, start=start, end=end, limit=limit)


def request_of_token(token: str) -> PacketRequest | None:
    """The request a view's URL names, None when it names none or a bad one (the view then shows nothing)."""
    if not token:
        return None
    try:
        return parse_request(dict(parse_qsl(token[:1024])))
    except InputError:
        return None


@dataclass(frozen=True)
class PacketListing:
    """Dissected packets (rows with `fabricscope packets`' columns plus `ts_ns`), the incident's time when
    the request named one, the end of the selected window (so a silence after the last packet shows), how
    many packets matched before the view kept VIEW_ROWS of them, and whether more matched than were read."""

    rows: list[dict[str, Any]]
    event_ns: int | None = None
    end_ns: int | None = None
    matched: int = 0
    capped: bool = False


class PacketSource(Protocol):
    """The packets behind the dashboard (the recorder's store or the replayed captures); the wiring supplies
    it. Both raise InputError for a request that names nothing (unknown incident, no packets stored)."""

    def listing(self, packet_request: PacketRequest, rows: int) -> PacketListing:
        """At most `rows` packets around the request's event (from the start of a flow), dissected."""
        ...

    def pcapng(self, packet_request: PacketRequest) -> tuple[bytes, int]:
        """The selection cut as pcapng and its packet count (needs no tshark)."""
        ...


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.3f}"


def _clock(ns: int) -> str:
    moment = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{ns % 1_000_000_000 // 1000:06d} UTC"


def _gap_row(start_ns: int, end_ns: int, event_ns: int | None, *, to_window_end: bool) -> dict[str, Any]:
    gap_ns = end_ns - start_ns
    text = f"no packets for {_ms(gap_ns)} ms" + (" (to the end of the selected window)" if to_window_end else "")
    if event_ns is not None and start_ns - round(GAP_MS * 1e6) <= event_ns <= end_ns:
        text += f" — link down (incident at {_clock(event_ns)})"
    return {"time": _clock(start_ns), "info": text, "mark": "gap"}


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """Cells as `fabricscope packets` prints them: ECN by name, RoCE numbers in hex, '' for absent."""
    cells = {name: ("" if value is None else value) for name, value in row.items() if name != "ts_ns"}
    cells["ecn"] = ECN_NAMES[row["ecn"]] if row.get("ecn") is not None else ""
    cells["cnp"] = "CNP" if row.get("cnp") else ""
    for name in ("opcode", "dest_qp", "aeth_syndrome"):
        cells[name] = f"0x{row[name]:x}" if row.get(name) is not None else ""
    return cells


def marked_rows(listing: PacketListing) -> list[dict[str, Any]]:
    """The listing as table rows: a `mark` per packet (PSN gap, NAK, CE, CNP) and a row of its own for every
    silence longer than GAP_MS (the one holding the incident says `link down`), times relative to it.

    A PSN gap is a PSN other than the previous one + 1 (mod 2^24) of the same flow and QP on the same link,
    among RoCE requests (ACKs and CNPs carry no sequence of their own)."""
    table: list[dict[str, Any]] = []
    last_psn: dict[tuple[Any, ...], int] = {}
    previous_ns: int | None = None
    gap_ns = round(GAP_MS * 1e6)
    origin = listing.event_ns if listing.event_ns is not None else (listing.rows[0]["ts_ns"] if listing.rows else 0)
    for row in listing.rows:
        ts_ns = int(row["ts_ns"])
        if previous_ns is not None and ts_ns - previous_ns > gap_ns:
            table.append(_gap_row(previous_ns, ts_ns, listing.event_ns, to_window_end=False))
        previous_ns = ts_ns
        marks = []
        opcode, psn = row.get("opcode"), row.get("psn")
        if psn is not None and opcode not in (None, ACK_OPCODE, CNP_OPCODE):
            key = (row.get("link"), row.get("src"), row.get("dst"), row.get("src_port"), row.get("dst_port"),
                   row.get("dest_qp"))
            before = last_psn.get(key)
            if before is not None and psn != (before + 1) % PSN_MODULUS:
                marks.append("PSN gap")
            last_psn[key] = psn
        if row.get("aeth") in ("NAK", "RNR NAK"):
            marks.append(str(row["aeth"]))
        if row.get("ecn") == ECN_CE:
            marks.append("CE")
        if row.get("cnp"):
            marks.append("CNP")
        table.append({**_shown(row), "time": _clock(ts_ns), "delta_ms": _ms(ts_ns - origin),
                      "mark": ", ".join(marks)})
    if previous_ns is not None and listing.end_ns is not None and listing.end_ns - previous_ns > gap_ns:
        table.append(_gap_row(previous_ns, listing.end_ns, listing.event_ns, to_window_end=True))
    return table


def install_pcap_route(server: Flask, source: PacketSource) -> None:
    """GET PCAP_ROUTE?event=ID | flow=…[&qp=N][&link=L][&from=T][&to=T][&limit=N]: the slice as a pcapng
    attachment. Registered before any login check is installed or not, it sits behind the same before_request
    check as every other route."""

    def download() -> Response:
        try:
            packet_request = parse_request(request.args)
            body, count = source.pcapng(packet_request)
        except InputError as exc:
            return _refusal(str(exc), 400)
        except FabricscopeError as exc:
            return _refusal(str(exc), 503)
        if not count:
            return _refusal(f"no packets match {packet_request.described()}", 404)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", packet_request.event or packet_request.flow)[:80]
        return Response(body, content_type="application/x-pcapng", headers={
            "Content-Disposition": f'attachment; filename="fabricscope-{name}.pcapng"',
            "X-Packets": str(count)})

    server.add_url_rule(PCAP_ROUTE, "packets_pcapng", download)


def _refusal(text: str, status: int) -> Response:
    return Response(f"fabricscope: {text}\n", status, content_type="text/plain; charset=utf-8")
