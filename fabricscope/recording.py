"""The packet recorder's flags and its construction for the commands that run one (`capture`, `demo`).

Its settings come from these flags, then the `recorder:` section of --config, then RecorderConfig's
defaults (fabricscope.config); its store is `<data-dir>/packets/`, read back by `fabricscope packets`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from collectors.recorder import RecorderConfig
from fabricscope.options import option

if TYPE_CHECKING:
    from collectors.recorder import Recorder
    from fabricscope.config import Config
    from pipeline.topology import Topology


def add_recorder_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("packet recorder (fabricscope packets reads what it keeps)")
    option(group, RecorderConfig, "enabled", "--no-record", action="store_false",
           help="do not keep the mirrored packets in <data-dir>/packets")
    option(group, RecorderConfig, "budget_mb", "--record-budget-mb", type=int, metavar="MB",
           help="disk budget of the rolling packet segments, oldest deleted first")
    option(group, RecorderConfig, "pinned_budget_mb", "--record-pinned-budget-mb", type=int, metavar="MB",
           help="disk budget of the segments pinned by incidents")


def recorder_for(args: argparse.Namespace, config: Config, topology: Topology) -> Recorder | None:
    """The run's recorder, None when --no-record (or `recorder.enabled: false`)."""
    from collectors.recorder import Recorder, store_directory

    settings = config.recorder
    return Recorder(store_directory(args.data_dir), topology, settings) if settings.enabled else None
