"""The collector over several processes (collectors.workers) gives the rows one collector gives: flows, link
bins and iterations, sorted, on every sample, across a step back in time with malformed packets, when the
flow tables are drained in parts at the end, and when batches cross the workers' shared memory in several
rounds of uneven slices; a worker that fails or is killed stops the others and its cause is raised;
`replay --workers 2 --out` writes the file `--workers 1` does; and replay's default number of workers leaves
a core to the process that merges their steps."""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pcap_builders import pcap_header, pcap_record, pcapng_epb, pcapng_idb, pcapng_shb

from collectors import collector as collector_module
from collectors import shard_exchange
from collectors import workers as workers_module
from collectors.collector import Collector, CollectorConfig, Records
from collectors.decode import Decoder
from collectors.packets import DecodedPackets, PacketBatch
from collectors.pcapfile import CaptureStats
from collectors.replay import replay_batches
from collectors.shard import shard_of
from collectors.workers import WorkerCollector
from pipeline.topology import load_topology

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
NAMES = ("mixed", "allreduce_congestion", "link_failure", "combo")
DAY_NS = 86_400 * 10**9
WORKERS = 2


def rows(steps: Iterator[Records]) -> dict[str, list[str]]:
    """Every row of every table as one comparable line, sorted (workers may release a step's rows in another
    order)."""
    tables: dict[str, list[str]] = {}
    for step in steps:
        for table, columns in step.tables():
            names = sorted(columns)
            count = len(columns[names[0]])
            tables.setdefault(table, []).extend(
                repr(tuple(columns[name][i] for name in names)) for i in range(count)
            )
    return {table: sorted(lines) for table, lines in tables.items()}


@dataclasses.dataclass
class Runs:
    """One collector and two workers over the same capture: what each gave."""

    one: Collector
    one_rows: dict[str, list[str]]
    one_reads: list[tuple[str, CaptureStats]]
    many: WorkerCollector
    many_rows: dict[str, list[str]]

    def assert_same(self) -> None:
        assert set(self.one_rows) == {"flows", "link_bins", "iterations"}
        for table, lines in self.one_rows.items():
            assert len(self.many_rows[table]) == len(lines), table
            assert self.many_rows[table] == lines, table
        assert dataclasses.asdict(self.many.stats) == dataclasses.asdict(self.one.stats)
        assert self.many.reads == self.one_reads


def one_and_many(pcap: Path, topology_path: Path, workers: int = WORKERS) -> Runs:
    topology = load_topology(topology_path)
    one, one_reads = Collector(topology), []
    one_rows = rows(one.run(replay_batches([pcap], progress=False, reads=one_reads)))

    def batches(_: int, reads: list[tuple[str, CaptureStats]]) -> Iterator[PacketBatch]:
        return replay_batches([pcap], progress=False, reads=reads)

    many = WorkerCollector(topology, one.config, workers=workers, batches=batches).start()
    return Runs(one, one_rows, one_reads, many, rows(many.run()))


@pytest.mark.parametrize("name", NAMES)
def test_rows_of_two_workers_equal_one_collectors(name: str) -> None:
    runs = one_and_many(SAMPLES / f"{name}.pcap", SAMPLES / f"{name}.topology.yaml")
    assert len(runs.one_rows["flows"]) > 100 and len(runs.one_rows["link_bins"]) > 100 and runs.one_rows["iterations"]
    runs.assert_same()


def test_a_step_back_in_time_and_malformed_packets_give_the_same_rows(tmp_path: Path) -> None:
    """The sample's second half two days earlier (a new epoch: DFI flushed and started afresh in both) with
    frames too short for Ethernet among it (counted once, by worker 0)."""
    records = [
        (int(ts), bytes(batch.data[start : start + length]))
        for batch in replay_batches([SAMPLES / "allreduce_congestion.pcap"], progress=False)
        for start, length, ts in zip(batch.offset, batch.caplen, batch.ts_ns, strict=True)
    ]
    half = len(records) // 2
    moved = records[:half] + [(ts - 2 * DAY_NS, frame) for ts, frame in records[half:]]
    moved[10:10] = [(moved[10][0], b"\x00" * 9)] * 3
    path = tmp_path / "step_back.pcap"
    path.write_bytes(pcap_header(nano=True) + b"".join(pcap_record(ts, frame, nano=True) for ts, frame in moved))
    runs = one_and_many(path, SAMPLES / "allreduce_congestion.topology.yaml")
    assert runs.one.stats.malformed == 3 and len(runs.one_rows["iterations"]) > 2
    runs.assert_same()


def test_tables_drained_in_parts_at_the_end_give_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each worker drains its own table, in as many steps as it needs (forked workers see the patched size)."""
    monkeypatch.setattr(collector_module, "FINISH_ROWS", 20)
    one_and_many(SAMPLES / "combo.pcap", SAMPLES / "combo.topology.yaml").assert_same()


def test_batches_in_several_rounds_of_uneven_slices_give_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three workers share rounds of 1,000 packets (slices of 333 and 334): a 65,536-packet batch takes 66."""
    monkeypatch.setattr(shard_exchange, "DEFAULT_BATCH_SIZE", 1_000)
    one_and_many(SAMPLES / "combo.pcap", SAMPLES / "combo.topology.yaml", workers=3).assert_same()


def test_a_pcapng_of_two_link_types_with_garbage_frames_gives_the_same_rows(tmp_path: Path) -> None:
    """What the generator never writes, through three workers: a pcapng whose frames come through an Ethernet
    interface and, in runs, one of another link type (which the reader skips and counts), with random bytes
    for every 50th frame. The rows, the malformed counts and the reads are those of one collector."""
    batch = next(iter(replay_batches([SAMPLES / "combo.pcap"], progress=False)))
    rng = np.random.default_rng(7)
    data = bytearray(pcapng_shb() + pcapng_idb("eth0") + pcapng_idb("usb0", linktype=147))
    for i in range(min(len(batch), 6000)):
        start = int(batch.offset[i])
        frame = bytes(batch.data[start : start + int(batch.caplen[i])])
        if i % 50 == 0:
            frame = rng.integers(0, 256, int(rng.integers(1, 80)), dtype=np.uint8).tobytes()
        data += pcapng_epb(1 if i % 400 >= 380 else 0, int(batch.ts_ns[i]) // 1000, frame)
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(bytes(data))
    runs = one_and_many(path, SAMPLES / "combo.topology.yaml", workers=3)
    assert runs.one.stats.malformed > 0 and runs.one.stats.packets == 5_700
    assert runs.one_reads[0][1].skipped["other_linktype"] == 300
    runs.assert_same()


def failing_round(monkeypatch: pytest.MonkeyPatch, fail: Callable[[], None]) -> None:
    """Worker 1 of 3 calls `fail` at its third round of 1,000 packets (the forked workers see the patches)."""
    monkeypatch.setattr(shard_exchange, "DEFAULT_BATCH_SIZE", 1_000)
    round_of = shard_exchange.ShardExchange._round_of
    calls = itertools.count()

    def patched(self: shard_exchange.ShardExchange, index: int, *args: Any) -> shard_exchange.ShardStep:
        if index == 1 and next(calls) == 2:
            fail()
        return round_of(self, index, *args)

    monkeypatch.setattr(shard_exchange.ShardExchange, "_round_of", patched)


def run_three_workers(pcap: Path, topology_path: Path) -> None:
    def batches(_: int, reads: list[tuple[str, CaptureStats]]) -> Iterator[PacketBatch]:
        return replay_batches([pcap], progress=False, reads=reads)

    collector = WorkerCollector(load_topology(topology_path), CollectorConfig(), workers=3, batches=batches).start()
    for _ in collector.run():
        pass


def test_a_worker_that_fails_stops_the_others_and_its_error_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail() -> None:
        raise ValueError("worker 1 broke")

    failing_round(monkeypatch, fail)
    with pytest.raises(RuntimeError, match=r"(?s)fabricscope-collector-1 failed:.*ValueError: worker 1 broke"):
        run_three_workers(SAMPLES / "combo.pcap", SAMPLES / "combo.topology.yaml")


@pytest.mark.timeout(60)
def test_a_worker_killed_is_reported_while_the_others_wait_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Also when this process has a SIGTERM handler that only asks a service to stop, which the workers
    inherit at the fork: the two left at the barrier must still end when stopped (in the whole suite, where
    an earlier test had left such a handler, they once outlived `stop` and it waited for them for ever)."""
    asked: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda number, _frame: asked.append(number))
    try:
        failing_round(monkeypatch, lambda: os.kill(os.getpid(), signal.SIGKILL))
        with pytest.raises(RuntimeError, match=r"fabricscope-collector-1 died \(exit code -9\)"):
            run_three_workers(SAMPLES / "combo.pcap", SAMPLES / "combo.topology.yaml")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not asked  # the workers were stopped, not this process


def test_the_shared_memory_holds_every_decoded_column_as_the_decoder_makes_it() -> None:
    topology = load_topology(SAMPLES / "combo.topology.yaml")
    decoded = Decoder(topology).decode(next(iter(replay_batches([SAMPLES / "combo.pcap"], progress=False))))
    columns = {field.name: getattr(decoded, field.name) for field in dataclasses.fields(DecodedPackets)}
    assert [(name, dtype, shape) for name, dtype, shape in shard_exchange._FIELDS] == [
        (name, column.dtype, column.shape[1:]) for name, column in columns.items()]


def test_both_directions_of_a_flow_go_to_one_worker_and_frames_without_ip_by_link() -> None:
    topology = load_topology(SAMPLES / "combo.topology.yaml")
    batch = next(iter(replay_batches([SAMPLES / "combo.pcap"], progress=False)))
    decoded = Decoder(topology).decode(batch)
    reverse = dataclasses.replace(decoded, src_hi=decoded.dst_hi, src_lo=decoded.dst_lo, dst_hi=decoded.src_hi,
                                  dst_lo=decoded.src_lo, src_port=decoded.dst_port, dst_port=decoded.src_port,
                                  direction=-decoded.direction)
    shard = shard_of(decoded, 4)
    assert (shard_of(reverse, 4) == shard).all()
    assert set(np.unique(shard).tolist()) == {0, 1, 2, 3}  # flows spread over the workers
    non_ip = decoded.ok & (decoded.proto == 0)
    assert non_ip.any()
    for link in np.unique(decoded.link[non_ip]):
        assert len(np.unique(shard[non_ip & (decoded.link == link)])) == 1


def test_replay_out_with_two_workers_writes_the_rows_of_one(tmp_path: Path) -> None:
    written = {}
    for workers in (1, WORKERS):
        out = tmp_path / f"flows-{workers}.jsonl"
        done = subprocess.run(
            [sys.executable, "-m", "fabricscope.cli", "replay", str(SAMPLES / "link_failure.pcap"), "--topology",
             str(SAMPLES / "link_failure.topology.yaml"), "--out", str(out), "--workers", str(workers),
             "--no-progress"], capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr.startswith("30481 packets, 0 records skipped")
        written[workers] = sorted(out.read_text().splitlines())
    assert len(written[1]) > 100 and written[WORKERS] == written[1]
    refused = subprocess.run([sys.executable, "-m", "fabricscope.cli", "replay", str(SAMPLES / "mixed.pcap"),
                              "--topology", str(SAMPLES / "topology.yaml"), "--out", str(tmp_path / "x.jsonl"),
                              "--workers", "0"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and refused.stderr.strip() == "fabricscope replay: --workers: must be at least 1"


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (2, 1), (3, 2), (5, 4), (64, 4)])
def test_replays_default_leaves_the_merge_a_core(monkeypatch: pytest.MonkeyPatch, cores: int, workers: int) -> None:
    monkeypatch.setattr(workers_module.os, "sched_getaffinity", lambda _pid: set(range(cores)))
    assert workers_module.default_workers() == workers
