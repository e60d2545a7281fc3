"""A cut slice dissected by Wireshark through pyshark: the per-packet fields `fabricscope packets` lists.

Wireshark knows thousands of protocols we do not decode, so the addresses, RoCE fields and the protocol
summary come from its dissectors, run by tshark on the slice file only (pyshark is far too slow for the
collector's path: under 1k packets/s). Of a mirrored copy, the monitored frame is the one after the ERSPAN
header, so its first IP layer, and the L4 header after that, are the ones shown (as our flow rows do).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collectors.decode import Decoder
from collectors.packets import PacketBatch
from collectors.pcapng_writer import PcapngWriter
from collectors.protocols import CNP_OPCODE
from pipeline.errors import InputError
from pipeline.topology import DIRECTIONS, Topology

INSTALL_TSHARK = "sudo apt-get install -y tshark"
IP_LAYERS = ("ip", "ipv6")
L4_LAYERS = ("tcp", "udp")


def require_tshark() -> str:
    """tshark's path; InputError (exit 2) naming the apt-get line when it is missing."""
    path = shutil.which("tshark")
    if path is None:
        raise InputError("tshark", f"not found; Wireshark's dissectors need it: {INSTALL_TSHARK}")
    return path


def _summaries(path: Path, tshark: str) -> list[tuple[str, str]]:
    """(protocol, info) per packet: Wireshark's Protocol and Info columns.

    pyshark 0.6 reads its summary (PSML) stream wrongly: it looks for the header block again before every
    packet and so drops all but one. The parser here reads the header once."""
    import pyshark
    from pyshark.tshark.output_parser.tshark_xml import TsharkXmlParser

    class _HeaderOnce(TsharkXmlParser):
        async def get_packets_from_stream(self, stream: Any, existing_data: bytes,
                                          got_first_packet: bool = True) -> Any:
            if self._parse_summaries and self._psml_structure is None:
                existing_data = existing_data + await self._get_psml_struct(stream)
            return await super(TsharkXmlParser, self).get_packets_from_stream(
                stream, existing_data, got_first_packet=got_first_packet)

    class _Summaries(pyshark.FileCapture):
        def _setup_tshark_output_parser(self) -> TsharkXmlParser:
            return _HeaderOnce(parse_summaries=True)

    capture = _Summaries(str(path), only_summaries=True, tshark_path=tshark, keep_packets=False)
    try:
        return [(str(packet.protocol), str(packet.info)) for packet in capture]
    finally:
        _close(capture)


def _close(capture: Any) -> None:
    with contextlib.suppress(RuntimeError, asyncio.CancelledError):  # pyshark's event loop may be gone already
        capture.close()


def _iso(epoch: str) -> str:
    """Wireshark's epoch seconds (text, ns digits) as ISO 8601 UTC with microseconds."""
    seconds, _, fraction = epoch.partition(".")
    moment = datetime.fromtimestamp(int(seconds), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{(fraction + '000000')[:6]}Z"


def aeth_meaning(syndrome: int | None) -> str:
    """ACK, NAK or RNR NAK from the AETH syndrome's top three bits (IBTA 9.7.5.1); '' without an AETH."""
    if syndrome is None:
        return ""
    return {0: "ACK", 1: "RNR NAK", 3: "NAK"}.get(syndrome >> 5, "reserved")


def _int(layer: Any, name: str) -> int | None:
    value = layer.get_field_value(name) if layer is not None else None
    if value is None:
        return None
    text = str(value)
    return int(text, 16) if text.lower().startswith("0x") else int(text)


def _monitored(packet: Any) -> tuple[Any, Any]:
    """The IP layer of the monitored frame (the first after an ERSPAN header, else the first) and the TCP or
    UDP layer right after it (None each when absent)."""
    layers = list(packet.layers)
    names = [layer.layer_name for layer in layers]
    start = names.index("erspan") + 1 if "erspan" in names else 0
    for at in range(start, len(layers)):
        if names[at] in IP_LAYERS:
            after = names[at + 1] if at + 1 < len(names) else ""
            return layers[at], layers[at + 1] if after in L4_LAYERS else None
    return None, None


def _fields(packet: Any) -> dict[str, Any]:
    ip, l4 = _monitored(packet)
    roce = packet.infiniband if "infiniband" in packet else None
    opcode = _int(roce, "bth_opcode")
    ecn = None
    if ip is not None:
        ecn = _int(ip, "dsfield_ecn") if ip.layer_name == "ip" else _int(ip, "tclass_ecn")
    return {
        "time": _iso(str(packet.frame_info.time_epoch)),
        "src": ip.get_field_value("src") if ip is not None else "",
        "dst": ip.get_field_value("dst") if ip is not None else "",
        "src_port": _int(l4, "srcport"),
        "dst_port": _int(l4, "dstport"),
        "opcode": opcode,
        "dest_qp": _int(roce, "bth_destqp"),
        "psn": _int(roce, "bth_psn"),
        "aeth_syndrome": _int(roce, "aeth_syndrome"),
        "aeth": aeth_meaning(_int(roce, "aeth_syndrome")),
        "ecn": ecn,
        "cnp": opcode == CNP_OPCODE,
        "length": int(packet.frame_info.len),
    }


def dissect(path: Path) -> Iterator[dict[str, Any]]:
    """Per packet of the capture at `path`, in order: Wireshark's fields (see _fields) plus its `protocol`
    and `info` summary columns."""
    import pyshark

    tshark = require_tshark()
    summaries = _summaries(path, tshark)
    capture = pyshark.FileCapture(str(path), tshark_path=tshark, keep_packets=False)
    try:
        for packet, (protocol, info) in zip(capture, summaries, strict=True):
            yield {**_fields(packet), "protocol": protocol, "info": info}
    finally:
        _close(capture)


def packet_rows(frames: PacketBatch, topology: Topology) -> list[dict[str, Any]]:
    """One row per frame: Wireshark's dissection (of the frames written to a temporary pcapng) plus the link
    and direction our topology gives the mirrored copy (Wireshark knows no topology)."""
    decoded = Decoder(topology).decode(frames)
    link_ids = topology.link_ids()
    with tempfile.TemporaryDirectory(prefix="fabricscope-packets-") as scratch:
        path = Path(scratch) / "slice.pcapng"
        writer = PcapngWriter(path, frames.linktype)
        try:
            writer.write(frames)
        finally:
            writer.close()
        dissected = list(dissect(path))
    rows = []
    for at, fields in enumerate(dissected):
        link = int(decoded.link[at])
        rows.append({**fields, "link": link_ids[link] if link >= 0 else "",
                     "direction": DIRECTIONS[int(decoded.direction[at])]})
    return rows
