"""Packets as the hosts and switches send them, as numpy columns (before routing and mirroring)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NONE = -1


@dataclass(frozen=True, slots=True)
class Emissions:
    """One row per packet sent: when, by which flow, from which template, and the per-packet fields."""

    t_ns: np.ndarray  # int64, time the sender put it on the wire
    flow: np.ndarray  # int32, index into the FlowTable
    template: np.ndarray  # int32, index into the TemplateTable
    psn: np.ndarray  # int64, BTH PSN, -1 when not RoCE
    seq: np.ndarray  # int64, TCP sequence number, -1 when not TCP
    ack: np.ndarray  # int64, TCP acknowledgment number, -1 when not TCP
    iteration: np.ndarray  # int32, all-reduce iteration, -1 when not a job's data

    def __len__(self) -> int:
        return len(self.t_ns)

    def take(self, index: np.ndarray) -> Emissions:
        return Emissions(*(column[index] for column in self._columns()))

    def _columns(self) -> tuple[np.ndarray, ...]:
        return (self.t_ns, self.flow, self.template, self.psn, self.seq, self.ack, self.iteration)

    @staticmethod
    def concat(parts: list[Emissions]) -> Emissions:
        columns = zip(*(part._columns() for part in parts), strict=True)
        return Emissions(*(np.concatenate(list(column)) for column in columns))


class EmissionsBuilder:
    """Collects packet columns from every traffic model; `build` sorts them by time (stable)."""

    def __init__(self) -> None:
        self._parts: list[Emissions] = []

    def add(
        self,
        t_ns: np.ndarray,
        flow: np.ndarray | int,
        template: np.ndarray | int,
        *,
        psn: np.ndarray | None = None,
        seq: np.ndarray | None = None,
        ack: np.ndarray | None = None,
        iteration: np.ndarray | None = None,
    ) -> None:
        n = len(t_ns)

        def column(value: np.ndarray | int | None, dtype: type) -> np.ndarray:
            if value is None:
                return np.full(n, NONE, dtype=dtype)
            return np.broadcast_to(np.asarray(value, dtype=dtype), (n,)).copy()

        self._parts.append(Emissions(
            t_ns=np.asarray(t_ns, dtype=np.int64),
            flow=column(flow, np.int32),
            template=column(template, np.int32),
            psn=column(psn, np.int64),
            seq=column(seq, np.int64),
            ack=column(ack, np.int64),
            iteration=column(iteration, np.int32),
        ))

    def build(self) -> Emissions:
        if not self._parts:
            empty = np.zeros(0, dtype=np.int64)
            return Emissions(empty, empty.astype(np.int32), empty.astype(np.int32), empty, empty, empty,
                             empty.astype(np.int32))
        emissions = Emissions.concat(self._parts)
        return emissions.take(np.argsort(emissions.t_ns, kind="stable"))
