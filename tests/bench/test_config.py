"""BenchConfig and load_shape: flat options into one run's configuration."""

from __future__ import annotations

import pytest

from tokenwatt.bench.client import ClientConfig, ModelInfo
from tokenwatt.bench.config import BenchConfig, load_shape
from tokenwatt.bench.energy_sources import PrometheusSource
from tokenwatt.bench.load import ClosedLoop, OpenLoop, Sessions, TraceReplay
from tokenwatt.bench.runner import RunLimits
from tokenwatt.bench.slo import parse_slos
from tokenwatt.bench.workloads import WorkloadOptions
from tokenwatt.errors import ConfigError


@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [
        ({"workload": "chat"}, ClosedLoop(1)),
        ({"workload": "chat", "concurrency": 3}, ClosedLoop(3)),
        (
            {"workload": "chat", "rate_rps": 2.0, "arrival": "gamma", "burstiness": 0.5, "seed": 7},
            OpenLoop(2.0, "gamma", 0.5, 7),
        ),
        ({"workload": "agentic"}, Sessions(4)),
        ({"workload": "agentic", "concurrency": 2}, Sessions(2)),
        ({"workload": "trace"}, TraceReplay(1.0)),
        ({"workload": "trace", "speedup": 10.0}, TraceReplay(10.0)),
        ({"workload": "trace", "concurrency": 2}, ClosedLoop(2)),
        ({"workload": "trace", "rate_rps": 5.0}, OpenLoop(5.0)),
    ],
)
def test_load_shape_follows_the_workload_and_load_options(
    kwargs: dict[str, object], shape: object
) -> None:
    """Agentic runs sessions (4 at once by default), a rate is an open loop, a trace replays
    its own times unless a concurrency is given, anything else is a closed loop of 1."""
    assert load_shape(**kwargs) == shape  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workload": "chat", "rate_rps": 2.0, "concurrency": 2}, "not both"),
        ({"workload": "agentic", "rate_rps": 2.0}, "--rate does not apply to --workload agentic"),
        ({"workload": "chat", "speedup": 2.0}, "--speedup applies only to --workload trace"),
        ({"workload": "chat", "rate_rps": 2.0, "arrival": "bursty"}, "unknown arrival 'bursty'"),
    ],
)
def test_load_shape_refuses_options_that_do_not_fit(
    kwargs: dict[str, object], message: str
) -> None:
    """Contradictory or misplaced load options are a ConfigError naming the option."""
    with pytest.raises(ConfigError, match=message):
        load_shape(**kwargs)  # type: ignore[arg-type]


def test_build_adds_warmup_requests_to_the_workload() -> None:
    """10 measured chat requests after 3 warm-up ones: the workload makes 13, the limits
    measure 10 and mark the first 3 warm-up."""
    config = BenchConfig.build(
        WorkloadOptions(num_requests=10), ClosedLoop(2), warmup_requests=3, duration_s=5.0
    )
    assert config.workload.num_requests == 13
    assert config.limits == RunLimits(max_requests=10, duration_s=5.0, warmup_requests=3)
    assert config.shape == ClosedLoop(2)


def test_build_of_agentic_sessions_has_no_request_cap() -> None:
    """Agentic sessions send sessions x turns: no request cap, no extra warm-up requests."""
    workload = WorkloadOptions(name="agentic", sessions=2, turns=3)
    config = BenchConfig.build(workload, Sessions(2), warmup_requests=1)
    assert config.workload == workload
    assert config.limits == RunLimits(max_requests=None, warmup_requests=1)


def test_unknown_energy_source_and_facility_are_refused() -> None:
    """An energy choice or facility preset that does not exist fails on construction."""
    with pytest.raises(ConfigError, match="unknown energy source 'solar'; use local, endpoint"):
        BenchConfig(energy="solar")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown facility preset 'moon'"):
        BenchConfig(facility="moon")


def test_endpoint_energy_reads_the_endpoints_metrics_unless_told() -> None:
    """--energy endpoint scrapes the server root's /metrics (a /v1 suffix dropped), or the
    metrics URL given; the label says which."""
    client = ClientConfig(base_url="http://h:8000/v1/")
    config = BenchConfig(client=client, energy="endpoint")
    assert config.energy_label == "endpoint:http://h:8000/metrics"
    source = config.energy_source()
    assert isinstance(source, PrometheusSource) and source.url == "http://h:8000/metrics"
    told = BenchConfig(client=client, energy="endpoint", metrics_url="http://m:9/metrics")
    assert told.energy_label == "endpoint:http://m:9/metrics"


def test_no_energy_has_no_source() -> None:
    """--energy none samples nothing."""
    config = BenchConfig(energy="none")
    assert config.energy_source() is None
    assert config.energy_label == "none"


def test_fitted_to_takes_the_endpoints_model_and_context() -> None:
    """Without a chosen model the endpoint's is adopted, and its context caps the prompts."""
    config = BenchConfig().fitted_to(ModelInfo("m", 4096), adopt_model=True)
    assert config.client.model == "m"
    assert config.workload.max_model_len == 4096


def test_fitted_to_keeps_a_chosen_model_and_explicit_prompt_cap() -> None:
    """A chosen model stays; --max-input-tokens wins over the endpoint's context."""
    config = BenchConfig(
        client=ClientConfig(model="mine"), workload=WorkloadOptions(max_input_tokens=5)
    )
    fitted = config.fitted_to(ModelInfo("m", 4096), adopt_model=False)
    assert fitted == config
    assert config.fitted_to(None, adopt_model=True) is config


def test_record_is_plain_data_with_the_key_masked() -> None:
    """The record a result keeps: every part as plain data, the API key as ***."""
    config = BenchConfig(
        client=ClientConfig(base_url="http://h:1", api_key="secret"),
        workload=WorkloadOptions(num_requests=2),
        shape=OpenLoop(2.0, "constant"),
        limits=RunLimits(max_requests=2),
        slos=parse_slos("ttft<=1s"),
        energy="none",
        facility="hyperscale",
    )
    record = config.record()
    assert list(record) == [
        "url",
        "client",
        "workload",
        "limits",
        "slos",
        "facility",
        "shape",
        "energy_source",
    ]
    assert record["url"] == "http://h:1"
    assert record["client"]["api_key"] == "***"
    assert record["workload"]["num_requests"] == 2
    assert record["limits"]["max_requests"] == 2
    assert record["slos"] == str(parse_slos("ttft<=1s"))
    assert record["facility"] == "hyperscale"
    assert record["shape"] == {
        "kind": "OpenLoop",
        "rate_rps": 2.0,
        "arrival": "constant",
        "burstiness": 1.0,
        "seed": 0,
        "max_concurrency": None,
    }
    assert record["energy_source"] == "none"


def test_record_without_a_key_says_none() -> None:
    """No API key is recorded as None, not as a mask."""
    assert BenchConfig().record()["client"]["api_key"] is None


def test_repr_never_shows_the_key() -> None:
    """Neither the client's repr nor the run's (which holds it) shows the API key."""
    client = ClientConfig(base_url="http://h:1", api_key="sk-secret-9f2c")
    assert "sk-secret-9f2c" not in repr(client)
    assert "base_url='http://h:1'" in repr(client)
    assert "sk-secret-9f2c" not in repr(BenchConfig(client=client))
    assert client.api_key == "sk-secret-9f2c"
