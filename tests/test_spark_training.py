"""Many models on Spark equal one process; the logged ensemble scores as a pyfunc; global
models train on a deterministic, recorded sample of whole series."""

from __future__ import annotations

import warnings

import mlflow
import numpy as np
import pandas as pd
import pytest

from citybrain_ml.models.baselines import HistoricalAverage
from citybrain_ml.models.per_series import PerSeriesModel
from citybrain_ml.models.statistical import ETSForecaster
from tests.conftest import make_series

pytest.importorskip("pyspark")


@pytest.fixture(scope="module")
def panel():
    # 4 series x 8 days hourly; series of different lengths
    df = make_series(n_series=4, n_steps=24 * 8, seed=3)
    return df[~((df["series_id"] == "s3") & (df["timestamp"] < "2024-01-03"))].reset_index(
        drop=True
    )


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spark-training")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("spark-training", artifact_location=(tmp / "art").as_uri())
    mlflow.set_experiment(experiment_id=exp)
    yield uri
    mp.undo()


def test_many_models_equal_one_process_and_log_as_one_pyfunc(spark, panel, mlflow_store):
    from citybrain_ml.spark.training import fit_many_models
    from citybrain_ml.tracking import load_model, log_model

    sdf = spark.createDataFrame(panel, "series_id string, timestamp timestamp_ntz, value double")
    template = ETSForecaster(deseasonalize="day", n_jobs=1, horizon=6, calibration_steps=24)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = PerSeriesModel(template).fit(panel)
        many = fit_many_models(sdf, template)
    assert many.freq_ == local.freq_ == "h"
    assert sorted(many.models_) == ["s0", "s1", "s2", "s3"]
    assert set(many.fit_seconds_) == set(many.models_) and not many.fit_errors_
    for sid, m in many.models_.items():
        np.testing.assert_array_equal(m.params_[sid], local.models_[sid].params_[sid])
    expected = local.predict(6, history_df=panel, levels=[80])
    got = many.predict(6, history_df=panel, levels=[80])
    pd.testing.assert_frame_equal(got, expected)
    # each series is its own model: the same as fitting the template on that series alone
    alone = template.clone().fit(panel[panel["series_id"] == "s3"], freq="h")
    pd.testing.assert_frame_equal(
        got[got["series_id"] == "s3"].reset_index(drop=True),
        alone.predict(6, levels=[80]),
        check_dtype=False,
    )
    with mlflow.start_run():
        info = log_model(many, name="many")
    pyfunc = mlflow.pyfunc.load_model(info.model_uri)
    scored = pyfunc.predict(panel, params={"horizon": 6, "levels": "80"})
    pd.testing.assert_frame_equal(scored, expected, check_dtype=False)
    assert isinstance(load_model(info.model_uri), PerSeriesModel)


def test_baseline_many_models_and_unseen_series(spark, panel):
    from citybrain_ml.spark.training import fit_many_models

    sdf = spark.createDataFrame(panel)
    template = HistoricalAverage(period="day", horizon=4, calibration_steps=0)
    many = fit_many_models(sdf.where("series_id != 's2'"), template, freq="h")
    local = PerSeriesModel(template).fit(panel[panel["series_id"] != "s2"], freq="h")
    with pytest.warns(UserWarning, match="no model of their own"):
        got = many.predict(4, history_df=panel)
    assert set(got["series_id"]) == {"s0", "s1", "s3"}
    pd.testing.assert_frame_equal(
        got, local.predict(4, history_df=panel[panel["series_id"] != "s2"])
    )


def test_training_frame_samples_whole_series_deterministically(spark, mlflow_store):
    from citybrain_ml.spark.training import fit_global, training_frame

    df = make_series(n_series=12, n_steps=48, seed=1)
    df = df[~((df["series_id"] == "s5") & (df.index % 2 == 0))]  # a shorter series
    sdf = spark.createDataFrame(df).repartition(3)
    full, sample = training_frame(sdf)
    assert not sample.sampled and len(full) == len(df) == sample.total_rows
    part, sample = training_frame(sdf, max_rows=200, seed=7)
    again, same = training_frame(sdf.repartition(2), max_rows=200, seed=7)
    pd.testing.assert_frame_equal(part, again)
    pd.testing.assert_frame_equal(sample.series, same.series)
    assert sample.sampled and sample.rows == len(part) <= 200 and sample.n_series == 4
    # whole series only, with every row of each
    counts = part.groupby("series_id").size()
    full_counts = df.groupby("series_id").size()
    assert (counts == full_counts[counts.index]).all()
    assert counts.to_dict() == dict(
        zip(sample.series["series_id"], sample.series["rows"], strict=True)
    )
    other, _ = training_frame(sdf, max_rows=200, seed=8)
    assert set(other["series_id"]) != set(part["series_id"])

    with mlflow.start_run() as run:
        model, sample = fit_global(
            HistoricalAverage(period="day", horizon=3, calibration_steps=0),
            sdf,
            max_rows=200,
            seed=7,
        )
    assert set(model.series_ids_) == set(sample.series["series_id"])
    client = mlflow.MlflowClient()
    params = client.get_run(run.info.run_id).data.params
    assert params["training_sample.series"] == "4" and params["training_sample.sampled"] == "True"
    assert params["training_sample.total_rows"] == str(len(df))
    path = client.download_artifacts(run.info.run_id, "training_sample/series.csv")
    pd.testing.assert_frame_equal(pd.read_csv(path), sample.series)
