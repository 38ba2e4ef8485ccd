"""Signal controllers rehearsed in SUMO on the RESCO scenarios, without any training episode.

Protocol (RESCO, Ault & Sharon, NeurIPS 2021 Datasets & Benchmarks): one-hour episodes
(Cologne 25200-28800 s, Ingolstadt 57600-61200 s), no teleporting, average delay = mean over
tripinfo records (unfinished trips included) of timeLoss + departDelay. Controllers and their
settings come from configs/signals_cologne8.yaml; only the scenario and seeds change here.

Evaluation seeds (101, 102, 103) differ from the seed used to pick the max-pressure and
Advanced-MP settings (seed 1) and from the before-study seed (1000) that feeds Webster.

Run:  .venv/bin/python experiments/signals_resco.py [--scenarios cologne1 cologne8 ...]
Writes experiments/results/signals_resco.csv (per seed) and signals_resco.md.

Tuning: .venv/bin/python experiments/signals_resco.py --tune
Runs every Advanced-MP variant of ``TUNING_GRID`` on seed 1 of ``TUNING_SCENARIOS`` (plus
fixed time for the ratio) and writes experiments/results/signals_resco.tuning.csv; the main
report lists it. The chosen variant is the one with the lowest mean delay / fixed-time delay
over the tuning scenarios; it is what configs/signals_cologne8.yaml holds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from citybrain_ml.optimize.simulation import (
    AdvancedMaxPressureController,
    FixedTimeController,
    Scenario,
    load_signals_config,
    run_signals,
    simulate,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
SCENARIOS = ["cologne1", "cologne3", "cologne8", "ingolstadt1", "ingolstadt7", "ingolstadt21"]
#: RESCO's published average delays (s) as quoted in issue 6 (fixed time, max pressure, best
#: RL episode of IDQN/IPPO); only these two scenarios were quoted.
PUBLISHED = {
    "cologne8": {"fixed_time": 63.8, "max_pressure": 47.7, "best_rl": 21.6},
    "ingolstadt7": {"fixed_time": 91.3, "max_pressure": 46.8, "best_rl": 31.2},
}


TUNING_SEED = 1
TUNING_SCENARIOS = SCENARIOS
#: the starting point of the tuning grid (settings from exploratory runs on the tuning seed)
TUNING_BASE = {
    "decision_s": 5,
    "min_green_s": 5.0,
    "range_s": 5.0,
    "detect_m": 100.0,
    "spillback_guard": True,
    "spill_ratio": 0.9,
    "box_clear_max_s": 10.0,
    "max_green_s": 60.0,
}
#: Advanced-MP variants tried on the tuning seed: the base, then one setting changed at a
#: time (detection depth, spillback guard, box clearing, running range, green limits). An
#: earlier round without max green also tried decisions every 2 s / 10 s, a 10 s running
#: range and 5 s box clearing; all were worse on ingolstadt21 and were dropped.
TUNING_GRID = [
    {},
    {"detect_m": 0.0},
    {"detect_m": 50.0},
    {"detect_m": 200.0},
    {"spillback_guard": False},
    {"spill_ratio": 0.6},
    {"box_clear_max_s": 0.0},
    {"box_clear_max_s": 20.0},
    {"range_s": 3.0},
    {"min_green_s": 10.0},
    {"max_green_s": 30.0},
    {"max_green_s": 120.0},
    {"max_green_s": None},
]
TUNING_CSV = RESULTS / "signals_resco.tuning.csv"


def tune() -> pd.DataFrame:
    """Every ``TUNING_GRID`` variant on seed ``TUNING_SEED`` of ``TUNING_SCENARIOS``."""
    rows = []
    for name in TUNING_SCENARIOS:
        scenario = Scenario.resco(name)
        fixed = simulate(scenario, FixedTimeController(), TUNING_SEED).metrics
        for variant in TUNING_GRID:
            controller = AdvancedMaxPressureController(**{**TUNING_BASE, **variant})
            res = simulate(scenario, controller, TUNING_SEED)
            m = res.metrics
            rows.append(
                {
                    "scenario": name,
                    "variant": _variant_name(variant),
                    "delay_s": m["delay_s"],
                    "vs_fixed": m["delay_s"] / fixed["delay_s"],
                    "unfinished_veh": m["unfinished_veh"],
                    "not_inserted_veh": m["not_inserted_veh"],
                    "fixed_delay_s": fixed["delay_s"],
                    "wall_s": m["wall_s"],
                }
            )
            print(f"{name} {rows[-1]['variant']}: delay {m['delay_s']:.1f} s", flush=True)
    out = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.to_csv(TUNING_CSV, index=False)
    return out


def _variant_name(variant: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in variant.items()) or "base"


def tuning_section(tuning: pd.DataFrame) -> list[str]:
    """Markdown: delay / fixed time per variant and tuning scenario, best (chosen) first."""
    wide = tuning.pivot(index="variant", columns="scenario", values="vs_fixed")
    wide = wide[[c for c in TUNING_SCENARIOS if c in wide.columns]]
    never = tuning.groupby("variant")["not_inserted_veh"].sum()
    order = wide.mean(axis=1).sort_values().index
    lines = [
        f"## Advanced-MP tuning (seed {TUNING_SEED}, not an evaluation seed)",
        "",
        "Command: `.venv/bin/python experiments/signals_resco.py --tune`. Base: decision "
        "5 s, min green 5 s, running range 5 s, detection depth 100 m, spillback guard at 0.9 "
        "fill, all-red extended up to 10 s while vehicles stand in the junction, green kept "
        "for running vehicles at most 60 s; each row "
        "changes one setting. Cells: delay / fixed-time delay on the same seed; the row with "
        "the lowest mean is the setting evaluated above (`configs/signals_cologne8.yaml`).",
        "",
        "| variant | " + " | ".join(wide.columns) + " | mean | never inserted (sum) |",
        "|---|" + "---|" * (len(wide.columns) + 2),
    ]
    for variant in order:
        cells = " | ".join(f"{v:.0%}" for v in wide.loc[variant])
        lines.append(
            f"| {variant} | {cells} | {wide.loc[variant].mean():.1%} | {never[variant]:.0f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=SCENARIOS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[101, 102, 103])
    parser.add_argument("--config", default=str(ROOT / "configs" / "signals_cologne8.yaml"))
    parser.add_argument(
        "--from-csv", action="store_true", help="only re-render the report from the saved CSV"
    )
    parser.add_argument("--tune", action="store_true", help="run the Advanced-MP tuning grid")
    args = parser.parse_args()
    if args.tune:
        print("\n".join(tuning_section(tune())))
        return
    if args.from_csv:
        runs = pd.read_csv(RESULTS / "signals_resco.csv")
        args.scenarios = list(dict.fromkeys(runs["scenario"]))
        args.seeds = sorted(runs["seed"].unique().tolist())
        (RESULTS / "signals_resco.md").write_text(report(runs, args, float("nan")))
        return

    template = load_signals_config(args.config)
    frames, started = [], time.perf_counter()
    for name in args.scenarios:
        cfg = template.model_copy(update={"scenario": name, "seeds": args.seeds})
        t0 = time.perf_counter()
        res = run_signals(cfg)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
        frames.append(res.runs)
    runs = pd.concat(frames, ignore_index=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs.to_csv(RESULTS / "signals_resco.csv", index=False)
    total = time.perf_counter() - started
    (RESULTS / "signals_resco.md").write_text(report(runs, args, total))
    print(report(runs, args, total))


def report(runs: pd.DataFrame, args, total_s: float) -> str:
    """Markdown: per-scenario table (mean +- std over seeds) and the targets check."""
    runs = runs.rename(columns={"trip_time_s": "att_finished_s"})  # CSVs before the rename
    for col in ("delay_all_s", "att_all_s", "planned_veh"):
        if col not in runs:  # runs made before every planned vehicle was counted
            runs[col] = float("nan")
    agg = runs.groupby(["scenario", "controller"], sort=False).agg(
        delay=("delay_s", "mean"),
        delay_std=("delay_s", "std"),
        delay_all=("delay_all_s", "mean"),
        att_all=("att_all_s", "mean"),
        trip=("att_finished_s", "mean"),
        wait=("waiting_time_s", "mean"),
        queue=("queue_veh", "mean"),
        planned=("planned_veh", "mean"),
        done=("throughput_veh", "mean"),
        open_=("unfinished_veh", "mean"),
        never=("not_inserted_veh", "mean"),
    )
    lines = [
        "# Signal control in SUMO on the RESCO scenarios (no training)",
        "",
        f"Command: `.venv/bin/python experiments/signals_resco.py --scenarios "
        f"{' '.join(args.scenarios)} --seeds {' '.join(map(str, args.seeds))}` "
        f"({_runtime(runs, total_s)} on a shared 2-core CPU, SUMO "
        f"{_sumo_version()} via libsumo).",
        "",
        "Protocol: RESCO one-hour episodes (Cologne 25200-28800 s, Ingolstadt 57600-61200 s), "
        "no teleports; **delay** = mean over tripinfo records of inserted vehicles (unfinished "
        "included) of timeLoss + departDelay, as RESCO's `utils/readXML.py`; **delay all** = "
        "the same over every planned vehicle, a vehicle never inserted counting the time it "
        "waited to enter; ATT finished = mean travel time of finished trips (LibSignal); ATT "
        "all = mean time from planned departure to arrival or the end of the hour, every "
        "planned vehicle; "
        "queue = mean halting vehicles on the controlled approaches (sampled every 10 s); "
        f"mean +- std over seeds {args.seeds}. Settings: `configs/signals_cologne8.yaml`.",
        "",
        "| scenario | controller | delay (s) | vs fixed | delay all (s) | ATT finished (s) "
        "| ATT all (s) | waiting (s) | queue (veh) | planned | finished | unfinished "
        "| never inserted |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (scen, ctrl), r in agg.iterrows():
        fixed = agg.loc[(scen, "fixed_time"), "delay"]
        lines.append(
            f"| {scen} | {ctrl} | {r.delay:.1f} +- {r.delay_std:.1f} | {r.delay / fixed:.0%} | "
            f"{r.delay_all:.1f} | {r.trip:.1f} | {r.att_all:.1f} | {r.wait:.1f} | "
            f"{r.queue:.1f} | {r.planned:.0f} | {r.done:.0f} | {r.open_:.0f} | {r.never:.0f} |"
        )
    lines += ["", "## Targets", "", *targets(agg), "", *NOTES]
    if TUNING_CSV.is_file():
        lines += ["", *tuning_section(pd.read_csv(TUNING_CSV))]
    return "\n".join(lines) + "\n"


NOTES = [
    "## Caveats",
    "",
    "- *never inserted* = trips scheduled in the hour that SUMO could not insert before its end "
    "(entry lane blocked). RESCO's delay does not count them (its never-departed correction "
    "only reads `<vehicle>` elements; these route files hold `<trip>`s), so a controller that "
    "blocks entries looks better than it is. Read delay together with this column: on "
    "ingolstadt7 max-pressure leaves ~270 of 3031 trips outside vs ~59 under fixed time. Most "
    "come from one entry (edge 10425609#0) that meets its signal through a 0.9 m lane: a "
    "queue read on the signal's own lane never exceeds one car, so the approach starves. "
    "advanced_max_pressure reads queues 100 m back across such splits and leaves 1 trip out.",
    "- advanced_max_pressure = Advanced-MP (Zhang et al., ICML 2022: efficient pressure, and "
    "keep the green while its effective running vehicles exceed the best pressure) plus "
    "additions of ours: 100 m detectors across unsignalised lane splits, a spillback guard "
    "(no pressure for movements into a >= 90% full exit), an all-red extended up to 10 s "
    "while cars stand inside the junction, and an optional max green for the keep rule (off "
    "in the chosen setting). The tuning table below shows each one's effect on the tuning "
    "seed (without detectors: 497 trips never inserted; without the guard or the box "
    "clearing ingolstadt21 goes from 64% to 82% / 72% of fixed).",
    "- ingolstadt21 is gridlock-prone and chaotic: one-setting changes moved Advanced-MP from "
    "50% to 329% of fixed time on the tuning seed. On the evaluation seeds it locked up on "
    "seed 101 (286 s delay, 649 unfinished, 40 never inserted) and ran at 69-70 s (49% of "
    "fixed) on seeds 102 and 103, so its mean equals fixed time with a 125 s std.",
    "- Runs are not bit-reproducible across processes on cologne1: 8 of the 72 runs this table "
    "shares with the previous committed run (same code paths and seeds, all cologne1) differ "
    "by up to 4% in delay; the other five scenarios repeat exactly. Not tracked down "
    "(SUMO-internal); the differences between controllers are far larger.",
    "- RESCO's figures were produced with SUMO 1.9; these runs use SUMO 1.28, whose fixed-time "
    "delays already differ (cologne8 48 s here vs 63.8 s published), so comparisons with the "
    "published RL numbers are indicative only. Published numbers: Ault & Sharon, "
    "'Reinforcement Learning Benchmarks for Traffic Signal Control', NeurIPS 2021 Datasets "
    "and Benchmarks track (as quoted in issue 6; the paper's table was not re-read here).",
    "- Max-pressure settings (halting-vehicle queues, decision every 5 s, min green 5 s) were "
    "picked from 11 variants on seed 1 of cologne8 and ingolstadt7; Advanced-MP settings from "
    "the 13 variants below on seed 1 of all six scenarios (after exploratory runs on seed 1 "
    "and an earlier 15-variant round on seed 1 of cologne8, ingolstadt7 and ingolstadt21); "
    "evaluation seeds 101-103 were not used for any choice.",
]


def targets(agg: pd.DataFrame) -> list[str]:
    """Best controller vs 50% of fixed time (ours), and vs RESCO's best RL where quoted."""
    out = [
        "| scenario | best controller | delay (s) | ours fixed (s) | <= 50% of fixed? "
        "| never inserted (best / fixed) | RESCO fixed / max-pressure / best RL (s) "
        "| <= best RL? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scen in agg.index.get_level_values(0).unique():
        block = agg.loc[scen]
        best = block["delay"].idxmin()
        delay, fixed = block.loc[best, "delay"], block.loc["fixed_time", "delay"]
        pub = PUBLISHED.get(scen)
        pub_text = (
            f"{pub['fixed_time']} / {pub['max_pressure']} / {pub['best_rl']}"
            if pub
            else "not quoted"
        )
        rl = ("yes" if delay <= pub["best_rl"] else "no") if pub else "n/a"
        out.append(
            f"| {scen} | {best} | {delay:.1f} | {fixed:.1f} | "
            f"{'yes' if delay <= 0.5 * fixed else 'no'} ({delay / fixed:.0%}) | "
            f"{block.loc[best, 'never']:.0f} / {block.loc['fixed_time', 'never']:.0f} | "
            f"{pub_text} | {rl} |"
        )
    return out


def _runtime(runs: pd.DataFrame, total_s: float) -> str:
    if total_s == total_s:  # not NaN: measured end to end
        return f"total {total_s / 60:.1f} min"
    return f"controller runs {runs['wall_s'].sum() / 60:.1f} min, before-studies not included,"


def _sumo_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("eclipse-sumo")
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    main()
