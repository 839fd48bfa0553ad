"""The fleet planner: trace-driven simulation of energy, goodput and autoscaling.

``simulate(PlanConfig(...), requests)`` runs one configuration; ``sweep`` and
``search_min_energy`` run many in parallel; ``write_report`` renders results as HTML.
``load_config`` and ``WorkloadOptions`` turn a user's flat choices into a config and a workload;
``calibrate_engine`` profiles the reference engine.
"""

from tokenwatt.plan.autoscalers import (
    Autoscaler,
    ConcurrencyAutoscaler,
    FleetState,
    PredictiveAutoscaler,
    QueueKVAutoscaler,
    ScalingGovernor,
    StaticAutoscaler,
    make_autoscaler,
)
from tokenwatt.plan.calibrate import (
    CalibrationSpec,
    EnergyWindow,
    EngineTarget,
    StepRecord,
    StepTarget,
    calibrate,
    overhead_from_profile,
    power_from_profile,
    profile_from_steps,
    write_profile,
)
from tokenwatt.plan.config import (
    FacilityConfig,
    PlanConfig,
    ReplicaConfig,
    ScalingConfig,
    SLOConfig,
    TierSpec,
    WarehouseConfig,
)
from tokenwatt.plan.engine_calibration import EngineCalibration, calibrate_engine
from tokenwatt.plan.execution import ExecutionModel, ProfileModel, RooflineModel
from tokenwatt.plan.hardware import (
    AcceleratorSpec,
    ModelSpec,
    PowerModel,
    accelerator_preset,
    model_preset,
    power_preset,
)
from tokenwatt.plan.ingress import IngressDelay
from tokenwatt.plan.overrides import load_config
from tokenwatt.plan.report import render_html, write_report
from tokenwatt.plan.results import PlanResult, facility_figures, load_result
from tokenwatt.plan.routers import (
    LeastOutstandingRouter,
    PrefixAwareRouter,
    RoundRobinRouter,
    Router,
    make_router,
)
from tokenwatt.plan.search import (
    ListWorkload,
    SearchResult,
    SyntheticWorkload,
    TraceWorkload,
    run_workload,
    search_min_energy,
    sweep,
)
from tokenwatt.plan.served import (
    ServedCalibrationSpec,
    ServedRun,
    ServedSession,
    calibrate_served,
)
from tokenwatt.plan.simulator import Simulation, simulate, simulate_columns
from tokenwatt.plan.workloads import WorkloadOptions

__all__ = [
    "AcceleratorSpec",
    "Autoscaler",
    "CalibrationSpec",
    "ConcurrencyAutoscaler",
    "EnergyWindow",
    "EngineCalibration",
    "EngineTarget",
    "ExecutionModel",
    "FacilityConfig",
    "FleetState",
    "IngressDelay",
    "LeastOutstandingRouter",
    "ListWorkload",
    "ModelSpec",
    "PlanConfig",
    "PlanResult",
    "PowerModel",
    "PredictiveAutoscaler",
    "PrefixAwareRouter",
    "ProfileModel",
    "QueueKVAutoscaler",
    "ReplicaConfig",
    "RooflineModel",
    "RoundRobinRouter",
    "Router",
    "SLOConfig",
    "ScalingConfig",
    "ScalingGovernor",
    "SearchResult",
    "ServedCalibrationSpec",
    "ServedRun",
    "ServedSession",
    "Simulation",
    "StaticAutoscaler",
    "StepRecord",
    "StepTarget",
    "SyntheticWorkload",
    "TierSpec",
    "TraceWorkload",
    "WarehouseConfig",
    "WorkloadOptions",
    "accelerator_preset",
    "calibrate",
    "calibrate_engine",
    "calibrate_served",
    "facility_figures",
    "load_config",
    "load_result",
    "make_autoscaler",
    "make_router",
    "model_preset",
    "overhead_from_profile",
    "power_from_profile",
    "power_preset",
    "profile_from_steps",
    "render_html",
    "run_workload",
    "search_min_energy",
    "simulate",
    "simulate_columns",
    "sweep",
    "write_profile",
    "write_report",
]
