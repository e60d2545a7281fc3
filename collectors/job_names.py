"""Scheduler names for the jobs DFI finds: operators know a job as `llama-70b`, not as `job-10.0.1.10`.

The mapping comes from the `jobs:` section of the config file (name → hosts or CIDR prefixes) or from a
`jobs_file:` holding the same mapping (YAML or JSON), which the scheduler may rewrite while fabricscope runs:
the file is read again whenever its modification time changes. A DFI job takes the name of the first job
written whose hosts hold every host of it; a job no name holds every host of keeps DFI's id.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.errors import InputError
from pipeline.yamlfile import LineDict, LineList, line_of, load_yaml

log = logging.getLogger("fabricscope.jobs")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class JobNames:
    """Scheduler jobs in the order written, each with the networks of its hosts (a host is a /32 or /128)."""

    jobs: tuple[tuple[str, tuple[Network, ...]], ...] = ()

    @classmethod
    def from_hosts(cls, jobs: dict[str, Iterable[str]]) -> JobNames:
        """From name → hosts or prefixes as text (the simulator's truth, a test); ValueError on a bad one."""
        return cls(tuple((name, tuple(ipaddress.ip_network(host, strict=False) for host in hosts))
                         for name, hosts in jobs.items()))

    def name(self, hosts: Iterable[Address]) -> str | None:
        """The scheduler name of a job made of `hosts` (IPv4-mapped IPv6 counts as its IPv4), None if no job
        written holds all of them."""
        plain = [host.ipv4_mapped or host if isinstance(host, ipaddress.IPv6Address) else host for host in hosts]
        if not plain:
            return None
        for name, networks in self.jobs:
            if all(any(host in network for network in networks) for host in plain):
                return name
        return None

    def current(self) -> JobNames:
        return self


class JobNamesFile:
    """A jobs file, read again when its modification time changes. A rewrite that cannot be read (half
    written, or wrong) keeps the names read last and is logged once; the file is read again on its next
    change."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._mtime_ns = os.stat(path).st_mtime_ns
        except OSError as exc:
            raise InputError(path, f"cannot read: {exc.strerror or exc}") from exc
        self._names = read_job_names(path)

    def current(self) -> JobNames:
        try:
            mtime_ns = os.stat(self.path).st_mtime_ns
        except OSError:
            return self._names
        if mtime_ns != self._mtime_ns:
            self._mtime_ns = mtime_ns
            try:
                self._names = read_job_names(self.path)
            except InputError as exc:
                log.warning("jobs file not reloaded, keeping the names read before: %s", exc)
        return self._names


JobNameSource = JobNames | JobNamesFile


def read_job_names(path: str) -> JobNames:
    """The mapping of a jobs file (YAML or JSON: name → list of hosts or prefixes); InputError naming it."""
    return parse_job_names(load_yaml(path), path, "")


def parse_job_names(mapping: Any, source: str, section: str) -> JobNames:
    """name → [host or prefix, ...] as read from `source`, under `section` of it ('' for a whole file)."""
    if not isinstance(mapping, dict):
        raise InputError(source, f"{section}: must map job names to lists of hosts or prefixes",
                         line=getattr(mapping, "line", None))
    field = f"{section}." if section else ""
    jobs = []
    for name, hosts in mapping.items():
        line = line_of(mapping, name) if isinstance(mapping, LineDict) else None
        if not isinstance(hosts, list) or not hosts:
            raise InputError(source, f"{field}{name}: must be a non-empty list of hosts or prefixes", line=line)
        networks = []
        for index, host in enumerate(hosts):
            try:
                networks.append(ipaddress.ip_network(str(host), strict=False))
            except ValueError:
                item_line = line_of(hosts, index) if isinstance(hosts, LineList) else line
                raise InputError(source, f"{field}{name}: '{host}' is neither an address nor a prefix",
                                 line=item_line) from None
        jobs.append((str(name), tuple(networks)))
    return JobNames(tuple(jobs))


def job_names_config(document: LineDict, source: str, jobs_key: str, file_key: str) -> JobNameSource:
    """The config file's `jobs:` mapping or its `jobs_file:` (not both)."""
    if jobs_key in document and file_key in document:
        raise InputError(source, f"{file_key}: give either {jobs_key} or {file_key}, not both",
                         line=line_of(document, file_key))
    if jobs_key in document:
        return parse_job_names(document[jobs_key], source, jobs_key)
    path = document[file_key]
    if not isinstance(path, str) or not path:
        raise InputError(source, f"{file_key}: expected the path of a YAML or JSON file, got {path!r}",
                         line=line_of(document, file_key))
    if not os.path.isfile(path):
        raise InputError(source, f"{file_key}: no file at {path}", line=line_of(document, file_key))
    return JobNamesFile(path)
