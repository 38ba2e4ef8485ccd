"""Demand from detector counts: reading counts, GEH, forecast counts, the rehearsal option,
and a routeSampler round trip on a tiny generated net when SUMO (``.[sim]``) is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.optimize.demand import (
    compare_counts,
    counts_history_frame,
    forecast_counts,
    geh,
    read_counts,
    read_routes,
    route_counts,
    whole_counts,
)
from citybrain_ml.optimize.simulation import (
    RehearsalConfig,
    Scenario,
    SignalsJobConfig,
    load_signals_config,
    rehearse_candidates,
)

needs_sumo = pytest.mark.skipif(
    importlib.util.find_spec("sumo") is None,
    reason="SUMO not installed: pip install -e '.[sim]' (eclipse-sumo)",
)


# ---------------------------------------------------------------------------- reading counts
def _edge_counts() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "edge_id": ["a", "b", "a", "b"],
            "interval_begin": [0, 0, 300, 300],
            "interval_end": [300, 300, 600, 600],
            "count": [10, 4, 12, 5],
        }
    )


def test_read_counts_from_csv_sorted_and_typed(tmp_path):
    path = tmp_path / "counts.csv"
    df = _edge_counts().assign(extra="x").iloc[::-1]
    df.to_csv(path, index=False)
    out = read_counts(path)
    assert list(out.columns) == ["edge_id", "interval_begin", "interval_end", "count"]
    assert out["count"].tolist() == [10.0, 4.0, 12.0, 5.0]
    assert pd.api.types.is_string_dtype(out["edge_id"])


def test_read_counts_names_missing_column_and_file(tmp_path):
    path = tmp_path / "bad.csv"
    _edge_counts().drop(columns="interval_end").to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"bad\.csv.*missing column.*interval_end"):
        read_counts(path)


def test_read_counts_names_bad_row():
    df = _edge_counts().astype({"count": object})
    df.loc[2, "count"] = "many"
    with pytest.raises(ValueError, match=r"column 'count', row 3"):
        read_counts(df)
    df = _edge_counts()
    df.loc[1, "interval_end"] = 0
    with pytest.raises(ValueError, match=r"'interval_end', row 2.*not after"):
        read_counts(df)
    df = _edge_counts()
    df.loc[3, "count"] = -1
    with pytest.raises(ValueError, match="row 4.*negative"):
        read_counts(df)


def test_read_counts_duplicates_and_turns():
    df = pd.concat([_edge_counts(), _edge_counts().iloc[:1]])
    with pytest.raises(ValueError, match="repeats"):
        read_counts(df)
    turns = pd.DataFrame(
        {"from_edge": ["a"], "to_edge": ["b"], "interval_begin": [0], "interval_end": [60],
         "count": [3]}
    )  # fmt: skip
    assert list(read_counts(turns).columns)[:2] == ["from_edge", "to_edge"]
    with pytest.raises(ValueError, match="missing column.*to_edge"):
        read_counts(turns.drop(columns="to_edge"), kind="turn")
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        read_counts("nowhere.csv")


# ---------------------------------------------------------------------------- GEH
def test_geh_known_values():
    # GEH(M=110, C=100) = sqrt(2 * 100 / 210)
    assert geh(110, 100) == pytest.approx(np.sqrt(200 / 210))
    assert geh([0.0], [0.0])[0] == 0.0
    assert geh(0, 50) == pytest.approx(10.0)  # sqrt(2 * 2500 / 50)


def test_compare_counts_summary():
    obs = _edge_counts()
    mod = obs.assign(count=[10, 4, 12, 0])  # edge b misses 5 of 9 vehicles
    cmp = compare_counts(obs, mod, busy_veh_h=0)
    s = cmp.summary
    assert s["edges"] == 2
    assert s["within_tol_share"] == 0.5
    assert s["total_observed"] == 31 and s["total_modelled"] == 26
    by_edge = cmp.edges.set_index("edge_id")
    assert by_edge.loc["a", "geh"] == 0.0
    assert by_edge.loc["b", "rel_error"] == pytest.approx(-5 / 9)
    # hourly flows over the 10-minute window: b observed 54 veh/h, modelled 24 veh/h
    assert by_edge.loc["b", "geh"] == pytest.approx(geh(24, 54))
    # GEH 4.8: an hourly-flow match by the GEH < 5 rule although 56% of b's flow is missing
    assert s["geh_ok_share"] == 1.0


# ---------------------------------------------------------------------------- route counts
ROUTES = """<routes>
  <vType id="car" length="4"/>
  <route id="r1" edges="a b c"/>
  <vehicle id="v1" depart="0" route="r1" type="car"/>
  <vehicle id="v2" depart="70"><route edges="a d"/></vehicle>
  <vehicle id="v3" depart="130" route="r1"/>
  <vehicle id="late" depart="999" route="r1"/>
</routes>
"""


def test_route_counts_by_departure_interval(tmp_path):
    path = tmp_path / "r.rou.xml"
    path.write_text(ROUTES)
    routes = read_routes(path)
    assert routes["edges"].tolist()[1] == ("a", "d")
    counts = route_counts(path, begin_s=0, end_s=180, interval_s=60)
    got = counts.set_index(["edge_id", "interval_begin"])["count"]
    assert got[("a", 0)] == 1 and got[("a", 60)] == 1 and got[("a", 120)] == 1
    assert got[("d", 60)] == 1 and got[("d", 0)] == 0
    assert counts["count"].sum() == 8  # 'late' departs outside the window
    turns = route_counts(path, begin_s=0, end_s=180, interval_s=180, turns=True)
    t = turns.set_index(["from_edge", "to_edge"])["count"]
    assert t[("a", "b")] == 2 and t[("a", "d")] == 1 and t[("b", "c")] == 2


def test_trips_need_routing(tmp_path):
    path = tmp_path / "t.rou.xml"
    path.write_text('<routes><trip id="t" depart="0" from="a" to="b"/></routes>')
    with pytest.raises(ValueError, match="route_trips"):
        read_routes(path)


# ---------------------------------------------------------------------------- forecasts
def _history(days: int = 4) -> list[pd.DataFrame]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(days):
        rows = [
            (e, 25200 + 60 * k, 25260 + 60 * k, float(rng.poisson(lam)))
            for e, lam in (("in", 3.0), ("out", 0.4))
            for k in range(10)
        ]
        out.append(pd.DataFrame(rows, columns=["edge_id", "interval_begin", "interval_end",
                                               "count"]))  # fmt: skip
    return out


def test_counts_history_frame_stamps_time_of_day():
    frame = counts_history_frame(_history(2))
    assert set(frame.columns) == {"series_id", "timestamp", "value"}
    # the past days end the day before the forecast day (Friday 2024-01-05)
    assert frame["timestamp"].min() == pd.Timestamp("2024-01-03 07:00")
    assert frame["timestamp"].max() == pd.Timestamp("2024-01-04 07:09")


def test_forecast_counts_next_day_window():
    fc, model = forecast_counts(
        counts_history_frame(_history()), begin_s=25200, end_s=25800, interval_s=60,
        model="seasonal_naive",
    )  # fmt: skip
    assert sorted(fc["interval_begin"].unique()) == [25200 + 60 * k for k in range(10)]
    assert (fc["interval_end"] - fc["interval_begin"] == 60).all()
    assert (fc["count"] >= 0).all() and (fc["count"] == np.rint(fc["count"])).all()
    # seasonal naive one day back: the last day's counts
    last = _history()[-1]
    assert (
        fc.groupby("edge_id")["count"].sum()["in"]
        == last.loc[last["edge_id"] == "in", "count"].sum()
    )


def test_whole_counts_keep_totals():
    frame = pd.DataFrame({"edge_id": ["e"] * 5, "interval_begin": range(5), "yhat": [0.4] * 5})
    whole = whole_counts(frame, "yhat")
    assert whole.sum() == 2 and set(whole) <= {0.0, 1.0}  # rounding each gives 0 vehicles


# ---------------------------------------------------------------------------- config
def test_rehearsal_demand_default_is_scenario():
    cfg = SignalsJobConfig(scenario="cologne1")
    assert cfg.rehearsal.demand == "scenario"
    cfg = SignalsJobConfig(
        scenario="cologne1", rehearsal={"demand": "forecast", "forecast_model": "seasonal_naive"}
    )
    assert cfg.rehearsal.history_days == 4 and cfg.rehearsal.count_interval_s == 60


def test_rehearsal_demand_validation(tmp_path):
    with pytest.raises(ValueError, match="forecast_model"):
        RehearsalConfig(demand="forecast", forecast_model="crystal_ball")
    with pytest.raises(ValueError, match="demand"):
        RehearsalConfig(demand="guess")
    with pytest.raises(ValueError, match="history_days"):
        RehearsalConfig(history_days=1)
    path = tmp_path / "job.yaml"
    path.write_text("scenario: cologne1\nrehearsal:\n  demand: forecast\n  typo: 1\n")
    with pytest.raises(Exception, match="typo"):
        load_signals_config(path)


NET = """<net>
  <edge id="in" from="A" to="B"><lane id="in_0" length="100"/></edge>
  <edge id="out" from="B" to="C"><lane id="out_0" length="100"/></edge>
  <connection from="in" to="out" fromLane="0" toLane="0" tl="B" linkIndex="0"/>
</net>
"""


@pytest.mark.parametrize("better", [True, False])
def test_forecast_rehearsal_with_stand_ins(tmp_path, better):
    net = tmp_path / "n.net.xml"
    net.write_text(NET)
    true = Scenario("city", net, tmp_path / "true.rou.xml", 0, 3600)
    twin = Scenario("city_forecast", net, tmp_path / "fc.rou.xml", 0, 3600)
    calls = []

    def forecast_fn(scenario, out_dir, **kw):
        calls.append(("forecast", scenario.name, kw["edges"], kw["model"]))
        info = {"demand": "forecast", "forecast_model": kw["model"], "history_days": 3,
                "counted_edges": 2, "sampled_geh_ok_share": 1.0}  # fmt: skip
        return SimpleNamespace(scenario=twin, info=info)

    def simulate_fn(scenario, controller, seed, **kw):
        calls.append((scenario.name, controller.name))
        delay = 50.0 if controller.name == "fixed_time" else (40.0 if better else 60.0)
        flows = pd.DataFrame({"intersection_id": ["B"], "link_index": [0], "count": [90]})
        return SimpleNamespace(metrics={"delay_all_s": delay}, plans=[], flow_counts=flows)

    cfg = SignalsJobConfig(
        scenario="cologne1",
        output_dir=str(tmp_path / "out"),
        rehearsal={"demand": "forecast", "forecast_model": "seasonal_naive", "history_days": 3,
                   "candidates": ["webster"]},
    )  # fmt: skip
    rec = rehearse_candidates(
        cfg, true, pd.DataFrame(), simulate_fn=simulate_fn, forecast_fn=forecast_fn
    )
    assert calls[0] == ("forecast", "city", "signals", "seasonal_naive")
    # the before-study and every rehearsal run are on the forecast demand, never the true one
    assert {name for name, *_ in calls[1:]} == {"city_forecast"}
    assert rec.demand == "forecast" and rec.to_dict()["demand_info"]["forecast_model"]
    assert "forecast demand" in rec.message
    assert rec.improved is better
    assert rec.expected_value <= rec.existing_value  # never worse than the existing plan


# ---------------------------------------------------------------------------- with SUMO
CANDIDATES = {
    "we": "A1B1 B1C1",
    "ew": "C1B1 B1A1",
    "sn": "B0B1 B1B2",
    "wn": "A1B1 B1B2",
    "ns": "B2B1 B1B0",
}


def _tiny_net(tmp_path: Path) -> Path:
    from citybrain_ml.optimize.network import run_sumo_tool, sumo_binary

    net = tmp_path / "grid.net.xml"
    run_sumo_tool(
        [sumo_binary("netgenerate"), "--grid", "--grid.number", "3", "--grid.length", "150",
         "--default-junction-type", "traffic_light", "--no-turnarounds", "true",
         "-o", str(net)],
        what="netgenerate",
    )  # fmt: skip
    return net


def _routes_file(path: Path, per_route: dict[str, int], end_s: float, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    vehicles = [
        (float(rng.uniform(0, end_s)), name) for name, n in per_route.items() for _ in range(n)
    ]
    lines = ["<routes>", '  <vType id="car" length="4.5" minGap="2"/>']
    for k, (depart, name) in enumerate(sorted(vehicles)):
        lines.append(f'  <vehicle id="{name}{k}" depart="{depart:.1f}" type="car">'
                     f'<route edges="{CANDIDATES[name]}"/></vehicle>')  # fmt: skip
    path.write_text("\n".join([*lines, "</routes>\n"]))
    return path


@needs_sumo
def test_route_sampler_round_trip(tmp_path):
    from citybrain_ml.optimize.demand import measure_counts, sample_routes, signal_edges

    net = _tiny_net(tmp_path)
    truth = _routes_file(tmp_path / "truth.rou.xml", {"we": 40, "sn": 25, "wn": 10, "ns": 20},
                         600)  # fmt: skip
    candidates = _routes_file(tmp_path / "cand.rou.xml", dict.fromkeys(CANDIDATES, 1), 1)
    edges = signal_edges(net)
    assert "A1B1" in edges and "B1C1" in edges
    observed = route_counts(truth, begin_s=0, end_s=600, interval_s=300, edges=edges)
    sampled = sample_routes(net, observed, [candidates], tmp_path / "out", begin_s=0, end_s=600)
    rebuilt = route_counts(sampled.route_file, begin_s=0, end_s=600, interval_s=300, edges=edges)
    summary = compare_counts(observed, rebuilt).summary
    assert summary["geh_ok_share"] == 1.0
    assert summary["total_modelled"] == pytest.approx(summary["total_observed"], rel=0.02)
    assert sampled.vehicles == pytest.approx(95, abs=2)
    assert 'type="car"' in sampled.route_file.read_text()
    assert sampled.scenario.route_files[0] == sampled.vtype_file
    # the rebuilt demand runs in SUMO and its detectors see what was asked for
    measured = measure_counts(sampled.scenario, 1, interval_s=600, edges=["A1B1", "B0B1"])
    got = measured.set_index("edge_id")["count"]
    assert got["A1B1"] == pytest.approx(50, abs=3) and got["B0B1"] == pytest.approx(25, abs=2)
