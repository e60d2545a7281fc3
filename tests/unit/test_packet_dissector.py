"""The dashboard's dissector process: one that hangs is killed and the slice dissected again in a new one."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, cast

import pytest

from fabricscope import packet_source
from fabricscope.packet_source import StorePackets

MARKER = "FABRICSCOPE_TEST_HUNG_ONCE"


def hung_once(frames: object, topology: object) -> list[dict[str, Any]]:
    """Hangs the first time it runs (as pyshark's children now and then do), answers the next time."""
    marker = Path(os.environ[MARKER])
    if not marker.exists():
        marker.touch()
        time.sleep(3600)
    return [{"info": f"dissected {frames}"}]


def test_a_hung_dissection_is_killed_and_dissected_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MARKER, str(tmp_path / "hung"))
    monkeypatch.setattr(packet_source, "DISSECT_TIMEOUT_S", 8.0)
    packets = StorePackets(cast(Any, None), cast(Any, None), tmp_path)
    hung = packets._dissector
    assert packets._dissected(hung_once, cast(Any, "slice")) == [{"info": "dissected slice"}]
    assert (tmp_path / "hung").exists() and packets._dissector is not hung
    packets._dissector.terminate()
