"""Numbers and times as people read them: no exponent, the right number of the noun, protocols by name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from pipeline.units import counted, percent, protocol_name, shown_time


def test_percentages_never_use_an_exponent() -> None:
    assert [percent(v) for v in (45.4, 4.54, 0.075, 0.0065, 0.00065, 0.0, -1.0, float("nan"))] == [
        "45%", "4.5%", "0.075%", "0.0065%", "<0.001%", "0%", "0%", "0%"]
    assert "e" not in "".join(percent(10.0 ** -k) for k in range(12))


def test_counts_carry_their_noun_in_the_right_number() -> None:
    assert [counted(n, "packet") for n in (0, 1, 2)] == ["0 packets", "1 packet", "2 packets"]


def test_protocols_by_name_and_times_to_the_ms_with_their_zone() -> None:
    assert (protocol_name(17), protocol_name(6), protocol_name(253)) == ("udp", "tcp", "253")
    moment = datetime(2026, 1, 15, 12, 0, 0, 999_999)
    assert shown_time(moment) == "2026-01-15T12:00:00.999Z"
    assert shown_time(moment.replace(tzinfo=timezone(timedelta(hours=1)))) == "2026-01-15T12:00:00.999+01:00"
    assert shown_time(moment.replace(tzinfo=UTC)) == "2026-01-15T12:00:00.999Z"
