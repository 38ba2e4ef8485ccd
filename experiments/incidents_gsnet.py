"""Chicago accident-risk grid under the GSNet/MGHSTN protocol: next-hour risk, Recall@K, MAP@K.

Protocol (GSNet ``lib/dataloader.py`` and ``lib/utils.py`` @ Echohhhhhh/GSNet):

* 5,832 hourly grids (2016-02-01..2016-09-30, 20 x 20). Split by time 60/20/20:
  ``train = [0, 3499)``, ``val = [3499, 4665)``, ``test = [4665, 5832)``. GSNet builds each
  split's samples from inside the split and needs 4 weeks of history, so its test targets
  are hours ``4665 + 672 .. 5831`` (495 hours). We forecast exactly those hours, one hour
  ahead, from everything observed before each target (no refit during the test).
* Recall@K / MAP@K: :mod:`citybrain_ml.evaluation.ranking` (line-by-line match of GSNet's
  ``lib/metrics.py``; K = in-mask cells with risk > 0 in that hour; 50 mask cells).
* ``gsnet_rmse``: GSNet's ``mask_rmse_np(y, yhat, risk_mask, null_val=0)`` re-implemented:
  weights ``m = risk_mask * (y > 0)`` divided by their mean over all test hours x 400 cells,
  ``sqrt(mean(((y - yhat) * m)^2))``. That equals the RMSE over in-mask cells *with an
  accident* divided by ``sqrt(share of such entries)``; it ignores all zero cells.
  ``masked_rmse`` is the plain RMSE over the 50 mask cells, every test hour.

Models are fitted on the train split (``--fit-on train``, GSNet's training data) or on
train + val (``--fit-on trainval``). Run::

    .venv/bin/python experiments/incidents_gsnet.py --fit-on train
    .venv/bin/python experiments/incidents_gsnet.py --fit-on trainval

Writes ``experiments/results/incidents_chicago_gsnet_<fit-on>.csv``.

Combinations (``--blend``): the KDE window/bandwidth and the weights of a blend of KDE, the
Poisson GLM and LightGBM (mean of expected counts, or mean of within-hour ranks) are chosen on
GSNet's *validation* targets only (hours ``3499 + 672 .. 4664``, forecast one hour ahead by
members fitted on the train split); the chosen setting is then scored once on the test hours.
With ``--fit-on trainval`` the members are refitted on train + val after the choice. Writes
``incidents_chicago_gsnet_blend_<fit-on>.csv``. ``--write-md`` rebuilds the result tables of
``incidents_chicago_gsnet.md`` from the csv files::

    .venv/bin/python experiments/incidents_gsnet.py --fit-on train --blend --write-md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from citybrain_ml.data.incidents import load_chicago_accident_grid
from citybrain_ml.evaluation.metrics import poisson_deviance
from citybrain_ml.evaluation.ranking import map_at_k, recall_at_k, topk_table
from citybrain_ml.models.baselines import HistoricalAverage
from citybrain_ml.models.glm import NegativeBinomialGLMForecaster, PoissonGLMForecaster
from citybrain_ml.models.kde import KDEHotspotForecaster

HISTORY = 4 * 7 * 24  # GSNet: week_prior=4 weeks of hourly samples before each target
OUT = Path(__file__).parent / "results"
BLEND_MEMBERS = ("kde", "glm_poisson", "lightgbm_poisson")
KDE_WINDOWS = (672, 1344, 2016, 2688)  # 4, 8, 12, 16 weeks
KDE_BANDWIDTHS = (0.25, 0.5, 1.0)  # cells; 0.25 is almost no smoothing
WEIGHT_STEP = 0.1


def build_models(adjacency: pd.DataFrame, names: list[str]) -> dict:
    """The models compared, by name (constructors only; fitted by :func:`run`)."""
    factories = {
        "historical_average_week": lambda: HistoricalAverage(
            period="week", horizon=1, calibration_steps=0
        ),
        "historical_average_day": lambda: HistoricalAverage(
            period="day", horizon=1, calibration_steps=0
        ),
        "kde_train": lambda: KDEHotspotForecaster(bandwidth=0.5, time_profile="day"),
        "kde_recent_8w": lambda: KDEHotspotForecaster(
            bandwidth=0.5, window=1344, time_profile="day"
        ),
        "glm_poisson": lambda: PoissonGLMForecaster(adjacency=adjacency),
        "glm_negbin": lambda: NegativeBinomialGLMForecaster(adjacency=adjacency),
        "lightgbm_poisson": lambda: _lightgbm(adjacency),
        "stid_graph": lambda: _stid(adjacency),
    }
    unknown = sorted(set(names) - set(factories))
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {sorted(factories)}")
    return {name: factories[name]() for name in names}


def _lightgbm(adjacency):
    from citybrain_ml.models.lightgbm import LightGBMForecaster

    return LightGBMForecaster(
        horizon=1,
        lags=(1, 2, 3, 24, 168),
        rolling_windows=(24, 168, 672),
        rolling_stats=("mean",),
        diffs=(),
        ewm_halflives=(24.0, 168.0),
        seasonal_lags=(24, 168),
        adjacency=adjacency,
        neighbour_lags=(1,),
        neighbour_windows=(24, 168, 672),
        objective="poisson",
        n_estimators=300,
        learning_rate=0.03,
        num_leaves=15,
        min_child_samples=200,
        max_train_rows=600_000,
        n_jobs=1,
        calibration_steps=0,
    )


def _stid(adjacency):
    from citybrain_ml.models.neural import STIDForecaster

    return STIDForecaster(
        horizon=1,
        input_len=24,
        adjacency=adjacency,
        graph=True,
        loss="mse",
        max_epochs=30,
        patience=5,
        time_budget_s=600,
        calibration_steps=0,
        verbose=True,  # one line per epoch, so a long run shows its progress
    )


def gsnet_rmse(y: np.ndarray, yhat: np.ndarray, mask: np.ndarray) -> float:
    """GSNet's ``mask_rmse_np(..., null_val=0)`` on ``(T, H, W)`` arrays (see module doc)."""
    weights = mask[None].astype(float) * (y > 0)
    weights = weights / weights.mean()
    return float(np.sqrt(np.mean(((y - yhat) * weights) ** 2)))


def grids(fc: pd.DataFrame, values: pd.DataFrame, shape) -> tuple[np.ndarray, np.ndarray]:
    """Forecasts and truths as ``(T, H, W)`` arrays over the forecast timestamps.

    Series ids are row-major ``r00_c00..r19_c19``, so the pivoted columns match the mask.
    """
    pred = fc.pivot(index="timestamp", columns="series_id", values="yhat")
    truth = values.pivot(index="timestamp", columns="series_id", values="value")
    truth = truth.loc[pred.index, pred.columns]
    return pred.to_numpy().reshape(-1, *shape), truth.to_numpy().reshape(-1, *shape)


def scores(fc: pd.DataFrame, values: pd.DataFrame, mask: np.ndarray, shape) -> dict:
    """Test metrics of a long forecast frame (see the module doc)."""
    return grid_scores(*grids(fc, values, shape), mask)


def grid_scores(P: np.ndarray, Y: np.ndarray, mask: np.ndarray) -> dict:
    """Recall@K, MAP@K, GSNet RMSE, masked RMSE and deviance of ``(T, H, W)`` arrays."""
    in_mask = (Y - P)[:, mask]
    return {
        "recall_at_k": recall_at_k(Y, P, mask),
        "map_at_k": map_at_k(Y, P, mask),
        "gsnet_rmse": gsnet_rmse(Y, P, mask),
        "masked_rmse": float(np.sqrt(np.mean(in_mask**2))),
        "poisson_deviance_mask": poisson_deviance(Y[:, mask], np.clip(P[:, mask], 1e-9, None)),
        "n_test_hours": len(P),
    }


def forecast_test(model, values: pd.DataFrame, origins: pd.DatetimeIndex) -> pd.DataFrame:
    """One-step forecasts of every target after ``origins``.

    A historical average ignores the recent past, so its forecast of a target is the same
    from any origin: one ``predict`` from the end of training over the whole span gives the
    same numbers as the generic per-origin loop at a fraction of its cost (495 origins on
    a 2.3 M-row frame).
    """
    if isinstance(model, HistoricalAverage):
        steps = int((origins[-1] - model.history_["timestamp"].max()) / pd.Timedelta("1h")) + 1
        fc = model.predict(steps)
        return fc[fc["timestamp"].isin(origins + pd.Timedelta("1h"))]
    return model.historical_forecasts(values, origins, 1)


def run(root: str, fit_on: str, names: list[str]) -> pd.DataFrame:
    ds = load_chicago_accident_grid(root)
    values, mask = ds.values, ds.extras["mask"]
    times = pd.DatetimeIndex(np.sort(values["timestamp"].unique()))
    n = len(times)
    train_end, val_end = int(n * 0.6), int(n * 0.8)
    fit_end = train_end if fit_on == "train" else val_end
    train = values[values["timestamp"] < times[fit_end]]
    origins = times[val_end + HISTORY - 1 : n - 1]  # targets val_end + 672 .. n - 1
    # ids are row-major r00_c00..r19_c19, so pivoted columns match the mask's layout
    rows = []
    for name, model in build_models(ds.adjacency, names).items():
        start = time.perf_counter()
        model.fit(train, freq="h")
        fit_s = time.perf_counter() - start
        fc = forecast_test(model, values, origins)
        row = {"model": name, "fit_on": fit_on, "fit_seconds": round(fit_s, 1)}
        row.update(scores(fc, values, mask, mask.shape))
        print(row, flush=True)
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- validation-chosen blends
def split_hours(times: pd.DatetimeIndex) -> dict:
    """GSNet's split ends and the one-step origins of its validation and test targets."""
    n = len(times)
    train_end, val_end = int(n * 0.6), int(n * 0.8)
    return {
        "train_end": times[train_end],
        "val_end": times[val_end],
        "val": times[train_end + HISTORY - 1 : val_end - 1],  # targets 4171 .. 4664
        "test": times[val_end + HISTORY - 1 : n - 1],  # targets 5337 .. 5831
    }


def member_forecasts(models: dict, fit_df, values, origin_sets: dict, shape) -> tuple[dict, dict]:
    """Fit each model on ``fit_df``, then forecast the union of all origin sets in one pass.

    Returns
    -------
    tuple
        ``{set name: {model name: (T, H, W) forecast}}`` and ``{"truth": {set name: (T, H,
        W) truth}, "fit_seconds": {model name: seconds}}``.
    """
    all_origins = pd.DatetimeIndex(
        np.sort(np.concatenate([o.to_numpy() for o in origin_sets.values()]))
    )
    preds: dict = {key: {} for key in origin_sets}
    truths, fit_seconds = {}, {}
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(fit_df, freq="h")
        fit_seconds[name] = time.perf_counter() - start
        fc = model.historical_forecasts(values, all_origins, 1)
        for key, origins in origin_sets.items():
            part = fc[fc["timestamp"].isin(origins + pd.Timedelta("1h"))]
            preds[key][name], truths[key] = grids(part, values, shape)
        print(f"  {name}: fit {fit_seconds[name]:.1f}s", flush=True)
    return preds, {"truth": truths, "fit_seconds": fit_seconds}


def combine(preds: list[np.ndarray], weights, method: str) -> np.ndarray:
    """Weighted mean of expected counts (``"mean"``) or of within-hour cell ranks (``"rank"``).

    Ranks (1 = lowest, ties averaged) are taken over all cells of an hour; only their order
    inside the mask matters for Recall/MAP, so taking them over the grid changes nothing.
    """
    if method == "rank":
        preds = [rankdata(p.reshape(len(p), -1), axis=1).reshape(p.shape) for p in preds]
    return sum(w * p for w, p in zip(weights, preds, strict=True))


def simplex_weights(n_members: int, step: float) -> list[tuple[float, ...]]:
    """All non-negative weight vectors on a ``step`` grid that sum to one."""
    units = round(1 / step)
    grid = np.array(np.meshgrid(*[range(units + 1)] * n_members)).reshape(n_members, -1).T
    return [tuple(float(x) for x in row / units) for row in grid if row.sum() == units]


def ranking_scores(Y: np.ndarray, P: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Recall@K and MAP@K from one pass of :func:`topk_table`."""
    table = topk_table(Y, P, mask)
    return float(table["hits"].sum() / table["k"].sum()), float(table["ap"].mean())


def choose_on_validation(candidates: dict, Y_val: np.ndarray, mask) -> tuple[str, tuple]:
    """Name of the candidate with the best validation Recall@K (ties: MAP@K) and its scores."""
    scored = {name: ranking_scores(Y_val, P, mask) for name, P in candidates.items()}
    best = max(scored, key=lambda name: scored[name])
    return best, scored[best]


def kde_grid_models() -> dict:
    """KDE configurations searched on validation, keyed ``kde_w{window}_b{bandwidth}``."""
    return {
        f"kde_w{w}_b{b}": KDEHotspotForecaster(bandwidth=b, window=w, time_profile="day")
        for w in KDE_WINDOWS
        for b in KDE_BANDWIDTHS
    }


def blend_members(adjacency, kde_name: str) -> dict:
    """Fresh blend members: the chosen KDE, the Poisson GLM and LightGBM."""
    window, bandwidth = kde_name.removeprefix("kde_w").split("_b")
    kde = KDEHotspotForecaster(bandwidth=float(bandwidth), window=int(window), time_profile="day")
    rest = build_models(adjacency, ["glm_poisson", "lightgbm_poisson"])
    return {"kde": kde, **rest}


def select_blends(preds: dict, Y_val: np.ndarray, mask) -> list[dict]:
    """The blends to score on test, every choice made on ``preds["val"]`` only.

    Fixed in advance (no search): equal-weight means of KDE-8w + GLM and of KDE-8w + GLM +
    LightGBM, and the equal-weight rank average of the three. Searched: the KDE configuration
    (validation Recall@K), then method and weights of the blend of that KDE with the GLM and
    LightGBM on a ``WEIGHT_STEP`` simplex grid.
    """
    val = preds["val"]
    kde_name, kde_val = choose_on_validation(
        {k: v for k, v in val.items() if k.startswith("kde_w")}, Y_val, mask
    )
    fixed = {
        "blend_mean_kde8w_glm": ("mean", {"kde_w1344_b0.5": 0.5, "glm_poisson": 0.5}),
        "blend_mean_kde8w_glm_lgbm": (
            "mean",
            {"kde_w1344_b0.5": 1 / 3, "glm_poisson": 1 / 3, "lightgbm_poisson": 1 / 3},
        ),
        "blend_rank_kde8w_glm_lgbm": (
            "rank",
            {"kde_w1344_b0.5": 1 / 3, "glm_poisson": 1 / 3, "lightgbm_poisson": 1 / 3},
        ),
    }
    members = (kde_name, "glm_poisson", "lightgbm_poisson")
    searched = {
        (method, weights): combine([val[m] for m in members], weights, method)
        for method in ("mean", "rank")
        for weights in simplex_weights(len(members), WEIGHT_STEP)
    }
    (method, weights), blend_val = choose_on_validation(searched, Y_val, mask)
    specs = [
        {"model": "kde_val_selected", "method": "mean", "weights": {kde_name: 1.0}, "val": kde_val}
    ]
    for name, (how, w) in fixed.items():
        P = combine([val[m] for m in w], list(w.values()), how)
        specs.append(
            {"model": name, "method": how, "weights": w, "val": ranking_scores(Y_val, P, mask)}
        )
    specs.append(
        {
            "model": "blend_val_selected",
            "method": method,
            "weights": dict(zip(members, weights, strict=True)),
            "val": blend_val,
        }
    )
    return specs


def score_blends(specs, test_preds, Y_test, mask, fit_seconds, fit_on) -> pd.DataFrame:
    """Test scores of the chosen blends (one row each)."""
    rows = []
    for spec in specs:
        w = {m: x for m, x in spec["weights"].items() if x > 0}
        P = combine([test_preds[m] for m in w], list(w.values()), spec["method"])
        choice = spec["method"] + " " + " + ".join(f"{x:.2f} {m}" for m, x in w.items())
        row = {
            "model": spec["model"],
            "fit_on": fit_on,
            "fit_seconds": round(sum(fit_seconds[m] for m in w), 1),
            "choice": choice,
            "val_recall_at_k": spec["val"][0],
            "val_map_at_k": spec["val"][1],
        }
        row.update(grid_scores(P, Y_test, mask))
        if spec["method"] == "rank":  # a rank average is a score, not an expected count
            row.update(gsnet_rmse=np.nan, masked_rmse=np.nan, poisson_deviance_mask=np.nan)
        print(row, flush=True)
        rows.append(row)
    return pd.DataFrame(rows)


def run_blend(root: str) -> dict[str, pd.DataFrame]:
    """Choose the blends on validation (members fitted on train), score them on test.

    Returns one table per ``fit_on``: ``"train"`` reuses the train-fitted members;
    ``"trainval"`` refits the chosen members on train + val with the same choices.
    """
    ds = load_chicago_accident_grid(root)
    values, mask = ds.values, ds.extras["mask"]
    hours = split_hours(pd.DatetimeIndex(np.sort(values["timestamp"].unique())))
    origin_sets = {"val": hours["val"], "test": hours["test"]}
    models = {
        **kde_grid_models(),
        **build_models(ds.adjacency, ["glm_poisson", "lightgbm_poisson"]),
    }
    train = values[values["timestamp"] < hours["train_end"]]
    print("fitting on train (validation + test forecasts)", flush=True)
    preds, info = member_forecasts(models, train, values, origin_sets, mask.shape)
    specs = select_blends(preds, info["truth"]["val"], mask)
    tables = {
        "train": score_blends(
            specs, preds["test"], info["truth"]["test"], mask, info["fit_seconds"], "train"
        )
    }
    needed = {m for spec in specs for m, x in spec["weights"].items() if x > 0}
    refit = {**kde_grid_models(), **build_models(ds.adjacency, ["glm_poisson", "lightgbm_poisson"])}
    trainval = values[values["timestamp"] < hours["val_end"]]
    print("refitting the chosen members on train + val (test forecasts)", flush=True)
    preds_tv, info_tv = member_forecasts(
        {m: refit[m] for m in sorted(needed)}, trainval, values, {"test": hours["test"]}, mask.shape
    )
    tables["trainval"] = score_blends(
        specs, preds_tv["test"], info_tv["truth"]["test"], mask, info_tv["fit_seconds"], "trainval"
    )
    return tables


# ---------------------------------------------------------------- markdown tables
LABELS = {
    "historical_average_week": "historical average, cell x hour-of-week",
    "historical_average_day": "historical average, cell x hour-of-day",
    "kde_train": "KDE, training-window rates (bandwidth 0.5 cell)",
    "kde_recent_8w": "KDE, last 8 weeks before each hour",
    "glm_poisson": "Poisson GLM",
    "glm_negbin": "negative-binomial GLM",
    "lightgbm_poisson": "LightGBM, Poisson objective, neighbour lags",
    "stid_graph": "STID MLP + graph neighbour branch (MSE, 24 h input)",
    "kde_val_selected": "KDE, window/bandwidth chosen on val",
    "blend_mean_kde8w_glm": "mean of KDE-8w + Poisson GLM (fixed 1/2 each)",
    "blend_mean_kde8w_glm_lgbm": "mean of KDE-8w + GLM + LightGBM (fixed 1/3 each)",
    "blend_rank_kde8w_glm_lgbm": "rank average of KDE-8w + GLM + LightGBM (fixed 1/3 each)",
    "blend_val_selected": "blend, method and weights chosen on val",
}
MD_START, MD_END = "<!-- results:start -->", "<!-- results:end -->"


def _md_table(table: pd.DataFrame, with_choice: bool) -> list[str]:
    cols = ["fit s", "Recall@K", "MAP@K", "gsnet_rmse", "masked RMSE", "Poisson dev. (mask)"]
    if with_choice:
        cols = ["chosen on validation", "val Recall@K", "val MAP@K", *cols]
    lines = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    best = {
        "recall_at_k": table["recall_at_k"].max(),
        "map_at_k": table["map_at_k"].max(),
        "masked_rmse": table["masked_rmse"].min(),
        "poisson_deviance_mask": table["poisson_deviance_mask"].min(),
    }

    def cell(row, key, text):
        if pd.isna(row[key]):
            return "n/a"
        return f"**{text}**" if key in best and np.isclose(row[key], best[key]) else text

    for _, r in table.iterrows():
        cells = [LABELS.get(r["model"], r["model"])]
        if with_choice:
            cells += [r["choice"], f"{r['val_recall_at_k']:.2%}", f"{r['val_map_at_k']:.4f}"]
        cells += [
            f"{r['fit_seconds']:.1f}",
            cell(r, "recall_at_k", f"{r['recall_at_k']:.2%}"),
            cell(r, "map_at_k", f"{r['map_at_k']:.4f}"),
            cell(r, "gsnet_rmse", f"{r['gsnet_rmse']:.2f}"),
            cell(r, "masked_rmse", f"{r['masked_rmse']:.4f}"),
            cell(r, "poisson_deviance_mask", f"{r['poisson_deviance_mask']:.3f}"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def results_markdown() -> str:
    """The result tables of the md file, rebuilt from the csv files this script writes."""
    titles = {
        "train": "Fitted on GSNet's training split only (`--fit-on train`)",
        "trainval": "Fitted on train + validation (`--fit-on trainval`; same test hours)",
    }
    lines, tables = [], []
    for fit_on, title in titles.items():
        for kind, suffix in (("single", ""), ("blend", "blend_")):
            path = OUT / f"incidents_chicago_gsnet_{suffix}{fit_on}.csv"
            if not path.exists():
                continue
            table = pd.read_csv(path)
            tables.append(table)
            what = "single models" if kind == "single" else "combinations, chosen on validation"
            lines += [f"{title}, {what} (`{path.name}`):", ""]
            lines += [*_md_table(table, kind == "blend"), ""]
    everything = pd.concat(tables, ignore_index=True)
    top = everything.loc[everything["recall_at_k"].idxmax()]
    lines.append(
        f"Best test Recall@K over all rows: {top['recall_at_k']:.2%} "
        f"({LABELS.get(top['model'], top['model'])}, fit on {top['fit_on']}); "
        f"target 23% {'met' if top['recall_at_k'] >= 0.23 else 'not met'}."
    )
    return "\n".join(lines)


def write_markdown(path: Path = OUT / "incidents_chicago_gsnet.md") -> None:
    """Replace the text between the results markers of ``path`` with fresh tables."""
    text = path.read_text()
    if MD_START not in text or MD_END not in text:
        raise SystemExit(f"{path} lacks the {MD_START} / {MD_END} markers")
    head, rest = text.split(MD_START, 1)
    tail = rest.split(MD_END, 1)[1]
    path.write_text(f"{head}{MD_START}\n{results_markdown()}\n{MD_END}{tail}")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(Path(__file__).parents[1].parent / "shared" / "data"))
    parser.add_argument("--fit-on", choices=("train", "trainval"), default="train")
    parser.add_argument(
        "--models",
        default="historical_average_week,historical_average_day,kde_train,kde_recent_8w,"
        "glm_poisson,glm_negbin,lightgbm_poisson",
    )
    parser.add_argument(
        "--blend",
        action="store_true",
        help="instead of --models: validation-chosen KDE and blends, scored for both fit-ons",
    )
    parser.add_argument(
        "--write-md", action="store_true", help="rebuild the md result tables from the csvs"
    )
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    if args.blend:
        for fit_on, table in run_blend(args.root).items():
            _save(table, OUT / f"incidents_chicago_gsnet_blend_{fit_on}.csv")
    elif not args.write_md:
        table = run(args.root, args.fit_on, args.models.split(","))
        path = OUT / f"incidents_chicago_gsnet_{args.fit_on}.csv"
        _save(merge_rows(path, table), path)
    if args.write_md:
        write_markdown()


def merge_rows(path: Path, table: pd.DataFrame) -> pd.DataFrame:
    """``table``'s rows merged into the csv at ``path``, one row per model.

    A run of a few models (``--models stid_graph``) must not wipe the other models' rows:
    a rerun model replaces its old row in place, a new model is appended, the rest are kept.

    Parameters
    ----------
    path : Path
        Existing results csv (may be absent, then ``table`` is returned as is).
    table : DataFrame
        Fresh rows with a ``model`` column.

    Returns
    -------
    DataFrame
        The merged table, in the csv's row order followed by the new models.
    """
    if not path.exists():
        return table
    old = pd.read_csv(path)
    order = list(old["model"]) + [m for m in table["model"] if m not in set(old["model"])]
    merged = pd.concat([old[~old["model"].isin(table["model"])], table], ignore_index=True)
    merged = merged.set_index("model").loc[order].reset_index()
    return merged


def _save(table: pd.DataFrame, path: Path) -> None:
    table.to_csv(path, index=False, float_format="%.4f")
    print(table.to_string(index=False))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
