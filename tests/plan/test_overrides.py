"""A PlanConfig from a JSON file, KEY=VALUE overrides and shortcuts; sweep axes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.plan.config import PlanConfig
from tokenwatt.plan.overrides import (
    cross_product,
    load_config,
    parse_axis,
    parse_override,
    parse_value,
    parse_values,
    shortcut_overrides,
    variant_label,
)


def test_values_are_json_where_they_parse() -> None:
    """Numbers, quoted strings and lists are JSON; bare words stay text."""
    assert parse_value("8") == 8
    assert parse_value("2.5") == 2.5
    assert parse_value('"static"') == "static"
    assert parse_value('[{"name": "dram"}]') == [{"name": "dram"}]
    assert parse_value("prefix_aware") == "prefix_aware"


def test_comma_separated_values_skip_empty_items() -> None:
    """Items are trimmed and read one by one; blank ones are dropped."""
    assert parse_values(" 2, 4 ,,x") == [2, 4, "x"]
    assert parse_values(",") == []


def test_override_splits_at_the_first_equals_sign() -> None:
    """KEY=VALUE keeps any later '=' in the value, with both sides trimmed."""
    assert parse_override(" scaling.max_replicas = 8") == ("scaling.max_replicas", 8)
    assert parse_override("power=a=b") == ("power", "a=b")


@pytest.mark.parametrize("item", ["nokey", "=3"])
def test_override_without_key_or_equals_is_named(item: str) -> None:
    """A malformed --set item gives the expected form and echoes the item."""
    with pytest.raises(ConfigError) as err:
        parse_override(item)
    assert str(err.value) == (
        f"--set expects KEY=VALUE (e.g. scaling.max_replicas=8), got {item!r}"
    )


def test_replicas_shortcut_fixes_a_static_fleet() -> None:
    """--replicas alone picks the static autoscaler; unset shortcuts are left out."""
    assert shortcut_overrides(replicas=3) == {
        "autoscaler_params.replicas": 3,
        "autoscaler": "static",
    }
    assert shortcut_overrides(replicas=3, autoscaler="concurrency", router="round_robin") == {
        "autoscaler": "concurrency",
        "router": "round_robin",
        "autoscaler_params.replicas": 3,
    }
    assert shortcut_overrides() == {}


def test_load_config_applies_file_then_shortcuts_then_overrides(tmp_path: Path) -> None:
    """The file sets the base, shortcuts change it, and --set items win over both."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"autoscaler": "concurrency", "scaling": {"max_replicas": 3}}))
    config = load_config(
        path,
        ["scaling.cold_start_s=5", "router=round_robin"],
        {"router": "prefix_aware", "mode": "step"},
    )
    assert config.autoscaler == "concurrency"
    assert config.scaling.max_replicas == 3
    assert config.scaling.cold_start_s == 5
    assert config.router == "round_robin"
    assert config.mode == "step"


def test_load_config_without_anything_is_the_default() -> None:
    """No file, no overrides: PlanConfig's defaults."""
    assert load_config() == PlanConfig()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "config file {path} not found"),
        ("{not json", "config file {path} is not JSON (Expecting property name"),
        ("[1, 2]", "config file {path} must hold a JSON object"),
    ],
)
def test_bad_config_files_are_named(tmp_path: Path, text: str | None, message: str) -> None:
    """A missing, malformed or non-object config file is a ConfigError naming the file."""
    path = tmp_path / "c.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(message.format(path=path))


def test_axes_cross_product_varies_the_last_axis_fastest() -> None:
    """Two axes of two values give four variants in order, labelled key=value."""
    axes = [parse_axis('router="round_robin",least_outstanding'), parse_axis("seed=1,2")]
    assert axes == [("router", ["round_robin", "least_outstanding"]), ("seed", [1, 2])]
    variants = cross_product(axes)
    assert [variant_label(v) for v in variants] == [
        "router=round_robin, seed=1",
        "router=round_robin, seed=2",
        "router=least_outstanding, seed=1",
        "router=least_outstanding, seed=2",
    ]
    assert cross_product([]) == [{}]


@pytest.mark.parametrize("item", ["router", "scaling.max_replicas=", "=1,2", " =1"])
def test_malformed_axis_is_named(item: str) -> None:
    """An axis without key, '=' or values gives the expected form."""
    with pytest.raises(ConfigError) as err:
        parse_axis(item)
    assert str(err.value) == (
        f"--vary expects KEY=V1,V2 (e.g. scaling.max_replicas=4,8), got {item!r}"
    )
