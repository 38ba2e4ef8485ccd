"""Demand from detector counts: measure counts, read a city's counts, rebuild routes from them.

A new city rarely has an origin-destination matrix; it has **counts**: vehicles per road
(edge) or per turning movement (edge pair) per interval. This module turns counts into SUMO
demand and checks how well the rebuilt demand reproduces them:

* :func:`measure_counts` -- counts per edge and interval *measured in a simulation*: SUMO's
  ``edgeData`` output (an additional file added to the run), ``entered + departed``: every
  vehicle that drove onto the edge or started on it, counted in the interval it did so (what
  a loop detector on that road sees);
* :func:`route_counts` -- counts per edge (or per turn, ``turns=True``) *counted from a route
  file*: a vehicle counts on every edge of its route in the interval of its **departure**.
  This is the convention of SUMO's ``routeSampler.py`` (it gives every sampled vehicle a
  departure time inside the interval whose counts it serves), so counts taken this way are
  the ones routeSampler can reproduce exactly; :func:`route_trips` routes ``<trip>`` files
  first with ``duarouter`` (what SUMO does when it inserts a trip);
* :func:`read_counts` -- a city's own table in long format: ``edge_id, interval_begin,
  interval_end, count`` (edge counts) or ``from_edge, to_edge, interval_begin, interval_end,
  count`` (turn counts), seconds of simulation time; errors name the file, column and row;
* :func:`sample_routes` -- SUMO's ``routeSampler.py`` picks routes from candidate routes
  (the city's own routes, or :func:`random_candidate_routes`) so that the counts are met,
  with its linear-programming optimisation (``--optimize full``); returns a
  :class:`~citybrain_ml.optimize.simulation.Scenario` on the new route file;
* :func:`geh` and :func:`compare_counts` -- the GEH statistic on hourly flows and the share of
  counted edges with GEH < 5 (the usual calibration target is 85%), plus per-edge relative
  flow errors;
* :func:`counts_history_frame`, :func:`forecast_counts` and :func:`forecast_demand_scenario`
  -- past days' counts as a citybrain long frame (``series_id`` = edge), a citybrain forecast
  of the next day's counts for the simulated window, and the demand rebuilt from it: the
  digital twin the ``rehearsed`` signal controller rehearses on with
  ``rehearsal: {demand: forecast}``.

SUMO (``pip install citybrain_ml[sim]``) is needed for everything that runs SUMO or its
tools; reading counts, GEH and the forecast step are plain pandas.
"""

from __future__ import annotations

import math
import sys
import tempfile
import warnings
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

EDGE_COLUMNS = ("edge_id", "interval_begin", "interval_end", "count")
TURN_COLUMNS = ("from_edge", "to_edge", "interval_begin", "interval_end", "count")
#: GEH below this is the usual "acceptable" match of a modelled hourly flow
GEH_OK = 5.0
#: the forecast day of :func:`counts_history_frame` (a Friday: with up to four past days every
#: day is a weekday after a weekday; day types matter to ``auto`` and the averages)
FORECAST_DAY = "2024-01-05"


# ---------------------------------------------------------------------------- reading counts
def read_counts(source: str | Path | pd.DataFrame, *, kind: str = "auto") -> pd.DataFrame:
    """Read and check a table of counts in long format.

    Parameters
    ----------
    source : str, Path or DataFrame
        A CSV or Parquet file, or a frame already loaded.
    kind : {"auto", "edge", "turn"}
        ``edge``: columns ``edge_id, interval_begin, interval_end, count``; ``turn``:
        ``from_edge, to_edge, interval_begin, interval_end, count``; ``auto``: ``turn`` when
        the table has ``from_edge``, else ``edge``. Other columns are dropped.

    Returns
    -------
    DataFrame
        The required columns; ids as str, interval bounds as float seconds, count as float,
        sorted by interval then id.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        Naming the file and the missing column, or the file, column and first bad row
        (1-based data row) when a value is missing, not a number, negative, or an interval
        ends before it begins; and when one (id, interval) appears twice.
    """
    where = "counts"
    if isinstance(source, pd.DataFrame):
        df = source.copy()
    else:
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"counts file not found: {path}")
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype={"edge_id": str, "from_edge": str, "to_edge": str})
    if kind not in ("auto", "edge", "turn"):
        raise ValueError(f"kind must be 'auto', 'edge' or 'turn', got {kind!r}")
    if kind == "auto":
        kind = "turn" if "from_edge" in df.columns else "edge"
    columns = TURN_COLUMNS if kind == "turn" else EDGE_COLUMNS
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{where}: missing column(s) {missing} for {kind} counts; expected "
            f"{list(columns)} (got {list(df.columns)})"
        )
    df = df[list(columns)].reset_index(drop=True)
    ids = [c for c in columns if c in ("edge_id", "from_edge", "to_edge")]
    for col in ids:
        bad = df[col].isna() | (df[col].astype(str).str.strip() == "")
        _raise_first(bad, where, col, "is empty")
        df[col] = df[col].astype(str).str.strip()
    for col in ("interval_begin", "interval_end", "count"):
        values = pd.to_numeric(df[col], errors="coerce")
        _raise_first(values.isna(), where, col, "is missing or not a number", df[col])
        _raise_first(values < 0, where, col, "is negative", df[col])
        df[col] = values.astype(float)
    _raise_first(
        df["interval_end"] <= df["interval_begin"], where, "interval_end",
        "is not after interval_begin", df["interval_end"],
    )  # fmt: skip
    dup = df.duplicated([*ids, "interval_begin", "interval_end"], keep="first")
    _raise_first(dup, where, ids[0], "repeats an (id, interval) already given", df[ids[0]])
    return df.sort_values(["interval_begin", *ids], kind="stable").reset_index(drop=True)


def _raise_first(mask: pd.Series, where: str, col: str, what: str, values=None) -> None:
    if mask.any():
        row = int(np.flatnonzero(mask.to_numpy())[0])
        shown = "" if values is None else f" ({values.iloc[row]!r})"
        raise ValueError(f"{where}: column {col!r}, row {row + 1}: value{shown} {what}")


# ---------------------------------------------------------------------------- count formats
def write_edgedata(counts: pd.DataFrame, path: str | Path, attribute: str = "entered") -> Path:
    """Edge counts as a SUMO ``edgeData`` file (what ``routeSampler -d`` reads).

    One ``<interval>`` per distinct ``(interval_begin, interval_end)``, one ``<edge>`` per row,
    the count in ``attribute`` (routeSampler's default is ``entered``).
    """
    counts = read_counts(counts, kind="edge")
    root = ET.Element("data")
    for (b, e), rows in counts.groupby(["interval_begin", "interval_end"], sort=True):
        interval = ET.SubElement(root, "interval", id=f"counts_{_num(b)}", begin=_num(b),
                                 end=_num(e))  # fmt: skip
        for r in rows.itertuples():
            ET.SubElement(interval, "edge", {"id": r.edge_id, attribute: _num(r.count)})
    return _write_xml(root, Path(path))


def write_turn_counts(counts: pd.DataFrame, path: str | Path, attribute: str = "count") -> Path:
    """Turn counts as SUMO ``edgeRelation`` data (what ``routeSampler -t`` reads)."""
    counts = read_counts(counts, kind="turn")
    root = ET.Element("data")
    for (b, e), rows in counts.groupby(["interval_begin", "interval_end"], sort=True):
        interval = ET.SubElement(root, "interval", id=f"turns_{_num(b)}", begin=_num(b),
                                 end=_num(e))  # fmt: skip
        for r in rows.itertuples():
            attrs = {"from": r.from_edge, "to": r.to_edge, attribute: _num(r.count)}
            ET.SubElement(interval, "edgeRelation", attrs)
    return _write_xml(root, Path(path))


def read_edgedata(path: str | Path, attributes: Sequence[str] = ("entered", "departed")):
    """A SUMO ``edgeData`` output as edge counts: the sum of ``attributes`` per edge and interval.

    The default ``entered + departed`` counts every vehicle on the edge: those that drove onto
    it and those that started on it (``entered`` alone misses the latter, so an edge where
    traffic enters the network would count zero).
    """
    rows = []
    for _, elem in ET.iterparse(path, events=("end",)):
        if elem.tag != "interval":
            continue
        b, e = float(elem.get("begin")), float(elem.get("end"))
        for edge in elem.findall("edge"):
            n = sum(float(edge.get(a, 0) or 0) for a in attributes)
            rows.append((edge.get("id"), b, e, n))
        elem.clear()
    return pd.DataFrame(rows, columns=list(EDGE_COLUMNS))


# ---------------------------------------------------------------------------- routes
def read_routes(route_files: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """Vehicles of SUMO route files with their departure and the edges of their route.

    Reads ``<vehicle>`` with an inline ``<route edges>``, a ``route="id"`` reference to a
    named ``<route>``, or a ``<routeDistribution>`` (its last route, the one SUMO's
    duarouter chose). ``<trip>`` and ``<flow>`` have no edges to count: route trips with
    :func:`route_trips` first.

    Returns
    -------
    DataFrame
        ``vehicle_id, depart, type, edges`` (``edges`` a tuple of edge ids).

    Raises
    ------
    ValueError
        Naming the file when it holds trips or flows, or a vehicle refers to an unknown route.
    """
    files = [route_files] if isinstance(route_files, str | Path) else list(route_files)
    rows = []
    for file in files:
        named: dict[str, tuple[str, ...]] = {}
        depth = 0
        for event, elem in ET.iterparse(file, events=("start", "end")):
            if event == "start":
                depth += 1
                continue
            depth -= 1
            if elem.tag == "route" and depth == 1 and elem.get("id"):
                named[elem.get("id")] = tuple(elem.get("edges", "").split())
            elif elem.tag in ("trip", "flow") and depth == 1:
                raise ValueError(
                    f"{file}: holds <{elem.tag}> elements without edges; route them first "
                    "(route_trips(net_file, route_files, out_file) runs duarouter)"
                )
            elif elem.tag == "vehicle" and depth == 1:
                edges = _vehicle_edges(elem, named, file)
                depart = elem.get("depart", "0")
                rows.append((elem.get("id"), _depart_s(depart), elem.get("type"), edges))
                elem.clear()
    return pd.DataFrame(rows, columns=["vehicle_id", "depart", "type", "edges"])


def _vehicle_edges(elem, named, file) -> tuple[str, ...]:
    ref = elem.get("route")
    if ref is not None:
        if ref not in named:
            raise ValueError(f"{file}: vehicle {elem.get('id')!r} uses unknown route {ref!r}")
        return named[ref]
    route = elem.find("route")
    if route is None:
        dist = elem.find("routeDistribution")
        routes = dist.findall("route") if dist is not None else []
        route = routes[-1] if routes else None
    if route is None:
        raise ValueError(f"{file}: vehicle {elem.get('id')!r} has no route")
    return tuple(route.get("edges", "").split())


def _depart_s(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # "triggered", "now"...: not a scheduled departure
        return math.nan


def route_counts(
    route_files: str | Path | Sequence[str | Path],
    *,
    begin_s: float,
    end_s: float,
    interval_s: float,
    edges: Sequence[str] | None = None,
    turns: bool = False,
) -> pd.DataFrame:
    """Counts per edge (or turn) and interval, from the vehicles of route files.

    A vehicle counts once on every edge of its route (and, with ``turns``, on every pair of
    consecutive edges) in the interval of its departure -- routeSampler's convention.
    Vehicles departing outside ``[begin_s, end_s)`` are left out.

    Parameters
    ----------
    route_files : path or sequence of paths
        Routed vehicles (see :func:`read_routes`).
    begin_s, end_s, interval_s : float
        Window and interval length (the last interval is cut at ``end_s``).
    edges : sequence of str, optional
        Count only these edges (the counted edges; for turns: the from-edges). Default: all.
    turns : bool
        Count turning movements ``from_edge, to_edge`` instead of edges.

    Returns
    -------
    DataFrame
        :data:`EDGE_COLUMNS` (or :data:`TURN_COLUMNS`); every counted location and interval
        appears, zeros included.
    """
    if interval_s <= 0 or end_s <= begin_s:
        raise ValueError("need interval_s > 0 and end_s > begin_s")
    routes = read_routes(route_files)
    routes = routes[(routes["depart"] >= begin_s) & (routes["depart"] < end_s)]
    n_bins = int(math.ceil((end_s - begin_s) / interval_s))
    keep = None if edges is None else set(edges)
    counts: Counter = Counter()
    for depart, route in zip(routes["depart"], routes["edges"], strict=True):
        b = int((depart - begin_s) // interval_s)
        if turns:
            places = set(zip(route[:-1], route[1:], strict=True))
            places = {p for p in places if keep is None or p[0] in keep}
        else:
            places = {e for e in route if keep is None or e in keep}
        for place in places:
            counts[(place, b)] += 1
    seen = sorted({p for p, _ in counts} | (set() if turns or keep is None else keep))
    rows = []
    for place in seen:
        for b in range(n_bins):
            lo = begin_s + b * interval_s
            hi = min(lo + interval_s, end_s)
            ids = place if turns else (place,)
            rows.append((*ids, lo, hi, float(counts.get((place, b), 0))))
    columns = TURN_COLUMNS if turns else EDGE_COLUMNS
    return read_counts(pd.DataFrame(rows, columns=list(columns)), kind="turn" if turns else "edge")


def route_trips(
    net_file: str | Path,
    route_files: str | Path | Sequence[str | Path],
    out_file: str | Path,
    *,
    begin_s: float | None = None,
    end_s: float | None = None,
) -> Path:
    """Route ``<trip>`` files into vehicles with edges, with SUMO's ``duarouter``.

    Fastest paths at the speed limits: the routes SUMO itself gives trips when it inserts
    them (without rerouting devices). Unroutable trips are dropped with a warning.
    """
    from citybrain_ml.optimize.network import run_sumo_tool, sumo_binary

    files = [route_files] if isinstance(route_files, str | Path) else list(route_files)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    args = [
        sumo_binary("duarouter"),
        "-n", str(net_file),
        "-r", ",".join(str(f) for f in files),
        "-o", str(out_file),
        "--ignore-errors", "true",
        "--no-step-log", "true",
        "--no-warnings", "true",
        "--alternatives-output", "NUL" if sys.platform == "win32" else "/dev/null",
    ]  # fmt: skip
    if begin_s is not None:
        args += ["-b", _num(begin_s)]
    if end_s is not None:
        args += ["-e", _num(end_s)]
    run_sumo_tool(args, what=f"duarouter on {', '.join(str(f) for f in files)}")
    return out_file


def routed_files(
    net_file: str | Path, route_files: Sequence[str | Path], folder: str | Path
) -> list[Path]:
    """``route_files`` with every file that holds trips or flows routed by :func:`route_trips`."""
    out = []
    for file in route_files:
        try:
            read_routes(file)
            out.append(Path(file))
        except ValueError as exc:
            if "route them first" not in str(exc):
                raise
            out.append(route_trips(net_file, file, Path(folder) / f"{Path(file).stem}.routed.xml"))
    return out


def random_candidate_routes(
    net_file: str | Path,
    out_file: str | Path,
    *,
    begin_s: float = 0.0,
    end_s: float = 3600.0,
    period_s: float = 0.5,
    seed: int = 42,
) -> Path:
    """Candidate routes for :func:`sample_routes` when a city has no route file.

    ``randomTrips.py`` trips (mostly from and to the edge of the map) routed by duarouter;
    the more trips (smaller ``period_s``), the more routes routeSampler can choose among.
    """
    from citybrain_ml.optimize.importers import random_trips

    return random_trips(Path(net_file), Path(out_file), period_s, seed, begin_s, end_s)


def signal_edges(net_file: str | Path) -> list[str]:
    """Edges entering or leaving a traffic light of ``net_file``: where detectors usually are."""
    edges: set[str] = set()
    for _, elem in ET.iterparse(net_file, events=("end",)):
        if elem.tag == "connection" and elem.get("tl"):
            edges.update((elem.get("from"), elem.get("to")))
        if elem.tag in ("edge", "junction", "connection"):
            elem.clear()
    return sorted(e for e in edges if e and not e.startswith(":"))


# ---------------------------------------------------------------------------- measurement
def measure_counts(
    scenario,
    seed: int = 1,
    *,
    interval_s: float = 900.0,
    edges: Sequence[str] | None = None,
    controller=None,
    **sim_kwargs,
) -> pd.DataFrame:
    """Edge counts per interval measured in one simulation of ``scenario`` (a detector study).

    Adds an ``edgeData`` output to the run (``entered + departed``, see
    :func:`read_edgedata`). A scenario run from a ``.sumocfg`` is run from its net, route
    and additional files instead, so that the output can be added.

    Parameters
    ----------
    scenario : Scenario
        Network, demand, window.
    seed : int
        SUMO seed of the run (one "day" of counts).
    interval_s : float
        Counting interval.
    edges : sequence of str, optional
        Edges to report (zeros included); default: every edge that saw a vehicle.
    controller : Controller, optional
        Signal control during the study (default: the existing fixed-time program).
    **sim_kwargs
        Passed to :func:`~citybrain_ml.optimize.simulation.simulate`.

    Returns
    -------
    DataFrame
        :data:`EDGE_COLUMNS`.
    """
    from citybrain_ml.optimize.simulation import FixedTimeController, simulate

    with tempfile.TemporaryDirectory(prefix="citybrain_counts_") as tmp:
        out = Path(tmp) / "edgedata.xml"
        add = Path(tmp) / "counts.add.xml"
        root = ET.Element("additional")
        ET.SubElement(root, "edgeData", id="citybrain_counts", file=str(out.resolve()),
                      period=_num(interval_s), begin=_num(scenario.begin_s),
                      end=_num(scenario.end_s), excludeEmpty="true")  # fmt: skip
        _write_xml(root, add)
        measured = replace(
            scenario, sumocfg=None, additional_files=(*scenario.additional_files, add)
        )
        simulate(measured, controller or FixedTimeController(), seed, **sim_kwargs)
        counts = read_edgedata(out)
    return _complete(counts, edges, scenario.begin_s, scenario.end_s, interval_s)


def _complete(counts: pd.DataFrame, edges, begin_s, end_s, interval_s) -> pd.DataFrame:
    """Every (edge, interval) of the window, zeros where nothing was counted."""
    n_bins = int(math.ceil((end_s - begin_s) / interval_s))
    lows = [begin_s + b * interval_s for b in range(n_bins)]
    ids = sorted(set(counts["edge_id"])) if edges is None else sorted(set(edges))
    grid = pd.DataFrame(
        [(e, lo, min(lo + interval_s, end_s)) for e in ids for lo in lows],
        columns=list(EDGE_COLUMNS[:3]),
    )
    got = counts.groupby(["edge_id", "interval_begin"], as_index=False)["count"].sum()
    out = grid.merge(got, on=["edge_id", "interval_begin"], how="left").fillna({"count": 0.0})
    return read_counts(out, kind="edge")


# ---------------------------------------------------------------------------- routeSampler
@dataclass
class SampledDemand:
    """Routes rebuilt from counts by :func:`sample_routes`.

    Attributes
    ----------
    scenario : Scenario
        The network with the new demand (vehicle types file first, then the routes).
    route_file, vtype_file, counts_file, mismatch_file : Path
        What routeSampler read and wrote (``mismatch_file``: measured count, deficit and GEH
        per counting location and interval).
    vehicles : int
        Vehicles written.
    log : str
        routeSampler's own summary lines (its GEH figures are per interval).
    """

    scenario: object
    route_file: Path
    vtype_file: Path | None
    counts_file: Path
    mismatch_file: Path
    vehicles: int
    log: str = ""
    turn_file: Path | None = None


def sample_routes(
    net_file: str | Path,
    counts: pd.DataFrame,
    candidate_route_files: Sequence[str | Path],
    out_dir: str | Path,
    *,
    begin_s: float,
    end_s: float,
    turn_counts: pd.DataFrame | None = None,
    seed: int = 42,
    optimize: str | int | None = "full",
    vehicle_type: str | None = "auto",
    additional_files: Sequence[str | Path] = (),
    name: str | None = None,
):
    """Routes that reproduce ``counts``, sampled by SUMO's ``routeSampler.py``.

    routeSampler draws routes from the candidates, interval by interval, while every
    counted edge (and turn) still misses vehicles, then (``optimize="full"``) solves a linear
    program over route usage to close the remaining gaps. Each sampled vehicle departs at a
    uniformly random time inside its interval.

    Parameters
    ----------
    net_file : path
        The SUMO network.
    counts : DataFrame
        Edge counts (:func:`read_counts` format).
    candidate_route_files : sequence of paths
        Routes routeSampler may use: the city's own routes (trip files are routed by
        duarouter first, into ``out_dir``) or :func:`random_candidate_routes`.
    out_dir : path
        Where the count files and the routes go.
    begin_s, end_s : float
        The simulated window (also routeSampler's ``-b/-e``).
    turn_counts : DataFrame, optional
        Turn counts (``from_edge, to_edge, ...``), fitted together with the edge counts.
    seed : int
        routeSampler's ``--seed``.
    optimize : "full", int or None
        routeSampler's ``--optimize`` (None: sampling only).
    vehicle_type : str or None
        ``type`` of the written vehicles; ``"auto"``: the most common type among the
        candidate vehicles. The candidates' ``vType`` definitions are copied into a file
        loaded before the routes, so a type such as RESCO's ``pkw`` (4.3 m, 1.5 m gap) keeps
        its size.
    additional_files : sequence of paths
        Kept in the returned scenario.
    name : str, optional
        Scenario name (default ``<net stem>_counts``).

    Returns
    -------
    SampledDemand
    """
    from citybrain_ml.optimize.network import sumo_home
    from citybrain_ml.optimize.simulation import Scenario

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    script = sumo_home() / "tools" / "routeSampler.py"
    if not script.is_file():
        raise ImportError(f"SUMO's routeSampler.py not found at {script}")
    candidates = routed_files(net_file, list(candidate_route_files), out)
    counts = read_counts(counts, kind="edge")
    counts = counts[(counts["interval_end"] > begin_s) & (counts["interval_begin"] < end_s)]
    if counts.empty:
        raise ValueError(f"no counts inside the window [{begin_s}, {end_s})")
    counts_file = write_edgedata(counts, out / "counts.edgedata.xml")
    mismatch = out / "mismatch.xml"
    route_file = out / "sampled.rou.xml"
    args = [
        sys.executable, str(script),
        "-r", ",".join(str(c) for c in candidates),
        "-d", str(counts_file),
        "-o", str(route_file),
        "--mismatch-output", str(mismatch),
        "-b", _num(begin_s),
        "-e", _num(end_s),
        "--seed", str(int(seed)),
        "--prefix", "cb",
    ]  # fmt: skip
    turn_file = None
    if turn_counts is not None:
        turn_file = write_turn_counts(turn_counts, out / "counts.turns.xml")
        args += ["-t", str(turn_file)]
    if optimize is not None:
        args += ["--optimize", str(optimize)]
    vtype_file, vtype = _vehicle_types(candidates, out / "vtypes.rou.xml", vehicle_type)
    if vtype:
        args += ["--attributes", f'type="{vtype}"']
    log = _run_tool(args, what=f"routeSampler on {counts_file}")
    routes = [vtype_file, route_file] if vtype_file else [route_file]
    scenario = Scenario.from_files(
        net_file, routes, begin_s=int(begin_s), end_s=int(end_s),
        additional_files=additional_files,
        name=name or Path(net_file).name.split(".")[0] + "_counts",
    )  # fmt: skip
    n = sum(1 for _, e in ET.iterparse(route_file, events=("end",)) if e.tag == "vehicle")
    return SampledDemand(scenario, route_file, vtype_file, counts_file, mismatch, n, log,
                         turn_file)  # fmt: skip


def _run_tool(args: list[str], *, what: str) -> str:
    """Run a SUMO python tool; its summary goes to stdout, so capture both streams.

    routeSampler reports some errors (no input routes, no count file) with exit code 0, so
    a line starting with ``Error`` also counts as a failure.
    """
    import subprocess

    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    text = proc.stdout + proc.stderr
    failed = any(ln.lstrip().startswith("Error") for ln in text.splitlines())
    if proc.returncode != 0 or failed:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        raise RuntimeError(f"{what} failed: {'; '.join(lines[-5:]) or proc.returncode}")
    return text


def _vehicle_types(candidates, path: Path, vehicle_type: str | None):
    """Copy the candidates' ``vType`` definitions to ``path``; pick the type to write."""
    types, used = [], Counter()
    for file in candidates:
        depth = 0
        for event, elem in ET.iterparse(file, events=("start", "end")):
            if event == "start":
                depth += 1
                continue
            depth -= 1
            if depth == 1 and elem.tag in ("vType", "vTypeDistribution"):
                types.append(elem)
            elif depth == 1 and elem.tag == "vehicle":
                used[elem.get("type")] += 1
                elem.clear()
    chosen = vehicle_type
    if vehicle_type == "auto":
        common = [t for t, _ in used.most_common() if t]
        chosen = common[0] if common else None
    if not types:
        return None, chosen
    root = ET.Element("routes")
    seen = set()
    for t in types:
        if t.get("id") not in seen:
            seen.add(t.get("id"))
            root.append(t)
    return _write_xml(root, path), chosen


# ---------------------------------------------------------------------------- comparison
def geh(modelled, observed) -> np.ndarray:
    """GEH statistic of hourly flows: ``sqrt(2 (M - C)^2 / (M + C))`` (0 where both are 0).

    Both arguments are **hourly** flows (veh/h); scale interval counts by ``3600 / length``
    first (:func:`compare_counts` does). GEH < 5 is the usual acceptable match.
    """
    m = np.asarray(modelled, dtype=float)
    c = np.asarray(observed, dtype=float)
    total = m + c
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.sqrt(2.0 * (m - c) ** 2 / total)
    return np.where(total > 0, out, 0.0)


@dataclass
class CountComparison:
    """Modelled vs observed counts on the counted edges (:func:`compare_counts`).

    Attributes
    ----------
    edges : DataFrame
        One row per counted edge over the whole window: observed and modelled hourly flow,
        GEH, relative error.
    intervals : DataFrame
        One row per (edge, interval): the same, hourly flows from the interval's counts.
    summary : dict
        ``edges``, ``geh_ok_share`` (edges with GEH < ``geh_ok`` over the window),
        ``geh_ok_share_intervals``, ``within_tol_share`` (edges whose flow is within
        ``rel_tol`` of the observed one; edges observed at zero count as within only when
        modelled at zero), ``within_tol_share_busy`` (the same over edges with at least
        ``busy_veh_h``), ``mean_abs_rel_error`` (busy edges), ``total_observed``,
        ``total_modelled``.
    """

    edges: pd.DataFrame
    intervals: pd.DataFrame
    summary: dict = field(default_factory=dict)


def compare_counts(
    observed: pd.DataFrame,
    modelled: pd.DataFrame,
    *,
    geh_ok: float = GEH_OK,
    rel_tol: float = 0.10,
    busy_veh_h: float = 50.0,
) -> CountComparison:
    """GEH and relative flow error of ``modelled`` counts against ``observed`` ones.

    The counted edges are those of ``observed`` (missing modelled counts are zero). GEH uses
    hourly flows: over the whole window (the headline, as a one-hour peak count is usually
    judged) and per interval.
    """
    obs = read_counts(observed, kind="edge")
    mod = read_counts(modelled, kind="edge")
    keys = ["edge_id", "interval_begin", "interval_end"]
    both = obs.merge(mod, on=keys, how="left", suffixes=("_obs", "_mod"))
    both["count_mod"] = both["count_mod"].fillna(0.0)
    hours = (both["interval_end"] - both["interval_begin"]) / 3600.0
    both["flow_obs_veh_h"] = both["count_obs"] / hours
    both["flow_mod_veh_h"] = both["count_mod"] / hours
    both["geh"] = geh(both["flow_mod_veh_h"], both["flow_obs_veh_h"])
    window = both.groupby("edge_id", as_index=False).agg(
        count_obs=("count_obs", "sum"), count_mod=("count_mod", "sum"),
        begin=("interval_begin", "min"), end=("interval_end", "max"),
    )  # fmt: skip
    span = (window["end"] - window["begin"]) / 3600.0
    window["flow_obs_veh_h"] = window["count_obs"] / span
    window["flow_mod_veh_h"] = window["count_mod"] / span
    window["geh"] = geh(window["flow_mod_veh_h"], window["flow_obs_veh_h"])
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = (window["count_mod"] - window["count_obs"]) / window["count_obs"]
    window["rel_error"] = rel.where(window["count_obs"] > 0)
    within = np.where(window["count_obs"] > 0, rel.abs() <= rel_tol, window["count_mod"] == 0)
    busy = window["flow_obs_veh_h"] >= busy_veh_h
    summary = {
        "edges": len(window),
        "geh_ok_share": float((window["geh"] < geh_ok).mean()) if len(window) else math.nan,
        "geh_ok_share_intervals": float((both["geh"] < geh_ok).mean()) if len(both) else math.nan,
        "within_tol_share": float(within.mean()) if len(window) else math.nan,
        "busy_edges": int(busy.sum()),
        "within_tol_share_busy": float(within[busy.to_numpy()].mean()) if busy.any() else math.nan,
        "mean_abs_rel_error": float(window.loc[busy, "rel_error"].abs().mean())
        if busy.any()
        else math.nan,
        "total_observed": float(window["count_obs"].sum()),
        "total_modelled": float(window["count_mod"].sum()),
    }
    return CountComparison(window.drop(columns=["begin", "end"]), both, summary)


# ---------------------------------------------------------------------------- forecasting
def counts_history_frame(days: Sequence[pd.DataFrame], *, start: str | None = None) -> pd.DataFrame:
    """Past days' edge counts as a citybrain long frame ``series_id, timestamp, value``.

    Day ``d`` of ``days`` is the calendar day ``start + d`` (default: the days just before
    :data:`FORECAST_DAY`, a Friday, so the forecast day follows them); an interval starting at
    ``interval_begin`` seconds of simulation time is stamped ``day + interval_begin`` seconds
    (simulation time read as time of day, e.g. RESCO Cologne's 25200 s = 07:00), so a
    forecaster sees the same hour on consecutive days.
    """
    if not days:
        raise ValueError("counts_history_frame needs at least one day of counts")
    frames = []
    day0 = pd.Timestamp(start or FORECAST_DAY) - pd.Timedelta(days=0 if start else len(days))
    for d, counts in enumerate(days):
        c = read_counts(counts, kind="edge")
        if (c["interval_end"].max() - c["interval_begin"].min()) > 86400:
            raise ValueError("a day of counts spans more than 24 h of simulation time")
        stamp = day0 + pd.Timedelta(days=d) + pd.to_timedelta(c["interval_begin"] % 86400, "s")
        frames.append(pd.DataFrame({"series_id": c["edge_id"], "timestamp": stamp,
                                    "value": c["count"]}))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def forecast_counts(
    history: pd.DataFrame,
    *,
    begin_s: float,
    end_s: float,
    interval_s: float,
    model: str = "auto",
    model_params: dict | None = None,
) -> tuple[pd.DataFrame, object]:
    """A citybrain forecast of the next day's counts over ``[begin_s, end_s)``.

    Parameters
    ----------
    history : DataFrame
        :func:`counts_history_frame` output (one series per counted edge).
    begin_s, end_s, interval_s : float
        The window being forecast (same time of day as the history) and its intervals.
    model : str
        A :func:`citybrain_ml.models.make_model` name (``auto``, ``seasonal_naive``...).
    model_params : dict, optional
        Its parameters (``horizon`` is set to the intervals of the window).

    Returns
    -------
    (DataFrame, Forecaster)
        Counts in :data:`EDGE_COLUMNS` format -- the point forecast (``yhat``, the median
        for the baselines and ``auto``) rounded to whole vehicles, at least 0 -- plus the
        raw ``yhat``; and the fitted model.
    """
    from citybrain_ml.models import make_model

    n = int(math.ceil((end_s - begin_s) / interval_s))
    params = {**(model_params or {}), "horizon": n}
    forecaster = make_model(model, **params)
    freq = pd.tseries.frequencies.to_offset(pd.Timedelta(seconds=interval_s)).freqstr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        forecaster.fit(history, freq=freq)
        fc = forecaster.predict(n)
    day = fc["timestamp"].dt.normalize()
    begin = (fc["timestamp"] - day).dt.total_seconds() + (begin_s // 86400) * 86400
    out = pd.DataFrame({
        "edge_id": fc["series_id"].astype(str),
        "interval_begin": begin,
        "interval_end": np.minimum(begin + interval_s, end_s),
        "yhat": fc["yhat"].to_numpy(dtype=float),
    })  # fmt: skip
    inside = (out["interval_begin"] >= begin_s) & (out["interval_begin"] < end_s)
    if not inside.all() or out.empty:
        raise ValueError(
            f"the {model} forecast does not cover the window [{begin_s}, {end_s}) of the next "
            f"day (got intervals {sorted(out['interval_begin'].unique())[:5]}...)"
        )
    out["count"] = whole_counts(out, "yhat")
    out = out[["edge_id", "interval_begin", "interval_end", "count", "yhat"]]
    return out.sort_values(["interval_begin", "edge_id"]).reset_index(drop=True), forecaster


def whole_counts(frame: pd.DataFrame, column: str, by: str = "edge_id") -> pd.Series:
    """Whole vehicles from fractional forecasts, keeping each edge's running total.

    Rounding every interval on its own loses demand when forecasts are small (0.4 vehicles a
    minute rounds to 0 all hour). Instead each edge's cumulative forecast is rounded and
    differenced, so its total over the window is its rounded forecast total and the
    vehicles fall in the intervals where the forecast put them. Negative or missing
    forecasts count 0.
    """
    values = frame[column].astype(float).fillna(0.0).clip(lower=0.0)
    order = frame.sort_values([by, "interval_begin"]).index
    cum = values.loc[order].groupby(frame.loc[order, by]).cumsum()
    whole = np.rint(cum)
    prev = whole.groupby(frame.loc[order, by]).shift(1).fillna(0.0)
    return (whole - prev).reindex(frame.index)


@dataclass
class ForecastDemand:
    """The digital twin on forecast demand (:func:`forecast_demand_scenario`).

    Attributes
    ----------
    scenario : Scenario
        The network with routes rebuilt from the forecast counts.
    history : DataFrame
        The past days' counts (:func:`counts_history_frame`).
    forecast : DataFrame
        Forecast counts per edge and interval.
    sampled : SampledDemand
        routeSampler's files.
    fit : CountComparison
        Rebuilt demand vs the forecast counts (route counts of the sampled routes).
    info : dict
        What was done, for records: model, days, seeds, interval, counted edges, GEH share.
    """

    scenario: object
    history: pd.DataFrame
    forecast: pd.DataFrame
    sampled: SampledDemand
    fit: CountComparison
    info: dict


def forecast_demand_scenario(
    scenario,
    out_dir: str | Path,
    *,
    history_seeds: Sequence[int] = (1101, 1102, 1103, 1104, 1105),
    history: Sequence[pd.DataFrame] | None = None,
    interval_s: float = 900.0,
    model: str = "auto",
    model_params: dict | None = None,
    edges: Sequence[str] | str = "signals",
    candidate_route_files: Sequence[str | Path] | None = None,
    seed: int = 42,
    measure_fn: Callable | None = None,
    **sim_kwargs,
) -> ForecastDemand:
    """Rebuild ``scenario``'s demand from a citybrain forecast of its own counts.

    1. a before-study: edge counts measured on ``history_seeds`` (one simulated day each,
       existing signal program) -- or ``history``, a city's own past days;
    2. a forecast of the next day's counts over the window (:func:`forecast_counts`);
    3. routes sampled to the forecast counts (:func:`sample_routes`), candidates from the
       scenario's own route files (trips routed by duarouter) unless given.

    Parameters
    ----------
    scenario : Scenario
        The network, its demand (for the before-study and as candidates) and window.
    out_dir : path
        Where counts, forecast and routes are written.
    history_seeds : sequence of int
        One simulated day of counts per seed (ignored when ``history`` is given).
    history : sequence of DataFrame, optional
        Past days' edge counts (:func:`read_counts` format), oldest first.
    interval_s : float
        Counting interval.
    model, model_params
        The forecaster (:func:`citybrain_ml.models.make_model`).
    edges : sequence of str, "signals" or "all"
        Counted edges: a list, the edges at the signals (:func:`signal_edges`), or every
        edge that saw a vehicle on some past day.
    candidate_route_files : sequence of paths, optional
        Routes routeSampler may use (default: the scenario's route files).
    seed : int
        routeSampler seed.
    measure_fn : callable, optional
        Stand-in for :func:`measure_counts` (tests).
    **sim_kwargs
        Passed to the before-study runs.

    Returns
    -------
    ForecastDemand
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(edges, str):
        if edges not in ("signals", "all"):
            raise ValueError(f"edges must be a list, 'signals' or 'all', got {edges!r}")
        edges = (signal_edges(scenario.net_file) or None) if edges == "signals" else None
    measured = history is None
    if measured:
        if len(history_seeds) < 2:
            raise ValueError("a forecast needs at least two days of counts (history_seeds)")
        measure = measure_fn or measure_counts
        history = [
            measure(scenario, s, interval_s=interval_s, edges=edges, **sim_kwargs)
            for s in history_seeds
        ]
        if edges is None:  # every edge seen on some day, zeros on the other days
            seen = sorted(set().union(*(set(h["edge_id"]) for h in history)))
            history = [
                _complete(h, seen, scenario.begin_s, scenario.end_s, interval_s) for h in history
            ]
    frame = counts_history_frame(history)
    frame.to_csv(out / "count_history.csv", index=False)
    fc, forecaster = forecast_counts(
        frame, begin_s=scenario.begin_s, end_s=scenario.end_s, interval_s=interval_s,
        model=model, model_params=model_params,
    )  # fmt: skip
    fc.to_csv(out / "forecast_counts.csv", index=False)
    counts = fc[list(EDGE_COLUMNS)]
    sampled = sample_routes(
        scenario.net_file, counts, candidate_route_files or list(scenario.route_files), out,
        begin_s=scenario.begin_s, end_s=scenario.end_s, seed=seed,
        additional_files=scenario.additional_files, name=f"{scenario.name}_forecast",
    )  # fmt: skip
    rebuilt = route_counts(
        sampled.route_file, begin_s=scenario.begin_s, end_s=scenario.end_s,
        interval_s=interval_s, edges=sorted(set(counts["edge_id"])),
    )  # fmt: skip
    fit = compare_counts(counts, rebuilt)
    chosen = getattr(forecaster, "selected_", None)
    info = {
        "demand": "forecast",
        "forecast_model": model,
        "forecast_model_repr": repr(forecaster),
        "forecast_selected": _jsonable(chosen),
        "history_days": len(history),
        "forecast_model_params": _jsonable(model_params or {}),
        "history_seeds": [int(s) for s in history_seeds] if measured else [],
        "count_interval_s": float(interval_s),
        "counted_edges": int(counts["edge_id"].nunique()),
        "forecast_vehicles": float(counts["count"].sum()),
        "sampled_vehicles": sampled.vehicles,
        "sampled_geh_ok_share": fit.summary["geh_ok_share"],
        "route_file": str(sampled.route_file),
        "forecast_counts_file": str(out / "forecast_counts.csv"),
        "count_history_file": str(out / "count_history.csv"),
    }
    return ForecastDemand(sampled.scenario, frame, fc, sampled, fit, info)


def _jsonable(value):
    if value is None:
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, int | float | str | bool):
        return value
    return str(value)


# ---------------------------------------------------------------------------- helpers
def _num(x: float) -> str:
    x = float(x)
    return str(int(x)) if x.is_integer() else f"{x:g}"


def _write_xml(root: ET.Element, path: Path) -> Path:
    from citybrain_ml.data.io import atomic_write_bytes

    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True), path)
