"""A missing tool skips a test outside CI and fails it under CI (tests/requirements.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from requirements import apply_requirements, require, requires


def test_a_met_requirement_lets_the_test_go_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    require(True, "present")
    require("/usr/bin/tool", "present")


@pytest.mark.parametrize("ci", [None, "", "0", "false"])
def test_outside_ci_a_missing_tool_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch, ci: str | None) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="pmacct is not installed"):
        require(None, "pmacct is not installed")
    with pytest.raises(pytest.fail.Exception, match="tshark is required"):
        require(False, "tshark is required", everywhere=True)


@pytest.mark.parametrize("ci", ["true", "1", "yes"])
def test_under_ci_a_missing_tool_fails(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match=r"snmpd is not installed \(required when CI is set\)"):
        require(False, "snmpd is not installed")


def test_the_mark_is_applied_in_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    marks = [requires(True, "ip is there").mark, requires(False, "not root").mark]
    item = SimpleNamespace(iter_markers=lambda name: [m for m in marks if m.name == name])
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="not root"):
        apply_requirements(item)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="not root"):
        apply_requirements(item)
