"""Issue 4 model choices on a validation period inside the training data (no test-year data).

Data: UCI Beijing Multi-Site Air Quality, ``<root>/air/beijing_multisite``, data up to
2016-02-29 23:00 only (the benchmark's training period).
Split: fit on 2013-03-01 .. 2015-08-31; the CQR calibration tail is 2015-09-01 .. 2015-11-30
(``calibration_refit=False``: one fit, the tail only calibrates); validation targets are
2015-12-01 .. 2016-02-29, origins from 2015-11-30 23:00 every ``--stride`` h while all 72
targets lie in the validation period.
Compared: LightGBM ``pooled`` vs ``hybrid`` (direct boosters for steps 1..k), history mode
(weather at the origin only), against persistence, on the same rows. Metric: PM2.5 MAE
(ug/m3) and P5..P95 coverage after CQR, per horizon step.

Run: ``.venv/bin/python experiments/air_beijing_validation.py --stations 4`` (a few minutes);
writes ``experiments/results/air_beijing_validation.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.data.air import POLLUTANTS, distance_edges, load_beijing_multisite
from citybrain_ml.features.gaps import interpolate_short_gaps
from citybrain_ml.models.lightgbm import quantile_column

try:  # run as a script from the repository root
    from air_beijing import (
        COVARIATES,
        REPORT_STEPS,
        lightgbm,
        log,
        markdown,
        persistence,
        sarimax_forecasts,
    )
except ImportError:  # imported as experiments.air_beijing_validation
    from experiments.air_beijing import (
        COVARIATES,
        REPORT_STEPS,
        lightgbm,
        log,
        markdown,
        persistence,
        sarimax_forecasts,
    )

FIT_END = pd.Timestamp("2015-08-31 23:00")
VALID_ORIGIN = pd.Timestamp("2015-11-30 23:00")
VALID_END = pd.Timestamp("2016-02-29 23:00")
HORIZON = 72
# SARIMAX (p, d, q) and log1p target compared with --sarimax (a constant when d = 0)
SARIMAX_VARIANTS = (((2, 0, 1), True), ((1, 1, 1), False), ((1, 1, 1), True))
OUT = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="data root (default ../shared/data)")
    parser.add_argument("--stations", type=int, default=4, help="first N stations (speed)")
    parser.add_argument("--stride", type=int, default=6)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--direct-rows", type=int, default=50_000)
    parser.add_argument("--direct-steps", type=int, nargs="+", default=[3, 6])
    parser.add_argument(
        "--sarimax",
        action="store_true",
        help="compare SARIMAX variants (raw vs log1p target) instead of the LightGBM ones;"
        " writes air_beijing_validation_sarimax.md",
    )
    parser.add_argument("--sarimax-months", type=int, default=3, help="SARIMAX fit window")
    parser.add_argument("--sarimax-fourier", type=int, default=3, help="daily Fourier pairs")
    parser.add_argument("--sarimax-jobs", type=int, default=2)
    parser.add_argument("--sarimax-budget", type=float, default=1800.0)
    parser.add_argument(
        "--sarimax-maxiter", type=int, default=200, help="optimiser iterations per fit"
    )
    parser.add_argument(
        "--history-variants",
        action="store_true",
        help="compare history-mode LightGBM variants aimed at the 24 h PM2.5 MAE (hybrid, "
        "--direct-steps' first value) instead; writes air_beijing_validation_history.md",
    )
    args = parser.parse_args()
    args.level_target = False

    ds = load_beijing_multisite(args.root)
    keep = sorted(ds.values["series_id"].unique())[: args.stations]
    values = ds.values[ds.values["series_id"].isin(keep) & (ds.values["timestamp"] <= VALID_END)]
    values = interpolate_short_gaps(values, 3, columns=COVARIATES)
    values = values.drop(columns=[c for c in values if c.endswith("_imputed")])
    adjacency = distance_edges(ds.sensors[ds.sensors["series_id"].isin(keep)], 40.0)
    calib_steps = int((VALID_ORIGIN - FIT_END) / pd.Timedelta(hours=1))
    times = pd.DatetimeIndex(np.sort(values["timestamp"].unique()))
    last = times.get_loc(VALID_END) - HORIZON
    orig = times[times.get_loc(VALID_ORIGIN) : last + 1 : args.stride]
    truth = values[["series_id", "timestamp", "value"]]

    frames = {"persistence": persistence(values, orig, HORIZON)}
    fit_s = {}
    if args.sarimax:
        # calibration targets: 2015-09-01 .. 2015-11-30, after the fit window, before validation
        calib = times[
            times.get_loc(FIT_END) : times.get_loc(VALID_ORIGIN) - HORIZON + 1 : args.stride
        ]
        fallbacks = {}
        for order, log_target in SARIMAX_VARIANTS:
            args.sarimax_order = order
            name = f"sarimax_{''.join(map(str, order))}_{'log1p' if log_target else 'raw'}"
            fcs, fit_s[name], failed = sarimax_forecasts(
                args, values, FIT_END, args.sarimax_months, calib, orig, log_target
            )
            for mode, fc in fcs.items():
                frames[f"{name}_{mode}"] = fc
                fit_s[f"{name}_{mode}"] = fit_s[name]
            log(f"{name}: fit {fit_s[name]:.0f} s, fallbacks {failed}")
            fallbacks[name] = sorted(failed) or "none"
        notes = "\n".join(f"* Fallbacks to persistence, {k}: {v}." for k, v in fallbacks.items())
        write_table(
            args, frames, fit_s, truth, keep, orig, "air_beijing_validation_sarimax.md", notes
        )
        return
    if args.history_variants:
        k = args.direct_steps[0]
        base = {"strategy": "hybrid", "direct_steps": k}
        slow = {"n_estimators": 3 * args.trees, "learning_rate": 0.05}
        variants = {
            f"hybrid_{k}": (base, False),
            f"hybrid_{k}_pollutant_covariates": (base, True),
            f"hybrid_{k}_3x_trees_lr005": (base | slow, False),
            f"hybrid_{k}_pollutant_covariates_3x_trees_lr005": (base | slow, True),
        }
        with_pollutants = pollutant_frame(args, keep, values)
        for name, (extra, pollutants) in variants.items():
            data = with_pollutants if pollutants else values
            frames[name], fit_s[name] = validate_lightgbm(
                args, adjacency, calib_steps, data, orig, extra
            )
            log(f"{name}: fit+calibrate {fit_s[name]:.0f} s")
        write_table(args, frames, fit_s, truth, keep, orig, "air_beijing_validation_history.md")
        return
    configs = {"pooled": {}} | {
        f"hybrid_{k}": {"strategy": "hybrid", "direct_steps": k} for k in args.direct_steps
    }
    for name, extra in configs.items():
        frames[name], fit_s[name] = validate_lightgbm(
            args, adjacency, calib_steps, values, orig, extra
        )
        log(f"{name}: fit+calibrate {fit_s[name]:.0f} s")
    write_table(args, frames, fit_s, truth, keep, orig, "air_beijing_validation.md")


def validate_lightgbm(args, adjacency, calib_steps, data, orig, extra):
    """Fit the history-mode LightGBM (+ ``extra`` settings) up to the validation origin;
    returns its validation forecasts and the fit + calibration seconds."""
    model = lightgbm(
        args,
        adjacency,
        future=False,
        direct_max_train_rows=args.direct_rows,
        calibration_steps=calib_steps,
        calibration_refit=False,
        **extra,
    )
    start = time.perf_counter()
    model.fit(data[data["timestamp"] <= VALID_ORIGIN], freq="h")
    seconds = time.perf_counter() - start
    return model.historical_forecasts(data, orig, HORIZON), seconds


def pollutant_frame(args, keep, values: pd.DataFrame) -> pd.DataFrame:
    """``values`` plus PM10, SO2, NO2, CO, O3 columns (features at the origin only)."""
    ds = load_beijing_multisite(args.root, pollutant_covariates=True)
    others = [p for p in POLLUTANTS if p != "PM2.5"]
    extra = ds.values[["series_id", "timestamp", *others]]
    extra = extra[extra["series_id"].isin(keep) & (extra["timestamp"] <= VALID_END)]
    return values.merge(extra, on=["series_id", "timestamp"], how="left")


def write_table(args, frames, fit_s, truth, keep, orig, filename, notes: str = "") -> None:
    """MAE and P5..P95 coverage per model and reported step, on the rows every model has."""
    scored = {m: f.merge(truth, on=["series_id", "timestamp"]) for m, f in frames.items()}
    keys = ["origin", "series_id", "horizon_step"]
    ok = None
    for f in scored.values():
        k = f.loc[f["value"].notna() & f["yhat"].notna(), keys]
        ok = k if ok is None else ok.merge(k, on=keys)
    rows = []
    lo, hi = quantile_column(0.05), quantile_column(0.95)
    for m, f in scored.items():
        f = f.merge(ok, on=keys)
        f = f[f["horizon_step"].isin(REPORT_STEPS)]
        err = (f["yhat"] - f["value"]).abs().groupby(f["horizon_step"]).mean()
        row = {"model": m, **{f"mae_{h}": err.loc[h] for h in REPORT_STEPS}}
        if lo in f:
            inside = (f["value"] >= f[lo]) & (f["value"] <= f[hi])
            cov = 100 * inside.groupby(f["horizon_step"]).mean()
            row |= {f"cov90_{h}": cov.loc[h] for h in REPORT_STEPS}
        row["fit_s"] = fit_s.get(m, np.nan)
        rows.append(row)
    table = pd.DataFrame(rows)
    text = f"""# Beijing PM2.5: validation of model choices (issue 4)

Generated by `{command(args)}`.
No test-year (2016-03-01 ..) data is read.

* Stations: {", ".join(keep)}.
{setup_text(args, len(orig))}
* MAE in ug/m3 on the (origin, station, step) rows where every model has a forecast;
  cov90 = % of targets inside P5..P95; fit_s includes calibration (LightGBM) or is the
  SARIMAX fit alone.
{notes}

{markdown(table, index=False)}
"""
    OUT.mkdir(exist_ok=True)
    (OUT / filename).write_text(text)
    print(text)


def command(args) -> str:
    flags = f"--stations {args.stations} --stride {args.stride}"
    if args.history_variants:
        flags += " --history-variants"
    if args.sarimax:
        flags += (
            f" --sarimax --sarimax-months {args.sarimax_months} --sarimax-fourier "
            f"{args.sarimax_fourier} --sarimax-jobs {args.sarimax_jobs} "
            f"--sarimax-maxiter {args.sarimax_maxiter}"
        )
    else:
        flags += (
            f" --rows {args.rows} --trees {args.trees} --jobs {args.jobs} --direct-rows "
            f"{args.direct_rows} --direct-steps {' '.join(map(str, args.direct_steps))}"
        )
    return f".venv/bin/python experiments/air_beijing_validation.py {flags}"


def setup_text(args, n_orig: int) -> str:
    valid = (
        f"validation targets {VALID_ORIGIN + pd.Timedelta(hours=1):%Y-%m-%d %H:%M} .. "
        f"{VALID_END:%Y-%m-%d %H:%M}, {n_orig} origins every {args.stride} h"
    )
    tail = f"{FIT_END + pd.Timedelta(hours=1):%Y-%m-%d} .. {VALID_ORIGIN:%Y-%m-%d}"
    if args.sarimax:
        return f"""* SARIMAX as in `experiments/air_beijing.py` (regression on weather
  TEMP/PRES/DEWP/RAIN/WSPM/wind_u/wind_v and {args.sarimax_fourier} daily Fourier pairs with
  ARIMA errors; name = order p d q, with a constant when d = 0; raw or log1p target), fitted
  per station on the {args.sarimax_months} months up to {FIT_END:%Y-%m-%d %H:%M}; a station
  whose fit does not converge in {args.sarimax_maxiter} iterations falls back to persistence
  (fallbacks listed below). `history` = weather held at the origin
  (exog_future="persist"); `future` = observed weather at the target hours (a perfect
  forecast). Split-conformal 90% intervals per step and mode from forecasts whose targets
  lie in {tail} (on the modelled scale); {valid}."""
    return f"""* Fit on targets 2013-03-01 .. {FIT_END:%Y-%m-%d %H:%M}; CQR calibration tail
  {tail} (one fit); {valid}; history mode (weather at the origin only). Models otherwise
  as in `experiments/air_beijing.py`, with fewer rows/trees for speed.{variants_text(args)}"""


def variants_text(args) -> str:
    if not args.history_variants:
        return ""
    return f"""
* Variants: `pollutant_covariates` adds PM10, SO2, NO2, CO, O3 measured at the origin as
  features (history-mode covariates); `3x_trees_lr005` = {3 * args.trees} trees at learning
  rate 0.05 instead of {args.trees} at 0.1."""


if __name__ == "__main__":
    main()
