"""Debian pmacctd with its sfprobe plugin as the real sFlow agent of the tests: it reads a pcap and exports
sFlow v5 to a collector on loopback.

pmacctd never hands its plugin the last few packets of a savefile (seen: 2-5) and passes it only IP
frames, so every pcap given to it ends with FILLER frames that no link claims; tests ignore their flows.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

AGENT = "192.0.2.1"  # samples/topology.yaml: ifindex 49 of this agent is leaf1-spine1
IFINDEX = 49
IFSPEED = 400_000_000_000
FILLER = 64
FILLER_IP = "203.0.113.1"  # TEST-NET-3: a flow of its own, in no truth


def with_filler(pcap: Path, out: Path) -> None:
    """`pcap` followed by FILLER unattributable frames, in the same file format."""
    data = pcap.read_bytes()
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    frame = bytes(Ether(src="02:00:00:00:ff:01", dst="02:00:00:00:ff:02") / IP(src=FILLER_IP, dst=FILLER_IP)
                  / UDP(sport=9, dport=9) / Raw(b"\0" * 18))  # IP: pmacctd passes nothing else to its plugins
    seconds = struct.unpack_from(order + "I", data, 24)[0]
    record = struct.pack(order + "IIII", seconds, 0, len(frame), len(frame)) + frame
    out.write_bytes(data + record * FILLER)


def pmacctd(tmp: Path, pcap: Path, port: int, *, sampling: int = 1, replays: int = 1, delay_s: int = 0
            ) -> tuple[subprocess.Popen[str], Path]:
    """pmacctd exporting `pcap` (played `replays` times, `delay_s` apart) as sFlow to 127.0.0.1:port."""
    config, log = tmp / "pmacctd.conf", tmp / "pmacctd.log"
    config.write_text("\n".join([
        "daemonize: false", f"pcap_savefile: {pcap}", "pcap_savefile_wait: true",
        f"pcap_savefile_replay: {replays}", f"pcap_savefile_delay: {delay_s}", f"sampling_rate: {sampling}",
        "plugins: sfprobe[s]", f"sfprobe_receiver[s]: 127.0.0.1:{port}", f"sfprobe_agentip[s]: {AGENT}",
        "sfprobe_agentsubid[s]: 7", f"sfprobe_ifindex[s]: {IFINDEX}", "sfprobe_direction[s]: in",
        f"sfprobe_ifspeed[s]: {IFSPEED}", "",
    ]))
    handle = log.open("w")
    process = subprocess.Popen(["pmacctd", "-f", str(config)], stdout=handle, stderr=subprocess.STDOUT, text=True)
    handle.close()
    return process, log
