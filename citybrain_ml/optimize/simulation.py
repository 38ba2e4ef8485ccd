"""Rehearse signal-timing decisions in SUMO before acting on them.

Networks: the RESCO scenarios below, or a city's own -- :meth:`Scenario.from_sumocfg` (every
option of its ``.sumocfg`` honoured), :meth:`Scenario.from_files` (net + route files), or an
import (:mod:`citybrain_ml.optimize.importers`: CityFlow JSON, OpenStreetMap).

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
  unsignalised lane splits, a spillback guard, an all-red extended while cars stand in
  the junction, and a starvation guard that serves a queue kept red for ``max_red_s`` (see
  :class:`AdvancedMaxPressureController`);
* ``forecast_webster`` -- Webster splits re-optimised every ``interval_s`` from a forecast of
  the next interval's turning flows (see :class:`FlowForecast`).
* ``rehearsed`` -- the never-worse recommendation: Webster variants (:data:`WEBSTER_CANDIDATES`)
  rehearsed against the existing plan on separate seeds; the best is run only if it beat
  the existing plan, else the existing plan stays ("cannot improve", :func:`recommend_plan`).

Evaluation follows RESCO: one-hour episodes (Cologne 25200-28800 s, Ingolstadt
57600-61200 s), vehicles never teleport, ``--tripinfo-output.write-unfinished``, and
*average delay* = mean over tripinfo records of ``timeLoss + departDelay`` (RESCO's
``utils/readXML.py``). Every summary also counts the vehicles RESCO's delay leaves out: with
``--tripinfo-output.write-undeparted`` each planned vehicle has a record, so delay and travel
time are also given over all planned vehicles (insertion delay counted) beside the vehicles
never inserted and unfinished (:func:`trip_metrics`, :data:`SUMMARY_METRICS`).
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
    "rehearsed",
)
ControllerName = Literal[
    "fixed_time",
    "webster",
    "max_pressure",
    "advanced_max_pressure",
    "forecast_webster",
    "rehearsed",
]
#: candidate plans :func:`recommend_plan` rehearses in a job: name -> WebsterConfig changes
WEBSTER_CANDIDATES = {
    "webster": {},
    "webster_cover": {"phase_mapping": "cover", "min_cycle_s": None, "max_cycle_s": None},
    "webster_keep_cycle": {"keep_cycle": True},
    "webster_cover_keep_cycle": {"phase_mapping": "cover", "keep_cycle": True},
}
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
    """A network, its demand and the simulated window (seconds of simulation time).

    Build one with :meth:`resco` (a benchmark scenario), :meth:`from_sumocfg` (a city's own
    SUMO configuration) or :meth:`from_files` (a net and its route files).

    Parameters
    ----------
    name : str
        Label used in tables and MLflow.
    net_file : Path
        SUMO ``.net.xml``.
    route_files : Path or sequence of Path
        Demand (``.rou.xml``: vehicles, trips, flows).
    begin_s, end_s : int
        Simulated window.
    additional_files : sequence of Path
        Loaded with the net (detectors, signal programs that replace the net's...).
    sumocfg : Path, optional
        When set, SUMO starts from this file (``sumo -c``), so every option in it applies;
        the run then sets only its window, seed, outputs and, unless the file sets one,
        ``time-to-teleport``.
    time_to_teleport_s : float
        SUMO's ``--time-to-teleport``; -1 (RESCO's convention): vehicles never teleport out
        of a jam, so a gridlock shows in the metrics instead of vanishing.
    """

    name: str
    net_file: Path
    route_files: tuple[Path, ...]
    begin_s: int
    end_s: int
    additional_files: tuple[Path, ...] = ()
    sumocfg: Path | None = None
    time_to_teleport_s: float = -1.0

    def __post_init__(self) -> None:
        routes = self.route_files
        routes = (routes,) if isinstance(routes, str | Path) else routes
        object.__setattr__(self, "net_file", Path(self.net_file))
        object.__setattr__(self, "route_files", tuple(Path(r) for r in routes))
        object.__setattr__(self, "additional_files", tuple(Path(a) for a in self.additional_files))
        if not self.route_files:
            raise ValueError(f"scenario {self.name!r}: no route files (the demand)")
        if self.end_s <= self.begin_s:
            raise ValueError(
                f"scenario {self.name!r}: end ({self.end_s} s) must be after begin "
                f"({self.begin_s} s)"
            )

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

    @classmethod
    def from_sumocfg(
        cls,
        path: str | Path,
        *,
        begin_s: int | None = None,
        end_s: int | None = None,
        duration_s: int | None = None,
        name: str | None = None,
    ) -> Scenario:
        """A scenario run from a city's own ``.sumocfg`` (all its options honoured).

        Parameters
        ----------
        path : str or Path
            The configuration; its net, route and additional files are read from it.
        begin_s, end_s : int, optional
            Override the file's ``begin``/``end`` (begin defaults to 0 as in SUMO).
        duration_s : int, optional
            Simulate only this long from ``begin``.
        name : str, optional
            Defaults to the file name without ``.sumocfg``.

        Raises
        ------
        FileNotFoundError, ValueError
            Naming the file when it, or a file it lists, is missing; when no end is known;
            when its ``step-length`` is not 1 s (the controllers decide on 1-s steps).
        """
        from citybrain_ml.optimize.network import parse_sumo_time, read_sumocfg

        cfg = read_sumocfg(path)
        step = cfg.options.get("step-length")
        if step is not None and parse_sumo_time(step, where=f"{path}: <step-length>") != 1:
            raise ValueError(
                f"{path}: step-length {step} s is not supported: the controllers decide on "
                "1-second steps (remove the option or set it to 1)"
            )
        begin = int(begin_s if begin_s is not None else (cfg.begin_s or 0))
        end = _window_end(begin, end_s, duration_s, cfg.end_s, where=str(path))
        teleport = cfg.options.get("time-to-teleport")
        return cls(
            name or Path(path).name.removesuffix(".sumocfg"),
            cfg.net_file,
            cfg.route_files,
            begin,
            end,
            additional_files=cfg.additional_files,
            sumocfg=Path(path),
            time_to_teleport_s=-1.0 if teleport is None else float(teleport),
        )

    @classmethod
    def from_files(
        cls,
        net_file: str | Path,
        route_files: str | Path | Sequence[str | Path],
        *,
        begin_s: int = 0,
        end_s: int | None = None,
        duration_s: int | None = None,
        additional_files: Sequence[str | Path] = (),
        name: str | None = None,
    ) -> Scenario:
        """A scenario from a net and its route files; checks that every file exists.

        ``end_s`` defaults to ``begin_s + duration_s``; one of them is required.
        """
        routes = [route_files] if isinstance(route_files, str | Path) else list(route_files)
        for option, files in (
            ("net_file", [net_file]),
            ("route_files", routes),
            ("additional_files", additional_files),
        ):
            for file in files:
                if not Path(file).is_file():
                    raise FileNotFoundError(f"{option}: file not found: {file}")
        end = _window_end(begin_s, end_s, duration_s, None, where=str(net_file))
        stem = Path(net_file).name.removesuffix(".xml").removesuffix(".net")
        return cls(name or stem, net_file, tuple(routes), int(begin_s), end,
                   additional_files=tuple(additional_files))  # fmt: skip

    @property
    def route_file(self) -> Path:
        """The first route file (kept for code written when there was only one)."""
        return self.route_files[0]

    @property
    def duration_s(self) -> int:
        return self.end_s - self.begin_s

    @property
    def program_files(self) -> tuple[Path, ...]:
        """Files that may define signal programs, in SUMO's load order (last one wins)."""
        return (self.net_file, *self.additional_files)


def _window_end(
    begin: int, end_s: int | None, duration_s: int | None, file_end: float | None, where: str
) -> int:
    """End of the simulated window: explicit end, else begin + duration, else the file's."""
    if end_s is not None:
        return int(end_s)
    if duration_s is not None:
        return int(begin + duration_s)
    if file_end is not None and file_end >= 0:
        return int(file_end)
    raise ValueError(
        f"{where}: no end of the simulated window: set <end> in the sumocfg, or end_s / "
        "duration_s in the job config"
    )


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


def read_tls_programs(net_file: str | Path, *more_files: str | Path) -> dict[str, TLSProgram]:
    """Static signal programs of a SUMO network file, keyed by traffic-light id.

    Parameters
    ----------
    net_file : str or Path
        The ``.net.xml``; with several programs for one signal its first one is kept.
    *more_files : str or Path
        Additional files loaded after the net, in order: a program in one of them replaces
        the net's (SUMO runs the program loaded last).

    Raises
    ------
    ValueError
        When no file has a ``tlLogic`` or a phase lacks ``duration``/``state``.
    """
    programs: dict[str, TLSProgram] = {}
    for file in (net_file, *more_files):
        programs.update(_programs_in(Path(file)))
    if not programs:
        names = ", ".join(str(f) for f in (net_file, *more_files))
        raise ValueError(f"{names}: no tlLogic (traffic-light program) found")
    return programs


def _programs_in(path: Path) -> dict[str, TLSProgram]:
    programs: dict[str, TLSProgram] = {}
    for _, elem in ET.iterparse(path, events=("end",)):
        if elem.tag != "tlLogic":
            continue
        tls_id = elem.get("id")
        phases = []
        for k, ph in enumerate(elem.findall("phase")):
            if ph.get("duration") is None or ph.get("state") is None:
                raise ValueError(f"{path}: tlLogic {tls_id!r} phase {k} lacks duration/state")
            phases.append((parse_duration(ph.get("duration")), ph.get("state")))
        programs.setdefault(tls_id, TLSProgram(tls_id, float(elem.get("offset", 0)), tuple(phases)))
        elem.clear()
    return programs


def parse_duration(text: str) -> float:
    """A phase duration in seconds (SUMO also accepts ``h:m:s``)."""
    from citybrain_ml.optimize.network import parse_sumo_time

    return parse_sumo_time(text, where="phase duration")


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

    Five additions of ours, for SUMO networks with short lanes and gridlock (each can be
    switched off):

    * queues, running vehicles and fill are read over ``detect_m`` metres of road, across
      unsignalised lane splits (:class:`ApproachDetectors`), not just the signal's own lane,
      which can be a metre long;
    * ``spillback_guard`` drops a movement whose outgoing road is nearly full (vehicles x
      7.5 m >= ``spill_ratio`` x length) from every pressure: no green into a jam;
    * the all-red is extended (up to ``box_clear_max_s``) while vehicles of the movements
      losing green still stand inside the junction, so a crossing green cannot lock them in;
    * a green is kept for its running vehicles for at most ``max_green_s``;
    * a **starvation guard**: a movement whose queue has waited red for ``max_red_s`` is
      served next (see :func:`choose_advanced_max_pressure`). Max-pressure assumes a green
      discharges its queue; when the head of a queue cannot move (blocked in or beyond the
      junction), its halted vehicles keep that green's pressure the largest for good while
      the other approaches, unserved, back up into the junctions upstream until the network
      locks (ingolstadt21, evaluation seed 101: one green held 246 s with 23 halted
      vehicles and none leaving while a 7-car queue waited red).

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
    max_red_s : float or None
        Starvation guard: a movement with halted vehicles that has waited red this long
        (and whose exit is not full) is served at the next decision, before any pressure
        (None = off).
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
        max_red_s: float | None = 180.0,
    ):
        if decision_s < 1 or min_green_s < 0 or range_s <= 0 or detect_m < 0:
            raise ValueError("need decision_s >= 1, min_green_s >= 0, range_s > 0, detect_m >= 0")
        if max_green_s is not None and max_green_s <= min_green_s:
            raise ValueError(f"max_green_s ({max_green_s}) must exceed min_green_s ({min_green_s})")
        if box_clear_max_s < 0:
            raise ValueError(f"box_clear_max_s must be >= 0, got {box_clear_max_s}")
        if max_red_s is not None and max_red_s <= 0:
            raise ValueError(f"max_red_s must be > 0 or None, got {max_red_s}")
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
        self.max_red_s = math.inf if max_red_s is None else float(max_red_s)
        self._groups: dict[str, list[list[Movement]]] = {}
        self._detectors: ApproachDetectors | None = None
        #: tls -> movement key -> time since when it has waited red with halted vehicles
        self._red_since: dict[str, dict[tuple[str, str], float]] = {}

    def start(self, sim: Simulation) -> None:
        self._groups = {tls: movement_groups(node) for tls, node in sim.intersections.items()}
        self._detectors = ApproachDetectors(sim.api, sim.intersections, self.detect_m)
        self._red_since = {tls: {} for tls in sim.intersections}
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
        guard = self.max_red_s < math.inf
        if not due and not guard:
            return
        det = self._detectors
        queues = det.queues()
        if guard:  # the red clocks run for every signal, due or not
            for tls in sim.intersections:
                cur = None if act.in_transition(tls) else act.current[tls]
                update_red_waits(self._red_since[tls], self._groups[tls], queues, cur, now)
        if not due:
            return
        running = det.running(self.range_s)
        full = det.full(self.spill_ratio) if self.spillback_guard else set()
        for tls in due:
            # past max green the platoon no longer holds the green: plain efficient pressure
            demand = running if now - act.green_since[tls] < self.max_green_s else {}
            waited = {k: now - t for k, t in self._red_since[tls].items()} if guard else {}
            green = choose_advanced_max_pressure(
                self._groups[tls],
                queues,
                demand,
                act.current[tls],
                full,
                waited=waited,
                max_red_s=self.max_red_s,
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

    @property
    def key(self) -> tuple[str, str]:
        """(incoming edge, outgoing edge): the same movement in every green that serves it."""
        return (_edge(self.in_lanes[0]) if self.in_lanes else "",
                _edge(self.out_lanes[0]) if self.out_lanes else "")  # fmt: skip


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


def update_red_waits(
    red_since: dict[tuple[str, str], float],
    groups: Sequence[Sequence[Movement]],
    queues: dict[str, float],
    current: int | None,
    now: float,
) -> None:
    """Start, keep or stop each movement's red clock (``red_since``, updated in place).

    A movement's clock runs while it has halted vehicles on its incoming lanes and the
    green shown (``current``; None during a clearance) does not serve it; it stops (the
    key is removed) as soon as it is served or its queue is gone.
    """
    served = {m.key for m in groups[current]} if current is not None else set()
    queued = {
        m.key for ms in groups for m in ms if sum(queues.get(lane, 0.0) for lane in m.in_lanes)
    }
    for key in list(red_since):
        if key in served or key not in queued:
            del red_since[key]
    for key in queued - served:
        red_since.setdefault(key, now)


def choose_advanced_max_pressure(
    groups: Sequence[Sequence[Movement]],
    queues: dict[str, float],
    running: dict[str, float],
    current: int | None,
    full: set[str] = frozenset(),
    *,
    waited: dict[tuple[str, str], float] | None = None,
    max_red_s: float = math.inf,
) -> int:
    """Advanced-MP's choice of green (Zhang et al., ICML 2022), with a starvation guard.

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
    waited : dict movement key -> float, optional
        Seconds each queued movement (:attr:`Movement.key`) has waited red
        (:func:`update_red_waits`).
    max_red_s : float
        Starvation guard: the movement that has waited longest, if at least this long and
        its exit is not full, is served first.

    Returns
    -------
    int
        Under the starvation guard, the green with the largest efficient pressure among
        those serving the longest-waiting movement. Otherwise ``current`` when the
        effective running vehicles it serves (mean per lane, summed over its movements)
        exceed every green's efficient pressure, else the green with the largest efficient
        pressure (ties keep ``current``, then the lowest index).
    """
    if not groups:
        raise ValueError("groups is empty: the signal has no green")
    pressures = [efficient_pressure(ms, queues, full) for ms in groups]
    starved = starving_green(groups, pressures, full, waited or {}, max_red_s)
    if starved is not None:
        return starved
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


def starving_green(
    groups: Sequence[Sequence[Movement]],
    pressures: Sequence[float],
    full: set[str],
    waited: dict[tuple[str, str], float],
    max_red_s: float,
) -> int | None:
    """The green that serves the movement waiting longest past ``max_red_s``, or None.

    Movements whose every outgoing lane is ``full`` are skipped (a green could not empty
    them). Among the greens serving the chosen movement, the one with the largest
    pressure wins (ties: lowest index).
    """
    blocked = {
        m.key for ms in groups for m in ms if m.out_lanes and all(x in full for x in m.out_lanes)
    }
    late = [(w, k) for k, w in waited.items() if w >= max_red_s and k not in blocked]
    if not late:
        return None
    _, key = max(late)
    serving = [g for g, ms in enumerate(groups) if any(m.key == key for m in ms)]
    if not serving:
        return None
    return max(serving, key=lambda g: (pressures[g], -g))


def serving_greens(node: Intersection, link: int) -> list[int]:
    """Greens that serve link ``link``: its protected (``G``) greens, else its permissive ones.

    A left turn with an arrow is counted only in its arrow: its permissive service through
    gaps in the opposing flow is not capacity a plan can rely on. Links that only ever get
    ``g`` (a right turn, an unprotected left) are served by every green showing ``g``.
    """
    protected = [g for g, state in enumerate(node.greens) if state[link] == "G"]
    return protected or [g for g, state in enumerate(node.greens) if state[link] == "g"]


def cover_green_ratios(
    node: Intersection,
    flows: dict[int, float],
    saturation_flow_veh_h: float,
    min_ratio: float = 1e-3,
) -> np.ndarray:
    """Least total green (as flow ratios) that serves every movement: Webster's ``Y`` per green.

    Webster's method assumes each movement is served by exactly one phase. A program that
    serves a movement in several of its greens (e.g. eight greens, each through movement in
    two: its "together with the opposite through" and its "whole approach" green) breaks
    that: splitting the flow among the greens makes each green look lightly loaded while
    every green adds lost time. This solves the linear program

    ``min sum_k x_k  s.t.  sum_{k serves m} x_k >= y_m  for every movement group m, x >= 0``

    where ``y_m`` is the flow ratio (flow / saturation flow) of the links that leave one lane
    and are served by the same set of greens. ``sum x`` is the critical flow ratio of the
    best way to serve the demand with the program's greens; greens with ``x_k = 0`` are not
    needed and are dropped from the plan (no lost time). Every movement gets at least
    ``min_ratio``, so none is left without green because it was not seen in the counts.

    Parameters
    ----------
    node : Intersection
        Greens and links of the signal.
    flows : dict link_index -> veh/h
        Counted or forecast flow per link (missing links: 0).
    saturation_flow_veh_h : float
        Per lane.
    min_ratio : float
        Lower bound of every movement group's ratio.

    Returns
    -------
    numpy.ndarray
        ``x_k`` per green of ``node`` (0 for greens not needed).
    """
    from scipy.optimize import linprog

    groups: dict[tuple[str, tuple[int, ...]], float] = {}
    for k, conns in enumerate(node.links):
        serving = tuple(serving_greens(node, k))
        if not conns or not serving:
            continue
        key = (conns[0][0], serving)
        groups[key] = groups.get(key, 0.0) + flows.get(k, 0.0) / saturation_flow_veh_h
    n = len(node.greens)
    if not groups:
        return np.zeros(n)
    a_ub = np.zeros((len(groups), n))
    b_ub = np.zeros(len(groups))
    for row, ((_, serving), ratio) in enumerate(groups.items()):
        a_ub[row, list(serving)] = -1.0
        b_ub[row] = -max(ratio, min_ratio)
    res = linprog(np.ones(n), A_ub=a_ub, b_ub=b_ub, bounds=[(0, None)] * n, method="highs")
    if not res.success:  # cannot happen for a feasible program; fall back to equal shares
        return np.full(n, max(b_ub.min() * -1, min_ratio))
    return np.where(res.x > 1e-9, res.x, 0.0)


def cover_phase_table(
    flows: pd.DataFrame,
    intersections: dict[str, Intersection],
    *,
    saturation_flow_veh_h: float,
    min_green_s: float,
    yellow_s: float,
    all_red_s: float,
) -> pd.DataFrame:
    """The :func:`plans_from_flows` table from :func:`cover_green_ratios`: used greens only.

    One row per green with ``x_k > 0``, in program order, whose critical flow is
    ``x_k * saturation flow`` (so Webster splits the green in proportion to ``x_k``).
    """
    lookup: dict[str, dict[int, float]] = {}
    for r in flows.itertuples():
        lookup.setdefault(r.intersection_id, {})[int(r.link_index)] = float(r.flow_veh_h)
    rows = []
    for tls, node in intersections.items():
        ratios = cover_green_ratios(node, lookup.get(tls, {}), saturation_flow_veh_h)
        for g, x in enumerate(ratios):
            if x > 0:
                rows.append(
                    {
                        "intersection_id": tls,
                        "phase": str(g),
                        "movement": f"green {g}",
                        "flow_veh_h": x * saturation_flow_veh_h,
                        "saturation_flow_veh_h": saturation_flow_veh_h,
                        "min_green_s": min_green_s,
                        "yellow_s": yellow_s,
                        "all_red_s": all_red_s,
                    }
                )
    return pd.DataFrame(rows)


def program_cycle_bounds(
    program_cycle_s: float, n_phases: int, min_phase_s: float, *, low: float = 0.5,
    high: float = 1.5,
) -> tuple[float, float]:  # fmt: skip
    """Cycle bounds from the net's own program: ``low``-``high`` times its cycle.

    The city chose its cycle for its streets (pedestrian crossings, coordination, the
    longest queue it tolerates); a recommendation stays within half to one and a half times
    it, and never below what its phases' minimum greens and clearances need
    (``n_phases * min_phase_s``).

    Returns
    -------
    (float, float)
        ``(min_cycle_s, max_cycle_s)``.
    """
    floor = n_phases * min_phase_s
    if not math.isfinite(program_cycle_s) or program_cycle_s <= 0:
        return max(30.0, floor), max(120.0, floor)
    lo = max(low * program_cycle_s, floor)
    return lo, max(high * program_cycle_s, lo)


@dataclass
class WebsterSettings:
    """Webster inputs shared by the static and the forecast-driven plans.

    Parameters
    ----------
    saturation_flow_veh_h, lost_time_per_phase_s, min_green_s
        Webster inputs (per lane; per phase; displayed).
    min_cycle_s, max_cycle_s : float or None
        Cycle bounds; None (default) derives them per signal from its program
        (:func:`program_cycle_bounds`) rather than from another city's practice.
    keep_cycle : bool
        Keep each signal's existing cycle, re-split its greens only.
    phase_mapping : {"share", "cover"}
        How per-link flows become phase flows: ``share`` gives each green an equal share of
        every link it serves (:func:`link_flows_to_phase_table`); ``cover`` solves for the
        least green that serves every movement and drops greens not needed
        (:func:`cover_phase_table`) -- for programs that serve a movement in several greens.
    """

    saturation_flow_veh_h: float = 1800.0
    lost_time_per_phase_s: float = 4.0
    min_green_s: float = 5.0
    min_cycle_s: float | None = None
    max_cycle_s: float | None = None
    keep_cycle: bool = False
    phase_mapping: str = "share"

    def __post_init__(self) -> None:
        if self.phase_mapping not in ("share", "cover"):
            raise ValueError(
                f"phase_mapping must be 'share' or 'cover', got {self.phase_mapping!r}"
            )

    def plans(
        self, link_flows: pd.DataFrame, intersections, yellow_s, all_red_s
    ) -> list[SignalPlan]:
        """Webster plans from ``intersection_id, link_index, flow_veh_h``.

        With ``keep_cycle`` each intersection keeps the cycle of its existing program
        (``Intersection.cycle_s``) and only the green splits follow Webster's ``y_i / Y``.
        """
        build = cover_phase_table if self.phase_mapping == "cover" else link_flows_to_phase_table
        table = build(
            link_flows,
            intersections,
            saturation_flow_veh_h=self.saturation_flow_veh_h,
            min_green_s=self.min_green_s,
            yellow_s=yellow_s,
            all_red_s=all_red_s,
        )
        plans = []
        min_phase = max(self.min_green_s + yellow_s + all_red_s, self.lost_time_per_phase_s)
        for tls, rows in table.groupby("intersection_id", sort=False):
            program_cycle = intersections[tls].cycle_s
            derived = program_cycle_bounds(program_cycle, rows["phase"].nunique(), min_phase)
            lo = self.min_cycle_s if self.min_cycle_s is not None else derived[0]
            hi = self.max_cycle_s if self.max_cycle_s is not None else derived[1]
            kwargs = {"min_cycle_s": lo, "max_cycle_s": max(hi, lo)}
            if self.keep_cycle:
                kwargs["cycle_s"] = program_cycle
            plans += plans_from_flows(rows, self.lost_time_per_phase_s, **kwargs)
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


# ---------------------------------------------------------------------------- never worse
@dataclass
class Recommendation:
    """A plan recommended after rehearsal in the simulator, or "cannot improve".

    Attributes
    ----------
    improved : bool
        False when no candidate rehearsed better than the existing plan: ``plans`` is then
        empty and the existing plan stays (never a plan that rehearsed worse).
    chosen : str
        Name of the recommended candidate, or ``"existing"``.
    plans : list of SignalPlan
        The recommended plans (empty when ``improved`` is False).
    rehearsal : DataFrame
        One row per (candidate, seed) with the run's metrics; ``existing`` included.
    metric : str
        What was compared (lower is better), e.g. ``delay_all_s``.
    existing_value, expected_value : float
        Mean of ``metric`` over the rehearsal seeds for the existing plan and the chosen one.
    message : str
        One readable line for people.
    demand : str
        What the candidates were rehearsed on: ``"scenario"`` (the scenario's own demand) or
        ``"forecast"`` (routes rebuilt from a citybrain forecast of its counts).
    demand_info : dict
        Details of that demand (forecast model, past days, counted edges, files).
    """

    improved: bool
    chosen: str
    plans: list[SignalPlan]
    rehearsal: pd.DataFrame
    metric: str
    existing_value: float
    expected_value: float
    message: str
    demand: str = "scenario"
    demand_info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready summary (plans as in :func:`~citybrain_ml.optimize.write_plans_json`)."""
        means = self.rehearsal.groupby("candidate", sort=False)[self.metric].mean()
        return {
            "improved": self.improved,
            "chosen": self.chosen,
            "metric": self.metric,
            "existing": self.existing_value,
            "expected": self.expected_value,
            "message": self.message,
            "candidates": {k: float(v) for k, v in means.items()},
            "seeds": sorted(int(x) for x in self.rehearsal["seed"].unique()),
            "demand": self.demand,
            "demand_info": self.demand_info,
            "plans": [p.to_dict() for p in self.plans],
        }


def recommend_plan(
    scenario: Scenario,
    candidates: dict,
    seeds: Sequence[int],
    *,
    metric: str = "delay_all_s",
    min_improvement: float = 0.0,
    every_seed: bool = True,
    simulate_fn=None,
    **sim_kwargs,
) -> Recommendation:
    """Rehearse candidate plans against the existing one; recommend only a better one.

    Every candidate and the existing program (:class:`FixedTimeController`) run on the same
    ``seeds``. A candidate qualifies if its mean ``metric`` beats the existing plan's by more
    than ``min_improvement`` (a share, e.g. 0.02) and, with ``every_seed``, it is no worse
    than the existing plan on any single seed; the qualifying candidate with the lowest mean
    is recommended. Otherwise the answer is "cannot improve" and no plan is returned: a plan
    that rehearsed worse than the existing one is never recommended. (One seed's win can be
    SUMO's randomness: a pick from one rehearsal seed was worse on ingolstadt7's evaluation
    seeds, ``experiments/results/signals_resco.md``.)

    Parameters
    ----------
    scenario : Scenario
        The network and demand to rehearse on (the digital twin).
    candidates : dict name -> callable
        Each callable returns a fresh :class:`Controller` whose ``plans()`` are the plan.
    seeds : sequence of int
        Rehearsal seeds; keep them apart from the seeds used to report results.
    metric : str
        A :func:`trip_metrics` key, lower is better. The default counts every planned
        vehicle, so a plan cannot win by keeping traffic out of the network.
    min_improvement : float
        Required relative improvement of the mean over the existing plan.
    every_seed : bool
        Also require the candidate to be no worse than the existing plan on every seed.
    simulate_fn : callable, optional
        Stand-in for :func:`simulate` (tests).
    **sim_kwargs
        Passed to the simulation (``yellow_s``, ``all_red_s``).

    Returns
    -------
    Recommendation
    """
    if not seeds:
        raise ValueError("recommend_plan needs at least one rehearsal seed")
    if "existing" in candidates:
        raise ValueError("'existing' is reserved for the net's own program")
    run = simulate_fn or simulate
    factories = {"existing": FixedTimeController, **candidates}
    rows, plans = [], {}
    for name, factory in factories.items():
        for seed in seeds:
            res = run(scenario, factory(), seed, **sim_kwargs)
            rows.append({"candidate": name, "seed": seed, **res.metrics})
            plans.setdefault(name, res.plans)
    rehearsal = pd.DataFrame(rows)
    means = rehearsal.groupby("candidate", sort=False)[metric].mean()
    existing = float(means["existing"])
    others = means.drop("existing")
    qualified = others[others < existing * (1.0 - min_improvement)]
    if every_seed and len(qualified):
        table = rehearsal.pivot_table(index="seed", columns="candidate", values=metric)
        no_worse = table[qualified.index].le(table["existing"], axis=0).all()
        qualified = qualified[no_worse.to_numpy()]
    best = str((qualified if len(qualified) else others).idxmin()) if len(others) else "existing"
    value = float(means[best])
    improved = best in qualified.index
    if improved:
        message = (
            f"recommend {best}: rehearsed {metric} {value:.1f} vs {existing:.1f} for the "
            f"existing plan ({value / existing - 1:+.0%}), mean of seeds {list(seeds)}"
        )
        return Recommendation(True, best, plans[best], rehearsal, metric, existing, value, message)
    message = (
        f"cannot improve: the best candidate ({best}) rehearsed {metric} {value:.1f} vs "
        f"{existing:.1f} for the existing plan (required: {min_improvement:.0%} better on the "
        f"mean of seeds {list(seeds)}{', no seed worse' if every_seed else ''}); "
        "keep the existing plan"
    )
    return Recommendation(False, "existing", [], rehearsal, metric, existing, existing, message)


# ---------------------------------------------------------------------------- simulation
class Simulation:
    """One SUMO run of a scenario under a controller (use :func:`simulate`)."""

    def __init__(self, api, scenario: Scenario, yellow_s: float, all_red_s: float):
        self.api = api
        self.scenario = scenario
        self.yellow_s = yellow_s
        self.all_red_s = all_red_s
        self.programs = running_programs(api, scenario)
        self.intersections = {
            tls: Intersection(
                tls,
                self.programs[tls].green_states,
                [list(conns) for conns in api.trafficlight.getControlledLinks(tls)],
                self.programs[tls].cycle_s,
            )
            for tls in api.trafficlight.getIDList()
            if tls in self.programs and self.programs[tls].green_states
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
    metrics = trip_metrics(trips)
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


def running_programs(api, scenario: Scenario) -> dict[str, TLSProgram]:
    """The program each signal runs now, as SUMO loaded it (net, additional files, sumocfg).

    Read from the simulator rather than the net file, so a program from an additional file
    or picked in the sumocfg is the one the controllers work from; the files give offsets.
    """
    from_files = read_tls_programs(*scenario.program_files)
    out = {}
    for tls in api.trafficlight.getIDList():
        active = api.trafficlight.getProgram(tls)
        logic = next(
            (lg for lg in api.trafficlight.getAllProgramLogics(tls) if lg.programID == active),
            None,
        )
        offset = from_files[tls].offset_s if tls in from_files else 0.0
        if logic is None or not logic.phases:
            if tls in from_files:
                out[tls] = from_files[tls]
            continue
        phases = tuple((float(ph.duration), str(ph.state)) for ph in logic.phases)
        out[tls] = TLSProgram(tls, offset, phases)
    return out


def _sumo_command(scenario: Scenario, seed: int, tripinfo: Path) -> list[str]:
    files = [("net_file", scenario.net_file)]
    files += [("route_files", r) for r in scenario.route_files]
    files += [("additional_files", a) for a in scenario.additional_files]
    for option, path in files:
        if not Path(path).is_file():
            raise FileNotFoundError(f"scenario {scenario.name!r}: {option}: file not found: {path}")
    if scenario.sumocfg is not None:
        # every option of the city's file applies; the run only sets its own window,
        # seed and outputs (and teleporting, read from the file when it sets it)
        head = ["sumo", "-c", str(scenario.sumocfg)]
    else:
        head = ["sumo", "-n", str(scenario.net_file),
                "-r", ",".join(str(r) for r in scenario.route_files)]  # fmt: skip
        if scenario.additional_files:
            head += ["-a", ",".join(str(a) for a in scenario.additional_files)]
    return head + [
        "-b", str(scenario.begin_s),
        "-e", str(scenario.end_s),
        "--seed", str(int(seed)),
        "--time-to-teleport", str(scenario.time_to_teleport_s),
        "--tripinfo-output", str(tripinfo),
        # unfinished and never-inserted vehicles get a record too: nothing drops out
        "--tripinfo-output.write-unfinished", "true",
        "--tripinfo-output.write-undeparted", "true",
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


#: what every summary (CSV, printed table, MLflow, plot) carries, headline first
SUMMARY_METRICS = (
    "delay_all_s",
    "delay_s",
    "att_all_s",
    "att_finished_s",
    "waiting_time_s",
    "queue_veh",
    "planned_veh",
    "throughput_veh",
    "unfinished_veh",
    "not_inserted_veh",
)


def read_tripinfo(path: str | Path) -> pd.DataFrame:
    """SUMO tripinfo XML as a frame.

    ``arrival`` is -1 for unfinished trips and ``depart`` -1 for vehicles never inserted
    (records written by ``--tripinfo-output.write-undeparted``; their ``departDelay`` is the
    time they waited to enter, up to the end of the run).
    """
    rows = []
    for _, elem in ET.iterparse(path, events=("end",)):
        if elem.tag == "tripinfo":
            rows.append({k: elem.get(k) for k in TRIP_FIELDS})
            elem.clear()
    trips = pd.DataFrame(rows, columns=list(TRIP_FIELDS))
    for col in TRIP_FIELDS[1:]:
        trips[col] = pd.to_numeric(trips[col], errors="coerce").astype(float)
    return trips


def trip_metrics(trips: pd.DataFrame) -> dict:
    """Delay, travel time and vehicle counts over every planned vehicle of a run.

    Parameters
    ----------
    trips : DataFrame
        :func:`read_tripinfo` of a run written with ``write-unfinished`` and
        ``write-undeparted``: one record per vehicle whose departure time fell in the window.

    Returns
    -------
    dict
        * ``delay_all_s`` -- mean over **all planned vehicles** of ``timeLoss + departDelay``;
          a vehicle never inserted counts the time it waited to enter (insertion delay).
        * ``delay_s`` -- RESCO's average delay: the same over inserted vehicles only (what
          RESCO's ``readXML.py`` reads); a controller that blocks entries looks better here.
        * ``att_finished_s`` -- average travel time of finished trips (LibSignal's ATT).
        * ``att_all_s`` -- average travel time of all planned vehicles, from their planned
          departure to arrival or to the end of the run (unfinished and never-inserted
          vehicles count the time so far).
        * ``waiting_time_s`` -- mean waiting time of inserted vehicles.
        * ``planned_veh``, ``throughput_veh`` (finished), ``unfinished_veh`` (inserted, not
          finished) and ``not_inserted_veh``: planned = the other three summed.
    """
    inserted = trips["depart"] >= 0
    finished = inserted & (trips["arrival"] >= 0)
    depart_delay = trips["departDelay"].fillna(0.0)
    delay = trips["timeLoss"].fillna(0.0) + depart_delay
    since_planned = trips["duration"].fillna(0.0) + depart_delay
    nan = float("nan")

    def mean(values: pd.Series) -> float:
        return float(values.mean()) if len(values) else nan

    return {
        "delay_all_s": mean(delay),
        "delay_s": mean(delay[inserted]),
        "att_all_s": mean(since_planned),
        "att_finished_s": mean(trips.loc[finished, "duration"]),
        "waiting_time_s": mean(trips.loc[inserted, "waitingTime"]),
        "planned_veh": len(trips),
        "throughput_veh": int(finished.sum()),
        "unfinished_veh": int((inserted & ~finished).sum()),
        "not_inserted_veh": int((~inserted).sum()),
    }


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
    max_red_s: float | None = Field(
        180.0, gt=0, description="serve a queued movement that has waited red this long"
    )


class WebsterConfig(_Strict):
    saturation_flow_veh_h: float = Field(1800.0, gt=0, description="per lane")
    lost_time_per_phase_s: float = Field(4.0, ge=0)
    min_green_s: float = Field(5.0, ge=0)
    min_cycle_s: float | None = Field(
        None, gt=0, description="default: half the signal's own program cycle"
    )
    max_cycle_s: float | None = Field(
        None, gt=0, description="default: 1.5 times the signal's own program cycle"
    )
    keep_cycle: bool = Field(False, description="keep each existing cycle, re-split greens only")
    phase_mapping: Literal["share", "cover"] = Field(
        "share",
        description="share: each green gets an equal share of every link it serves; cover: "
        "least green serving every movement (programs serving a movement in several greens)",
    )


class ForecastConfig(_Strict):
    interval_s: int = Field(300, ge=60, description="re-optimise green splits this often")
    method: Literal["seasonal_naive", "last_interval", "blend"] = "blend"


class RehearsalConfig(_Strict):
    """The ``rehearsed`` controller: candidate plans rehearsed before one is recommended."""

    seeds: list[int] | None = Field(
        None,
        min_length=1,
        description="rehearsal seeds (default: before_study_seed + 1, + 2, + 3)",
    )
    candidates: list[str] = Field(
        default_factory=lambda: list(WEBSTER_CANDIDATES),
        min_length=1,
        description="Webster variants: " + ", ".join(WEBSTER_CANDIDATES),
    )
    metric: str = Field("delay_all_s", description="lower is better; counts every vehicle")
    min_improvement: float = Field(
        0.02, ge=0, lt=1, description="required relative gain of the mean over the seeds"
    )
    every_seed: bool = Field(True, description="also no worse than existing on every seed")
    demand: Literal["scenario", "forecast"] = Field(
        "scenario",
        description="rehearse on the scenario's own demand, or on routes rebuilt "
        "(routeSampler) from a citybrain forecast of its detector counts",
    )
    forecast_model: str = Field("auto", description="demand: forecast -- citybrain model name")
    forecast_model_params: dict | None = Field(
        None, description="its parameters (default for auto: learned: false, baselines only)"
    )
    history_days: int = Field(
        4, ge=2, description="demand: forecast -- simulated past days of detector counts"
    )
    history_seed: int = Field(2000, description="seed of the first simulated past day")
    count_interval_s: int = Field(
        60, ge=10, description="detector counting interval (1 min keeps arrival peaks)"
    )
    count_edges: Literal["signals", "all"] = Field(
        "signals", description="counted edges: those at the signals, or every edge"
    )

    @model_validator(mode="after")
    def _known(self):
        unknown = [c for c in self.candidates if c not in WEBSTER_CANDIDATES]
        if unknown:
            raise ValueError(f"unknown candidates {unknown}; known: {list(WEBSTER_CANDIDATES)}")
        if self.metric not in SUMMARY_METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; known: {list(SUMMARY_METRICS)}")
        from citybrain_ml.models import REGISTRY

        if self.forecast_model not in REGISTRY:
            raise ValueError(
                f"unknown forecast_model {self.forecast_model!r}; known: {sorted(REGISTRY)}"
            )
        return self


class SignalsTracking(_Strict):
    experiment: str = "citybrain-signals"
    tracking_uri: str | None = None


class CityFlowImportConfig(_Strict):
    """A CityFlow roadnet + flow imported into SUMO (``importers.cityflow_to_sumo``)."""

    roadnet: str = Field(description="CityFlow roadnet JSON")
    flow: str = Field(description="CityFlow flow JSON")
    phases: list[int] | None = Field(
        None, description="light phases of the fixed-time program (default: all with a green)"
    )
    green_s: float | None = Field(None, gt=0, description="green per phase (default: file's)")
    yellow_s: float = Field(5.0, ge=0)
    end_s: float = Field(3600.0, gt=0, description="window end (CityFlow episodes: 3600 s)")


class OsmImportConfig(_Strict):
    """An OpenStreetMap extract imported into SUMO (``importers.osm_to_sumo``)."""

    osm_file: str = Field(description=".osm XML")
    route_files: list[str] = Field(default_factory=list, description="demand on this net")
    trips_period_s: float | None = Field(
        2.0, gt=0, description="random trips every this many s when no route_files"
    )
    trips_seed: int = 42
    end_s: float = Field(3600.0, gt=0)


class NetworkConfig(_Strict):
    """A city's own network: a ``.sumocfg``, a net with its route files, or an import.

    Relative paths are read from the working directory (files named inside a sumocfg from
    the sumocfg's folder, as SUMO does). ``cityflow`` and ``osm`` are converted with
    ``netconvert`` into ``<output_dir>/network/`` first.
    """

    name: str | None = Field(None, description="label in tables and MLflow (default: file name)")
    sumocfg: str | None = Field(None, description="SUMO configuration; all its options apply")
    net_file: str | None = Field(None, description=".net.xml (with route_files)")
    route_files: list[str] = Field(default_factory=list, description="demand: .rou.xml files")
    additional_files: list[str] = Field(default_factory=list)
    cityflow: CityFlowImportConfig | None = None
    osm: OsmImportConfig | None = None
    begin_s: int | None = Field(None, description="window start (default: sumocfg begin or 0)")
    end_s: int | None = Field(None, description="window end (default: sumocfg end)")

    @model_validator(mode="after")
    def _one_source(self):
        sources = [self.sumocfg, self.net_file, self.cityflow, self.osm]
        if sum(x is not None for x in sources) != 1:
            raise ValueError(
                "give one of sumocfg: <file.sumocfg>, net_file: <file.net.xml> with "
                "route_files: [...], cityflow: {roadnet, flow} or osm: {osm_file}"
            )
        if self.sumocfg is not None and (self.route_files or self.additional_files):
            raise ValueError(
                "with sumocfg, route and additional files come from the sumocfg; "
                "drop route_files/additional_files"
            )
        if self.net_file is not None and not self.route_files:
            raise ValueError("net_file needs route_files: [...] (the demand)")
        return self

    def build(self, duration_s: int | None = None, import_dir: str | Path = ".") -> Scenario:
        """The :class:`Scenario`; raises ``FileNotFoundError`` naming a missing file.

        Parameters
        ----------
        duration_s : int, optional
            Simulate only this long from the window's start.
        import_dir : str or Path
            Where ``cityflow`` / ``osm`` imports write their SUMO files.
        """
        sumocfg = self.sumocfg
        if self.cityflow is not None or self.osm is not None:
            sumocfg = self._import(Path(import_dir)).sumocfg
        if sumocfg is not None:
            return Scenario.from_sumocfg(
                sumocfg,
                begin_s=self.begin_s,
                end_s=self.end_s,
                duration_s=duration_s,
                name=self.name,
            )
        return Scenario.from_files(
            self.net_file,
            self.route_files,
            begin_s=self.begin_s or 0,
            end_s=self.end_s,
            duration_s=duration_s,
            additional_files=self.additional_files,
            name=self.name,
        )

    @property
    def label(self) -> str:
        """Name of the network: ``name`` or the stem of its main file."""
        if self.name:
            return self.name
        main = (
            self.sumocfg
            or self.net_file
            or (self.cityflow.flow if self.cityflow else None)
            or self.osm.osm_file
        )
        return Path(main).name.split(".")[0]

    def _import(self, folder: Path):
        from citybrain_ml.optimize.importers import cityflow_to_sumo, osm_to_sumo

        if self.cityflow is not None:
            c = self.cityflow
            return cityflow_to_sumo(c.roadnet, c.flow, folder, name=self.label,
                                    phases=c.phases, green_s=c.green_s, yellow_s=c.yellow_s,
                                    end_s=c.end_s)  # fmt: skip
        o = self.osm
        return osm_to_sumo(o.osm_file, folder, name=self.label, route_files=o.route_files,
                           trips_period_s=o.trips_period_s, seed=o.trips_seed,
                           end_s=o.end_s)  # fmt: skip


class SignalsJobConfig(_Strict):
    """``citybrain optimize signals`` config (YAML): a RESCO ``scenario`` or a ``network``."""

    name: str = "signals"
    scenario: str | None = Field(
        None,
        description="RESCO scenario (" + ", ".join(RESCO_WINDOWS) + ") or a .sumocfg path",
    )
    network: NetworkConfig | None = Field(None, description="your own network (see its fields)")
    duration_s: int | None = Field(None, ge=60, description="shorten the simulated window")
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
    rehearsal: RehearsalConfig = RehearsalConfig()
    output_dir: str = "outputs/signals"
    tracking: SignalsTracking = SignalsTracking()

    @model_validator(mode="after")
    def _known_scenario(self):
        if self.scenario is not None and self.scenario.endswith(".sumocfg"):
            if self.network is not None:
                raise ValueError("give scenario or network, not both")
            self.network = NetworkConfig(sumocfg=self.scenario)
            self.scenario = None
        if (self.scenario is None) == (self.network is None):
            raise ValueError(
                "give scenario: <RESCO name> or network: {sumocfg: <file>} / "
                "{net_file: <file>, route_files: [...]} (one of them)"
            )
        if self.scenario is not None and self.scenario not in RESCO_WINDOWS:
            raise ValueError(
                f"unknown scenario {self.scenario!r}; known: {sorted(RESCO_WINDOWS)} "
                "(your own net: network: {sumocfg: ...} or {net_file: ..., route_files: [...]})"
            )
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds repeat: {self.seeds}")
        return self

    def build_scenario(self) -> Scenario:
        """The simulated :class:`Scenario` of this job (files are checked here)."""
        if self.network is not None:
            return self.network.build(self.duration_s, Path(self.output_dir) / "network")
        return Scenario.resco(self.scenario, self.duration_s)

    @property
    def label(self) -> str:
        """The scenario's name before files are read (RESCO name or network file name)."""
        if self.scenario is not None:
            return self.scenario
        return self.network.label


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
    recommendation: Recommendation | None = None


def run_signals(
    cfg: SignalsJobConfig, progress: bool = False, scenario: Scenario | None = None
) -> SignalsResult:
    """Before-study, then every configured controller on every seed (no MLflow, no files).

    Parameters
    ----------
    cfg : SignalsJobConfig
        The job.
    progress : bool
        Print one line per run.
    scenario : Scenario, optional
        Already built from ``cfg`` (default: ``cfg.build_scenario()``).
    """
    scenario = scenario or cfg.build_scenario()
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
    rows, webster_plans, forecast_plans, rec = [], [], None, None
    if "rehearsed" in cfg.controllers:
        rec = rehearse_candidates(cfg, scenario, hourly)
        if progress:
            print(f"{scenario.name}: {rec.message}")
    for name in cfg.controllers:
        for seed in cfg.seeds:
            if name == "rehearsed":
                controller = PlanController(rec.plans) if rec.improved else FixedTimeController()
            else:
                controller = _make_controller(name, cfg, settings, hourly, counts)
            res = simulate(
                scenario, controller, seed, yellow_s=cfg.yellow_s, all_red_s=cfg.all_red_s
            )
            rows.append(
                {"scenario": scenario.name, "controller": name, "seed": seed, **res.metrics}
            )
            if progress:
                m = res.metrics
                print(
                    f"{scenario.name} {name} seed {seed}: delay {m['delay_all_s']:.1f} s over "
                    f"{m['planned_veh']} planned vehicles, {m['not_inserted_veh']} never inserted"
                )
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
        program_table(read_tls_programs(*scenario.program_files)),
        counts,
        rec,
    )


def rehearse_candidates(
    cfg: SignalsJobConfig,
    scenario: Scenario,
    link_flows: pd.DataFrame,
    *,
    simulate_fn=None,
    forecast_fn=None,
) -> Recommendation:
    """The job's never-worse step: Webster variants from the before-study vs the existing plan.

    Candidates are :data:`WEBSTER_CANDIDATES` named in ``cfg.rehearsal.candidates``; they
    run on the rehearsal seeds (default ``before_study_seed + 1..3``), apart from ``cfg.seeds``.

    With ``rehearsal.demand: forecast`` the candidates are planned on, and rehearsed on,
    forecast demand instead (:func:`forecast_rehearsal_demand`): Webster from turning flows
    counted on the forecast demand, the existing plan and every candidate run on it, and the
    recommendation (or "cannot improve") says so. The job then evaluates it on the true
    demand (``cfg.seeds``). ``simulate_fn`` / ``forecast_fn`` stand in for :func:`simulate`
    and :func:`~citybrain_ml.optimize.demand.forecast_demand_scenario` (tests).
    """
    seeds = cfg.rehearsal.seeds or [cfg.before_study_seed + k for k in (1, 2, 3)]
    info: dict = {"demand": "scenario"}
    if cfg.rehearsal.demand == "forecast":
        scenario, link_flows, info = forecast_rehearsal_demand(
            cfg, scenario, simulate_fn=simulate_fn, forecast_fn=forecast_fn
        )
    base = cfg.webster.model_dump()
    candidates = {
        name: (lambda s=WebsterSettings(**{**base, **WEBSTER_CANDIDATES[name]}): (
            _WebsterController(s, link_flows)))
        for name in cfg.rehearsal.candidates
    }  # fmt: skip
    rec = recommend_plan(
        scenario,
        candidates,
        seeds,
        metric=cfg.rehearsal.metric,
        min_improvement=cfg.rehearsal.min_improvement,
        every_seed=cfg.rehearsal.every_seed,
        simulate_fn=simulate_fn,
        yellow_s=cfg.yellow_s,
        all_red_s=cfg.all_red_s,
    )
    rec.demand, rec.demand_info = info["demand"], info
    if info["demand"] == "forecast":
        rec.message += (
            f" (rehearsed on forecast demand: {info['forecast_model']} forecast of "
            f"{info['counted_edges']} counted edges from {info['history_days']} past days)"
        )
    return rec


def forecast_params(r: RehearsalConfig) -> dict:
    """The forecaster's parameters: as configured, else for ``auto`` its baselines only.

    On 1-minute counts of a few past days ``auto``'s LightGBM candidate costs minutes (it
    works on the whole day's grid) while the time-of-day average wins validation anyway.
    """
    if r.forecast_model_params is not None:
        return dict(r.forecast_model_params)
    return {"learned": False} if r.forecast_model == "auto" else {}


def forecast_rehearsal_demand(
    cfg: SignalsJobConfig, scenario: Scenario, *, simulate_fn=None, forecast_fn=None
) -> tuple[Scenario, pd.DataFrame, dict]:
    """The digital twin on forecast demand, and the turning flows Webster plans from.

    Detector counts of ``rehearsal.history_days`` simulated past days (seeds from
    ``rehearsal.history_seed``, existing program) are forecast for the next day with
    ``rehearsal.forecast_model``; routeSampler rebuilds routes from the forecast
    (:func:`~citybrain_ml.optimize.demand.forecast_demand_scenario`, files in
    ``<output_dir>/forecast_demand``); a before-study on that demand (seed
    ``before_study_seed``) counts the turning flows the Webster candidates use.

    Returns
    -------
    (Scenario, DataFrame, dict)
        The forecast-demand scenario, its hourly link flows and a record of what was done.
    """
    from citybrain_ml.optimize import demand

    r = cfg.rehearsal
    build = forecast_fn or demand.forecast_demand_scenario
    fd = build(
        scenario,
        Path(cfg.output_dir) / "forecast_demand",
        history_seeds=[r.history_seed + d for d in range(r.history_days)],
        interval_s=r.count_interval_s,
        model=r.forecast_model,
        model_params=forecast_params(r),
        edges=r.count_edges,
        yellow_s=cfg.yellow_s,
        all_red_s=cfg.all_red_s,
    )
    study = (simulate_fn or simulate)(
        fd.scenario,
        FixedTimeController(),
        cfg.before_study_seed,
        count_flows_bin_s=cfg.forecast.interval_s,
        yellow_s=cfg.yellow_s,
        all_red_s=cfg.all_red_s,
    )
    counts = study.flow_counts
    hourly = counts.groupby(["intersection_id", "link_index"], as_index=False)["count"].sum()
    hourly["flow_veh_h"] = hourly["count"] * 3600.0 / fd.scenario.duration_s
    return fd.scenario, hourly, dict(fd.info)


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
    metrics = [m for m in SUMMARY_METRICS if m in runs.columns]
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
    scenario = cfg.build_scenario()  # ... or when a network file is missing
    configure_tracking(cfg.tracking.tracking_uri, cfg.tracking.experiment)
    result = run_signals(cfg, scenario=scenario)
    out = Path(cfg.output_dir)
    files = write_signals_outputs(result, out)
    with mlflow.start_run(run_name=cfg.name) as run:
        mlflow.set_tags({"job": "optimize_signals", "git_commit": git_commit(),
                         **{f"version.{k}": v for k, v in library_versions().items()}})  # fmt: skip
        mlflow.log_params(_flat_params(cfg))
        mlflow.log_dict(cfg.model_dump(mode="json"), "config.json")
        mlflow.set_tag("scenario", result.runs["scenario"].iloc[0])
        rec = result.recommendation
        if rec is not None:
            mlflow.set_tag("recommendation", rec.message)
            mlflow.set_tag("recommendation.demand", rec.demand)
            if rec.demand == "forecast":
                mlflow.set_tag("recommendation.forecast_model", rec.demand_info["forecast_model"])
                mlflow.log_metric(
                    "recommendation.forecast_geh_ok_share",
                    float(rec.demand_info.get("sampled_geh_ok_share", float("nan"))),
                )
            mlflow.log_metric("recommendation.improved", float(rec.improved))
            mlflow.log_metric(f"recommendation.existing_{rec.metric}", rec.existing_value)
            mlflow.log_metric(f"recommendation.expected_{rec.metric}", rec.expected_value)
        for row in result.summary.itertuples():
            for metric in SUMMARY_METRICS:
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
    rec = result.recommendation
    if rec is not None:
        from citybrain_ml.data.io import atomic_write_text

        text = json.dumps(rec.to_dict(), indent=2, default=_json_number)
        files.append(atomic_write_text(text, out / "recommendation.json"))
        files.append(atomic_write_frame(rec.rehearsal, out / "rehearsal.csv"))
        for key in ("forecast_counts_file", "count_history_file"):  # demand: forecast
            if rec.demand_info.get(key) and Path(rec.demand_info[key]).is_file():
                files.append(Path(rec.demand_info[key]))
        if rec.improved:  # a plan that rehearsed worse is never written as a recommendation
            files.append(write_plans_json(rec.plans, out / "plan_recommended.json"))
            files.append(write_plans_csv(rec.plans, out / "plan_recommended.csv"))
    files.append(plot_comparison(result.runs, out / "delay_by_controller.png"))
    return files


def _json_number(value):
    """``json.dumps`` fallback: numpy numbers as Python numbers, non-finite as None."""
    value = float(value)
    return value if math.isfinite(value) else None


def plot_comparison(runs: pd.DataFrame, path: Path) -> Path:
    """Mean delay over all planned vehicles per controller, dots = seeds; written atomically.

    Each bar is labelled with the vehicles never inserted and unfinished (means over seeds),
    so a controller cannot look good by keeping traffic out of the network.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from citybrain_ml.data.io import atomic_write_bytes

    order = list(dict.fromkeys(runs["controller"]))
    grouped = runs.groupby("controller")
    means = grouped["delay_all_s"].mean().reindex(order)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.bar(range(len(order)), means.to_numpy(), color="#8fb3d9")
    for i, name in enumerate(order):
        vals = runs.loc[runs["controller"] == name, "delay_all_s"]
        ax.plot(np.full(len(vals), i), vals, "k.", ms=6)
        never = grouped["not_inserted_veh"].mean()[name]
        open_ = grouped["unfinished_veh"].mean()[name]
        ax.annotate(
            f"{never:.0f} out\n{open_:.0f} open",
            (i, means[name]),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(range(len(order)), order, rotation=15)
    ax.set_ylabel("delay, all planned vehicles (s/veh)")
    ax.set_title(
        f"{runs['scenario'].iloc[0]}: delay incl. insertion delay "
        "(dots = seeds; out = never inserted, open = unfinished)",
        fontsize=9,
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(buffer.getvalue(), path)


def summary_table(summary: pd.DataFrame) -> str:
    """The printed table: delay and ATT in both definitions, and where every vehicle is."""
    cols = {
        "controller": "controller",
        "delay_all_s": "delay_all",
        "delay_s": "delay_RESCO",
        "att_all_s": "ATT_all",
        "att_finished_s": "ATT_finished",
        "planned_veh": "planned",
        "throughput_veh": "finished",
        "unfinished_veh": "unfinished",
        "not_inserted_veh": "never_in",
    }
    table = summary[list(cols)].rename(columns=cols)
    return table.round(1).to_string(index=False)


def _summary_text(result: SignalsResult, files: list[Path], run_id: str) -> str:
    lines = [
        f"{result.runs['scenario'].iloc[0]}: {len(result.config.seeds)} seed(s), means; "
        "delay_all / ATT_all over every planned vehicle (insertion delay counted), "
        "delay_RESCO over inserted vehicles, ATT_finished over finished trips (LibSignal), s",
        summary_table(result.summary),
        *([f"rehearsal: {result.recommendation.message}"] if result.recommendation else []),
        f"MLflow run {run_id}",
        *[f"wrote {p}" for p in files],
    ]
    return "\n".join(lines)
