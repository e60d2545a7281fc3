"""Detector configuration: YAML overrides, rejected values with file and line, documented defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import pipeline.detect.config as config_module
from pipeline.detect.config import DetectorConfig, load_detector_config
from pipeline.errors import InputError

README = Path(config_module.__file__).with_name("README.md")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fabricscope.yaml"
    path.write_text(text)
    return path


def documented(text: str) -> dict[tuple[str, str], str]:
    """(section, key) -> default from the rows of the defaults table."""
    sections = {f.name for f in dataclasses.fields(DetectorConfig)}
    rows = [[cell.strip() for cell in line.split("|")[1:4]] for line in text.splitlines() if line.startswith("| ")]
    return {(section, key): default for section, key, default in rows if section in sections}


def shown(value: object) -> str:
    """A default as the table shows it: a number compactly, a list of names in brackets."""
    return f"[{', '.join(map(str, value))}]" if isinstance(value, tuple) else f"{float(str(value)):g}"


def defaults() -> dict[tuple[str, str], str]:
    config = DetectorConfig()
    return {(section.name, f.name): shown(getattr(getattr(config, section.name), f.name))
            for section in dataclasses.fields(config) for f in dataclasses.fields(getattr(config, section.name))}


def test_every_default_is_documented_in_the_docstring_and_readme() -> None:
    expected = defaults()
    for text in (config_module.__doc__ or "", README.read_text()):
        assert {key: value if value.startswith("[") else shown(value)
                for key, value in documented(text).items()} == expected


def test_overrides_from_the_detectors_section_others_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka: {bootstrap: x}\ndetectors:\n  congestion:\n    ce_ratio: 0.1\n    min_ect: 20\n"
                           "    cnp_per_bin: 0\n"
                           "  fast_recovery: {timeout_ms: 500}\n"
                           "  watermark: {idle_s: 10, collectors: [spine1, spine2]}\n")
    config = load_detector_config(path)
    assert (config.congestion.ce_ratio, config.congestion.min_ect) == (0.1, 20)
    assert config.fast_recovery.timeout_ms == 500.0 and isinstance(config.fast_recovery.timeout_ms, float)
    assert config.fast_recovery.window_ms == 10.0
    assert config.ecmp == DetectorConfig().ecmp
    assert (config.watermark.idle_s, config.watermark.pause_ahead_ms) == (10.0, 2000.0)
    assert (config.watermark.collectors, config.watermark.collector_wait_s) == (("spine1", "spine2"), 30.0)
    assert load_detector_config(write(tmp_path, "kafka: {}\n")) == DetectorConfig()


@pytest.mark.parametrize(("text", "line", "reason"), [
    ("detectors:\n  nosuch: {}\n", 2, "unknown detector 'nosuch'"),
    ("detectors:\n  ecmp:\n    treshold: 0.2\n", 3, "unknown setting 'detectors.ecmp.treshold'"),
    ("detectors:\n  ecmp:\n    threshold: 1.5\n", 3, "at most 1"),
    ("detectors:\n  congestion:\n    min_ect: 2.5\n", 3, "must be an integer"),
    ("detectors:\n  congestion:\n    clear_ms: -5\n", 3, "must be positive"),
    ("detectors:\n  congestion:\n    ce_ratio: .nan\n", 3, "must be a finite number"),
    ("detectors:\n  congestion:\n    clear_ms: .inf\n", 3, "must be a finite number"),
    ("detectors:\n  fast_recovery:\n    window_ms: 100000000000000000000000000\n", 3, "must be a finite number"),
    ("detectors:\n  congestion:\n    idle_ms: 0\n", 3, "must be positive"),
    ("detectors:\n  collective:\n    factor: true\n", 3, "must be a number"),
    ("detectors:\n  collective:\n    factor: 0.5\n", 3, "at least 1"),
    ("detectors:\n  link_health: 3\n", 2, "must be a mapping"),
    ("detectors: [1]\n", 1, "'detectors' must be a mapping"),
    ("detectors:\n  watermark:\n    collectors: spine1\n", 3, "must be a list of names"),
    ("detectors:\n  watermark:\n    collectors: [spine1, 2]\n", 3, "must be a list of names"),
    ("detectors:\n  watermark:\n    collectors: ['']\n", 3, "must be a list of names"),
])
def test_bad_values_name_file_line_and_reason(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as caught:
        load_detector_config(path)
    assert caught.value.source == str(path)
    assert caught.value.line == line
    assert reason in caught.value.reason
