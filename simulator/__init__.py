"""Synthetic fabric captures with exact ground truth: the samples every later stage is tested against.

scenario (YAML) -> fabric, flows and packet templates (scapy, once per kind and flow) -> packet
columns (numpy) -> routing over leaf-spine links with faults -> ERSPAN pcap, counters JSONL, truth JSON.
"""
