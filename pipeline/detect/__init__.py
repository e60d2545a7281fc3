"""Stateful stream detectors (DESIGN.md section 6): pure cores, batches in, event rows out."""

from pipeline.detect.collective import CollectiveConfig, CollectiveDetector
from pipeline.detect.config import DetectorConfig, load_detector_config
from pipeline.detect.congestion import CongestionConfig, CongestionDetector
from pipeline.detect.ecmp import EcmpConfig, EcmpDetector
from pipeline.detect.events import Event, make_event
from pipeline.detect.fast_recovery import FastRecoveryConfig, FastRecoveryDetector
from pipeline.detect.link_health import LinkHealthConfig, LinkHealthDetector, counter_rates, traffic_rates

__all__ = [
    "CollectiveConfig", "CollectiveDetector", "CongestionConfig", "CongestionDetector", "DetectorConfig",
    "EcmpConfig", "EcmpDetector", "Event", "FastRecoveryConfig", "FastRecoveryDetector", "LinkHealthConfig",
    "LinkHealthDetector", "counter_rates", "load_detector_config", "make_event", "traffic_rates",
]
