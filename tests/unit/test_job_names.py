"""Scheduler names for DFI's jobs: the `jobs:` section or `jobs_file:` of the config, the rule that names a
job, a jobs file re-read when it changes, and the names in the collector's rows of a sample whose jobs and
hosts the generator wrote down."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import numpy as np
import pytest

from collectors.collector import Collector, CollectorConfig
from collectors.job_names import JobNames, JobNamesFile
from collectors.replay import replay_batches
from fabricscope.cli import build_parser
from fabricscope.config import Config, load_config
from pipeline.errors import InputError
from pipeline.topology import load_topology

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
TOPOLOGY = str(SAMPLES / "topology.yaml")


def settle(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "fabricscope.yaml"
    path.write_text(text)
    return load_config(build_parser("replay").parse_args(["replay", "x.pcap", "--topology", TOPOLOGY,
                                                           "--config", str(path)]))


def hosts(*texts: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    return [ipaddress.ip_address(text) for text in texts]


def test_a_job_takes_the_name_whose_hosts_hold_all_of_its_hosts() -> None:
    names = JobNames.from_hosts({"llama-70b": ["10.0.1.0/24", "10.0.2.10"], "vit-h": ["10.0.0.0/8"]})
    assert names.name(hosts("10.0.1.10", "10.0.1.11", "10.0.2.10")) == "llama-70b"
    assert names.name(hosts("10.0.1.10", "10.0.2.11")) == "vit-h"  # 10.0.2.11 is not llama's: the next one
    assert names.name(hosts("::ffff:10.0.1.10", "::ffff:10.0.2.10")) == "llama-70b"  # as DFI holds IPv4
    assert names.name(hosts("10.0.1.10", "192.0.2.1")) is None  # no job holds every host: DFI's id stays
    assert names.name([]) is None


def test_the_jobs_section_is_read_from_the_config_file(tmp_path: Path) -> None:
    config = settle(tmp_path, "jobs:\n  llama-70b: [10.0.1.0/24, 10.0.2.10]\n  vit-h: ['fd00::/64']\n")
    assert isinstance(config.jobs, JobNames)
    assert config.jobs.name(hosts("10.0.2.10", "10.0.1.3")) == "llama-70b"
    assert config.jobs.name(hosts("fd00::5")) == "vit-h"
    assert settle(tmp_path, "detectors: {}\n").jobs is None


@pytest.mark.parametrize(("text", "line", "reason"), [
    ("jobs:\n  llama-70b: [10.0.1.0/24]\n  vit-h: [10.0.1.300]\n", 3, "jobs.vit-h: '10.0.1.300' is neither"),
    ("jobs:\n  llama-70b: 10.0.1.0/24\n", 2, "jobs.llama-70b: must be a non-empty list"),
    ("jobs: [10.0.1.1]\n", 1, "jobs: must map job names"),
    ("jobs: {a: [10.0.1.1]}\njobs_file: jobs.yaml\n", 2, "jobs_file: give either jobs or jobs_file"),
    ("jobs_file: 3\n", 1, "jobs_file: expected the path"),
])
def test_a_bad_jobs_section_names_file_line_and_field(tmp_path: Path, text: str, line: int, reason: str) -> None:
    with pytest.raises(InputError) as bad:
        settle(tmp_path, text)
    assert (bad.value.source, bad.value.line) == (str(tmp_path / "fabricscope.yaml"), line)
    assert bad.value.reason.startswith(reason)


def test_a_missing_or_bad_jobs_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError) as missing:
        settle(tmp_path, f"detectors: {{}}\njobs_file: {tmp_path / 'jobs.json'}\n")
    assert (missing.value.source, missing.value.line) == (str(tmp_path / "fabricscope.yaml"), 2)
    assert missing.value.reason == f"jobs_file: no file at {tmp_path / 'jobs.json'}"
    (tmp_path / "jobs.json").write_text('{"llama-70b": ["10.0.1.x"]}')
    with pytest.raises(InputError, match=r"jobs\.json:1: llama-70b: '10.0.1.x' is neither"):
        settle(tmp_path, f"jobs_file: {tmp_path / 'jobs.json'}\n")


def _rewrite(path: Path, text: str, mtime_ns: int) -> None:
    """Write and set the modification time explicitly: two writes within the clock's step look unchanged."""
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_a_jobs_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    _rewrite(path, json.dumps({"llama-70b": ["10.0.1.10"]}), 1_000_000_000)
    config = settle(tmp_path, f"jobs_file: {path}\n")
    assert isinstance(config.jobs, JobNamesFile)
    assert config.jobs.current().name(hosts("10.0.1.10")) == "llama-70b"
    _rewrite(path, "llama-405b: [10.0.1.0/24]\n", 2_000_000_000)  # the scheduler moved on (YAML this time)
    assert config.jobs.current().name(hosts("10.0.1.10")) == "llama-405b"
    _rewrite(path, "llama-405b: [10.0.1.0/24", 3_000_000_000)  # caught half written
    assert config.jobs.current().name(hosts("10.0.1.10")) == "llama-405b"  # the names read last stay
    path.unlink()
    assert config.jobs.current().name(hosts("10.0.1.10")) == "llama-405b"


def _jobs_of_rows(names: JobNames | None) -> dict[tuple[str, str], str]:
    """(src, dst) of every RoCE row of samples/combo → the job the collector gave it (latest row wins)."""
    jobs: dict[tuple[str, str], str] = {}
    collector = Collector(load_topology(TOPOLOGY), CollectorConfig(job_names=names))
    for records in collector.run(replay_batches([SAMPLES / "combo.pcap"], progress=False)):
        rows = records.flows
        for i in np.flatnonzero(rows["job"] != ""):
            pair = tuple(str(ipaddress.IPv6Address(bytes(rows[end][i])).ipv4_mapped) for end in ("src_ip", "dst_ip"))
            jobs[(pair[0], pair[1])] = str(rows["job"][i])
    return jobs


def test_the_collector_names_the_jobs_it_finds_as_the_scheduler_does() -> None:
    truth = json.loads((SAMPLES / "combo.truth.json").read_text())
    job_hosts = {name: job["hosts"] for name, job in truth["jobs"].items()}
    expected = {(flow["src_ip"], flow["dst_ip"]): flow["job"] for flow in truth["flows"] if flow["job"]}

    assert _jobs_of_rows(JobNames.from_hosts(job_hosts)) == expected

    # a name that holds only some of a job's hosts names nothing: the job keeps DFI's id (its lowest host)
    llama = job_hosts["llama-70b"]
    partial = JobNames.from_hosts({"llama-70b": llama[: len(llama) // 2]})
    assert set(_jobs_of_rows(partial).values()) == {f"job-{min(map(ipaddress.ip_address, hosts))}"
                                                     for hosts in job_hosts.values()}
