"""`fabricscope gnmi --target DEVICE=HOST:PORT... --topology T`: OpenConfig interface counters over gNMI.

Each target gets a STREAM subscription SAMPLEing the interface state every --interval; a dropped stream is
subscribed again with backoff. `--file FILE --device NAME` reads the same notifications from a JSON-lines
file (what `gnmic subscribe --format json` or pygnmi print) once, then exits.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from fabricscope.source_service import add_service_arguments, settle
from pipeline.errors import InputError
from pipeline.source import Source

METRICS_PORT = 9713
DEFAULTS: dict[str, Any] = {
    "target": None, "targets": None, "username": "", "password": "", "insecure": False, "skip_verify": False,
    "root_cert": None, "interval": 10.0, "path": None, "all_interfaces": False, "file": None, "device": None,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", action="append", metavar="DEVICE=HOST:PORT",
                        help="a switch's gNMI server, repeatable; DEVICE is its name in the topology's counters")
    parser.add_argument("--username", help="gNMI user")
    parser.add_argument("--password", default=os.environ.get("FABRICSCOPE_GNMI_PASSWORD"),
                        help="gNMI password (better: FABRICSCOPE_GNMI_PASSWORD)")
    parser.add_argument("--insecure", action="store_true", default=None, help="plaintext gRPC, no TLS")
    parser.add_argument("--skip-verify", action="store_true", default=None, help="TLS without checking the certificate")
    parser.add_argument("--root-cert", metavar="FILE", help="CA certificate the servers' certificates are checked with")
    parser.add_argument("--interval", type=float, metavar="S", help="SAMPLE interval (default: 10)")
    parser.add_argument("--path", action="append", metavar="PATH",
                        help="subscription path, repeatable (default: interfaces/interface/state and port-speed)")
    parser.add_argument("--all-interfaces", action="store_true", default=None,
                        help="also record interfaces the topology does not map (link '')")
    parser.add_argument("--file", metavar="FILE",
                        help="read notifications from this JSON-lines file instead, then exit")
    parser.add_argument("--device", help="with --file: the device the notifications come from")
    add_service_arguments(parser, metrics_port=METRICS_PORT)


def build_source(args: argparse.Namespace) -> Source:
    """The source the settings describe (nothing connects before it runs)."""
    from collectors.gnmi import DEFAULT_PATHS, GnmiFileSource, GnmiSource, GnmiTarget, read_gnmi_file
    from fabricscope.source_service import device_target
    from pipeline.topology import load_topology

    settle(args, "gnmi", DEFAULTS)
    topology = load_topology(args.topology)
    if args.file:
        if not args.device:
            raise InputError("--device", "required with --file: the device the notifications come from")
        if not Path(args.file).is_file():
            raise InputError(args.file, "no such file")
        batches = read_gnmi_file(args.file, args.device, topology=topology, all_interfaces=bool(args.all_interfaces))
        return GnmiFileSource(batches)
    credentials = {"username": str(args.username), "password": str(args.password or ""),
                   "insecure": bool(args.insecure), "skip_verify": bool(args.skip_verify),
                   "path_root": args.root_cert}
    where = "--target" if args.target else f"{args.config}: gnmi.targets"
    targets = [device_target(item, GnmiTarget, credentials, where, default_port=6030)
               for item in (args.target or args.targets or [])]
    if not targets:
        raise InputError("--target", "at least one DEVICE=HOST:PORT (or gnmi.targets in --config), or --file")
    if args.interval <= 0:
        raise InputError("--interval", "must be positive")
    return GnmiSource(topology, targets, args.path or DEFAULT_PATHS, sample_interval_s=args.interval,
                      all_interfaces=bool(args.all_interfaces))


def run(args: argparse.Namespace) -> int:
    from fabricscope.source_service import run_source

    return run_source(args, build_source(args))
