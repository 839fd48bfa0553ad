"""`tokenwatt measure [options] -- COMMAND ...`: run a command and report the energy it used.

A thin layer over ``tokenwatt.energy.measure.measure_command``; the report goes to stderr
(like ``time``), so the command's own output can still be piped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.table import Table

from tokenwatt.cli._common import err_console, fail, user_errors
from tokenwatt.energy.cpu_model import CPU_MODES, CpuMode, CpuModelParams
from tokenwatt.energy.detect import CpuModelChoice, probe_meters
from tokenwatt.energy.facility import FACILITY_PRESETS, facility_preset
from tokenwatt.energy.measure import (
    EXIT_NOT_STARTED,
    CommandMeasurement,
    CommandNotStartedError,
    measure_command,
)
from tokenwatt.errors import ConfigError

__all__ = ["register", "render_report"]

_BACKENDS = ("nvml", "rapl", "cpu-model")


def register(app: typer.Typer) -> None:
    """Add the ``measure`` command to ``app``."""
    app.command(
        "measure",
        context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
    )(measure)


def measure(
    command: list[str] = typer.Argument(
        None, metavar="COMMAND", help="The command to run, with its arguments, after `--`."
    ),
    json_path: Path | None = typer.Option(
        None, "--json", help="Also write the result as JSON (schema tokenwatt.measure/1)."
    ),
    idle_s: float = typer.Option(
        0.0, "--idle-s", help="Measure idle power this long first and report energy above it."
    ),
    sample_hz: float = typer.Option(10.0, "--sample-hz", help="Power sampler rate (0: off)."),
    meters: str = typer.Option(
        "auto", "--meters", help="auto, or a comma list of nvml, rapl, cpu-model."
    ),
    cpu_mode: str = typer.Option(
        "children",
        "--cpu-mode",
        help="CPU model scope: children (the command's processes), machine (all CPUs).",
    ),
    active_w_per_core: float | None = typer.Option(
        None,
        "--active-w-per-core",
        help="CPU model: watts per fully busy logical CPU \\[default: 3.5, CCF's AWS average].",
    ),
    idle_w_per_core: float | None = typer.Option(
        None,
        "--idle-w-per-core",
        help="CPU model: watts per idle logical CPU \\[default: 0.74, CCF's AWS average].",
    ),
    facility: str = typer.Option(
        "uptime-2024-average",
        "--facility",
        help=f"Facility preset: {', '.join(FACILITY_PRESETS)}.",
    ),
    pue: float | None = typer.Option(None, "--pue", help="Override the preset's PUE."),
    erf: float | None = typer.Option(None, "--erf", help="Override the energy reuse factor."),
    wue: float | None = typer.Option(None, "--wue", help="Override water, litres per IT kWh."),
    carbon: float | None = typer.Option(None, "--carbon", help="Override gCO2 per kWh."),
    price: float | None = typer.Option(None, "--price", help="Override price per kWh."),
    currency: str | None = typer.Option(None, "--currency", help="Currency of --price."),
    household_kwh_per_day: float | None = typer.Option(
        None, "--household-kwh-per-day", help="Override the household's daily kWh."
    ),
) -> None:
    """Run COMMAND and report its energy: by component (with source and scope), average
    power, idle-adjusted energy, facility energy, carbon and cost. Exits with COMMAND's status."""
    if not command:
        raise fail("no command given; usage: tokenwatt measure [OPTIONS] -- COMMAND [ARGS]...")
    if json_path is not None:
        # checked before running, so a long run is not lost to a typo in the path
        _check_writable(json_path)
    with user_errors():
        model = facility_preset(
            facility,
            pue=pue,
            erf=erf,
            wue_l_per_kwh=wue,
            carbon_g_per_kwh=carbon,
            price_per_kwh=price,
            currency=currency,
            household_kwh_per_day=household_kwh_per_day,
        )
        nvml, rapl, cpu_model = _parse_meters(meters)
        defaults = CpuModelParams()
        params = CpuModelParams(
            active_w_per_core=_or(active_w_per_core, defaults.active_w_per_core),
            idle_w_per_core=_or(idle_w_per_core, defaults.idle_w_per_core),
        )
        probe = probe_meters(
            nvml=nvml,
            rapl=rapl,
            cpu_model=cpu_model,
            visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
            cpu_mode=_parse_cpu_mode(cpu_mode),
            cpu_params=params,
        )
        if not probe.meters:
            reasons = "; ".join(f"{k}: {v}" for k, v in probe.skipped.items())
            raise ConfigError(f"no energy meter available ({reasons}); try --meters cpu-model")
        try:
            result = measure_command(
                command,
                probe.meters,
                sample_hz=sample_hz,
                idle_s=idle_s,
                facility=model,
                skipped_meters=probe.skipped,
            )
        except CommandNotStartedError as exc:
            raise fail(str(exc), code=EXIT_NOT_STARTED) from None
    render_report(result)
    if json_path is not None:
        try:
            json_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        except OSError as exc:
            raise fail(f"cannot write {json_path}: {exc.strerror or exc}") from None
        err_console.print(f"wrote {json_path}", highlight=False)
    raise typer.Exit(result.exit_code)


def _check_writable(path: Path) -> None:
    """Fail now unless ``path`` can be written, leaving no trace of the probe."""
    if not path.parent.is_dir():
        raise fail(f"cannot write {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise fail(f"cannot write {path}: it is a folder; give a file name such as {path}/m.json")
    existed = path.exists()
    try:
        with path.open("a"):
            pass
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror or exc}") from None
    if not existed:
        path.unlink(missing_ok=True)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _parse_meters(value: str) -> tuple[bool, bool, CpuModelChoice]:
    if value.strip() == "auto":
        return True, True, "auto"
    names = {n.strip() for n in value.split(",") if n.strip()}
    unknown = sorted(names - set(_BACKENDS))
    if unknown or not names:
        raise ConfigError(
            f"unknown meter(s) {', '.join(unknown) or repr(value)} in --meters; "
            f"use auto or a comma list of {', '.join(_BACKENDS)}"
        )
    return "nvml" in names, "rapl" in names, "always" if "cpu-model" in names else "never"


def _parse_cpu_mode(value: str) -> CpuMode:
    if value not in CPU_MODES:
        raise ConfigError(f"unknown --cpu-mode {value!r}; use one of {', '.join(CPU_MODES)}")
    return value  # type: ignore[return-value]


def _joules(value: float) -> str:
    if value >= 3600:
        return f"{value:,.0f} J ({value / 3600:.3g} Wh)"
    return f"{value:.3f} J"


def render_report(result: CommandMeasurement) -> None:
    """Print the measurement as a table and a facility summary on stderr."""
    m = result.measurement
    adjusted = m.adjusted_energy_j()
    table = Table(title=f"tokenwatt measure: {' '.join(result.argv)}", title_justify="left")
    for header in ("component", "scope", "source", "energy", "avg power"):
        table.add_column(
            header, justify="right" if header.startswith(("energy", "avg")) else "left"
        )
    if adjusted is not None:
        table.add_column("above idle", justify="right")
    power = m.power_w()
    for c in m.components:
        row = [c.name, c.scope, c.source, _joules(m.energy_j[c.name]), f"{power[c.name]:.2f} W"]
        if adjusted is not None:
            row.append(_joules(adjusted[c.name]))
        table.add_row(*row)
    total = ["total", "", "estimated" if m.estimated else "measured", _joules(m.total_j())]
    total.append(f"{m.avg_power_w:.2f} W")
    if adjusted is not None:
        total.append(_joules(m.adjusted_total_j() or 0.0))
    table.add_row(*total, style="bold")
    err_console.print(table)
    err_console.print(f"duration {m.duration_s:.3f} s, exit status {result.exit_code}")
    for c in m.components:
        if c.estimated and c.params:
            params = ", ".join(f"{k}={v}" for k, v in c.params.items())
            err_console.print(f"{c.name}: {c.source} ({params})", highlight=False)
    if result.baseline is not None:
        b = result.baseline
        err_console.print(f"idle baseline: {b.total_w():.2f} W over {b.duration_s:.2f} s")
    err_console.print(_facility_table(result))
    err_console.print(f"facility figures: {result.facility.model.source}", style="dim")
    for backend, reason in result.skipped_meters.items():
        err_console.print(f"{backend} not used: {reason}", style="dim", highlight=False)


def _facility_table(result: CommandMeasurement) -> Table:
    f = result.facility
    fm = f.model
    table = Table(
        title=f"facility: {fm.name}",
        title_justify="left",
        show_header=False,
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row(f"facility energy (IT x PUE {fm.pue:g})", _joules(f.facility_energy_j))
    table.add_row(f"heat reused (ERF {fm.erf:g})", _joules(f.reused_heat_j))
    table.add_row(f"net of reuse (IT x ERE {fm.ere:.3g})", _joules(f.net_energy_j))
    table.add_row(f"water ({fm.wue_l_per_kwh:g} L/IT kWh)", f"{f.water_l * 1000:.3g} mL")
    table.add_row(f"carbon ({fm.carbon_g_per_kwh:g} g/kWh)", f"{f.carbon_g:.3g} gCO2")
    table.add_row(f"cost ({fm.price_per_kwh:g} {fm.currency}/kWh)", f"{f.cost:.3g} {fm.currency}")
    table.add_row(
        f"household-days ({fm.household_kwh_per_day:.3g} kWh/day)", f"{f.household_days:.3g}"
    )
    return table
