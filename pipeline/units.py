"""How numbers and times read for people, in one place for the CLI's tables and the dashboard: times to the ms
with their zone, bytes with SI prefixes, percentages without scientific notation, protocols by name, counts
with their noun in the right number."""

from __future__ import annotations

import math
from datetime import UTC, datetime

PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 58: "ipv6-icmp", 132: "sctp"}  # IANA keywords
SI_PREFIXES = ("", "k", "M", "G", "T", "P", "E")
SMALLEST_PERCENT = 0.001  # below it a share reads "<0.001%": more digits would only be noise


def shown_time(moment: datetime) -> str:
    """A time for people: ISO 8601 to the ms (cut, never rounded into the next ms) with its zone, Z for UTC."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def si_bytes(count: float) -> str:
    """30920640 → '30.9 MB': three significant digits and an SI prefix (powers of 1000, as link speeds are)."""
    size, prefix = float(count), 0
    while abs(size) >= 999.95 and prefix < len(SI_PREFIXES) - 1:
        size, prefix = size / 1000, prefix + 1
    if prefix == 0:
        return f"{count:g} B"
    return f"{size:.{max(0, 2 - int(math.log10(abs(size))))}f} {SI_PREFIXES[prefix]}B"


def percent(value: float) -> str:
    """A percentage with two significant digits and never an exponent: 45%, 4.5%, 0.075%, <0.001%, 0%."""
    if not math.isfinite(value) or value <= 0:
        return "0%"
    if value >= 10:
        return f"{value:.0f}%"
    if value < SMALLEST_PERCENT:
        return f"<{SMALLEST_PERCENT:g}%"
    return f"{value:.{1 - math.floor(math.log10(value))}f}%"


def protocol_name(number: int) -> str:
    """The IANA keyword of an IP protocol number, the number itself when it has none here."""
    return PROTOCOL_NAMES.get(number, str(number))


def counted(count: int, noun: str) -> str:
    """'1 packet', '2 packets', '0 packets'."""
    return f"{count} {noun}" + ("" if count == 1 else "s")
