"""Fixed-time signal plans (Webster's method) and a max-pressure phase selector.

Webster (1958), "Traffic signal settings", Road Research Technical Paper 39:

* optimal cycle ``C0 = (1.5 L + 5) / (1 - Y)``, where ``L`` is the total lost time per
  cycle (s) and ``Y = sum_i y_i`` the sum over phases of the critical flow ratio
  ``y_i = q_i / s_i`` (critical-lane flow over its saturation flow);
* effective green splits ``g_i = (C - L) y_i / Y``;
* average delay per vehicle on an approach, the full three-term formula (see
  :func:`webster_delay`).

Timing convention. Each phase loses ``l`` seconds of its interval (start-up plus clearance
lost time, ``L = n l``), and its interval is ``green + yellow + all_red``. So the displayed
green is ``G_i = g_i + l - yellow_i - all_red_i`` and ``sum_i (G_i + yellow_i + all_red_i)``
equals the cycle exactly. With the defaults (``l = 4``, yellow 3 s, all-red 1 s) displayed and
effective green coincide.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

#: Y at or above this is treated as oversaturated (Webster's C0 explodes as Y -> 1)
DEFAULT_MAX_FLOW_RATIO = 0.9
FLOW_COLUMNS = ("intersection_id", "phase", "flow_veh_h", "saturation_flow_veh_h")
_TIMING_COLUMNS = ("min_green_s", "yellow_s", "all_red_s")


@dataclass(frozen=True)
class Phase:
    """One signal phase and the critical (highest ``q/s``) lane group it serves.

    Parameters
    ----------
    name : str
        Phase label, e.g. ``"NS-through"``.
    critical_flow_veh_h : float
        Demand flow ``q`` of the phase's critical lane group (veh/h).
    saturation_flow_veh_h : float
        Saturation flow ``s`` of that lane group (veh/h of green), > 0.
    movements : tuple of str
        Movements or lanes the phase serves (kept for the simulator; not used here).
    min_green_s, yellow_s, all_red_s : float
        Minimum displayed green (pedestrian / safety), yellow and all-red intervals (s).
    """

    name: str
    critical_flow_veh_h: float
    saturation_flow_veh_h: float
    movements: tuple[str, ...] = ()
    min_green_s: float = 7.0
    yellow_s: float = 3.0
    all_red_s: float = 1.0

    def __post_init__(self) -> None:
        if not np.isfinite(self.critical_flow_veh_h) or self.critical_flow_veh_h < 0:
            raise ValueError(
                f"phase {self.name!r}: critical_flow_veh_h must be finite and >= 0, "
                f"got {self.critical_flow_veh_h}"
            )
        if not np.isfinite(self.saturation_flow_veh_h) or self.saturation_flow_veh_h <= 0:
            raise ValueError(
                f"phase {self.name!r}: saturation_flow_veh_h must be finite and > 0, "
                f"got {self.saturation_flow_veh_h}"
            )
        for attr in _TIMING_COLUMNS:
            if getattr(self, attr) < 0:
                raise ValueError(f"phase {self.name!r}: {attr} must be >= 0")
        object.__setattr__(self, "movements", tuple(self.movements))

    @property
    def flow_ratio(self) -> float:
        """Critical flow ratio ``y = q / s``."""
        return self.critical_flow_veh_h / self.saturation_flow_veh_h


@dataclass(frozen=True)
class PhaseTiming:
    """Timing of one phase inside a :class:`SignalPlan` (all in seconds)."""

    name: str
    green_s: float
    yellow_s: float
    all_red_s: float
    effective_green_s: float
    flow_veh_h: float
    saturation_flow_veh_h: float
    degree_of_saturation: float
    expected_delay_s: float
    movements: tuple[str, ...] = ()

    @property
    def interval_s(self) -> float:
        """Green + yellow + all-red: the phase's share of the cycle."""
        return self.green_s + self.yellow_s + self.all_red_s


@dataclass(frozen=True)
class SignalPlan:
    """A fixed-time plan for one intersection.

    ``phases`` run in list order starting at ``offset_s`` (seconds after the common
    reference time, modulo the cycle). ``oversaturated`` is True when the flow ratio sum
    ``Y`` reached the oversaturation threshold; the cycle was then capped at the maximum and
    the expected delays are infinite for phases with degree of saturation >= 1.
    """

    intersection_id: str
    cycle_s: float
    phases: list[PhaseTiming]
    offset_s: float = 0.0
    lost_time_s: float = 0.0
    flow_ratio_sum: float = 0.0
    oversaturated: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def average_delay_s(self) -> float:
        """Flow-weighted mean of the phases' expected delays (s/veh); NaN with no flow."""
        flows = np.array([p.flow_veh_h for p in self.phases])
        delays = np.array([p.expected_delay_s for p in self.phases])
        if flows.sum() <= 0:
            return float("nan")
        return float(np.sum(flows * delays) / flows.sum())

    def phase_starts_s(self) -> list[float]:
        """Start of each phase's green, in seconds after the cycle start (before offset)."""
        intervals = [p.interval_s for p in self.phases]
        return [float(s) for s in np.concatenate([[0.0], np.cumsum(intervals)[:-1]])]

    def to_dict(self) -> dict:
        """JSON-ready dict; infinite delays and saturations become ``None``."""
        out = asdict(self)
        for phase in out["phases"]:
            phase["movements"] = list(phase["movements"])
            for key in ("degree_of_saturation", "expected_delay_s"):
                if not math.isfinite(phase[key]):
                    phase[key] = None
        avg = self.average_delay_s
        out["average_delay_s"] = avg if math.isfinite(avg) else None
        return out

    def to_json(self, path: str | Path) -> Path:
        """Write this plan as JSON (atomically); returns the path."""
        return write_plans_json([self], path)


# ---------------------------------------------------------------------------- Webster
def webster_cycle(total_lost_time_s: float, flow_ratio_sum: float) -> float:
    """Webster's optimal cycle ``(1.5 L + 5) / (1 - Y)`` in seconds (inf when ``Y >= 1``)."""
    if flow_ratio_sum >= 1:
        return math.inf
    return (1.5 * total_lost_time_s + 5.0) / (1.0 - flow_ratio_sum)


def webster_delay(
    cycle_s: float, effective_green_s: float, flow_veh_h: float, saturation_flow_veh_h: float
) -> float:
    """Webster's average delay per vehicle on one approach (s/veh), three-term formula.

    ``d = C(1-λ)^2 / (2(1-λx)) + x^2 / (2q(1-x)) - 0.65 (C/q^2)^(1/3) x^(2+5λ)``

    with ``λ = g/C`` the green ratio, ``q`` the flow in veh/s and ``x = q / (λ s)`` the
    degree of saturation. The first term is uniform delay, the second random (overflow)
    delay, the third Webster's empirical correction. The formula only holds for ``x < 1``:
    at or above saturation the queue grows without bound and ``inf`` is returned. With zero
    flow the limit (uniform delay only) is returned.

    Parameters
    ----------
    cycle_s, effective_green_s : float
        Cycle length and the approach's effective green (s).
    flow_veh_h, saturation_flow_veh_h : float
        Approach flow and saturation flow (veh/h).

    Returns
    -------
    float
        Expected delay in seconds per vehicle, ``>= 0``.
    """
    if cycle_s <= 0 or effective_green_s <= 0:
        return math.inf
    lam = min(effective_green_s / cycle_s, 1.0)
    q = flow_veh_h / 3600.0
    s = saturation_flow_veh_h / 3600.0
    x = q / (lam * s)
    if x >= 1:
        return math.inf
    uniform = cycle_s * (1 - lam) ** 2 / (2 * (1 - lam * x))
    if q == 0:
        return uniform
    overflow = x**2 / (2 * q * (1 - x))
    correction = 0.65 * (cycle_s / q**2) ** (1 / 3) * x ** (2 + 5 * lam)
    return max(uniform + overflow - correction, 0.0)


def webster_plan(
    phases: Sequence[Phase],
    lost_time_per_phase_s: float = 4.0,
    *,
    intersection_id: str = "",
    min_cycle_s: float = 30.0,
    max_cycle_s: float = 180.0,
    max_flow_ratio: float = DEFAULT_MAX_FLOW_RATIO,
    cycle_s: float | None = None,
    offset_s: float = 0.0,
) -> SignalPlan:
    """Webster fixed-time plan for one intersection.

    Parameters
    ----------
    phases : sequence of Phase
        Phases in running order, each with its critical flow and saturation flow.
    lost_time_per_phase_s : float
        Lost time ``l`` per phase; the cycle's lost time is ``L = n_phases * l``.
    intersection_id : str
        Carried into the plan.
    min_cycle_s, max_cycle_s : float
        Bounds on the cycle. Webster's cycle is clamped into them.
    max_flow_ratio : float
        Oversaturation threshold on ``Y``. At or above it the cycle is set to
        ``max_cycle_s`` and the plan is flagged ``oversaturated``.
    cycle_s : float, optional
        Impose this cycle instead of Webster's (e.g. a common cycle for coordination);
        greens are still split by flow ratio.
    offset_s : float
        Offset carried into the plan.

    Returns
    -------
    SignalPlan
        Greens split in proportion to ``y_i``, each at least its ``min_green_s`` (the other
        phases give up green in proportion to their ``y``).

    Raises
    ------
    ValueError
        With no phases, inconsistent cycle bounds, or minimum greens that cannot fit in
        ``max_cycle_s``.
    """
    if not phases:
        raise ValueError("webster_plan needs at least one phase")
    if not 0 < min_cycle_s <= max_cycle_s:
        raise ValueError(f"need 0 < min_cycle_s <= max_cycle_s, got {min_cycle_s}, {max_cycle_s}")
    n = len(phases)
    lost = n * lost_time_per_phase_s
    y = np.array([p.flow_ratio for p in phases])
    y_sum = float(y.sum())
    oversaturated = y_sum >= max_flow_ratio
    notes = []
    if cycle_s is not None:
        cycle = float(cycle_s)
    elif oversaturated:
        cycle = max_cycle_s
        notes.append(f"Y={y_sum:.3f} >= {max_flow_ratio}: oversaturated, cycle capped")
    else:
        cycle = float(np.clip(webster_cycle(lost, y_sum), min_cycle_s, max_cycle_s))

    # displayed green = effective green + (l - yellow - all_red); see module docstring
    to_display = np.array([lost_time_per_phase_s - p.yellow_s - p.all_red_s for p in phases])
    min_effective = np.maximum([p.min_green_s for p in phases] - to_display, 0.0)
    min_cycle_for_greens = float(min_effective.sum() + lost)
    if cycle < min_cycle_for_greens - 1e-9:
        limit = cycle if cycle_s is not None else max_cycle_s
        if min_cycle_for_greens > limit:
            raise ValueError(
                f"intersection {intersection_id!r}: minimum greens need a cycle of "
                f"{min_cycle_for_greens:.1f} s, above the allowed {limit:.1f} s"
            )
        notes.append(f"cycle raised from {cycle:.1f} s to fit minimum greens")
        cycle = min_cycle_for_greens

    effective = _split_with_minimum(cycle - lost, y, min_effective)
    timings = [
        PhaseTiming(
            name=p.name,
            green_s=float(g + d),
            yellow_s=p.yellow_s,
            all_red_s=p.all_red_s,
            effective_green_s=float(g),
            flow_veh_h=p.critical_flow_veh_h,
            saturation_flow_veh_h=p.saturation_flow_veh_h,
            degree_of_saturation=_degree_of_saturation(cycle, float(g), p),
            expected_delay_s=webster_delay(
                cycle, float(g), p.critical_flow_veh_h, p.saturation_flow_veh_h
            ),
            movements=p.movements,
        )
        for p, g, d in zip(phases, effective, to_display, strict=True)
    ]
    return SignalPlan(
        intersection_id=str(intersection_id),
        cycle_s=cycle,
        phases=timings,
        offset_s=float(offset_s),
        lost_time_s=lost,
        flow_ratio_sum=y_sum,
        oversaturated=bool(oversaturated),
        notes=notes,
    )


def _degree_of_saturation(cycle: float, effective_green: float, phase: Phase) -> float:
    """``x = q / (s g / C)``: demand over capacity of the critical lane group."""
    capacity = phase.saturation_flow_veh_h * effective_green / cycle
    if capacity <= 0:
        return math.inf if phase.critical_flow_veh_h > 0 else 0.0
    return phase.critical_flow_veh_h / capacity


def _split_with_minimum(total: float, weights: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Split ``total`` in proportion to ``weights`` with per-item lower bounds.

    Items that would fall below their bound are fixed at it and the rest is re-split among
    the others (water-filling). Needs ``total >= lower.sum()``; zero weights split equally.
    """
    fixed = np.zeros(len(weights), dtype=bool)
    while True:
        free = ~fixed
        remaining = total - lower[fixed].sum()
        w = weights[free]
        share = w / w.sum() if w.sum() > 0 else np.full(len(w), 1 / len(w))
        out = lower.astype(float).copy()
        out[free] = remaining * share
        below = free & (out < lower - 1e-9)
        if not below.any():
            return out
        fixed |= below


def plans_from_flows(
    turning_flows: pd.DataFrame,
    lost_time_per_phase_s: float = 4.0,
    *,
    common_cycle: bool = False,
    **webster_kwargs,
) -> list[SignalPlan]:
    """Webster plans for many intersections from a flow table.

    Parameters
    ----------
    turning_flows : DataFrame
        Columns ``intersection_id, phase, flow_veh_h, saturation_flow_veh_h`` and optionally
        ``min_green_s, yellow_s, all_red_s, movement``. Several rows per (intersection, phase)
        are lane groups served by that phase: the one with the highest ``q/s`` is critical.
        Phases run in order of first appearance.
    lost_time_per_phase_s : float
        Passed to :func:`webster_plan`.
    common_cycle : bool
        If True, every intersection gets the longest of their Webster cycles (needed for a
        green wave, see :func:`coordinate_offsets`).
    **webster_kwargs
        Other :func:`webster_plan` options (``min_cycle_s``, ``max_cycle_s``...).

    Returns
    -------
    list of SignalPlan
        One per intersection, in order of first appearance.
    """
    df = _check_flow_table(turning_flows)
    fixed_cycle = webster_kwargs.pop("cycle_s", None)
    phases_by_node: dict[str, list[Phase]] = {}
    for (node, phase_name), rows in df.groupby(["intersection_id", "phase"], sort=False):
        critical = rows.loc[(rows["flow_veh_h"] / rows["saturation_flow_veh_h"]).idxmax()]
        # the most demanding safety interval of the lane groups wins
        timing = {c: float(rows[c].max()) for c in _TIMING_COLUMNS if c in rows}
        movements = tuple(rows["movement"].astype(str)) if "movement" in rows else ()
        phase = Phase(
            name=str(phase_name),
            critical_flow_veh_h=float(critical["flow_veh_h"]),
            saturation_flow_veh_h=float(critical["saturation_flow_veh_h"]),
            movements=movements,
            **timing,
        )
        phases_by_node.setdefault(str(node), []).append(phase)

    def plan_all(cycle: float | None) -> list[SignalPlan]:
        return [
            webster_plan(
                phases, lost_time_per_phase_s, intersection_id=node, cycle_s=cycle, **webster_kwargs
            )
            for node, phases in phases_by_node.items()
        ]

    plans = plan_all(fixed_cycle)
    if common_cycle and plans:
        plans = plan_all(max(p.cycle_s for p in plans))
    return plans


def _check_flow_table(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in FLOW_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"turning_flows is missing column(s) {missing}; has {list(df.columns)}")
    df = df.reset_index(drop=True)
    for col in ("flow_veh_h", "saturation_flow_veh_h"):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() | (values < 0) | ((values == 0) & (col == "saturation_flow_veh_h"))
        if bad.any():
            rows = list(df.index[bad][:5])
            raise ValueError(f"turning_flows column {col!r} has invalid values at rows {rows}")
        df[col] = values.astype(float)
    return df


def coordinate_offsets(
    plans: Sequence[SignalPlan],
    travel_times_s: Sequence[float],
    *,
    phase: str | None = None,
) -> list[SignalPlan]:
    """One-way green-wave offsets along a corridor.

    Rule: ``plans`` are in driving order and ``travel_times_s[k]`` is the travel time from
    intersection ``k`` to ``k+1``. The first plan keeps its offset; each next one is set so
    that its coordinated phase turns green exactly when a platoon that left at the start of
    the previous intersection's coordinated green arrives:
    ``start_abs[k+1] = start_abs[k] + travel_times_s[k]`` (mod cycle), where
    ``start_abs = offset + start of the coordinated phase within the cycle``.

    Parameters
    ----------
    plans : sequence of SignalPlan
        Same cycle length for all (build them with ``plans_from_flows(common_cycle=True)``).
    travel_times_s : sequence of float
        ``len(plans) - 1`` link travel times (s).
    phase : str, optional
        Name of the coordinated (arterial through) phase; defaults to each plan's first phase.

    Returns
    -------
    list of SignalPlan
        Copies with ``offset_s`` set, in ``[0, cycle)``.
    """
    if len(travel_times_s) != max(len(plans) - 1, 0):
        raise ValueError(
            f"need {len(plans) - 1} travel times for {len(plans)} plans, got {len(travel_times_s)}"
        )
    if not plans:
        return []
    cycles = {round(p.cycle_s, 6) for p in plans}
    if len(cycles) > 1:
        raise ValueError(
            f"a green wave needs one common cycle, got {sorted(cycles)}; "
            "use plans_from_flows(..., common_cycle=True)"
        )
    cycle = plans[0].cycle_s

    def start_of(plan: SignalPlan) -> float:
        if phase is None:
            return 0.0
        names = [p.name for p in plan.phases]
        if phase not in names:
            raise ValueError(f"intersection {plan.intersection_id!r} has no phase {phase!r}")
        return plan.phase_starts_s()[names.index(phase)]

    out = [plans[0]]
    green_start = plans[0].offset_s + start_of(plans[0])
    for plan, travel in zip(plans[1:], travel_times_s, strict=True):
        green_start += float(travel)
        out.append(replace(plan, offset_s=float((green_start - start_of(plan)) % cycle)))
    return out


# ---------------------------------------------------------------------------- max pressure
def max_pressure_phase(
    queues_in: Mapping[str, float],
    queues_out: Mapping[str, float],
    phase_movements: Sequence[Sequence[tuple[str, str]]],
    *,
    current_phase: int | None = None,
) -> int:
    """Phase with the largest pressure (Varaiya's max-pressure control, unit weights).

    The pressure of a movement ``(in_lane, out_lane)`` is ``queue[in_lane] -
    queue[out_lane]``; a phase's pressure is the sum over the movements it serves. Serving the
    highest-pressure phase is throughput-optimal and needs only local queue counts.

    Parameters
    ----------
    queues_in : mapping lane -> vehicles
        Queue on every incoming lane named in ``phase_movements``.
    queues_out : mapping lane -> vehicles
        Queue on outgoing lanes; a lane not present counts as 0 (it leaves the network).
    phase_movements : sequence of sequences of (in_lane, out_lane)
        Movements served by each phase, indexed like the controller's phases.
    current_phase : int, optional
        On a tie with the maximum, keep this phase (avoids needless switching). Otherwise
        ties go to the lowest index.

    Returns
    -------
    int
        Index into ``phase_movements``.
    """
    if not phase_movements:
        raise ValueError("phase_movements is empty")
    pressures = []
    for k, movements in enumerate(phase_movements):
        total = 0.0
        for in_lane, out_lane in movements:
            if in_lane not in queues_in:
                raise KeyError(f"phase {k}: incoming lane {in_lane!r} missing from queues_in")
            total += float(queues_in[in_lane]) - float(queues_out.get(out_lane, 0.0))
        pressures.append(total)
    best = max(pressures)
    if current_phase is not None and pressures[current_phase] >= best - 1e-12:
        return current_phase
    return int(np.argmax(pressures))


# ---------------------------------------------------------------------------- writers
def plans_to_frame(plans: Sequence[SignalPlan]) -> pd.DataFrame:
    """One row per (intersection, phase): the table a controller or a SUMO writer reads."""
    rows = []
    for plan in plans:
        for k, (phase, start) in enumerate(zip(plan.phases, plan.phase_starts_s(), strict=True)):
            rows.append(
                {
                    "intersection_id": plan.intersection_id,
                    "cycle_s": plan.cycle_s,
                    "offset_s": plan.offset_s,
                    "phase_index": k,
                    "phase": phase.name,
                    "start_s": start,
                    "green_s": phase.green_s,
                    "yellow_s": phase.yellow_s,
                    "all_red_s": phase.all_red_s,
                    "flow_veh_h": phase.flow_veh_h,
                    "degree_of_saturation": phase.degree_of_saturation,
                    "expected_delay_s": phase.expected_delay_s,
                    "oversaturated": plan.oversaturated,
                }
            )
    return pd.DataFrame(rows)


def write_plans_json(plans: Sequence[SignalPlan], path: str | Path) -> Path:
    """Write plans as a JSON list, atomically (temp file + rename). Returns the path."""
    text = json.dumps([p.to_dict() for p in plans], indent=2)
    return _atomic_write_text(Path(path), text)


def write_plans_csv(plans: Sequence[SignalPlan], path: str | Path) -> Path:
    """Write :func:`plans_to_frame` as CSV, atomically. Returns the path."""
    buffer = io.StringIO()
    plans_to_frame(plans).to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL)
    return _atomic_write_text(Path(path), buffer.getvalue())


def _atomic_write_text(path: Path, text: str) -> Path:
    # readers never see a half-written file (temp file + rename, see data/io.py)
    from citybrain_ml.data.io import atomic_write_text

    return atomic_write_text(text, path)
