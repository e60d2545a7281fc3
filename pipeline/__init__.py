"""fabricscope pipeline: the contracts (topology, records, source, store, bus), the sink and the detectors."""
