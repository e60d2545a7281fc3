"""fabricscope pipeline: the contracts (topology, records, store, bus), the sink, detectors and CLI."""
