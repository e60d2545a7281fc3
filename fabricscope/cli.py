"""`fabricscope` command line (DESIGN.md section 7, a contract): the one place the parts are wired.

Exit codes: 0 ok, 2 bad input (one line naming the file/field), 1 internal error.
Each subcommand lives in `fabricscope.commands.<name>` and is imported only when it runs, so
`fabricscope --help` stays fast and a command's heavy dependencies load only for it. `--config FILE` is
read here, once, into the typed fabricscope.config.Config the command runs with.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from pipeline.errors import FabricscopeError, InputError

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_DATA_DIR = ".fabricscope"

# (name, one-line help) in the order `--help` lists them.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("demo", "embedded broker + ClickHouse + a live synthetic fabric + the dashboard on http://127.0.0.1:8050"),
    ("replay", "run pcap/pcapng captures through the collector into ClickHouse (or --out FILE)"),
    ("simulate", "generate a synthetic fabric capture, its counters and ground truth from a scenario"),
    ("capture", "live: a mirror port or ERSPAN destination interface through the collector (needs CAP_NET_RAW)"),
    ("sflow", "live: sFlow v5 flow and counter samples from the switches"),
    ("snmp", "live: poll the switches' IF-MIB counters over SNMP"),
    ("gnmi", "live: OpenConfig interface counters from gNMI subscriptions (or a JSON file)"),
    ("dashboard", "serve the web dashboard (read-only) for the store"),
    ("ingest", "sink (and detectors) as Kafka consumer-group members: topics into ClickHouse"),
    ("events", "list detected events, oldest first"),
    ("query", "run one read-only SQL query against the store"),
    ("packets", "a flow's, link's or incident's mirrored packets: cut to a pcap and/or dissected by Wireshark"),
)


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options (also FABRICSCOPE_* environment variables)")
    group.add_argument(
        "--data-dir",
        default=os.environ.get("FABRICSCOPE_DATA_DIR", DEFAULT_DATA_DIR),
        help="embedded store directory (default: %(default)s)",
    )
    group.add_argument(
        "--kafka",
        default=os.environ.get("FABRICSCOPE_KAFKA"),
        metavar="BOOTSTRAP",
        help="Kafka bootstrap servers host:port[,...]; absent: start the embedded broker",
    )
    group.add_argument(
        "--clickhouse",
        default=os.environ.get("FABRICSCOPE_CLICKHOUSE"),
        metavar="DSN",
        help="ClickHouse DSN http(s)://user:pass@host:8123/db; absent: embedded chdb under --data-dir",
    )
    group.add_argument(
        "--config", default=os.environ.get("FABRICSCOPE_CONFIG"), metavar="FILE", help="YAML configuration file"
    )
    return common


def _command_module(name: str) -> ModuleType:
    return importlib.import_module(f"fabricscope.commands.{name}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or with `command` only that command's options (the others' modules, and
    the components whose config dataclasses give their defaults, are then not imported)."""
    parser = argparse.ArgumentParser(
        prog="fabricscope",
        description="Network telemetry and visualisation for AI training fabrics.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common_options()
    for name, summary in COMMANDS:
        sub = subparsers.add_parser(name, help=summary, description=summary, parents=[common])
        if command is None or name == command:
            _command_module(name).add_arguments(sub)
        sub.set_defaults(command_name=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `fabricscope` console script: parse, read --config once, run the command.

    As the process's own entry (no `argv`: the console script, `python -m fabricscope.cli`), the objects
    start-up makes are kept out of the garbage collector: ~110k of them (numba's, numpy's, pyarrow's, ours)
    live as long as the process, and collecting them while they were made cost a short replay ~0.1 s, two
    full collections and every young one. A caller's own process (the tests call main) keeps its collector
    as it was."""
    own_process = argv is None
    if own_process:
        gc.disable()
    from fabricscope.allocator import return_freed_memory
    from fabricscope.blas import one_blas_thread
    from fabricscope.config import load_config

    one_blas_thread()
    return_freed_memory()
    words = list(sys.argv[1:] if argv is None else argv)
    chosen = next((word for word in words if not word.startswith("-")), None)
    args = build_parser(chosen if chosen in dict(COMMANDS) else None).parse_args(words)
    if own_process:
        gc.freeze()
        gc.enable()
    try:
        return int(_command_module(args.command_name).run(args, load_config(args)))
    except InputError as exc:
        print(f"fabricscope {args.command_name}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FabricscopeError as exc:
        print(f"fabricscope {args.command_name}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        print(f"fabricscope {args.command_name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
