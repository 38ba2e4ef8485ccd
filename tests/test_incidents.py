"""Hotspot decision: expected counts, P(>=1), ranking, k-suppression, and a train job end to end."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from citybrain_ml.config import JobConfig
from citybrain_ml.data.privacy import assert_no_raw_coordinates
from citybrain_ml.data.schema import SeriesDataset
from citybrain_ml.optimize.decisions import DecisionContext
from citybrain_ml.optimize.hotspots import (
    evaluation_metrics,
    expected_counts,
    hotspots_decision,
    p_at_least_one,
    publish,
    published_ranking,
    training_event_counts,
)

REPO = Path(__file__).resolve().parents[1]
IDS = ["cell_0_0", "cell_0_1", "cell_1_0", "cell_1_1"]


def history(counts_per_day: list[float], days: int = 4) -> pd.DataFrame:
    times = pd.date_range("2021-01-01", periods=days, freq="D")
    return pd.DataFrame(
        {
            "series_id": np.repeat(IDS, days),
            "timestamp": np.tile(times, len(IDS)),
            "value": np.repeat(np.asarray(counts_per_day, float), days),
        }
    )


def forecast(mu: list[float], periods: int = 2) -> pd.DataFrame:
    times = pd.date_range("2021-01-05", periods=periods, freq="D")
    return pd.DataFrame(
        {
            "series_id": np.tile(IDS, periods),
            "timestamp": np.repeat(times, len(IDS)),
            "horizon_step": np.repeat(np.arange(1, periods + 1), len(IDS)),
            "yhat": np.tile(np.asarray(mu, float), periods),
        }
    )


def test_training_event_counts_methods():
    values = history([0.0, 1.0, 3.0, 2.0])
    train_end = pd.Timestamp("2021-01-03")  # 3 of the 4 days
    counts = training_event_counts(values, train_end, "sum")
    assert counts.to_dict() == {"cell_0_0": 0.0, "cell_0_1": 3.0, "cell_1_0": 9.0, "cell_1_1": 6.0}
    nonzero = training_event_counts(values, train_end, "nonzero")
    assert nonzero.to_dict() == {"cell_0_0": 0.0, "cell_0_1": 3.0, "cell_1_0": 3.0, "cell_1_1": 3.0}
    # auto: integer data is summed, severity-weighted data counts non-zero periods
    pd.testing.assert_series_equal(training_event_counts(values, train_end), counts)
    weighted = values.assign(value=values["value"] * 1.5)
    pd.testing.assert_series_equal(training_event_counts(weighted, train_end), nonzero)


def test_p_at_least_one_poisson_and_negbin():
    assert p_at_least_one([0.0, 1.0])[1] == pytest.approx(1 - np.exp(-1))
    assert p_at_least_one([0.0])[0] == 0.0
    # NB2 with alpha = 1: P(0) = 1 / (1 + mu)
    assert p_at_least_one([3.0], alpha=1.0)[0] == pytest.approx(0.75)
    # overdispersion makes "at least one" less likely at the same mean
    assert p_at_least_one([2.0], alpha=0.5)[0] < p_at_least_one([2.0])[0]


def test_publish_suppresses_small_cells_and_ranking_skips_them():
    events = pd.Series({"cell_0_0": 0.0, "cell_0_1": 4.0, "cell_1_0": 5.0, "cell_1_1": 12.0})
    table = expected_counts(forecast([9.0, 0.5, 0.2, 0.4]))
    published = publish(table, events, k=5)
    small = published["series_id"].isin(["cell_0_0", "cell_0_1"])
    assert published.loc[small, "suppressed"].all()
    assert published.loc[small, ["expected_count", "p_at_least_one"]].isna().all(axis=None)
    # exactly k events is published
    assert not published.loc[published["series_id"] == "cell_1_0", "suppressed"].any()
    ranking = published_ranking(published, top_k=5)
    # cell_0_0 had the highest forecast but is suppressed: it must not appear, nor leave a gap
    assert set(ranking["series_id"]) == {"cell_1_0", "cell_1_1"}
    first = ranking[ranking["period"] == ranking["period"].min()]
    assert first["series_id"].tolist() == ["cell_1_1", "cell_1_0"]
    assert first["rank"].tolist() == [1, 2]
    for frame in (published, ranking):
        assert_no_raw_coordinates(frame)


def test_publish_merge_pools_blocks_and_recomputes_probability():
    events = pd.Series({"cell_0_0": 1.0, "cell_0_1": 2.0, "cell_1_0": 3.0, "cell_1_1": 10.0})
    table = expected_counts(forecast([0.1, 0.2, 0.3, 0.4], periods=1))
    merged = publish(table, events, k=5, mode="merge")
    # one small cell pools its whole 2x2 block; the block has 16 events >= k: published
    assert len(merged) == 1 and merged["merged"].all() and not merged["suppressed"].any()
    assert merged["expected_count"].iloc[0] == pytest.approx(1.0)
    assert merged["p_at_least_one"].iloc[0] == pytest.approx(1 - np.exp(-1.0))


def test_evaluation_metrics_hand_case():
    times = pd.date_range("2021-01-01", periods=2, freq="D")
    scored = pd.DataFrame(
        {
            "series_id": IDS * 2,
            "timestamp": np.repeat(times, 4),
            "yhat": [0.9, 0.1, 0.5, 0.2, 0.1, 0.8, 0.3, 0.2],
            "value": [1.0, 0.0, 0.0, 1.0, 0.0, 2.0, 0.0, 0.0],
        }
    )
    m = evaluation_metrics(scored, alpha=0.0, areas=(0.25,))
    # day 1: K=2, top-2 predicted {cell_0_0, cell_1_0}: 1 hit (rank 1) -> AP 0.5
    # day 2: K=1, top-1 cell_0_1: hit -> AP 1. Recall = 2/3, MAP = 0.75
    assert m["recall_at_k"] == pytest.approx(2 / 3)
    assert m["map_at_k"] == pytest.approx(0.75)
    # PAI at 25% (one cell): day 1 captures 1/2 of incidents -> 2; day 2 all -> 4; mean 3
    assert m["pai_25pct"] == pytest.approx(3.0)
    assert 0 <= m["brier_p_at_least_one"] <= 1


def _context(values: pd.DataFrame, mu: list[float], k: int = 5) -> DecisionContext:
    ds = SeriesDataset(values, "D", name="toy")
    fc = forecast(mu)
    scored = fc.assign(timestamp=fc["timestamp"] - pd.Timedelta("2D"), origin=0)
    scored = scored.merge(values, on=["series_id", "timestamp"])
    return DecisionContext(ds, fc, scored, None, {"k": k, "top_k": 3}, values["timestamp"].max())


def test_hotspots_decision_outputs():
    values = history([0.0, 1.0, 3.0, 2.0])  # 4-day totals: 0, 4, 12, 8
    out = hotspots_decision(_context(values, [5.0, 0.5, 0.2, 0.4]))
    assert set(out.tables) == {"hotspot_forecast", "hotspot_ranking"}
    assert set(out.figures) == {"hotspot_map", "calibration"}
    published = out.tables["hotspot_forecast"]
    hidden = published[published["series_id"].isin(["cell_0_0", "cell_0_1"])]
    assert hidden["suppressed"].all() and hidden["expected_count"].isna().all()
    assert set(out.tables["hotspot_ranking"]["series_id"]) == {"cell_1_0", "cell_1_1"}
    assert out.metrics["n_cells_suppressed"] == 2.0
    assert {"recall_at_k", "map_at_k", "pai_5pct", "poisson_deviance"} <= set(out.metrics)
    bad = _context(values, [1.0, 1.0, 1.0, 1.0])
    bad.params = {"kk": 1}
    with pytest.raises(ValueError, match="unknown params"):
        hotspots_decision(bad)


# ---------------------------------------------------------------------- job end to end
def test_train_job_with_hotspots_decision(tmp_path, monkeypatch):
    """Tiny incidents job on the bundled Chicago slice: models, decision, MLflow artifacts."""
    from citybrain_ml.jobs import run_train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    small_glm = {
        "windows": [24, 168],
        "neighbour_windows": [24],
        "profile_spans": [7],
        "max_train_rows": 20000,
    }
    cfg = JobConfig.model_validate(
        {
            "name": "incidents_tiny",
            "data": {"dataset": "chicago_accident_grid", "root": str(REPO / "data_samples")},
            "horizon": 1,
            "levels": [],
            "models": [
                {"type": "kde_hotspot", "params": {"bandwidth": 0.5, "window": 336}},
                {"type": "glm_poisson", "params": small_glm},
            ],
            "evaluation": {"method": "holdout", "test_ratio": 0.05, "plot_series": 2},
            "select_metric": "rmse",
            "tracking": {"experiment": "incidents-test", "log_models": False},
            "decisions": [{"type": "hotspots", "params": {"k": 5, "count_method": "nonzero"}}],
            "output": {"dir": str(tmp_path / "out"), "formats": ["csv"]},
        }
    )
    result = run_train(cfg, progress=False)
    out_dir = tmp_path / "out" / "incidents_tiny"
    published = pd.read_csv(out_dir / "hotspot_forecast.csv")
    ranking = pd.read_csv(out_dir / "hotspot_ranking.csv")
    assert_no_raw_coordinates(published, "hotspot_forecast.csv")
    assert published["suppressed"].any() and not published["suppressed"].all()
    assert published.loc[published["suppressed"], "expected_count"].isna().all()
    assert not set(ranking["series_id"]) & set(published.loc[published["suppressed"], "series_id"])

    client = mlflow.MlflowClient()
    run = client.get_run(result.parent_run_id)
    assert "hotspots.recall_at_k" in run.data.metrics
    assert "hotspots.pai_5pct" in run.data.metrics
    logged = {a.path for a in client.list_artifacts(result.parent_run_id, "decisions/hotspots")}
    expected = {"hotspot_map.png", "calibration.png", "hotspot_forecast.csv", "hotspot_ranking.csv"}
    assert {f"decisions/hotspots/{name}" for name in expected} <= logged


# ---------------------------------------------------------------------- masks
def test_scoring_mask_history_uses_only_data_before_the_test():
    from citybrain_ml.optimize.hotspots import scoring_mask

    values = history([0.0, 0.0, 1.0, 2.0], days=4)
    # cell_0_1 has its only event in the test period: it must not join the mask
    values.loc[
        (values["series_id"] == "cell_0_1") & (values["timestamp"] == "2021-01-04"), "value"
    ] = 1
    ds = SeriesDataset(values, "D", name="toy")
    scored = values[values["timestamp"] >= "2021-01-04"].assign(yhat=1.0)
    mask = scoring_mask(scored, ds)
    assert mask.kind == "history" and mask.cells == ["cell_1_0", "cell_1_1"]
    assert mask.description.startswith("history: 2 of 4 cells")
    assert scoring_mask(scored, ds, "none").cells == IDS
    sensors = pd.DataFrame({"series_id": IDS, "in_mask": [True, True, False, False]})
    area = SeriesDataset(values, "D", sensors=sensors, name="toy")
    assert scoring_mask(scored, area).cells == ["cell_0_0", "cell_0_1"]  # auto: the area
    area.extras["mask_kind"] = "history"  # an events grid's in_mask saw the test period
    assert scoring_mask(scored, area).kind == "history"
    with pytest.raises(ValueError, match="mask must be one of"):
        scoring_mask(scored, ds, "box")


def test_hotspot_metrics_are_on_the_mask_by_default():
    values = history([0.0, 1.0, 3.0, 2.0])
    ctx = _context(values, [5.0, 0.5, 0.2, 0.4])
    out = hotspots_decision(ctx)
    # cell_0_0 never had an event: 3 of 4 cells scored, and the run says so
    assert out.metrics["n_cells_scored"] == 3 and out.metrics["n_cells_grid"] == 4
    assert out.tags["mask"].startswith("history: 3 of 4 cells")
    ctx.params = {"use_mask": False}  # the older spelling still works
    assert hotspots_decision(ctx).metrics["n_cells_scored"] == 4


# ---------------------------------------------------------------------- events job end to end
def _events_job(tmp_path, privacy_k=None) -> JobConfig:
    root = REPO / "data_samples"
    return JobConfig.model_validate(
        {
            "name": "events_tiny",
            "data": {
                "dataset": "events",
                "root": str(root),
                "options": {
                    "path": "incidents/chicago_crime_2016_2017/chicago_crime_2016_2017.csv.gz",
                    "mapping": {
                        "time": "datetime",
                        "latitude": "latitude",
                        "longitude": "longitude",
                        "category": "primary_type",
                    },
                    "categories": ["THEFT", "BATTERY"],
                    "time_zone": "America/Chicago",
                    "cell_size_m": 3000,
                    "freq": "h",
                },
            },
            "horizon": 1,
            "levels": [],
            "models": [
                {"type": "kde_hotspot", "params": {"bandwidth_m": 3000, "window": 24}},
                {
                    "type": "glm_poisson",
                    "params": {"windows": [6, 24], "neighbour_windows": [24], "profile": "none"},
                },
            ],
            "evaluation": {"method": "holdout", "test_ratio": 0.2, "plot_series": 2},
            "select_metric": "rmse",
            "tracking": {"experiment": "events-test", "log_models": privacy_k is None},
            "decisions": [{"type": "hotspots", "params": {"k": 3}}],
            "output": {"dir": str(tmp_path / "out"), "formats": ["csv"], "privacy_k": privacy_k},
        }
    )


def test_train_job_on_raw_events_records_mask_and_count_cards(tmp_path, monkeypatch):
    from citybrain_ml.jobs import run_train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = run_train(_events_job(tmp_path, privacy_k=5), progress=False)
    client = mlflow.MlflowClient()
    parent = client.get_run(result.parent_run_id)
    assert parent.data.tags["hotspots.mask"].startswith("history: ")
    assert (
        parent.data.metrics["hotspots.n_cells_scored"]
        < parent.data.metrics["hotspots.n_cells_grid"]
    )
    glm = next(o for o in result.outcomes if o.label == "glm_poisson")
    run = client.get_run(glm.run_id)
    assert {"count.poisson_deviance", "count.recall_at_k", "count.pai_5pct"} <= set(
        run.data.metrics
    )
    kde = client.get_run(next(o for o in result.outcomes if o.label == "kde_hotspot").run_id)
    assert kde.data.params["model.cell_size_m"] == "3000.0"  # the job passed the grid's size
    card = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/model_card.md")
    assert "Poisson deviance" in card and "PAI at 5% of the area" in card
    per_step = card.split("### Metrics per horizon step")[1].split("###")[0]
    assert "mae" in per_step and "mape" not in per_step and "history: " in card

    # a k-suppressed run logs no model: register refuses before creating anything
    from citybrain_ml.tracking.registry import RegistryError, register

    with pytest.raises(RegistryError, match="k-suppression"):
        register(glm.run_id, "events-tiny")
    assert client.search_registered_models() == []


def test_register_as_with_privacy_k_is_a_config_error(tmp_path):
    cfg = _events_job(tmp_path, privacy_k=5).model_dump()
    cfg["tracking"]["register_as"] = "events-tiny"
    with pytest.raises(ValueError, match="register_as cannot be combined with output.privacy_k"):
        JobConfig.model_validate(cfg)


def test_register_refuses_runs_without_a_model_and_accepts_logged_models(tmp_path):
    from citybrain_ml.models import make_model
    from citybrain_ml.tracking.pyfunc import log_forecaster
    from citybrain_ml.tracking.registry import RegistryError, register
    from citybrain_ml.tracking.runs import configure_tracking

    configure_tracking(f"sqlite:///{tmp_path / 'mlflow.db'}", "register-test")
    try:
        with mlflow.start_run() as empty:
            mlflow.log_dict({"output": {"privacy_k": None}}, "config.json")
        with pytest.raises(RegistryError, match="no 'model' artifact"):
            register(empty.info.run_id, "nothing")
        client = mlflow.MlflowClient()
        assert client.search_registered_models() == []
        values = history([1.0, 2.0, 3.0, 4.0], days=30)
        model = make_model("last_value", horizon=1, calibration_steps=0).fit(values)
        with mlflow.start_run() as run:
            log_forecaster(model, values, name="model", levels=[])
        assert register(run.info.run_id, "counts") == "1"
    finally:
        mlflow.set_tracking_uri(None)
