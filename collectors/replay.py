"""Capture files as one stream of batches, at full speed or paced to real time, with a progress bar."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from collectors.packets import PacketBatch
from collectors.pcapfile import CaptureStats, open_capture

PACED_BATCH_SIZE = 4096  # smaller batches when pacing, so records flow out smoothly


@dataclass
class Pace:
    """How far a paced replay fell behind real time: a live view that lags says so instead of drifting."""

    behind_s: float = 0.0  # the most a batch was late (0: every batch went out when due)

    def __str__(self) -> str:
        return f"at most {self.behind_s:.1f} s behind real time"


def replay_batches(
    paths: Sequence[str | Path],
    *,
    speed: float | None = None,
    progress: bool = True,
    reads: list[tuple[str, CaptureStats]] | None = None,
    pace: Pace | None = None,
) -> Iterator[PacketBatch]:
    """Batches of every file in order. `speed` None: as fast as possible; else a factor of real time (the
    first packet is sent at once, each later batch when its first packet is due). Each file's path and read
    stats (records kept, skipped by reason) are appended to `reads` when given, once the file is read, and how
    late the paced batches went out is kept in `pace`. The progress bar shows only on a terminal."""
    total = sum(Path(path).stat().st_size for path in paths)
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="replay", disable=None if progress else True, leave=False)
    start_wall: float | None = None
    start_ts = 0
    try:
        for path in paths:
            with open_capture(path, **({"batch_size": PACED_BATCH_SIZE} if speed else {})) as capture:
                consumed = 0
                for batch in capture:
                    if speed and len(batch):
                        first = int(batch.ts_ns[0])
                        if start_wall is None:
                            start_wall, start_ts = time.monotonic(), first
                        else:
                            delay = start_wall + (first - start_ts) / 1e9 / speed - time.monotonic()
                            if delay > 0:
                                time.sleep(delay)
                            elif pace is not None:
                                pace.behind_s = max(pace.behind_s, -delay)
                    yield batch
                    end = int(batch.offset[-1] + batch.caplen[-1]) if len(batch) else consumed
                    bar.update(max(0, end - consumed))
                    consumed = max(consumed, end)
                bar.update(max(0, Path(path).stat().st_size - consumed))
                if reads is not None:
                    reads.append((str(path), capture.stats))
    finally:
        bar.close()
