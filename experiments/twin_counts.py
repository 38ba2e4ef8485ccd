"""A city's demand rebuilt from detector counts, and signal plans rehearsed on forecast demand.

Part A -- counts -> demand (issue 12). For each RESCO scenario: the original trips are
routed (duarouter, the routes SUMO gives them), detector counts are taken from them on the
edges at the signals (every vehicle counted in the interval of its departure, routeSampler's
convention; turning counts at the signals too unless ``--no-turns``), and SUMO's
routeSampler rebuilds routes from the counts alone, choosing among the original routes
(``--optimize full``). Reported:

* GEH < 5 share of counted edges (hourly flows over the window; target >= 85%) and share of
  counted edges whose flow is within 10% -- on the counts themselves, and on what detectors
  *measure* in SUMO (edgeData entered + departed, seed 1) on the original and rebuilt demand;
* delay over all planned vehicles (``delay_all_s``) under fixed time and max-pressure on the
  original vs the rebuilt demand, seeds 1-3 (target within 15%).

Part B -- forecast-driven rehearsal (cologne1 by default). ``run_signals`` with
``rehearsal: {demand: forecast}``: 4 simulated past days of 1-minute detector counts (seeds
2000-2003, existing plan) -> citybrain ``auto`` forecast of the next day's counts -> routes by
routeSampler -> Webster variants planned and rehearsed on that forecast demand against the
existing plan (seed 1001) -> the chosen plan (or "cannot improve") evaluated on the true
demand, seeds 1-3, beside the existing plan and the same job rehearsing on the true demand.

Run:  .venv/bin/python experiments/twin_counts.py [--scenarios cologne1 cologne8]
      [--interval 60] [--no-turns] [--forecast-scenario cologne1] [--skip-forecast]
Writes experiments/results/twin_counts.md and twin_counts.csv (+ twin_counts.forecast.csv).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.optimize.demand import (
    compare_counts,
    measure_counts,
    read_routes,
    route_counts,
    routed_files,
    sample_routes,
    signal_edges,
)
from citybrain_ml.optimize.simulation import (
    FixedTimeController,
    MaxPressureController,
    Scenario,
    SignalsJobConfig,
    run_signals,
    simulate,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
WORK = ROOT / "outputs" / "twin_counts"
SEEDS = (1, 2, 3)
CONTROLLERS = {"fixed_time": FixedTimeController, "max_pressure": MaxPressureController}
TARGETS = {"geh_ok_share": 0.85, "within_10pct": None, "delay_rel": 0.15}


def rebuild(name: str, interval_s: int, turns: bool) -> dict:
    """Part A for one scenario: counts, routeSampler, count fit, delay on both demands."""
    scenario = Scenario.resco(name)
    work = WORK / name
    started = time.perf_counter()
    routed = routed_files(scenario.net_file, list(scenario.route_files), work)
    edges = signal_edges(scenario.net_file)
    departing = read_routes(routed)["depart"]
    window = {"begin_s": scenario.begin_s, "end_s": scenario.end_s}
    observed = route_counts(routed, interval_s=interval_s, edges=edges, **window)
    turn_counts = None
    if turns:
        turn_counts = route_counts(routed, interval_s=interval_s, edges=edges, turns=True,
                                   **window)  # fmt: skip
        turn_counts = turn_counts[turn_counts["to_edge"].isin(edges)]
    t0 = time.perf_counter()
    sampled = sample_routes(scenario.net_file, observed, routed, work / f"sampled_{interval_s}s",
                            turn_counts=turn_counts, seed=42, **window)  # fmt: skip
    sampler_s = time.perf_counter() - t0
    rebuilt = route_counts(sampled.route_file, interval_s=interval_s, edges=edges, **window)
    fit = compare_counts(observed, rebuilt).summary
    # what detectors measure in the simulation, hourly, on both demands (seed 1)
    hour = scenario.end_s - scenario.begin_s
    det_orig = measure_counts(scenario, 1, interval_s=hour, edges=edges)
    det_new = measure_counts(sampled.scenario, 1, interval_s=hour, edges=edges)
    det = compare_counts(det_orig, det_new).summary
    row = {
        "scenario": name,
        "interval_s": interval_s,
        "turn_counts": turns,
        "counted_edges": len(edges),
        "turn_locations": 0
        if turn_counts is None
        else int(turn_counts[["from_edge", "to_edge"]].drop_duplicates().shape[0]),
        "original_veh": int(departing.between(scenario.begin_s, scenario.end_s - 1e-9).sum()),
        "rebuilt_veh": sampled.vehicles,
        "geh_ok_share": fit["geh_ok_share"],
        "geh_ok_share_intervals": fit["geh_ok_share_intervals"],
        "within_10pct": fit["within_tol_share"],
        "mean_abs_rel_error": fit["mean_abs_rel_error"],
        "det_geh_ok_share": det["geh_ok_share"],
        "det_within_10pct": det["within_tol_share"],
        "det_mean_abs_rel_error": det["mean_abs_rel_error"],
        "sampler_s": sampler_s,
    }
    for ctrl, factory in CONTROLLERS.items():
        for label, sc in (("original", scenario), ("rebuilt", sampled.scenario)):
            vals = [simulate(sc, factory(), s).metrics["delay_all_s"] for s in SEEDS]
            row[f"{ctrl}_{label}"] = float(np.mean(vals))
            row[f"{ctrl}_{label}_seeds"] = " / ".join(f"{v:.1f}" for v in vals)
        row[f"{ctrl}_rel"] = row[f"{ctrl}_rebuilt"] / row[f"{ctrl}_original"] - 1
    row["wall_s"] = time.perf_counter() - started
    print(f"{name}: GEH<5 {fit['geh_ok_share']:.0%}, fixed {row['fixed_time_rel']:+.1%}, "
          f"max-pressure {row['max_pressure_rel']:+.1%} ({row['wall_s']:.0f} s)", flush=True)  # fmt: skip
    return row


def forecast_rehearsal(name: str) -> tuple[pd.DataFrame, dict]:
    """Part B: the rehearsed controller on forecast demand vs on true demand, true evaluation."""
    rows, recs = [], {}
    for demand in ("forecast", "scenario"):
        cfg = SignalsJobConfig(
            scenario=name,
            controllers=["fixed_time", "rehearsed"] if demand == "forecast" else ["rehearsed"],
            seeds=list(SEEDS),
            rehearsal={"demand": demand, "forecast_model": "auto", "history_days": 4},
            output_dir=str(WORK / f"{name}_rehearsal_{demand}"),
        )
        t0 = time.perf_counter()
        result = run_signals(cfg)
        rec = result.recommendation
        recs[demand] = {**rec.to_dict(), "wall_s": time.perf_counter() - t0}
        runs = result.runs.assign(rehearsed_on=demand)
        runs.loc[runs["controller"] == "fixed_time", "rehearsed_on"] = "-"
        rows.append(runs)
        print(f"{name} rehearsed on {demand}: {rec.message}", flush=True)
    return pd.concat(rows, ignore_index=True), recs


def forecast_accuracy(name: str, interval_s: int = 60) -> dict:
    """The forecast counts against the detector counts of the true day (seed 1, hourly)."""
    scenario = Scenario.resco(name)
    fc = pd.read_csv(WORK / f"{name}_rehearsal_forecast" / "forecast_demand" /
                     "forecast_counts.csv")  # fmt: skip
    edges = sorted(fc["edge_id"].astype(str).unique())
    hour = scenario.end_s - scenario.begin_s
    truth = measure_counts(scenario, 1, interval_s=hour, edges=edges)
    fc_hour = (
        fc.groupby("edge_id", as_index=False)["count"]
        .sum()
        .assign(interval_begin=scenario.begin_s, interval_end=scenario.end_s)
    )
    return compare_counts(truth, fc_hour).summary


def _chosen(selected) -> str:
    """``auto``'s per-step choices, counted (``{1: "a", 2: "a"}`` -> ``a x2``)."""
    if not isinstance(selected, dict):
        return str(selected)
    counts = pd.Series(list(selected.values())).value_counts()
    return ", ".join(f"{k} x{v}" for k, v in counts.items())


def _pct(x: float) -> str:
    return f"{x:.0%}" if np.isfinite(x) else "-"


def report(rows: pd.DataFrame, fc_runs, recs, fc_acc, args, wall_s: float) -> str:
    met_geh = (rows["geh_ok_share"] >= 0.85).all() and (rows["det_geh_ok_share"] >= 0.85).all()
    met_10 = (rows["within_10pct"] >= 1.0).all()
    delay_ok = (rows[["fixed_time_rel", "max_pressure_rel"]].abs() <= 0.15).all(axis=1)
    geh_text = ", ".join(
        f"{r.scenario} {_pct(r.geh_ok_share)} of counts / {_pct(r.det_geh_ok_share)} measured"
        for r in rows.itertuples()
    )
    within_text = ", ".join(
        f"{r.scenario} {_pct(r.within_10pct)} of counts / {_pct(r.det_within_10pct)} measured"
        for r in rows.itertuples()
    )
    lines = [
        "# Demand from detector counts, and rehearsal on forecast demand",
        "",
        f"Rerun: `.venv/bin/python experiments/twin_counts.py --scenarios "
        f"{' '.join(args.scenarios)} --interval {args.interval}"
        f"{' --no-turns' if args.no_turns else ''}"
        f"{'' if args.skip_forecast else ' --forecast-scenario ' + args.forecast_scenario}` "
        f"(total {wall_s / 60:.1f} min on a shared 2-core machine, {platform.python_version()}, "
        "SUMO 1.28; other jobs were running at the same time, so times are indicative).",
        "",
        "Data: RESCO scenarios (sumo-rl package; TAPAS Cologne / InTAS Ingolstadt demand), "
        "benchmark hour. Detector counts on the edges entering and leaving the signals, "
        f"{args.interval}-s intervals"
        f"{'' if args.no_turns else ' plus turning counts at the signals'}; "
        "candidate routes = the original trips routed by duarouter; routeSampler "
        "`--optimize full --seed 42`. Delay = `delay_all_s` (all planned vehicles, insertion "
        f"delay included), mean of seeds {list(SEEDS)}.",
        "",
        "**Targets**",
        "",
        f"* GEH < 5 on >= 85% of counted edges: **{'met' if met_geh else 'missed'}** ({geh_text}).",
        f"* every counted edge's flow within 10%: **{'met' if met_10 else 'missed'}** "
        f"({within_text}).",
        "* delay under the same controller within 15% on rebuilt vs original demand: "
        + ", ".join(
            f"{r.scenario} **{'met' if ok else 'missed'}** (fixed time {r.fixed_time_rel:+.1%}, "
            f"max-pressure {r.max_pressure_rel:+.1%})"
            for r, ok in zip(rows.itertuples(), delay_ok, strict=True)
        )
        + ".",
        "",
        "## A. Counts -> routes (routeSampler)",
        "",
        "| scenario | counted edges | turn counts | vehicles orig / rebuilt | GEH<5 (counts) | "
        "GEH<5 (measured) | within 10% (counts / measured) | fixed time orig -> rebuilt (s) "
        "| max-pressure orig -> rebuilt (s) | routeSampler s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows.itertuples():
        lines.append(
            f"| {r.scenario} | {r.counted_edges} | {r.turn_locations} | {r.original_veh} / "
            f"{r.rebuilt_veh} | {_pct(r.geh_ok_share)} | {_pct(r.det_geh_ok_share)} | "
            f"{_pct(r.within_10pct)} / {_pct(r.det_within_10pct)} | "
            f"{r.fixed_time_original:.1f} -> {r.fixed_time_rebuilt:.1f} ({r.fixed_time_rel:+.1%})"
            f" | {r.max_pressure_original:.1f} -> {r.max_pressure_rebuilt:.1f} "
            f"({r.max_pressure_rel:+.1%}) | {r.sampler_s:.0f} |"
        )
    lines += [
        "",
        "Per seed (original | rebuilt): "
        + "; ".join(
            f"{r.scenario} fixed {r.fixed_time_original_seeds} | {r.fixed_time_rebuilt_seeds}, "
            f"max-pressure {r.max_pressure_original_seeds} | {r.max_pressure_rebuilt_seeds}"
            for r in rows.itertuples()
        ),
        "",
        "*GEH (counts)*: the rebuilt routes counted the way the input counts were (departure "
        "interval), hourly flow over the window per counted edge. *Measured*: what edgeData "
        "detectors report in SUMO (entered + departed, seed 1) on the original vs the rebuilt "
        "demand. The vehicles of the original file departing in the window are counted; a few "
        "more may be planned in the file outside it.",
        "",
    ]
    if fc_runs is not None:
        lines += forecast_section(fc_runs, recs, fc_acc, args.forecast_scenario)
    lines += NOTES
    return "\n".join(lines) + "\n"


#: observations from exploratory runs while building this benchmark (not recomputed here)
NOTES = [
    "## Notes",
    "",
    "* **Counting interval matters for delay, not for GEH.** Exploratory runs on cologne1 "
    "(seeds 1-2, not recomputed by this script): with 5-minute counts the rebuilt demand met "
    "GEH on every edge but fixed-time delay was 24% below the original (32.2 vs 42.8 s); "
    "redrawing only the departure times of the *original* routes uniformly inside 5-minute "
    "bins gave the same drop (32.7 s). routeSampler spreads vehicles uniformly within an "
    "interval, which erases the arrival peaks inside it; 1-minute counts (default here) keep "
    "them. Turning counts at the signals fix the turn split, which edge counts alone leave "
    "open.",
    "* **Vehicles that pass no counted edge are not rebuilt**: ingolstadt1 and cologne8 lose "
    "170 and 155 vehicles (10% / 8%) that never cross a signal's edges. On ingolstadt1 "
    "max-pressure delay drops 37% on the rebuilt demand although every count is met -- "
    "the target is missed there; counting more edges (`count_edges: all`) is the remedy to "
    "try next.",
    "* **Forecast twin**: the forecast path counts like detectors (SUMO edgeData, vehicles "
    "counted when they pass, edge counts only, no turning counts), and its routes rehearse "
    "the existing plan at a lower delay than the true demand does (see B). The rehearsal "
    "therefore compares plans on a lighter twin; the never-worse rule held (the "
    "recommendation was the existing plan, evaluated -0.8% on the true demand), but on this "
    "twin the Webster variant that helps on the true demand rehearsed worse and was not "
    "chosen. Turning counts from detectors would be the next step.",
    "* **SUMO run-to-run state**: the same controller, scenario and seed gave 44.3 s and "
    "43.3 s (cologne1 fixed time, seed 3) depending on which scenario ran before in the same "
    "process (libsumo keeps some state between runs; the first run after another scenario "
    "differs). Differences of about 1 s between runs are noise of this kind.",
]


def forecast_section(runs: pd.DataFrame, recs: dict, acc: dict, name: str) -> list[str]:
    mean = runs.groupby(["controller", "rehearsed_on"])["delay_all_s"].agg(["mean", "std"])
    per_seed = runs.groupby(["controller", "rehearsed_on"])["delay_all_s"].apply(
        lambda v: " / ".join(f"{x:.1f}" for x in v)
    )
    fixed = float(mean.loc[("fixed_time", "-"), "mean"])
    out = [
        f"## B. Forecast-driven rehearsal ({name})",
        "",
        f"Past days: 4 simulated days of 1-minute detector counts on {acc['edges']} edges at "
        "the signal (seeds 2000-2003, existing plan); forecast: citybrain `auto` with `learned: false` (baselines only; LightGBM on the 1-minute grid took >10 min) "
        f"(chosen per step: {_chosen(recs['forecast']['demand_info'].get('forecast_selected'))}); "
        "routes by routeSampler from the forecast counts; candidates (Webster, Webster cover, "
        "keep-cycle variants) planned from turning flows counted on the forecast demand and "
        "rehearsed there against the existing plan (seed 1001); evaluated on the true demand, "
        f"seeds {list(SEEDS)}.",
        "",
        f"Forecast vs the true day's measured counts (hourly, seed 1): GEH<5 on "
        f"{_pct(acc['geh_ok_share'])} of edges, within 10% on {_pct(acc['within_tol_share'])}, "
        f"mean abs. relative error {acc['mean_abs_rel_error']:.1%} "
        f"({acc['total_modelled']:.0f} forecast vs {acc['total_observed']:.0f} measured "
        "vehicle passages). The 4 past days are seeds of the same demand, so they differ only "
        "by SUMO's randomness: the forecast problem here is easy, and this checks the "
        "pipeline, not forecast skill on real day-to-day variation.",
        "",
        "| plan | rehearsed on | recommendation | rehearsal: existing -> chosen (s) | "
        "true demand delay_all_s (mean, seeds) | vs existing plan |",
        "|---|---|---|---|---|---|",
        f"| existing (fixed time) | - | - | - | {fixed:.1f} ({per_seed[('fixed_time', '-')]}) "
        "| - |",
    ]
    for demand in ("forecast", "scenario"):
        rec = recs[demand]
        true = float(mean.loc[("rehearsed", demand), "mean"])
        label = rec["chosen"] if rec["improved"] else "cannot improve (existing kept)"
        out.append(
            f"| rehearsed | {demand} demand | {label} | {rec['existing']:.1f} -> "
            f"{rec['expected']:.1f} | {true:.1f} ({per_seed[('rehearsed', demand)]}) | "
            f"{true / fixed - 1:+.1%} |"
        )
    out += [
        "",
        "Recommendation messages:",
        "",
        *[f"* {d}: {recs[d]['message']}" for d in ("forecast", "scenario")],
        "",
        "Rehearsal candidates (mean over the rehearsal seed): "
        + "; ".join(
            f"{d}: " + ", ".join(f"{k} {v:.1f}" for k, v in recs[d]["candidates"].items())
            for d in ("forecast", "scenario")
        ),
        "",
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", nargs="+", default=["cologne1", "cologne8"])
    parser.add_argument("--interval", type=int, default=60, help="counting interval, s")
    parser.add_argument("--no-turns", action="store_true", help="edge counts only")
    parser.add_argument("--forecast-scenario", default="cologne1")
    parser.add_argument("--skip-forecast", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = pd.DataFrame([rebuild(n, args.interval, not args.no_turns) for n in args.scenarios])
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows.to_csv(RESULTS / "twin_counts.csv", index=False)
    fc_runs = recs = acc = None
    if not args.skip_forecast:
        fc_runs, recs = forecast_rehearsal(args.forecast_scenario)
        fc_runs.to_csv(RESULTS / "twin_counts.forecast.csv", index=False)
        acc = forecast_accuracy(args.forecast_scenario)
    text = report(rows, fc_runs, recs, acc, args, time.perf_counter() - started)
    (RESULTS / "twin_counts.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
