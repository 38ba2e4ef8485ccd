"""Optimisation on top of the forecasts: signal timing and response-unit placement.

* :mod:`citybrain_ml.optimize.signals` -- Webster fixed-time plans, green-wave offsets and a
  max-pressure phase selector;
* :mod:`citybrain_ml.optimize.placement` -- the maximal covering location problem (MILP via
  HiGHS, greedy fallback) for placing ``p`` response units.
"""

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

__all__ = [
    "InfeasiblePlacementError",
    "Phase",
    "PhaseTiming",
    "PlacementResult",
    "SignalPlan",
    "coordinate_offsets",
    "coverage_matrix",
    "coverage_within",
    "evaluate_placement",
    "max_pressure_phase",
    "maximal_covering",
    "plans_from_flows",
    "plans_to_frame",
    "webster_cycle",
    "webster_delay",
    "webster_plan",
    "write_plans_csv",
    "write_plans_json",
]
