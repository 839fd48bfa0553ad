"""Measure the energy of any command: run it inside one monitor window, sampler on.

The library side of ``tokenwatt measure``. ``CommandMeasurement.to_dict()`` is the ``--json``
document; its schema (``tokenwatt.measure/1``) is::

    {
      "schema": "tokenwatt.measure/1",
      "command": ["python", "-c", "..."],      # argv as run
      "exit_code": 0,                           # its status; 128 + N if signal N killed it
      "sample_hz": 10.0,                        # sampler rate (0: off)
      "meters_skipped": {"nvml": "reason"},     # back-ends not used, and why
      "measurement": {                          # Measurement.to_dict() of the "command" window
        "name": "command", "start_s": .., "end_s": .., "duration_s": ..,
        "estimated": true,                      # any figure an estimate?
        "components": [{"name", "scope", "source", "estimated", "params"}],
        "energy_j": {component: J}, "total_j": J, "by_scope_j": {scope: J},
        "avg_power_w": W,
        "idle_power_w": {component: W} | null,  # from the idle baseline (--idle-s)
        "adjusted_energy_j": {component: J} | null, "adjusted_total_j": J | null
      },
      "idle_baseline": {"duration_s": s, "power_w": {component: W}} | null,
      "facility": {                             # FacilityReport.to_dict() of total_j
        "model": {"name", "pue", "erf", "ere", "wue_l_per_kwh", "carbon_g_per_kwh",
                  "price_per_kwh", "currency", "household_kwh_per_day", "source"},
        "it_energy_j", "facility_energy_j", "reused_heat_j", "net_energy_j",
        "water_l", "carbon_g", "cost", "household_days"
      },
      "timeline": [{"t_s": s, "interval_s": s, "power_w": {component: W}}]
                                                # t_s: end of interval, from command start
    }
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenwatt.energy.facility import FacilityModel, FacilityReport
from tokenwatt.energy.measurement import IdleBaseline, Measurement, PowerSample
from tokenwatt.energy.meter import Meter
from tokenwatt.energy.monitor import EnergyMonitor
from tokenwatt.errors import ConfigError, TokenwattError

__all__ = [
    "EXIT_NOT_STARTED",
    "SCHEMA",
    "CommandMeasurement",
    "CommandNotStartedError",
    "measure_command",
]

log = logging.getLogger(__name__)

SCHEMA = "tokenwatt.measure/1"
EXIT_NOT_STARTED = 127
"""Exit status when the command cannot be started (as POSIX shells use)."""

_INTERRUPT_GRACE_S = 5.0
_MAX_IDLE_S = 86_400.0


class CommandNotStartedError(TokenwattError):
    """The command to measure could not be started (not found, not executable)."""


@dataclass(frozen=True)
class CommandMeasurement:
    """One measured run of a command."""

    argv: tuple[str, ...] = ()
    """The command as run."""
    exit_code: int = 0
    """Its exit status (128 + N when a signal N ended it)."""
    measurement: Measurement = field(default_factory=Measurement)
    """Energy of the window from start to exit, idle-adjusted when a baseline was taken."""
    facility: FacilityReport = field(default_factory=FacilityReport)
    """Facility figures for the measurement's total energy."""
    baseline: IdleBaseline | None = None
    """Idle baseline measured before the command, if any."""
    timeline: tuple[PowerSample, ...] = ()
    """Power samples from the sampler (idle period included)."""
    sample_hz: float = 0.0
    """Sampler rate used."""
    skipped_meters: Mapping[str, str] = field(default_factory=dict)
    """Back-ends not used, and why."""

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document (schema in this module's docstring)."""
        start_s = self.measurement.start_s
        return {
            "schema": SCHEMA,
            "command": list(self.argv),
            "exit_code": self.exit_code,
            "sample_hz": self.sample_hz,
            "meters_skipped": dict(self.skipped_meters),
            "measurement": self.measurement.to_dict(),
            "idle_baseline": None if self.baseline is None else self.baseline.to_dict(),
            "facility": self.facility.to_dict(),
            "timeline": [
                {"t_s": s.time_s - start_s, "interval_s": s.interval_s, "power_w": dict(s.power_w)}
                for s in self.timeline
            ],
        }


def measure_command(
    argv: Sequence[str],
    meters: Sequence[Meter],
    *,
    sample_hz: float = 10.0,
    idle_s: float = 0.0,
    facility: FacilityModel | None = None,
    skipped_meters: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> CommandMeasurement:
    """Run ``argv`` to completion and measure it with ``meters`` (closed when done).

    With ``idle_s`` > 0, idle power is measured for that long first and the result is
    idle-adjusted. Raises CommandNotStartedError when the command cannot be started.
    """
    try:
        _check_inputs(argv, meters, idle_s)
        monitor = EnergyMonitor(meters, sample_hz=sample_hz, max_samples=None)
    except BaseException:
        for meter in meters:
            meter.close()
        raise
    model = facility if facility is not None else FacilityModel()
    try:
        monitor.start()
        baseline = monitor.measure_idle(idle_s) if idle_s > 0 else None
        monitor.begin_window("command")
        try:
            process = subprocess.Popen(list(argv), cwd=cwd, env=None if env is None else dict(env))
        except OSError as exc:
            monitor.cancel_window("command")
            reason = exc.strerror or str(exc)
            raise CommandNotStartedError(
                f"cannot start {argv[0]!r}: {reason}; check the name and that it is on PATH "
                "and executable"
            ) from None
        with _forward_signals(process):
            exit_code = _wait(process)
        measurement = monitor.end_window("command")
        monitor.stop()
        timeline = tuple(monitor.timeline())
    finally:
        monitor.close()
    return CommandMeasurement(
        argv=tuple(argv),
        exit_code=exit_code,
        measurement=measurement,
        facility=model.report(measurement.total_j()),
        baseline=baseline,
        timeline=timeline,
        sample_hz=sample_hz,
        skipped_meters=dict(skipped_meters or {}),
    )


def _check_inputs(argv: Sequence[str], meters: Sequence[Meter], idle_s: float) -> None:
    if not argv:
        raise ConfigError("no command to measure; put it after `--`, e.g. `-- python app.py`")
    if not meters:
        raise ConfigError("no energy meter available; see the skipped back-ends for why")
    if not 0 <= idle_s <= _MAX_IDLE_S:
        raise ConfigError(
            f"idle baseline duration must be >= 0 s and at most {_MAX_IDLE_S:g} s (a day), "
            f"got {idle_s!r}; a few seconds (--idle-s 5) is usually enough"
        )


_FORWARDED = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _forward_signals(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """Pass SIGTERM and SIGHUP on to the command, so a stopped measurement still reports.

    Only the main thread may install handlers; elsewhere signals keep their defaults.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, _frame: object) -> None:
        log.info("passing signal %d on to the command", signum)
        process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait(process: subprocess.Popen[bytes]) -> int:
    """The exit status; on Ctrl-C (which the child also got) give it a grace period, then kill."""
    try:
        code = process.wait()
    except KeyboardInterrupt:
        log.warning("interrupted; waiting up to %.0f s for the command to exit", _INTERRUPT_GRACE_S)
        try:
            code = process.wait(timeout=_INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    return 128 - code if code < 0 else code
