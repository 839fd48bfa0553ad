"""SLO strings: parsing, units, canonical form, and clear errors."""

from __future__ import annotations

import pytest

from tokenwatt.bench.slo import SLO_EXAMPLE, Slo, SloSet, parse_slos
from tokenwatt.errors import ConfigError


def test_parse_the_documented_example() -> None:
    """The example string gives four objectives in seconds."""
    assert parse_slos(SLO_EXAMPLE).slos == (
        Slo("ttft", 0.5),
        Slo("tpot", 0.05),
        Slo("e2e", 10.0),
        Slo("itl", 0.2, "p99"),
    )


def test_spaces_and_case_are_tolerated() -> None:
    """Spaces around items and upper-case letters parse the same."""
    assert parse_slos(" TTFT <= 250ms , e2e<=2S ").slos == (Slo("ttft", 0.25), Slo("e2e", 2.0))


def test_empty_string_is_no_slos() -> None:
    """'' parses to an empty, falsy SLO set."""
    slos = parse_slos("")
    assert slos == SloSet() and not slos


def test_str_round_trips() -> None:
    """str() gives a canonical string that parses back to the same set."""
    slos = parse_slos("ttft<=0.5s,itl.p99<=200ms,e2e<=12s")
    assert str(slos) == "ttft<=500ms,itl.p99<=200ms,e2e<=12s"
    assert parse_slos(str(slos)) == slos


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ttft<0.5s", "'ttft<0.5s': expected metric<=bound"),
        ("ttft<=0.5", "'ttft<=0.5': expected a positive number followed by s or ms"),
        ("ttft<=1h", "'ttft<=1h': expected a positive number"),
        ("latency<=1s", "unknown metric 'latency'"),
        ("ttft.p99<=1s", "a statistic applies to itl only"),
        ("itl.p42<=1ms", "unknown itl statistic 'p42'"),
        ("ttft<=1s,ttft<=2s", "ttft given more than once"),
        ("ttft<=0s", "must be > 0 s"),
        ("ttft<=1s,,e2e<=2s", "empty item between commas"),
    ],
)
def test_malformed_strings_name_the_part_and_show_an_example(text: str, message: str) -> None:
    """Each malformed input raises ConfigError naming the bad part, with a valid example."""
    with pytest.raises(ConfigError) as info:
        parse_slos(text)
    assert message in str(info.value)
    assert SLO_EXAMPLE in str(info.value)


def test_slo_objects_validate_on_construction() -> None:
    """Building an Slo directly with a bad metric raises too."""
    with pytest.raises(ConfigError, match="unknown SLO metric 'foo'"):
        Slo("foo", 1.0)  # type: ignore[arg-type]
