"""HTTP/2 (RFC 9113) header blocks: which streams are gRPC.

The prior-knowledge preface says HTTP/2 but not what it carries; gRPC says so in its HEADERS, whose
content-type is application/grpc (gRPC's "PROTOCOL-HTTP2" spec). A header block is HPACK-compressed (RFC
7541), so it is decoded in Python, only on the rows whose payload opens with the preface or a HEADERS frame
header (random bytes pass that test about once in 10^7). The dynamic table belongs to the connection and a
packet is read alone, so a block is decoded with an empty table, as a connection's first request and
response are written; a later block that refers to an entry it did not define fails and names nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from collectors.dpi_payload import TCP, PayloadHead

if TYPE_CHECKING:
    from hpack import Decoder

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 3.4
FRAME_HEADER = 9
HEADERS = 0x1
END_HEADERS, PADDED, PRIORITY = 0x04, 0x08, 0x20
HEADERS_FLAGS = 0x01 | END_HEADERS | PADDED | PRIORITY  # END_STREAM and the above: the flags HEADERS defines
DEFAULT_MAX_FRAME_SIZE = 2**14  # SETTINGS_MAX_FRAME_SIZE until a peer raises it; header blocks fit
GRPC_CONTENT_TYPE = "application/grpc"


def headers_frame(p: PayloadHead) -> np.ndarray:
    """A HEADERS frame header at byte 0 (RFC 9113 6.2): a length within the default maximum frame size, only
    the flags HEADERS defines, a stream other than 0 and the reserved bit clear."""
    length, stream = p.u24(0), p.u32(5)
    return (
        (p.proto == TCP)
        & p.has(FRAME_HEADER)
        & (p.u8(3) == HEADERS)
        & ((p.u8(4) & ~np.uint8(HEADERS_FLAGS)) == 0)
        & (length >= 1)
        & (length <= DEFAULT_MAX_FRAME_SIZE)
        & (stream != 0)
        & (stream < 2**31)
    )


@dataclass(frozen=True, slots=True)
class Http2Headers:
    """What a payload's header blocks say: gRPC or not, and the request's path when it carries one."""

    grpc: bool
    path: str


def read_headers(payload: bytes) -> Http2Headers | None:
    """The first header block of the payload's frames that is whole and decodes to HTTP/2 pseudo-headers
    (":method", ":status"...); None when there is none. Frames run after the preface, if any."""
    from hpack import Decoder  # only where a payload opens with HTTP/2 frames: not every replay's start-up

    position = len(PREFACE) if payload.startswith(PREFACE) else 0
    decoder = Decoder()
    while position + FRAME_HEADER <= len(payload):
        length = int.from_bytes(payload[position : position + 3], "big")
        frame_type, flags = payload[position + 3], payload[position + 4]
        body = payload[position + FRAME_HEADER : position + FRAME_HEADER + length]
        position += FRAME_HEADER + length
        if len(body) < length:
            return None
        if frame_type != HEADERS or not flags & END_HEADERS:
            continue
        fields = _header_fields(decoder, _header_block(body, flags))
        if fields:
            return Http2Headers(fields.get("content-type", "").startswith(GRPC_CONTENT_TYPE), fields.get(":path", ""))
    return None


def _header_block(body: bytes, flags: int) -> bytes:
    """The header block fragment of a HEADERS frame: without its padding and priority fields."""
    start, end = 0, len(body)
    if flags & PADDED and body:
        start, end = 1, len(body) - body[0]
    if flags & PRIORITY:
        start += 5
    return body[start:end] if start <= end else b""


def _header_fields(decoder: Decoder, block: bytes) -> dict[str, str]:
    """The block's fields by name, or {} when it does not decode or has no pseudo-header."""
    from hpack import HPACKError

    try:
        fields = decoder.decode(block)
    except (HPACKError, UnicodeDecodeError, IndexError, ValueError):
        return {}
    named = {str(name): str(value) for name, value in fields}
    return named if any(name.startswith(":") for name in named) else {}
