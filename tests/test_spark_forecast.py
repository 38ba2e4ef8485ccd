"""Distributed batch scoring (``--engine spark``) gives the single-process forecasts, skips
the same series for the same reasons, publishes an auditable ``as_of=`` folder and leaves
nothing behind when the job fails. One local[2] session (conftest ``spark``) for all."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from citybrain_ml.cli.main import app
from citybrain_ml.scoring import audit, run_forecast

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
FAST = dict(n_estimators=20, num_leaves=15, min_child_samples=10, n_jobs=1)


@pytest.fixture(scope="module")
def store(tmp_path_factory, spark):
    """A small LightGBM fitted on the SZ-taxi sample, logged to a private MLflow store, and a
    history with a stale, an hourly, a too-short and an unseen series."""
    from citybrain_ml.data import load_sz_taxi
    from citybrain_ml.models.lightgbm import LightGBMForecaster
    from citybrain_ml.tracking import log_model

    tmp = tmp_path_factory.mktemp("spark_scoring")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("CITYBRAIN_LEDGER_HOME", str(tmp / "anchors"))
    mlflow.set_tracking_uri(uri)
    # an earlier test's active experiment id may not exist in this new store
    exp = mlflow.create_experiment("spark-scoring", artifact_location=(tmp / "art").as_uri())
    mlflow.set_experiment(experiment_id=exp)
    history = load_sz_taxi(root=REPO / "data_samples").values
    model = LightGBMForecaster(horizon=4, calibration_steps=96, **FAST).fit(history)
    with mlflow.start_run():
        model_uri = log_model(model).model_uri
    ids = sorted(history["series_id"].unique())
    end = history["timestamp"].max()
    bad = history[
        ~(history["series_id"].eq(ids[0]) & (history["timestamp"] > end - pd.Timedelta("2h")))
    ]
    bad = bad[~(bad["series_id"].eq(ids[1]) & (bad["timestamp"].dt.minute != 0))]
    short = bad["series_id"].eq(ids[2])
    bad = pd.concat([bad[~short], bad[short].tail(3)])
    unseen = bad[bad["series_id"].eq(ids[3])].assign(
        series_id="road_new", value=lambda d: d.value * 2
    )
    bad = pd.concat([bad, unseen], ignore_index=True)
    path = tmp / "history.parquet"
    bad.to_parquet(path)
    yield {"tmp": tmp, "uri": uri, "model_uri": model_uri, "path": path, "history": bad, "ids": ids}
    mp.undo()


def _rows(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.sort_values(["series_id", "horizon_step"]).reset_index(drop=True)
    return frame.assign(
        series_id=frame["series_id"].astype(str),
        timestamp=pd.to_datetime(frame["timestamp"]).astype("datetime64[ns]"),
        horizon_step=frame["horizon_step"].astype("int64"),
    )


def _assert_same_forecast(local: pd.DataFrame, other: pd.DataFrame) -> None:
    local, other = _rows(local), _rows(other)
    assert list(local.columns) == list(other.columns)
    assert len(local) == len(other) > 0
    pd.testing.assert_frame_equal(
        local[["series_id", "timestamp", "horizon_step"]],
        other[["series_id", "timestamp", "horizon_step"]],
    )
    values = [c for c in local.columns if c.startswith("yhat")]
    assert np.nanmax(np.abs(local[values].to_numpy() - other[values].to_numpy())) <= 1e-9


@pytest.fixture(scope="module")
def local_run(store):
    out = store["tmp"] / "local_out"
    return run_forecast(
        store["model_uri"], store["path"], out, "sz", tracking_uri=store["uri"], levels=[80, 90]
    )


def test_cli_spark_engine_matches_single_process_and_audits(store, local_run, tmp_path):
    args = ["forecast", "--model", store["model_uri"], "--data", str(store["path"])]
    args += ["--out", str(tmp_path), "--name", "sz", "--engine", "spark", "--levels", "80,90"]
    result = runner.invoke(app, args)
    assert result.exit_code == 3, result.output  # partial: same exit code as single process
    assert "partial: skipped 3 series" in result.output
    folder = next(p for p in (tmp_path / "sz").iterdir() if p.name.startswith("as_of="))
    assert folder.name == local_run.folder.name
    # same layout: forecast.parquet / forecast.csv (folders of part files) + manifest.json
    assert {p.name for p in folder.iterdir()} == {
        "forecast.parquet",
        "forecast.csv",
        "manifest.json",
    }
    spark_fc = pd.read_parquet(folder / "forecast.parquet")
    _assert_same_forecast(pd.read_parquet(local_run.folder / "forecast.parquet"), spark_fc)
    csv = pd.concat(pd.read_csv(p) for p in sorted((folder / "forecast.csv").iterdir()))
    _assert_same_forecast(spark_fc, csv.assign(timestamp=pd.to_datetime(csv["timestamp"])))

    local_m = json.loads((local_run.folder / "manifest.json").read_text())
    spark_m = json.loads((folder / "manifest.json").read_text())
    ids = store["ids"]
    assert spark_m["series_skipped"] == local_m["series_skipped"]
    assert "missing recent history" in spark_m["series_skipped"][ids[0]]
    assert "wrong frequency" in spark_m["series_skipped"][ids[1]]
    assert "too little history" in spark_m["series_skipped"][ids[2]]
    for key in (
        "as_of",
        "input_sha256",
        "input_rows",
        "forecast_rows",
        "series_forecast",
        "params",
        "warnings",
        "covariate_mode",
        "future_covariate_rows",
    ):
        assert spark_m[key] == local_m[key], key
    assert spark_m["engine"] == "spark" and spark_m["spark"]["master"] == "local[2]"
    parts = [f for f in spark_m["files"] if f.startswith("forecast.parquet/part-")]
    assert parts and all(f.endswith(".parquet") for f in parts)
    # the model is loaded at most once per Python worker
    assert spark_m["spark"]["model_loads"] <= spark_m["spark"]["python_workers"]

    assert audit(tmp_path / "sz") == []
    ok = runner.invoke(app, ["audit", str(tmp_path / "sz")])
    assert ok.exit_code == 0, ok.output
    # tampering with one part file is caught
    part = folder / parts[0]
    part.write_bytes(part.read_bytes() + b"x")
    assert any("tampered" in p for p in audit(tmp_path / "sz"))


def test_rerun_is_unchanged_and_distributed_function_reads_partitioned_parquet(
    store, local_run, spark, tmp_path
):
    from citybrain_ml.spark import forecast
    from citybrain_ml.spark.forecast import read_history, run_spark_forecast

    # Hive-partitioned input (day=... folders): the partition column is not a covariate
    parted = tmp_path / "history_by_day"
    store["history"].assign(day=store["history"]["timestamp"].dt.strftime("%Y-%m-%d")).to_parquet(
        parted, partition_cols=["day"]
    )
    history = read_history(spark, parted)
    assert "day" not in history.columns
    fc = forecast(history, store["model_uri"], levels=[80, 90], tracking_uri=store["uri"])
    _assert_same_forecast(pd.read_parquet(local_run.folder / "forecast.parquet"), fc.toPandas())

    # publishing twice: byte-identical part files, the second run changes nothing
    kw = dict(tracking_uri=store["uri"], levels=[80, 90], n_buckets=3, csv=False, spark=spark)
    first = run_spark_forecast(store["model_uri"], store["path"], tmp_path / "o", "sz", **kw)
    again = run_spark_forecast(store["model_uri"], store["path"], tmp_path / "o", "sz", **kw)
    assert not first.unchanged and again.unchanged
    assert sorted(first.skipped) == sorted(local_run.skipped)
    assert audit(tmp_path / "o" / "sz") == []


def test_failed_spark_job_leaves_no_partial_as_of_folder(store, spark, tmp_path):
    from citybrain_ml.spark.forecast import SparkJobError, run_spark_forecast

    # one bucket's worker raises (a negative reading, refused as in the single-process job)
    # while the other buckets' tasks write their part files
    bad = store["history"].copy()
    bad.loc[bad.index[-1], "value"] = -5.0
    path = tmp_path / "bad.parquet"
    bad.to_parquet(path)
    with pytest.raises(SparkJobError, match="negative value"):
        run_spark_forecast(
            store["model_uri"],
            path,
            tmp_path,
            "sz",
            tracking_uri=store["uri"],
            n_buckets=4,
            csv=False,
            spark=spark,
        )
    job = tmp_path / "sz"
    assert not [p.name for p in job.iterdir() if "as_of=" in p.name]  # no folder, no staging
    # and nothing is in the ledger either: the next run starts clean
    assert not (tmp_path / ".citybrain-ledger" / "sz.jsonl").exists()


@pytest.mark.parametrize(
    ("rows", "parallelism", "expected"),
    [
        (10, 2, 2),
        (1_500_000, 2, 2),
        (1_500_001, 2, 2),
        (3_000_001, 2, 4),
        (7_676_710, 2, 6),
        (230_000_000, 8, 160),
        (0, 1, 1),
    ],
)
def test_buckets_hold_at_most_rows_per_bucket_in_whole_waves(rows, parallelism, expected):
    from citybrain_ml.spark.forecast import ROWS_PER_BUCKET, bucket_count

    n = bucket_count(rows, parallelism)
    assert n == expected
    assert n % parallelism == 0 and rows / n <= ROWS_PER_BUCKET


def test_workers_fork_from_a_daemon_with_the_scoring_stack_imported(spark):
    def probe(batches):
        import sys

        for _ in batches:
            pass
        loaded = all(m in sys.modules for m in ("citybrain_ml.scoring", "lightgbm", "mlflow"))
        yield pd.DataFrame({"loaded": [loaded]})

    assert spark.conf.get("spark.python.daemon.module") == "citybrain_ml.spark.daemon"
    rows = spark.range(4).repartition(2).mapInPandas(probe, "loaded boolean").collect()
    assert rows and all(r.loaded for r in rows)


def test_explicit_as_of_matches_single_process(store, spark, tmp_path):
    from citybrain_ml.spark import forecast

    as_of = str(store["history"]["timestamp"].max() - pd.Timedelta("1h"))
    local = run_forecast(
        store["model_uri"],
        store["path"],
        tmp_path / "l",
        "sz",
        as_of=as_of,
        tracking_uri=store["uri"],
        levels=[80],
    )
    fc = forecast(
        spark.read.parquet(str(store["path"])),
        store["model_uri"],
        as_of=as_of,
        levels=[80],
        tracking_uri=store["uri"],
    )
    _assert_same_forecast(pd.read_parquet(local.folder / "forecast.parquet"), fc.toPandas())
