"""Captured frames out to a pcapng file, a whole batch per write: the recorder's segments and `packets --out`.

pcapng, not classic pcap, because it keeps what attributes a mirrored copy to a link: the capture
interface's name (a topology `interface:` mirror). Timestamps are written in nanoseconds (if_tsresol 9), so
a frame read back has the time it was captured with. The blocks of a batch are laid out and the frames
copied by one compiled loop, so writing costs no Python object per packet.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from pathlib import Path

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.core.typing import Signature
from numba.extending import intrinsic

from collectors.packets import PacketBatch

_SHB = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
_EPB_TYPE, _IDB_TYPE = 6, 1
_EPB_OVERHEAD = 32  # type, length, interface, ts high, ts low, caplen, origlen ... trailing length
_OPT_IF_NAME, _OPT_IF_TSRESOL = 2, 9
TSRESOL_NS = 9
_ALIGN = 4096  # O_DIRECT: memory, file offset and length in whole blocks (4 KiB is a multiple of any disk's)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _idb(linktype: int, name: str) -> bytes:
    options = (_option(_OPT_IF_NAME, name.encode()) if name else b"") + _option(_OPT_IF_TSRESOL, bytes([TSRESOL_NS]))
    options += b"\0\0\0\0"  # opt_endofopt
    length = 20 + len(options)
    return struct.pack("<IIHHI", _IDB_TYPE, length, linktype, 0, 0) + options + struct.pack("<I", length)


@intrinsic
def _copy_bytes(typingctx: object, out: types.Array, to: types.Integer, source: types.Array, start: types.Integer,
                size: types.Integer) -> tuple[Signature, object]:
    """`out[to:to + size] = source[start:start + size]` as one memcpy, for a caller that has checked both
    ranges. Laying out a 128-byte frame's block took 52 ns with numba's slice assignment (it checks for overlap
    and copies through a temporary) and 180 ns with a byte loop (not vectorised); 7 ns with this."""

    def codegen(context, builder, signature, args):
        target = context.make_array(signature.args[0])(context, builder, args[0])
        origin = context.make_array(signature.args[2])(context, builder, args[2])
        cgutils.raw_memcpy(builder, builder.gep(target.data, [args[1]]), builder.gep(origin.data, [args[3]]),
                           args[4], 1)
        return context.get_dummy_value()

    return types.void(out, types.int64, source, types.int64, types.int64), codegen


@numba.njit(cache=True)
def copy_frames(source: np.ndarray, offset: np.ndarray, caplen: np.ndarray, out: np.ndarray,
                at: np.ndarray) -> None:  # pragma: no cover - compiled
    """Frame i (`source[offset[i]:offset[i] + caplen[i]]`) to `out[at[i]:]`."""
    for i in range(len(offset)):
        start, size, to = np.int64(offset[i]), np.int64(caplen[i]), np.int64(at[i])
        if start < 0 or start + size > len(source) or to < 0 or to + size > len(out):
            raise ValueError("a frame outside its buffer")
        _copy_bytes(out, to, source, start, size)  # type: ignore[call-arg, arg-type]  # numba stubs: @intrinsic drops typingctx


@numba.njit(cache=True, nogil=True)  # the recorder runs it on its own thread
def _fill_epbs(source: np.ndarray, offset: np.ndarray, caplen: np.ndarray, wirelen: np.ndarray,
               ts_ns: np.ndarray, interface: np.ndarray, interface_ids: np.ndarray, rows: np.ndarray,
               out: np.ndarray) -> None:  # pragma: no cover - compiled
    """One EPB per row, back to back in `out` (sized by `_epbs_size`), little-endian; capture interface i is
    pcapng interface `interface_ids[i]`."""
    words = out.view(np.uint32)
    at = 0
    for row in rows:
        size, start = np.int64(caplen[row]), np.int64(offset[row])
        length = ((size + 3) & ~3) + _EPB_OVERHEAD
        if start < 0 or start + size > len(source) or at + length > len(out):
            raise ValueError("a frame outside its batch's buffer, or more frames than the blocks were sized for")
        word = at // 4
        ts = np.uint64(ts_ns[row])
        words[word] = _EPB_TYPE
        words[word + 1] = length
        words[word + 2] = interface_ids[interface[row]]
        words[word + 3] = ts >> np.uint64(32)
        words[word + 4] = ts & np.uint64(0xFFFFFFFF)
        words[word + 5] = size
        words[word + 6] = wirelen[row]
        words[(at + length) // 4 - 2] = 0  # the padding; the frame overwrites what of this word it covers
        _copy_bytes(out, at + 28, source, start, size)  # type: ignore[call-arg, arg-type]  # numba stubs: @intrinsic drops typingctx
        words[(at + length) // 4 - 1] = length
        at += length


@numba.njit(cache=True)  # keeps the GIL: a short loop, and each release costs the collector's thread a switch
def _epbs_size(caplen: np.ndarray, rows: np.ndarray) -> int:  # pragma: no cover - compiled
    total = 0
    for row in rows:
        total += ((int(np.int64(caplen[row])) + 3) & ~3) + _EPB_OVERHEAD
    return total


def _aligned(size: int) -> np.ndarray:
    """An uninitialised buffer starting on an _ALIGN boundary (what O_DIRECT asks of the memory it reads)."""
    raw = np.empty(size + _ALIGN, dtype=np.uint8)
    start = -raw.ctypes.data % _ALIGN
    return raw[start : start + size]


def _open(path: Path, direct: bool) -> tuple[int, bool]:
    """The file's descriptor and whether it bypasses the page cache (a filesystem without O_DIRECT: it does not)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    if direct:
        try:
            return os.open(path, flags | os.O_DIRECT, 0o644), True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    return os.open(path, flags, 0o644), False


def _write_all(fd: int, data: np.ndarray) -> None:
    view = data.data  # a contiguous uint8 array: no copy
    while view:
        view = view[os.write(fd, view) :]


class PcapngWriter:
    """One section of one link type; an interface block is added the first time a capture interface name
    appears. `write` appends frames; `close` writes what is held back and closes. `bytes_written` counts the
    bytes of the file as written so far (including those held back until close).

    A batch's blocks are laid out in one buffer kept across writes (a fresh 10 MB array per batch cost a page
    fault every 4 KB, which doubled the layout's time) and reach the file in one write. With `direct` (the
    recorder's segments) the file is opened O_DIRECT: written once and read rarely, a segment streamed through
    the page cache cost a kernel copy and a page allocation per 4 KB (most of the recorder's system time, and
    far more when the memory is cold) and evicted what the database keeps cached. Direct writes must be whole
    blocks, so the last partial block of each write is held back for the next one, or for `close`."""

    def __init__(self, path: str | Path, linktype: int, *, direct: bool = False,
                 buffer: np.ndarray | None = None) -> None:
        self.path = Path(path)
        self.linktype = linktype
        self.bytes_written = 0
        self.packets = 0
        self._interfaces: dict[str, int] = {}
        # an earlier writer's `buffer` spares this one a page fault every 4 KB of its first batch
        self.buffer = _aligned(0) if buffer is None else buffer
        self._held = 0  # bytes at the start of the buffer not yet written
        self._fd, self.direct = _open(self.path, direct)
        self._put(_SHB)

    def _room(self, size: int) -> np.ndarray:
        """The buffer grown (keeping what is held) so `size` more bytes fit after what is held."""
        if self._held + size > len(self.buffer):
            grown = _aligned((self._held + size) * 9 // 8)  # batches vary a little: room for a larger one
            grown[: self._held] = self.buffer[: self._held]
            self.buffer = grown
        return self.buffer

    def _put(self, data: bytes) -> None:
        self._room(len(data))[self._held : self._held + len(data)] = np.frombuffer(data, dtype=np.uint8)
        self._held += len(data)
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
        rows = rows.astype(np.int64, copy=False)
        size = _epbs_size(batch.caplen, rows)
        out = self._room(size)[self._held : self._held + size]
        _fill_epbs(batch.data, batch.offset, batch.caplen, batch.wirelen, batch.ts_ns, batch.interface, ids, rows, out)
        self._held += size
        self.bytes_written += size
        self.packets += len(rows)
        self._write(self._held - self._held % _ALIGN if self.direct else self._held)

    def _write(self, end: int) -> None:
        """Write the first `end` held bytes; what follows moves to the start of the buffer. A device that
        refuses a direct write (its blocks larger than _ALIGN) gets this file through the page cache instead."""
        if not end:
            return
        try:
            _write_all(self._fd, self.buffer[:end])
        except OSError as exc:
            if not (self.direct and exc.errno == errno.EINVAL):
                raise
            self._through_page_cache()
            _write_all(self._fd, self.buffer[:end])
        rest = self._held - end
        self.buffer[:rest] = self.buffer[end : self._held]
        self._held = rest

    def _through_page_cache(self) -> None:
        fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~os.O_DIRECT)
        self.direct = False

    def close(self) -> None:
        """Write what is held back (a direct file takes its last partial block once O_DIRECT is off) and close."""
        if self._fd < 0:
            return
        try:
            if self.direct and self._held:
                self._through_page_cache()
            self._write(self._held)
        finally:
            os.close(self._fd)
            self._fd = -1
