"""`fabricscope capture --iface IF --topology T`: a mirror port or ERSPAN destination read live.

Frames come from an AF_PACKET TPACKET_V3 ring in batches into the same collector as files; the kernel
truncates to --snaplen and reports its drops, which go to /metrics and the final summary. The packet
recorder keeps the frames as received in <data-dir>/packets (fabricscope.recording) and pins every
incident's packets: in embedded mode the detectors run in this process; with --kafka they run in `ingest`,
and the recorder reads their incidents from the events topic (pipeline.event_feed).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from collectors.capture_source import CaptureConfig
from fabricscope.options import option
from fabricscope.recording import add_recorder_arguments
from fabricscope.second_opinion import add_second_opinion_arguments
from fabricscope.source_service import add_max_flows_argument, add_service_arguments
from pipeline.errors import InputError

if TYPE_CHECKING:
    from fabricscope.config import Config

METRICS_PORT = 9710


def add_arguments(parser: argparse.ArgumentParser) -> None:
    option(parser, CaptureConfig, "iface", "--iface", metavar="IF",
           help="interface the mirror sessions (or ERSPAN tunnels) arrive on")
    option(parser, CaptureConfig, "snaplen", "--snaplen", type=int, metavar="BYTES",
           help="bytes kept per frame; 256 keeps every header and TLS SNI")
    option(parser, CaptureConfig, "ring_mb", "--ring-mb", type=int, metavar="MB",
           help="kernel ring size; larger rides out longer bursts")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="capturing processes, the kernel sharing frames among them by flow (PACKET_FANOUT_HASH); "
                             "more than one needs --no-record (default: the number of cores with --no-record, else 1)")
    add_max_flows_argument(parser)
    add_service_arguments(parser, metrics_port=METRICS_PORT)
    add_recorder_arguments(parser)
    add_second_opinion_arguments(parser)


def run(args: argparse.Namespace, config: Config) -> int:
    from collectors.capture_source import CaptureSource
    from collectors.collector import CollectorConfig
    from collectors.workers import available_cores
    from fabricscope.recording import recorder_for
    from fabricscope.second_opinion import second_opinion_for
    from fabricscope.source_service import run_source
    from pipeline.topology import load_topology

    topology = load_topology(config.required_topology())
    recorder = recorder_for(args, config, topology)
    workers = args.workers if args.workers is not None else 1 if recorder is not None else available_cores()
    if workers < 1:
        raise InputError("--workers", "must be at least 1")
    source = CaptureSource(topology, config.capture,
                           collector_config=CollectorConfig(exporter=config.service.exporter,
                                                            max_flows=config.service.max_flows,
                                                            job_names=config.jobs,
                                                            second_opinion=second_opinion_for(config)),
                           recorder=recorder, workers=workers)
    return run_source(args, config, source)
