"""Compiled scans over capture-file record headers: one pass per batch fills offset/length/time columns.

The per-record walk is inherently sequential (each header says where the next one starts), so it is the
one place the sources use numba. Both scans validate every header and, on damage, count the record as
skipped and resynchronise on the next position that looks like a run of valid headers, so every good
record before and after the damage is kept.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.typing import Signature
from numba.extending import intrinsic

MAX_CAPLEN = 256 * 1024  # larger captured (or original) lengths are corruption, not frames
RESYNC_CHAIN = 3  # after damage, a position is trusted when this many valid records follow each other from it
RESYNC_STEPS = 16  # ...looking at most this many headers (empty records are stepped over, not counted)

# Skip reasons, indexes into the `skips` counter array the scans update in place.
SKIP_BAD_HEADER = 0  # timestamp fraction out of range, bad block length or trailer (time jumps are not damage)
SKIP_BAD_CAPLEN = 1  # caplen above snaplen/256 KiB, or above the original length
SKIP_PAST_EOF = 2  # record runs past the end of the file
SKIP_EMPTY = 3  # zero captured bytes
SKIP_BAD_INTERFACE = 4  # pcapng interface id not declared in the section
SKIP_OTHER_LINKTYPE = 5  # pcapng interface whose link type differs from the file's first interface
SKIP_REASONS = ("bad_header", "bad_caplen", "past_eof", "empty", "bad_interface", "other_linktype")

# Why a scan returned.
STOP_END = 0  # no more records
STOP_FULL = 1  # output arrays are full; call again from the returned position
STOP_BLOCK = 2  # pcapng: an SHB or IDB the caller must parse, at the returned position

PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_IDB = 1
PCAPNG_PB = 2
PCAPNG_SPB = 3
PCAPNG_NRB = 4
PCAPNG_ISB = 5
PCAPNG_EPB = 6
PCAPNG_DSB = 10


@intrinsic
def prefetch(typingctx: object, buf: types.Array, at: types.Integer) -> tuple[Signature, object]:
    """Ask the CPU to start loading the cache line holding `buf[at]` (a hint: never faults, never reads).

    Records of full frames are 4 KB apart, so every header is a cache miss the hardware prefetchers do not
    predict; loops that know where later headers are issue these a few records ahead so the misses overlap.
    """

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, [args[1]], wraparound=False)
        i32 = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [pointer.type, i32, i32, i32]), "llvm.prefetch.p0"
        )
        builder.call(function, [pointer, i32(0), i32(3), i32(1)])  # read, keep in all cache levels, data
        return context.get_dummy_value()

    return types.void(buf, types.int64), codegen


@numba.njit(cache=True, inline="always")
def _u32(buf: np.ndarray, p: int, big: bool) -> int:
    # int64 operands (not int() of the uint8: numba would make that unsigned, and unsigned plus signed a
    # float); int() of the int64 result stays int64 in numba and is the declared int for the type checker
    b0, b1, b2, b3 = np.int64(buf[p]), np.int64(buf[p + 1]), np.int64(buf[p + 2]), np.int64(buf[p + 3])
    if big:
        return int((b0 << 24) | (b1 << 16) | (b2 << 8) | b3)
    return int((b3 << 24) | (b2 << 16) | (b1 << 8) | b0)


@numba.njit(cache=True, inline="always")
def _u16(buf: np.ndarray, p: int, big: bool) -> int:
    b0, b1 = np.int64(buf[p]), np.int64(buf[p + 1])
    return int((b0 << 8) | b1 if big else (b1 << 8) | b0)


@numba.njit(cache=True)
def _pcap_header(buf: np.ndarray, p: int, end: int, big: bool, frac_limit: int, max_caplen: int) -> int:
    """-1 when the record header at `p` can be decoded, else the skip reason. The time is not judged: captures
    legitimately jump (a gap of days, a clock step back), and a wrong time is still a readable record."""
    if p + 16 > end:
        return SKIP_PAST_EOF
    frac = _u32(buf, p + 4, big)
    caplen = _u32(buf, p + 8, big)
    wirelen = _u32(buf, p + 12, big)
    if frac >= frac_limit:
        return SKIP_BAD_HEADER
    if caplen > max_caplen or wirelen < caplen or wirelen > MAX_CAPLEN:
        return SKIP_BAD_CAPLEN
    if p + 16 + caplen > end:
        return SKIP_PAST_EOF
    if caplen == 0:
        return SKIP_EMPTY
    return -1


@numba.njit(cache=True)
def _pcap_chain(buf: np.ndarray, q: int, end: int, big: bool, frac_limit: int, max_caplen: int) -> bool:
    """Whether `q` starts a plausible run of records: RESYNC_CHAIN valid ones in a row (empty records stepped
    over), or valid ones up to the exact end of the file or to a last record the file cut short."""
    valid = 0
    for _ in range(RESYNC_STEPS):
        if q == end:
            return valid > 0
        reason = _pcap_header(buf, q, end, big, frac_limit, max_caplen)
        if reason == -1:
            valid += 1
            if valid == RESYNC_CHAIN:
                return True
            q += 16 + _u32(buf, q + 8, big)
        elif reason == SKIP_EMPTY:
            q += 16
        else:
            return reason == SKIP_PAST_EOF and valid > 0
    return False


@numba.njit(cache=True)
def _pcap_resync(buf: np.ndarray, p: int, end: int, big: bool, frac_limit: int, max_caplen: int) -> int:
    """First position after `p` that starts a plausible run of records (see _pcap_chain); -1 if none."""
    q = p + 1
    while q + 16 <= end:
        if _pcap_header(buf, q, end, big, frac_limit, max_caplen) == -1 and _pcap_chain(
            buf, q, end, big, frac_limit, max_caplen
        ):
            return q
        q += 1
    return -1


@numba.njit(cache=True)
def scan_pcap(
    buf: np.ndarray,
    pos: int,
    end: int,
    big: bool,
    frac_limit: int,
    max_caplen: int,
    offset: np.ndarray,
    caplen: np.ndarray,
    wirelen: np.ndarray,
    ts_sec: np.ndarray,
    ts_frac: np.ndarray,
    skips: np.ndarray,
) -> tuple[int, int, int]:
    """Fill the output columns from classic-pcap records at `pos`; return (count, next pos, stop)."""
    n = 0
    cap = len(offset)
    while pos < end:
        if n == cap:
            return n, pos, STOP_FULL
        reason = _pcap_header(buf, pos, end, big, frac_limit, max_caplen)
        if reason == -1:
            length = _u32(buf, pos + 8, big)
            offset[n] = pos + 16
            caplen[n] = length
            wirelen[n] = _u32(buf, pos + 12, big)
            ts_sec[n] = _u32(buf, pos, big)
            ts_frac[n] = _u32(buf, pos + 4, big)
            n += 1
            pos += 16 + length
        elif reason == SKIP_EMPTY:
            skips[SKIP_EMPTY] += 1
            pos += 16
        else:
            skips[reason] += 1
            nxt = _pcap_resync(buf, pos, end, big, frac_limit, max_caplen)
            if nxt < 0:
                return n, end, STOP_END
            pos = nxt
    return n, pos, STOP_END


@numba.njit(cache=True)
def _pcapng_block(buf: np.ndarray, p: int, end: int, big: bool) -> int:
    """Total length of a structurally valid block at `p` (length multiple of 4, trailer matches), else -1."""
    if p + 12 > end:
        return -1
    length = _u32(buf, p + 4, big)
    if length < 12 or length % 4 != 0 or p + length > end or _u32(buf, p + length - 4, big) != length:
        return -1
    return length


@numba.njit(cache=True)
def _pcapng_known(btype: int) -> bool:
    return btype in (PCAPNG_SHB, PCAPNG_IDB, PCAPNG_PB, PCAPNG_SPB, PCAPNG_NRB, PCAPNG_ISB, PCAPNG_EPB, PCAPNG_DSB)


@numba.njit(cache=True)
def resync_pcapng(buf: np.ndarray, p: int, end: int, big: bool) -> int:
    """Next 4-aligned position after `p` holding a known, structurally valid block; -1 if none."""
    q = p + 4
    while q + 12 <= end:
        if _pcapng_known(_u32(buf, q, big)) and _pcapng_block(buf, q, end, big) > 0:
            return q
        q += 4
    return -1


@numba.njit(cache=True)
def scan_pcapng(
    buf: np.ndarray,
    pos: int,
    end: int,
    big: bool,
    snaplen: np.ndarray,
    offset: np.ndarray,
    caplen: np.ndarray,
    wirelen: np.ndarray,
    interface: np.ndarray,
    ts_raw: np.ndarray,
    skips: np.ndarray,
) -> tuple[int, int, int]:
    """Fill the output columns from EPB/SPB (and obsolete PB) blocks at `pos`; return (count, next pos, stop).

    `snaplen` holds one entry per interface of the current section; `interface` gets the section-local id.
    Stops at an SHB or IDB (STOP_BLOCK) so the caller can parse it; skips NRB/ISB/DSB/custom blocks.
    """
    n = 0
    cap = len(offset)
    n_ifaces = len(snaplen)
    while pos < end:
        if n == cap:
            return n, pos, STOP_FULL
        if pos + 12 <= end and _u32(buf, pos, big) == PCAPNG_SHB:
            return n, pos, STOP_BLOCK
        length = _pcapng_block(buf, pos, end, big)
        if length < 0:
            skips[SKIP_PAST_EOF if pos + 12 > end or _u32(buf, pos + 4, big) > end - pos else SKIP_BAD_HEADER] += 1
            nxt = resync_pcapng(buf, pos, end, big)
            if nxt < 0:
                return n, end, STOP_END
            pos = nxt
            continue
        btype = _u32(buf, pos, big)
        if btype == PCAPNG_IDB:
            return n, pos, STOP_BLOCK
        if btype in (PCAPNG_EPB, PCAPNG_PB, PCAPNG_SPB):
            if length < (16 if btype == PCAPNG_SPB else 32):
                skips[SKIP_BAD_HEADER] += 1
                pos += length
                continue
            if btype != PCAPNG_SPB:  # EPB, or the obsolete PB with a 16-bit interface id and drop count
                iface = _u32(buf, pos + 8, big) if btype == PCAPNG_EPB else _u16(buf, pos + 8, big)
                stamp = (_u32(buf, pos + 12, big) << 32) | _u32(buf, pos + 16, big)
                length_cap = _u32(buf, pos + 20, big)
                length_orig = _u32(buf, pos + 24, big)
                data = pos + 28
                room = length - 32
            else:
                iface = 0
                stamp = 0
                length_orig = _u32(buf, pos + 8, big)
                data = pos + 12
                room = length - 16
                length_cap = min(length_orig, room)
                if n_ifaces > 0 and snaplen[0] > 0:
                    length_cap = min(length_cap, snaplen[0])
            if iface >= n_ifaces:
                skips[SKIP_BAD_INTERFACE] += 1
            elif length_cap > room or length_cap > MAX_CAPLEN or length_orig < length_cap or (
                snaplen[iface] > 0 and length_cap > snaplen[iface]
            ):
                skips[SKIP_BAD_CAPLEN] += 1
            elif length_cap == 0:
                skips[SKIP_EMPTY] += 1
            else:
                offset[n] = data
                caplen[n] = length_cap
                wirelen[n] = length_orig
                interface[n] = iface
                ts_raw[n] = stamp
                n += 1
        pos += length
    return n, pos, STOP_END
