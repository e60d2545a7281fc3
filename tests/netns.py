"""Test hosts in Linux network namespaces joined by veth pairs (Debian iproute2), for the live-source tests.

A `NetLab` owns every namespace and veth it makes and deletes them on exit, so a failed test leaves
nothing behind. Tests that need it use `needs_netns` (and `needs_tcpreplay` to send into them): where this
process may not create namespaces (not root, no iproute2), they are skipped with the reason printed, and
under CI they fail (tests/requirements.py), never silently passed.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Sequence
from types import TracebackType

from requirements import requires

_serial = itertools.count()


def netns_unavailable() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (make test installs it)"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CI runs these tests as root)"
    probe = f"fsprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


_REASON = netns_unavailable()
needs_netns = requires(_REASON is None, f"network namespaces unavailable: {_REASON}")
needs_tcpreplay = requires(shutil.which("tcpreplay") is not None,
                           "Debian tcpreplay is not installed (make test installs it)")


def ip(*args: str, namespace: str | None = None) -> None:
    """Run `ip ARGS` (inside `namespace` when given); a failure raises with ip's message."""
    command = ["ip", *(["-n", namespace] if namespace else []), *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")


class NetLab:
    """Namespaces and veth pairs for one test; names carry the pid and a serial so runs never collide."""

    def __init__(self) -> None:
        self.tag = f"{os.getpid() % 10000}x{next(_serial)}"
        self.namespaces: list[str] = []
        self.root_links: list[str] = []

    def namespace(self, name: str) -> str:
        """A new namespace with loopback up; returns its full name."""
        full = f"fs{self.tag}{name}"
        ip("netns", "add", full)
        self.namespaces.append(full)
        ip("link", "set", "lo", "up", namespace=full)
        return full

    def veth(self, a: str, b: str, *, ns_a: str | None = None, ns_b: str | None = None, mtu: int = 9000) -> None:
        """A veth pair a<->b, each end moved into its namespace (None: this one) and set up."""
        ip("link", "add", a, "mtu", str(mtu), "type", "veth", "peer", "name", b, "mtu", str(mtu))
        for end, namespace in ((a, ns_a), (b, ns_b)):
            if namespace:
                ip("link", "set", end, "netns", namespace)
            else:
                self.root_links.append(end)
            ip("link", "set", end, "up", namespace=namespace)

    def address(self, iface: str, cidr: str, *, namespace: str | None = None) -> None:
        ip("addr", "add", cidr, "dev", iface, namespace=namespace)

    def run(self, namespace: str | None, command: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        """Run a command to completion inside the namespace (None: here)."""
        prefix = ["ip", "netns", "exec", namespace] if namespace else []
        return subprocess.run([*prefix, *command], capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]

    def popen(self, namespace: str | None, command: Sequence[str], **kwargs: object) -> subprocess.Popen[str]:
        """Start a command inside the namespace (None: here); the caller stops it."""
        prefix = ["ip", "netns", "exec", namespace] if namespace else []
        return subprocess.Popen([*prefix, *command], text=True, **kwargs)  # type: ignore[call-overload]

    def close(self) -> None:
        for link in self.root_links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        for namespace in self.namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        self.root_links.clear()
        self.namespaces.clear()

    def __enter__(self) -> NetLab:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def mirror_link(lab: NetLab) -> tuple[str, str, str]:
    """A mirror source's namespace and a veth from it into this namespace, where a collector captures:
    (namespace, send end, capture end). IPv6 is off on both ends so neither kernel adds frames of its own."""
    namespace = lab.namespace("mirror")
    lab.run(namespace, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
    send, capture = f"fs{lab.tag}m", f"fs{lab.tag}c"
    lab.veth(send, capture, ns_a=namespace, mtu=9000)
    subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{capture}.disable_ipv6=1"], check=True)
    return namespace, send, capture
