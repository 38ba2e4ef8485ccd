"""CityFlow and OpenStreetMap importers: vehicle counts, lanes and phases survive the trip."""

from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from citybrain_ml.optimize.importers import cityflow_plain_xml, cityflow_routes_xml

needs_sumo = pytest.mark.skipif(
    importlib.util.find_spec("sumo") is None,
    reason="SUMO not installed: pip install -e '.[sim]' (eclipse-sumo)",
)

# one signal "c" with four two-lane approaches; virtual end nodes w, e, s, n
POINTS = {"c": (0, 0), "w": (-200, 0), "e": (200, 0), "s": (0, -200), "n": (0, 200)}
#: approach -> (left, straight, right) exit
TURNS = {"w": ("n", "e", "s"), "e": ("s", "w", "n"), "s": ("w", "n", "e"), "n": ("e", "s", "w")}


def _road(a: str, b: str) -> dict:
    # CityFlow lane 0 is the leftmost: give it another speed to see the order survive
    lanes = [{"width": 3.5, "maxSpeed": 10.0}, {"width": 3.5, "maxSpeed": 12.0}]
    return {
        "id": f"road_{a}_{b}",
        "points": [
            dict(zip("xy", POINTS[a], strict=True)),
            dict(zip("xy", POINTS[b], strict=True)),
        ],
        "lanes": lanes,
        "startIntersection": a,
        "endIntersection": b,
    }


def tiny_roadnet() -> dict:
    """Hand-written CityFlow roadnet: 8 roads, 12 movements, 16 lane links, 5 light phases."""
    roads = [_road(a, "c") for a in TURNS] + [_road("c", b) for b in TURNS]
    links = []
    for a, (left, straight, right) in TURNS.items():
        start = f"road_{a}_c"
        links.append(
            {
                "type": "turn_left",
                "startRoad": start,
                "endRoad": f"road_c_{left}",
                "laneLinks": [{"startLaneIndex": 0, "endLaneIndex": 0}],
            }
        )
        links.append(
            {
                "type": "go_straight",
                "startRoad": start,
                "endRoad": f"road_c_{straight}",
                "laneLinks": [
                    {"startLaneIndex": 0, "endLaneIndex": 0},
                    {"startLaneIndex": 1, "endLaneIndex": 1},
                ],
            }
        )
        links.append({"type": "turn_right", "startRoad": start, "endRoad": f"road_c_{right}",
                      "laneLinks": [{"startLaneIndex": 1, "endLaneIndex": 1}]})  # fmt: skip
    # road links: w = 0-2, e = 3-5, s = 6-8, n = 9-11 (left, straight, right each)
    rights = [2, 5, 8, 11]
    phases = [
        {"time": 5, "availableRoadLinks": rights},  # the benchmark's "all red but rights"
        {"time": 20, "availableRoadLinks": [1, 4, *rights]},  # W-E through
        {"time": 20, "availableRoadLinks": [7, 10, *rights]},  # S-N through
        {"time": 10, "availableRoadLinks": [0, 3, *rights]},  # W-E left
        {"time": 10, "availableRoadLinks": [6, 9, *rights]},  # S-N left
    ]
    intersections = [
        {"id": "c", "point": {"x": 0, "y": 0}, "width": 10, "roads": [r["id"] for r in roads],
         "roadLinks": links, "trafficLight": {"roadLinkIndices": list(range(12)),
                                              "lightphases": phases}, "virtual": False}
    ] + [
        {"id": k, "point": {"x": x, "y": y}, "width": 0, "roads": [], "roadLinks": [],
         "trafficLight": {"roadLinkIndices": [], "lightphases": []}, "virtual": True}
        for k, (x, y) in POINTS.items() if k != "c"
    ]  # fmt: skip
    return {"intersections": intersections, "roads": roads}


VEHICLE = {"length": 5.0, "width": 2.0, "maxPosAcc": 2.0, "maxNegAcc": 4.5, "usualPosAcc": 2.0,
           "usualNegAcc": 4.5, "minGap": 2.5, "maxSpeed": 11.111, "headwayTime": 2}  # fmt: skip


def tiny_flows() -> list:
    """15 vehicles: 11 W->E every 10 s, one S->W left, 3 N->W right turns every 25 s."""
    return [
        {"vehicle": VEHICLE, "route": ["road_w_c", "road_c_e"], "interval": 10.0,
         "startTime": 0, "endTime": 100},
        {"vehicle": VEHICLE, "route": ["road_s_c", "road_c_w"], "interval": 1.0,
         "startTime": 5, "endTime": 5},
        {"vehicle": {**VEHICLE, "length": 4.0}, "route": ["road_n_c", "road_c_w"],
         "interval": 25.0, "startTime": 0, "endTime": 50},
    ]  # fmt: skip


@pytest.fixture
def cityflow_files(tmp_path):
    roadnet, flow = tmp_path / "roadnet.json", tmp_path / "flow.json"
    roadnet.write_text(json.dumps(tiny_roadnet()))
    flow.write_text(json.dumps(tiny_flows()))
    return roadnet, flow


# ---------------------------------------------------------------------------- CityFlow, no SUMO
def test_plain_xml_keeps_roads_lanes_and_lane_order():
    plain = cityflow_plain_xml(tiny_roadnet())
    edges = plain["edges"].findall("edge")
    assert len(edges) == 8 and all(e.get("numLanes") == "2" for e in edges)
    lanes = {lane.get("index"): lane.get("speed") for lane in edges[0].findall("lane")}
    assert lanes == {"1": "10", "0": "12"}  # CityFlow lane 0 (leftmost) = SUMO lane 1
    nodes = {n.get("id"): n.get("type") for n in plain["nodes"]}
    assert nodes["c"] == "traffic_light" and nodes["w"] == "priority"
    cons = plain["connections"].findall("connection")
    assert len(cons) == 16  # every lane link
    left_w = [c for c in cons if c.get("from") == "road_w_c" and c.get("to") == "road_c_n"]
    assert [(c.get("fromLane"), c.get("toLane")) for c in left_w] == [("1", "1")]


def test_plain_xml_signal_program_follows_the_light_phases():
    plain = cityflow_plain_xml(tiny_roadnet(), yellow_s=3)
    (logic,) = plain["tllogic"].findall("tlLogic")
    phases = [(float(p.get("duration")), p.get("state")) for p in logic.findall("phase")]
    # phase 0 (rights only) gives no G and is left out; a yellow after each green
    assert [d for d, _ in phases] == [20, 3, 20, 3, 10, 3, 10, 3]
    links = plain["tllogic"].findall("connection")
    assert sorted(int(c.get("linkIndex")) for c in links) == list(range(16))
    state = phases[0][1]
    assert len(state) == 16
    for c in links:
        k, frm, to = int(c.get("linkIndex")), c.get("from"), c.get("to")
        right = (frm, to) in {("road_w_c", "road_c_s"), ("road_e_c", "road_c_n"),
                              ("road_s_c", "road_c_e"), ("road_n_c", "road_c_w")}  # fmt: skip
        through_we = (frm, to) in {("road_w_c", "road_c_e"), ("road_e_c", "road_c_w")}
        assert state[k] == ("g" if right else "G" if through_we else "r")
        assert phases[1][1][k] == ("y" if through_we else state[k])  # yellow only where green ends
    bench = cityflow_plain_xml(tiny_roadnet(), phases=[1, 2, 3, 4], green_s=15, yellow_s=5)
    durations = [p.get("duration") for p in bench["tllogic"].find("tlLogic").findall("phase")]
    assert durations == ["15", "5"] * 4
    with pytest.raises(ValueError, match="5 light phases; phase 7"):
        cityflow_plain_xml(tiny_roadnet(), phases=[1, 7])


def test_routes_expand_flows_into_every_vehicle():
    routes, n = cityflow_routes_xml(tiny_flows(), tiny_roadnet())
    vehicles = routes.findall("vehicle")
    assert n == len(vehicles) == 11 + 1 + 3
    departs = [float(v.get("depart")) for v in vehicles]
    assert departs == sorted(departs) and max(departs) == 100
    types = {t.get("id"): t.attrib for t in routes.findall("vType")}
    assert len(types) == 2  # two distinct parameter sets
    assert types["cityflow0"]["tau"] == "2" and types["cityflow0"]["decel"] == "4.5"
    assert vehicles[0].find("route").get("edges") in {"road_w_c road_c_e", "road_n_c road_c_w"}


def test_cityflow_errors_name_the_file_and_flow(tmp_path):
    from citybrain_ml.optimize.importers import read_cityflow_json

    bad = [{"vehicle": VEHICLE, "route": ["road_w_c", "road_c_w"], "startTime": 0, "endTime": 0}]
    with pytest.raises(ValueError, match="flow.json: flow 0: no movement from 'road_w_c'"):
        cityflow_routes_xml(bad, tiny_roadnet(), source="flow.json")
    with pytest.raises(ValueError, match="flow 0: unknown road"):
        cityflow_routes_xml([{"route": ["nowhere"]}], tiny_roadnet())
    with pytest.raises(ValueError, match="rn.json: not a CityFlow roadnet"):
        cityflow_plain_xml({"roads": []}, source="rn.json")
    with pytest.raises(FileNotFoundError, match="roadnet file not found"):
        read_cityflow_json(tmp_path / "nope.json", "roadnet")


# ---------------------------------------------------------------------------- CityFlow, SUMO
@needs_sumo
def test_cityflow_to_sumo_preserves_counts_lanes_and_phases(cityflow_files, tmp_path):
    from citybrain_ml.optimize import FixedTimeController, Scenario, simulate
    from citybrain_ml.optimize.importers import cityflow_to_sumo

    imp = cityflow_to_sumo(*cityflow_files, tmp_path / "sumo", end_s=400)
    assert imp.counts == {"intersections": 5, "signals": 1, "roads": 8, "lanes": 16,
                          "connections": 16, "vehicles": 15}  # fmt: skip
    net = ET.parse(imp.net_file).getroot()
    edges = [e for e in net.findall("edge") if e.get("function") != "internal"]
    assert len(edges) == 8 and all(len(e.findall("lane")) == 2 for e in edges)
    speeds = {ln.get("id"): float(ln.get("speed")) for e in edges for ln in e.findall("lane")}
    assert speeds["road_w_c_1"] == 10 and speeds["road_w_c_0"] == 12
    cons = [c for c in net.findall("connection") if not c.get("from").startswith(":")]
    assert len(cons) == 16  # netconvert added no connection of its own
    (logic,) = net.findall("tlLogic")
    assert [float(p.get("duration")) for p in logic.findall("phase")] == [
        20,
        5,
        20,
        5,
        10,
        5,
        10,
        5,
    ]
    assert all(len(p.get("state")) == 16 for p in logic.findall("phase"))
    assert len(ET.parse(imp.route_files[0]).getroot().findall("vehicle")) == 15

    res = simulate(Scenario.from_sumocfg(imp.sumocfg), FixedTimeController(), seed=1)
    m = res.metrics
    assert m["planned_veh"] == 15 and m["throughput_veh"] == 15  # all in, all out


@needs_sumo
def test_signals_job_on_an_imported_cityflow_network(cityflow_files, tmp_path, monkeypatch):
    from citybrain_ml.optimize import run_signals_job

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    roadnet, flow = cityflow_files
    cfg = tmp_path / "job.yaml"
    cfg.write_text(
        f"network: {{name: tiny, cityflow: {{roadnet: {roadnet}, flow: {flow}, end_s: 300}}}}\n"
        "seeds: [1]\ncontrollers: [fixed_time, max_pressure]\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    text = run_signals_job(cfg)
    assert text.startswith("tiny:")
    metrics = pd.read_csv(tmp_path / "out" / "metrics.csv")
    assert (metrics["planned_veh"] == 15).all()
    assert (tmp_path / "out" / "network" / "tiny.net.xml").is_file()


# ---------------------------------------------------------------------------- OSM
def _osm(path):
    """Hand-written OSM: two streets crossing at a signal, about 150 m arms."""
    nodes = {1: (52.5200, 13.4050, True), 2: (52.5200, 13.4028, False),
             3: (52.5200, 13.4072, False), 4: (52.5186, 13.4050, False),
             5: (52.5214, 13.4050, False)}  # fmt: skip
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="hand">']
    for nid, (lat, lon, signal) in nodes.items():
        tag = '<tag k="highway" v="traffic_signals"/>' if signal else ""
        lines.append(f'<node id="{nid}" version="1" lat="{lat}" lon="{lon}">{tag}</node>')
    for wid, (a, b, name) in {10: (2, 3, "East-West Street"), 11: (4, 5, "North Road")}.items():
        lines.append(
            f'<way id="{wid}" version="1"><nd ref="{a}"/><nd ref="1"/><nd ref="{b}"/>'
            f'<tag k="highway" v="secondary"/><tag k="name" v="{name}"/>'
            '<tag k="lanes" v="2"/></way>'
        )
    lines.append("</osm>")
    path.write_text("\n".join(lines))
    return path


@needs_sumo
def test_osm_to_sumo_builds_a_signalised_net_with_demand(tmp_path, monkeypatch):
    from citybrain_ml.optimize import run_signals_job
    from citybrain_ml.optimize.importers import osm_to_sumo

    osm = _osm(tmp_path / "crossing.osm")
    imp = osm_to_sumo(osm, tmp_path / "sumo", trips_period_s=4, end_s=600)
    assert imp.counts["signals"] == 1
    assert imp.counts["roads"] == 8  # four two-way arms
    assert imp.counts["vehicles"] > 50

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = tmp_path / "job.yaml"
    cfg.write_text(
        f"network: {{osm: {{osm_file: {osm}, trips_period_s: 4, end_s: 300}}}}\n"
        "seeds: [1]\ncontrollers: [fixed_time, advanced_max_pressure]\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    run_signals_job(cfg)
    metrics = pd.read_csv(tmp_path / "out" / "metrics.csv")
    assert (metrics["planned_veh"] > 0).all()
    parts = metrics[["throughput_veh", "unfinished_veh", "not_inserted_veh"]].sum(axis=1)
    assert (parts == metrics["planned_veh"]).all()
