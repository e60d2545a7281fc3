"""`fabricscope gnmi --target DEVICE=HOST:PORT... --topology T`: OpenConfig interface counters over gNMI.

Each target gets a STREAM subscription SAMPLEing the interface state every --interval; a dropped stream is
subscribed again with backoff. `--file FILE --device NAME` reads the same notifications from a JSON-lines
file (what `gnmic subscribe --format json` or pygnmi print) once, then exits.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from collectors.gnmi import GnmiConfig
from fabricscope.options import option
from fabricscope.source_service import add_service_arguments
from pipeline.source import Source

if TYPE_CHECKING:
    from fabricscope.config import Config

METRICS_PORT = 9713


def add_arguments(parser: argparse.ArgumentParser) -> None:
    option(parser, GnmiConfig, "targets", "--target", action="append", metavar="DEVICE=HOST:PORT",
           help="a switch's gNMI server, repeatable; DEVICE is its name in the topology's counters")
    option(parser, GnmiConfig, "username", "--username", help="gNMI user")
    option(parser, GnmiConfig, "password", "--password", default=os.environ.get("FABRICSCOPE_GNMI_PASSWORD"),
           help="gNMI password (better: FABRICSCOPE_GNMI_PASSWORD)")
    option(parser, GnmiConfig, "insecure", "--insecure", action="store_true", help="plaintext gRPC, no TLS")
    option(parser, GnmiConfig, "skip_verify", "--skip-verify", action="store_true",
           help="TLS without checking the certificate")
    option(parser, GnmiConfig, "root_cert", "--root-cert", metavar="FILE",
           help="CA certificate the servers' certificates are checked with")
    option(parser, GnmiConfig, "interval", "--interval", type=float, metavar="S", help="SAMPLE interval")
    option(parser, GnmiConfig, "path", "--path", action="append", metavar="PATH",
           help="subscription path, repeatable")
    option(parser, GnmiConfig, "all_interfaces", "--all-interfaces", action="store_true",
           help="also record interfaces the topology does not map (link '')")
    option(parser, GnmiConfig, "file", "--file", metavar="FILE",
           help="read notifications from this JSON-lines file instead, then exit")
    option(parser, GnmiConfig, "device", "--device", help="with --file: the device the notifications come from")
    add_service_arguments(parser, metrics_port=METRICS_PORT)


def build_source(config: Config) -> Source:
    """The source the settings describe (nothing connects before it runs)."""
    from collectors.gnmi import GnmiFileSource, GnmiSource, read_gnmi_file
    from pipeline.topology import load_topology

    settings = config.gnmi
    topology = load_topology(config.required_topology())
    if settings.file:
        assert settings.device is not None  # GnmiConfig.validate
        # read whole here, so a bad line is named (on one line) before the service starts
        batches = list(read_gnmi_file(settings.file, settings.device, topology=topology,
                                      all_interfaces=settings.all_interfaces))
        return GnmiFileSource(iter(batches))
    return GnmiSource(topology, settings)


def run(args: argparse.Namespace, config: Config) -> int:
    from fabricscope.source_service import run_source

    return run_source(args, config, build_source(config))
