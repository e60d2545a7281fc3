"""What every long-running source (live capture, sFlow, SNMP, gNMI) gives the service that runs it.

A source turns what it receives into record batches and keeps running totals; the service
(fabricscope.source_service) owns everything else: the stop signal, Kafka or the embedded store, buffering,
and the Prometheus metrics made from `counts()`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Protocol, runtime_checkable

import numpy as np

Columns = dict[str, np.ndarray]
Step = list[tuple[str, Columns]]  # (table of pipeline.records, batch) pairs completed together


class Source(Protocol):
    """A live source. Its constructor does no I/O; `start` opens what it needs (a socket, a check of the
    interface) and reports bad settings as InputError before anything runs; `steps` (which starts it if
    needed) blocks on its input and yields at least every `tick_s` (an empty step when nothing arrived) so
    the service can see `stop`; once `stop` is set it yields its final flush (open flows, pending counters)
    and returns, releasing what `start` opened. `stop()` releases it too. Malformed input is counted in
    `counts()`, never raised."""

    name: str  # "capture", "sflow", "snmp", "gnmi": the metrics prefix and the `source` of counters rows

    def start(self) -> object: ...

    def stop(self) -> None: ...

    def steps(self, stop: threading.Event) -> Iterator[Step]: ...

    def counts(self) -> Mapping[str, int]:
        """Cumulative totals since start, by metric name (e.g. packets, kernel_drops, malformed, errors)."""
        ...


@runtime_checkable
class ReasonCounts(Protocol):
    """A source that also says why it skipped input: for some keys of `counts()`, the same total by reason."""

    def counts_by_reason(self) -> Mapping[str, Mapping[str, int]]:
        """E.g. {"malformed_packets": {"truncated": 3, "bad_ip_header": 1}}: count name -> reason -> total."""
        ...


@runtime_checkable
class LinkTypeCounts(Protocol):
    """A source that decodes captured frames: the packets of link types the decoder does not open, which are
    counted, not malformed (a capture of another link layer is not damage)."""

    def unsupported_link_types(self) -> Mapping[int, int]:
        """Link type number (LINKTYPE_*) -> packets seen of it."""
        ...
