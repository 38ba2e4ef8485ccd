"""Tune STIDForecaster on SZ-taxi and Los-loop under the T-GCN protocol; rerunnable.

Protocol (T-GCN, Zhao et al. 2019, github.com/lehaifeng/T-GCN):
* first 80% of timestamps train (the model carves its early-stopping tail from these),
  last 20% test; no refit during the test period;
* a forecast from every test origin: origins run from the last training timestamp to the
  last one whose full horizon lies inside the data, so every origin scores all steps;
* SZ-taxi: 15-min speeds, horizons 1..4 steps (15-60 min); zeros kept as values (as T-GCN);
* Los-loop: 5-min speeds, horizons 3/6/9/12 steps (15-60 min); zeros would be masked (none).

Metrics, in km/h (SZ) and mph (Los), computed with numpy over all (origin, series) pairs:
* ``step``: RMSE/MAE of the forecast exactly k steps ahead;
* ``tgcn``: RMSE/MAE pooled over steps 1..k, which is what T-GCN's code reports for
  ``pre_len = k`` (its test labels are reshaped to ``[-1, num_nodes]`` before scoring).
Persistence (last value at the origin) is scored the same way for reference.

Usage::

    .venv/bin/python experiments/tune_neural.py --dataset sz --config default
    .venv/bin/python experiments/tune_neural.py --dataset both --config all

Results are appended to ``experiments/results/tune_neural.jsonl`` (one JSON line per run).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import matrix_to_edges, wide_to_long
from citybrain_ml.models.neural import STIDForecaster

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CITYBRAIN_SHARED_DATA", REPO.parent / "shared" / "data")) / "traffic"
RESULTS = REPO / "experiments" / "results" / "tune_neural.jsonl"
TRAIN_RATE = 0.8
BUDGET_S = 280  # per-fit training time cap (2 shared CPU cores)

# T-GCN rows of the results table in Zhao et al. 2019 (IEEE T-ITS, arXiv:1811.05320) at
# 15/30/45/60 min, rounded to 2 decimals; these are pooled over steps 1..k (see "tgcn" above)
TGCN_PAPER = {
    "sz": {"rmse": [3.93, 3.93, 3.97, 3.98], "mae": [2.71, 2.75, 2.78, 2.80]},
    "los": {"rmse": [5.13, 6.06, 6.71, 7.27], "mae": [3.18, 3.75, 4.11, 4.60]},
}

CONFIGS = {
    "default": {},
    "dim32": {"embed_dim": 32, "node_dim": 32, "tod_dim": 32, "dow_dim": 32},
    "graph": {"graph": True},
    "in4": {"input_len": 4},
    "in24": {"input_len": 24},
    "small": {"embed_dim": 16, "node_dim": 16, "tod_dim": 16, "dow_dim": 16},
    "wide": {"embed_dim": 64, "node_dim": 64, "tod_dim": 64, "dow_dim": 64},
    "no_time_id": {"tod_dim": 0, "dow_dim": 0},
    "no_node_id": {"node_dim": 0},
    "mse": {"loss": "mse"},
    "graph_in24": {"graph": True, "input_len": 24},
    "small_mse": {"embed_dim": 16, "node_dim": 16, "tod_dim": 16, "dow_dim": 16, "loss": "mse"},
    "small_huber": {"embed_dim": 16, "node_dim": 16, "tod_dim": 16, "dow_dim": 16, "loss": "huber"},
    "small_in4": {"embed_dim": 16, "node_dim": 16, "tod_dim": 16, "dow_dim": 16, "input_len": 4},
    "small_graph_mse": {
        "embed_dim": 16,
        "node_dim": 16,
        "tod_dim": 16,
        "dow_dim": 16,
        "graph": True,
        "loss": "mse",
    },
    "small_graph": {"embed_dim": 16, "node_dim": 16, "tod_dim": 16, "dow_dim": 16, "graph": True},
}


def load(name: str):
    """Long frame, edge list, freq, report horizons (steps) for ``sz`` or ``los``."""
    if name == "sz":
        values = np.load(DATA / "sz_taxi" / "sz_speed_stcgcn.npz")["data"][..., 0]
        adj = pd.read_csv(DATA / "sz_taxi" / "sz_adj.csv", header=None).to_numpy()
        ids = [f"road{i:03d}" for i in range(values.shape[1])]
        index = pd.date_range("2015-01-01", periods=len(values), freq="15min")
        return _pack(values, ids, index, adj), "15min", [1, 2, 3, 4]
    frame = pd.read_csv(DATA / "los_loop" / "los_speed.csv")
    adj = pd.read_csv(DATA / "los_loop" / "los_adj.csv", header=None).to_numpy()
    values = frame.to_numpy(dtype=float)
    values[values == 0] = np.nan  # zeros are missing loop readings
    index = pd.date_range("2012-03-01", periods=len(values), freq="5min")
    return _pack(values, list(frame.columns), index, adj), "5min", [3, 6, 9, 12]


def _pack(values: np.ndarray, ids: list, index: pd.DatetimeIndex, adj: np.ndarray):
    wide = pd.DataFrame(values, index=index, columns=ids)
    return wide, wide_to_long(wide), matrix_to_edges(adj, ids)


def evaluate(name: str, overrides: dict, seed: int = 0, budget_s: float = BUDGET_S) -> dict:
    """Fit on the first 80%, forecast every test origin, score per step and T-GCN style."""
    (wide, long, edges), freq, report = load(name)
    horizon = max(report)
    n_train = int(len(wide) * TRAIN_RATE)
    cutoff = wide.index[n_train - 1]
    # one torch thread: on a shared 2-core machine a second thread mostly waits (10x slower)
    params = dict(
        horizon=horizon, calibration_steps=0, time_budget_s=budget_s, seed=seed, num_threads=1
    )
    params.update(overrides)
    if params.get("graph"):
        params["adjacency"] = edges
    model = STIDForecaster(**params)
    model.fit(long[long["timestamp"] <= cutoff], freq=freq)

    origins = wide.index[n_train - 1 : len(wide) - horizon]
    start = time.perf_counter()
    fc = model.historical_forecasts(long, origins, horizon)
    predict_s = time.perf_counter() - start
    pred = fc["yhat"].to_numpy().reshape(len(origins), wide.shape[1], horizon)
    # forecasts come sorted by series_id; align the observed matrix to that order
    values = wide[list(pd.unique(fc["series_id"]))].to_numpy()
    truth = _targets(values, n_train - 1, len(origins), horizon)
    last = values[n_train - 1 : n_train - 1 + len(origins)]
    naive = np.repeat(last[:, :, None], horizon, axis=2)
    return {
        "dataset": name,
        "overrides": {k: v for k, v in overrides.items()},
        "seed": seed,
        "n_origins": len(origins),
        "train_seconds": round(model.train_seconds_, 1),
        "best_epoch": model.best_epoch_,
        "epochs_run": len(model.history_losses_),
        "predict_seconds": round(predict_s, 2),
        "stid": _scores(pred, truth, report),
        "persistence": _scores(naive, truth, report),
        "tgcn_paper": TGCN_PAPER[name],
        "torch_threads": model.num_threads,
        "cpu_load_1min": round(os.getloadavg()[0], 2),
    }


def _targets(values: np.ndarray, first: int, n_origins: int, horizon: int) -> np.ndarray:
    """``(origins, series, horizon)`` observed values after each origin."""
    rows = first + np.arange(n_origins)[:, None] + np.arange(1, horizon + 1)[None, :]
    return values[rows].transpose(0, 2, 1)


def _scores(pred: np.ndarray, truth: np.ndarray, report: list[int]) -> dict:
    out = {"step_rmse": [], "step_mae": [], "tgcn_rmse": [], "tgcn_mae": []}
    for k in report:
        for kind, sl in (("step", slice(k - 1, k)), ("tgcn", slice(0, k))):
            err = (pred[:, :, sl] - truth[:, :, sl]).ravel()
            err = err[~np.isnan(err)]
            out[f"{kind}_rmse"].append(round(float(np.sqrt(np.mean(err**2))), 4))
            out[f"{kind}_mae"].append(round(float(np.mean(np.abs(err))), 4))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=["sz", "los", "both"], default="both")
    parser.add_argument("--config", default="default", help=f"one of {list(CONFIGS)} or 'all'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="training seconds cap")
    parser.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="epoch cap; with --budget 0 (no cap) it replays a budget-cut run exactly",
    )
    args = parser.parse_args()
    names = ["sz", "los"] if args.dataset == "both" else [args.dataset]
    configs = list(CONFIGS) if args.config == "all" else args.config.split(",")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    for name in names:
        for config in configs:
            overrides = dict(CONFIGS[config])
            if args.max_epochs:
                overrides["max_epochs"] = args.max_epochs
            budget = args.budget or None
            result = evaluate(name, overrides, args.seed, budget)
            result |= {"config": config, "budget_s": args.budget}
            with open(RESULTS, "a") as fh:
                fh.write(json.dumps(result) + "\n")
            _print(result)


def _print(r: dict) -> None:
    s, p = r["stid"], r["persistence"]
    print(
        f"{r['dataset']:3s} {r['config']:12s} train {r['train_seconds']:6.1f}s "
        f"epoch {r['best_epoch']:3d}/{r['epochs_run']:3d} | "
        f"step RMSE {s['step_rmse']} MAE {s['step_mae']} | "
        f"T-GCN-style RMSE {s['tgcn_rmse']} MAE {s['tgcn_mae']} | "
        f"persistence step RMSE {p['step_rmse']} MAE {p['step_mae']}",
        flush=True,
    )


if __name__ == "__main__":
    main()
