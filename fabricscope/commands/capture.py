"""`fabricscope capture --iface IF --topology T`: a mirror port or ERSPAN destination read live.

Frames come from an AF_PACKET TPACKET_V3 ring in batches into the same collector as files; the kernel
truncates to --snaplen and reports its drops, which go to /metrics and the final summary.
"""

from __future__ import annotations

import argparse

from fabricscope.source_service import add_service_arguments, settle
from pipeline.errors import InputError

METRICS_PORT = 9710
DEFAULTS = {"iface": None, "snaplen": 65_535, "ring_mb": 128}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--iface", metavar="IF", help="interface the mirror sessions (or ERSPAN tunnels) arrive on")
    parser.add_argument("--snaplen", type=int, metavar="BYTES",
                        help="bytes kept per frame; 256 keeps every header and TLS SNI (default: 65535)")
    parser.add_argument("--ring-mb", type=int, metavar="MB",
                        help="kernel ring size; larger rides out longer bursts (default: 128)")
    add_service_arguments(parser, metrics_port=METRICS_PORT)


def run(args: argparse.Namespace) -> int:
    from collectors.afpacket import DEFAULT_BLOCK_BYTES, MAX_SNAPLEN
    from collectors.capture_source import CaptureSource
    from collectors.collector import CollectorConfig
    from fabricscope.source_service import run_source
    from pipeline.topology import load_topology

    settle(args, "capture", DEFAULTS)
    if not args.iface:
        raise InputError("--iface", "required (the interface receiving the mirrored traffic)")
    if not 64 <= args.snaplen <= MAX_SNAPLEN:
        raise InputError("--snaplen", f"must be within 64..{MAX_SNAPLEN} bytes")
    if args.ring_mb < DEFAULT_BLOCK_BYTES >> 20:
        raise InputError("--ring-mb", f"must be at least {DEFAULT_BLOCK_BYTES >> 20}")
    source = CaptureSource(
        load_topology(args.topology),
        args.iface,
        snaplen=args.snaplen,
        collector_config=CollectorConfig(exporter=args.exporter),
        blocks=(args.ring_mb << 20) // DEFAULT_BLOCK_BYTES,
    )
    return run_source(args, source)
