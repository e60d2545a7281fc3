"""`fabricscope packets`: a flow's, link's or incident's mirrored packets, cut to a pcap and/or dissected.

    fabricscope packets [--pcap FILE... --topology T] [--event ID | --flow SRC:PORT>DST:PORT/PROTO [--qp N]
                        | --link L] [--from T] [--to T] [--limit N] [--out SLICE.pcap] [--format table|json]

With --pcap the given captures are the store (indexed under <data-dir>/packets/index, never copied);
without it, the packet recorder's segments under <data-dir>/packets. Selections combine (all must hold).
--event reads the incident from the store's `incidents` view and takes its window (--margin seconds before
`ts` and after `ts_end`) and, unless --flow or --link is given, its link. Matching uses our decoder (what
the flow rows mean: the monitored frame's 5-tuple, BTH destination QP, the link the topology attributes the
copy to); the listing comes from Wireshark's dissectors through pyshark, run on the cut slice only.

--out writes pcapng (it keeps the capture interface names that attribute mirrored copies to links).
Without --out the packets are listed (--format table unless given). A selection matching nothing says so
on stderr and exits 0 without writing --out; a missing tshark is exit 2 with the apt-get line.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fabricscope.commands.events import parse_since
from pipeline.errors import InputError

if TYPE_CHECKING:
    from collectors.packet_select import PacketStore, Selection, Slice
    from fabricscope.config import Config
    from pipeline.topology import Topology

DEFAULT_MARGIN_S = 1.0
COLUMNS = ("time", "link", "direction", "src", "dst", "src_port", "dst_port", "opcode", "dest_qp", "psn",
           "aeth", "aeth_syndrome", "ecn", "cnp", "length", "protocol", "info")
ECN_NAMES = ("Not-ECT", "ECT(1)", "ECT(0)", "CE")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from collectors.packet_select import DEFAULT_LIMIT

    parser.add_argument("--pcap", nargs="+", metavar="FILE", help="captures to select from (default: the "
                        "packet recorder's store in --data-dir)")
    parser.add_argument("--topology", metavar="T", help="topology YAML (DESIGN section 4); or FABRICSCOPE_TOPOLOGY")
    parser.add_argument("--event", metavar="ID", help="an incident's event_id: its window and link")
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN_S, metavar="S",
                        help="with --event: seconds before ts and after ts_end (default: %(default)s)")
    parser.add_argument("--flow", metavar="SRC:PORT>DST:PORT/PROTO",
                        help="one flow, e.g. 10.0.1.5:49152>10.0.2.7:4791/udp (IPv6 as [addr]:port)")
    parser.add_argument("--qp", type=int, metavar="N", help="with --flow: only this BTH destination QP")
    parser.add_argument("--link", metavar="L", help="one link id, e.g. leaf1-spine1")
    parser.add_argument("--from", dest="start", metavar="T", help="ISO 8601 time or look-back (30s, 15m, 2h)")
    parser.add_argument("--to", dest="end", metavar="T", help="ISO 8601 time or look-back")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                        help="at most this many packets, the first in capture order (default: %(default)s)")
    parser.add_argument("--out", metavar="SLICE.pcap", help="write the selected packets here (pcapng)")
    parser.add_argument("--format", choices=("table", "json"), dest="output_format",
                        help="list the packets dissected (default: table when there is no --out)")


def run(args: argparse.Namespace, config: Config) -> int:
    from collectors.dissect import packet_rows, require_tshark
    from pipeline.topology import load_topology

    if args.limit <= 0:
        raise InputError("--limit", "must be positive")
    if args.qp is not None and args.flow is None:
        raise InputError("--qp", "needs --flow")
    listing = args.output_format or (None if args.out else "table")
    if listing:
        require_tshark()
    topology = load_topology(config.required_topology())
    selection = _selection(args, topology)
    store = _store(args, topology)
    cut = store.select(selection)
    if not len(cut):
        print(f"fabricscope packets: no packets match {_described(args)} in {_where(args)}", file=sys.stderr)
        return 0
    if cut.capped:
        print(f"fabricscope packets: more packets match; the first {len(cut)} kept (--limit)", file=sys.stderr)
    if args.out:
        _write(cut, Path(args.out))
        print(f"fabricscope packets: {len(cut)} packets written to {args.out}", file=sys.stderr)
    if listing:
        print(_render(packet_rows(cut.frames, topology), listing))
    return 0


def _selection(args: argparse.Namespace, topology: Topology) -> Selection:
    from collectors.packet_select import EARLIEST_NS, LATEST_NS, Selection, parse_flow

    now = datetime.now(UTC)
    start = _ns(parse_since(args.start, now=now)) if args.start else EARLIEST_NS
    end = _ns(parse_since(args.end, now=now)) if args.end else LATEST_NS
    link = args.link
    if args.event:
        event_start, event_end, event_link = _incident(args)
        start, end = max(start, event_start), min(end, event_end)
        if link is None and args.flow is None:
            link = event_link or None
    links = None
    if link is not None:
        if link not in {item.id for item in topology.links}:
            raise InputError("--link", f"'{link}' is not a link of the topology ({', '.join(topology.link_ids())})")
        links = (topology.link(link).index,)
    flow = parse_flow(args.flow, args.qp) if args.flow else None
    if start > end:
        raise InputError("--from", "is after --to")
    return Selection(start_ns=start, end_ns=end, links=links, flow=flow, limit=args.limit)


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _incident(args: argparse.Namespace) -> tuple[int, int, str]:
    """(window start, window end in ns, link) of incident `--event` from the store's `incidents` view."""
    from fabricscope.commands.query import read_only_config, read_only_query
    from pipeline.store import Store

    sql = "SELECT ts, ts_end, link FROM incidents WHERE event_id = {event_id:String} LIMIT 1"
    with Store(read_only_config(args)) as store:
        rows = read_only_query(store, sql, {"event_id": args.event}).rows
    if not rows:
        raise InputError("--event", f"no incident '{args.event}' in the store (see fabricscope events)")
    ts, ts_end, link = rows[0]
    margin = round(args.margin * 1e9)
    return _ns(_utc(ts)) - margin, _ns(_utc(ts_end)) + margin, str(link)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _store(args: argparse.Namespace, topology: Topology) -> PacketStore:
    from collectors.packet_select import PacketStore, replay_index_for
    from collectors.pcapfile import open_capture
    from collectors.recorder import store_directory
    from fabricscope.packet_source import INDEX_DIR, packet_store

    if args.pcap:
        for pcap in args.pcap:
            open_capture(pcap).close()  # a missing or foreign file is named before anything is read
        return PacketStore([Path(pcap) for pcap in args.pcap], topology,
                           replay_index_for(store_directory(args.data_dir) / INDEX_DIR, topology))
    try:
        return packet_store(args.data_dir, topology)
    except InputError as exc:
        raise InputError("--data-dir", f"{exc.reason}; or give --pcap FILE") from None


def _described(args: argparse.Namespace) -> str:
    parts = [f"{name} {value}" for name, value in (("--event", args.event), ("--flow", args.flow),
             ("--qp", args.qp), ("--link", args.link), ("--from", args.start), ("--to", args.end)) if value is not None]
    return " ".join(parts) or "anything"


def _where(args: argparse.Namespace) -> str:
    return ", ".join(args.pcap) if args.pcap else f"the recorded packets of {args.data_dir}"


def _write(cut: Slice, path: Path) -> None:
    from collectors.pcapng_writer import PcapngWriter

    try:
        writer = PcapngWriter(path, cut.frames.linktype)
    except OSError as exc:
        raise InputError(str(path), f"cannot write: {exc.strerror or exc}") from None
    try:
        writer.write(cut.frames)
    finally:
        writer.close()


def _render(rows: list[dict[str, Any]], output_format: str) -> str:
    from fabricscope.results import render
    from pipeline.store import QueryResult

    def shown(row: dict[str, Any]) -> tuple[Any, ...]:
        if output_format == "json":
            return tuple(row[name] for name in COLUMNS)
        cells = dict(row)
        cells["ecn"] = ECN_NAMES[row["ecn"]] if row["ecn"] is not None else ""
        cells["cnp"] = "CNP" if row["cnp"] else ""
        for name in ("opcode", "dest_qp", "aeth_syndrome"):
            cells[name] = f"0x{row[name]:x}" if row[name] is not None else ""
        return tuple(cells[name] for name in COLUMNS)

    result = QueryResult(columns=list(COLUMNS), types=[], rows=[shown(row) for row in rows])
    return render(result, output_format)
