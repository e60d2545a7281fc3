"""`fabricscope sflow`: sFlow v5 from switches, received on a UDP socket, through the same collector as files.

Each tick drains every datagram the socket holds into one preallocated buffer and decodes them together
(collectors.sflow), so a busy agent costs one compiled walk per tick, not Python per sample. Sampled headers
go through one collectors.collector.Collector per sampling rate (its flows and bins scale by that rate);
counter samples become `counters` rows and dropped-packet notifications `drops` rows. Packets are stamped
with the time their datagram was read, at most `gather_s` (10 ms) after it arrived: sampled traffic needs no
finer clock, and a kernel stamp per datagram would cost a recvmsg and its ancillary data in Python per
datagram.
"""

from __future__ import annotations

import dataclasses
import errno
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from collectors.collector import DEFAULT_EXPORTER, Collector, CollectorConfig
from collectors.sflow import SflowDecoder, with_sflow_interfaces
from pipeline.errors import InputError
from pipeline.settings import IN_CODE, Origin, split_host_port
from pipeline.source import Step
from pipeline.topology import Topology

DEFAULT_PORT = 6343
DEFAULT_LISTEN = f"0.0.0.0:{DEFAULT_PORT}"
DEFAULT_RECEIVE_BUFFER = 32 * 1024 * 1024  # the kernel's queue: absorbs a burst while a tick decodes
DEFAULT_BATCH_BYTES = 4 * 1024 * 1024  # datagrams decoded together per tick, at most
DEFAULT_TICK_S = 0.5
DEFAULT_GATHER_S = 0.01  # after a quiet spell, let datagrams gather this long: a step's cost is mostly fixed
MAX_DATAGRAM = 65_535
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # root may exceed net.core.rmem_max with it


@dataclass(frozen=True, kw_only=True)
class SflowConfig:
    """The `sflow` command's settings (config section `sflow:`): the UDP address agents send to, and how
    the socket is drained."""

    listen: str = DEFAULT_LISTEN
    tick_s: float = DEFAULT_TICK_S
    gather_s: float = DEFAULT_GATHER_S
    receive_buffer: int = DEFAULT_RECEIVE_BUFFER
    batch_bytes: int = DEFAULT_BATCH_BYTES

    @property
    def host(self) -> str:
        return (split_host_port(self.listen) or ("", 0))[0]

    @property
    def port(self) -> int:
        return (split_host_port(self.listen) or ("", 0))[1]

    def validate(self, origin: Origin = IN_CODE) -> None:
        parsed = split_host_port(self.listen)
        if parsed is None or not 0 <= parsed[1] <= 65_535:
            raise origin.error("listen", f"'{self.listen}' is not HOST:PORT")
        for key in ("tick_s", "gather_s", "receive_buffer", "batch_bytes"):
            if getattr(self, key) <= 0:
                raise origin.error(key, "must be positive")


class SflowSource:
    """sFlow on `config.listen` as a pipeline.source.Source. start() binds the socket, so a taken port or a
    bad address is reported before anything runs and `port` is the real one when 0 was asked; stop() (or the
    end of `steps`) closes it. `counts` may be read from another thread meanwhile."""

    name = "sflow"

    def __init__(
        self,
        topology: Topology,
        config: SflowConfig | None = None,
        *,
        exporter: str = DEFAULT_EXPORTER,
        collector_config: CollectorConfig | None = None,
    ) -> None:
        self.config = config or SflowConfig()
        self.topology = with_sflow_interfaces(topology)
        self.decoder = SflowDecoder(self.topology)
        self.tick_s = self.config.tick_s
        self.gather_s = self.config.gather_s
        self._config = dataclasses.replace(collector_config or CollectorConfig(), exporter=exporter)
        self._collectors: dict[int, Collector] = {}
        self._buffer = np.empty(max(self.config.batch_bytes, MAX_DATAGRAM) + MAX_DATAGRAM, dtype=np.uint8)
        self._counter_rows = 0
        self._drop_rows = 0
        self._socket: socket.socket | None = None
        self.host, self.port = self.config.host, self.config.port
        self.receive_buffer = 0

    def start(self) -> SflowSource:
        """Bind the socket (once); InputError naming --listen when the address is taken or not this host's."""
        if self._socket is None:
            self._socket = _bind(self.config.host, self.config.port, self.config.receive_buffer)
            self.port = self._socket.getsockname()[1]
            self.receive_buffer = self._socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        return self

    def stop(self) -> None:
        """Close the socket; the next start() binds again."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def steps(self, stop: threading.Event) -> Iterator[Step]:
        """A step per tick (what quiet collectors' time ended when nothing arrived); after `stop`, the
        datagrams the socket still holds and every collector's final flush. Unless the last drain filled the
        buffer, datagrams gather for `gather_s` first, so a trickle costs a step per `gather_s`, not one per
        datagram. Starts the source if needed."""
        sock = self.start()._socket
        assert sock is not None
        try:
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            full = False
            while not stop.is_set():
                if not poller.poll(self.tick_s * 1000):
                    yield self._advance(set())
                    continue
                if not full:
                    stop.wait(self.gather_s)
                offsets, lengths, arrivals = self._drain()
                full = int(lengths.sum()) > len(self._buffer) - MAX_DATAGRAM  # as _drain stops
                yield self._step(offsets, lengths, arrivals)
            yield from self._held()
            yield [table for collector in self._collectors.values() for table in collector.finish().tables()]
        finally:
            self.stop()

    def _held(self) -> Iterator[Step]:
        """At stop, the datagrams the kernel already holds: sent before the stop, they would otherwise be lost
        with nothing to count them (no later datagram shows their sequence gap). At most a receive buffer's
        worth, so an agent that keeps sending cannot hold the stop off."""
        drained = 0
        while drained < self.receive_buffer:
            offsets, lengths, arrivals = self._drain()
            if not len(offsets):
                return
            drained += int(lengths.sum())
            yield self._step(offsets, lengths, arrivals)

    def _drain(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Receive every datagram ready now (up to the buffer's room) without blocking."""
        sock = self._socket
        assert sock is not None
        view = self._buffer.data  # a writable memoryview of the receive buffer
        limit = len(self._buffer) - MAX_DATAGRAM
        offsets: list[int] = []
        lengths: list[int] = []
        arrivals: list[int] = []
        position = 0
        while position <= limit:
            try:
                size = sock.recv_into(view[position:], MAX_DATAGRAM, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            offsets.append(position)
            lengths.append(size)
            arrivals.append(time.time_ns())
            position += size
        return (np.array(offsets, dtype=np.int64), np.array(lengths, dtype=np.int64),
                np.array(arrivals, dtype=np.int64))

    def _step(self, offsets: np.ndarray, lengths: np.ndarray, arrivals: np.ndarray) -> Step:
        decoded = self.decoder.decode(self._buffer, offsets, lengths, arrivals)
        step: Step = []
        for rate, batch in decoded.packets.items():
            collector = self._collectors.get(rate)
            if collector is None:
                config = dataclasses.replace(self._config, sampling_rate=rate)
                collector = self._collectors[rate] = Collector(self.topology, config)
            records = collector.process(batch)
            if len(records):
                step += records.tables()
        if len(decoded.counters["ts"]):
            self._counter_rows += len(decoded.counters["ts"])
            step.append(("counters", decoded.counters))
        if len(decoded.drops["ts"]):
            self._drop_rows += len(decoded.drops["ts"])
            step.append(("drops", decoded.drops))
        return step + self._advance(set(decoded.packets))

    def _advance(self, fed: set[int]) -> Step:
        """Packets are stamped on arrival, so a collector that got none this tick moves its packet time on to
        now: the rows and bins of a quiet agent leave without waiting for its next sample."""
        now = time.time_ns()
        step: Step = []
        for rate, collector in self._collectors.items():
            if rate not in fed:
                records = collector.advance(now)
                if len(records):
                    step += records.tables()
        return step

    def counts(self) -> Mapping[str, int]:
        """Totals since start. `malformed`: sFlow datagrams and samples skipped; `malformed_packets`: sampled
        headers the packet decoder could not read; `lost_datagrams`: gaps in the agents' sequence numbers."""
        stats = self.decoder.stats
        collectors = [collector.stats for collector in self._collectors.copy().values()]
        return {
            "datagrams": stats.datagrams,
            "samples_flow": stats.tallies["samples_flow"],
            "samples_counter": stats.tallies["samples_counter"],
            "drop_notifications": stats.tallies["drop_notifications"],
            "malformed": stats.malformed_total,
            "lost_datagrams": stats.lost_datagrams,
            "packets": sum(c.packets for c in collectors),
            "malformed_packets": sum(c.malformed for c in collectors),
            "unattributed": sum(c.unattributed for c in collectors),
            "flow_rows": sum(c.flow_rows for c in collectors),
            "flows_exported_early": sum(c.flows_exported_early for c in collectors),
            "counter_rows": self._counter_rows,
            "drop_rows": self._drop_rows,
        }

    def counts_by_reason(self) -> Mapping[str, Mapping[str, int]]:
        """`malformed` (datagrams and samples) and `malformed_packets` (sampled headers) by reason
        (pipeline.source.ReasonCounts)."""
        packets: Counter[str] = Counter()
        for collector in self._collectors.copy().values():
            packets.update(collector.stats.malformed_by_reason)
        return {"malformed": self.decoder.stats.malformed, "malformed_packets": dict(packets)}

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> SflowSource:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _bind(host: str, port: int, receive_buffer: int) -> socket.socket:
    """A UDP socket bound to host:port with a large receive queue; InputError naming --listen otherwise."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if not 0 <= port <= 65_535:
        raise InputError("--listen", f"{where}: the port must be 0..65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError("--listen", f"{where}: not an address of this host ({exc})") from exc
    sock = socket.socket(family, kind, proto)
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, receive_buffer)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise InputError("--listen", f"{where} is in use: {exc.strerror}") from exc
        raise InputError("--listen", f"{where}: cannot listen: {exc.strerror or exc}") from exc
    return sock
