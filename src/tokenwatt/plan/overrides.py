"""A PlanConfig from the places a user states one: a JSON file (partial is fine), ``KEY=VALUE``
overrides and option shortcuts; and the ``KEY=V1,V2`` axes of a sweep with their cross product.

Values are JSON where they parse as JSON (``8``, ``"static"``, ``[...]``), else the text itself.
Messages name the ``tokenwatt plan`` options the text comes from (``--set``, ``--vary``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenwatt.errors import ConfigError
from tokenwatt.plan.config import PlanConfig
from tokenwatt.plan.files import read_json

__all__ = [
    "cross_product",
    "load_config",
    "parse_axis",
    "parse_override",
    "parse_value",
    "parse_values",
    "shortcut_overrides",
    "variant_label",
]


def parse_value(text: str) -> Any:
    """``text`` as JSON if it is JSON, else the text (so ``--set router=prefix_aware`` needs no
    quotes)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_values(text: str) -> list[Any]:
    """Comma-separated values, each read by ``parse_value``; empty items are skipped."""
    return [parse_value(v.strip()) for v in text.split(",") if v.strip()]


def parse_override(item: str) -> tuple[str, Any]:
    """One ``KEY=VALUE`` override as (dotted key, value)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. scaling.max_replicas=8), got {item!r}")
    return key.strip(), parse_value(value.strip())


def shortcut_overrides(
    *,
    accelerator: str | None = None,
    autoscaler: str | None = None,
    router: str | None = None,
    mode: str | None = None,
    replicas: int | None = None,
) -> dict[str, Any]:
    """The config changes the shortcut options stand for; None leaves a key as configured.
    A fleet size fixes the fleet: the static autoscaler, unless another is named."""
    changes: dict[str, Any] = {
        "accelerator": accelerator,
        "autoscaler": autoscaler,
        "router": router,
        "mode": mode,
    }
    if replicas is not None:
        changes["autoscaler_params.replicas"] = replicas
        changes["autoscaler"] = autoscaler or "static"
    return {k: v for k, v in changes.items() if v is not None}


def _read_config_file(path: Path) -> dict[str, Any]:
    data = read_json(path, "config")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    return data


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    shortcuts: Mapping[str, Any] | None = None,
) -> PlanConfig:
    """The config in ``path`` (None: the defaults) with ``shortcuts`` (see
    ``shortcut_overrides``) and then the ``KEY=VALUE`` ``overrides`` applied, later ones
    winning."""
    data = {} if path is None else _read_config_file(Path(path))
    config = PlanConfig.from_dict(data)
    changes = dict(shortcuts or {})
    changes.update(parse_override(item) for item in overrides)
    return config.replace(**changes) if changes else config


def parse_axis(item: str) -> tuple[str, list[Any]]:
    """One sweep axis ``KEY=V1,V2,...`` as (dotted key, values)."""
    key, sep, text = item.partition("=")
    values = parse_values(text)
    if not sep or not key.strip() or not values:
        raise ConfigError(f"--vary expects KEY=V1,V2 (e.g. scaling.max_replicas=4,8), got {item!r}")
    return key.strip(), values


def cross_product(axes: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values as config changes, the last axis varying fastest
    (no axes: one run of the base config)."""
    variants: list[dict[str, Any]] = [{}]
    for key, values in axes:
        variants = [{**v, key: value} for v in variants for value in values]
    return variants


def variant_label(changes: Mapping[str, Any]) -> str:
    """A run's label from its config changes: ``key=value, key=value``."""
    return ", ".join(f"{k}={v}" for k, v in changes.items())
