"""The detectors' state on disk, so an incident open when `ingest` stops (or is killed) is the same incident
after it starts again: not lost, not reported twice.

A checkpoint is the whole DetectorSet, per partition the offset of the next record it has not seen, and the
rows read that wait for the detectors' clock (pipeline/detect/watermark.py).
The service writes it before it commits those offsets to Kafka, so the committed offsets never pass the
state: after a restart the consumer resumes at or before the checkpoint and the records the state already
holds are skipped. The file is written whole and renamed into place, so a kill mid-write leaves the last
one. It lives beside the member (the data directory), like the flow table of a collector: it is pickled
Python, trusted like the program itself, never read from anywhere else.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.detect.engine import DetectorSet
from pipeline.detect.link_status import LinkStatus
from pipeline.detect.watermark import Watermark
from pipeline.errors import InputError
from pipeline.topology import Topology

# 2: fast recovery keeps per-flow state with coded links (pipeline/detect/fast_recovery.py)
# 3: link status keeps the rows it wrote, to rewrite them with an earlier report (pipeline/detect/link_status.py),
#    and the rows read that wait for the clock are saved with the detectors (pipeline/detect/watermark.py)
# 4: fast recovery knows the leaves' host prefixes and the counters' recent outages, to tell a far side by where
#    its flows go (pipeline/detect/fast_recovery.py)
# 5: fast recovery remembers which flows a failure moved off its far leaves' links, to tell their move back when
#    it is repaired (pipeline/detect/fast_recovery.py)
# 6: fast recovery keeps the pause before a flow's last pair of packets (pipeline/detect/fast_recovery.py)
FORMAT_VERSION = 6
MIGRATED_VERSIONS = (2, 3, 4, 5)


@dataclass
class Checkpoint:
    detectors: DetectorSet
    offsets: dict[tuple[str, int], int]  # (topic, partition) -> next offset to read
    watermark: Watermark = field(default_factory=Watermark)  # rows read that wait for the clock, and the clock


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write the checkpoint atomically (a temporary file renamed over the last one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    with temporary.open("wb") as out:
        pickle.dump((FORMAT_VERSION, checkpoint), out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def load_checkpoint(path: Path, topology: Topology | None) -> Checkpoint | None:
    """The last checkpoint, None when there is none; one of an earlier format is brought up to this one
    (`topology`: the member's, which older ones did not keep). One of another version or unreadable is bad
    input naming the file: remove it to start the detectors afresh."""
    if not path.is_file():
        return None
    try:
        with path.open("rb") as source:
            version, checkpoint = pickle.load(source)
    except Exception as exc:  # a truncated or foreign file: say which, never start from half a state
        raise InputError(str(path), f"detector checkpoint unreadable ({exc}); remove it to start afresh") from exc
    if version not in (FORMAT_VERSION, *MIGRATED_VERSIONS) or not isinstance(checkpoint, Checkpoint):
        raise InputError(str(path), f"detector checkpoint of format {version}, expected {FORMAT_VERSION}; "
                         "remove it to start afresh")
    if version == 2:
        checkpoint.detectors.link_status = LinkStatus.from_format_2(checkpoint.detectors.link_status)
        checkpoint.watermark = Watermark()  # format 2 fed every row as read: none waits
    if version < FORMAT_VERSION:
        checkpoint.detectors.fast_recovery.restored_from_format(version, topology)
    return checkpoint
