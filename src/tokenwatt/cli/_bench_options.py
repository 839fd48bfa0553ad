"""`tokenwatt bench run`'s option checks that only the command line can make: counts named as the
user typed them, options passed where the chosen load or workload would ignore them (known from
typer's parameter source, so defaults never trip), and the list options' text."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import typer

from tokenwatt.bench.slo import SloSet
from tokenwatt.errors import ConfigError

__all__ = ["check_applies", "check_ranges", "parse_numbers", "parse_search_rate"]


def check_ranges(
    num_requests: int, sessions: int, turns: int, timeout_s: float, stall_timeout_s: float
) -> None:
    """Refuse out-of-range counts and timeouts by the option's name, as the user typed it."""
    counts = (("--num-requests", num_requests), ("--sessions", sessions), ("--turns", turns))
    for option, count in counts:
        if count < 1:
            raise ConfigError(f"{option} must be >= 1, got {count}")
    for option, seconds in (("--timeout", timeout_s), ("--stall-timeout", stall_timeout_s)):
        if not (seconds > 0 and math.isfinite(seconds)):
            raise ConfigError(f"{option} must be > 0 seconds, got {seconds:g}")


def check_applies(ctx: typer.Context) -> None:
    """Refuse options the run would otherwise ignore without a word: options with a default
    are refused only when the user actually passed them."""

    def given(name: str) -> bool:
        # By name: typer ships its own copy of click, whose enum is not click's.
        source = ctx.get_parameter_source(name)
        return source is not None and source.name != "DEFAULT"

    for refused, message in _refusals(ctx.params, given):
        if refused:
            raise ConfigError(message)


def _refusals(p: Mapping[str, object], given: Callable[[str], bool]) -> list[tuple[bool, str]]:
    """(refused, message) for each rule, in the order they are checked."""
    workload, rate, search = p["workload"], p["rate"], p["search"]
    open_loop = rate is not None or search is not None
    return [
        (
            p["trace"] is not None and workload != "trace",
            f"--trace applies only to --workload trace (got --workload {workload})",
        ),
        (
            p["sweep"] is not None and search is not None,
            "give either --sweep or --search-rate, not both",
        ),
        (
            p["metrics_url"] is not None and p["energy"] != "endpoint",
            f"--metrics-url applies only to --energy endpoint (got --energy {p['energy']})",
        ),
        (given("arrival") and not open_loop, "--arrival needs --rate (or --search-rate)"),
        (
            given("burstiness") and p["arrival"] != "gamma",
            "--burstiness applies to --arrival gamma only",
        ),
        (given("target") and search is None, "--target needs --search-rate"),
        (
            (given("sessions") or given("turns")) and workload != "agentic",
            "--sessions/--turns apply to --workload agentic only",
        ),
        (
            given("num_requests") and workload == "agentic",
            "--num-requests does not apply to --workload agentic: it sends --sessions x --turns",
        ),
        (
            search is not None and workload == "agentic",
            "--search-rate does not apply to --workload agentic: sessions are closed loops",
        ),
        (
            search is not None and (rate is not None or p["concurrency"] is not None),
            "--search-rate chooses the rates itself: drop --rate and --concurrency",
        ),
        (
            p["speedup"] is not None
            and workload == "trace"
            and (open_loop or p["concurrency"] is not None),
            "--speedup applies to trace replay only: drop --rate/--concurrency/--search-rate to "
            "replay the trace's timestamps",
        ),
        (
            given("seed")
            and workload == "trace"
            and not (open_loop and p["arrival"] != "constant"),
            "--seed applies to synthetic workloads and poisson/gamma arrivals, not to a trace "
            "replayed as recorded",
        ),
        (
            given("facility") and p["energy"] == "none",
            "--facility applies only when energy is measured (not with --energy none)",
        ),
    ]


def parse_numbers(text: str, option: str) -> list[float]:
    """Comma-separated numbers, e.g. ``1,2,4``, given to ``option``."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(
            f"{option} must be comma-separated numbers, e.g. 1,2,4; got {text!r}"
        ) from None
    if not values:
        raise ConfigError(f"{option} is empty; give comma-separated numbers, e.g. 1,2,4")
    return values


def parse_search_rate(text: str, slos: SloSet) -> tuple[float, float]:
    """``--search-rate LO:HI`` as (low, high) requests/s; the search needs SLOs to meet."""
    bounds = parse_numbers(text.replace(":", ","), "--search-rate")
    if len(bounds) != 2:
        raise ConfigError(f"--search-rate takes LO:HI, e.g. 1:32; got {text!r}")
    if not slos:
        raise ConfigError('--search-rate needs --slo, e.g. --slo "ttft<=1s,tpot<=100ms"')
    return bounds[0], bounds[1]
