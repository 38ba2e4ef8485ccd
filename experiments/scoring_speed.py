"""City-scale batch scoring speed: citybrain_ml against Nixtla's mlforecast, side by side.

Same synthetic panel, same LightGBM settings and (as near as the two libraries allow) the
same features; each library and each path runs in its own process with one thread, one after
another, so the numbers of one run share the machine's state. Reported per path: seconds,
series/s, peak RSS during the call (the process's high-water mark is reset after the input is
loaded; for ``citybrain forecast``, which reads the file itself, before the call), the
process's base RSS (imports, model, a warm-up call on one series; no input yet) and the ratio
to mlforecast on the same input.

Paths
-----
* ``citybrain.predict``: ``Forecaster.load`` + ``model.predict(12, history_df=frame)``.
* ``citybrain.pyfunc``: ``mlflow.pyfunc.load_model(uri).predict(frame, params)``.
* ``citybrain forecast``: :func:`citybrain_ml.scoring.run_forecast` in-process, from the
  Parquet file: read, validate, series checks, forecast, hashing and atomic publish.
* ``mlforecast``: ``MLForecast.predict(12, new_df=frame)`` on the unpickled fitted object.

mlforecast comes from the ``[bench]`` extra (``pip install -e '.[bench]'``; pinned to 1.0.2,
the newest release that accepts pandas 3). ``--mlforecast-python`` runs its worker with another
interpreter instead, e.g. a separate virtual environment with the same LightGBM; nothing in
that worker imports citybrain_ml.

Usage::

    python experiments/scoring_speed.py --series 10000 --days 2 30 \\
        --mlforecast-python /path/to/bench-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HORIZON = 12
FREQ = "15min"
LAGS = (1, 2, 3, 4, 5, 6, 8, 12)
WINDOWS = (4, 12, 48)
SEASON = 96  # one day of 15-minute steps
LGB = dict(n_estimators=50, learning_rate=0.05, num_leaves=31, min_child_samples=50)
END = "2024-03-31 23:45"
RESULTS = Path(__file__).resolve().parent / "results" / "scoring_speed.md"
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "POLARS_MAX_THREADS": "1",
}


# ---------------------------------------------------------------------- data
def panel(n_series: int, days: float, seed: int = 0, first: int = 0) -> pd.DataFrame:
    """Synthetic 15-minute panel: level, daily cycle, AR(1) noise, floored at 0; sorted frame.

    Every series ends at :data:`END`; ids are ``s<first>``, ``s<first + 1>``...
    """
    steps = int(days * 96)
    times = pd.date_range(end=END, periods=steps, freq=FREQ)
    rng = np.random.default_rng(seed + first)
    level = rng.uniform(20, 60, n_series)
    amp = rng.uniform(5, 15, n_series)
    phase = rng.uniform(0, 2 * np.pi, n_series)
    slot = (times.hour * 4 + times.minute // 15).to_numpy()
    noise = rng.normal(0, 2, (steps, n_series))
    for t in range(1, steps):  # AR(1) so that lags carry signal
        noise[t] += 0.6 * noise[t - 1]
    # speeds or counts: never negative (the batch input check rejects negative values)
    values = np.maximum(level + amp * np.sin(2 * np.pi * slot[:, None] / 96 + phase) + noise, 0)
    ids = np.array([f"s{i:06d}" for i in range(first, first + n_series)], dtype=object)
    return pd.DataFrame(
        {
            "series_id": np.repeat(ids, steps),
            "timestamp": np.tile(times.to_numpy(), n_series),
            "value": values.T.reshape(-1),
        }
    )


def make_inputs(work: Path, combos: list[tuple[int, float]]) -> dict:
    """Parquet inputs per ``(series, days)``, built once and cached in ``work``."""
    out = {}
    for n, d in combos:
        path = work / f"history_{n}_{d:g}d.parquet"
        if not path.exists():
            # built in chunks: the 30-day frames hold tens of millions of rows
            chunks = [panel(min(5000, n - i), d, first=i) for i in range(0, n, 5000)]
            pd.concat(chunks, ignore_index=True).to_parquet(path, index=False)
            del chunks
        out[(n, d)] = path
    return out


# ---------------------------------------------------------------------- fitting
def fit_citybrain(work: Path, train: Path) -> dict:
    import mlflow

    from citybrain_ml.models.lightgbm import LightGBMForecaster
    from citybrain_ml.tracking import log_model

    df = pd.read_parquet(train)
    model = LightGBMForecaster(
        horizon=HORIZON,
        lags=LAGS,
        rolling_windows=WINDOWS,
        rolling_stats=("mean", "std"),
        diffs=(),
        ewm_halflives=(),
        seasonal_lags=(SEASON,),
        calendar=True,
        colsample=1.0,
        subsample=1.0,
        n_jobs=1,
        calibration_steps=0,
        **LGB,
    )
    start = time.perf_counter()
    model.fit(df)
    seconds = time.perf_counter() - start
    model.save(work / "citybrain_model")
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("scoring-speed")
    exp_id = (
        exp.experiment_id
        if exp
        else mlflow.create_experiment("scoring-speed", (work / "artifacts").as_uri())
    )
    with mlflow.start_run(experiment_id=exp_id):
        info = log_model(model, name="model")
    (work / "pyfunc_uri.txt").write_text(info.model_uri)
    return {"fit_seconds": seconds, "features": len(model.feature_names_)}


def fit_mlforecast(work: Path, train: Path) -> dict:
    import pickle

    import lightgbm as lgb
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean, RollingStd

    df = pd.read_parquet(train).rename(
        columns={"series_id": "unique_id", "timestamp": "ds", "value": "y"}
    )
    rolling = [f(w) for w in WINDOWS for f in (RollingMean, RollingStd)]
    model = lgb.LGBMRegressor(
        **LGB,
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
        lag_transforms={1: rolling},
        date_features=["hour", "minute", "dayofweek", _is_weekend, _tod_sin, _tod_cos],
        num_threads=1,
    )
    start = time.perf_counter()
    fcst.fit(df, max_horizon=HORIZON)
    seconds = time.perf_counter() - start
    with open(work / "mlforecast.pkl", "wb") as fh:
        pickle.dump(fcst, fh)
    return {"fit_seconds": seconds, "features": len(fcst.ts.features_order_)}


def _is_weekend(ds):
    return (ds.dayofweek >= 5).astype(float)


def _tod_sin(ds):
    return np.sin(2 * np.pi * (ds.hour * 60 + ds.minute) / 1440.0)


def _tod_cos(ds):
    return np.cos(2 * np.pi * (ds.hour * 60 + ds.minute) / 1440.0)


# ---------------------------------------------------------------------- scoring workers
def _rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    # Linux: writing 5 to clear_refs resets the high-water mark (VmHWM) to the current RSS
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _job_memory(r) -> float:
    """MB the call needs, the input frame included: for a path handed a frame in memory,
    the frame plus what the call added; for ``citybrain forecast``, which reads the file
    itself, everything above the process's base (read included)."""
    if r["lib"] == "citybrain.forecast":
        return r["peak_rss_mb"] - r["base_rss_mb"]
    return r["input_mb"] + r["peak_rss_mb"] - r["rss_before_mb"]


def _first_series(path: Path) -> pd.DataFrame:
    """The file's first series only (a small read): the warm-up input."""
    import pyarrow.parquet as pq

    first = pq.ParquetFile(path).read_row_group(0, columns=["series_id"]).column(0)[0].as_py()
    return pd.read_parquet(path, filters=[("series_id", "==", first)])


def score(work: Path, path: Path, lib: str) -> dict:
    """Time one scoring path on one input, in this process.

    Memory: ``base_rss_mb`` is the process after imports, model load and a warm-up call on
    one series, before the input is read; ``peak_rss_mb`` the high-water mark of the call
    (reset after the read). ``peak - base`` is what the job needs for this input (the frame
    itself included), the libraries' fixed footprint aside.
    """
    warm = _first_series(path)
    if lib == "mlforecast":
        import pickle

        with open(work / "mlforecast.pkl", "rb") as fh:
            fcst = pickle.load(fh)
        warm = warm.rename(columns={"series_id": "unique_id", "timestamp": "ds", "value": "y"})

        def call(df):
            return fcst.predict(HORIZON, new_df=df)
    elif lib == "citybrain.predict":
        from citybrain_ml.models.base import Forecaster

        model = Forecaster.load(work / "citybrain_model")

        def call(df):
            return model.predict(HORIZON, history_df=df)
    elif lib == "citybrain.pyfunc":
        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        pyfunc = mlflow.pyfunc.load_model((work / "pyfunc_uri.txt").read_text())

        def call(df):
            return pyfunc.predict(df, params={"horizon": HORIZON})
    elif lib == "citybrain.forecast":
        return _score_cli(work, path, warm)
    else:
        raise ValueError(lib)
    call(warm)  # imports and lazy set-up out of the timing
    base_rss = _rss_mb()
    start = time.perf_counter()
    frame = pd.read_parquet(path)
    read_s = time.perf_counter() - start
    if lib == "mlforecast":
        frame = frame.rename(columns={"series_id": "unique_id", "timestamp": "ds", "value": "y"})
    n_series = int(frame.iloc[:, 0].nunique())
    input_mb = frame.memory_usage(deep=True).sum() / 2**20
    _reset_peak()
    before = _rss_mb()
    start = time.perf_counter()
    out = call(frame)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rows_out": len(out),
        "series": n_series,
        "input_mb": input_mb,
        "base_rss_mb": base_rss,
        "rss_before_mb": before,
        "peak_rss_mb": _rss_mb("VmHWM"),
        "read_seconds": read_s,
    }


def _score_cli(work: Path, path: Path, warm: pd.DataFrame) -> dict:
    import shutil

    import mlflow

    from citybrain_ml.scoring import quiet_mlflow, run_forecast

    quiet_mlflow()
    uri = (work / "pyfunc_uri.txt").read_text()
    store = f"sqlite:///{work / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    out = work / "outputs"
    shutil.rmtree(out, ignore_errors=True)
    # imports and MLflow's model cache on a one-series file (not the input: its read would
    # leave Arrow's memory pool filled before the timed call)
    warm_path = work / "warm.parquet"
    warm.to_parquet(warm_path, index=False)
    run_forecast(uri, warm_path, out, "warm", tracking_uri=store, levels=[])
    shutil.rmtree(out, ignore_errors=True)
    base = _rss_mb()
    _reset_peak()
    start = time.perf_counter()
    res = run_forecast(uri, path, out, "bench", tracking_uri=store, levels=[])
    seconds = time.perf_counter() - start
    peak = _rss_mb("VmHWM")
    manifest = json.loads((res.folder / "manifest.json").read_text())
    # the frame's size, read after the timed call (a read before it would leave Arrow's
    # memory pool filled and hide the job's own peak)
    start = time.perf_counter()
    frame = pd.read_parquet(path)
    read_s = time.perf_counter() - start
    n_series = int(frame["series_id"].nunique())
    input_mb = frame.memory_usage(deep=True).sum() / 2**20
    return {
        "seconds": seconds,
        "rows_out": manifest["forecast_rows"],
        "series": n_series,
        "input_mb": input_mb,
        "base_rss_mb": base,
        "rss_before_mb": base,
        "peak_rss_mb": peak,
        "read_seconds": read_s,
        "timings": manifest["timings"],
    }


# ---------------------------------------------------------------------- orchestration
def _worker(python: str, *args: str, timeout: float = 3600) -> dict:
    env = {**os.environ, **ONE_THREAD}
    cmd = [python, __file__, "--worker", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(int(mem) / 2**20, 1),
        "python": platform.python_version(),
        "load_start": os.getloadavg(),
    }


def versions(python: str, names=("lightgbm", "pandas", "numpy", "citybrain_ml", "mlflow")) -> str:
    code = (
        "import importlib.metadata as m\n"
        "out=[]\n"
        f"for p in {tuple(names)!r}:\n"
        "    try: out.append(f'{p} {m.version(p)}')\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(', '.join(out))"
    )
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--series", type=int, nargs="+", default=[10_000])
    ap.add_argument("--days", type=float, nargs="+", default=[2, 30])
    ap.add_argument(
        "--max-rows",
        type=float,
        default=30e6,
        help="skip inputs with more rows (listed as skipped in the report)",
    )
    ap.add_argument("--train-series", type=int, default=500)
    ap.add_argument("--train-days", type=float, default=7)
    ap.add_argument("--mlforecast-python", default=sys.executable)
    ap.add_argument("--work", type=Path, default=Path("/tmp/citybrain_scoring_speed"))
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        kind, *rest = args.worker
        work = Path(rest[0])
        if kind == "fit-citybrain":
            result = fit_citybrain(work, Path(rest[1]))
        elif kind == "fit-mlforecast":
            result = fit_mlforecast(work, Path(rest[1]))
        else:
            result = score(work, Path(rest[1]), kind)
        print(json.dumps(result, default=float))
        return

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    info = machine()
    info["train"] = f"{args.train_series:,} series x {args.train_days:g} days"
    train = work / f"train_{args.train_series}_{args.train_days:g}d.parquet"
    if not train.exists():
        panel(args.train_series, args.train_days, seed=1).to_parquet(train, index=False)
    fits = {
        "citybrain_ml": _worker(sys.executable, "fit-citybrain", str(work), str(train)),
        "mlforecast": _worker(args.mlforecast_python, "fit-mlforecast", str(work), str(train)),
    }
    print("fit", fits, flush=True)
    combos = [(n, d) for n in args.series for d in args.days]
    info["skipped"] = [(n, d) for n, d in combos if n * d * 96 > args.max_rows]
    inputs = make_inputs(work, [c for c in combos if c not in info["skipped"]])
    rows = []
    for (n, d), path in inputs.items():
        for lib in ("mlforecast", "citybrain.predict", "citybrain.pyfunc", "citybrain.forecast"):
            python = args.mlforecast_python if lib == "mlforecast" else sys.executable
            res = _worker(python, lib, str(work), str(path))
            res.update(series_in=n, days=d, lib=lib)
            print(json.dumps(res, default=float), flush=True)
            rows.append(res)
    info["load_end"] = os.getloadavg()
    command = "python experiments/scoring_speed.py " + " ".join(
        a if not a.startswith("/") else f"'{a}'" for a in (argv or sys.argv[1:])
    )
    mlf = versions(args.mlforecast_python, ("mlforecast", "lightgbm", "pandas", "numpy"))
    write_report(args.out, rows, fits, info, command, mlf)


def write_report(out: Path, rows: list, fits: dict, info: dict, command: str, mlf: str) -> None:
    table = pd.DataFrame(rows)
    lines = [
        "# Batch scoring speed: citybrain_ml vs mlforecast",
        "",
        f"Produced by `{command}` on {time.strftime('%Y-%m-%d')}.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB RAM, Python "
        f"{info['python']}; load average at start {info['load_start'][0]:.1f}, at end "
        f"{info['load_end'][0]:.1f} "
        + (
            "(no other jobs: a load near 1 is this benchmark's own worker)"
            if max(info["load_start"][0], info["load_end"][0]) < 2.5
            else "(other jobs ran alongside, so seconds are upper bounds; ratios compare "
            "paths of the same run)"
        )
        + ". Sub-second timings vary by ~20% between runs on this machine.",
        f"citybrain_ml side: {versions(sys.executable)}. mlforecast side: {mlf}.",
        "",
        "Panel: synthetic 15-minute series (level + daily cycle + AR(1) noise), all ending at "
        f"{END}; both models fitted on one training panel of {info['train']}; forecasts "
        f"{HORIZON} steps "
        "ahead from the last row of every series. Every path runs in its own process with one "
        "thread (LightGBM `n_jobs=1`, BLAS/OpenMP 1 thread). Peak RSS is the process's "
        "high-water mark during the call (reset after the input was read; `citybrain "
        "forecast` reads the file inside the call). Base RSS is the process before the input "
        "was read (imports, model, a warm-up call on one series). Job memory is what the call "
        "needs with the input frame included: the frame plus what the call added for the paths "
        "handed a frame (what the caller's own read left in Arrow's memory pool is not theirs), "
        "everything above the base for `citybrain forecast`, which reads the file itself.",
        "",
        "Features (both libraries, direct strategy, one LightGBM per step, "
        + ", ".join(f"{k}={v}" for k, v in LGB.items())
        + "): lags "
        + ", ".join(map(str, LAGS))
        + f"; rolling mean and std over {', '.join(map(str, WINDOWS))} steps; a one-day "
        "seasonal lag (target-aligned in citybrain_ml, origin-aligned lag 96 in mlforecast); "
        "hour, minute, day of week, weekend, time-of-day sine/cosine.",
        "",
        "## Fit (training panel)",
        "",
        "| library | fit s | features |",
        "|---|---|---|",
    ]
    for lib, res in fits.items():
        if "error" in res:
            lines.append(f"| {lib} | failed: {res['error']} | |")
        else:
            lines.append(f"| {lib} | {res['fit_seconds']:.1f} | {res['features']} |")
    lines += [
        "",
        "## Scoring",
        "",
        "| series | history | path | seconds | series/s | x mlforecast throughput | "
        "input frame MB | base RSS MB | peak RSS MB (during call) | peak / input | "
        "job memory / input |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (n, d), part in table.groupby(["series_in", "days"], sort=True):
        ref = part.loc[part["lib"] == "mlforecast", "seconds"]
        ref = float(ref.iloc[0]) if len(ref) and pd.notna(ref.iloc[0]) else np.nan
        for _, r in part.iterrows():
            if pd.notna(r.get("error")):
                lines.append(f"| {n:,} | {d:g} d | {r['lib']} | failed: {r['error']} |||||")
                continue
            ratio = ref / r["seconds"] if np.isfinite(ref) else np.nan
            lines.append(
                f"| {n:,} | {d:g} d | {r['lib']} | {r['seconds']:.2f} | "
                f"{r['series'] / r['seconds']:,.0f} | {ratio:.2f}x | {r['input_mb']:.0f} | "
                f"{r['base_rss_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
                f"{r['peak_rss_mb'] / r['input_mb']:.2f} | "
                f"{_job_memory(r) / r['input_mb']:.2f} |"
            )
    for n, d in info.get("skipped", []):
        lines.append(
            f"| {n:,} | {d:g} d | skipped: {n * d * 96 / 1e6:.0f} M rows is over `--max-rows` "
            "on this machine |||||||"
        )
    cli = table[table["lib"] == "citybrain.forecast"]
    if len(cli) and "timings" in cli:
        lines += ["", "`citybrain forecast` stages (seconds, from the manifest):", ""]
        for _, r in cli.iterrows():
            if isinstance(r.get("timings"), dict):
                stages = ", ".join(
                    f"{k.removesuffix('_seconds')} {v}" for k, v in r["timings"].items()
                )
                lines.append(f"* {r['series_in']:,} series, {r['days']:g} d: {stages}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    table.to_csv(out.with_suffix(".csv"), index=False)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
