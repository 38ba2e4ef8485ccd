"""A city's own network in the signals job: sumocfg / net + route files, honest summaries."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from citybrain_ml.config import ConfigError
from citybrain_ml.optimize import NetworkConfig, Scenario, read_sumocfg, read_tls_programs
from citybrain_ml.optimize.network import parse_sumo_time
from citybrain_ml.optimize.simulation import load_signals_config

needs_sumo = pytest.mark.skipif(
    importlib.util.find_spec("sumo") is None or importlib.util.find_spec("sumo_rl") is None,
    reason="SUMO not installed: pip install -e '.[sim]' (eclipse-sumo, sumo-rl)",
)

SUMOCFG = """<configuration>
  <input>
    <net-file value="{net}"/>
    <route-files value="{routes}"/>
    {extra}
  </input>
  <time><begin value="{begin}"/><end value="{end}"/></time>
  {processing}
</configuration>
"""


def write_cfg(folder, net="city.net.xml", routes="a.rou.xml,b.rou.xml", begin="0", end="1:00:00",
              extra="", processing="", touch=True):  # fmt: skip
    if touch:
        for name in [net, *routes.split(",")]:
            (folder / name).write_text("<x/>")
    path = folder / "city.sumocfg"
    path.write_text(
        SUMOCFG.format(
            net=net, routes=routes, begin=begin, end=end, extra=extra, processing=processing
        )  # fmt: skip
    )
    return path


def test_read_sumocfg_resolves_files_against_its_folder(tmp_path):
    sub = tmp_path / "city"
    sub.mkdir()
    cfg = read_sumocfg(write_cfg(sub, processing='<processing><time-to-teleport value="120"/>'
                                                 "</processing>"))  # fmt: skip
    assert cfg.net_file == sub / "city.net.xml"
    assert cfg.route_files == (sub / "a.rou.xml", sub / "b.rou.xml")
    assert (cfg.begin_s, cfg.end_s) == (0, 3600)
    assert cfg.options["time-to-teleport"] == "120"
    scen = Scenario.from_sumocfg(sub / "city.sumocfg", duration_s=600)
    assert (scen.name, scen.begin_s, scen.end_s) == ("city", 0, 600)
    assert scen.time_to_teleport_s == 120  # the city's option is honoured
    assert scen.route_file == sub / "a.rou.xml" and len(scen.route_files) == 2


def test_sumocfg_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="sumocfg not found"):
        read_sumocfg(tmp_path / "nope.sumocfg")
    path = write_cfg(tmp_path, touch=False)
    with pytest.raises(FileNotFoundError, match=r"city.sumocfg: net-file 'city.net.xml' not found"):
        read_sumocfg(path)
    path = write_cfg(tmp_path, processing='<time><step-length value="0.5"/></time>')
    with pytest.raises(ValueError, match="city.sumocfg: step-length 0.5"):
        Scenario.from_sumocfg(path)
    path = write_cfg(tmp_path, end="-1")
    with pytest.raises(ValueError, match="city.sumocfg: no end"):
        Scenario.from_sumocfg(path)
    assert Scenario.from_sumocfg(path, end_s=900).end_s == 900
    (tmp_path / "bad.sumocfg").write_text("<configuration><input>")
    with pytest.raises(ValueError, match="bad.sumocfg: not valid XML"):
        read_sumocfg(tmp_path / "bad.sumocfg")


def test_parse_sumo_time():
    assert parse_sumo_time("7:00:00") == 25200
    assert parse_sumo_time("90.5") == 90.5
    with pytest.raises(ValueError, match="where: not a time"):
        parse_sumo_time("soon", where="where")


def test_network_config_needs_one_source_and_names_missing_files(tmp_path):
    with pytest.raises(ValueError, match="give one of sumocfg"):
        NetworkConfig()
    with pytest.raises(ValueError, match="route_files"):
        NetworkConfig(net_file="x.net.xml")
    with pytest.raises(FileNotFoundError, match="net_file: file not found: .*x.net.xml"):
        NetworkConfig(net_file=str(tmp_path / "x.net.xml"), route_files=["r.xml"], end_s=60).build()
    (tmp_path / "x.net.xml").write_text("<net/>")
    with pytest.raises(FileNotFoundError, match="route_files: file not found: .*r.xml"):
        NetworkConfig(net_file=str(tmp_path / "x.net.xml"), route_files=[str(tmp_path / "r.xml")],
                      end_s=60).build()  # fmt: skip


def test_signals_config_takes_a_network_or_a_sumocfg_path(tmp_path):
    yaml = tmp_path / "job.yaml"
    yaml.write_text("network: {net_file: a.net.xml, route_files: [a.rou.xml], end_s: 600}\n")
    cfg = load_signals_config(yaml)
    assert cfg.scenario is None and cfg.label == "a"
    yaml.write_text("scenario: my/city.sumocfg\n")
    cfg = load_signals_config(yaml)  # the path a new user tries first
    assert cfg.network.sumocfg == "my/city.sumocfg" and cfg.label == "city"
    yaml.write_text("network: {net_file: a.net.xml}\n")
    with pytest.raises(ConfigError, match="job.yaml: field 'network'.*route_files"):
        load_signals_config(yaml)
    yaml.write_text("scenario: cologne1\nnetwork: {sumocfg: a.sumocfg}\n")
    with pytest.raises(ConfigError, match="one of them"):
        load_signals_config(yaml)


def test_program_in_an_additional_file_replaces_the_nets(tmp_path):
    net, add = tmp_path / "n.net.xml", tmp_path / "p.add.xml"
    net.write_text('<net><tlLogic id="J" programID="0" offset="0"><phase duration="30" state="Gr"/>'
                   '<phase duration="30" state="rG"/></tlLogic></net>')  # fmt: skip
    add.write_text('<additional><tlLogic id="J" programID="mine" offset="4">'
                   '<phase duration="20" state="Gr"/><phase duration="3" state="yr"/>'
                   '<phase duration="40" state="rG"/></tlLogic></additional>')  # fmt: skip
    assert read_tls_programs(net)["J"].cycle_s == 60
    prog = read_tls_programs(net, add)["J"]
    assert (prog.cycle_s, prog.offset_s) == (63, 4)


# ---------------------------------------------------------------------------- real SUMO
def _cologne1_cfg(tmp_path, teleport: int | None = None):
    from citybrain_ml.optimize.simulation import resco_dir

    folder = resco_dir() / "cologne1"
    processing = (
        f'<processing><time-to-teleport value="{teleport}"/></processing>' if teleport else ""
    )
    path = tmp_path / "cologne1_own.sumocfg"
    path.write_text(
        SUMOCFG.format(
            net=folder / "cologne1.net.xml",
            routes=folder / "cologne1.rou.xml",
            begin=25200,
            end=25500,
            extra="",
            processing=processing,
        )  # fmt: skip
    )
    return path


@needs_sumo
def test_job_runs_on_a_sumocfg_and_accounts_for_every_vehicle(tmp_path, monkeypatch):
    from citybrain_ml.optimize import run_signals_job

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = tmp_path / "job.yaml"
    cfg.write_text(
        f"name: own\nnetwork: {{sumocfg: {_cologne1_cfg(tmp_path, teleport=200)}}}\n"
        "seeds: [1]\ncontrollers: [fixed_time, max_pressure]\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    text = run_signals_job(cfg)
    for column in ("delay_all", "ATT_all", "ATT_finished", "never_in", "planned"):
        assert column in text
    metrics = pd.read_csv(tmp_path / "out" / "metrics.csv")
    assert set(metrics["scenario"]) == {"cologne1_own"}
    parts = metrics[["throughput_veh", "unfinished_veh", "not_inserted_veh"]].sum(axis=1)
    assert (parts == metrics["planned_veh"]).all()

    import mlflow

    run = mlflow.search_runs(experiment_names=["citybrain-signals"]).iloc[0]
    assert run["tags.scenario"] == "cologne1_own"
    for key in ("delay_all_s", "att_all_s", "att_finished_s", "not_inserted_veh", "planned_veh"):
        assert f"metrics.fixed_time.{key}" in run.index


@needs_sumo
def test_simulate_on_net_and_route_files_from_python(tmp_path):
    """The public API on a city's own files: Scenario.from_files + simulate + a controller."""
    from citybrain_ml.optimize import MaxPressureController, simulate
    from citybrain_ml.optimize.simulation import resco_dir

    folder = resco_dir() / "cologne1"
    scen = Scenario.from_files(folder / "cologne1.net.xml", [folder / "cologne1.rou.xml"],
                               begin_s=25200, duration_s=200, name="mine")  # fmt: skip
    res = simulate(scen, MaxPressureController(), seed=3)
    m = res.metrics
    assert res.scenario == "mine" and m["planned_veh"] > 0
    assert m["planned_veh"] == m["throughput_veh"] + m["unfinished_veh"] + m["not_inserted_veh"]


# ---------------------------------------------------------------- plans that respect the program
def _split_phase_node():
    """Four links (WT, ET, WL, EL) and four greens: WT+ET, WL+EL, WT+WL (west), ET+EL (east).

    Every movement is served by two greens, like the eight-green programs of the issue.
    """
    from citybrain_ml.optimize.simulation import Intersection

    links = [[(f"{m}_in", f"{m}_out", f":{m}")] for m in ("wt", "et", "wl", "el")]
    return Intersection("J", ["GGrr", "rrGG", "GrGr", "rGrG"], links, cycle_s=80.0)


def test_cover_ratios_serve_every_movement_with_the_least_green():
    from citybrain_ml.optimize.simulation import cover_green_ratios

    node = _split_phase_node()
    flows = {0: 600.0, 1: 100.0, 2: 300.0, 3: 50.0}  # west is busy: y = 1/3, 1/18, 1/6, 1/36
    x = cover_green_ratios(node, flows, 1800.0)
    served = [x[0] + x[2], x[0] + x[3], x[1] + x[2], x[1] + x[3]]
    need = [1 / 3, 1 / 18, 1 / 6, 1 / 36]
    assert all(s >= n - 1e-9 for s, n in zip(served, need, strict=True))
    # better than the paired phases (1/3 + 1/6) and than split phases alone (1/3 + 1/18)
    assert x.sum() == pytest.approx(13 / 36)
    # a movement never seen in the counts still gets a green
    x0 = cover_green_ratios(node, {0: 600.0}, 1800.0)
    assert min(x0[0] + x0[3], x0[1] + x0[2], x0[1] + x0[3]) > 0


def test_cover_mapping_gives_fewer_phases_than_sharing():
    from citybrain_ml.optimize.simulation import WebsterSettings

    node = _split_phase_node()
    flows = pd.DataFrame({"intersection_id": "J", "link_index": [0, 1, 2, 3],
                          "flow_veh_h": [600.0, 100.0, 300.0, 50.0]})  # fmt: skip
    share = WebsterSettings().plans(flows, {"J": node}, 3.0, 1.0)[0]
    cover = WebsterSettings(phase_mapping="cover").plans(flows, {"J": node}, 3.0, 1.0)[0]
    assert len(share.phases) == 4 and len(cover.phases) < 4
    assert cover.flow_ratio_sum == pytest.approx(13 / 36)
    # cycle bounds from the program (80 s): 40-120 s, not another city's 60-90
    assert 40.0 <= cover.cycle_s <= 120.0
    with pytest.raises(ValueError, match="phase_mapping"):
        WebsterSettings(phase_mapping="split")


def test_program_cycle_bounds():
    from citybrain_ml.optimize.simulation import program_cycle_bounds

    assert program_cycle_bounds(80.0, 4, 10.0) == (40.0, 120.0)
    assert program_cycle_bounds(80.0, 8, 25.0) == (200.0, 200.0)  # minimum greens first
    assert program_cycle_bounds(float("nan"), 2, 10.0) == (30.0, 120.0)


class _Fake:
    def __init__(self, name):
        self.name = name


def _fake_simulate(delays):
    """A stand-in for simulate: delay per candidate name, a plan list per candidate."""
    from citybrain_ml.optimize.simulation import SimulationResult

    def run(scenario, controller, seed, **kwargs):
        name = controller.name
        metrics = {"delay_all_s": delays[name] + seed * 0.1, "not_inserted_veh": 0}
        return SimulationResult("s", name, seed, metrics, pd.DataFrame(), plans=[f"plan:{name}"])

    return run


def test_never_worse_a_plan_that_rehearsed_worse_is_not_recommended():
    from citybrain_ml.optimize.simulation import recommend_plan

    worse = {"fixed_time": 100.0, "webster": 120.0, "webster_cover": 101.0}
    cands = {"webster": lambda: _Fake("webster"), "webster_cover": lambda: _Fake("webster_cover")}
    rec = recommend_plan(None, cands, [1, 2], simulate_fn=_fake_simulate(worse))
    assert not rec.improved and rec.chosen == "existing" and rec.plans == []
    assert rec.message.startswith("cannot improve") and "webster_cover" in rec.message
    assert rec.expected_value == rec.existing_value == pytest.approx(100.15)
    assert len(rec.rehearsal) == 3 * 2  # existing + 2 candidates, 2 seeds each
    summary = rec.to_dict()
    assert summary["candidates"]["webster"] == pytest.approx(120.15) and summary["plans"] == []

    better = {"fixed_time": 100.0, "webster": 80.0, "webster_cover": 90.0}
    rec = recommend_plan(None, cands, [1], simulate_fn=_fake_simulate(better))
    assert rec.improved and rec.chosen == "webster" and rec.plans == ["plan:webster"]
    assert rec.existing_value == pytest.approx(100.1) and rec.expected_value == pytest.approx(80.1)
    # a gain below the required improvement is not worth a change
    rec = recommend_plan(None, cands, [1], simulate_fn=_fake_simulate(better),
                         min_improvement=0.25)  # fmt: skip
    assert not rec.improved
    with pytest.raises(ValueError, match="reserved"):
        recommend_plan(None, {"existing": lambda: _Fake("x")}, [1])


def test_a_plan_better_on_the_mean_but_worse_on_one_seed_is_not_recommended():
    from citybrain_ml.optimize.simulation import SimulationResult, recommend_plan

    # webster wins big on seed 1 and loses on seed 2: the mean alone would pick it
    delays = {("fixed_time", 1): 100.0, ("fixed_time", 2): 100.0,
              ("webster", 1): 60.0, ("webster", 2): 104.0,
              ("webster_cover", 1): 95.0, ("webster_cover", 2): 97.0}  # fmt: skip

    def run(scenario, controller, seed, **kwargs):
        metrics = {"delay_all_s": delays[(controller.name, seed)]}
        return SimulationResult("s", controller.name, seed, metrics, pd.DataFrame(), plans=[1])

    cands = {"webster": lambda: _Fake("webster"), "webster_cover": lambda: _Fake("webster_cover")}
    rec = recommend_plan(None, cands, [1, 2], simulate_fn=run)
    assert rec.improved and rec.chosen == "webster_cover"  # better on every seed
    rec = recommend_plan(None, cands, [1, 2], simulate_fn=run, every_seed=False)
    assert rec.chosen == "webster"
    rec = recommend_plan(None, cands, [1, 2], simulate_fn=run, min_improvement=0.05)
    assert not rec.improved and "no seed worse" in rec.message


def test_rehearsal_defaults_three_seeds_and_a_margin():
    from citybrain_ml.optimize.simulation import RehearsalConfig

    cfg = RehearsalConfig()
    assert cfg.seeds is None and cfg.min_improvement == 0.02 and cfg.every_seed
