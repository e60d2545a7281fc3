"""The flags of Wireshark's second opinion on unknown flows (collectors.second_opinion) and the setting the
collector gets: on by default for `capture` and `demo`, asked for in `replay`.

Replay is exact and fast: there the collector waits for every answer after each batch, so the rows depend on
the input alone (not on how fast tshark ran), and a tshark run per batch with new unknown flows costs time,
so replay only does it when asked (`--second-opinion`, or `second_opinion.in_replay: true`).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from collectors.second_opinion import SecondOpinionConfig
from fabricscope.options import option

if TYPE_CHECKING:
    from fabricscope.config import Config

GROUP = "Wireshark's second opinion on flows DPI leaves unknown (app_detail wireshark:<protocol>)"


def add_second_opinion_arguments(parser: argparse.ArgumentParser, *, replay: bool = False) -> None:
    group = parser.add_argument_group(GROUP)
    if replay:
        option(group, SecondOpinionConfig, "in_replay", "--second-opinion", action="store_true",
               help="ask tshark about unknown flows (replay then waits for its answers, so rows stay exact)")
    else:
        option(group, SecondOpinionConfig, "dissect", "--no-second-opinion", action="store_false",
               help="do not ask tshark about flows DPI leaves unknown")
    option(group, SecondOpinionConfig, "flows_per_s", "--second-opinion-rate", type=float, metavar="FLOWS",
           help="new unknown flows sampled per second of packet time at most")


def second_opinion_for(config: Config, *, replay: bool = False) -> SecondOpinionConfig | None:
    """The collector's setting, None when the command runs without it."""
    settings = config.second_opinion
    return settings if settings.dissect and (settings.in_replay or not replay) else None
