"""Crime hotspots, cell x day: Chicago crime 2016-2017 and Toronto MCI, split by time.

* Chicago: 4 crime types (THEFT, BATTERY, ASSAULT, CRIMINAL DAMAGE), 3 km cells over the
  events' bounding box, daily counts. STHSL-style split: train 2016-01..2017-08, validation
  2017-09, test 2017-10-01..2017-12-31. Models are fitted on train + validation (nothing here
  is tuned on the validation month).
* Toronto: major crime indicators, 3 km cells, daily, occurrences 2014-01-01..2021-12-31;
  test = 2021, fitted on 2014-2020.
* Forecast: next day, from every test day's eve (no refit during the test).
* Cells scored: those with at least one event before the test period ("active" cells; the
  bounding box also holds lake and empty cells, which would inflate PAI's area).
* Metrics, per test day, then pooled/averaged: Recall@K and MAP@K with K = active cells
  with a crime that day (GSNet definition, :mod:`citybrain_ml.evaluation.ranking`); PAI at
  5% of the active cells (mean over days); mean Poisson deviance of the counts.

Run::

    .venv/bin/python experiments/incidents_crime.py            # both cities
    .venv/bin/python experiments/incidents_crime.py --city chicago
    .venv/bin/python experiments/incidents_crime.py --jobs     # the product path, below

Writes ``experiments/results/incidents_crime.csv``.

``--jobs`` runs ``citybrain train`` in-process on ``configs/incidents_{chicago,toronto}_events.yaml``
(``dataset: events`` straight from the raw CSVs, a throwaway MLflow store) and scores each
model's evaluation forecasts on the job's default mask (cells with history) and on the whole
bounding box; writes ``experiments/results/incidents_crime_jobs.csv``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.data.loaders import load_chicago_crime_grid, load_toronto_mci_grid
from citybrain_ml.evaluation.metrics import poisson_deviance
from citybrain_ml.evaluation.ranking import map_at_k, pai, recall_at_k
from citybrain_ml.models.baselines import HistoricalAverage
from citybrain_ml.models.glm import NegativeBinomialGLMForecaster, PoissonGLMForecaster
from citybrain_ml.models.kde import KDEHotspotForecaster

OUT = Path(__file__).parent / "results"
CITIES = {
    "chicago": {"loader": load_chicago_crime_grid, "test_start": "2017-10-01", "options": {}},
    "toronto": {
        "loader": load_toronto_mci_grid,
        "test_start": "2021-01-01",
        "options": {"start": "2014-01-01", "end": "2021-12-31"},
    },
}
GLM_DAILY = dict(
    windows=(7, 28, 91, 364),
    neighbour_windows=(28,),
    profile="week",
    profile_spans=(8, 26),
    harmonics=0,
)


def build_models(adjacency: pd.DataFrame) -> dict:
    return {
        "historical_average_week": HistoricalAverage(period="week", horizon=1, calibration_steps=0),
        "kde_train": KDEHotspotForecaster(bandwidth_m=3000, cell_size_m=3000, time_profile="week"),
        "kde_recent_8w": KDEHotspotForecaster(
            bandwidth_m=3000, cell_size_m=3000, window=56, time_profile="week"
        ),
        "glm_poisson": PoissonGLMForecaster(adjacency=adjacency, **GLM_DAILY),
        "glm_negbin": NegativeBinomialGLMForecaster(adjacency=adjacency, **GLM_DAILY),
    }


def forecast_test(model, values: pd.DataFrame, origins: pd.DatetimeIndex) -> pd.DataFrame:
    """Next-day forecasts from each origin (one ``predict`` for the origin-free average)."""
    if isinstance(model, HistoricalAverage):
        steps = int((origins[-1] - model.history_["timestamp"].max()) / pd.Timedelta("1D")) + 1
        fc = model.predict(steps)
        return fc[fc["timestamp"].isin(origins + pd.Timedelta("1D"))]
    return model.historical_forecasts(values, origins, 1)


def scores(fc: pd.DataFrame, values: pd.DataFrame, cells: list) -> dict:
    pred = fc.pivot(index="timestamp", columns="series_id", values="yhat")[cells]
    truth = values.pivot(index="timestamp", columns="series_id", values="value")
    truth = truth.loc[pred.index, cells]
    P, Y = pred.to_numpy(), truth.to_numpy()
    pai5 = [pai(y, p, 0.05) for y, p in zip(Y, P, strict=True) if y.sum() > 0]
    return {
        "recall_at_k": recall_at_k(Y, P),
        "map_at_k": map_at_k(Y, P),
        "pai_5pct": float(np.mean(pai5)),
        "poisson_deviance": poisson_deviance(Y, np.clip(P, 1e-9, None)),
        "mean_k": float((Y > 0).sum(axis=1).mean()),
        "n_cells": len(cells),
        "n_test_days": len(P),
    }


def run_city(city: str, root: str | None) -> list[dict]:
    spec = CITIES[city]
    ds = spec["loader"](root, cell_size=3000, freq="D", **spec["options"])
    values = ds.values
    test_start = pd.Timestamp(spec["test_start"])
    train = values[values["timestamp"] < test_start]
    active = train.groupby("series_id")["value"].sum()
    cells = sorted(active.index[active > 0])
    times = pd.DatetimeIndex(np.sort(values["timestamp"].unique()))
    origins = times[(times >= test_start - pd.Timedelta("1D")) & (times < times[-1])]
    rows = []
    for name, model in build_models(ds.adjacency).items():
        start = time.perf_counter()
        model.fit(train, freq="D")
        fit_s = time.perf_counter() - start
        row = {"city": city, "model": name, "fit_seconds": round(fit_s, 1)}
        row.update(scores(forecast_test(model, values, origins), values, cells))
        print(row, flush=True)
        rows.append(row)
    return rows


JOB_CONFIGS = {
    "chicago": "configs/incidents_chicago_events.yaml",
    "toronto": "configs/incidents_toronto_events.yaml",
}


def run_jobs(root: str, cities: list[str]) -> pd.DataFrame:
    """Train jobs on the raw CSVs; per model: count metrics on the mask and on the box."""
    import tempfile

    from citybrain_ml.config import load_config
    from citybrain_ml.jobs import load_job_data, run_train
    from citybrain_ml.optimize.hotspots import count_metrics

    repo = Path(__file__).parents[1]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for city in cities:
            cfg = load_config(repo / JOB_CONFIGS[city])
            cfg.data.root = root
            cfg.tracking.tracking_uri = f"sqlite:///{tmp}/mlflow.db"
            cfg.output.dir = f"{tmp}/outputs"
            start = time.perf_counter()
            result = run_train(cfg, progress=False)
            wall = time.perf_counter() - start
            ds = load_job_data(cfg)
            for o in result.outcomes:
                for mask in ("auto", "none"):
                    m, cells = count_metrics(o.scored, ds, mask, areas=(0.05,))
                    rows.append(
                        {
                            "city": city,
                            "model": o.label,
                            "mask": cells.kind,
                            "n_cells": len(cells.cells),
                            "recall_at_k": m["recall_at_k"],
                            "map_at_k": m["map_at_k"],
                            "pai_5pct": m["pai_5pct"],
                            "poisson_deviance": m["poisson_deviance"],
                            "job_wall_s": round(wall, 1),
                        }
                    )
                    print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(Path(__file__).parents[1].parent / "shared" / "data"))
    parser.add_argument("--city", choices=(*CITIES, "all"), default="all")
    parser.add_argument("--jobs", action="store_true", help="citybrain train on the raw CSVs")
    args = parser.parse_args()
    if args.jobs:
        cities = list(CITIES) if args.city == "all" else [args.city]
        table = run_jobs(args.root, cities)
        OUT.mkdir(exist_ok=True)
        path = OUT / "incidents_crime_jobs.csv"
        table.to_csv(path, index=False, float_format="%.4f")
        print(table.to_string(index=False))
        print(f"wrote {path}")
        return
    cities = list(CITIES) if args.city == "all" else [args.city]
    table = pd.DataFrame([row for city in cities for row in run_city(city, args.root)])
    OUT.mkdir(exist_ok=True)
    path = OUT / "incidents_crime.csv"
    table.to_csv(path, index=False, float_format="%.4f")
    print(table.to_string(index=False))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
