"""Detail strings of a few labels, parsed in Python from one captured payload each.

They run only on the rare rows a signature picked (a ClientHello, an SSH banner), never per packet, and read
strictly within the captured bytes: a payload cut before the end of the field yields no detail rather than
a guess.
"""

from __future__ import annotations

import re

TLS_RECORD_HEADER = 5
HANDSHAKE_HEADER = 4
HELLO_RANDOM = 32
SERVER_NAME_EXTENSION = 0x0000
HOST_NAME = 0x00
HOSTNAME = re.compile(rb"[A-Za-z0-9_.-]{1,253}")
SSH_BANNER = re.compile(rb"(SSH-[\x21-\x7e]+(?: [\x20-\x7e]*)?)\r?\n")
SSH_BANNER_MAX = 255  # RFC 4253 4.2, including CR LF


class _Truncated(Exception):
    """The field runs past the captured bytes."""


class _Reader:
    """Big-endian reads that stop at the end of the captured payload."""

    def __init__(self, payload: bytes, position: int) -> None:
        self.payload = payload
        self.position = position

    def take(self, n: int) -> bytes:
        end = self.position + n
        if end > len(self.payload):
            raise _Truncated
        chunk = self.payload[self.position : end]
        self.position = end
        return chunk

    def number(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def skip_vector(self, length_bytes: int) -> None:
        self.take(self.number(length_bytes))


def server_name(payload: bytes) -> str:
    """host_name of the server_name extension (RFC 6066 3) of a ClientHello record, '' if absent or cut."""
    reader = _Reader(payload, TLS_RECORD_HEADER + HANDSHAKE_HEADER)
    try:
        reader.take(2 + HELLO_RANDOM)  # legacy_version, random
        reader.skip_vector(1)  # legacy_session_id
        reader.skip_vector(2)  # cipher_suites
        reader.skip_vector(1)  # legacy_compression_methods
        extensions_end = reader.number(2) + reader.position
        while reader.position + 4 <= extensions_end:
            extension_type, length = reader.number(2), reader.number(2)
            if extension_type != SERVER_NAME_EXTENSION:
                reader.take(length)
                continue
            names = _Reader(reader.take(length), 0)
            names_end = names.number(2) + names.position
            while names.position < names_end:
                name_type = names.number(1)
                name = names.take(names.number(2))
                if name_type == HOST_NAME:
                    return name.decode("ascii") if HOSTNAME.fullmatch(name) else ""
            return ""
    except _Truncated:
        return ""
    return ""


def ssh_software(payload: bytes) -> str:
    """The identification line (RFC 4253 4.2) without CR LF, '' if its end was not captured."""
    found = SSH_BANNER.match(payload[:SSH_BANNER_MAX])
    return found.group(1).decode("ascii") if found else ""


QUIC_VERSIONS = {0x00000001: "v1", 0x6B3343CF: "v2"}


def quic_version(payload: bytes) -> str:
    """The version of a QUIC long header (RFC 9000 17.2) as RFC 9369 names it, '' if unknown or cut."""
    return QUIC_VERSIONS.get(int.from_bytes(payload[1:5], "big"), "") if len(payload) >= 5 else ""
