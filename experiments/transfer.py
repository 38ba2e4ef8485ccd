"""One default, no per-dataset parameter: ``auto`` against the obvious baselines everywhere.

For every shared series dataset, with its full history and with a short-history variant
(only the last 3 days -- 2 weeks for hourly data -- before the test period), fit
``make_model("auto", horizon=H)`` and the naive baselines with their defaults and score a
forecast from every ``stride``-th test origin (fixed split, no refit; ``evaluate_protocol``).

Split: test = the last 20% of timestamps, at most 14 days; stride keeps at most 400 origins.
Horizon: 4 steps (1 h) for 15-min data, 12 (1 h) for 5-min data, 6 steps (6 h) for hourly.
Metrics: MAE and RMSE per horizon step on observed, in-service targets; empirical coverage
of the 90% interval. Writes ``experiments/results/transfer.{md,csv}``.

    python experiments/transfer.py                 # every dataset (tens of minutes, 2 cores)
    python experiments/transfer.py --only sz_taxi  # one dataset
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.data import load_dataset, validate_dataset
from citybrain_ml.data.calendar import steps_per_day
from citybrain_ml.evaluation import evaluate_protocol
from citybrain_ml.models import make_model

RESULTS = Path(__file__).parent / "results"
DATASETS = {
    "sz_taxi": {},
    "los_loop": {},
    "bengaluru_metro_entries": {"name": "bengaluru_metro", "kind": "entries"},
    "bengaluru_metro_exits": {"name": "bengaluru_metro", "kind": "exits"},
    "metro_interstate_i94": {"name": "i94"},
    "beijing_multisite_pm25": {"name": "beijing_multisite"},
    "beijing_pm25_2010_2014": {"name": "beijing_pm25"},
}


def horizon_for(freq: str) -> int:
    per_day = steps_per_day(freq) or 1
    return max(1, per_day // 24) if per_day > 24 else 6


def split(df: pd.DataFrame, freq: str) -> tuple[pd.Timestamp, int]:
    times = pd.DatetimeIndex(df["timestamp"].unique()).sort_values()
    start = times[int(len(times) * 0.8)]
    start = max(start, times[-1] - pd.Timedelta("14D"))
    n_test = int((times >= start).sum())
    return start, max(1, int(np.ceil(n_test / 400)))


def short_window(freq: str) -> pd.Timedelta:
    per_day = steps_per_day(freq) or 1
    return pd.Timedelta("3D") if per_day > 24 else pd.Timedelta("14D")


def models(horizon: int, freq: str, span: pd.Timedelta) -> dict:
    per_day = steps_per_day(freq) or 1
    out = {
        "auto": make_model("auto", horizon=horizon, n_jobs=2),
        "last_value": make_model("last_value", horizon=horizon),
        "seasonal_naive_day": make_model("seasonal_naive", horizon=horizon),
    }
    if span >= pd.Timedelta("8D"):
        out["seasonal_naive_week"] = make_model(
            "seasonal_naive", season_length=7 * per_day, horizon=horizon
        )
    return out


def run_one(label: str, spec: dict, variant: str) -> list[dict]:
    opts = dict(spec)
    name = opts.pop("name", label)
    ds = validate_dataset(load_dataset(name, **opts))
    df, freq = ds.values, ds.freq
    test_start, stride = split(df, freq)
    if variant == "short":
        df = df[df["timestamp"] >= test_start - short_window(freq)].reset_index(drop=True)
    horizon = horizon_for(freq)
    span = test_start - df["timestamp"].min()
    rows = []
    for model_name, model in models(horizon, freq, span).items():
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            res = evaluate_protocol(
                model, df, test_start, horizon, stride=stride, levels=[90], calendar=ds.calendar
            )
        fitted = res.model
        extra = {}
        if model_name == "auto":
            extra = {
                "selected": json.dumps(fitted.selected_),
                "validation": json.dumps(fitted.validation_),
                "fallbacks": json.dumps(fitted.fallbacks_),
            }
        for _, m in res.metrics.iterrows():
            rows.append(
                {
                    "dataset": label,
                    "variant": variant,
                    "model": model_name,
                    "horizon_step": int(m["horizon_step"]),
                    "mae": float(m["mae"]),
                    "rmse": float(m["rmse"]),
                    "coverage_90": float(m.get("coverage_90", np.nan)),
                    "n": int(m["n"]),
                    "freq": freq,
                    "calendar": ds.calendar.describe(),
                    "test_start": str(test_start),
                    "stride": stride,
                    "train_start": str(df["timestamp"].min()),
                    "seconds": round(time.perf_counter() - t0, 1),
                    "warnings": len(seen),
                    **extra,
                }
            )
        print(
            f"{label} {variant} {model_name}: {res.metrics['mae'].mean():.4g} "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    return rows


def summarise(table: pd.DataFrame) -> str:
    lines = [
        "# Transfer: one default (`auto`) on every shared dataset, full and short history",
        "",
        "`python experiments/transfer.py` (machine: 2 cores, shared with other jobs; "
        f"{platform.python_version()}). Test = last 20% of timestamps (at most 14 days), every "
        "stride-th origin (at most 400), fixed split without refit. Short = only the last "
        "3 days (sub-hourly) / 2 weeks (hourly) before the test. MAE/RMSE on observed, "
        "in-service targets; skill = 1 - MAE(auto) / MAE(best naive at that step).",
        "",
        "| dataset | variant | H | auto MAE (mean over steps) | best naive MAE | skill (mean) "
        "| skill (worst step) | auto 90% coverage | baselines' 90% coverage | auto chose |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (ds, variant), part in table.groupby(["dataset", "variant"], sort=False):
        wide = part.pivot(index="horizon_step", columns="model", values="mae")
        naive = wide[[c for c in wide.columns if c != "auto"]]
        best = naive.min(axis=1)
        skill = 1 - wide["auto"] / best
        cov = part.pivot(index="horizon_step", columns="model", values="coverage_90")
        auto = part[part["model"] == "auto"].iloc[0]
        chose = ", ".join(f"h{h}:{m}" for h, m in json.loads(auto["selected"]).items())
        base_cov = cov.drop(columns="auto")
        lines.append(
            f"| {ds} | {variant} | {len(wide)} | {wide['auto'].mean():.4g} | {best.mean():.4g} "
            f"| {skill.mean():+.1%} | {skill.min():+.1%} | {cov['auto'].min():.1f}-"
            f"{cov['auto'].max():.1f}% | {base_cov.min().min():.1f}-{base_cov.max().max():.1f}% "
            f"| {chose} |"
        )
    lines += [
        "",
        "Per step MAE/RMSE/coverage of every model, the validation days auto used and every "
        "fallback it took: `experiments/results/transfer.csv`.",
    ]
    return "\n".join(lines) + "\n"


def _done(done: pd.DataFrame, label: str, variant: str) -> bool:
    if done.empty:
        return False
    return bool(((done["dataset"] == label) & (done["variant"] == variant)).any())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="dataset labels to run")
    parser.add_argument("--variants", nargs="*", default=["short", "full"])
    parser.add_argument(
        "--resume", action="store_true", help="skip dataset/variant pairs already in the csv"
    )
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    csv = RESULTS / "transfer.csv"
    done = pd.read_csv(csv) if csv.exists() else pd.DataFrame()
    # every short variant first: they are cheap, and a killed run still covers every dataset
    for variant in args.variants:
        for label, spec in DATASETS.items():
            if args.only and label not in args.only:
                continue
            if args.resume and _done(done, label, variant):
                continue
            rows = pd.DataFrame(run_one(label, spec, variant))
            if not done.empty:
                keep = ~((done["dataset"] == label) & (done["variant"] == variant))
                done = done[keep]
            done = pd.concat([done, rows], ignore_index=True)
            # written after every dataset so a killed run keeps what it measured
            tmp = csv.with_suffix(".csv.tmp")
            done.to_csv(tmp, index=False)
            tmp.replace(csv)
            md = RESULTS / "transfer.md"
            md.with_suffix(".md.tmp").write_text(summarise(done))
            md.with_suffix(".md.tmp").replace(md)


if __name__ == "__main__":
    main()
