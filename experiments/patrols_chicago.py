"""Response-unit placement on Chicago incident risk: forecast vs historical-rate vs uniform.

Crime (default): ../shared/data/incidents/chicago_crime_2016_2017 counted per 3 km cell per
day (180 cells). Test: every day from 2017-07-01 to 2017-12-31 (184 days); models fitted once
on 2016-01-01..2017-06-30, each test day forecast from data up to the day before. Each method
places ``p`` units on cell centroids by maximal covering (exact MILP, HiGHS) on its demand
estimate; the score is the share of that day's *actual* crimes within ``radius`` of a unit.
Main setting p = 8, radius 4 km (configs/patrols_chicago.yaml); a sensitivity grid reuses
the same forecasts.

Accidents (``--accident``): the GSNet 20x20 hourly grid (cells have no coordinates; unit
spacing, radius in cells), 6/2/2 time split, test = the first ``--accident-hours`` hours of
the test part.

Run:  .venv/bin/python experiments/patrols_chicago.py [--accident [--accident-p 8 16]
      [--accident-radius 2] [--accident-hours 336]]
Writes experiments/results/patrols_chicago.md and patrols_chicago.csv: the crime section
always, the accident section after it when ``--accident`` is given (each run rewrites both
files, so run with ``--accident`` to keep the accident section).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from citybrain_ml.optimize.patrols import (
    PatrolsJobConfig,
    PlacementConfig,
    _forecast_errors,
    forecast_backtest,
    load_incident_grid,
    load_patrols_config,
    summarise_coverage,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
GRID = [(4, 4000.0), (8, 3000.0), (8, 4000.0), (8, 5000.0)]


def evaluate(cfg: PatrolsJobConfig, grid) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Coverage summary for every (p, radius) in ``grid`` plus forecast errors."""
    ds = load_incident_grid(cfg.data)
    bt = forecast_backtest(cfg, ds)
    frames = []
    for p, radius in grid:
        placement = PlacementConfig(p=p, radius_m=radius, solver=cfg.placement.solver)
        t0 = time.perf_counter()
        summary = summarise_coverage(bt.score(placement))
        summary.insert(0, "radius", radius)
        summary.insert(0, "p", p)
        frames.append(summary)
        print(f"p={p} radius={radius:g}: {time.perf_counter() - t0:.0f} s", flush=True)
    errors = _forecast_errors(bt.demands, bt.actual, bt.periods)
    return pd.concat(frames, ignore_index=True), errors, len(bt.periods)


def accident_config(hours: int) -> PatrolsJobConfig:
    """The hourly accident grid: 6/2/2 split, first ``hours`` test hours."""
    return PatrolsJobConfig(
        name="patrols_chicago_accident",
        data={"dataset": "chicago_accident_grid"},
        forecasters=[
            {
                "type": "lightgbm",
                "name": "lightgbm_poisson",
                "params": {
                    "objective": "poisson",
                    "lags": [1, 2, 3, 24, 168],
                    "rolling_windows": [24, 168],
                    "ewm_halflives": [24.0],
                    "use_covariates": False,
                    "n_estimators": 100,
                    "n_jobs": 2,
                },
            },  # fmt: skip
            {"type": "historical_average", "params": {"period": "week"}},
        ],
        placement={"p": 8, "radius_m": 2.0},
        # 6/2/2 split: the test part is the last 20%; models train on the 80% before it
        evaluation={"test_ratio": 0.2, "max_periods": hours, "lookback": 24 * 28},
    )


def table(summary: pd.DataFrame, period: str = "day") -> list[str]:
    """Markdown rows of a coverage summary; ``period`` names the scoring period."""
    lines = [
        f"| p | radius | method | coverage (pooled) | mean per {period} | gain vs hist. rate "
        f"(95% CI) | {period}s >= hist. rate |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary.itertuples():
        lines.append(
            f"| {r.p} | {r.radius:g} | {r.method} | {r.coverage_pooled:.4f} | "
            f"{r.coverage_mean:.4f} | {r.gain_vs_historical:+.4f} +- "
            f"{r.gain_ci95_halfwidth:.4f} | {r.win_rate_vs_historical:.0%} |"
        )
    return lines


def markdown(df: pd.DataFrame) -> list[str]:
    """A small frame as markdown table lines (no tabulate dependency)."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    body = [
        "| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |"
        for row in df.itertuples(index=False)
    ]
    return [head, rule, *body]


def _accident_flags(args) -> str:
    if not args.accident:
        return ""
    return (
        f" --accident --accident-hours {args.accident_hours} --accident-p "
        f"{' '.join(map(str, args.accident_p))} --accident-radius {args.accident_radius:g}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "patrols_chicago.yaml"))
    parser.add_argument("--accident", action="store_true", help="also the hourly accident grid")
    parser.add_argument("--accident-hours", type=int, default=24 * 14)
    parser.add_argument(
        "--accident-p", type=int, nargs="+", default=[8, 16], help="units placed (accidents)"
    )
    parser.add_argument(
        "--accident-radius", type=float, default=2.0, help="coverage radius in cells (accidents)"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    cfg = load_patrols_config(args.config)
    summary, errors, n = evaluate(cfg, GRID)
    summary.insert(0, "dataset", "chicago_crime_3km_day")
    lines = [
        "# Response-unit placement on Chicago incident risk",
        "",
        f"Command: `.venv/bin/python experiments/patrols_chicago.py{_accident_flags(args)}`. "
        f"Settings: `{Path(args.config).name}`.",
        "",
        "## Crime, 3 km cells x day",
        "",
        f"Data: chicago_crime_2016_2017 gridded to 3 km x 1 day (180 cells). Models fitted on "
        f"2016-01-01..2017-06-30; test: {n} days from {cfg.evaluation.test_start}, each "
        "forecast one day ahead from data up to the day before. Placement: maximal covering, "
        "exact MILP (HiGHS), candidate sites = cell centroids, great-circle radius (m). "
        "Score: share of the day's *actual* crimes within the radius of a unit. "
        f"historical_rate = trailing {cfg.evaluation.lookback}-day mean per cell; uniform = "
        "most city cells covered (same placement every day); oracle = placed on the actual "
        "counts (upper bound).",
        "",
        *table(summary),
        "",
        "One-day-ahead forecast error per cell-day (test days):",
        "",
        *markdown(errors),
    ]
    frames = [summary]
    if args.accident:
        acfg = accident_config(args.accident_hours)
        agrid = [(p, args.accident_radius) for p in args.accident_p]
        asum, aerr, an = evaluate(acfg, agrid)
        asum.insert(0, "dataset", "chicago_accident_20x20_hour")
        frames.append(asum)
        lines += [
            "",
            "## Accidents, GSNet 20x20 grid x hour",
            "",
            "Data: chicago_accident_risk_gsnet_grid (severity-weighted risk). Models fitted "
            f"on the first 80% of hours (6/2/2 split: train + validation); test: the first {an} "
            "hours of the last 20%, each forecast one hour ahead. historical_rate = trailing "
            f"{acfg.evaluation.lookback}-hour mean per cell. Cells have no "
            "coordinates: unit spacing, radius in cells (2 = a 5x5 diamond-ish disc). "
            "Score: share of the hour's actual risk within the radius of a unit.",
            "",
            *table(asum, period="hour"),
            "",
            *markdown(aerr),
        ]
    lines += [
        "",
        f"Runtime: {(time.perf_counter() - started) / 60:.1f} min on a shared 2-core CPU.",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_csv(RESULTS / "patrols_chicago.csv", index=False)
    (RESULTS / "patrols_chicago.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
