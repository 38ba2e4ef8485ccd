"""Optimisation on top of the forecasts: signal timing and response-unit placement.

* :mod:`citybrain_ml.optimize.signals` -- Webster fixed-time plans, green-wave offsets and a
  max-pressure phase selector;
* :mod:`citybrain_ml.optimize.simulation` -- signal controllers rehearsed in SUMO on a
  :class:`Scenario` (RESCO benchmark, a city's ``.sumocfg``, or a net + route files):
  ``simulate(scenario, controller, seed)`` and the ``citybrain optimize signals`` job;
* :mod:`citybrain_ml.optimize.network` -- reading a ``.sumocfg``, locating SUMO's tools;
* :mod:`citybrain_ml.optimize.placement` -- the maximal covering location problem (MILP via
  HiGHS, greedy fallback) for placing ``p`` response units.

Nothing here imports SUMO until a simulation starts (``pip install citybrain_ml[sim]``).
"""

from citybrain_ml.optimize.network import SumoConfig, read_sumocfg
from citybrain_ml.optimize.placement import (
    InfeasiblePlacementError,
    PlacementResult,
    coverage_matrix,
    coverage_within,
    evaluate_placement,
    maximal_covering,
)
from citybrain_ml.optimize.signals import (
    Phase,
    PhaseTiming,
    SignalPlan,
    coordinate_offsets,
    max_pressure_phase,
    plans_from_flows,
    plans_to_frame,
    webster_cycle,
    webster_delay,
    webster_plan,
    write_plans_csv,
    write_plans_json,
)
from citybrain_ml.optimize.simulation import (
    SUMMARY_METRICS,
    AdvancedMaxPressureController,
    Controller,
    FixedTimeController,
    FlowForecast,
    ForecastWebsterController,
    MaxPressureController,
    NetworkConfig,
    PlanController,
    Scenario,
    SignalsJobConfig,
    SignalsResult,
    SimulationResult,
    SimulatorUnavailable,
    WebsterSettings,
    load_signals_config,
    read_tls_programs,
    read_tripinfo,
    run_signals,
    run_signals_job,
    simulate,
    trip_metrics,
)

__all__ = [
    "SUMMARY_METRICS",
    "AdvancedMaxPressureController",
    "Controller",
    "FixedTimeController",
    "FlowForecast",
    "ForecastWebsterController",
    "InfeasiblePlacementError",
    "MaxPressureController",
    "NetworkConfig",
    "Phase",
    "PhaseTiming",
    "PlacementResult",
    "PlanController",
    "Scenario",
    "SignalPlan",
    "SignalsJobConfig",
    "SignalsResult",
    "SimulationResult",
    "SimulatorUnavailable",
    "SumoConfig",
    "WebsterSettings",
    "coordinate_offsets",
    "coverage_matrix",
    "coverage_within",
    "evaluate_placement",
    "load_signals_config",
    "max_pressure_phase",
    "maximal_covering",
    "plans_from_flows",
    "plans_to_frame",
    "read_sumocfg",
    "read_tls_programs",
    "read_tripinfo",
    "run_signals",
    "run_signals_job",
    "simulate",
    "trip_metrics",
    "webster_cycle",
    "webster_delay",
    "webster_plan",
    "write_plans_csv",
    "write_plans_json",
]
