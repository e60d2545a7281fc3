"""What the flow table adds up per row segment (a flow's packets of one export interval, or of one burst), in
one compiled pass over a batch's packets in flow order, and the PSN gaps it adds up, in another.

As numpy (collectors.flows before) it took a gather of every packet column by the sort order, a packet-by-
counter matrix of flags and seven `reduceat` passes; here each packet's columns are read through the order
once and added to its segment.
"""

from __future__ import annotations

import numba
import numpy as np

from collectors import protocols

_PSN_HALF = 1 << 23  # a PSN step of half the 24-bit space or more is a step back


@numba.njit(cache=True, nogil=True)
def segment_sums(rows: np.ndarray, starts: np.ndarray, ts: np.ndarray, gaps: np.ndarray, ecn: np.ndarray,
                 is_roce: np.ndarray, opcode: np.ndarray, syndrome: np.ndarray, psn: np.ndarray,
                 wire_len: np.ndarray, family_of: np.ndarray, flags: np.ndarray, wire_bytes: np.ndarray,
                 psn_gaps: np.ndarray, first: np.ndarray, last: np.ndarray, psn_first: np.ndarray,
                 psn_last: np.ndarray) -> None:
    """Per segment k (positions starts[k] up to the next start): the flag counters (flows.FLAG_COUNTERS in its
    order: ECN-capable, CE, CNP, RoCE write/read/send/ack, NAK), wire bytes, PSN gaps, first and last packet
    time, and the PSN of its first and last RoCE packet other than a CNP (-1 if none). Position i is packet
    rows[i] of the decoded columns; `ts` and `gaps` are already in position order."""
    for k in range(len(starts)):
        stop = starts[k + 1] if k + 1 < len(starts) else len(rows)
        flags[k, :] = 0
        total = np.uint64(0)
        skipped = np.uint64(0)
        earliest = latest = ts[starts[k]]
        first_psn = last_psn = np.int64(-1)
        for i in range(starts[k], stop):
            packet = rows[i]
            if ecn[packet] != 0:
                flags[k, 0] += 1
            if ecn[packet] == 3:
                flags[k, 1] += 1
            if is_roce[packet]:
                code = opcode[packet]
                if code == protocols.CNP_OPCODE:
                    flags[k, 2] += 1
                else:
                    if first_psn == -1:
                        first_psn = np.int64(psn[packet])
                    last_psn = np.int64(psn[packet])
                family = family_of[code]
                if family == protocols.FAMILY_WRITE:
                    flags[k, 3] += 1
                elif family == protocols.FAMILY_READ:
                    flags[k, 4] += 1
                elif family == protocols.FAMILY_SEND:
                    flags[k, 5] += 1
                elif family == protocols.FAMILY_ACK:
                    flags[k, 6] += 1
                nak = (syndrome[packet] & protocols.NAK_SYNDROME_MASK) == protocols.NAK_SYNDROME
                if syndrome[packet] != 0xFF and nak:
                    flags[k, 7] += 1
            total += np.uint64(wire_len[packet])
            skipped += gaps[i]
            earliest = min(earliest, ts[i])
            latest = max(latest, ts[i])
        wire_bytes[k] = total
        psn_gaps[k] = skipped
        first[k] = earliest
        last[k] = latest
        psn_first[k] = first_psn
        psn_last[k] = last_psn


@numba.njit(cache=True, nogil=True)
def psn_gaps(rows: np.ndarray, flow_id: np.ndarray, slots: np.ndarray, is_roce: np.ndarray, opcode: np.ndarray,
             psn: np.ndarray, family_of: np.ndarray, last_psn: np.ndarray, gaps: np.ndarray) -> None:
    """gaps[i]: PSN numbers skipped between the data packet at position i (packet rows[i]; positions grouped by
    flow, flow_id[i] its flow, slots[flow] its table slot) and its flow's data packet before it: in this batch,
    else last_psn[slot] (-1: none), which is left at the flow's last data PSN. 24-bit wrap; a step back counts 0;
    ACKs, CNPs and other packets are not a sequence (0)."""
    current = -1
    before = np.int64(-1)
    for i in range(len(rows)):
        gaps[i] = 0
        packet = rows[i]
        family = family_of[opcode[packet]]
        if not is_roce[packet] or family == protocols.FAMILY_NONE or family == protocols.FAMILY_ACK:
            continue
        slot = slots[flow_id[i]]
        if flow_id[i] != current:
            current = flow_id[i]
            before = last_psn[slot]
        value = np.int64(psn[packet])
        delta = (value - before) & protocols.PSN_MASK
        if before >= 0 and 0 < delta < _PSN_HALF:
            gaps[i] = delta - 1
        before = value
        last_psn[slot] = value
