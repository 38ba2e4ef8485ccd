"""Rehearse signal-timing decisions in SUMO on the RESCO scenarios before acting on them.

Scenarios are the RESCO benchmark's (Ault & Sharon, "Reinforcement Learning Benchmarks for
Traffic Signal Control", NeurIPS 2021 Datasets and Benchmarks track): real-derived demand for
Cologne (TAPAS) and Ingolstadt (InTAS), shipped in the PyPI package ``sumo-rl``
(``sumo_rl/nets/RESCO``); the simulator is the PyPI package ``eclipse-sumo``, driven through
``libsumo`` when importable (in-process, fast) or ``traci``. Install with ``pip install .[sim]``.

Controllers (all need no training):

* ``fixed_time`` -- the scenario's own program from the ``.net.xml`` ``tlLogic`` (baseline);
* ``webster`` -- one Webster plan per intersection from turning flows counted in a
  *before-study*: a simulation of the same hour under the existing fixed-time plan with a
  different random seed (what an engineer does with a day of detector counts);
* ``max_pressure`` -- Varaiya's max-pressure rule, re-decided every ``decision_s`` seconds
  from lane vehicle counts after a minimum green, with yellow + all-red clearance;
* ``advanced_max_pressure`` -- Advanced-MP (Zhang et al., ICML 2022): efficient pressure
  (per-lane mean queues) to pick a green, kept while it still serves more vehicles running
  towards the stop line than any green's pressure; queues read 100 m back across
  unsignalised lane splits, a spillback guard, and an all-red extended while cars stand in
  the junction (see :class:`AdvancedMaxPressureController`);
* ``forecast_webster`` -- Webster splits re-optimised every ``interval_s`` from a forecast of
  the next interval's turning flows (see :class:`FlowForecast`).

Evaluation follows RESCO: one-hour episodes (Cologne 25200-28800 s, Ingolstadt
57600-61200 s), vehicles never teleport, ``--tripinfo-output.write-unfinished``, and
*average delay* = mean over tripinfo records of ``timeLoss + departDelay`` (RESCO's
``utils/readXML.py``). Trip time, waiting time, queue and throughput are reported beside it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import os
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from citybrain_ml.optimize.signals import SignalPlan, plans_from_flows, plans_to_frame

#: RESCO evaluation windows (simulation seconds) per scenario
RESCO_WINDOWS = {
    "cologne1": (25200, 28800),
    "cologne3": (25200, 28800),
    "cologne8": (25200, 28800),
    "ingolstadt1": (57600, 61200),
    "ingolstadt7": (57600, 61200),
    "ingolstadt21": (57600, 61200),
}
CONTROLLERS = (
    "fixed_time",
    "webster",
    "max_pressure",
    "advanced_max_pressure",
    "forecast_webster",
)
ControllerName = Literal[
    "fixed_time", "webster", "max_pressure", "advanced_max_pressure", "forecast_webster"
]
GREEN = "Gg"


class SimulatorUnavailable(ImportError):
    """SUMO or the RESCO scenario files are not installed (``pip install .[sim]``)."""


# ---------------------------------------------------------------------------- installation
def setup_sumo():
    """Set ``SUMO_HOME`` from the ``eclipse-sumo`` wheel and return the TraCI-API module.

    Returns ``libsumo`` when importable (the same API in-process, ~10x faster), else ``traci``.

    Raises
    ------
    SimulatorUnavailable
        When ``eclipse-sumo`` (or both ``libsumo`` and ``traci``) is missing.
    """
    try:
        import sumo
    except ImportError as exc:
        raise SimulatorUnavailable(
            "SUMO is not installed: pip install 'citybrain_ml[sim]' (eclipse-sumo, sumo-rl)"
        ) from exc
    os.environ.setdefault("SUMO_HOME", sumo.SUMO_HOME)
    try:
        # libsumo prints a warning when pyarrow's version differs from the libarrow it was
        # built against; that only matters for SUMO's parquet outputs, which are not used
        with contextlib.redirect_stdout(io.StringIO()):
            import libsumo

        return libsumo
    except ImportError:
        pass
    try:
        import traci

        return traci
    except ImportError as exc:
        raise SimulatorUnavailable("neither libsumo nor traci is importable") from exc


def resco_dir() -> Path:
    """Folder of the RESCO scenarios inside the installed ``sumo-rl`` package.

    Located without importing ``sumo_rl`` (whose import needs gymnasium and pettingzoo).
    """
    spec = importlib.util.find_spec("sumo_rl")
    if spec is None or not spec.submodule_search_locations:
        raise SimulatorUnavailable("sumo-rl is not installed: pip install 'citybrain_ml[sim]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "nets" / "RESCO"
    if not path.is_dir():
        raise SimulatorUnavailable(f"sumo-rl has no RESCO scenarios at {path}")
    return path


@dataclass(frozen=True)
class Scenario:
    """A network, its demand and the simulated window (seconds of simulation time)."""

    name: str
    net_file: Path
    route_file: Path
    begin_s: int
    end_s: int

    @classmethod
    def resco(cls, name: str, duration_s: int | None = None) -> Scenario:
        """The RESCO scenario ``name`` over its benchmark hour (or its first ``duration_s``)."""
        if name not in RESCO_WINDOWS:
            raise ValueError(f"unknown RESCO scenario {name!r}; known: {sorted(RESCO_WINDOWS)}")
        folder = resco_dir() / name
        begin, end = RESCO_WINDOWS[name]
        if duration_s is not None:
            end = begin + int(duration_s)
        return cls(name, folder / f"{name}.net.xml", folder / f"{name}.rou.xml", begin, end)

    @property
    def duration_s(self) -> int:
        return self.end_s - self.begin_s


# ---------------------------------------------------------------------------- net programs
@dataclass(frozen=True)
class TLSProgram:
    """A traffic light's static program as written in the ``.net.xml`` (``tlLogic``)."""

    tls_id: str
    offset_s: float
    phases: tuple[tuple[float, str], ...]  # (duration_s, state) in running order

    @property
    def cycle_s(self) -> float:
        return float(sum(d for d, _ in self.phases))

    @property
    def green_states(self) -> list[str]:
        """Distinct states that give someone green and show no yellow, in program order."""
        out: list[str] = []
        for _, state in self.phases:
            if "y" not in state.lower() and any(c in GREEN for c in state) and state not in out:
                out.append(state)
        return out


def read_tls_programs(net_file: str | Path) -> dict[str, TLSProgram]:
    """Static signal programs of a SUMO network file, keyed by traffic-light id.

    Raises
    ------
    ValueError
        When the file has no ``tlLogic`` or a phase lacks ``duration``/``state``.
    """
    net_file = Path(net_file)
    programs: dict[str, TLSProgram] = {}
    for _, elem in ET.iterparse(net_file, events=("end",)):
        if elem.tag != "tlLogic":
            continue
        tls_id = elem.get("id")
        phases = []
        for k, ph in enumerate(elem.findall("phase")):
            if ph.get("duration") is None or ph.get("state") is None:
                raise ValueError(f"{net_file}: tlLogic {tls_id!r} phase {k} lacks duration/state")
            phases.append((float(ph.get("duration")), ph.get("state")))
        programs.setdefault(tls_id, TLSProgram(tls_id, float(elem.get("offset", 0)), tuple(phases)))
        elem.clear()
    if not programs:
        raise ValueError(f"{net_file}: no tlLogic (traffic-light program) found")
    return programs


def program_table(programs: dict[str, TLSProgram]) -> pd.DataFrame:
    """One row per (intersection, phase) of the net's fixed-time plan: start, duration, kind."""
    rows = []
    for prog in programs.values():
        start = 0.0
        for k, (duration, state) in enumerate(prog.phases):
            kind = "yellow" if "y" in state.lower() else "green" if _any_green(state) else "red"
            rows.append(
                {
                    "intersection_id": prog.tls_id,
                    "cycle_s": prog.cycle_s,
                    "offset_s": prog.offset_s,
                    "phase_index": k,
                    "state": state,
                    "kind": kind,
                    "start_s": start,
                    "duration_s": duration,
                }
            )
            start += duration
    return pd.DataFrame(rows)


def _any_green(state: str) -> bool:
    return any(c in GREEN for c in state)


def clearance_state(from_state: str, to_state: str, char: str = "y") -> str:
    """Intermediate state between two greens: ``char`` on links that lose their green.

    Links green in both stay green; all others keep their ``from_state`` signal.
    """
    if len(from_state) != len(to_state):
        raise ValueError(f"states differ in length: {from_state!r} vs {to_state!r}")
    return "".join(
        char if a in GREEN and b not in GREEN else a
        for a, b in zip(from_state, to_state, strict=True)
    )


# ---------------------------------------------------------------------------- runtime view
@dataclass
class Intersection:
    """What controllers need about one signal: greens, links (movements) and lanes."""

    tls_id: str
    greens: list[str]
    links: list[list[tuple[str, str, str]]]  # per link index: (in_lane, out_lane, via_lane)
    cycle_s: float = math.nan  # cycle of the existing program
    in_lanes: list[str] = field(default_factory=list)
    out_lanes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.in_lanes = sorted({c[0] for conns in self.links for c in conns})
        self.out_lanes = sorted({c[1] for conns in self.links for c in conns})

    def movements(self, green_index: int) -> list[tuple[str, str]]:
        """(in_lane, out_lane) pairs served (``G`` or ``g``) by green ``green_index``."""
        state = self.greens[green_index]
        return [
            (c[0], c[1]) for k, conns in enumerate(self.links) for c in conns if state[k] in GREEN
        ]


class Actuator:
    """Shows a requested green safely: yellow then all-red on every link that loses green.

    Parameters
    ----------
    api : module
        ``libsumo`` or ``traci``.
    intersections : dict
        ``tls_id -> Intersection``.
    yellow_s, all_red_s : float
        Clearance intervals inserted between two greens.
    """

    def __init__(
        self, api, intersections: dict[str, Intersection], yellow_s: float, all_red_s: float
    ):
        self.api = api
        self.nodes = intersections
        self.yellow_s = yellow_s
        self.all_red_s = all_red_s
        self.current: dict[str, int | None] = dict.fromkeys(intersections)
        self.green_since: dict[str, float] = dict.fromkeys(intersections, -math.inf)
        self._transition: dict[str, tuple[int, float]] = {}  # tls -> (target, start time)
        self._shown: dict[str, str] = {}
        #: extend the all-red up to this long while the junction box holds vehicles of the
        #: movements losing green (0 = never; see ``_box_blocked``)
        self.box_clear_max_s = 0.0

    def in_transition(self, tls: str) -> bool:
        return tls in self._transition

    def request(self, tls: str, green: int, now: float) -> None:
        """Ask for green ``green``; ignored while a clearance is running."""
        if tls in self._transition or green == self.current[tls]:
            return
        node = self.nodes[tls]
        cur = self.current[tls]
        if cur is None or clearance_state(node.greens[cur], node.greens[green]) == node.greens[cur]:
            self._go_green(tls, green, now)  # nobody loses green: switch at once
            return
        self._transition[tls] = (green, now)
        self._show(tls, clearance_state(node.greens[cur], node.greens[green], "y"))

    def tick(self, now: float) -> None:
        """Advance clearances; call once per simulation second."""
        for tls, (target, start) in list(self._transition.items()):
            node = self.nodes[tls]
            elapsed = now - start
            if elapsed >= self.yellow_s + self.all_red_s and not self._box_blocked(
                tls, target, elapsed
            ):
                del self._transition[tls]
                self._go_green(tls, target, now)
            elif elapsed >= self.yellow_s:
                cur = node.greens[self.current[tls]]
                self._show(tls, clearance_state(cur, node.greens[target], "r"))

    def _box_blocked(self, tls: str, target: int, elapsed: float) -> bool:
        """Whether vehicles of movements losing green still stand (halt) inside the junction.

        Only with ``box_clear_max_s > 0``: the all-red is then extended, up to that many
        seconds, until they have left. Starting a crossing green while a turning vehicle is
        still in the box can lock both in place for good (no teleporting here).
        """
        if self.box_clear_max_s <= 0 or elapsed >= (
            self.yellow_s + self.all_red_s + self.box_clear_max_s
        ):
            return False
        node, target_state = self.nodes[tls], self.nodes[tls].greens[target]
        return any(
            self.api.lane.getLastStepHaltingNumber(via) > 0
            for k, conns in enumerate(node.links)
            if target_state[k] not in GREEN
            for _, _, via in conns
            if via
        )

    def _go_green(self, tls: str, green: int, now: float) -> None:
        self.current[tls] = green
        self.green_since[tls] = now
        self._show(tls, self.nodes[tls].greens[green])

    def _show(self, tls: str, state: str) -> None:
        if self._shown.get(tls) != state:
            self.api.trafficlight.setRedYellowGreenState(tls, state)
            self._shown[tls] = state


# ---------------------------------------------------------------------------- flow counting
class FlowCounter:
    """Counts vehicles crossing each signal link (turning movement) per time bin.

    A vehicle that was on an incoming lane last second and is now on the link's internal
    (via) lane or its outgoing lane has crossed that link: a virtual stop-line detector per
    movement, what turning-movement counts at a real junction measure.
    """

    def __init__(self, api, intersections: dict[str, Intersection], begin_s: float, bin_s: int):
        self.api = api
        self.begin_s = begin_s
        self.bin_s = bin_s
        self._link_of: dict[tuple[str, str], tuple[str, int]] = {}
        for tls, node in intersections.items():
            for k, conns in enumerate(node.links):
                for in_lane, out_lane, via in conns:
                    self._link_of[(in_lane, via)] = (tls, k)
                    self._link_of[(in_lane, out_lane)] = (tls, k)
        self._lanes = sorted({lane for lane, _ in self._link_of})
        self._on: dict[str, set[str]] = {lane: set() for lane in self._lanes}
        self.counts: dict[tuple[str, int, int], int] = {}

    def tick(self, now: float) -> None:
        """Update counts after a simulation step ending at ``now``."""
        b = int((now - 1 - self.begin_s) // self.bin_s)
        for lane in self._lanes:
            vids = set(self.api.lane.getLastStepVehicleIDs(lane))
            for vid in self._on[lane] - vids:
                try:
                    where = self.api.vehicle.getLaneID(vid)
                except Exception:  # the vehicle arrived and left the simulation
                    continue
                key = self._link_of.get((lane, where))
                if key is not None:
                    self.counts[(key[0], key[1], b)] = self.counts.get((key[0], key[1], b), 0) + 1
            self._on[lane] = vids

    def frame(self) -> pd.DataFrame:
        """Counts as ``intersection_id, link_index, bin, count``."""
        rows = [(t, k, b, n) for (t, k, b), n in self.counts.items()]
        return pd.DataFrame(rows, columns=["intersection_id", "link_index", "bin", "count"])


def link_flows_to_phase_table(
    flows: pd.DataFrame,
    intersections: dict[str, Intersection],
    *,
    saturation_flow_veh_h: float,
    min_green_s: float,
    yellow_s: float,
    all_red_s: float,
) -> pd.DataFrame:
    """Turn per-link flows (veh/h) into the lane-group table :func:`plans_from_flows` reads.

    Each link's flow is shared equally among the greens that serve it, protected (``G``) or
    permissive (``g``): a left turn that filters through gaps in the through phase and also
    has a protected arrow is served in both. (Giving it to the protected arrow alone made the
    arrows too long and cost ~25% delay on cologne8.) A lane's flow in a green
    is the sum of its links' shares; each (green, lane) is one lane group with saturation flow
    ``saturation_flow_veh_h`` (the phase's critical group is the highest ``q/s``).

    Parameters
    ----------
    flows : DataFrame
        ``intersection_id, link_index, flow_veh_h``; missing links count as zero flow.
    """
    lookup = {
        (r.intersection_id, int(r.link_index)): float(r.flow_veh_h) for r in flows.itertuples()
    }
    rows = []
    for tls, node in intersections.items():
        for g in range(len(node.greens)):
            lane_flow = dict.fromkeys(node.in_lanes, 0.0)
            for k, conns in enumerate(node.links):
                share = _share(node, k, g)
                if share > 0 and conns:
                    lane_flow[conns[0][0]] += share * lookup.get((tls, k), 0.0)
            served = [lane for lane in node.in_lanes if lane_flow[lane] > 0] or node.in_lanes[:1]
            for lane in served:
                rows.append(
                    {
                        "intersection_id": tls,
                        "phase": str(g),
                        "movement": lane,
                        "flow_veh_h": lane_flow[lane],
                        "saturation_flow_veh_h": saturation_flow_veh_h,
                        "min_green_s": min_green_s,
                        "yellow_s": yellow_s,
                        "all_red_s": all_red_s,
                    }
                )
    return pd.DataFrame(rows)


def _share(node: Intersection, link: int, green: int) -> float:
    """Share of link ``link``'s flow served in green ``green`` (see the table builder)."""
    serving = [state[link] in GREEN for state in node.greens]
    return 1.0 / sum(serving) if serving[green] else 0.0


# ---------------------------------------------------------------------------- controllers
class Controller:
    """Base class: ``start`` once the simulation is loaded, then ``step`` every second."""

    name = "controller"
    counts_flows = False

    def start(self, sim: Simulation) -> None:
        """Called once after loading; default: nothing."""

    def step(self, sim: Simulation, now: float) -> None:
        """Called after every simulation second; default: nothing (keep the net program)."""

    def plans(self) -> list[SignalPlan]:
        """The plans this controller ran (empty for adaptive/baseline control)."""
        return []


class FixedTimeController(Controller):
    """The scenario's own fixed-time program from the net file (RESCO's baseline)."""

    name = "fixed_time"


class PlanController(Controller):
    """Runs fixed-time :class:`SignalPlan` s whose phase names are green indices.

    Green ``k`` is requested from ``clearance`` seconds before its start, so the actuator's
    yellow + all-red end exactly when the plan's green begins; displayed greens then match
    the plan to the second.
    """

    name = "plan"

    def __init__(self, plans: Sequence[SignalPlan] = ()):
        self._plans = {p.intersection_id: p for p in plans}
        self._epoch: dict[str, float] = {}

    def start(self, sim: Simulation) -> None:
        for tls in self._plans:
            self._epoch[tls] = sim.scenario.begin_s

    def set_plan(self, plan: SignalPlan, now: float) -> None:
        """Replace one intersection's plan; its cycle restarts at ``now``."""
        self._plans[plan.intersection_id] = plan
        self._epoch[plan.intersection_id] = now

    def step(self, sim: Simulation, now: float) -> None:
        for tls, plan in self._plans.items():
            if tls in sim.intersections:
                pos = (now - self._epoch[tls] - plan.offset_s) % plan.cycle_s
                sim.actuator.request(tls, self._green_at(plan, pos), now)

    @staticmethod
    def _green_at(plan: SignalPlan, pos: float) -> int:
        starts = plan.phase_starts_s()
        for i, (start, phase) in enumerate(zip(starts, plan.phases, strict=True)):
            if pos < start + phase.green_s:
                k = i
                break
        else:
            k = 0  # inside the last phase's clearance: ask for the first green
        return int(plan.phases[k].name)

    def plans(self) -> list[SignalPlan]:
        return list(self._plans.values())


class MaxPressureController(Controller):
    """Varaiya's max-pressure rule with a minimum green and yellow/all-red clearance.

    Every ``decision_s`` seconds, once the current green has run ``min_green_s``, each signal
    switches to the green with the largest pressure (sum over served movements of the queue
    on the in-lane minus the queue on the out-lane), keeping the current one on ties.

    ``measure="halting"`` counts halting vehicles (speed < 0.1 m/s) as the queue;
    ``"vehicles"`` counts every vehicle on the lane, which on long lanes includes traffic far
    from the stop line. Halting was better on cologne8 (24.9 vs 32.2 s) and ingolstadt7
    (41.2 vs 45.6 s), seed 1, decision 5 s, min green 5 s (of 11 settings tried).
    """

    name = "max_pressure"

    def __init__(self, decision_s: int = 5, min_green_s: float = 5.0, measure: str = "halting"):
        if decision_s < 1 or min_green_s < 0:
            raise ValueError("need decision_s >= 1 and min_green_s >= 0")
        if measure not in ("vehicles", "halting"):
            raise ValueError(f"measure must be 'vehicles' or 'halting', got {measure!r}")
        self.decision_s = int(decision_s)
        self.min_green_s = min_green_s
        self.measure = measure

    def step(self, sim: Simulation, now: float) -> None:
        if int(now - sim.scenario.begin_s) % self.decision_s:
            return
        counts = sim.lane_counts(self.measure)
        for tls, node in sim.intersections.items():
            act = sim.actuator
            if act.in_transition(tls) or now - act.green_since[tls] < self.min_green_s:
                continue
            act.request(tls, choose_max_pressure(node, counts, act.current[tls]), now)


def choose_max_pressure(node: Intersection, counts: dict[str, float], current: int | None) -> int:
    """Green index of ``node`` with the largest pressure given lane ``counts``."""
    from citybrain_ml.optimize.signals import max_pressure_phase

    movements = [node.movements(g) for g in range(len(node.greens))]
    queues_in = {lane: counts.get(lane, 0.0) for lane in node.in_lanes}
    return max_pressure_phase(queues_in, counts, movements, current_phase=current)


class AdvancedMaxPressureController(Controller):
    """Advanced max-pressure (Zhang et al., ICML 2022, "Expression might be enough").

    Every ``decision_s`` seconds, once the current green has run ``min_green_s``:

    * the **efficient pressure** of a movement (in-edge -> out-edge) is the mean halting
      queue over its incoming lanes minus the mean over its outgoing lanes; a green's
      efficient pressure is the sum over the movements it serves (see
      :func:`choose_advanced_max_pressure`);
    * the **demand** of the current green is the number of *effective running vehicles* on
      its incoming lanes (moving, and within ``range_s`` seconds of travel at the lane's
      speed limit from the stop line: vehicles that would cross during the next interval),
      averaged per lane the same way;
    * the current green is kept while its demand exceeds the largest efficient pressure of
      any green; otherwise the green with the largest efficient pressure is shown.

    Keeping a green that still serves a platoon avoids the switch-and-stop that plain
    max-pressure does when the platoon has not yet queued.

    Four additions of ours, for SUMO networks with short lanes and gridlock (each can be
    switched off):

    * queues, running vehicles and fill are read over ``detect_m`` metres of road, across
      unsignalised lane splits (:class:`ApproachDetectors`), not just the signal's own lane,
      which can be a metre long;
    * ``spillback_guard`` drops a movement whose outgoing road is nearly full (vehicles x
      7.5 m >= ``spill_ratio`` x length) from every pressure: no green into a jam;
    * the all-red is extended (up to ``box_clear_max_s``) while vehicles of the movements
      losing green still stand inside the junction, so a crossing green cannot lock them in;
    * a green is kept for its running vehicles for at most ``max_green_s``.

    Parameters
    ----------
    decision_s : int
        Seconds between decisions.
    min_green_s : float
        Minimum green before the signal may change.
    range_s : float
        Effective range of the running-vehicle count, in seconds of travel at the speed limit.
    detect_m : float
        Read queues this far back from the stop line (and this far past the exit), across
        unsignalised lane splits (:class:`ApproachDetectors`); 0 = the signal's lanes only.
    spillback_guard : bool
        Ignore movements whose outgoing lanes are full.
    spill_ratio : float
        Fill ratio at which an outgoing lane counts as full.
    box_clear_max_s : float
        Extend the all-red, up to this many seconds, while vehicles of the movements losing
        green still stand (halt) inside the junction (0 = fixed all-red).
    max_green_s : float or None
        After this long a green is no longer kept for its running vehicles, only for its
        pressure (None = no limit). Without it a busy main road's steady stream can hold the
        green while a side street's queue, capped by what its detectors see, never wins.
    """

    name = "advanced_max_pressure"

    def __init__(
        self,
        decision_s: int = 5,
        min_green_s: float = 5.0,
        range_s: float = 5.0,
        detect_m: float = 100.0,
        spillback_guard: bool = True,
        spill_ratio: float = 0.9,
        box_clear_max_s: float = 10.0,
        max_green_s: float | None = None,
    ):
        if decision_s < 1 or min_green_s < 0 or range_s <= 0 or detect_m < 0:
            raise ValueError("need decision_s >= 1, min_green_s >= 0, range_s > 0, detect_m >= 0")
        if max_green_s is not None and max_green_s <= min_green_s:
            raise ValueError(f"max_green_s ({max_green_s}) must exceed min_green_s ({min_green_s})")
        if box_clear_max_s < 0:
            raise ValueError(f"box_clear_max_s must be >= 0, got {box_clear_max_s}")
        if not 0 < spill_ratio <= 1:
            raise ValueError(f"spill_ratio must be in (0, 1], got {spill_ratio}")
        self.decision_s = int(decision_s)
        self.min_green_s = min_green_s
        self.range_s = range_s
        self.detect_m = detect_m
        self.spillback_guard = spillback_guard
        self.spill_ratio = spill_ratio
        self.box_clear_max_s = box_clear_max_s
        self.max_green_s = math.inf if max_green_s is None else float(max_green_s)
        self._groups: dict[str, list[list[Movement]]] = {}
        self._detectors: ApproachDetectors | None = None

    def start(self, sim: Simulation) -> None:
        self._groups = {tls: movement_groups(node) for tls, node in sim.intersections.items()}
        self._detectors = ApproachDetectors(sim.api, sim.intersections, self.detect_m)
        sim.actuator.box_clear_max_s = self.box_clear_max_s

    def step(self, sim: Simulation, now: float) -> None:
        if int(now - sim.scenario.begin_s) % self.decision_s:
            return
        act = sim.actuator
        due = [
            tls
            for tls in sim.intersections
            if not act.in_transition(tls) and now - act.green_since[tls] >= self.min_green_s
        ]
        if not due:
            return
        det = self._detectors
        queues = det.queues()
        running = det.running(self.range_s)
        full = det.full(self.spill_ratio) if self.spillback_guard else set()
        for tls in due:
            # past max green the platoon no longer holds the green: plain efficient pressure
            demand = running if now - act.green_since[tls] < self.max_green_s else {}
            green = choose_advanced_max_pressure(
                self._groups[tls], queues, demand, act.current[tls], full
            )
            act.request(tls, green, now)


def reach_lanes(
    start: str,
    neighbours: dict[str, list[str]],
    lengths: dict[str, float],
    detect_m: float,
    blocked: set[str] = frozenset(),
) -> list[tuple[str, float]]:
    """``start`` and the lanes reached from it within ``detect_m`` metres, with their offsets.

    A breadth-first walk over ``neighbours`` (predecessors to look upstream, successors to
    look downstream); a lane's offset is the summed length of the lanes between it and
    ``start`` (0 for ``start``). Lanes in ``blocked`` (the other side of another signal) are
    not entered, and a lane is entered only while its offset is below ``detect_m``.

    Returns
    -------
    list of (lane, offset_m)
        ``start`` first.
    """
    out = [(start, 0.0)]
    seen = {start}
    frontier = [(start, 0.0)]
    while frontier:
        lane, offset = frontier.pop(0)
        nxt = offset + lengths.get(lane, 0.0)
        if nxt >= detect_m:
            continue
        for other in neighbours.get(lane, []):
            if other not in seen and other not in blocked:
                seen.add(other)
                out.append((other, nxt))
                frontier.append((other, nxt))
    return out


class ApproachDetectors:
    """Queue, approaching-vehicle and spillback readings per signal lane, ``detect_m`` deep.

    SUMO often splits an approach into several edges at unsignalised nodes (a lane change,
    a driveway), so the lane entering a signal can be a metre long while its queue stands on
    the lanes behind it (ingolstadt7: an entry whose 0.9 m signal lane hid a queue that
    blocked 264 of 281 insertions from plain max-pressure). Each incoming lane is therefore
    read together with the lanes upstream of it within ``detect_m`` metres of the stop line,
    and each outgoing lane with the lanes downstream of it within ``detect_m`` metres -- like
    a detector placed ``detect_m`` back from the stop line. The walk never crosses another
    signal. ``detect_m = 0`` reads the signal's own lanes only.
    """

    def __init__(self, api, intersections: dict[str, Intersection], detect_m: float):
        if detect_m < 0:
            raise ValueError(f"detect_m must be >= 0, got {detect_m}")
        self.api = api
        in_lanes = sorted({lane for n in intersections.values() for lane in n.in_lanes})
        out_lanes = sorted({lane for n in intersections.values() for lane in n.out_lanes})
        lanes = [lane for lane in api.lane.getIDList() if not lane.startswith(":")]
        self.length = {lane: float(api.lane.getLength(lane)) for lane in lanes}
        self.speed = {lane: float(api.lane.getMaxSpeed(lane)) for lane in lanes}
        succ: dict[str, list[str]] = {}
        pred: dict[str, list[str]] = {}
        for lane in lanes:
            for link in api.lane.getLinks(lane):
                succ.setdefault(lane, []).append(link[0])
                pred.setdefault(link[0], []).append(lane)
        signal_in = set(in_lanes)
        # upstream of an incoming lane: stop at lanes that wait at another signal; downstream
        # of an outgoing lane: stop after a lane that ends at a signal (its queue is counted)
        self.upstream = {
            lane: reach_lanes(lane, pred, self.length, detect_m, blocked=signal_in - {lane})
            for lane in in_lanes
        }
        no_pass = {lane: [] for lane in signal_in}
        self.downstream = {
            lane: reach_lanes(lane, {**succ, **no_pass}, self.length, detect_m)
            for lane in out_lanes
        }
        self._watched = sorted(
            {x for chains in (self.upstream, self.downstream) for c in chains.values()
             for x, _ in c}
        )  # fmt: skip

    def queues(self) -> dict[str, float]:
        """Halting vehicles per signal lane, summed over its detection chain."""
        halt = {lane: self.api.lane.getLastStepHaltingNumber(lane) for lane in self._watched}
        return {
            lane: float(sum(halt[x] for x, _ in chain))
            for chains in (self.upstream, self.downstream)
            for lane, chain in chains.items()
        }

    def running(self, range_s: float) -> dict[str, float]:
        """Moving vehicles within ``range_s`` s of travel (speed limit) of each in-lane's end.

        Advanced-MP's *effective running vehicles*: those that can reach the stop line, and
        so use a green, within the next interval. Halting vehicles (< 0.1 m/s) are queue.
        """
        out = {}
        for lane, chain in self.upstream.items():
            reach = self.speed[lane] * range_s
            n = 0
            for x, offset in chain:
                if offset >= reach:
                    continue
                for vid in self.api.lane.getLastStepVehicleIDs(x):
                    to_go = self.length[x] - self.api.vehicle.getLanePosition(vid) + offset
                    n += to_go <= reach and self.api.vehicle.getSpeed(vid) >= 0.1
            out[lane] = float(n)
        return out

    def full(self, ratio: float, vehicle_space_m: float = 7.5) -> set[str]:
        """Outgoing lanes whose detection chain is ``ratio`` full (``vehicle_space_m`` each)."""
        full = set()
        for lane, chain in self.downstream.items():
            room = sum(self.length[x] for x, _ in chain)
            cars = sum(self.api.lane.getLastStepVehicleNumber(x) for x, _ in chain)
            if cars * vehicle_space_m >= ratio * room:
                full.add(lane)
        return full


@dataclass(frozen=True)
class Movement:
    """One turning movement of a signal: the lanes it leaves from and the lanes it enters."""

    in_lanes: tuple[str, ...]
    out_lanes: tuple[str, ...]


def _edge(lane: str) -> str:
    """SUMO lane ids are ``<edge>_<index>``."""
    return lane.rsplit("_", 1)[0]


def movement_groups(node: Intersection) -> list[list[Movement]]:
    """Per green of ``node``, the movements (in-edge -> out-edge) it serves, with their lanes.

    Links are grouped by (incoming edge, outgoing edge), the paper's "movement"; a lane that
    feeds several movements (a shared through/right lane) belongs to each of them.
    """
    out = []
    for g in range(len(node.greens)):
        lanes: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
        for in_lane, out_lane in node.movements(g):
            ins, outs = lanes.setdefault((_edge(in_lane), _edge(out_lane)), (set(), set()))
            ins.add(in_lane)
            outs.add(out_lane)
        out.append([Movement(tuple(sorted(i)), tuple(sorted(o))) for i, o in lanes.values()])
    return out


def _lane_mean(values: dict[str, float], lanes: Sequence[str]) -> float:
    return sum(values.get(lane, 0.0) for lane in lanes) / len(lanes) if lanes else 0.0


def efficient_pressure(
    movements: Sequence[Movement], queues: dict[str, float], full: set[str] = frozenset()
) -> float:
    """Sum over ``movements`` of mean in-lane queue minus mean out-lane queue.

    A movement whose outgoing lanes are all in ``full`` contributes nothing: its vehicles
    could not leave the junction anyway.
    """
    total = 0.0
    for m in movements:
        if m.out_lanes and all(lane in full for lane in m.out_lanes):
            continue
        total += _lane_mean(queues, m.in_lanes) - _lane_mean(queues, m.out_lanes)
    return total


def choose_advanced_max_pressure(
    groups: Sequence[Sequence[Movement]],
    queues: dict[str, float],
    running: dict[str, float],
    current: int | None,
    full: set[str] = frozenset(),
) -> int:
    """Advanced-MP's choice of green (Zhang et al., ICML 2022).

    Parameters
    ----------
    groups : sequence of sequences of Movement
        Movements served by each green (:func:`movement_groups`).
    queues : dict lane -> float
        Halting vehicles per lane (missing lanes count 0).
    running : dict lane -> float
        Effective running vehicles per incoming lane (moving, close to the stop line).
    current : int or None
        The green shown now (None before the first decision).
    full : set of str
        Outgoing lanes that are full (spillback); movements into them are ignored.

    Returns
    -------
    int
        ``current`` when the effective running vehicles it serves (mean per lane, summed
        over its movements) exceed every green's efficient pressure, else the green with the
        largest efficient pressure (ties keep ``current``, then the lowest index).
    """
    if not groups:
        raise ValueError("groups is empty: the signal has no green")
    pressures = [efficient_pressure(ms, queues, full) for ms in groups]
    best = max(pressures)
    if current is not None:
        served = [
            m
            for m in groups[current]
            if not (m.out_lanes and all(lane in full for lane in m.out_lanes))
        ]
        demand = sum(_lane_mean(running, m.in_lanes) for m in served)
        if demand > best or pressures[current] == best:
            return current
    return pressures.index(best)


@dataclass
class WebsterSettings:
    """Webster inputs shared by the static and the forecast-driven plans."""

    saturation_flow_veh_h: float = 1800.0
    lost_time_per_phase_s: float = 4.0
    min_green_s: float = 5.0
    min_cycle_s: float = 30.0
    max_cycle_s: float = 120.0
    keep_cycle: bool = False

    def plans(
        self, link_flows: pd.DataFrame, intersections, yellow_s, all_red_s
    ) -> list[SignalPlan]:
        """Webster plans from ``intersection_id, link_index, flow_veh_h``.

        With ``keep_cycle`` each intersection keeps the cycle of its existing program
        (``Intersection.cycle_s``) and only the green splits follow Webster's ``y_i / Y``.
        """
        table = link_flows_to_phase_table(
            link_flows,
            intersections,
            saturation_flow_veh_h=self.saturation_flow_veh_h,
            min_green_s=self.min_green_s,
            yellow_s=yellow_s,
            all_red_s=all_red_s,
        )
        kwargs = {"min_cycle_s": self.min_cycle_s, "max_cycle_s": self.max_cycle_s}
        if not self.keep_cycle:
            return plans_from_flows(table, self.lost_time_per_phase_s, **kwargs)
        plans = []
        for tls, rows in table.groupby("intersection_id", sort=False):
            cycle = intersections[tls].cycle_s
            plans += plans_from_flows(rows, self.lost_time_per_phase_s, cycle_s=cycle, **kwargs)
        return plans


class FlowForecast:
    """Forecast of the next interval's per-link flow (veh/h) from earlier intervals.

    ``method``:

    * ``seasonal_naive`` -- the same interval of the before-study (yesterday, same time);
    * ``last_interval`` -- today's previous interval (persistence), counted live;
    * ``blend`` -- the mean of the two (persistence reacts, seasonal naive smooths the noise
      of a 5-minute count); the first interval uses seasonal naive alone.
    """

    def __init__(self, history: pd.DataFrame, bin_s: int, method: str = "blend"):
        if method not in ("seasonal_naive", "last_interval", "blend"):
            raise ValueError(f"unknown forecast method {method!r}")
        self.history = history
        self.bin_s = bin_s
        self.method = method

    def predict(self, live: pd.DataFrame, next_bin: int) -> pd.DataFrame:
        """``intersection_id, link_index, flow_veh_h`` for bin ``next_bin``."""
        seasonal = self._rate(self.history, next_bin)
        if self.method == "seasonal_naive" or next_bin == 0:
            return seasonal
        last = self._rate(live, next_bin - 1)
        if self.method == "last_interval":
            return last
        both = seasonal.merge(last, on=["intersection_id", "link_index"], how="outer").fillna(0.0)
        both["flow_veh_h"] = (both["flow_veh_h_x"] + both["flow_veh_h_y"]) / 2
        return both[["intersection_id", "link_index", "flow_veh_h"]]

    def _rate(self, counts: pd.DataFrame, b: int) -> pd.DataFrame:
        sel = counts[counts["bin"] == b]
        out = sel.groupby(["intersection_id", "link_index"], as_index=False)["count"].sum()
        out["flow_veh_h"] = out["count"] * 3600.0 / self.bin_s
        return out[["intersection_id", "link_index", "flow_veh_h"]]


class ForecastWebsterController(PlanController):
    """Webster plans re-optimised every ``interval_s`` from a :class:`FlowForecast`.

    At each re-optimisation every intersection's new plan starts its cycle at once: the
    green running then is cut short (through the usual yellow + all-red), the price of
    reacting within the interval rather than at the next cycle boundary.
    """

    name = "forecast_webster"
    counts_flows = True

    def __init__(self, forecast: FlowForecast, settings: WebsterSettings):
        super().__init__()
        self.forecast = forecast
        self.settings = settings
        self.history: list[pd.DataFrame] = []

    def start(self, sim: Simulation) -> None:
        self._replan(sim, sim.scenario.begin_s, 0)

    def step(self, sim: Simulation, now: float) -> None:
        elapsed = int(now - sim.scenario.begin_s)
        if elapsed % self.forecast.bin_s == 0 and sim.scenario.begin_s < now < sim.scenario.end_s:
            self._replan(sim, now, elapsed // self.forecast.bin_s)
        super().step(sim, now)

    def _replan(self, sim: Simulation, now: float, next_bin: int) -> None:
        flows = self.forecast.predict(sim.flow_counter.frame(), next_bin)
        plans = self.settings.plans(flows, sim.intersections, sim.yellow_s, sim.all_red_s)
        for plan in plans:
            self.set_plan(plan, now)
        frame = plans_to_frame(plans)
        frame.insert(0, "time_s", now)
        self.history.append(frame)

    def plan_history(self) -> pd.DataFrame:
        """Every re-optimised plan, stamped with the simulation time it took effect."""
        return pd.concat(self.history, ignore_index=True) if self.history else pd.DataFrame()


# ---------------------------------------------------------------------------- simulation
class Simulation:
    """One SUMO run of a scenario under a controller (use :func:`simulate`)."""

    def __init__(self, api, scenario: Scenario, yellow_s: float, all_red_s: float):
        self.api = api
        self.scenario = scenario
        self.yellow_s = yellow_s
        self.all_red_s = all_red_s
        programs = read_tls_programs(scenario.net_file)
        self.intersections = {
            tls: Intersection(
                tls,
                programs[tls].green_states,
                [list(conns) for conns in api.trafficlight.getControlledLinks(tls)],
                programs[tls].cycle_s,
            )
            for tls in api.trafficlight.getIDList()
            if tls in programs
        }
        self.actuator = Actuator(api, self.intersections, yellow_s, all_red_s)
        self.flow_counter: FlowCounter | None = None
        self._lanes = sorted(
            {lane for n in self.intersections.values() for lane in n.in_lanes + n.out_lanes}
        )
        self._in_lanes = sorted({lane for n in self.intersections.values() for lane in n.in_lanes})

    def lane_counts(self, measure: str = "vehicles") -> dict[str, float]:
        """Vehicles (or halting vehicles) on every lane touching a controlled signal."""
        get = (
            self.api.lane.getLastStepVehicleNumber
            if measure == "vehicles"
            else self.api.lane.getLastStepHaltingNumber
        )
        return {lane: float(get(lane)) for lane in self._lanes}

    def queue(self) -> float:
        """Halting vehicles on all incoming lanes of the controlled signals."""
        return float(sum(self.api.lane.getLastStepHaltingNumber(lane) for lane in self._in_lanes))


@dataclass
class SimulationResult:
    """Metrics of one run, its trips and (when counted) per-link flow counts."""

    scenario: str
    controller: str
    seed: int
    metrics: dict
    trips: pd.DataFrame
    flow_counts: pd.DataFrame | None = None
    plans: list[SignalPlan] = field(default_factory=list)
    plan_history: pd.DataFrame | None = None


def simulate(
    scenario: Scenario,
    controller: Controller,
    seed: int = 1,
    *,
    yellow_s: float = 3.0,
    all_red_s: float = 1.0,
    count_flows_bin_s: int | None = None,
    queue_every_s: int = 10,
) -> SimulationResult:
    """Run ``scenario`` under ``controller`` and return RESCO-style metrics.

    Parameters
    ----------
    scenario : Scenario
        Network, demand and window.
    controller : Controller
        Decides the signals every second (``FixedTimeController`` leaves the net's program).
    seed : int
        SUMO's random seed (driver imperfection, speed deviation, insertion).
    yellow_s, all_red_s : float
        Clearance between greens for the controllers that switch signals themselves.
    count_flows_bin_s : int, optional
        Also count turning flows per link in bins of this many seconds (the before-study).
    queue_every_s : int
        Sample the total halting queue every this many seconds.

    Returns
    -------
    SimulationResult
        ``metrics``: delay_s (mean timeLoss + departDelay, RESCO), trip_time_s (finished
        trips), waiting_time_s, queue_veh (mean halting vehicles at controlled approaches),
        throughput_veh (finished trips), unfinished_veh, not_inserted_veh, wall_s.
    """
    api = setup_sumo()
    with tempfile.TemporaryDirectory(prefix="citybrain_sumo_") as tmp:
        tripinfo = Path(tmp) / "tripinfo.xml"
        api.start(_sumo_command(scenario, seed, tripinfo))
        started = time.perf_counter()
        try:
            sim = Simulation(api, scenario, yellow_s, all_red_s)
            bin_s = count_flows_bin_s or getattr(
                getattr(controller, "forecast", None), "bin_s", None
            )
            if bin_s:
                sim.flow_counter = FlowCounter(api, sim.intersections, scenario.begin_s, bin_s)
            controller.start(sim)
            queues = _run_loop(api, sim, controller, scenario, queue_every_s)
        finally:
            api.close()
        wall = time.perf_counter() - started
        trips = read_tripinfo(tripinfo)
    metrics = trip_metrics(trips, expected_trips=count_trips(scenario))
    metrics["queue_veh"] = float(np.mean(queues)) if queues else float("nan")
    metrics["wall_s"] = wall
    history = controller.plan_history() if hasattr(controller, "plan_history") else None
    return SimulationResult(
        scenario.name,
        controller.name,
        seed,
        metrics,
        trips,
        sim.flow_counter.frame() if sim.flow_counter else None,
        controller.plans(),
        history,
    )


def _sumo_command(scenario: Scenario, seed: int, tripinfo: Path) -> list[str]:
    for path in (scenario.net_file, scenario.route_file):
        if not Path(path).is_file():
            raise FileNotFoundError(f"scenario {scenario.name!r}: file not found: {path}")
    return [
        "sumo",
        "-n", str(scenario.net_file),
        "-r", str(scenario.route_file),
        "-b", str(scenario.begin_s),
        "-e", str(scenario.end_s),
        "--seed", str(int(seed)),
        "--time-to-teleport", "-1",  # RESCO: vehicles never teleport out of a jam
        "--tripinfo-output", str(tripinfo),
        "--tripinfo-output.write-unfinished", "true",
        "--no-step-log", "true",
        "--no-warnings", "true",
    ]  # fmt: skip


def _run_loop(api, sim: Simulation, controller: Controller, scenario: Scenario, queue_every_s: int):
    queues = []
    now = api.simulation.getTime()
    while now < scenario.end_s:
        api.simulationStep()
        now = api.simulation.getTime()
        if sim.flow_counter is not None:
            sim.flow_counter.tick(now)
        controller.step(sim, now)
        sim.actuator.tick(now)
        if int(now - scenario.begin_s) % queue_every_s == 0:
            queues.append(sim.queue())
    return queues


# ---------------------------------------------------------------------------- metrics
TRIP_FIELDS = ("id", "depart", "departDelay", "arrival", "duration", "waitingTime", "timeLoss")


def read_tripinfo(path: str | Path) -> pd.DataFrame:
    """SUMO tripinfo XML as a frame (``arrival`` is -1 for unfinished trips)."""
    rows = []
    for _, elem in ET.iterparse(path, events=("end",)):
        if elem.tag == "tripinfo":
            rows.append({k: elem.get(k) for k in TRIP_FIELDS})
            elem.clear()
    trips = pd.DataFrame(rows, columns=list(TRIP_FIELDS))
    for col in TRIP_FIELDS[1:]:
        trips[col] = pd.to_numeric(trips[col], errors="coerce").astype(float)
    return trips


def trip_metrics(trips: pd.DataFrame, expected_trips: int | None = None) -> dict:
    """RESCO delay and companion metrics from :func:`read_tripinfo` output."""
    finished = trips["arrival"] >= 0
    delay = trips["timeLoss"] + trips["departDelay"].fillna(0.0)
    out = {
        "delay_s": float(delay.mean()) if len(trips) else float("nan"),
        "trip_time_s": float(trips.loc[finished, "duration"].mean())
        if finished.any()
        else float("nan"),
        "waiting_time_s": float(trips["waitingTime"].mean()) if len(trips) else float("nan"),
        "throughput_veh": int(finished.sum()),
        "unfinished_veh": int((~finished).sum()),
    }
    if expected_trips is not None:
        out["not_inserted_veh"] = max(int(expected_trips) - len(trips), 0)
    return out


def count_trips(scenario: Scenario) -> int:
    """Vehicles/trips the route file schedules to depart inside the scenario window."""
    n = 0
    for _, elem in ET.iterparse(scenario.route_file, events=("end",)):
        if elem.tag in ("trip", "vehicle") and elem.get("depart") is not None:
            try:
                depart = float(elem.get("depart"))
            except ValueError:  # 'triggered' etc.
                elem.clear()
                continue
            n += scenario.begin_s <= depart < scenario.end_s
        elem.clear()
    return n


# ---------------------------------------------------------------------------- job config
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MaxPressureConfig(_Strict):
    decision_s: int = Field(5, ge=1, description="seconds between decisions")
    min_green_s: float = Field(5.0, ge=0)
    measure: Literal["vehicles", "halting"] = Field(
        "halting", description="queue = halting vehicles (default) or all vehicles on the lane"
    )


class AdvancedMaxPressureConfig(_Strict):
    """Settings of :class:`AdvancedMaxPressureController`."""

    decision_s: int = Field(5, ge=1, description="seconds between decisions")
    min_green_s: float = Field(5.0, ge=0)
    range_s: float = Field(
        5.0, gt=0, description="running vehicles within this many seconds of the stop line"
    )
    detect_m: float = Field(
        100.0, ge=0, description="queues read this far back across unsignalised lane splits"
    )
    spillback_guard: bool = Field(True, description="no green into a full outgoing lane")
    spill_ratio: float = Field(0.9, gt=0, le=1, description="fill ratio of a full lane")
    max_green_s: float | None = Field(
        None, gt=0, description="keep a green for running vehicles at most this long"
    )
    box_clear_max_s: float = Field(
        10.0, ge=0, description="extend all-red up to this long while the junction holds cars"
    )


class WebsterConfig(_Strict):
    saturation_flow_veh_h: float = Field(1800.0, gt=0, description="per lane")
    lost_time_per_phase_s: float = Field(4.0, ge=0)
    min_green_s: float = Field(5.0, ge=0)
    min_cycle_s: float = Field(30.0, gt=0)
    max_cycle_s: float = Field(120.0, gt=0)
    keep_cycle: bool = Field(False, description="keep each existing cycle, re-split greens only")


class ForecastConfig(_Strict):
    interval_s: int = Field(300, ge=60, description="re-optimise green splits this often")
    method: Literal["seasonal_naive", "last_interval", "blend"] = "blend"


class SignalsTracking(_Strict):
    experiment: str = "citybrain-signals"
    tracking_uri: str | None = None


class SignalsJobConfig(_Strict):
    """``citybrain optimize signals`` config (YAML)."""

    name: str = "signals"
    scenario: str = Field(description="RESCO scenario: " + ", ".join(RESCO_WINDOWS))
    duration_s: int | None = Field(None, ge=60, description="shorten the benchmark hour")
    seeds: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1)
    before_study_seed: int = Field(
        1000, description="seed of the fixed-time run whose counts feed Webster"
    )
    controllers: list[ControllerName] = Field(
        default_factory=lambda: list(CONTROLLERS), min_length=1
    )
    yellow_s: float = Field(3.0, ge=0)
    all_red_s: float = Field(1.0, ge=0)
    max_pressure: MaxPressureConfig = MaxPressureConfig()
    advanced_max_pressure: AdvancedMaxPressureConfig = AdvancedMaxPressureConfig()
    webster: WebsterConfig = WebsterConfig()
    forecast: ForecastConfig = ForecastConfig()
    output_dir: str = "outputs/signals"
    tracking: SignalsTracking = SignalsTracking()

    @model_validator(mode="after")
    def _known_scenario(self):
        if self.scenario not in RESCO_WINDOWS:
            raise ValueError(f"unknown scenario {self.scenario!r}; known: {sorted(RESCO_WINDOWS)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds repeat: {self.seeds}")
        return self


def load_signals_config(path: str | Path) -> SignalsJobConfig:
    """Read and validate a signals job YAML; errors name the file and the field."""
    from citybrain_ml.config import load_yaml_model

    return load_yaml_model(path, SignalsJobConfig)


# ---------------------------------------------------------------------------- the job
@dataclass
class SignalsResult:
    """What :func:`run_signals` produced."""

    config: SignalsJobConfig
    runs: pd.DataFrame  # one row per (controller, seed)
    summary: pd.DataFrame  # mean and std over seeds per controller
    webster_plans: list[SignalPlan]
    forecast_plans: pd.DataFrame | None
    fixed_plan: pd.DataFrame
    before_study: pd.DataFrame


def run_signals(cfg: SignalsJobConfig, progress: bool = False) -> SignalsResult:
    """Before-study, then every configured controller on every seed (no MLflow, no files)."""
    scenario = Scenario.resco(cfg.scenario, cfg.duration_s)
    settings = WebsterSettings(**cfg.webster.model_dump())
    study = simulate(
        scenario,
        FixedTimeController(),
        cfg.before_study_seed,
        count_flows_bin_s=cfg.forecast.interval_s,
        yellow_s=cfg.yellow_s,
        all_red_s=cfg.all_red_s,
    )
    counts = study.flow_counts
    hourly = counts.groupby(["intersection_id", "link_index"], as_index=False)["count"].sum()
    hourly["flow_veh_h"] = hourly["count"] * 3600.0 / scenario.duration_s
    rows, webster_plans, forecast_plans = [], [], None
    for name in cfg.controllers:
        for seed in cfg.seeds:
            controller = _make_controller(name, cfg, settings, hourly, counts)
            res = simulate(
                scenario, controller, seed, yellow_s=cfg.yellow_s, all_red_s=cfg.all_red_s
            )
            rows.append(
                {"scenario": scenario.name, "controller": name, "seed": seed, **res.metrics}
            )
            if progress:
                print(f"{scenario.name} {name} seed {seed}: delay {res.metrics['delay_s']:.1f} s")
            if name == "webster":
                webster_plans = res.plans
            if name == "forecast_webster" and forecast_plans is None:
                forecast_plans = res.plan_history
    runs = pd.DataFrame(rows)
    return SignalsResult(
        cfg,
        runs,
        summarise_runs(runs),
        webster_plans,
        forecast_plans,
        program_table(read_tls_programs(scenario.net_file)),
        counts,
    )


def _make_controller(name, cfg: SignalsJobConfig, settings, hourly, counts) -> Controller:
    """A fresh controller for one run (``hourly``: before-study link flows; ``counts``: bins)."""
    if name == "fixed_time":
        return FixedTimeController()
    if name == "max_pressure":
        return MaxPressureController(**cfg.max_pressure.model_dump())
    if name == "advanced_max_pressure":
        return AdvancedMaxPressureController(**cfg.advanced_max_pressure.model_dump())
    if name == "forecast_webster":
        return ForecastWebsterController(
            FlowForecast(counts, cfg.forecast.interval_s, cfg.forecast.method), settings
        )
    return _WebsterController(settings, hourly)


class _WebsterController(PlanController):
    """Static Webster plans from the before-study's hourly link flows (built at start)."""

    name = "webster"

    def __init__(self, settings: WebsterSettings, link_flows: pd.DataFrame):
        super().__init__()
        self.settings = settings
        self.link_flows = link_flows

    def start(self, sim: Simulation) -> None:
        for plan in self.settings.plans(
            self.link_flows, sim.intersections, sim.yellow_s, sim.all_red_s
        ):
            self.set_plan(plan, sim.scenario.begin_s)


def summarise_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of each metric, per (scenario, controller)."""
    metrics = ["delay_s", "trip_time_s", "waiting_time_s", "queue_veh", "throughput_veh",
               "unfinished_veh"]  # fmt: skip
    grouped = runs.groupby(["scenario", "controller"], sort=False)[metrics]
    mean, std = grouped.mean(), grouped.std(ddof=1).add_suffix("_std")
    out = pd.concat([mean, std], axis=1).reset_index()
    out["n_seeds"] = grouped.size().to_numpy()
    return out


def run_signals_job(config_path: str | Path) -> str:
    """``citybrain optimize signals``: simulate, write plans + metrics, log to MLflow.

    Returns
    -------
    str
        A printable summary: delay per controller and where the outputs went.
    """
    import mlflow

    from citybrain_ml.tracking.runs import configure_tracking, git_commit, library_versions

    cfg = load_signals_config(config_path)
    setup_sumo()  # fail before any tracking work when SUMO is missing
    configure_tracking(cfg.tracking.tracking_uri, cfg.tracking.experiment)
    result = run_signals(cfg)
    out = Path(cfg.output_dir)
    files = write_signals_outputs(result, out)
    with mlflow.start_run(run_name=cfg.name) as run:
        mlflow.set_tags({"job": "optimize_signals", "git_commit": git_commit(),
                         **{f"version.{k}": v for k, v in library_versions().items()}})  # fmt: skip
        mlflow.log_params(_flat_params(cfg))
        mlflow.log_dict(cfg.model_dump(mode="json"), "config.json")
        for row in result.summary.itertuples():
            for metric in (
                "delay_s",
                "trip_time_s",
                "waiting_time_s",
                "queue_veh",
                "throughput_veh",
            ):
                mlflow.log_metric(f"{row.controller}.{metric}", float(getattr(row, metric)))
        for path in files:
            mlflow.log_artifact(str(path))
    return _summary_text(result, files, run.info.run_id)


def _flat_params(cfg: SignalsJobConfig) -> dict:
    flat = pd.json_normalize(cfg.model_dump(mode="json"), sep=".").iloc[0].to_dict()
    return {k: json.dumps(v) if isinstance(v, list) else v for k, v in flat.items()}


def write_signals_outputs(result: SignalsResult, out: Path) -> list[Path]:
    """Plans (JSON/CSV), metrics tables and the comparison plot, written atomically."""
    from citybrain_ml.data.io import atomic_write_frame
    from citybrain_ml.optimize.signals import write_plans_csv, write_plans_json

    out.mkdir(parents=True, exist_ok=True)
    files = [
        atomic_write_frame(result.runs, out / "metrics_by_seed.csv"),
        atomic_write_frame(result.summary, out / "metrics.csv"),
        atomic_write_frame(result.fixed_plan, out / "plan_fixed_time.csv"),
    ]
    if result.webster_plans:
        files.append(write_plans_json(result.webster_plans, out / "plan_webster.json"))
        files.append(write_plans_csv(result.webster_plans, out / "plan_webster.csv"))
    if result.forecast_plans is not None and len(result.forecast_plans):
        files.append(atomic_write_frame(result.forecast_plans, out / "plan_forecast_webster.csv"))
    files.append(plot_comparison(result.runs, out / "delay_by_controller.png"))
    return files


def plot_comparison(runs: pd.DataFrame, path: Path) -> Path:
    """Bar chart of mean delay per controller with one dot per seed; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from citybrain_ml.data.io import atomic_write_bytes

    order = list(dict.fromkeys(runs["controller"]))
    means = runs.groupby("controller")["delay_s"].mean().reindex(order)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(range(len(order)), means.to_numpy(), color="#8fb3d9")
    for i, name in enumerate(order):
        vals = runs.loc[runs["controller"] == name, "delay_s"]
        ax.plot(np.full(len(vals), i), vals, "k.", ms=6)
    ax.set_xticks(range(len(order)), order, rotation=15)
    ax.set_ylabel("average delay (s/veh)")
    ax.set_title(f"{runs['scenario'].iloc[0]}: RESCO delay by controller (dots = seeds)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(buffer.getvalue(), path)


def _summary_text(result: SignalsResult, files: list[Path], run_id: str) -> str:
    cols = ["controller", "delay_s", "delay_s_std", "trip_time_s", "queue_veh", "throughput_veh"]
    table = result.summary[cols].round(2).to_string(index=False)
    lines = [
        f"{result.config.scenario}: {len(result.config.seeds)} seed(s), RESCO delay "
        "(mean timeLoss + departDelay, s/veh)",
        table,
        f"MLflow run {run_id}",
        *[f"wrote {p}" for p in files],
    ]
    return "\n".join(lines)
