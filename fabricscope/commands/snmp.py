"""`fabricscope snmp --target DEVICE=HOST[:PORT]... --topology T`: poll the switches' IF-MIB counters.

Every interval each target's ifTable/ifXTable columns are walked with GETBULK (SNMPv2c), 64-bit counters
where the agent has them; interfaces the topology's `counters:` entries name become `counters` rows
(source `snmp`). Targets come from the flags or, with their own community and timeouts, from the
`snmp.targets` list of the config file.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from fabricscope.source_service import add_service_arguments, settle
from pipeline.errors import InputError
from pipeline.source import Source

if TYPE_CHECKING:
    from collectors.snmp import SnmpTarget

METRICS_PORT = 9712
DEFAULTS: dict[str, Any] = {
    "target": None, "targets": None, "community": "public", "interval": 10.0, "all_interfaces": False,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", action="append", metavar="DEVICE=HOST[:PORT]",
                        help="a switch's agent, repeatable; DEVICE is its name in the topology's counters entries")
    parser.add_argument("--community", default=os.environ.get("FABRICSCOPE_SNMP_COMMUNITY"),
                        help="SNMPv2c community (or FABRICSCOPE_SNMP_COMMUNITY; default: public)")
    parser.add_argument("--interval", type=float, metavar="S", help="seconds between polls (default: 10)")
    parser.add_argument("--all-interfaces", action="store_true", default=None,
                        help="also record interfaces the topology does not map (link '')")
    add_service_arguments(parser, metrics_port=METRICS_PORT)


def snmp_targets(args: argparse.Namespace) -> list[SnmpTarget]:
    """The agents to poll, from --target flags or the config file's `snmp.targets` (after `settle`)."""
    from collectors.snmp import SnmpTarget
    from fabricscope.source_service import device_target

    where = "--target" if args.target else f"{args.config}: snmp.targets"
    targets = [device_target(item, SnmpTarget, {"community": str(args.community)}, where, default_port=161)
               for item in (args.target or args.targets or [])]
    if not targets:
        raise InputError("--target", "at least one DEVICE=HOST[:PORT] (or snmp.targets in --config)")
    return targets


def build_source(args: argparse.Namespace) -> Source:
    """The source the settings describe (nothing connects before it runs)."""
    from collectors.snmp import SnmpSource
    from pipeline.topology import load_topology

    settle(args, "snmp", DEFAULTS)
    targets = snmp_targets(args)
    if args.interval <= 0:
        raise InputError("--interval", "must be positive")
    return SnmpSource(load_topology(args.topology), targets, interval_s=args.interval,
                      all_interfaces=bool(args.all_interfaces))


def run(args: argparse.Namespace) -> int:
    from fabricscope.source_service import run_source

    return run_source(args, build_source(args))
