"""SUMO signal rehearsal: net-plan extraction, controller logic on tiny synthetic cases, and
short real runs on RESCO cologne1 when the ``sim`` extra (eclipse-sumo, sumo-rl) is installed."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.config import ConfigError
from citybrain_ml.optimize.signals import Phase, webster_plan
from citybrain_ml.optimize.simulation import (
    Actuator,
    FlowForecast,
    Intersection,
    Movement,
    PlanController,
    choose_advanced_max_pressure,
    choose_max_pressure,
    clearance_state,
    link_flows_to_phase_table,
    load_signals_config,
    movement_groups,
    program_table,
    reach_lanes,
    read_tls_programs,
    read_tripinfo,
    trip_metrics,
)

NET_XML = """<?xml version="1.0" encoding="UTF-8"?>
<net version="1.9">
  <tlLogic id="J1" type="static" programID="0" offset="5">
    <phase duration="30" state="GGrr"/>
    <phase duration="3"  state="yyrr"/>
    <phase duration="20" state="rrGg"/>
    <phase duration="3"  state="rryy"/>
  </tlLogic>
  <tlLogic id="J2" type="static" programID="0" offset="0">
    <phase duration="40" state="Gg"/>
    <phase duration="4"  state="yy"/>
    <phase duration="2"  state="rr"/>
    <phase duration="40" state="Gg"/>
  </tlLogic>
</net>
"""


def _has_sim() -> bool:
    return importlib.util.find_spec("sumo") is not None and (
        importlib.util.find_spec("sumo_rl") is not None
    )


needs_sumo = pytest.mark.skipif(
    not _has_sim(), reason="SUMO not installed: pip install -e '.[sim]' (eclipse-sumo, sumo-rl)"
)


@pytest.fixture
def net_file(tmp_path):
    path = tmp_path / "tiny.net.xml"
    path.write_text(NET_XML)
    return path


@pytest.fixture
def cross() -> Intersection:
    """Two greens over four links: N->S and S->N in green 0, E->W and a permissive left in 1."""
    links = [
        [("n_in", "s_out", ":j_0")],
        [("s_in", "n_out", ":j_1")],
        [("e_in", "w_out", ":j_2")],
        [("e_in", "n_out", ":j_3")],
    ]
    return Intersection("J1", ["GGrr", "rrGg"], links)


# ---------------------------------------------------------------------------- net programs
def test_read_tls_programs_extracts_phases_greens_and_cycle(net_file):
    programs = read_tls_programs(net_file)
    assert set(programs) == {"J1", "J2"}
    j1 = programs["J1"]
    assert j1.offset_s == 5
    assert j1.cycle_s == 56
    assert j1.green_states == ["GGrr", "rrGg"]  # yellows dropped
    assert programs["J2"].green_states == ["Gg"]  # all-red dropped, repeated green deduplicated


def test_program_table_rows_start_times_and_kinds(net_file):
    table = program_table(read_tls_programs(net_file))
    j1 = table[table["intersection_id"] == "J1"]
    assert j1["start_s"].tolist() == [0, 30, 33, 53]
    assert j1["kind"].tolist() == ["green", "yellow", "green", "yellow"]
    assert table.loc[table["state"] == "rr", "kind"].item() == "red"


def test_read_tls_programs_without_tllogic_names_the_file(tmp_path):
    path = tmp_path / "empty.net.xml"
    path.write_text("<net/>")
    with pytest.raises(ValueError, match="empty.net.xml.*no tlLogic"):
        read_tls_programs(path)


def test_clearance_state_only_changes_links_that_lose_green():
    assert clearance_state("GGgr", "rGGr") == "yGgr"
    assert clearance_state("GGgr", "rGGr", "r") == "rGgr"
    with pytest.raises(ValueError, match="length"):
        clearance_state("Gr", "G")


# ---------------------------------------------------------------------------- controllers
def test_max_pressure_picks_the_green_with_more_queued_vehicles(cross):
    counts = {"n_in": 2, "s_in": 1, "e_in": 8, "w_out": 0, "n_out": 1, "s_out": 0}
    # pressure green0 = (2-0) + (1-1) = 2; green1 = (8-0) + (8-1) = 15
    assert choose_max_pressure(cross, counts, current=0) == 1
    counts["e_in"] = 1  # green1 = 1 + 0 = 1 < 2
    assert choose_max_pressure(cross, counts, current=1) == 0


def test_max_pressure_keeps_current_green_on_a_tie(cross):
    counts = {"n_in": 1, "s_in": 1, "e_in": 1, "n_out": 0}
    # green0: 1 + (1-0) = 2; green1: 1 + (1-0) = 2
    assert choose_max_pressure(cross, counts, current=1) == 1
    assert choose_max_pressure(cross, counts, current=0) == 0


def test_movement_groups_join_links_by_edge_pair():
    links = [
        [("n_0", "s_0", ":j_0")],
        [("n_1", "s_1", ":j_1")],  # second lane of the same N->S movement
        [("e_0", "w_0", ":j_2")],
    ]
    node = Intersection("J", ["GGr", "rrG"], links)
    groups = movement_groups(node)
    assert groups[0] == [Movement(("n_0", "n_1"), ("s_0", "s_1"))]
    assert groups[1] == [Movement(("e_0",), ("w_0",))]


@pytest.fixture
def two_greens() -> list[list[Movement]]:
    """Green 0 serves a two-lane N->S movement, green 1 a one-lane E->W movement."""
    return [[Movement(("n_0", "n_1"), ("s_0",))], [Movement(("e_0",), ("w_0",))]]


def test_advanced_max_pressure_averages_queues_per_lane(two_greens):
    # N->S: (6 + 2) / 2 - 0 = 4 per lane; E->W: 5 - 0 = 5 -> green 1, although N->S holds more
    queues = {"n_0": 6, "n_1": 2, "e_0": 5}
    assert choose_advanced_max_pressure(two_greens, queues, {}, current=None) == 1
    queues["w_0"] = 2  # E->W: 5 - 2 = 3 < 4
    assert choose_advanced_max_pressure(two_greens, queues, {}, current=1) == 0


def test_advanced_max_pressure_keeps_green_while_a_platoon_arrives(two_greens):
    queues = {"e_0": 3}  # E->W is the only queue: pressure 3 against 0
    platoon = {"n_0": 4, "n_1": 4}  # 4 per lane running towards the N stop line
    assert choose_advanced_max_pressure(two_greens, queues, platoon, current=0) == 0
    # the platoon has passed (1 per lane left < 3): switch to the queue
    assert choose_advanced_max_pressure(two_greens, queues, {"n_0": 1, "n_1": 1}, current=0) == 1


def test_advanced_max_pressure_ignores_movements_into_a_full_lane(two_greens):
    queues = {"n_0": 2, "n_1": 2, "e_0": 9}
    assert choose_advanced_max_pressure(two_greens, queues, {}, current=0) == 1
    # W exit is jammed: E->W vehicles could not leave, so serve N->S
    assert choose_advanced_max_pressure(two_greens, queues, {}, current=0, full={"w_0"}) == 0
    with pytest.raises(ValueError, match="no green"):
        choose_advanced_max_pressure([], queues, {}, current=None)


def test_advanced_max_pressure_settings_are_checked():
    from citybrain_ml.optimize.simulation import AdvancedMaxPressureController

    with pytest.raises(ValueError, match="max_green_s"):
        AdvancedMaxPressureController(min_green_s=10, max_green_s=5)
    with pytest.raises(ValueError, match="spill_ratio"):
        AdvancedMaxPressureController(spill_ratio=1.5)
    assert AdvancedMaxPressureController(max_green_s=None).max_green_s == math.inf


def test_reach_lanes_walks_upstream_until_the_detection_depth():
    # a 1 m signal lane "s" fed by "a" (40 m), fed by "b" (80 m) and "c" (behind a signal)
    pred = {"s": ["a"], "a": ["b", "c"], "b": ["d"]}
    lengths = {"s": 1.0, "a": 40.0, "b": 80.0, "c": 30.0, "d": 50.0}
    chain = reach_lanes("s", pred, lengths, detect_m=100.0, blocked={"c"})
    assert chain == [("s", 0.0), ("a", 1.0), ("b", 41.0)]  # d starts 121 m back: too far
    assert reach_lanes("s", pred, lengths, detect_m=0.0) == [("s", 0.0)]


def test_link_flows_share_a_link_among_every_green_that_serves_it():
    links = [[("a", "x", ":v0")], [("b", "y", ":v1")]]
    node = Intersection("J", ["Gg", "rG"], links)  # link 1 is permissive in 0, protected in 1
    flows = pd.DataFrame(
        {"intersection_id": ["J", "J"], "link_index": [0, 1], "flow_veh_h": [600.0, 300.0]}
    )
    table = link_flows_to_phase_table(
        flows, {"J": node}, saturation_flow_veh_h=1800, min_green_s=5, yellow_s=3, all_red_s=1
    )
    got = table.set_index(["phase", "movement"])["flow_veh_h"].to_dict()
    assert got == {("0", "a"): 600.0, ("0", "b"): 150.0, ("1", "b"): 150.0}


def test_plan_controller_requests_next_green_so_clearance_ends_at_its_start():
    phases = [Phase("0", 600, 1800), Phase("1", 300, 1800)]
    plan = webster_plan(phases, 4.0, min_cycle_s=30, max_cycle_s=120)
    g0 = plan.phases[0].green_s
    start1 = plan.phase_starts_s()[1]
    assert PlanController._green_at(plan, 0.0) == 0
    assert PlanController._green_at(plan, g0 - 0.5) == 0
    assert PlanController._green_at(plan, g0 + 0.5) == 1  # clearance toward green 1 runs now
    assert start1 == pytest.approx(g0 + 4.0)
    assert PlanController._green_at(plan, plan.cycle_s - 0.5) == 0


class _FakeLights:
    def __init__(self):
        self.shown = []

    def setRedYellowGreenState(self, tls, state):  # noqa: N802 (TraCI's name)
        self.shown.append(state)


class _FakeApi:
    def __init__(self):
        self.trafficlight = _FakeLights()


def test_actuator_inserts_yellow_then_all_red_before_the_new_green(cross):
    api = _FakeApi()
    act = Actuator(api, {"J1": cross}, yellow_s=3, all_red_s=1)
    act.request("J1", 0, now=0)
    assert api.trafficlight.shown == ["GGrr"]  # first green at once
    act.request("J1", 1, now=10)
    assert act.in_transition("J1")
    shown_at = {}
    for t in range(11, 16):
        act.tick(t)
        shown_at[t] = api.trafficlight.shown[-1]
    assert shown_at[11] == "yyrr" and shown_at[12] == "yyrr"
    assert shown_at[13] == "rrrr"  # all-red after 3 s of yellow
    assert shown_at[14] == "rrGg"  # green 1 after yellow + all-red = 4 s
    assert act.green_since["J1"] == 14
    act.request("J1", 0, now=14)  # a new request starts a new clearance
    assert api.trafficlight.shown[-1] == "rryy"


def test_flow_forecast_methods():
    counts = pd.DataFrame(
        {"intersection_id": "J", "link_index": 0, "bin": [0, 1], "count": [10, 20]}
    )
    live = pd.DataFrame({"intersection_id": "J", "link_index": 0, "bin": [0], "count": [40]})
    rate = {
        m: FlowForecast(counts, 300, m).predict(live, 1)["flow_veh_h"].item()
        for m in ("seasonal_naive", "last_interval", "blend")
    }
    assert rate == {"seasonal_naive": 240.0, "last_interval": 480.0, "blend": 360.0}
    first = FlowForecast(counts, 300, "last_interval").predict(live.iloc[:0], 0)
    assert first["flow_veh_h"].item() == 120.0  # no live interval yet: seasonal naive
    with pytest.raises(ValueError, match="unknown forecast method"):
        FlowForecast(counts, 300, "arima")


# ---------------------------------------------------------------------------- metrics, config
def test_tripinfo_metrics_count_every_planned_vehicle(tmp_path):
    path = tmp_path / "tripinfo.xml"
    path.write_text(
        "<tripinfos>"
        '<tripinfo id="a" depart="1" departDelay="2" arrival="50" duration="49" '
        'waitingTime="5" timeLoss="10"/>'
        '<tripinfo id="b" depart="3" departDelay="0" arrival="-1" duration="20" '
        'waitingTime="9" timeLoss="14"/>'
        # never inserted: SUMO's write-undeparted record, waited 30 s to enter
        '<tripinfo id="c" depart="-1" departDelay="30" arrival="-1" duration="0" '
        'waitingTime="0" timeLoss="0"/>'
        "</tripinfos>"
    )
    trips = read_tripinfo(path)
    m = trip_metrics(trips)
    assert m["delay_s"] == pytest.approx((12 + 14) / 2)  # RESCO: inserted vehicles only
    assert m["delay_all_s"] == pytest.approx((12 + 14 + 30) / 3)  # insertion delay counted
    assert m["att_finished_s"] == 49  # finished trips only (LibSignal)
    assert m["att_all_s"] == pytest.approx((51 + 20 + 30) / 3)  # from planned departure
    assert m["waiting_time_s"] == 7
    counts = ("planned_veh", "throughput_veh", "unfinished_veh", "not_inserted_veh")
    assert tuple(m[k] for k in counts) == (3, 1, 1, 1)


def test_signals_config_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenario: cologne9\n")
    with pytest.raises(ConfigError, match="bad.yaml.*unknown scenario.*network"):
        load_signals_config(bad)
    bad.write_text("name: x\n")
    with pytest.raises(ConfigError, match="bad.yaml.*scenario.*network"):
        load_signals_config(bad)
    bad.write_text("scenario: cologne1\nmax_pressure: {decision_s: 0}\n")
    with pytest.raises(ConfigError, match="max_pressure.decision_s"):
        load_signals_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_signals_config(tmp_path / "missing.yaml")


# ---------------------------------------------------------------------------- real SUMO
@needs_sumo
def test_cologne1_net_plan_matches_resco_fixed_time():
    from citybrain_ml.optimize.simulation import Scenario

    scen = Scenario.resco("cologne1")
    programs = read_tls_programs(scen.net_file)
    (prog,) = programs.values()
    assert prog.cycle_s == 90
    assert len(prog.green_states) == 4
    assert (scen.begin_s, scen.end_s) == (25200, 28800)


@needs_sumo
def test_short_cologne1_run_all_controllers(tmp_path, monkeypatch):
    """300 s of cologne1 under every controller, through the job entry point."""
    from citybrain_ml.optimize.simulation import run_signals_job

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = tmp_path / "signals.yaml"
    cfg.write_text(
        "name: test_signals\nscenario: cologne1\nduration_s: 300\nseeds: [1]\n"
        "forecast: {interval_s: 60}\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    summary = run_signals_job(cfg)
    assert "max_pressure" in summary and "MLflow run" in summary
    metrics = pd.read_csv(tmp_path / "out" / "metrics_by_seed.csv")
    assert set(metrics["controller"]) == {"fixed_time", "webster", "max_pressure",
                                          "advanced_max_pressure", "forecast_webster",
                                          "rehearsed"}  # fmt: skip
    assert (metrics["throughput_veh"] > 0).all()
    # every planned vehicle is accounted for, the same number under every controller
    parts = metrics[["throughput_veh", "unfinished_veh", "not_inserted_veh"]].sum(axis=1)
    assert (parts == metrics["planned_veh"]).all() and metrics["planned_veh"].nunique() == 1
    assert np.isfinite(metrics[["delay_all_s", "att_all_s", "att_finished_s"]]).all().all()
    assert np.isfinite(metrics["delay_s"]).all() and (metrics["delay_s"] >= 0).all()
    plans = pd.read_csv(tmp_path / "out" / "plan_webster.csv")
    # displayed greens + clearances fill each cycle exactly
    for _, p in plans.groupby("intersection_id"):
        total = (p["green_s"] + p["yellow_s"] + p["all_red_s"]).sum()
        assert math.isclose(total, p["cycle_s"].iloc[0], rel_tol=1e-9)
    history = pd.read_csv(tmp_path / "out" / "plan_forecast_webster.csv")
    assert history["time_s"].nunique() == 5  # re-planned at 0, 60, ..., 240 s
    for name in ("plan_webster.json", "delay_by_controller.png", "plan_fixed_time.csv",
                 "recommendation.json", "rehearsal.csv"):  # fmt: skip
        assert (tmp_path / "out" / name).is_file()
    # never worse: a recommended plan exists only when it rehearsed better than the existing
    rec = json.loads((tmp_path / "out" / "recommendation.json").read_text())
    assert (tmp_path / "out" / "plan_recommended.json").is_file() == rec["improved"]
    assert rec["improved"] == (rec["expected"] < rec["existing"])
    assert "rehearsal:" in summary


@needs_sumo
def test_short_cologne1_run_advanced_max_pressure():
    """300 s of cologne1 under Advanced-MP: RESCO metrics come out for every trip."""
    from citybrain_ml.optimize.simulation import (
        AdvancedMaxPressureController,
        Scenario,
        simulate,
    )

    controller = AdvancedMaxPressureController()
    res = simulate(Scenario.resco("cologne1", duration_s=300), controller, seed=1)
    m = res.metrics
    assert m["throughput_veh"] > 0 and m["not_inserted_veh"] >= 0
    assert np.isfinite(m["delay_s"]) and m["delay_s"] >= 0
    assert len(res.trips) == m["planned_veh"]
    assert m["planned_veh"] == m["throughput_veh"] + m["unfinished_veh"] + m["not_inserted_veh"]
    # the detectors read at least the signal's own lanes
    chains = controller._detectors.upstream
    assert chains and all(chain[0] == (lane, 0.0) for lane, chain in chains.items())
