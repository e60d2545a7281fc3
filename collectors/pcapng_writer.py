"""Captured frames out to a pcapng file, a whole batch per write: the recorder's segments and `packets --out`.

pcapng, not classic pcap, because it keeps what attributes a mirrored copy to a link: the capture
interface's name (a topology `interface:` mirror). Timestamps are written in nanoseconds (if_tsresol 9), so
a frame read back has the time it was captured with. The blocks of a batch are laid out and the frames
copied by one compiled loop, so writing costs no Python object per packet.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numba
import numpy as np

from collectors.packets import PacketBatch

_SHB = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
_EPB_TYPE, _IDB_TYPE = 6, 1
_EPB_OVERHEAD = 32  # type, length, interface, ts high, ts low, caplen, origlen ... trailing length
_OPT_IF_NAME, _OPT_IF_TSRESOL = 2, 9
TSRESOL_NS = 9


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _idb(linktype: int, name: str) -> bytes:
    options = (_option(_OPT_IF_NAME, name.encode()) if name else b"") + _option(_OPT_IF_TSRESOL, bytes([TSRESOL_NS]))
    options += b"\0\0\0\0"  # opt_endofopt
    length = 20 + len(options)
    return struct.pack("<IIHHI", _IDB_TYPE, length, linktype, 0, 0) + options + struct.pack("<I", length)


@numba.njit(cache=True)
def copy_frames(source: np.ndarray, offset: np.ndarray, caplen: np.ndarray, out: np.ndarray,
                at: np.ndarray) -> None:  # pragma: no cover - compiled
    """Frame i (`source[offset[i]:offset[i] + caplen[i]]`) to `out[at[i]:]`."""
    for i in range(len(offset)):
        start, size, to = offset[i], caplen[i], at[i]
        for j in range(size):
            out[to + j] = source[start + j]


@numba.njit(cache=True, nogil=True)  # the recorder runs it on its own thread
def _fill_epbs(source: np.ndarray, offset: np.ndarray, caplen: np.ndarray, wirelen: np.ndarray,
               ts_ns: np.ndarray, interface_ids: np.ndarray, rows: np.ndarray,
               out: np.ndarray) -> None:  # pragma: no cover - compiled
    """One EPB per row, back to back in `out` (sized by the caller), little-endian."""
    words = out.view(np.uint32)
    at = 0
    for row in rows:
        size = caplen[row]
        length = ((size + 3) & ~3) + _EPB_OVERHEAD
        word = at // 4
        ts = ts_ns[row]
        words[word] = _EPB_TYPE
        words[word + 1] = length
        words[word + 2] = interface_ids[row]
        words[word + 3] = ts >> np.uint64(32)
        words[word + 4] = ts & np.uint64(0xFFFFFFFF)
        words[word + 5] = size
        words[word + 6] = wirelen[row]
        start = offset[row]
        out[at + 28 : at + 28 + size] = source[start : start + size]
        out[at + 28 + size : at + length - 4] = 0
        words[(at + length) // 4 - 1] = length
        at += length


def epb_blocks(batch: PacketBatch, rows: np.ndarray, interface_ids: np.ndarray,
               buffer: np.ndarray | None = None) -> np.ndarray:
    """The Enhanced Packet Blocks of `rows` of `batch`, each on pcapng interface `interface_ids[row]`; laid out
    at the start of `buffer` when it is large enough (memory already mapped in: a fresh 10 MB array per batch
    costs a page fault every 4 KB, which doubled the time of this function)."""
    caplen = batch.caplen[rows].astype(np.int64)
    size = int(((caplen + 3) & ~3).sum()) + _EPB_OVERHEAD * len(rows)
    out = buffer[:size] if buffer is not None and len(buffer) >= size else np.empty(size, dtype=np.uint8)
    _fill_epbs(batch.data, batch.offset, batch.caplen.astype(np.int64), batch.wirelen, batch.ts_ns.astype(np.uint64),
               interface_ids, rows.astype(np.int64), out)
    return out


class PcapngWriter:
    """One section of one link type; an interface block is added the first time a capture interface name
    appears. `write` appends frames; `close` flushes. `bytes_written` counts what reached the file."""

    def __init__(self, path: str | Path, linktype: int) -> None:
        self.path = Path(path)
        self.linktype = linktype
        self.bytes_written = 0
        self.packets = 0
        self._interfaces: dict[str, int] = {}
        self._buffer = np.empty(0, dtype=np.uint8)
        self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - held until close()
        self._put(_SHB)

    def _put(self, data: bytes | np.ndarray) -> None:
        self._file.write(data.data if isinstance(data, np.ndarray) else data)
        self.bytes_written += len(data)

    def write(self, batch: PacketBatch, rows: np.ndarray | None = None) -> None:
        """Append frames `rows` of `batch` (all when None), as captured (after the snaplen)."""
        if batch.linktype != self.linktype:
            raise ValueError(f"link type {batch.linktype} in a pcapng section of link type {self.linktype}")
        rows = np.arange(len(batch)) if rows is None else rows
        if not len(rows):
            return
        names = batch.interfaces or ("",)
        ids = np.empty(len(names), dtype=np.uint32)
        for index, name in enumerate(names):
            if name not in self._interfaces:
                self._interfaces[name] = len(self._interfaces)
                self._put(_idb(self.linktype, name))
            ids[index] = self._interfaces[name]
        blocks = epb_blocks(batch, rows, ids[batch.interface], self._buffer)
        if blocks.base is not self._buffer:
            self._buffer = blocks  # a larger batch than before: its blocks are the buffer from now on
        self._put(blocks)
        self.packets += len(rows)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
