"""Byte-exact pcap and pcapng writers for source, decoder and fuzz tests.

Written here from the format specs rather than through scapy so tests control byte order, timestamp
resolution, record lengths and damage exactly.
"""

from __future__ import annotations

import struct
from pathlib import Path

from collectors.packets import PacketBatch
from collectors.pcapfile import CaptureStats, open_capture

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D


def pcap_header(*, big: bool = False, nano: bool = False, snaplen: int = 65535, linktype: int = 1) -> bytes:
    order = ">" if big else "<"
    return struct.pack(order + "IHHiIII", PCAP_MAGIC_NS if nano else PCAP_MAGIC_US, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(
    ts_ns: int, frame: bytes, *, big: bool = False, nano: bool = False, caplen: int | None = None,
    wirelen: int | None = None,
) -> bytes:
    """One record; `caplen`/`wirelen` override the header fields (to damage it) without changing the bytes."""
    order = ">" if big else "<"
    sec, rest = divmod(ts_ns, 1_000_000_000)
    frac = rest if nano else rest // 1000
    header = struct.pack(
        order + "IIII", sec, frac, len(frame) if caplen is None else caplen,
        len(frame) if wirelen is None else wirelen,
    )
    return header + frame


def pcap_file(frames: list[tuple[int, bytes]], *, big: bool = False, nano: bool = False) -> bytes:
    return pcap_header(big=big, nano=nano) + b"".join(
        pcap_record(ts, frame, big=big, nano=nano) for ts, frame in frames
    )


def _block(kind: int, body: bytes, order: str) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack(order + "II", kind, length) + body + struct.pack(order + "I", length)


def _option(code: int, value: bytes, order: str) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def pcapng_shb(*, big: bool = False) -> bytes:
    order = ">" if big else "<"
    return _block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)


def pcapng_idb(
    name: str = "", *, tsresol: int | None = None, snaplen: int = 0, linktype: int = 1, big: bool = False,
    tsoffset: int | None = None,
) -> bytes:
    order = ">" if big else "<"
    options = b""
    if name:
        options += _option(2, name.encode(), order)
    if tsresol is not None:
        options += _option(9, bytes([tsresol]), order)
    if tsoffset is not None:
        options += _option(14, struct.pack(order + "q", tsoffset), order)
    if options:
        options += _option(0, b"", order)
    return _block(1, struct.pack(order + "HHI", linktype, 0, snaplen) + options, order)


def pcapng_epb(
    interface: int, ts_raw: int, frame: bytes, *, wirelen: int | None = None, big: bool = False,
    caplen: int | None = None,
) -> bytes:
    order = ">" if big else "<"
    head = struct.pack(
        order + "IIIII", interface, ts_raw >> 32, ts_raw & 0xFFFFFFFF, len(frame) if caplen is None else caplen,
        len(frame) if wirelen is None else wirelen,
    )
    return _block(6, head + frame, order)


def pcapng_pb(interface: int, ts_raw: int, frame: bytes, *, big: bool = False) -> bytes:
    """The obsolete Packet Block (type 2): a 16-bit interface id and drop count, then as an EPB."""
    order = ">" if big else "<"
    head = struct.pack(order + "HHIIII", interface, 0, ts_raw >> 32, ts_raw & 0xFFFFFFFF, len(frame), len(frame))
    return _block(2, head + frame, order)


def pcapng_block(kind: int, body: bytes, *, big: bool = False) -> bytes:
    """Any block, e.g. a too-short EPB."""
    return _block(kind, body, ">" if big else "<")


def pcapng_spb(frame: bytes, *, wirelen: int | None = None, big: bool = False) -> bytes:
    order = ">" if big else "<"
    return _block(3, struct.pack(order + "I", len(frame) if wirelen is None else wirelen) + frame, order)


def read_all(path: Path) -> tuple[list[PacketBatch], CaptureStats]:
    """Every batch of a capture file and the reader's stats."""
    reader = open_capture(path)
    batches = list(reader)
    return batches, reader.stats


def frames_of(batches: list[PacketBatch]) -> list[bytes]:
    return [
        bytes(batch.data[start : start + length])
        for batch in batches
        for start, length in zip(batch.offset, batch.caplen, strict=True)
    ]
