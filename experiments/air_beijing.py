"""Issue 4 benchmark: Beijing multi-site PM2.5, 1-72 h ahead, persistence vs LightGBM (+ SARIMAX).

Data: UCI Beijing Multi-Site Air Quality (12 stations, hourly), ``<root>/air/beijing_multisite``.
Split: train up to 2016-02-29 23:00, test 2016-03-01 .. 2017-02-28 (fixed split, one fit).
Origins: from 2016-02-29 23:00 every ``--stride`` hours while all 72 targets lie in the test
year (the ``evaluate_protocol`` convention); every model is scored on the same targets (rows
where the target and every model's forecast exist). Persistence is also scored with stride 1
to compare with the figures quoted in the issue.

Models
* persistence (LastValue);
* LightGBM, ``--strategy hybrid`` (default): direct boosters for steps 1..``--direct-steps``,
  one booster pooled over the longer steps (``pooled`` = one booster for all 72 steps);
  quantile objective (P5/P50/P95), log1p target, change from the last observed value,
  weather + neighbour-station features, in two covariate modes:
  - ``history``: weather at the origin only (what runs without a weather forecast);
  - ``future``: also weather at the target hour. No archive of weather *forecasts* exists for
    this data, so observed weather stands in for a perfect forecast: an optimistic bound.
* Intervals: split-conformal quantile regression (CQR) per horizon step and covariate mode.
  The model is fitted on data up to 2015-11-30 23:00 and the last ``--calibration-steps``
  training hours (2015-12-01 .. 2016-02-29) calibrate P5..P95 (``calibration_refit=False``:
  one fit; the calibration months are seen as forecast history, not as training targets).
  The choices (hybrid, 6 direct steps, CQR) were made on the validation run of
  ``experiments/air_beijing_validation.py``, which reads no test-year data.

* ``--sarimax``: one statsmodels SARIMAX per station (default (1, 1, 1) on log1p PM2.5, weather
  regressors + daily Fourier terms, fitted on the ``--sarimax-months`` before the CQR cut),
  in the same two modes: ``history`` holds the weather at the origin
  (``exog_future="persist"``), ``future`` passes the observed weather as ``covariates``;
  split-conformal intervals from the same calibration tail. Order and target were chosen
  with ``experiments/air_beijing_validation.py --sarimax``.

Exceedance: P(PM2.5 calendar-day mean > 75 ug/m3) from origins at 23:00 (lead days 1-3),
past-only residual calibration (:func:`citybrain_ml.optimize.air_alerts.rolling_exceedance`);
Brier score vs the training-period monthly climatology.

``--pollutants PM2.5 PM10 NO2 O3``: LightGBM (history mode, same set-up) and persistence for
the other pollutants, MAE per step; then the daily AQI over all of them from the 23:00
origins (:func:`citybrain_ml.optimize.air_alerts.expected_daily_aqi`) scored against the
observed daily AQI: category accuracy and AQI MAE per lead day.

``--joint``: one global LightGBM over all four pollutants (48 series ``<station>/<pollutant>``
from ``load_beijing_multisite(targets=...)``, indicator covariates ``is_PM10/is_NO2/is_O3``,
same-pollutant adjacency) vs the four per-pollutant models, history mode, same set-up, split,
origins and CQR tail; every model scored on the same (origin, station, pollutant, step) rows.
``--joint-scales 1 4``: joint variants with the row caps (``--rows``, ``--direct-rows``) times
1 (same caps as one per-pollutant model) and 4 (as many rows per pollutant as the separate
models). Fits run in ``--joint-workers`` spawned processes; each fit's time and peak RSS are
recorded. Writes its own section of ``air_beijing.md`` (kept when the main report is rewritten)
and ``air_beijing_joint.csv``; nothing else is run.
``--joint --joint-calibration-groups``: only the joint models again, with the CQR correction
calibrated per pollutant (``LightGBMForecaster(calibration_groups="/(.+)$")``); adds
``lightgbm_joint_xK_groups`` rows to ``air_beijing_joint.csv`` and a subsection comparing
their coverage with the pooled rows already there. Run it after ``--joint``, which rewrites
both files without these rows.

Run: ``.venv/bin/python experiments/air_beijing.py --pollutants PM2.5 PM10 NO2 O3 --sarimax``
(about 20 min on 2 busy cores; without the flags 10-15 min); writes
``experiments/results/air_beijing.md`` and ``air_beijing_*.csv``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.data.air import (
    WEATHER,
    distance_edges,
    load_beijing_multisite,
    split_series_id,
)
from citybrain_ml.evaluation.calibration import brier_score
from citybrain_ml.features.aqi import aqi_category, daily_aqi
from citybrain_ml.features.gaps import gap_summary, interpolate_short_gaps
from citybrain_ml.models.base import conformal_quantile
from citybrain_ml.models.lightgbm import LightGBMForecaster, quantile_column
from citybrain_ml.models.statistical import SARIMAXForecaster
from citybrain_ml.optimize import air_alerts as aa

TRAIN_END = pd.Timestamp("2016-02-29 23:00")
TEST_START = pd.Timestamp("2016-03-01 00:00")
TEST_END = pd.Timestamp("2017-02-28 23:00")
HORIZON = 72
REPORT_STEPS = (1, 6, 24, 48, 72)
QUANTILES = (0.05, 0.5, 0.95)
THRESHOLD = 75.0
COVARIATES = [*WEATHER, "wind_u", "wind_v"]
# CQR calibration tail: the last 91 days of training, 2015-12-01 .. 2016-02-29
CALIBRATION_STEPS = 91 * 24
OUT = Path(__file__).parent / "results"
# series ``<station>/<pollutant>``: capture the pollutant (per-pollutant CQR calibration)
POLLUTANT_GROUPS = "/(.+)$"
# pollutants whose forecasts enter the daily AQI (SO2 and CO are not forecast)
AQI_POLLUTANTS = ("PM2.5", "PM10", "NO2", "O3")


def lightgbm(args, adjacency, future: bool = True, **overrides) -> LightGBMForecaster:
    """The benchmark's LightGBM; ``overrides`` replace constructor arguments."""
    params = dict(
        horizon=HORIZON,
        strategy="pooled",
        objective="quantile",
        quantiles=QUANTILES,
        target_transform="log1p",
        lags=(1, 2, 3, 4, 6, 12, 24),
        rolling_windows=(6, 24, 72),
        rolling_stats=("mean", "std", "max"),
        ewm_halflives=(3.0, 12.0),
        adjacency=adjacency,
        neighbour_lags=(1,),
        neighbour_windows=(6,),
        future_covariates=tuple(COVARIATES) if future else None,
        delta_target=not args.level_target,
        n_estimators=args.trees,
        learning_rate=0.1,
        num_leaves=63,
        min_child_samples=100,
        max_train_rows=args.rows,
        n_jobs=args.jobs,
        calibration_steps=0,
        seed=0,
    )
    return LightGBMForecaster(**(params | overrides))


def sarimax(args) -> SARIMAXForecaster:
    """The benchmark's SARIMAX: regression on weather with ARIMA errors, daily Fourier terms.

    ``--sarimax-order`` (default (1, 1, 1); a constant is added when d = 0).
    ``exog_future="persist"`` holds the weather at the origin (history mode); the future
    mode passes the observed weather as ``covariates`` to ``historical_forecasts``.
    """
    order = tuple(args.sarimax_order)
    return SARIMAXForecaster(
        order=order,
        trend="c" if order[1] == 0 else None,
        exog=list(COVARIATES),
        exog_future="persist",
        fourier_terms=args.sarimax_fourier,
        season_length=24,
        fallback="last_value",
        n_jobs=args.sarimax_jobs,
        time_budget_s=args.sarimax_budget,
        fit_kwargs={"maxiter": args.sarimax_maxiter},
        horizon=HORIZON,
        calibration_steps=0,
    )


def sarimax_frame(values: pd.DataFrame, log_target: bool) -> pd.DataFrame:
    """SARIMAX input: weather gaps filled forward (past values only), target maybe log1p.

    The state-space regression needs every exog value; forward filling uses no future
    weather, so history mode stays honest. Leading gaps take the first observed value.
    """
    out = values[["series_id", "timestamp", "value", *COVARIATES]].copy()
    filled = out.groupby("series_id")[COVARIATES].ffill()
    out[COVARIATES] = filled.groupby(out["series_id"]).bfill()
    if log_target:
        out["value"] = np.log1p(out["value"].clip(lower=0))
    return out


def sarimax_forecasts(
    args, values, fit_end, months, calib_origins, test_origins, log_target
) -> tuple[dict[str, pd.DataFrame], float, dict]:
    """Fit SARIMAX on the ``months`` before ``fit_end``; both modes' test forecasts.

    Intervals: split conformal per horizon step and mode, from the absolute errors (on the
    modelled scale: log1p or raw) of forecasts from ``calib_origins``, whose targets must
    lie after ``fit_end`` and before the first test origin. Returns ``{mode: forecasts}``
    (``yhat`` and the P5/P95 columns on the original scale), the fit seconds and the
    series that fell back to persistence.
    """
    data = sarimax_frame(values, log_target)
    start = fit_end - pd.DateOffset(months=months)
    window = data[(data["timestamp"] > start) & (data["timestamp"] <= fit_end)]
    model = sarimax(args)
    began = time.perf_counter()
    model.fit(window, freq="h")
    fit_s = time.perf_counter() - began
    data = data[data["timestamp"] > start]
    inverse = np.expm1 if log_target else (lambda x: x)
    lo, hi = quantile_column(0.05), quantile_column(0.95)
    out = {}
    for mode, cov in (("history", None), ("future", data[["series_id", "timestamp", *COVARIATES]])):
        cal = model.historical_forecasts(data, calib_origins, HORIZON, covariates=cov)
        cal = cal.merge(data[["series_id", "timestamp", "value"]], on=["series_id", "timestamp"])
        cal = cal.dropna(subset=["value", "yhat"])
        err = (cal["value"] - cal["yhat"]).abs()
        width = {
            h: conformal_quantile(np.sort(e.to_numpy()), 90)
            for h, e in err.groupby(cal["horizon_step"])
        }
        fc = model.historical_forecasts(data, test_origins, HORIZON, covariates=cov)
        w = fc["horizon_step"].map(width).to_numpy(float)
        fc[lo], fc[hi] = inverse(fc["yhat"] - w), inverse(fc["yhat"] + w)
        fc["yhat"] = inverse(fc["yhat"])
        out[mode] = fc
    return out, fit_s, dict(model.fallback_series_)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def persistence(values: pd.DataFrame, orig: pd.DatetimeIndex, horizon: int) -> pd.DataFrame:
    """Vectorised LastValue: the last non-missing value within the 288 h up to each origin.

    Same rule and numbers as ``LastValue.historical_forecasts`` (which keeps 288 steps of
    history), without its per-origin loop.
    """
    wide = values.pivot(index="timestamp", columns="series_id", values="value")
    last = wide.ffill(limit=287).reindex(orig)
    last.index.name = "origin"
    base = last.stack(future_stack=True).rename("yhat").reset_index()
    frames = []
    for h in range(1, horizon + 1):
        f = base.copy()
        f["timestamp"] = f["origin"] + pd.Timedelta(hours=h)
        f["horizon_step"] = h
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def origins(times: pd.DatetimeIndex, stride: int, horizon: int = HORIZON) -> pd.DatetimeIndex:
    first = times.get_loc(TRAIN_END)
    last = times.get_loc(TEST_END) - horizon
    return times[first : last + 1 : stride]


def score(fc: pd.DataFrame, truth: pd.DataFrame, name: str) -> pd.DataFrame:
    out = fc.merge(truth, on=["series_id", "timestamp"], how="left")
    return out.assign(model=name)


def mae_table(scored: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    err = (scored["yhat"] - scored["value"]).abs()
    return err.groupby([scored[c] for c in by]).mean().unstack("model")


def common_rows(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Rows (origin, series, step) where the target and every model's forecast exist."""
    keys = ["origin", "series_id", "horizon_step"]
    ok = None
    for f in frames.values():
        k = f.loc[f["value"].notna() & f["yhat"].notna(), keys]
        ok = k if ok is None else ok.merge(k, on=keys)
    return pd.concat([f.merge(ok, on=keys) for f in frames.values()], ignore_index=True)


def exceedance(scored: pd.DataFrame, values: pd.DataFrame, clim: pd.Series) -> pd.DataFrame:
    fc = scored[scored["origin"].dt.hour == 23]
    daily = aa.scored_daily(fc, values[values["timestamp"] <= TEST_END])
    daily = daily[daily["date"] >= TEST_START]
    probs = aa.rolling_exceedance(daily, [THRESHOLD], min_residuals=30)
    col = aa.prob_column(THRESHOLD)
    rows = []
    for lead, g in probs.dropna(subset=[col, "actual_mean"]).groupby("lead_day"):
        y = (g["actual_mean"] > THRESHOLD).to_numpy(float)
        ref = g["date"].dt.month.map(clim).to_numpy(float)
        bs, bs_ref = brier_score(g[col], y), brier_score(ref, y)
        rows.append(
            {
                "lead_day": lead,
                "n_station_days": len(g),
                "base_rate": y.mean(),
                "brier": bs,
                "brier_climatology": bs_ref,
                "brier_skill": 1 - bs / bs_ref,
            }
        )
    return pd.DataFrame(rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="data root (default ../shared/data)")
    parser.add_argument("--stride", type=int, default=6, help="hours between scored origins")
    parser.add_argument("--rows", type=int, default=300_000, help="LightGBM max_train_rows")
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--strategy", choices=("pooled", "hybrid"), default="hybrid")
    parser.add_argument("--direct-steps", type=int, default=6, help="hybrid: direct steps")
    parser.add_argument("--direct-rows", type=int, default=50_000, help="rows per direct booster")
    parser.add_argument(
        "--calibration-steps",
        type=int,
        default=CALIBRATION_STEPS,
        help="training-tail hours for CQR intervals (0 = raw quantiles, fit on all training data)",
    )
    parser.add_argument(
        "--level-target",
        action="store_true",
        help="learn the PM2.5 level instead of the change from the origin (delta_target=False);"
        " writes air_beijing_level.md",
    )
    parser.add_argument(
        "--pollutants",
        nargs="+",
        default=["PM2.5"],
        choices=AQI_POLLUTANTS,
        help="also forecast these (LightGBM, history mode) and score the daily AQI over them",
    )
    parser.add_argument("--sarimax", action="store_true", help="add the SARIMAX rows (PM2.5)")
    parser.add_argument("--sarimax-months", type=int, default=3, help="SARIMAX fit window")
    parser.add_argument("--sarimax-fourier", type=int, default=3, help="daily Fourier pairs")
    parser.add_argument("--sarimax-target", choices=("log1p", "raw"), default="log1p")
    parser.add_argument("--sarimax-order", type=int, nargs=3, default=[1, 1, 1])
    parser.add_argument("--sarimax-maxiter", type=int, default=200)
    parser.add_argument(
        "--stations", type=int, default=0, help="first N stations only (smoke runs; 0 = all)"
    )
    parser.add_argument(
        "--joint",
        action="store_true",
        help="only compare one LightGBM over PM2.5/PM10/NO2/O3 with per-pollutant models",
    )
    parser.add_argument(
        "--joint-scales",
        type=int,
        nargs="+",
        default=[1, 4],
        help="joint variants: row caps (--rows, --direct-rows) times each factor",
    )
    parser.add_argument("--joint-workers", type=int, default=2, help="--joint: fit processes")
    parser.add_argument(
        "--joint-calibration-groups",
        nargs="?",
        const=POLLUTANT_GROUPS,
        default=None,
        metavar="REGEX",
        help="--joint: fit only the joint models, CQR calibrated per group captured from"
        f" series_id (flag alone: {POLLUTANT_GROUPS!r} = per pollutant); adds"
        " joint_xK_groups rows to the joint CSV/section",
    )
    parser.add_argument("--sarimax-jobs", type=int, default=2, help="SARIMAX fit processes")
    parser.add_argument("--sarimax-budget", type=float, default=1800.0, help="fit budget (s)")
    args = parser.parse_args()
    if "PM2.5" not in args.pollutants:
        args.pollutants = ["PM2.5", *args.pollutants]
    return args


def prepared(args, target: str, targets: list[str] | None = None):
    """Values up to the test end with short weather gaps filled, and the target's gap table.

    ``targets``: the multi-pollutant dataset instead (series ``<station>/<pollutant>``,
    indicator covariates ``is_<pollutant>``, adjacency within each pollutant only).
    """
    ds = load_beijing_multisite(
        args.root, target=target, targets=targets, adjacency_km=40.0 if targets else None
    )
    sensors = ds.sensors
    if args.stations:
        station = sensors["station"] if targets else sensors["series_id"]
        sensors = sensors[station.isin(sorted(station.unique())[: args.stations])]
    values = ds.values[
        (ds.values["timestamp"] <= TEST_END) & ds.values["series_id"].isin(sensors["series_id"])
    ]
    gaps = gap_summary(values)
    # weather gaps up to 3 h are interpolated (flag columns dropped: not model inputs);
    # the pollutant target is never filled, so every test target is as observed
    values = interpolate_short_gaps(values, 3, columns=COVARIATES)
    values = values.drop(columns=[c for c in values if c.endswith("_imputed")])
    if targets:
        adjacency = ds.adjacency
        keep = adjacency["src"].isin(sensors["series_id"]) & adjacency["dst"].isin(
            sensors["series_id"]
        )
        return values, gaps, adjacency[keep].reset_index(drop=True)
    return values, gaps, distance_edges(sensors, 40.0)


def fitted_lightgbm(args, adjacency, train, future: bool) -> tuple[LightGBMForecaster, float]:
    start = time.perf_counter()
    model = lightgbm(
        args,
        adjacency,
        future=future,
        strategy=args.strategy,
        direct_steps=args.direct_steps,
        direct_max_train_rows=args.direct_rows,
        calibration_steps=args.calibration_steps,
        calibration_refit=False,
    ).fit(train, freq="h")
    return model, time.perf_counter() - start


def main() -> None:
    args = parse_args()
    if args.joint:
        joint_comparison(args)
        return
    values, gaps, adjacency = prepared(args, "PM2.5")
    log("loaded")
    train = values[values["timestamp"] <= TRAIN_END]
    truth = values[["series_id", "timestamp", "value"]]
    times = pd.DatetimeIndex(np.sort(values["timestamp"].unique()))
    orig = origins(times, args.stride)

    p_all = score(persistence(values, origins(times, 1, 24), 24), truth, "persistence")
    p_all = p_all.dropna(subset=["value", "yhat"])
    err = (p_all["yhat"] - p_all["value"]).abs()
    persistence_stride1 = err.groupby(p_all["horizon_step"]).mean()
    log(f"persistence stride 1: {persistence_stride1.loc[[1, 6, 24]].round(2).tolist()}")

    model, fit_s = fitted_lightgbm(args, adjacency, train, future=True)
    log(f"LightGBM fit {fit_s:.0f} s")
    frames = {"persistence": score(persistence(values, orig, HORIZON), truth, "persistence")}
    timings = {}
    for mode, cov in (
        ("history", None),
        ("future", values[["series_id", "timestamp", *COVARIATES]]),
    ):
        start = time.perf_counter()
        fc = model.historical_forecasts(values, orig, HORIZON, covariates=cov)
        timings[mode] = time.perf_counter() - start
        assert model.covariate_mode_ == mode, model.covariate_mode_
        frames[f"lightgbm_{mode}"] = score(fc, truth, f"lightgbm_{mode}")
        log(f"LightGBM {mode} forecasts {timings[mode]:.0f} s")
    sarimax_info = None
    if args.sarimax:
        sarimax_info = run_sarimax(args, values, times, orig, truth, frames)
    scored = common_rows(frames)
    steps = scored[scored["horizon_step"].isin(REPORT_STEPS)]
    by_step = mae_table(steps, ["horizon_step", "model"])
    for m in [c for c in by_step.columns if c != "persistence"]:
        by_step[f"{m}_vs_persistence_%"] = 100 * (by_step[m] / by_step["persistence"] - 1)
    per_station = mae_table(steps[steps["horizon_step"] == 24], ["series_id", "model"])
    lo, hi = quantile_column(0.05), quantile_column(0.95)
    lg = steps[steps["model"] != "persistence"]
    inside = (lg["value"] >= lg[lo]) & (lg["value"] <= lg[hi])
    coverage = 100 * inside.groupby([lg["horizon_step"], lg["model"]]).mean().unstack("model")

    clim_daily = aa.daily_actual_means(train)
    clim = aa.monthly_climatology(clim_daily, THRESHOLD)
    exc = pd.concat(
        [
            exceedance(frames[m].dropna(subset=["yhat"]), values, clim).assign(model=m)
            for m in ("persistence", "lightgbm_history", "lightgbm_future")
        ],
        ignore_index=True,
    )
    extra = {"sarimax": sarimax_info}
    if len(args.pollutants) > 1:
        extra |= other_pollutants(args, times, orig, frames, truth)
    write_report(
        args,
        by_step,
        per_station,
        coverage,
        exc,
        persistence_stride1,
        gaps,
        fit_s,
        timings,
        len(orig),
        extra,
    )


def run_sarimax(args, values, times, orig, truth, frames) -> dict:
    """Add ``sarimax_history`` / ``sarimax_future`` to ``frames``; fit facts for the report.

    Fitted on the ``--sarimax-months`` before the CQR cut (2015-11-30 23:00), calibrated on
    forecasts whose targets lie in the calibration tail, like LightGBM.
    """
    cut = TRAIN_END - pd.Timedelta(hours=args.calibration_steps or CALIBRATION_STEPS)
    calib = times[times.get_loc(cut) : times.get_loc(TRAIN_END) - HORIZON + 1 : args.stride]
    start = time.perf_counter()
    fcs, fit_s, failed = sarimax_forecasts(
        args, values, cut, args.sarimax_months, calib, orig, args.sarimax_target == "log1p"
    )
    for mode, fc in fcs.items():
        frames[f"sarimax_{mode}"] = score(fc, truth, f"sarimax_{mode}")
    total = time.perf_counter() - start
    log(f"SARIMAX fit {fit_s:.0f} s, total {total:.0f} s, fallbacks {failed}")
    n_series = values["series_id"].nunique()
    return {"fit_s": fit_s, "total_s": total, "failed": failed, "cut": cut, "n_series": n_series}


def other_pollutants(args, times, orig, pm25_frames, pm25_truth) -> dict:
    """LightGBM (history mode) vs persistence for the other pollutants; daily AQI scores."""
    forecasts = {
        "lightgbm_history": {"PM2.5": pm25_frames["lightgbm_history"]},
        "persistence": {"PM2.5": pm25_frames["persistence"]},
    }
    truths = {"PM2.5": pm25_truth}
    tables, fit_times = [], {}
    for pollutant in args.pollutants:
        if pollutant == "PM2.5":
            continue
        values, _, adjacency = prepared(args, pollutant)
        truth = values[["series_id", "timestamp", "value"]]
        model, fit_times[pollutant] = fitted_lightgbm(
            args, adjacency, values[values["timestamp"] <= TRAIN_END], future=False
        )
        frames = {
            "persistence": score(persistence(values, orig, HORIZON), truth, "persistence"),
            "lightgbm_history": score(
                model.historical_forecasts(values, orig, HORIZON), truth, "lightgbm_history"
            ),
        }
        steps = common_rows(frames)
        steps = steps[steps["horizon_step"].isin(REPORT_STEPS)]
        table = mae_table(steps, ["horizon_step", "model"])
        table["lightgbm_history_vs_persistence_%"] = 100 * (
            table["lightgbm_history"] / table["persistence"] - 1
        )
        tables.append(table.reset_index().assign(pollutant=pollutant))
        for name, fc in frames.items():
            forecasts[name][pollutant] = fc
        truths[pollutant] = truth
        log(f"{pollutant}: LightGBM fit {fit_times[pollutant]:.0f} s")
    mae = pd.concat(tables, ignore_index=True)
    mae = mae[["pollutant", *[c for c in mae.columns if c != "pollutant"]]]
    return {
        "pollutant_mae": mae,
        "pollutant_fit_s": fit_times,
        "daily_aqi": score_daily_aqi(forecasts, truths),
    }


def score_daily_aqi(forecasts: dict, truths: dict) -> pd.DataFrame:
    """Forecast vs actual daily AQI category per lead day (origins at 23:00).

    Rows: LightGBM (history mode) and hourly persistence through
    :func:`~citybrain_ml.optimize.air_alerts.expected_daily_aqi`; ``lightgbm_pm25_only``
    = the category of LightGBM's PM2.5 IAQI alone (the old alert-table category); and
    ``persistence_daily`` = the origin day's observed AQI carried forward. All scored on
    the station-days where every row has a value and the actual AQI exists.
    """
    hourly = pd.concat([t.assign(pollutant=p) for p, t in truths.items()], ignore_index=True)
    hourly = hourly[hourly["timestamp"] >= TEST_START - pd.Timedelta(days=1)]
    actual = daily_aqi(hourly)[["series_id", "date", "aqi", "level"]]
    keys = ["series_id", "origin", "date"]
    rows = {}
    for name, by_pollutant in forecasts.items():
        at23 = {
            p: f[f["origin"].dt.hour == 23][
                ["series_id", "timestamp", "horizon_step", "yhat", "origin"]
            ]
            for p, f in by_pollutant.items()
        }
        daily = aa.expected_daily_aqi(at23)
        rows[name] = daily[[*keys, "lead_day", "aqi", "level"]]
        if name == "lightgbm_history":
            pm25 = np.ceil(np.round(daily["iaqi_PM2.5"].to_numpy(float), 9))
            rows["lightgbm_pm25_only"] = rows[name].assign(
                aqi=pm25, level=aqi_category(pm25, "level")
            )
    carried = actual.rename(
        columns={"date": "origin_day", "aqi": "aqi_day0", "level": "level_day0"}
    )
    base = rows["lightgbm_history"][[*keys, "lead_day"]]
    base = base.assign(origin_day=base["origin"].dt.floor("D")).merge(
        carried, on=["series_id", "origin_day"], how="left"
    )
    rows["persistence_daily"] = base.rename(columns={"aqi_day0": "aqi", "level_day0": "level"})
    truth = actual.rename(columns={"aqi": "actual_aqi", "level": "actual_level"})
    ok = None
    for r in rows.values():
        k = r.loc[r["aqi"].notna(), keys]
        ok = k if ok is None else ok.merge(k, on=keys)
    ok = ok.merge(truth.dropna(subset=["actual_aqi"]), on=["series_id", "date"])
    out = []
    for name, r in rows.items():
        r = r[[*keys, "lead_day", "aqi", "level"]].merge(ok, on=keys)
        for lead, g in r.groupby("lead_day"):
            out.append(
                {
                    "model": name,
                    "lead_day": int(lead),
                    "n_station_days": len(g),
                    "category_accuracy_%": 100 * (g["level"] == g["actual_level"]).mean(),
                    "aqi_mae": (g["aqi"] - g["actual_aqi"]).abs().mean(),
                    "aqi_bias": (g["aqi"] - g["actual_aqi"]).mean(),
                }
            )
    return pd.DataFrame(out)


def markdown(df: pd.DataFrame, index: bool = True, digits: int = 3) -> str:
    """A pipe table (pandas' to_markdown needs the optional tabulate package)."""
    df = df.reset_index() if index else df
    cells = [
        [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        for row in df.astype(object).to_numpy()
    ]
    head = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])


def command(args) -> str:
    """The command line that reproduces this report."""
    flags = (
        f"--stride {args.stride} --rows {args.rows} --trees {args.trees} --jobs {args.jobs} "
        f"--strategy {args.strategy} --direct-steps {args.direct_steps} "
        f"--direct-rows {args.direct_rows} --calibration-steps {args.calibration_steps}"
    )
    level = " --level-target" if args.level_target else ""
    if len(args.pollutants) > 1:
        flags += f" --pollutants {' '.join(args.pollutants)}"
    if args.sarimax:
        flags += (
            f" --sarimax --sarimax-months {args.sarimax_months} --sarimax-fourier "
            f"{args.sarimax_fourier} --sarimax-target {args.sarimax_target} --sarimax-order "
            f"{' '.join(map(str, args.sarimax_order))} --sarimax-maxiter {args.sarimax_maxiter}"
            f" --sarimax-jobs {args.sarimax_jobs}"
        )
    if args.stations:
        flags += f" --stations {args.stations}"
    return f".venv/bin/python experiments/air_beijing.py {flags}{level}"


def strategy_text(args) -> str:
    if args.strategy == "pooled":
        return "one booster pooled over steps 1..72"
    return (
        f"hybrid: direct boosters for steps 1..{args.direct_steps} (at most {args.direct_rows} "
        f"rows each), one booster pooled over steps {args.direct_steps + 1}..72"
    )


def interval_text(args) -> str:
    if not args.calibration_steps:
        return "raw LightGBM quantiles (no calibration); fitted on all training data."
    return (
        f"CQR per horizon step and covariate mode. The model is fitted on targets up to "
        f"{calibration_cut(args)}; the last {args.calibration_steps} training hours calibrate\n"
        "  (one fit, calibration_refit=False); choices checked on\n"
        "  `experiments/air_beijing_validation.py` (no test-year data)."
    )


def calibration_cut(args) -> str:  # noqa: N802
    return f"{TRAIN_END - pd.Timedelta(hours=args.calibration_steps):%Y-%m-%d %H:%M}"


def sarimax_text(args, info) -> str:
    """Report section on the SARIMAX rows (empty without ``--sarimax``)."""
    if info is None:
        return ""
    order = tuple(args.sarimax_order)
    failed = ", ".join(f"{k} ({v})" for k, v in info["failed"].items()) or "none"
    return f"""## SARIMAX rows (columns `sarimax_*` of the PM2.5 tables above)

Same data, split, origins, rows and metric (PM2.5 MAE, ug/m3; P5..P95 coverage) as the tables
above. One statsmodels SARIMAX{order}{" + constant" if order[1] == 0 else ""} per station on
the {args.sarimax_target} target, with weather TEMP, PRES, DEWP, RAIN, WSPM, wind_u, wind_v
and {args.sarimax_fourier} daily Fourier pairs as regressors (regression with ARIMA errors),
fitted on the {args.sarimax_months} months up to {info["cut"]:%Y-%m-%d %H:%M} (weather gaps
filled forward, i.e. from past values only). `sarimax_history` holds the weather at its value
at the origin (`exog_future="persist"`); `sarimax_future` gets the observed weather at the
target hours as a perfect forecast (`historical_forecasts(..., covariates=...)`).
Intervals: split conformal per step and mode, absolute errors on the modelled scale of
forecasts whose targets lie in the CQR calibration tail (after the fit window, before the
test year). Order and target chosen on `experiments/air_beijing_validation.py --sarimax`
(`air_beijing_validation_sarimax.md`; no test-year data). Fit: {info["fit_s"]:.0f} s for
{info["n_series"]} stations ({args.sarimax_jobs} processes; fit + calibration + test forecasts
{info["total_s"]:.0f} s). Stations on the persistence fallback (fit did not converge in
{args.sarimax_maxiter} iterations): {failed}.

"""


def pollutants_text(args, extra, stem: str) -> str:
    """Report sections on the other pollutants and the daily AQI (empty without them)."""
    if "pollutant_mae" not in extra:
        return ""
    mae, aqi_scores = extra["pollutant_mae"], extra["daily_aqi"]
    mae.to_csv(OUT / f"{stem}_pollutants_mae_by_step.csv", index=False)
    aqi_scores.to_csv(OUT / f"{stem}_daily_aqi.csv", index=False)
    fits = ", ".join(f"{p} {t:.0f} s" for p, t in extra["pollutant_fit_s"].items())
    return f"""## Other pollutants: MAE by horizon (ug/m3), history mode

Same data (the pollutant as target), split, origins and LightGBM set-up as the PM2.5
tables, history mode (weather at the origin only; boosters of that mode only). Rows where
the target and both forecasts exist. Fit time: {fits}.

{markdown(mae, index=False)}

## Daily AQI category over {", ".join(args.pollutants)} (HJ 633-2012)

Forecasts from the origins at 23:00 (lead days 1-3 = the next three calendar days). The
forecast daily AQI applies HJ 633-2012 to the hourly median forecasts of each pollutant
(`citybrain_ml.optimize.air_alerts.expected_daily_aqi`: 24-h means of PM2.5, PM10, NO2; O3
daily max 1-h and 8-h moving mean; AQI = max IAQI). The actual AQI is the same computation on
the observed hours (GB 3095-2012 completeness rules; SO2 and CO are not forecast and left out
of both). `lightgbm_pm25_only` = category of LightGBM's PM2.5 IAQI alone (the former alert
table); `persistence` = hourly persistence of every pollutant through the same computation;
`persistence_daily` = the origin day's observed AQI carried forward. Scored on station-days
where every row has an AQI and the actual AQI exists; accuracy = same category (I..VI).

{markdown(aqi_scores, index=False)}

"""


def targets_text(by_step: pd.DataFrame, coverage: pd.DataFrame) -> str:
    """Met / missed lines for the issue's targets, from this run's tables."""
    lines = []
    for m in ("lightgbm_history", "lightgbm_future"):
        p1, m1 = by_step.loc[1, "persistence"], by_step.loc[1, m]
        p24, m24 = by_step.loc[24, "persistence"], by_step.loc[24, m]
        gain = 100 * (1 - m24 / p24)
        cov = coverage[m]
        inside = cov.between(88, 92)
        lines += [
            f"* {m}, 1 h MAE not worse than persistence: {m1:.2f} vs {p1:.2f} -> "
            f"{'met' if m1 <= p1 else 'MISSED'}.",
            f"* {m}, 24 h MAE >= 35% below persistence ({0.65 * p24:.2f} or less): {m24:.2f}, "
            f"{gain:.1f}% below -> {'met' if gain >= 35 else 'MISSED'}.",
            f"* {m}, 90% coverage in 88-92% at every reported step: {cov.min():.1f}-"
            f"{cov.max():.1f}% -> {'met' if inside.all() else 'MISSED at steps ' + str(list(cov.index[~inside]))}.",
        ]
    return "\n".join(lines)


def write_report(
    args, by_step, per_station, coverage, exc, p1, gaps, fit_s, timings, n_orig, extra
):
    OUT.mkdir(exist_ok=True)
    stem = "air_beijing_level" if args.level_target else "air_beijing"
    if args.stations:
        stem += f"_smoke{args.stations}"
    by_step.to_csv(OUT / f"{stem}_mae_by_step.csv")
    per_station.to_csv(OUT / f"{stem}_mae_24h_by_station.csv")
    exc.to_csv(OUT / f"{stem}_exceedance.csv", index=False)
    coverage.to_csv(OUT / f"{stem}_coverage90_by_step.csv")
    fmt = markdown
    text = f"""# Beijing multi-site PM2.5 benchmark (issue 4)

Generated by `{command(args)}`.

* Data: UCI Beijing Multi-Site Air Quality, {len(per_station)} stations, hourly PM2.5 (ug/m3).
* Split: train 2013-03-01 .. 2016-02-29 23:00; test 2016-03-01 .. 2017-02-28.
* Origins: 2016-02-29 23:00 then every {args.stride} h while all 72 targets lie in the test year
  ({n_orig} origins); all models scored on the same (origin, station, step) rows: the target
  is observed and every model has a forecast. Targets are never interpolated.
* LightGBM: {strategy_text(args)};
  quantile objective (P5/P50/P95), log1p target ({"level" if args.level_target else "change from the last observed value, delta_target"}), weather
  and neighbour-station (40 km) features. `history` = weather at the origin only;
  `future` = also weather at the target hour, where observed weather stands in for a weather
  forecast (no forecast archive exists), so `future` is an optimistic bound.
* Intervals: {interval_text(args)}
* Fit time (one fit incl. calibration forecasts, both modes' boosters, {args.jobs} thread(s)
  on a shared 2-core machine): {fit_s:.0f} s; prediction over all origins: history
  {timings["history"]:.0f} s, future {timings["future"]:.0f} s.

## Issue targets (measured on this run)

{targets_text(by_step, coverage)}

## PM2.5 MAE by horizon (ug/m3)

{fmt(by_step)}

Persistence with every origin (stride 1, 24-step complete windows; the issue quotes
10.16 / 31.84 / 58.18 at 1 / 6 / 24 h): {p1.loc[1]:.2f} / {p1.loc[6]:.2f} / {p1.loc[24]:.2f}.

## 24 h MAE per station (ug/m3)

{fmt(per_station)}

## 90% interval coverage, P5..P95 (%), {"after CQR" if args.calibration_steps else "raw quantiles"}

{fmt(coverage)}

## Exceedance P(24-h mean > {THRESHOLD:g} ug/m3), origins at 23:00

Past-only empirical residual calibration of daily means; reference = monthly climatology of
the training years.

{markdown(exc, index=False)}

{sarimax_text(args, extra.get("sarimax"))}{pollutants_text(args, extra, stem)}## Target gaps (whole series, before any handling)

{markdown(gaps, index=False)}
"""
    text += kept_joint_section(OUT / f"{stem}.md")
    (OUT / f"{stem}.md").write_text(text)
    print(text)


# ---------------------------------------------------------------------- --joint
JOINT_MARKER = "<!-- joint-model section: written by experiments/air_beijing.py --joint -->"
GROUPS_MARKER = "<!-- grouped calibration: written by air_beijing.py --joint-calibration-groups -->"


def joint_comparison(args) -> None:
    """One LightGBM over PM2.5/PM10/NO2/O3 vs one per pollutant (history mode), same rows.

    Each fit runs in its own spawned process (``--joint-workers`` at once) so that its
    peak RSS can be read; forecasts come back for the reported steps only.
    With ``--joint-calibration-groups`` only the grouped-calibration joint models run
    (:func:`grouped_calibration_comparison`).
    """
    if args.joint_calibration_groups:
        grouped_calibration_comparison(args)
        return
    values, _, _ = prepared(args, "PM2.5", targets=list(AQI_POLLUTANTS))
    truth = values[["series_id", "timestamp", "value"]]
    times = pd.DatetimeIndex(np.sort(values["timestamp"].unique()))
    orig = origins(times, args.stride)
    log(f"joint: {values['series_id'].nunique()} series, {len(orig)} origins")
    tasks = [(f"joint_x{k}", None, k) for k in sorted(args.joint_scales, reverse=True)]
    tasks += [(f"separate_{p}", p, 1) for p in AQI_POLLUTANTS]
    # a fresh process per fit: its RSS high-water mark then belongs to that fit alone
    pool = ProcessPoolExecutor(
        args.joint_workers, mp_context=get_context("spawn"), max_tasks_per_child=1
    )
    with pool:
        futures = [pool.submit(fit_and_forecast, args, *task) for task in tasks]
        results = [f.result() for f in futures]
    frames = {"persistence": score(persistence(values, orig, HORIZON), truth, "persistence")}
    frames["persistence"] = frames["persistence"][
        frames["persistence"]["horizon_step"].isin(REPORT_STEPS)
    ]
    separate = [r["forecasts"] for r in results if r["pollutant"] is not None]
    frames["lightgbm_separate"] = score(
        pd.concat(separate, ignore_index=True), truth, "lightgbm_separate"
    )
    for r in results:
        if r["pollutant"] is None:
            name = f"lightgbm_{r['name']}"
            frames[name] = score(r["forecasts"], truth, name)
    scored = common_rows(frames)
    scored["pollutant"] = [split_series_id(s)[1] for s in scored["series_id"]]
    table = joint_table(scored)
    fits = pd.DataFrame([{k: v for k, v in r.items() if k != "forecasts"} for r in results])
    importance = pd.concat(
        [
            r["indicators"].assign(model=f"lightgbm_{r['name']}")
            for r in results
            if r["pollutant"] is None
        ],
        ignore_index=True,
    )
    # the raw results outlive a failing report writer (rerun it from the pickle)
    pd.to_pickle((table, fits, importance), f"/tmp/air_beijing_joint_{args.stations}.pkl")
    write_joint_report(args, table, fits, importance, len(orig), values["series_id"].nunique())


def grouped_calibration_comparison(args) -> None:
    """``--joint-calibration-groups``: the joint models with CQR calibrated per group.

    Only the joint models (``joint_xK_groups``, K in ``--joint-scales``) and persistence
    run; they are compared with the pooled-calibration joint rows already in
    ``air_beijing_joint.csv`` (same code, data, split and origins). The grouping changes
    only P5/P95, so the median and its MAE must equal the pooled model's.
    """
    values, _, _ = prepared(args, "PM2.5", targets=list(AQI_POLLUTANTS))
    truth = values[["series_id", "timestamp", "value"]]
    times = pd.DatetimeIndex(np.sort(values["timestamp"].unique()))
    orig = origins(times, args.stride)
    log(f"joint, calibration groups {args.joint_calibration_groups!r}: {len(orig)} origins")
    tasks = [(f"joint_x{k}_groups", None, k) for k in sorted(args.joint_scales, reverse=True)]
    pool = ProcessPoolExecutor(
        min(args.joint_workers, len(tasks)), mp_context=get_context("spawn"), max_tasks_per_child=1
    )
    with pool:
        results = [f.result() for f in [pool.submit(fit_and_forecast, args, *t) for t in tasks]]
    fc = persistence(values, orig, HORIZON)
    frames = {"persistence": score(fc[fc["horizon_step"].isin(REPORT_STEPS)], truth, "persistence")}
    for r in results:
        frames[f"lightgbm_{r['name']}"] = score(r["forecasts"], truth, f"lightgbm_{r['name']}")
    scored = common_rows(frames)
    scored["pollutant"] = [split_series_id(s)[1] for s in scored["series_id"]]
    table = joint_table(scored)
    table = table[table["model"] != "persistence"].reset_index(drop=True)
    fits = pd.DataFrame([{k: v for k, v in r.items() if k != "forecasts"} for r in results])
    pd.to_pickle((table, fits), f"/tmp/air_beijing_joint_groups_{args.stations}.pkl")
    write_grouped_report(args, table, fits)


def write_grouped_report(args, table: pd.DataFrame, fits: pd.DataFrame) -> None:
    """Add the ``_groups`` rows to the joint CSV and a subsection to the joint section."""
    stem = "air_beijing_joint" + (f"_smoke{args.stations}" if args.stations else "")
    csv = OUT / f"{stem}.csv"
    old = pd.read_csv(csv)
    new = table["model"].unique()
    both = pd.concat([old[~old["model"].isin(new)], table], ignore_index=True)
    order = {p: i for i, p in enumerate(AQI_POLLUTANTS)}
    both = both.sort_values(
        ["pollutant", "horizon_step", "model"],
        key=lambda c: c.map(order) if c.name == "pollutant" else c,
    )
    both.to_csv(csv, index=False)
    pairs = [(m.removesuffix("_groups"), m) for m in sorted(new)]
    cov = joint_wide(both, "coverage90_%", [m for pair in pairs for m in pair])
    start = TRAIN_END - pd.Timedelta(hours=args.calibration_steps - 1)
    season = ", winter" if args.calibration_steps == CALIBRATION_STEPS else ""
    gaps = ", ".join(f"{m} {(cov[m] - 90).abs().mean():.2f}" for m in cov.columns)
    checks = "\n".join(f"* {pooled_vs_grouped(both, *pair)}" for pair in pairs)
    seconds = ", ".join(
        f"{r.name} fit {r.fit_s:.0f} s, forecasts {r.predict_s:.0f} s" for r in fits.itertuples()
    )
    section = f"""{GROUPS_MARKER}
### Per-pollutant CQR calibration of the joint model

Generated by `{joint_command(args)} --joint-calibration-groups '{args.joint_calibration_groups}'`
({seconds}; {args.jobs} LightGBM thread per fit, shared 2-core machine).
Same data, split, origins, model parameters and calibration tail as the run above; the
only change is `calibration_groups="{args.joint_calibration_groups}"`: the CQR conformity
scores are split by pollutant (captured from `series_id`), so each pollutant gets its own
P5/P95 correction per horizon step. Only the `_groups` models were fitted; the pooled
columns are the committed rows of the run above in `{stem}.csv` (same deterministic
code and data, not rerun). Metric: P5..P95 coverage (%) per pollutant and step on the same
(origin, station, pollutant, step) rows; rows `lightgbm_joint_xK_groups` added to the CSV.

{markdown(cov, digits=1)}

{checks}

Coverage range over the reported steps, per pollutant (target 90%), and mean |coverage - 90|
over the {len(cov)} (pollutant, step) cells:

{coverage_ranges(cov)}
* mean |coverage - 90| (points): {gaps}

Grouping gives each pollutant a correction from its own calibration scores, but those
come only from the last {args.calibration_steps} training hours ({start:%Y-%m-%d %H:%M}
.. {TRAIN_END:%Y-%m-%d %H:%M}{season}): where a pollutant's winter errors differ from the test year's
(seasonal pollutants such as O3), its own correction can transfer worse than the pooled one.
"""
    path = OUT / ("air_beijing.md" if not args.stations else f"{stem}.md")
    text = path.read_text().split(GROUPS_MARKER)[0].rstrip("\n")
    path.write_text(text + "\n\n" + section)
    print(section)


def pooled_vs_grouped(table: pd.DataFrame, pooled: str, grouped: str) -> str:
    """Whether both models were scored on the same rows with the same MAE (medians equal)."""
    wide = {
        c: table.pivot(index=["pollutant", "horizon_step"], columns="model", values=c)
        for c in ("mae", "n_rows")
    }
    if pooled not in wide["mae"]:
        return f"{pooled}: no committed rows to compare with"
    rows = (wide["n_rows"][pooled] == wide["n_rows"][grouped]).all()
    diff = (wide["mae"][pooled] - wide["mae"][grouped]).abs().max()
    return (
        f"`{grouped}` vs `{pooled}`: rows per cell {'identical' if rows else 'DIFFERENT'}; "
        f"largest |MAE difference| {diff:.2g} ug/m3 over all pollutants and steps"
        f" ({'identical medians' if rows and diff < 1e-9 else 'NOT identical'})."
    )


def fit_and_forecast(args, name: str, pollutant: str | None, scale: int) -> dict:
    """Fit one history-mode LightGBM (one pollutant, or all with ``pollutant=None``).

    Returns fit / forecast seconds, the peak RSS during the fit (``/proc`` high-water mark,
    reset before the fit where the kernel allows) and the forecasts at the reported steps,
    with series named ``<station>/<pollutant>``.
    """
    if pollutant is None:
        values, _, adjacency = prepared(args, "PM2.5", targets=list(AQI_POLLUTANTS))
    else:
        values, _, adjacency = prepared(args, pollutant)
    times = pd.DatetimeIndex(np.sort(values["timestamp"].unique()))
    orig = origins(times, args.stride)
    train = values[values["timestamp"] <= TRAIN_END]
    rss_before = memory_mb("VmRSS")
    reset = reset_peak_rss()
    start = time.perf_counter()
    model = lightgbm(
        args,
        adjacency,
        future=False,
        strategy=args.strategy,
        direct_steps=args.direct_steps,
        direct_max_train_rows=args.direct_rows * scale,
        max_train_rows=args.rows * scale,
        calibration_steps=args.calibration_steps,
        calibration_refit=False,
        calibration_groups=args.joint_calibration_groups if pollutant is None else None,
    ).fit(train, freq="h")
    fit_s = time.perf_counter() - start
    peak = (
        memory_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    start = time.perf_counter()
    fc = model.historical_forecasts(values, orig, HORIZON)
    predict_s = time.perf_counter() - start
    assert model.covariate_mode_ == "history", model.covariate_mode_
    keep = ["origin", "series_id", "timestamp", "horizon_step", "yhat"]
    keep += [quantile_column(0.05), quantile_column(0.95)]
    fc = fc.loc[fc["horizon_step"].isin(REPORT_STEPS), keep]
    if pollutant is not None:
        fc["series_id"] = fc["series_id"] + "/" + pollutant
    log(f"{name}: fit {fit_s:.0f} s, peak RSS {peak:.0f} MB, forecasts {predict_s:.0f} s")
    return {
        "name": name,
        "pollutant": pollutant,
        "row_scale": scale,
        "n_series": values["series_id"].nunique(),
        "max_train_rows": args.rows * scale,
        "direct_max_train_rows": args.direct_rows * scale,
        "fit_s": fit_s,
        "predict_s": predict_s,
        "rss_before_fit_mb": rss_before,
        "peak_rss_fit_mb": peak,
        "peak_rss_exact": reset,
        "indicators": indicator_importance(model) if pollutant is None else None,
        "forecasts": fc,
    }


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux ``clear_refs`` 5); False if refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def memory_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process from ``/proc/self/status``, in MB (NaN if absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def indicator_importance(model: LightGBMForecaster) -> pd.DataFrame:
    """Gain share (%), mean splits and gain rank of the ``is_<pollutant>`` features.

    Fails loudly when an indicator is missing from the feature matrix: the joint model
    would then not know which pollutant it forecasts.
    """
    imp = model.feature_importance()
    names = [f"cov_is_{p}" for p in AQI_POLLUTANTS[1:]]
    missing = [n for n in names if n not in model.feature_names_]
    if missing:
        raise RuntimeError(f"indicator features {missing} are not in the feature matrix")
    imp["gain_share_%"] = 100 * imp["gain"] / imp["gain"].sum()
    imp["gain_rank"] = np.arange(1, len(imp) + 1)
    out = imp[imp["feature"].isin(names)][["feature", "gain_share_%", "split", "gain_rank"]]
    return out.assign(n_features=len(imp)).reset_index(drop=True)


def joint_table(scored: pd.DataFrame) -> pd.DataFrame:
    """MAE, P5..P95 coverage and row count per pollutant, step and model (long)."""
    err = (scored["yhat"] - scored["value"]).abs()
    lo, hi = quantile_column(0.05), quantile_column(0.95)
    inside = (scored["value"] >= scored[lo]) & (scored["value"] <= scored[hi])
    inside = inside.where(scored["model"] != "persistence")
    keys = [scored["pollutant"], scored["horizon_step"], scored["model"]]
    out = pd.DataFrame(
        {
            "mae": err.groupby(keys).mean(),
            "coverage90_%": 100 * inside.astype(float).groupby(keys).mean(),
            "n_rows": err.groupby(keys).size(),
        }
    ).reset_index()
    order = {p: i for i, p in enumerate(AQI_POLLUTANTS)}
    return out.sort_values(
        ["pollutant", "horizon_step", "model"],
        key=lambda c: c.map(order) if c.name == "pollutant" else c,
    ).reset_index(drop=True)


def joint_wide(table: pd.DataFrame, column: str, models: list[str]) -> pd.DataFrame:
    """One row per (pollutant, step), one column per model, + joint-vs-separate % columns."""
    wide = table.pivot(index=["pollutant", "horizon_step"], columns="model", values=column)
    order = pd.MultiIndex.from_product([AQI_POLLUTANTS, REPORT_STEPS])
    wide = wide.reindex([i for i in order if i in wide.index])[models]
    if column == "mae":
        for m in [m for m in models if m.startswith("lightgbm_joint")]:
            wide[f"{m}_vs_separate_%"] = 100 * (wide[m] / wide["lightgbm_separate"] - 1)
    return wide


def fit_table(fits: pd.DataFrame) -> pd.DataFrame:
    """Fit seconds and peak RSS per fit, the per-pollutant fits summed in one extra row."""
    cols = ["fit_s", "predict_s", "rss_before_fit_mb", "peak_rss_fit_mb"]
    out = fits[["name", "n_series", "max_train_rows", "direct_max_train_rows", *cols]].copy()
    out["fit_rss_increase_mb"] = out["peak_rss_fit_mb"] - out["rss_before_fit_mb"]
    sep = out[fits["pollutant"].notna()]
    total = {
        "name": "separate (4 fits)",
        "n_series": sep["n_series"].sum(),
        "max_train_rows": sep["max_train_rows"].sum(),
        "direct_max_train_rows": sep["direct_max_train_rows"].sum(),
        "fit_s": sep["fit_s"].sum(),
        "predict_s": sep["predict_s"].sum(),
        "rss_before_fit_mb": sep["rss_before_fit_mb"].max(),
        "peak_rss_fit_mb": sep["peak_rss_fit_mb"].max(),
        "fit_rss_increase_mb": sep["fit_rss_increase_mb"].max(),
    }
    out = pd.concat([out, pd.DataFrame([total])], ignore_index=True)
    return out.astype({c: float for c in [*cols, "fit_rss_increase_mb"]})


def committed_difference(mae: pd.DataFrame) -> str:
    """Largest |MAE difference| of this run's separate models and persistence vs the CSVs
    of the main run (``air_beijing_mae_by_step.csv``, ``..._pollutants_mae_by_step.csv``).

    Equal numbers show the per-pollutant models and the scored rows were reproduced.
    """
    try:
        pm25 = pd.read_csv(OUT / "air_beijing_mae_by_step.csv").assign(pollutant="PM2.5")
        others = pd.read_csv(OUT / "air_beijing_pollutants_mae_by_step.csv")
    except FileNotFoundError as err:
        return f"no committed CSV to compare with ({err.filename})"
    old = pd.concat([pm25, others], ignore_index=True).set_index(["pollutant", "horizon_step"])
    now = mae.rename(columns={"lightgbm_separate": "lightgbm_history"})
    diff = now[["lightgbm_history", "persistence"]] - old[["lightgbm_history", "persistence"]]
    diff = diff.reindex(now.index).abs()
    if diff.isna().any().any():
        return "committed CSVs lack some (pollutant, step) cells"
    return f"largest |difference| {diff.max().max():.2g} ug/m3 over all pollutants and steps"


def coverage_ranges(cov: pd.DataFrame) -> str:
    """Per model, the lowest..highest coverage of each pollutant over the reported steps."""
    lines = []
    for m in cov.columns:
        parts = [
            f"{p} {g.min():.1f}-{g.max():.1f}%" for p, g in cov[m].groupby(level=0, sort=False)
        ]
        lines.append(f"* {m}: {', '.join(parts)}")
    return "\n".join(lines)


def joint_command(args) -> str:
    flags = (
        f"--joint --joint-scales {' '.join(map(str, args.joint_scales))} "
        f"--joint-workers {args.joint_workers} --stride {args.stride} --rows {args.rows} "
        f"--trees {args.trees} --jobs {args.jobs} --strategy {args.strategy} "
        f"--direct-steps {args.direct_steps} --direct-rows {args.direct_rows} "
        f"--calibration-steps {args.calibration_steps}"
    )
    if args.level_target:
        flags += " --level-target"
    if args.stations:
        flags += f" --stations {args.stations}"
    return f".venv/bin/python experiments/air_beijing.py {flags}"


def write_joint_report(args, table, fits, importance, n_orig: int, n_series: int) -> None:
    """``air_beijing_joint.csv`` and the joint section of ``air_beijing.md`` (replaced)."""
    OUT.mkdir(exist_ok=True)
    stem = "air_beijing_joint" + (f"_smoke{args.stations}" if args.stations else "")
    table.to_csv(OUT / f"{stem}.csv", index=False)
    joints = [f"lightgbm_joint_x{k}" for k in sorted(args.joint_scales)]
    models = ["lightgbm_separate", *joints, "persistence"]
    mae = joint_wide(table, "mae", models)
    cov = joint_wide(table, "coverage90_%", ["lightgbm_separate", *joints])
    rows = joint_wide(table, "n_rows", models)
    cost = fit_table(fits)
    exact = (
        "high-water mark reset before each fit"
        if fits["peak_rss_exact"].all()
        else ("process high-water mark (could not be reset: includes data loading)")
    )
    pm = mae.loc[("PM2.5", 24)]
    verdict = "; ".join(
        f"{m}: {pm[m]:.2f} vs separate {pm['lightgbm_separate']:.2f} ({pm[m + '_vs_separate_%']:+.1f}%, "
        f"{'within' if abs(pm[m + '_vs_separate_%']) <= 2 else 'NOT within'} 2%)"
        for m in joints
    )
    section = f"""{JOINT_MARKER}
## One global LightGBM over PM2.5, PM10, NO2, O3 vs per-pollutant models (history mode)

Generated by `{joint_command(args)}`.

* Data: UCI Beijing Multi-Site Air Quality, `load_beijing_multisite(targets=["PM2.5", "PM10",
  "NO2", "O3"], adjacency_km=40)`: {n_series} series `<station>/<pollutant>` (ug/m3), weather
  covariates at the origin and constant indicators `is_PM10`, `is_NO2`, `is_O3`
  (PM2.5 = all zero); neighbour features only within the same pollutant (40 km).
* Split: train 2013-03-01 .. 2016-02-29 23:00; test 2016-03-01 .. 2017-02-28; origins
  2016-02-29 23:00 then every {args.stride} h ({n_orig} origins), history mode (weather at the
  origin only). CQR intervals: fitted up to {calibration_cut(args)}, the last
  {args.calibration_steps} training hours calibrate P5/P95 per step (calibration_refit=False).
* Models: `lightgbm_separate` = one model per pollutant (the "Other pollutants" set-up above,
  history boosters only; PM2.5 refitted without future boosters, which leaves its history
  forecasts unchanged); `lightgbm_joint_xK` = ONE model for all {n_series} series with the same
  parameters ({strategy_text(args)}, {args.trees} trees, quantile P5/P50/P95, log1p delta
  target) and the row caps times K: K = 1 is the literal same setting (the same number of
  training rows shared by four pollutants), K = 4 gives each pollutant as many rows as its
  separate model.
* Metric: MAE of the median (ug/m3) and P5..P95 coverage (%) per pollutant and step, on the
  same (origin, station, pollutant, step) rows for every model: the target is observed and
  every model (separate, joint, persistence) has a forecast. Long CSV (mae,
  coverage90_%, n_rows per pollutant, step and model): `experiments/results/{stem}.csv`.

**PM2.5, 24 h: {verdict}.**

### MAE by pollutant and horizon (ug/m3)

{markdown(mae)}

### 90% interval coverage, P5..P95 (%), after CQR

{markdown(cov)}

Rows scored per cell (identical across models): {int(rows.min().min())} .. {int(rows.max().max())}.
`lightgbm_separate` and `persistence` vs the committed main-run CSVs (`lightgbm_history`,
same code and data): {committed_difference(mae)}.

Coverage range over the reported steps, per pollutant (target 90%):

{coverage_ranges(cov)}

The CQR conformity scores are pooled over all series of a model per horizon step, so the
joint model's P5/P95 correction is one shift for all four pollutants: it cannot fix a
pollutant whose raw quantiles are too narrow while another's are too wide. Per-pollutant
calibration of the joint model: `--joint-calibration-groups` (run after this one; its
subsection follows).

### Indicator features in the joint models (mean over boosters)

{markdown(importance, index=False)}

### Fit cost ({args.jobs} LightGBM thread(s) per fit, {args.joint_workers} fit processes at once, shared 2-core machine)

Fit time includes the CQR calibration model's forecasts; forecasts = all test origins.
Peak RSS = {exact}; "RSS before" = the worker process with its data loaded, so the
difference is what the fit itself adds. The per-pollutant row sums the four fits' seconds
and takes the largest of their peaks and increases (one after another in a train job).

{markdown(cost, index=False, digits=0)}
"""
    path = OUT / ("air_beijing.md" if not args.stations else f"{stem}.md")
    text = path.read_text() if path.exists() else ""
    text = text.split(JOINT_MARKER)[0].rstrip("\n") + "\n\n" + section
    path.write_text(text)
    print(section)


def kept_joint_section(path: Path) -> str:
    """The ``--joint`` section of an existing report, so a rerun of the main report keeps it."""
    if not path.exists() or JOINT_MARKER not in path.read_text():
        return ""
    return "\n" + JOINT_MARKER + path.read_text().split(JOINT_MARKER, 1)[1]


if __name__ == "__main__":
    main()
