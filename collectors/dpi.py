"""DPI: label every packet of a batch with an app (DESIGN.md section 6), a confidence and an optional detail.

Evidence is taken strongest first: decoded headers (EtherType, ICMP, a valid RoCEv2 BTH), then payload
signatures over the first bytes of each payload, then well-known ports as a weaker fallback. The work is
column arithmetic over the batch; Python runs per row only to extract a detail string (a TLS SNI, an SSH
banner) on the few rows that carry one.

A VXLAN packet's inner flow, which is its flow (keyed by the inner 5-tuple and the VNI), is classified with
the same rules (the decoder puts the inner ports and payload in the `app_*`/`payload_*` columns), then
labelled `vxlan` (DESIGN.md section 6) with the inner label in the detail ("inner=http"). Its confidence
grows with the inner label's, so the flow table, which keeps the row of highest confidence per flow, keeps
the packet that best names the inner app.

`classify` reads each batch alone; a collector uses a `Classifier`, which also remembers across batches the
ports the portmapper handed out (collectors.dpi_rpc) and labels the RPC traffic that goes to them (inside
VXLAN too, before the `vxlan` label is put on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collectors.dpi_http2 import headers_frame, read_headers
from collectors.dpi_payload import TCP, UDP, PayloadHead
from collectors.dpi_rpc import RpcPorts
from collectors.dpi_signatures import (
    CERTAIN,
    CM_ATTRIBUTE_NAMES,
    ETHERTYPES,
    GSI_QP,
    ICMP_PROTOCOLS,
    LIKELY,
    MAC_CONTROL,
    MAD_OFFSET,
    PORT_ONLY,
    PORT_TABLES,
    SIGNATURES,
    UD_SEND_ONLY,
    cm_mad,
)
from collectors.packets import DecodedPackets
from collectors.protocols import CNP_OPCODE, OPCODE_VALID
from pipeline.labels import APP_CODE, APPS

VXLAN_BASE = np.float32(0.6)  # an outer VXLAN label with an inner flow; the inner confidence adds up to 0.4

_SIGNATURE_APPS = np.array([APP_CODE[signature.app] for signature in SIGNATURES], dtype=np.uint8)
_INNER_DETAILS = np.array([f"inner={name}" for name in APPS], dtype=object)


@dataclass(frozen=True, slots=True)
class PacketLabels:
    """DPI result per packet, aligned with DecodedPackets.

    To merge into flows, take per flow the row of highest `confidence` and its `app` and `detail`.
    """

    app: np.ndarray  # uint8, code into pipeline.labels.APPS
    confidence: np.ndarray  # float32, 0 for unknown
    detail: np.ndarray  # object array of str, '' when none (TLS SNI, SSH banner, VXLAN inner app)

    def __len__(self) -> int:
        return len(self.app)


def classify(data: np.ndarray, decoded: DecodedPackets, rpc_ports: RpcPorts | None = None) -> PacketLabels:
    """Label each packet of a decoded batch; `data` is the batch buffer `payload_offset` points into.
    With `rpc_ports`, the batch's portmapper answers are learned and the traffic to learned ports labelled."""
    n = len(decoded)
    labels = PacketLabels(np.zeros(n, dtype=np.uint8), np.zeros(n, dtype=np.float32), np.full(n, "", dtype=object))
    _label_headers(data, decoded, labels)
    _label_payloads(data, decoded, labels)
    _label_ports(decoded, labels)
    if rpc_ports is not None:
        rpc_ports.learn(data, decoded)
        rpc_ports.label(decoded, labels.app, labels.confidence, labels.detail, at=LIKELY)
    _label_vxlan(decoded, labels)
    labels.app[~decoded.ok] = 0
    labels.confidence[~decoded.ok] = 0
    labels.detail[~decoded.ok] = ""
    return labels


class Classifier:
    """`classify` with the ports the portmapper handed out, learned from the batches seen so far."""

    def __init__(self, rpc_ports: RpcPorts | None = None) -> None:
        self.rpc_ports = rpc_ports if rpc_ports is not None else RpcPorts()

    def classify(self, data: np.ndarray, decoded: DecodedPackets) -> PacketLabels:
        return classify(data, decoded, self.rpc_ports)


def _assign(labels: PacketLabels, rows: np.ndarray, app: str, confidence: np.float32) -> None:
    labels.app[rows] = APP_CODE[app]
    labels.confidence[rows] = confidence


def _label_headers(data: np.ndarray, decoded: DecodedPackets, labels: PacketLabels) -> None:
    """Labels the decoder's header fields settle on their own, and RDMA CM's MADs behind a RoCE header."""
    for ethertype, app in ETHERTYPES.items():
        _assign(labels, decoded.ethertype == ethertype, app, CERTAIN)
    mac_control = decoded.ethertype == MAC_CONTROL
    _assign(labels, mac_control & (decoded.pfc_enable != 0), "pfc", CERTAIN)
    _assign(labels, mac_control & (decoded.pfc_enable == 0), "pfc", PORT_ONLY)
    _assign(labels, ICMP_PROTOCOLS[decoded.app_proto], "icmp", CERTAIN)
    roce = decoded.is_roce
    _assign(labels, roce & OPCODE_VALID[decoded.bth_opcode], "rocev2", CERTAIN)
    _assign(labels, roce & (decoded.bth_opcode == CNP_OPCODE), "rocev2-cnp", CERTAIN)
    _label_rdma_cm(data, decoded, labels)


def _label_rdma_cm(data: np.ndarray, decoded: DecodedPackets, labels: PacketLabels) -> None:
    """RDMA CM (IBTA 12, RoCEv2 annex A17.4): a UD SEND_ONLY to the GSI's QP 1 carrying a CM-class MAD after
    the DETH; the detail is the message (REQ, REP, RTU...)."""
    rows = np.flatnonzero(
        decoded.is_roce
        & (decoded.dqpn == GSI_QP)
        & (decoded.bth_opcode == UD_SEND_ONLY)
        & (decoded.payload_caplen > MAD_OFFSET)
    )
    if not len(rows):
        return
    mad = PayloadHead.gather(
        data, decoded.payload_offset[rows] + MAD_OFFSET, decoded.payload_caplen[rows] - MAD_OFFSET,
        decoded.app_proto[rows], decoded.app_src_port[rows], decoded.app_dst_port[rows],
    )
    found = cm_mad(mad)
    _assign(labels, rows[found], "rdma-cm", CERTAIN)
    labels.detail[rows[found]] = CM_ATTRIBUTE_NAMES[mad.u16(16)[found]]


def _label_payloads(data: np.ndarray, decoded: DecodedPackets, labels: PacketLabels) -> None:
    """Run every signature over the payload heads of TCP/UDP rows the headers left unlabelled."""
    rows = np.flatnonzero(
        decoded.ok
        & (labels.confidence == 0)
        & ((decoded.app_proto == TCP) | (decoded.app_proto == UDP))
        & (decoded.payload_offset >= 0)
        & (decoded.payload_caplen > 0)
    )
    if not len(rows):
        return
    head = PayloadHead.gather(
        data,
        decoded.payload_offset[rows],
        decoded.payload_caplen[rows],
        decoded.app_proto[rows],
        decoded.app_src_port[rows],
        decoded.app_dst_port[rows],
    )
    best = np.full(len(rows), -1, dtype=np.int16)
    best_confidence = np.zeros(len(rows), dtype=np.float32)
    for index, signature in enumerate(SIGNATURES):
        better = signature.test(head) & (signature.confidence > best_confidence)
        best[better] = index
        best_confidence[better] = signature.confidence
    matched = best >= 0
    labels.app[rows[matched]] = _SIGNATURE_APPS[best[matched]]
    labels.confidence[rows[matched]] = best_confidence[matched]
    offsets = decoded.payload_offset[rows]
    for index, signature in enumerate(SIGNATURES):
        if signature.detail is None:
            continue
        for position in np.flatnonzero(best == index):
            start = int(offsets[position])
            payload = data[start : start + int(head.caplen[position])].tobytes()
            labels.detail[rows[position]] = signature.detail(payload)
    for index, signature in enumerate(SIGNATURES):
        if signature.details is not None and (best == index).any():
            labels.detail[rows[best == index]] = signature.details(head)[best == index]
    _label_http2(data, rows, offsets, head, labels)


def _label_http2(
    data: np.ndarray, rows: np.ndarray, offsets: np.ndarray, head: PayloadHead, labels: PacketLabels
) -> None:
    """gRPC or HTTP/2 from the header blocks (collectors.dpi_http2) of rows that open with the preface or, left
    unlabelled, with a HEADERS frame; a gRPC request's detail is its path (/package.Service/Method)."""
    preface = labels.app[rows] == APP_CODE["http2"]
    candidates = np.flatnonzero(preface | ((labels.confidence[rows] == 0) & headers_frame(head)))
    for position in candidates.tolist():
        start = int(offsets[position])
        headers = read_headers(data[start : start + int(head.caplen[position])].tobytes())
        row = rows[position]
        if headers is not None and headers.grpc:
            _assign(labels, row, "grpc", CERTAIN)
            labels.detail[row] = headers.path
        elif headers is not None and not preface[position]:
            _assign(labels, row, "http2", LIKELY)


def _label_ports(decoded: DecodedPackets, labels: PacketLabels) -> None:
    """Well-known ports, destination first (the server side of a request), for rows with no better evidence."""
    weak = decoded.ok & (labels.confidence < PORT_ONLY)
    for proto, table in PORT_TABLES.items():
        rows = np.flatnonzero(weak & (decoded.app_proto == proto))
        by_destination = table[decoded.app_dst_port[rows]]
        code = np.where(by_destination != 0, by_destination, table[decoded.app_src_port[rows]])
        known = code != 0
        labels.app[rows[known]] = code[known]
        labels.confidence[rows[known]] = PORT_ONLY


def _label_vxlan(decoded: DecodedPackets, labels: PacketLabels) -> None:
    """Relabel VXLAN packets as `vxlan`, naming the inner label (and its detail) when the inner flow was decoded.

    The decoder decapsulates every well-formed UDP 4789 packet; `app_proto` stays 0 when the inner frame is
    not IP or its IP header was not captured, and then the detail stays empty and the confidence at its base.
    """
    rows = np.flatnonzero(decoded.ok & decoded.vxlan)
    if not len(rows):
        return
    inner_seen = decoded.app_proto[rows] != 0
    inner_detail = labels.detail[rows]
    detail = np.where(inner_seen, _INNER_DETAILS[labels.app[rows]], "")
    for position in np.flatnonzero(inner_detail != ""):
        detail[position] = f"{detail[position]} {inner_detail[position]}"
    labels.detail[rows] = detail
    labels.confidence[rows] = VXLAN_BASE + (1 - VXLAN_BASE) * labels.confidence[rows]
    labels.app[rows] = APP_CODE["vxlan"]
