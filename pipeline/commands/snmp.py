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

from pipeline.errors import InputError
from pipeline.source_service import add_service_arguments, settle

if TYPE_CHECKING:
    from collectors.snmp import SnmpTarget

METRICS_PORT = 9712
DEFAULTS: dict[str, Any] = {"target": None, "community": "public", "interval": 10.0, "all_interfaces": False}
_TARGET_KEYS = {"device", "host", "port", "community", "timeout_s", "retries", "max_repetitions"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", action="append", metavar="DEVICE=HOST[:PORT]",
                        help="a switch's agent, repeatable; DEVICE is its name in the topology's counters entries")
    parser.add_argument("--community", default=os.environ.get("FABRICSCOPE_SNMP_COMMUNITY"),
                        help="SNMPv2c community (or FABRICSCOPE_SNMP_COMMUNITY; default: public)")
    parser.add_argument("--interval", type=float, metavar="S", help="seconds between polls (default: 10)")
    parser.add_argument("--all-interfaces", action="store_true", default=None,
                        help="also record interfaces the topology does not map (link '')")
    add_service_arguments(parser, metrics_port=METRICS_PORT)


def parse_target(item: Any, community: str, where: str) -> SnmpTarget:
    """DEVICE=HOST[:PORT] from a flag, or a mapping from the config file's `snmp.targets`."""
    from collectors.snmp import SnmpTarget

    if isinstance(item, str):
        device, sep, address = item.partition("=")
        if address.startswith("[") or address.count(":") == 1:  # host:port, [v6]:port
            host, _, port = address.rpartition(":")
        else:  # a bare name, IPv4 or IPv6 address
            host, port = address, "161"
        host = host.strip("[]")
        if not sep or not device or not host or not port.isdigit():
            raise InputError(where, f"'{item}' is not DEVICE=HOST[:PORT]")
        return SnmpTarget(device=device, host=host, port=int(port), community=community)
    if not isinstance(item, dict) or not {"device", "host"} <= set(item) or set(item) - _TARGET_KEYS:
        raise InputError(where, f"a target needs device and host, and only {', '.join(sorted(_TARGET_KEYS))}")
    try:
        return SnmpTarget(**{"community": community, **{str(key): value for key, value in item.items()}})
    except (TypeError, ValueError) as exc:
        raise InputError(where, str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    from collectors.snmp import SnmpSource
    from pipeline.source_service import run_source
    from pipeline.topology import load_topology

    settle(args, "snmp", {**DEFAULTS, "targets": None})
    where = "--target" if args.target else f"{args.config}: snmp.targets"
    targets = [parse_target(item, str(args.community), where) for item in (args.target or args.targets or [])]
    if not targets:
        raise InputError("--target", "at least one DEVICE=HOST[:PORT] (or snmp.targets in --config)")
    if args.interval <= 0:
        raise InputError("--interval", "must be positive")
    source = SnmpSource(load_topology(args.topology), targets, interval_s=args.interval,
                        all_interfaces=bool(args.all_interfaces))
    return run_source(args, source)
