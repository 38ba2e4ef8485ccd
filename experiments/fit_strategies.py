"""Fit strategies on SZ-taxi: citybrain_ml direct / pooled / hybrid beside mlforecast.

The trade-off between fit time and accuracy of the multi-horizon fit strategies, measured on
real data with the same LightGBM settings and (as near as the two libraries allow) the same
features in both libraries:

* ``citybrain direct``: one booster per horizon step (training rows built once, targets
  shifted per step).
* ``citybrain pooled``: one booster for all steps with ``horizon_step`` as a feature.
* ``citybrain hybrid``: direct boosters for steps ``1..direct_steps``, one pooled booster for
  the rest.
* ``citybrain pooled_capped``: pooled, with ``max_train_rows`` set to ``--pooled-rows``
  (origins subsampled, seeded), e.g. the row budget of one direct booster.
* ``mlforecast direct``: ``MLForecast.fit(max_horizon=H)`` (one model per step).
* ``mlforecast recursive``: ``MLForecast.fit()`` (one one-step model, fed its own forecasts).

Split and scoring follow ``experiments/traffic_tgcn.py`` (T-GCN protocol): the first
``int(0.8 n)`` timestamps train, origins run from the last training timestamp on, every
``--stride`` steps, while all ``H`` targets lie in the test period; MAE and RMSE on the
original scale (km/h), pooled over roads and origins, per horizon step and over all steps.

Every fit runs in its own process with one thread (``n_jobs=1`` / ``num_threads=1`` and the
OpenMP/BLAS thread variables set to 1), one after another. Fit seconds time ``fit`` alone
(data already in memory); peak RSS is the process high-water mark during the fit (reset
after the data are loaded). mlforecast comes from a separate interpreter
(``--mlforecast-python``) so that nothing in its worker imports citybrain_ml.

Usage::

    python experiments/fit_strategies.py --mlforecast-python /path/to/bench-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

# the matched features, thread settings and process helpers of the scoring benchmark (this
# folder is on sys.path when a script here runs, in either library's environment)
from scoring_speed import (
    FREQ,
    LAGS,
    ONE_THREAD,
    SEASON,
    WINDOWS,
    _is_weekend,
    _reset_peak,
    _rss_mb,
    _tod_cos,
    _tod_sin,
    machine,
    versions,
)

H = 4  # SZ-taxi / T-GCN: 15..60 minutes
HYBRID_DIRECT_STEPS = 1
WINDOW_ROWS = SEASON + 16  # history rows one mlforecast forecast reads (lag 96, windows <= 48)
RESULTS = Path(__file__).resolve().parent / "results"
RUNS = [
    ("citybrain_ml", "direct"),
    ("citybrain_ml", "pooled"),
    ("citybrain_ml", "hybrid"),
    ("mlforecast", "direct"),
    ("mlforecast", "recursive"),
]


def lgb_settings(n_estimators: int) -> dict:
    return dict(n_estimators=n_estimators, learning_rate=0.05, num_leaves=31, min_child_samples=50)


# ---------------------------------------------------------------------- process helpers


# ---------------------------------------------------------------------- workers
def fit_citybrain(work: Path, strategy: str, n_estimators: int) -> dict:
    from citybrain_ml.models.lightgbm import LightGBMForecaster

    cfg = json.loads((work / "config.json").read_text())
    df = pd.read_parquet(work / "sz_taxi.parquet")
    train = df[df["timestamp"] < pd.Timestamp(cfg["test_start"])]
    cap = {}
    if strategy == "pooled_capped":
        cap = {"max_train_rows": int(cfg["pooled_rows"])}
    model = LightGBMForecaster(
        horizon=H,
        lags=LAGS,
        rolling_windows=WINDOWS,
        rolling_stats=("mean", "std"),
        diffs=(),
        ewm_halflives=(),
        seasonal_lags=(SEASON,),
        calendar=True,
        strategy="pooled" if cap else strategy,
        direct_steps=HYBRID_DIRECT_STEPS,
        **cap,
        colsample=1.0,
        subsample=1.0,
        n_jobs=1,
        calibration_steps=0,
        **lgb_settings(n_estimators),
    )
    _reset_peak()
    base = _rss_mb()
    start = time.perf_counter()
    model.fit(train, freq=FREQ)
    seconds = time.perf_counter() - start
    peak = _rss_mb("VmHWM")
    origins = pd.DatetimeIndex(cfg["origins"])
    start = time.perf_counter()
    fc = model.historical_forecasts(df, origins, H)
    predict_s = time.perf_counter() - start
    out = work / f"fc_citybrain_{strategy}.parquet"
    fc[["series_id", "origin", "horizon_step", "yhat"]].to_parquet(out, index=False)
    return {
        "fit_seconds": seconds,
        "predict_seconds": predict_s,
        "rss_before_mb": base,
        "peak_rss_mb": peak,
        "boosters": len(model.boosters_),
        "features": len(model.feature_names_),
        "forecasts": str(out),
    }


def _minute_of_day(ds):
    return ds.hour * 60 + ds.minute


def fit_mlforecast(work: Path, strategy: str, n_estimators: int) -> dict:
    import lightgbm as lgb
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean, RollingStd

    cfg = json.loads((work / "config.json").read_text())
    df = pd.read_parquet(work / "sz_taxi.parquet").rename(
        columns={"series_id": "unique_id", "timestamp": "ds", "value": "y"}
    )
    train = df[df["ds"] < pd.Timestamp(cfg["test_start"])]
    model = lgb.LGBMRegressor(
        **lgb_settings(n_estimators),
        colsample_bytree=1.0,
        subsample=1.0,
        n_jobs=1,
        deterministic=True,
        force_row_wise=True,
        verbosity=-1,
    )
    fcst = MLForecast(
        models={"lgb": model},
        freq=FREQ,
        lags=[*LAGS, SEASON],
        lag_transforms={1: [f(w) for w in WINDOWS for f in (RollingMean, RollingStd)]},
        date_features=["hour", _minute_of_day, "dayofweek", _is_weekend, _tod_sin, _tod_cos],
        num_threads=1,
    )
    _reset_peak()
    base = _rss_mb()
    start = time.perf_counter()
    fcst.fit(train, max_horizon=H if strategy == "direct" else None)
    seconds = time.perf_counter() - start
    peak = _rss_mb("VmHWM")
    start = time.perf_counter()
    fc = _mlforecast_origins(fcst, df, pd.DatetimeIndex(cfg["origins"]))
    predict_s = time.perf_counter() - start
    out = work / f"fc_mlforecast_{strategy}.parquet"
    fc.to_parquet(out, index=False)
    return {
        "fit_seconds": seconds,
        "predict_seconds": predict_s,
        "rss_before_mb": base,
        "peak_rss_mb": peak,
        "boosters": H if strategy == "direct" else 1,
        "features": len(fcst.ts.features_order_),
        "forecasts": str(out),
    }


def _mlforecast_origins(fcst, df: pd.DataFrame, origins: pd.DatetimeIndex) -> pd.DataFrame:
    """Forecasts from every origin with ``predict(new_df=...)``, origins batched.

    Each (road, origin) becomes its own series holding the last ``WINDOW_ROWS`` values up to
    the origin (every feature reads at most ``SEASON`` of them), so one ``predict`` call
    serves many origins. Checked against a plain per-origin call on the first origin.
    """
    wide = df.pivot(index="ds", columns="unique_id", values="y").sort_index()
    times, roads, y = wide.index, wide.columns.to_numpy(), wide.to_numpy()
    pos = times.get_indexer(origins)
    frames = []
    for chunk in np.array_split(np.arange(len(pos)), max(1, len(pos) // 100)):
        parts = []
        for k in chunk:
            rows = slice(pos[k] - WINDOW_ROWS + 1, pos[k] + 1)
            block = y[rows]  # (W, N)
            parts.append(
                pd.DataFrame(
                    {
                        "unique_id": np.repeat([f"{r}|{k}" for r in roads], block.shape[0]),
                        "ds": np.tile(times[rows], len(roads)),
                        "y": block.T.ravel(),
                    }
                )
            )
        pred = fcst.predict(H, new_df=pd.concat(parts, ignore_index=True))
        frames.append(pred)
    fc = pd.concat(frames, ignore_index=True)
    road_k = fc["unique_id"].str.rsplit("|", n=1, expand=True)
    origin = origins[road_k[1].astype(int).to_numpy()]
    fc = pd.DataFrame(
        {
            "series_id": road_k[0].to_numpy(),
            "origin": origin,
            "horizon_step": ((fc["ds"] - origin) / pd.Timedelta(FREQ)).astype(int).to_numpy(),
            "yhat": fc["lgb"].to_numpy(),
        }
    )
    # the batched windows must give what a per-origin call on the full history gives
    first = fcst.predict(H, new_df=df[df["ds"] <= origins[0]])
    got = fc[fc["origin"] == origins[0]].sort_values(["series_id", "horizon_step"])
    want = first.sort_values(["unique_id", "ds"])["lgb"].to_numpy()
    if not np.allclose(got["yhat"].to_numpy(), want, rtol=1e-9, atol=1e-9):
        raise AssertionError("batched mlforecast windows differ from a per-origin predict")
    return fc


# ---------------------------------------------------------------------- scoring
def score(work: Path, path: Path) -> dict:
    """MAE/RMSE per horizon step and over all steps, on the original scale."""
    df = pd.read_parquet(work / "sz_taxi.parquet")
    fc = pd.read_parquet(path)
    fc["timestamp"] = fc["origin"] + fc["horizon_step"] * pd.Timedelta(FREQ)
    m = fc.merge(df, on=["series_id", "timestamp"], how="left")
    if m["value"].isna().any() or len(m) != len(fc):
        raise ValueError(f"{path}: forecasts without a matching observation")
    err = m["yhat"] - m["value"]
    out = {}
    for h, e in err.groupby(m["horizon_step"]):
        out[f"mae_{int(h)}"] = float(e.abs().mean())
        out[f"rmse_{int(h)}"] = float(np.sqrt((e**2).mean()))
    out["mae_all"] = float(err.abs().mean())
    out["rmse_all"] = float(np.sqrt((err**2).mean()))
    out["forecasts_scored"] = int(len(err))
    return out


# ---------------------------------------------------------------------- orchestration
def _worker(python: str, *args: str, timeout: float = 3600) -> dict:
    env = {**os.environ, **ONE_THREAD}
    cmd = [python, __file__, "--worker", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{args}: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prepare(work: Path, stride: int, pooled_rows: int) -> dict:
    """Long SZ-taxi frame to Parquet; the T-GCN split and the scored origins to JSON."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from citybrain_ml.data import load_sz_taxi
    from citybrain_ml.data.splits import time_split

    ds = load_sz_taxi()
    df = ds.values[["series_id", "timestamp", "value"]]
    df.to_parquet(work / "sz_taxi.parquet", index=False)
    train, test = time_split(df, test_ratio=0.2)
    times = pd.DatetimeIndex(np.sort(df["timestamp"].unique()))
    n_train = int(train["timestamp"].nunique())
    # origins: the last training timestamp on, while all H targets are test timestamps
    candidates = times[n_train - 1 : len(times) - H]
    origins = candidates[::stride]
    cfg = {
        "test_start": str(test["timestamp"].min()),
        "origins": [str(t) for t in origins],
        "all_origins": len(candidates),
        "stride": stride,
        "pooled_rows": pooled_rows,
        "timestamps": len(times),
        "train_timestamps": n_train,
        "series": int(df["series_id"].nunique()),
    }
    (work / "config.json").write_text(json.dumps(cfg))
    return cfg


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mlforecast-python", default=sys.executable)
    ap.add_argument("--n-estimators", type=int, default=200)
    ap.add_argument("--stride", type=int, default=1, help="steps between scored test origins")
    ap.add_argument(
        "--pooled-rows",
        type=int,
        default=400_000,
        help="max_train_rows of the extra pooled_capped run (0 = no such run)",
    )
    ap.add_argument("--work", type=Path, default=Path("/tmp/citybrain_fit_strategies"))
    ap.add_argument("--out", type=Path, default=RESULTS / "fit_strategies.md")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        lib, strategy, work, n_est = args.worker
        fit = fit_citybrain if lib == "citybrain_ml" else fit_mlforecast
        print(json.dumps(fit(Path(work), strategy, int(n_est)), default=float))
        return

    args.work.mkdir(parents=True, exist_ok=True)
    info = {**machine(), "load_start": os.getloadavg()}
    cfg = prepare(args.work, args.stride, args.pooled_rows)
    runs = list(RUNS)
    if args.pooled_rows > 0:
        runs.insert(3, ("citybrain_ml", "pooled_capped"))
    rows = []
    for lib, strategy in runs:
        python = args.mlforecast_python if lib == "mlforecast" else sys.executable
        load = os.getloadavg()[0]
        res = _worker(python, lib, strategy, str(args.work), str(args.n_estimators))
        res.update(score(args.work, Path(res.pop("forecasts"))))
        res.update(lib=lib, strategy=strategy, load_1min_before=load)
        print(json.dumps(res, default=float), flush=True)
        rows.append(res)
    info["load_end"] = os.getloadavg()
    command = "python experiments/fit_strategies.py " + " ".join(
        a if not a.startswith("/") else f"'{a}'" for a in (argv or sys.argv[1:])
    )
    info["citybrain_versions"] = versions(sys.executable, ("citybrain_ml", "lightgbm", "pandas"))
    info["mlforecast_versions"] = versions(
        args.mlforecast_python, ("mlforecast", "lightgbm", "pandas")
    )
    write_report(args.out, rows, cfg, info, command, args.n_estimators)


def _f(v, nd=3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{nd}f}"


def write_report(out: Path, rows: list, cfg: dict, info: dict, command: str, n_est: int) -> None:
    table = pd.DataFrame(rows)
    ref = table[(table["lib"] == "mlforecast") & (table["strategy"] == "direct")].iloc[0]
    table["fit_x_mlf_direct"] = table["fit_seconds"] / ref["fit_seconds"]
    table["mae_x_mlf_direct"] = table["mae_all"] / ref["mae_all"]
    table["rss_x_mlf_direct"] = table["peak_rss_mb"] / ref["peak_rss_mb"]
    cols = ["lib", "strategy", "fit_seconds", "peak_rss_mb", "boosters", "features"]
    cols += [f"{m}_{h}" for h in range(1, H + 1) for m in ("mae", "rmse")]
    cols += ["mae_all", "rmse_all", "fit_x_mlf_direct", "mae_x_mlf_direct", "rss_x_mlf_direct"]
    cols += ["predict_seconds", "rss_before_mb", "forecasts_scored", "load_1min_before"]
    table[cols].to_csv(out.with_suffix(".csv"), index=False, float_format="%.6g")

    cb = table[table["lib"] == "citybrain_ml"]
    met = cb[(cb["fit_seconds"] <= ref["fit_seconds"]) & (cb["mae_all"] <= ref["mae_all"])]
    verdict = (
        "**met** by " + ", ".join(f"citybrain {s}" for s in met["strategy"])
        if len(met)
        else "**missed** by every citybrain strategy"
    )
    subset = (
        f"every test origin ({cfg['all_origins']})"
        if cfg["stride"] == 1
        else f"every {cfg['stride']}th test origin ({len(cfg['origins'])} of {cfg['all_origins']};"
        " a documented subset to keep the run short)"
    )
    lines = [
        "# Fit strategies on SZ-taxi: citybrain_ml direct / pooled / hybrid vs mlforecast",
        "",
        f"Produced by `{command}` on {time.strftime('%Y-%m-%d')}.",
        "",
        f"- **Target** (issue 14): fit time on SZ-taxi at most mlforecast direct's at equal or "
        f"better MAE (all {H} steps pooled): {verdict}.",
        f"- **Data**: SZ-taxi (T-GCN), {cfg['series']} roads x {cfg['timestamps']} "
        "15-minute steps, speed in km/h, zeros kept as observed (T-GCN protocol).",
        f"- **Split**: as `experiments/traffic_tgcn.py`: first {cfg['train_timestamps']} "
        f"timestamps (int(0.8 n)) train, test from {cfg['test_start']}; forecasts 1..{H} steps "
        f"from {subset}, history up to each origin, no refit.",
        "- **Metric**: MAE and RMSE on the original scale, pooled over roads and origins, per "
        "horizon step (the value at that lead time) and over all steps ('all').",
        f"- **Machine**: {info['cpu']}, {info['cores']} cores; 1-minute "
        f"load average {info['load_start'][0]:.1f} at start, {info['load_end'][0]:.1f} at end "
        "(per run in the CSV). Timings on a shared machine are noisy: read ratios near 1 as "
        "ties.",
        f"- **Versions**: citybrain side {info['citybrain_versions']}; mlforecast side "
        f"{info['mlforecast_versions']}.",
        "",
        "Same LightGBM settings in both libraries: "
        + ", ".join(f"{k}={v}" for k, v in lgb_settings(n_est).items())
        + ", feature/bagging fraction 1, deterministic, force_row_wise, one thread. Features: "
        f"lags {', '.join(map(str, LAGS))}; rolling mean and std over "
        f"{', '.join(map(str, WINDOWS))} steps ending at the origin; a one-day seasonal lag; "
        "calendar (hour, minute of day, day of week, weekend, time-of-day sin/cos). Where the "
        "libraries differ: citybrain's seasonal lag and calendar describe the target time "
        "(value one day before the target); mlforecast direct's describe the first forecast "
        "time (lag 96 at origin + 1) for every step, recursive's the target time; mlforecast "
        "drops training rows whose lag 96 is missing (the first day), citybrain keeps them "
        f"(LightGBM treats NaN as missing). Hybrid: direct boosters for step "
        f"1..{HYBRID_DIRECT_STEPS}, one pooled booster for the rest. pooled_capped: pooled "
        f"with max_train_rows={cfg['pooled_rows']:,} (origins subsampled, seeded). No intervals "
        "(calibration off) so that fit time is one fit.",
        "",
        "Fit seconds time `fit` alone (data in memory); peak RSS is the process high-water mark "
        "during the fit, after the data were loaded. Each run is its own process.",
        "",
        "| library | strategy | boosters | fit s | x mlf direct | peak RSS MB | "
        + " | ".join(f"MAE {h}" for h in range(1, H + 1))
        + " | MAE all | x mlf direct | "
        + " | ".join(f"RMSE {h}" for h in range(1, H + 1))
        + " | RMSE all |",
        "|---|---|---|---|---|---|" + "---|" * (2 * H + 3),
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r['lib']} | {r['strategy']} | {int(r['boosters'])} | {r['fit_seconds']:.1f} | "
            f"{r['fit_x_mlf_direct']:.2f} | {r['peak_rss_mb']:.0f} | "
            + " | ".join(_f(r[f"mae_{h}"]) for h in range(1, H + 1))
            + f" | {_f(r['mae_all'])} | {r['mae_x_mlf_direct']:.3f} | "
            + " | ".join(_f(r[f"rmse_{h}"]) for h in range(1, H + 1))
            + f" | {_f(r['rmse_all'])} |"
        )
    lines += [
        "",
        "CSV with every column (predict seconds, RSS before the fit, forecasts scored, load "
        f"before each run): `{out.with_suffix('.csv').name}`.",
        "",
    ]
    out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
