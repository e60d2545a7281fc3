"""Detector thresholds and windows: dataclass defaults, overridable from the `detectors:` section of
the config file (`--config FILE`). Bad values are rejected naming the file, line and reason.

| section | key | default | meaning |
|---|---|---|---|
| link_health | flap_transitions | 3 | oper-status changes within `flap_window_ms` that make a `link_flap` |
| link_health | flap_window_ms | 60000 | window for counting oper-status changes; a flap ends after this much calm |
| link_health | error_rate_per_s | 1.0 | an error, discard or FCS counter rising at least this fast raises `errors` |
| link_health | wrap_slack | 1.1 | a counter drop is a wrap only if the increase fits line rate × elapsed × this |
| ecmp | window_ms | 1000 | epoch-aligned window over which uplink shares are measured |
| ecmp | threshold | 0.15 | `ecmp_imbalance` when max \\|share − 1/n\\| exceeds this |
| ecmp | clear_fraction | 0.67 | an open imbalance lasts while its deviation exceeds `threshold` × this |
| ecmp | min_bytes | 1000000 | a leaf's up bytes in a window below this are not judged |
| ecmp | lateness_ms | 1000 | how late a bin may arrive behind later bins of other links |
| ecmp | clear_windows | 3 | an imbalance ends after this many judged, even windows in a row |
| ecmp | idle_windows | 10 | ...or after this many windows in a row too quiet to judge |
| congestion | ce_ratio | 0.05 | a 10 ms bin is congested when CE over ECN-capable RoCE packets reaches this … |
| congestion | min_ect | 10 | … counted only in bins with at least this many ECN-capable RoCE packets |
| congestion | cnp_per_bin | 0 | … or (0: off) holds this many CNPs, which travel away from the congestion |
| congestion | pfc_per_bin | 0 | … or (0: off) this many PFC pause frames, likewise |
| congestion | clear_ms | 100 | busy unmarked bins (≥ `min_ect`, no CE) this long, summed over bursts, end an episode |
| congestion | idle_ms | 1000 | no ECN-capable traffic on the link direction for this long ends an episode |
| congestion | update_ratio | 0.1 | an open episode is written again when its peak CE ratio grew by this much |
| congestion | storm_ms | 500 | pauses in consecutive bins for at least this long make a `pfc_storm` |
| congestion | storm_gap_ms | 10 | largest gap between paused bins within one storm |
| congestion | top_flows | 5 | flows named in a congestion event's details |
| congestion | lateness_ms | 1000 | how late a bin may arrive behind later bins of other links |
| congestion | flows_wait_ms | 1000 | how much longer an episode waits for its flow rows (0 if none are fed) |
| collective | factor | 1.25 | an iteration is slow when its all-reduce takes more than baseline × this |
| collective | baseline_iterations | 5 | normal iterations needed before a job's baseline exists |
| collective | baseline_window | 20 | the baseline is the median of this many most recent normal iterations |
| collective | clear_iterations | 3 | this many normal iterations in a row end a slowdown incident |
| collective | blame_wait_ms | 1000 | a finished slowdown waits this long for congestion events to blame |
| collective | congestion_memory_ms | 60000 | how long congestion events are kept for blaming |
| fast_recovery | window_ms | 10 | affected flows had ≥3 packets on the link within this before the failure |
| fast_recovery | silence_ms | 5 | nothing on a link for this long after a packet, while its flows move: failed |
| fast_recovery | timeout_ms | 2000 | a failure is reported at most this long after it, recovered or not |
| fast_recovery | lateness_ms | 50 | how late a dense flow's row may arrive after its last packet (README: ordering) |
| fast_recovery | back_wait_ms | 100 | a recovered failure waits this long for its link to come back (a flap's end) |
| fast_recovery | gap_factor | 2 | a flow is still sending, or cut, by this many times its own packet spacing |
| fast_recovery | mirror_skew_ms | 1 | how far apart two links' mirrors may time one packet |
| link_status | same_within_ms | 1000 | counter and traffic reports of a link's down (or up) this close are one |
| link_status | flap_max_ms | 100 | an outage seen in the traffic that ends within this is also a `link_flap` |
| watermark | idle_s | 2.0 | `ingest`: a silent collector or empty partition stops holding the clock after this |
| watermark | pause_ahead_ms | 2000.0 | `ingest`: a partition this far ahead of the clock is paused |
| watermark | collectors | [] | `ingest`: exporters the clock waits for before it first moves (started apart) |
| watermark | collector_wait_s | 30.0 | `ingest`: how long a named collector not heard from yet is waited for |
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.detect.collective import CollectiveConfig
from pipeline.detect.congestion import CongestionConfig
from pipeline.detect.ecmp import EcmpConfig
from pipeline.detect.fast_recovery import FastRecoveryConfig
from pipeline.detect.link_health import LinkHealthConfig
from pipeline.detect.link_status import LinkStatusConfig
from pipeline.detect.watermark import WatermarkConfig
from pipeline.errors import InputError
from pipeline.yamlfile import LineDict, line_of, load_yaml

_AT_MOST_ONE = {"threshold", "ce_ratio", "clear_fraction"}
_AT_LEAST_ONE = {"factor", "wrap_slack"}
MAX_SETTING = 2**31 - 1  # no window or threshold is larger; beyond, int64 time arithmetic would overflow
_ZERO_IS_OFF = {"cnp_per_bin", "pfc_per_bin"}


@dataclass(frozen=True, kw_only=True)
class DetectorConfig:
    """Every detector's configuration; each section defaults to its dataclass defaults."""

    link_health: LinkHealthConfig = field(default_factory=LinkHealthConfig)
    ecmp: EcmpConfig = field(default_factory=EcmpConfig)
    congestion: CongestionConfig = field(default_factory=CongestionConfig)
    collective: CollectiveConfig = field(default_factory=CollectiveConfig)
    fast_recovery: FastRecoveryConfig = field(default_factory=FastRecoveryConfig)
    link_status: LinkStatusConfig = field(default_factory=LinkStatusConfig)
    watermark: WatermarkConfig = field(default_factory=WatermarkConfig)  # the detector service's, not a detector's


def load_detector_config(path: str | Path) -> DetectorConfig:
    """The `detectors:` section of a YAML config file (other sections are someone else's); defaults
    for whatever it leaves out. Raises InputError naming the file and line of a bad section, key or value."""
    return detector_config(load_yaml(path), str(path))


def detector_config(document: LineDict, source: str) -> DetectorConfig:
    """The `detectors:` section of a config file already parsed with pipeline.yamlfile (fabricscope.config
    reads the file once for every section)."""
    section = document.get("detectors")
    if section is None:
        return DetectorConfig()
    if not isinstance(section, LineDict):
        raise InputError(source, "'detectors' must be a mapping of detector name to settings",
                         line=line_of(document, "detectors"))
    sections = {f.name: f for f in dataclasses.fields(DetectorConfig)}
    chosen: dict[str, Any] = {}
    for name, settings in section.items():
        if name not in sections:
            raise InputError(source, f"unknown detector '{name}' (known: {', '.join(sections)})",
                             line=line_of(section, name))
        if not isinstance(settings, LineDict):
            raise InputError(source, f"detectors.{name} must be a mapping of setting to value",
                             line=line_of(section, name))
        default = getattr(DetectorConfig(), name)
        chosen[name] = _section(source, name, settings, default)
    return DetectorConfig(**chosen)


def _section(source: str, name: str, settings: LineDict, default: Any) -> Any:
    fields = {f.name: f for f in dataclasses.fields(default)}
    values: dict[str, Any] = {}
    for key, value in settings.items():
        where = f"detectors.{name}.{key}"
        line = line_of(settings, key)
        if key not in fields:
            raise InputError(source, f"unknown setting '{where}' (known: {', '.join(fields)})", line=line)
        wanted = type(getattr(default, key))
        if wanted is tuple:
            values[key] = _names(source, where, value, line)
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or (wanted is int and
                                                                               not isinstance(value, int)):
            raise InputError(source, f"'{where}' must be {'an integer' if wanted is int else 'a number'}", line=line)
        if not -MAX_SETTING <= value <= MAX_SETTING:  # NaN and inf fail this too
            raise InputError(source, f"'{where}' must be a finite number up to {MAX_SETTING:,}", line=line)
        if value < 0 or (value == 0 and key not in _ZERO_IS_OFF):
            raise InputError(source, f"'{where}' must be positive, not {value}", line=line)
        if key in _AT_MOST_ONE and value > 1:
            raise InputError(source, f"'{where}' is a fraction and must be at most 1, not {value}", line=line)
        if key in _AT_LEAST_ONE and value < 1:
            raise InputError(source, f"'{where}' is a multiplier and must be at least 1, not {value}", line=line)
        values[key] = wanted(value)
    return dataclasses.replace(default, **values)


def _names(source: str, where: str, value: Any, line: int | None) -> tuple[str, ...]:
    """A list of names (the collectors the watermark waits for) as a tuple; anything else is bad input."""
    if not isinstance(value, list) or not all(isinstance(name, str) and name for name in value):
        raise InputError(source, f"'{where}' must be a list of names", line=line)
    return tuple(value)
