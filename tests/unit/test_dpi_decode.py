"""DPI behind the real decoder: a scapy-built pcap read, decoded and classified, at full length and cut short.

The labels must be those of the scapy-column path the other DPI tests use, so those tests speak for the
collector too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dpi_samples import FRAMES_BY_PAYLOAD, MORE_FRAMES_BY_PAYLOAD, PORT_ONLY_FRAMES, SERVER_NAME, client_hello, vxlan
from dpi_scapy import decoded_batch
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from collectors.decode import Decoder
from collectors.dpi import classify
from collectors.pcapfile import open_capture
from pipeline.labels import APPS

INNER_TLS = Ether() / IP(src="10.0.1.5", dst="10.0.2.7") / TCP(sport=40001, dport=443) / Raw(client_hello())
CASES = [
    *FRAMES_BY_PAYLOAD.items(),
    *MORE_FRAMES_BY_PAYLOAD,
    *[(app, frame) for app, frame in PORT_ONLY_FRAMES if app != "rocev2"],  # a UDP 4791 without BTH is malformed
    ("vxlan", vxlan(INNER_TLS)),
]


def write_capture(path: Path, snaplen: int | None) -> None:
    """The CASES as a pcap whose records keep `snaplen` bytes of each frame and its original length."""
    records = []
    for _, frame in CASES:
        raw = bytes(frame)
        record = Ether(raw[:snaplen])
        record.wirelen = len(raw)
        records.append(record)
    wrpcap(str(path), records)


@pytest.mark.parametrize("snaplen", [None, 128, 64])
def test_decoded_capture_gets_the_labels_of_the_scapy_columns(tmp_path: Path, snaplen: int | None) -> None:
    path = tmp_path / "dpi.pcap"
    write_capture(path, snaplen)
    batches = list(open_capture(path))
    assert [len(batch) for batch in batches] == [len(CASES)]
    batch = batches[0]
    decoded = Decoder().decode(batch)
    assert decoded.ok.all()
    labels = classify(batch.data, decoded)
    data, columns = decoded_batch([frame for _, frame in CASES], snaplen)
    expected = classify(data, columns)
    assert [APPS[code] for code in labels.app] == [APPS[code] for code in expected.app]
    np.testing.assert_array_equal(labels.confidence, expected.confidence)
    assert list(labels.detail) == list(expected.detail)


def test_full_frames_through_the_decoder_get_every_label(tmp_path: Path) -> None:
    path = tmp_path / "full.pcap"
    write_capture(path, None)
    batch = next(iter(open_capture(path)))
    labels = classify(batch.data, Decoder().decode(batch))
    assert [APPS[code] for code in labels.app] == [app for app, _ in CASES]
    assert labels.detail[-1] == f"inner=tls {SERVER_NAME}"
