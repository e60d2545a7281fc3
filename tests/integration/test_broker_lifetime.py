"""The embedded broker dies with the process that started it, however that process ends (SIGKILL here,
as the OOM killer would), and a broker started from a short-lived thread outlives that thread."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")]

ROOT = Path(__file__).resolve().parents[2]
GONE_WITHIN_S = 5.0

STARTER = """
import sys, threading, time
from pipeline.broker import EmbeddedBroker
holder = []
def start():
    holder.append(EmbeddedBroker().start())
if sys.argv[1] == "thread":
    worker = threading.Thread(target=start)
    worker.start()
    worker.join()  # the forking thread is gone: the broker must live on
else:
    start()
print(holder[0]._process.pid, holder[0].port, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    """A zombie counts as gone: it no longer runs and holds no port."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


@pytest.mark.parametrize("started_on", ["main", "thread"])
def test_sigkill_of_the_parent_takes_the_broker_with_it(started_on: str) -> None:
    parent = subprocess.Popen([sys.executable, "-c", STARTER, started_on], cwd=ROOT, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True)
    broker_pid = 0
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line, "the starter printed no broker pid"
        broker_pid = int(line.split()[0])
        time.sleep(1.0)  # a broker tied to the exited thread would be dead by now
        assert _alive(broker_pid), "the broker died with the thread that started it, not with its process"
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert _wait_gone(broker_pid, GONE_WITHIN_S), f"broker {broker_pid} outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if broker_pid and _alive(broker_pid):
            os.kill(broker_pid, signal.SIGKILL)


def test_a_broker_already_on_the_chosen_port_is_never_taken_for_ours(
    broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another broker (the session's, standing in for one a crash left behind) grabs the port between the
    free-port probe and our bind: our start fails instead of handing out the other broker's address."""
    from pipeline import broker as broker_module
    from pipeline.errors import BusError

    stale_port = int(broker.rsplit(":", 1)[1])
    monkeypatch.setattr(broker_module, "_free_port", lambda host: stale_port)
    ours = broker_module.EmbeddedBroker(broker_module.BrokerConfig(start_timeout_s=5))
    with pytest.raises(BusError, match="embedded broker"):
        ours.start()
    assert ours._process is None


def test_only_the_process_holding_the_listener_owns_it() -> None:
    import socket

    from pipeline.broker import _owns_listener

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert _owns_listener(os.getpid(), port)
        with subprocess.Popen(["sleep", "30"]) as other:
            try:
                assert not _owns_listener(other.pid, port)
            finally:
                other.kill()


def _broker_child(pid: int) -> int | None:
    """The tansu child of `pid`, from /proc/PID/task/*/children (psutil is not a dependency)."""
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids = children.read_text().split()
        except OSError:
            continue
        for child in pids:
            try:
                if b"tansu" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return int(child)
            except OSError:
                continue
    return None


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("run", ["replay", "demo"])
def test_a_killed_run_leaves_no_broker_behind(run: str, tmp_path: Path) -> None:
    """`fabricscope replay` (pacing a sample in real time) or `demo`, embedded, SIGKILLed mid-run."""
    arguments = {
        "replay": [str(ROOT / "samples" / "mixed.pcap"), "--topology", str(ROOT / "samples" / "topology.yaml"),
                   "--speed", "1.0"],
        "demo": ["--port", str(_free_port()), "--cycle", "20"],
    }[run]
    command = [sys.executable, "-m", "fabricscope.cli", run, *arguments, "--data-dir", str(tmp_path / "data")]
    replay = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    broker_pid = None
    try:
        deadline = time.monotonic() + 60
        while broker_pid is None and time.monotonic() < deadline and replay.poll() is None:
            broker_pid = _broker_child(replay.pid)
            time.sleep(0.1)
        assert broker_pid is not None, f"{run} started no broker (exit {replay.poll()})"
        time.sleep(1.0)  # past the broker's start, into the run
        assert replay.poll() is None, f"the {run} ended before it could be killed"
        replay.send_signal(signal.SIGKILL)
        replay.wait(timeout=10)
        assert _wait_gone(broker_pid, GONE_WITHIN_S), f"broker {broker_pid} outlived the killed {run}"
    finally:
        if replay.poll() is None:
            replay.kill()
            replay.wait()
        if broker_pid and _alive(broker_pid):
            os.kill(broker_pid, signal.SIGKILL)
