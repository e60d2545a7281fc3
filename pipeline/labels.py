"""Labels and event kinds (DESIGN.md section 6, a contract). Codes are indexes into these tuples.

New labels are appended, so the code of every existing one stays what it was; README lists them all.
"""

from __future__ import annotations

APPS: tuple[str, ...] = (
    "unknown", "rocev2", "rocev2-cnp", "torch-c10d", "nvme-tcp", "iscsi", "nfs", "tls", "http", "ssh", "bgp",
    "bfd", "lldp", "pfc", "arp", "dns", "ntp", "ptp", "vxlan", "icmp", "quic", "http2", "grpc", "rdma-cm",
)
APP_CODE: dict[str, int] = {name: code for code, name in enumerate(APPS)}

TRAFFIC_CLASSES: tuple[str, ...] = ("other", "collective", "p2p", "bulk", "interactive", "control")
TRAFFIC_CLASS_CODE: dict[str, int] = {name: code for code, name in enumerate(TRAFFIC_CLASSES)}

EVENT_KINDS: tuple[str, ...] = (
    "fast_recovery", "link_down", "link_up", "link_flap", "congestion", "pfc_storm", "ecmp_imbalance", "errors",
    "collective_slowdown",
)
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
