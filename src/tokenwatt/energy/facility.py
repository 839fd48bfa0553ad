"""The facility view of IT energy: PUE overhead, heat reuse (ERF/ERE), water, carbon, cost.

Presets carry public figures with their sources (see ../shared/reference/public-figures.md);
anything not published is labelled a default, and every field can be overridden.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from tokenwatt.errors import ConfigError

__all__ = [
    "FACILITY_PRESETS",
    "J_PER_KWH",
    "FacilityModel",
    "FacilityReport",
    "facility_preset",
]

J_PER_KWH = 3.6e6
"""Joules in one kilowatt-hour."""

US_HOUSEHOLD_KWH_PER_DAY = 10_715 / 365
"""EIA FAQ "How much electricity does an American home use?": 10,715 kWh per residential
customer in 2020, i.e. about 29.4 kWh a day. A US figure: households elsewhere often use less."""


def _check(ok: bool, name: str, value: float, rule: str) -> None:
    if not ok:
        raise ConfigError(f"facility {name} {rule}, got {value!r}")


@dataclass(frozen=True)
class FacilityModel:
    """How a facility turns IT energy into grid energy, reused heat, water, carbon and cost.

    Defaults are the ``uptime-2024-average`` preset. PUE (The Green Grid, ISO/IEC 30134-2) is
    facility energy over IT energy; ERF is the share of facility energy reused (as heat);
    ERE = (1 - ERF) x PUE. WUE is site litres per IT kWh.
    """

    name: str = "uptime-2024-average"
    """Preset name; ``<preset>+custom`` once a value is overridden."""
    pue: float = 1.56
    """Power usage effectiveness, >= 1 (default: Uptime Institute 2024 average, 1.56)."""
    erf: float = 0.0
    """Energy reuse factor in [0, 1] (default 0: no heat reused)."""
    wue_l_per_kwh: float = 1.8
    """Site water litres per IT kWh (default 1.8, the US average in LBNL's 2016 data center
    report, Shehabi et al.; not in our reference sheet, so treat it as a default)."""
    carbon_g_per_kwh: float = 475.0
    """Grid carbon intensity, gCO2 per kWh (default 475, CodeCarbon's world average)."""
    price_per_kwh: float = 0.10
    """Electricity price per kWh in ``currency`` (default 0.10: a round placeholder, not a
    published figure; set your tariff)."""
    currency: str = "USD"
    """Currency of ``price_per_kwh``."""
    household_kwh_per_day: float = US_HOUSEHOLD_KWH_PER_DAY
    """An average household's daily electricity (default: EIA 2020 US average, 10,715 kWh/yr)."""
    source: str = "Uptime Institute 2024 average PUE; CodeCarbon world-average carbon"
    """Where the figures come from, shown beside every facility figure."""

    def __post_init__(self) -> None:
        _check(math.isfinite(self.pue) and self.pue >= 1.0, "pue", self.pue, "must be >= 1")
        _check(0.0 <= self.erf <= 1.0, "erf", self.erf, "must be within [0, 1]")
        for name in ("wue_l_per_kwh", "carbon_g_per_kwh", "price_per_kwh"):
            value = getattr(self, name)
            _check(math.isfinite(value) and value >= 0.0, name, value, "must be >= 0")
        household = self.household_kwh_per_day
        _check(
            math.isfinite(household) and household > 0,
            "household_kwh_per_day",
            household,
            "must be > 0",
        )
        if not self.currency:
            raise ConfigError("currency must be a non-empty code such as USD or EUR")

    @property
    def ere(self) -> float:
        """Energy reuse effectiveness, (1 - ERF) x PUE; may fall below 1, unlike PUE."""
        return (1.0 - self.erf) * self.pue

    def with_overrides(self, **overrides: Any) -> FacilityModel:
        """A copy with the given fields replaced (validated), named ``<name>+custom``."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"unknown facility field(s) {', '.join(unknown)}; use {', '.join(sorted(known))}"
            )
        values = {k: v for k, v in overrides.items() if v is not None}
        if values and "name" not in values:
            values["name"] = f"{self.name}+custom"
        return replace(self, **values)

    def facility_energy_j(self, it_energy_j: float) -> float:
        """Energy the facility draws for ``it_energy_j`` of IT energy (IT x PUE)."""
        return it_energy_j * self.pue

    def reused_heat_j(self, it_energy_j: float) -> float:
        """Energy reused as heat (facility energy x ERF)."""
        return self.facility_energy_j(it_energy_j) * self.erf

    def net_energy_j(self, it_energy_j: float) -> float:
        """Facility energy less what is reused (IT x ERE)."""
        return it_energy_j * self.ere

    def water_l(self, it_energy_j: float) -> float:
        """Site water in litres (IT kWh x WUE)."""
        return it_energy_j / J_PER_KWH * self.wue_l_per_kwh

    def carbon_g(self, it_energy_j: float) -> float:
        """Grid carbon in gCO2 for the facility energy (reuse does not lower what is drawn)."""
        return self.facility_energy_j(it_energy_j) / J_PER_KWH * self.carbon_g_per_kwh

    def cost(self, it_energy_j: float) -> float:
        """Electricity cost of the facility energy, in ``currency``."""
        return self.facility_energy_j(it_energy_j) / J_PER_KWH * self.price_per_kwh

    def household_days(self, it_energy_j: float) -> float:
        """Facility energy as days of an average household's electricity."""
        return self.facility_energy_j(it_energy_j) / J_PER_KWH / self.household_kwh_per_day

    def report(self, it_energy_j: float) -> FacilityReport:
        """Every facility figure for ``it_energy_j``."""
        if not it_energy_j >= 0:
            raise ConfigError(f"IT energy must be >= 0 J, got {it_energy_j!r}")
        return FacilityReport(
            model=self,
            it_energy_j=it_energy_j,
            facility_energy_j=self.facility_energy_j(it_energy_j),
            reused_heat_j=self.reused_heat_j(it_energy_j),
            net_energy_j=self.net_energy_j(it_energy_j),
            water_l=self.water_l(it_energy_j),
            carbon_g=self.carbon_g(it_energy_j),
            cost=self.cost(it_energy_j),
            household_days=self.household_days(it_energy_j),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data, ERE included."""
        return {**asdict(self), "ere": self.ere}


@dataclass(frozen=True)
class FacilityReport:
    """Facility figures for one amount of IT energy (all labelled with ``model``)."""

    model: FacilityModel = FacilityModel()
    """The model and its sources."""
    it_energy_j: float = 0.0
    """IT energy the figures derive from."""
    facility_energy_j: float = 0.0
    """IT x PUE."""
    reused_heat_j: float = 0.0
    """Facility energy x ERF."""
    net_energy_j: float = 0.0
    """IT x ERE."""
    water_l: float = 0.0
    """Site water, litres."""
    carbon_g: float = 0.0
    """Grid carbon, gCO2."""
    cost: float = 0.0
    """Electricity cost in ``model.currency``."""
    household_days: float = 0.0
    """Facility energy in days of an average household's electricity."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        data = asdict(self)
        data["model"] = self.model.to_dict()
        return data


_NEW_BUILD_PUE = 1.3

FACILITY_PRESETS: dict[str, FacilityModel] = {
    "it-only": FacilityModel(
        name="it-only",
        pue=1.0,
        source="no facility overhead: IT energy only (PUE 1.0 by definition)",
    ),
    "uptime-2024-average": FacilityModel(),
    "new-build": FacilityModel(
        name="new-build",
        pue=_NEW_BUILD_PUE,
        source="PUE 1.3: new large builds, 1.3 or better (public figures); world-average carbon",
    ),
    "hyperscale": FacilityModel(
        name="hyperscale",
        pue=1.10,
        source="PUE 1.10: Google fleet average (public figures); world-average carbon",
    ),
    "helsinki-heat-reuse": FacilityModel(
        name="helsinki-heat-reuse",
        pue=_NEW_BUILD_PUE,
        erf=0.25,
        source=(
            "ERF 0.25: a Helsinki-area data center recovers 20-30% of its electricity as "
            "district heat (public figures); PUE 1.3 assumed (new-build), not published for it"
        ),
    ),
}
"""Facility presets by name; override any field with ``facility_preset(name, **overrides)``."""


def facility_preset(name: str = "uptime-2024-average", **overrides: Any) -> FacilityModel:
    """The preset ``name`` with ``overrides`` applied (None values are ignored)."""
    try:
        model = FACILITY_PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown facility preset {name!r}; use one of {', '.join(FACILITY_PRESETS)}"
        ) from None
    return model.with_overrides(**overrides)
