"""Turn a city's network files into SUMO scenarios: CityFlow JSON and OpenStreetMap.

* :func:`cityflow_to_sumo` -- a CityFlow roadnet + flow file (the format of the Chinese
  signal-control benchmarks and City Brain challenges, e.g. Jinan 3x4) becomes SUMO plain
  XML (nodes, edges, lane-to-lane connections, signal programs), a ``.net.xml`` through
  ``netconvert`` and a route file with one vehicle per CityFlow vehicle;
* :func:`osm_to_sumo` -- an OpenStreetMap extract (``.osm``) becomes a ``.net.xml`` through
  ``netconvert`` (signals from ``highway=traffic_signals``), with random trips as demand
  when the city has no route file yet.

Both write a ``.sumocfg`` beside the files, so the result runs like any city's own network
(``network: {sumocfg: ...}`` in a signals job, or :meth:`Scenario.from_sumocfg`).

CityFlow conventions this follows (CityFlow docs, "Roadnet File" / "Flow File"):

* lane 0 of a road is its **leftmost** lane (next to the centre line); SUMO counts from the
  right, so CityFlow lane ``i`` of an ``n``-lane road is SUMO lane ``n - 1 - i``;
* a road's lanes lie to the right of its points, as SUMO's default ``spreadType="right"``;
* a light phase lists the road links (movements) that may go; right turns are in every
  phase of the benchmark files (turning right on red, yielding), and get a SUMO ``g``
  (permissive: yield to conflicting traffic) rather than a priority ``G``;
* a flow generates vehicles at ``startTime``, then every ``interval`` s up to ``endTime``
  inclusive (``endTime = -1``: until the end of the simulated window).
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from citybrain_ml.optimize.network import run_sumo_tool, sumo_binary, sumo_home

CITYFLOW_PROGRAM_ID = "cityflow"


@dataclass
class ImportedNetwork:
    """Files written by an importer and what they hold.

    Attributes
    ----------
    sumocfg, net_file : Path
        The configuration to run and the network ``netconvert`` built.
    route_files : list of Path
        Demand (empty when none was made).
    plain_files : dict
        The plain-XML inputs given to ``netconvert`` (``nodes``, ``edges``...).
    counts : dict
        Sizes read from the source: intersections, signals, roads, lanes, connections,
        vehicles -- compare them with the SUMO files to check nothing was lost.
    """

    sumocfg: Path
    net_file: Path
    route_files: list[Path] = field(default_factory=list)
    plain_files: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------- CityFlow
def read_cityflow_json(path: str | Path, what: str) -> object:
    """Load a CityFlow JSON file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CityFlow {what} file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({what}): {exc}") from exc


def cityflow_plain_xml(
    roadnet: dict,
    *,
    phases: list[int] | None = None,
    green_s: float | None = None,
    yellow_s: float = 5.0,
    source: str = "roadnet",
) -> dict[str, ET.Element]:
    """SUMO plain XML (nodes, edges, connections, signal programs) for a CityFlow roadnet.

    Parameters
    ----------
    roadnet : dict
        The parsed roadnet JSON (``intersections`` and ``roads``).
    phases : list of int, optional
        Indices of the light phases the fixed-time program cycles through, in order.
        Default: every light phase that gives a non-right-turn movement green, in file order.
        The benchmark convention of the Jinan/Hangzhou files is ``[1, 2, 3, 4]`` (WT_ET,
        NT_ST, WL_EL, NL_SL) with 15 s greens.
    green_s : float, optional
        Green of every phase; default each light phase's own ``time``.
    yellow_s : float
        Yellow after each green on the links that lose it (0: none).
    source : str
        Name of the roadnet file, for error messages.

    Returns
    -------
    dict
        ``nodes``, ``edges``, ``connections``, ``tllogic``: XML roots for netconvert.
    """
    intersections = _field(roadnet, "intersections", source)
    roads = _field(roadnet, "roads", source)
    n_lanes = {r["id"]: len(r["lanes"]) for r in roads}
    nodes, edges = ET.Element("nodes"), ET.Element("edges")
    connections, tllogic = ET.Element("connections"), ET.Element("tlLogics")
    for inter in intersections:
        signalised = _is_signalised(inter)
        ET.SubElement(
            nodes,
            "node",
            id=inter["id"],
            x=_num(inter["point"]["x"]),
            y=_num(inter["point"]["y"]),
            type="traffic_light" if signalised else "priority",
            **({"tl": inter["id"]} if signalised else {}),
        )
    for road in roads:
        edge = ET.SubElement(
            edges,
            "edge",
            id=road["id"],
            **{"from": road["startIntersection"], "to": road["endIntersection"]},
            numLanes=str(len(road["lanes"])),
            speed=_num(max(lane["maxSpeed"] for lane in road["lanes"])),
        )
        if len(road.get("points", [])) > 2:
            edge.set("shape", " ".join(f"{_num(p['x'])},{_num(p['y'])}" for p in road["points"]))
        for i, lane in enumerate(road["lanes"]):
            ET.SubElement(
                edge,
                "lane",
                index=str(len(road["lanes"]) - 1 - i),  # CityFlow counts from the left
                speed=_num(lane["maxSpeed"]),
                width=_num(lane.get("width", 3.2)),
            )
    for inter in intersections:
        links = _lane_links(inter, n_lanes, source)
        for (from_edge, to_edge, from_lane, to_lane), _ in links:
            ET.SubElement(connections, "connection", **{"from": from_edge, "to": to_edge},
                          fromLane=str(from_lane), toLane=str(to_lane))  # fmt: skip
        if _is_signalised(inter):
            tllogic.append(_tl_logic(inter, links, phases, green_s, yellow_s, source))
            for k, ((from_edge, to_edge, from_lane, to_lane), _) in enumerate(links):
                ET.SubElement(tllogic, "connection", **{"from": from_edge, "to": to_edge},
                              fromLane=str(from_lane), toLane=str(to_lane), tl=inter["id"],
                              linkIndex=str(k))  # fmt: skip
    return {"nodes": nodes, "edges": edges, "connections": connections, "tllogic": tllogic}


def _field(obj: dict, key: str, source: str):
    if not isinstance(obj, dict) or key not in obj:
        raise ValueError(f"{source}: not a CityFlow roadnet (no {key!r})")
    return obj[key]


def _num(value: float) -> str:
    return f"{float(value):g}"


def _is_signalised(inter: dict) -> bool:
    """A real (non-virtual) intersection with movements and at least one light phase."""
    light = inter.get("trafficLight") or {}
    return (
        not inter.get("virtual", False)
        and bool(inter.get("roadLinks"))
        and bool(light.get("lightphases"))
    )


def _lane_links(
    inter: dict, n_lanes: dict[str, int], source: str
) -> list[tuple[tuple[str, str, int, int], tuple[int, str]]]:
    """Every lane link of an intersection in SUMO lane numbers, with (road link, type).

    The position in this list is the SUMO signal link index, so light phases (which name
    road links) translate into state strings one character per lane link.
    """
    out = []
    for k, link in enumerate(inter.get("roadLinks", [])):
        start, end = link["startRoad"], link["endRoad"]
        for road in (start, end):
            if road not in n_lanes:
                raise ValueError(
                    f"{source}: intersection {inter['id']!r} links unknown road {road!r}"
                )
        for ll in link["laneLinks"]:
            key = (
                start,
                end,
                n_lanes[start] - 1 - int(ll["startLaneIndex"]),
                n_lanes[end] - 1 - int(ll["endLaneIndex"]),
            )
            out.append((key, (k, link.get("type", ""))))
    return out


def _tl_logic(inter, links, phases, green_s, yellow_s, source) -> ET.Element:
    """The fixed-time program: the chosen light phases in order, yellow where green ends."""
    light = inter["trafficLight"]["lightphases"]
    states = [_phase_state(set(p.get("availableRoadLinks", [])), links) for p in light]
    order = phases if phases is not None else [i for i, s in enumerate(states) if "G" in s]
    for i in order:
        if not 0 <= i < len(light):
            raise ValueError(
                f"{source}: intersection {inter['id']!r} has {len(light)} light phases; "
                f"phase {i} does not exist"
            )
    if not order:
        raise ValueError(f"{source}: intersection {inter['id']!r}: no light phase gives green")
    logic = ET.Element("tlLogic", id=inter["id"], programID=CITYFLOW_PROGRAM_ID, type="static",
                       offset="0")  # fmt: skip
    for n, i in enumerate(order):
        duration = green_s if green_s is not None else float(light[i].get("time", 0))
        if duration > 0:
            ET.SubElement(logic, "phase", duration=_num(duration), state=states[i])
        nxt = states[order[(n + 1) % len(order)]]
        yellow = "".join(
            "y" if a in "Gg" and b not in "Gg" else a for a, b in zip(states[i], nxt, strict=True)
        )
        if yellow_s > 0 and yellow != states[i]:
            ET.SubElement(logic, "phase", duration=_num(yellow_s), state=yellow)
    return logic


def _phase_state(available: set[int], links) -> str:
    """One character per lane link: ``G`` go, ``g`` right turn (yields), ``r`` stop."""
    chars = []
    for _, (k, kind) in links:
        if k not in available:
            chars.append("r")
        else:
            chars.append("g" if kind == "turn_right" else "G")
    return "".join(chars)


def cityflow_routes_xml(
    flows: list, roadnet: dict, *, end_s: float = 3600.0, source: str = "flow"
) -> tuple[ET.Element, int]:
    """SUMO routes with one ``<vehicle>`` per vehicle a CityFlow flow file generates.

    Parameters
    ----------
    flows : list
        The parsed flow JSON: entries with ``vehicle`` (parameters), ``route`` (road ids),
        ``startTime``, ``endTime``, ``interval``.
    roadnet : dict
        The roadnet, to check every route follows existing movements.
    end_s : float
        Window end, used for flows with ``endTime = -1``.
    source : str
        Name of the flow file, for error messages.

    Returns
    -------
    (Element, int)
        The ``<routes>`` root (vehicles sorted by departure, as SUMO needs) and the number
        of vehicles.

    Notes
    -----
    Vehicle parameters map to a SUMO ``vType``: ``length``, ``minGap``, ``maxSpeed``,
    ``usualPosAcc`` -> ``accel``, ``usualNegAcc`` -> ``decel``, ``maxNegAcc`` ->
    ``emergencyDecel``, ``headwayTime`` -> ``tau``. SUMO's driver imperfection (``sigma``
    0.5) is kept, so seeds give different runs; CityFlow itself is deterministic.
    Vehicles enter on the best lane for their route at the fastest safe speed.
    """
    if not isinstance(flows, list):
        raise ValueError(f"{source}: a CityFlow flow file is a JSON list of flows")
    movements = {
        (link["startRoad"], link["endRoad"])
        for inter in roadnet["intersections"]
        for link in inter.get("roadLinks", [])
    }
    roads = {r["id"] for r in roadnet["roads"]}
    types: dict[str, str] = {}
    vehicles = []
    for i, flow in enumerate(flows):
        route = list(flow.get("route") or [])
        if not route:
            raise ValueError(f"{source}: flow {i} has no route")
        unknown = [r for r in route if r not in roads]
        if unknown:
            raise ValueError(f"{source}: flow {i}: unknown road(s) {unknown}")
        for a, b in zip(route, route[1:], strict=False):
            if (a, b) not in movements:
                raise ValueError(f"{source}: flow {i}: no movement from {a!r} to {b!r}")
        params = json.dumps(flow.get("vehicle", {}), sort_keys=True)
        vtype = types.setdefault(params, f"cityflow{len(types)}")
        for k, depart in enumerate(_flow_departures(flow, end_s, f"{source}: flow {i}")):
            vehicles.append((depart, i, k, vtype, route))
    root = ET.Element("routes")
    for params, vtype in types.items():
        ET.SubElement(root, "vType", id=vtype, **_vtype_attrs(json.loads(params)))
    vehicles.sort(key=lambda v: (v[0], v[1], v[2]))
    for depart, i, k, vtype, route in vehicles:
        veh = ET.SubElement(root, "vehicle", id=f"flow_{i}_{k}", type=vtype, depart=_num(depart),
                            departLane="best", departSpeed="max")  # fmt: skip
        ET.SubElement(veh, "route", edges=" ".join(route))
    return root, len(vehicles)


def _flow_departures(flow: dict, end_s: float, where: str) -> list[float]:
    start = float(flow.get("startTime", 0))
    end = float(flow.get("endTime", start))
    end = end_s if end < 0 else end
    interval = float(flow.get("interval", 1.0))
    if interval <= 0:
        raise ValueError(f"{where}: interval must be > 0, got {interval}")
    n = int((end - start) // interval) + 1 if end >= start else 0
    return [start + j * interval for j in range(n)]


_VTYPE_MAP = {
    "length": "length",
    "minGap": "minGap",
    "maxSpeed": "maxSpeed",
    "usualPosAcc": "accel",
    "usualNegAcc": "decel",
    "maxNegAcc": "emergencyDecel",
    "headwayTime": "tau",
    "width": "width",
}


def _vtype_attrs(params: dict) -> dict[str, str]:
    return {sumo: _num(params[cf]) for cf, sumo in _VTYPE_MAP.items() if cf in params}


def cityflow_to_sumo(
    roadnet_file: str | Path,
    flow_file: str | Path,
    out_dir: str | Path,
    *,
    name: str | None = None,
    phases: list[int] | None = None,
    green_s: float | None = None,
    yellow_s: float = 5.0,
    end_s: float = 3600.0,
) -> ImportedNetwork:
    """Import a CityFlow roadnet + flow into a SUMO net, routes and sumocfg.

    Parameters
    ----------
    roadnet_file, flow_file : str or Path
        CityFlow JSON files.
    out_dir : str or Path
        Folder for the SUMO files (created).
    name : str, optional
        File stem; defaults to the flow file's stem.
    phases, green_s, yellow_s
        The fixed-time program written for every signal (see :func:`cityflow_plain_xml`);
        it is the "existing plan" the controllers start from and compare with.
    end_s : float
        End of the simulated window written in the sumocfg (CityFlow episodes: 3600 s).

    Returns
    -------
    ImportedNetwork
        Paths and the counts read from the CityFlow files.
    """
    roadnet = read_cityflow_json(roadnet_file, "roadnet")
    flows = read_cityflow_json(flow_file, "flow")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = name or Path(flow_file).stem
    plain = cityflow_plain_xml(
        roadnet, phases=phases, green_s=green_s, yellow_s=yellow_s, source=str(roadnet_file)
    )
    files = {key: out / f"{stem}.{ext}" for key, ext in
             (("nodes", "nod.xml"), ("edges", "edg.xml"), ("connections", "con.xml"),
              ("tllogic", "tll.xml"))}  # fmt: skip
    for key, root in plain.items():
        _write_xml(root, files[key])
    net_file = out / f"{stem}.net.xml"
    run_sumo_tool(
        [
            sumo_binary("netconvert"),
            "--node-files", str(files["nodes"]),
            "--edge-files", str(files["edges"]),
            "--connection-files", str(files["connections"]),
            "--tllogic-files", str(files["tllogic"]),
            "--output-file", str(net_file),
            "--no-turnarounds", "true",  # CityFlow has no U-turns unless a road link says so
            "--offset.disable-normalization", "true",  # keep CityFlow coordinates
            "--no-warnings", "true",
        ],
        what=f"netconvert of {roadnet_file}",
    )  # fmt: skip
    routes, n_vehicles = cityflow_routes_xml(flows, roadnet, end_s=end_s, source=str(flow_file))
    route_file = _write_xml(routes, out / f"{stem}.rou.xml")
    sumocfg = write_sumocfg(out / f"{stem}.sumocfg", net_file, [route_file], 0, end_s)
    signals = [i for i in roadnet["intersections"] if _is_signalised(i)]
    counts = {
        "intersections": len(roadnet["intersections"]),
        "signals": len(signals),
        "roads": len(roadnet["roads"]),
        "lanes": sum(len(r["lanes"]) for r in roadnet["roads"]),
        "connections": len(plain["connections"]),
        "vehicles": n_vehicles,
    }
    return ImportedNetwork(sumocfg, net_file, [route_file], files, counts)


# ---------------------------------------------------------------------------- OSM
def osm_to_sumo(
    osm_file: str | Path,
    out_dir: str | Path,
    *,
    name: str | None = None,
    route_files: list[str | Path] | None = None,
    trips_period_s: float | None = 2.0,
    seed: int = 42,
    begin_s: float = 0.0,
    end_s: float = 3600.0,
    extra_netconvert: list[str] | None = None,
) -> ImportedNetwork:
    """Import an OpenStreetMap extract into a SUMO net (and random demand if none is given).

    Parameters
    ----------
    osm_file : str or Path
        ``.osm`` XML (e.g. exported from openstreetmap.org or cut with osmium).
    out_dir : str or Path
        Folder for the SUMO files.
    name : str, optional
        File stem; defaults to the OSM file's stem.
    route_files : list, optional
        The city's own demand for this net. Without it, ``randomTrips.py`` (SUMO's tools)
        makes trips every ``trips_period_s`` seconds between random edges, routed and
        validated -- a placeholder to rehearse with until counts are available.
    trips_period_s : float or None
        Period of the random trips (None: no demand; then ``route_files`` is needed).
    seed : int
        Seed of the random trips.
    begin_s, end_s : float
        Window written in the sumocfg (and of the random trips).
    extra_netconvert : list of str, optional
        More ``netconvert`` options (e.g. ``["--keep-edges.by-vclass", "passenger"]``).

    Returns
    -------
    ImportedNetwork

    Notes
    -----
    ``netconvert`` options used: OSM signals (``highway=traffic_signals``) become static
    signals with SUMO's default program (``--tls.guess-signals`` also joins signals that
    OSM maps on each carriageway); ``--junctions.join`` merges the many OSM nodes of a
    big junction; roundabouts and ramps are guessed; edges not reachable are removed.
    """
    osm_file = Path(osm_file)
    if not osm_file.is_file():
        raise FileNotFoundError(f"OSM file not found: {osm_file}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = name or osm_file.name.split(".")[0]
    net_file = out / f"{stem}.net.xml"
    run_sumo_tool(
        [
            sumo_binary("netconvert"),
            "--osm-files", str(osm_file),
            "--output-file", str(net_file),
            "--geometry.remove", "true",
            "--roundabouts.guess", "true",
            "--ramps.guess", "true",
            "--junctions.join", "true",
            "--tls.guess-signals", "true",
            "--tls.discard-simple", "true",
            "--tls.join", "true",
            "--tls.default-type", "static",
            "--remove-edges.isolated", "true",
            "--keep-edges.by-vclass", "passenger",
            "--no-warnings", "true",
            *(extra_netconvert or []),
        ],
        what=f"netconvert of {osm_file}",
    )  # fmt: skip
    routes = [Path(r) for r in route_files or []]
    for r in routes:
        if not r.is_file():
            raise FileNotFoundError(f"route file not found: {r}")
    if not routes and trips_period_s is not None:
        routes = [random_trips(net_file, out / f"{stem}.rou.xml", trips_period_s, seed,
                               begin_s, end_s)]  # fmt: skip
    if not routes:
        raise ValueError(f"{osm_file}: no demand: give route_files or trips_period_s")
    sumocfg = write_sumocfg(out / f"{stem}.sumocfg", net_file, routes, begin_s, end_s)
    counts = _net_counts(net_file)
    counts["vehicles"] = sum(_count_vehicles(r) for r in routes)
    return ImportedNetwork(sumocfg, net_file, routes, {"osm": osm_file}, counts)


def random_trips(
    net_file: Path, route_file: Path, period_s: float, seed: int, begin_s: float, end_s: float
) -> Path:
    """Random routed trips on ``net_file`` with SUMO's ``randomTrips.py``; returns the routes."""
    script = sumo_home() / "tools" / "randomTrips.py"
    if not script.is_file():
        raise ImportError(f"SUMO's randomTrips.py not found at {script}")
    trips = route_file.with_suffix(".trips.xml")
    run_sumo_tool(
        [
            sys.executable, str(script),
            "-n", str(net_file),
            "-o", str(trips),
            "-r", str(route_file),
            "-b", _num(begin_s),
            "-e", _num(end_s),
            "-p", _num(period_s),
            "--seed", str(int(seed)),
            "--fringe-factor", "10",  # most trips start and end at the edge of the map
            "--validate",
        ],
        what=f"randomTrips on {net_file}",
    )  # fmt: skip
    return route_file


def _net_counts(net_file: Path) -> dict[str, int]:
    counts = {"signals": 0, "roads": 0, "lanes": 0, "connections": 0}
    for _, elem in ET.iterparse(net_file, events=("end",)):
        if elem.tag == "tlLogic":
            counts["signals"] += 1
        elif elem.tag == "edge" and elem.get("function") != "internal":
            counts["roads"] += 1
            counts["lanes"] += len(elem.findall("lane"))
        elif elem.tag == "connection" and not elem.get("from", "").startswith(":"):
            counts["connections"] += 1
        if elem.tag in ("edge", "tlLogic", "junction"):
            elem.clear()
    return counts


def _count_vehicles(route_file: Path) -> int:
    n = 0
    for _, elem in ET.iterparse(route_file, events=("end",)):
        n += elem.tag in ("vehicle", "trip")
        if elem.tag in ("vehicle", "trip", "flow"):
            elem.clear()
    return n


# ---------------------------------------------------------------------------- writers
def write_sumocfg(
    path: Path, net_file: Path, route_files: list[Path], begin_s: float, end_s: float
) -> Path:
    """A minimal ``.sumocfg`` (file names relative to its folder, as SUMO reads them)."""
    root = ET.Element("configuration")
    inp = ET.SubElement(root, "input")
    ET.SubElement(inp, "net-file", value=_relative(net_file, path.parent))
    ET.SubElement(inp, "route-files",
                  value=",".join(_relative(r, path.parent) for r in route_files))  # fmt: skip
    time = ET.SubElement(root, "time")
    ET.SubElement(time, "begin", value=_num(begin_s))
    ET.SubElement(time, "end", value=_num(end_s))
    return _write_xml(root, path)


def _relative(file: Path, folder: Path) -> str:
    try:
        return str(Path(file).resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(Path(file).resolve())


def _write_xml(root: ET.Element, path: Path) -> Path:
    from citybrain_ml.data.io import atomic_write_bytes

    ET.indent(root)
    return atomic_write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True), path)
