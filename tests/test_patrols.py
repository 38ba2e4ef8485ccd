"""Response-unit placement job: end to end on the bundled Chicago crime slice, plus the
reference placements' definitions on small synthetic grids."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.config import ConfigError
from citybrain_ml.data.schema import SeriesDataset
from citybrain_ml.optimize.patrols import (
    PatrolsJobConfig,
    _reference_demand,
    cell_points,
    load_patrols_config,
    run_patrols,
    run_patrols_job,
)

JOB_YAML = """
name: test_patrols
data:
  dataset: chicago_crime
  root: {root}
forecasters:
  - type: historical_average
    params: {{period: day}}
  - type: lightgbm
    name: lgbm_poisson
    params:
      objective: poisson
      lags: [1, 2]
      rolling_windows: [3]
      ewm_halflives: [2.0]
      neighbour_lags: [1]
      neighbour_windows: []
      calendar: false
      n_estimators: 20
      n_jobs: 1
placement: {{p: 4, radius_m: 4000}}
evaluation: {{test_ratio: 0.3, lookback: 3}}
output_dir: {out}
"""


@pytest.fixture
def job_yaml(tmp_path, samples_dir, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    path = tmp_path / "patrols.yaml"
    path.write_text(JOB_YAML.format(root=samples_dir, out=tmp_path / "out"))
    return path


def test_patrols_job_end_to_end_on_sample(job_yaml, tmp_path):
    import mlflow

    summary = run_patrols_job(job_yaml)
    assert "lgbm_poisson" in summary and "MLflow run" in summary
    out = tmp_path / "out"
    coverage = pd.read_csv(out / "coverage_by_period.csv")
    methods = {"historical_rate", "uniform", "oracle", "historical_average", "lgbm_poisson"}
    assert set(coverage["method"]) == methods
    # the oracle places on the actual counts with an exact MILP: no method covers more
    best = coverage.pivot(index="period", columns="method", values="covered_incidents")
    assert (best["oracle"].to_numpy()[:, None] >= best.to_numpy() - 1e-9).all()
    assert coverage["coverage_share"].between(0, 1).all()
    # the uniform spread ignores risk: one placement for every period
    assert coverage.loc[coverage["method"] == "uniform", "sites"].nunique() == 1
    placement = pd.read_csv(out / "placement.csv")
    assert len(placement) == 4 and {"site", "lat", "lon"} <= set(placement.columns)
    meta = json.loads((out / "placement_summary.json").read_text())
    assert meta["forecaster"] == "historical_average" and meta["gap"] <= 1e-4
    assert (out / "placement_map.png").stat().st_size > 1000
    run = mlflow.search_runs(experiment_names=["citybrain-patrols"]).iloc[0]
    assert "metrics.oracle.coverage_pooled" in run.index
    assert run["metrics.oracle.coverage_pooled"] >= run["metrics.historical_rate.coverage_pooled"]


def test_historical_rate_uses_only_earlier_periods():
    idx = pd.date_range("2024-01-01", periods=6, freq="D")
    actual = pd.DataFrame({"a": [1.0, 1, 1, 1, 1, 50], "b": [0.0, 2, 2, 2, 2, 0]}, index=idx)
    cfg = PatrolsJobConfig(evaluation={"lookback": 2})
    rate = _reference_demand("historical_rate", actual, idx[4:], cfg, None)
    assert rate.loc[idx[5]].tolist() == [1.0, 2.0]  # the 50 of that day is not seen
    uniform = _reference_demand("uniform", actual, idx[4:], cfg, None)
    assert uniform.to_numpy().tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_uniform_leaves_out_cells_without_any_past_incident():
    idx = pd.date_range("2024-01-01", periods=3, freq="D")
    actual = pd.DataFrame({"city": [1.0, 0, 2], "lake": [0.0, 0, 3]}, index=idx)
    uniform = _reference_demand("uniform", actual, idx[2:], PatrolsJobConfig(), None)
    assert uniform.iloc[0].tolist() == [1.0, 0.0]


def test_patrols_config_rejects_clashing_labels(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("forecasters: [{type: historical_average, name: oracle}]\n")
    with pytest.raises(ConfigError, match="bad.yaml.*oracle"):
        load_patrols_config(path)
    path.write_text("placement: {p: 0}\n")
    with pytest.raises(ConfigError, match="placement.p"):
        load_patrols_config(path)


def test_cell_points_needs_coordinates():
    values = pd.DataFrame(
        {"series_id": ["a"], "timestamp": pd.to_datetime(["2024-01-01"]), "value": [1.0]}
    )
    ds = SeriesDataset(values, "D", sensors=pd.DataFrame({"series_id": ["a"], "name": ["x"]}))
    with pytest.raises(ValueError, match="lat/lon or row/col"):
        cell_points(ds)


def test_run_patrols_rejects_a_test_window_without_history(samples_dir):
    from citybrain_ml.data import load_chicago_crime_grid

    ds = load_chicago_crime_grid(samples_dir)
    cfg = PatrolsJobConfig(evaluation={"test_start": "2015-01-01"})
    with pytest.raises(ValueError, match="no test periods with history"):
        run_patrols(cfg, ds)
    assert np.isfinite(ds.values["value"]).all()
