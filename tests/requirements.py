"""What a test needs from the machine (tshark, Chromium, pmacctd, snmpd, tcpreplay, network namespaces, root…),
checked in one place.

Outside CI a missing tool skips the test with the reason, so a laptop without root still runs the rest. Under
CI (the CI environment variable set, as every CI service does) the same absence FAILS the test: CI installs
every tool (`make test` runs scripts/install-system-deps.sh), so a tool missing there is a broken setup,
never a reason to pass quietly. A test that must fail everywhere (the decoder's tshark reference) says so
with `everywhere=True`.

In a test or fixture:    require(shutil.which("tshark") is not None, "tshark is not installed")
On a module or test:     pytestmark = requires(shutil.which("pmacctd") is not None, "pmacct is not installed")
"""

from __future__ import annotations

import os

import pytest

CI_VARIABLE = "CI"


def in_ci() -> bool:
    """True when CI is set to anything but empty, "0" or "false"."""
    return os.environ.get(CI_VARIABLE, "").strip().lower() not in ("", "0", "false")


def require(condition: object, reason: str, *, everywhere: bool = False) -> None:
    """Go on when `condition` holds; otherwise fail under CI (or `everywhere`), skip with `reason` elsewhere."""
    if condition:
        return
    if everywhere or in_ci():
        pytest.fail(f"{reason} (required{'' if everywhere else ' when CI is set'})", pytrace=False)
    pytest.skip(reason)


def requires(condition: object, reason: str) -> pytest.MarkDecorator:
    """`require` as a mark for a test, class or module; tests/conftest.py applies it before fixtures run."""
    return pytest.mark.requires(bool(condition), reason=reason)


def apply_requirements(item: pytest.Item) -> None:
    """Every `requires` mark of a test, checked in its setup (conftest's pytest_runtest_setup)."""
    for mark in item.iter_markers("requires"):
        require(mark.args[0], mark.kwargs["reason"])
