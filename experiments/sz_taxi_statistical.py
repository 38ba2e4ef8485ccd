"""Sanity benchmark of the statistical forecasters on SZ-taxi (T-GCN protocol).

Data: /work/shared/data/traffic/sz_taxi/sz_speed_stcgcn.npz (2976 x 156 speeds, 15 min,
timestamps assigned from 2015-01-01 00:00). Split: first 80% of timestamps train, last 20%
test. Origins: every timestamp from the last training step to the second-to-last test step;
horizons 1..4 steps (15..60 min); only targets inside the test span are scored. Models are
fitted once on the training span (no refit), with conformal calibration off. Metrics: RMSE
and MAE per horizon step over all (series, origin) pairs, km/h.

Usage::

    .venv/bin/python experiments/sz_taxi_statistical.py [config ...]

Configs: last_value, historical_average, arma, arma_day, arma_week, ets_day, fourier
(default: all).
Writes experiments/results/sz_taxi_statistical.csv (one row per config and step).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.models.baselines import HistoricalAverage, LastValue
from citybrain_ml.models.statistical import ETSForecaster, SARIMAXForecaster

DATA = Path(__file__).resolve().parents[2] / "shared/data/traffic/sz_taxi/sz_speed_stcgcn.npz"
OUT = Path(__file__).resolve().parent / "results" / "sz_taxi_statistical.csv"
HORIZON = 4
# season_length=96 (one day) feeds the Fourier terms and the seasonal-naive fallback
COMMON = {"horizon": HORIZON, "calibration_steps": 0, "n_jobs": 2, "season_length": 96}

CONFIGS = {
    "last_value": lambda: LastValue(horizon=HORIZON, calibration_steps=0),
    "historical_average": lambda: HistoricalAverage(
        period="week", horizon=HORIZON, calibration_steps=0
    ),
    "arma": lambda: SARIMAXForecaster(order=(1, 0, 1), trend="c", **COMMON),
    "arma_day": lambda: SARIMAXForecaster(order=(1, 0, 1), deseasonalize="day", **COMMON),
    "arma_week": lambda: SARIMAXForecaster(order=(1, 0, 1), deseasonalize="week", **COMMON),
    "ets_day": lambda: ETSForecaster(deseasonalize="day", **COMMON),
    "fourier": lambda: SARIMAXForecaster(order=(1, 0, 1), trend="c", fourier_terms=4, **COMMON),
}


def load() -> tuple[pd.DataFrame, pd.Timestamp]:
    """Long frame of SZ-taxi and the last training timestamp (80/20 split)."""
    speed = np.load(DATA)["data"][:, :, 0]
    n_time, n_series = speed.shape
    ts = pd.date_range("2015-01-01", periods=n_time, freq="15min")
    df = pd.DataFrame(
        {
            "series_id": np.repeat([f"road_{j:03d}" for j in range(n_series)], n_time),
            "timestamp": np.tile(ts, n_series),
            "value": speed.T.ravel(),
        }
    )
    return df, ts[int(0.8 * n_time) - 1]


def run(name: str, df: pd.DataFrame, train_end: pd.Timestamp) -> list[dict]:
    """Fit on the training span, forecast every test origin, score per horizon step."""
    model = CONFIGS[name]()
    started = time.perf_counter()
    model.fit(df[df["timestamp"] <= train_end], freq="15min")
    fit_s = time.perf_counter() - started
    times = np.sort(df["timestamp"].unique())
    origins = times[(times >= train_end) & (times < times[-1])]
    started = time.perf_counter()
    fc = model.historical_forecasts(df, origins, HORIZON)
    predict_s = time.perf_counter() - started
    scored = fc.merge(df, on=["series_id", "timestamp"]).dropna(subset=["value", "yhat"])
    fallbacks = getattr(model, "fallback_series_", {}) or {}
    for sid, reason in fallbacks.items():
        print(f"{name}: {sid} uses the fallback model: {reason}")
    rows = []
    for step, g in scored.groupby("horizon_step"):
        err = g["value"] - g["yhat"]
        rows.append(
            {
                "config": name,
                "horizon_step": int(step),
                "rmse": float(np.sqrt(np.mean(err**2))),
                "mae": float(np.mean(np.abs(err))),
                "n_scored": len(g),
                "n_origins": len(origins),
                "fit_s": round(fit_s, 1),
                "predict_s": round(predict_s, 1),
                "fallback_series": len(fallbacks),
            }
        )
    return rows


def main(names: list[str]) -> None:
    if not DATA.exists():
        sys.exit(f"SZ-taxi data not found at {DATA}")
    df, train_end = load()
    for name in names or list(CONFIGS):
        rows = pd.DataFrame(run(name, df, train_end))
        print(rows.to_string(index=False), flush=True)
        save(rows)


def save(rows: pd.DataFrame) -> None:
    """Add or replace this config's rows in the results CSV (other configs are kept)."""
    if OUT.exists():
        old = pd.read_csv(OUT)
        rows = pd.concat([old[~old["config"].isin(rows["config"])], rows])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(OUT, index=False)


if __name__ == "__main__":
    main(sys.argv[1:])
