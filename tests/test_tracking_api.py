"""Public MLflow API (``citybrain_ml.tracking.log_model`` / ``load_model``) and the quiet,
interval-tolerant ``citybrain forecast`` a cron job runs."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from citybrain_ml.cli.main import app
from citybrain_ml.data import load_sz_taxi
from citybrain_ml.models.base import ModelError
from citybrain_ml.models.baselines import LastValue
from citybrain_ml.tracking import load_model, log_model

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """An uncalibrated and a calibrated model logged to a private store; yields their URIs."""
    tmp = tmp_path_factory.mktemp("tracking")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    # artifacts beside the store, not in a ./mlruns of the working directory
    exp = mlflow.create_experiment("tracking-api", artifact_location=(tmp / "art").as_uri())
    mlflow.set_experiment(experiment_id=exp)
    history = load_sz_taxi(root=REPO / "data_samples").values
    point = LastValue(horizon=4, calibration_steps=0).fit(history)
    calibrated = LastValue(horizon=4).fit(history)
    uris = {}
    with mlflow.start_run() as run:
        log_model(point, name="point")
        log_model(calibrated, name="calibrated", code="package")
        uris = {k: f"runs:/{run.info.run_id}/{k}" for k in ("point", "calibrated")}
    path = tmp / "history.parquet"
    history.to_parquet(path)
    yield uri, uris, point, calibrated, history, path, run.info.run_id
    mp.undo()


def test_log_and_load_round_trip(logged):
    _, uris, point, calibrated, history, _, _ = logged
    loaded = load_model(uris["calibrated"])
    assert isinstance(loaded, LastValue)
    pd.testing.assert_frame_equal(
        loaded.predict(4, history_df=history, levels=[90]),
        calibrated.predict(4, history_df=history, levels=[90]),
    )
    pyfunc = mlflow.pyfunc.load_model(uris["point"])
    fc = pyfunc.predict(history, params={"horizon": 2})
    # MLflow's schema enforcement hands timestamps over in nanoseconds
    pd.testing.assert_frame_equal(fc, point.predict(2, history_df=history), check_dtype=False)


def test_code_travels_as_pinned_package_or_source(logged):
    _, uris, _, _, _, _, run_id = logged
    from citybrain_ml import __version__

    tags = mlflow.MlflowClient().get_run(run_id).data.tags
    # a development checkout has no release to pin: its source travels with the model
    assert tags["point.code"] == "source" and tags["calibrated.code"] == "package"
    package = Path(mlflow.artifacts.download_artifacts(uris["calibrated"]))
    assert f"citybrain_ml=={__version__}" in (package / "requirements.txt").read_text()
    assert not (package / "code").exists()
    source = Path(mlflow.artifacts.download_artifacts(uris["point"]))
    assert (source / "code" / "citybrain_ml" / "models" / "base.py").is_file()


def test_load_model_errors_are_clear(logged, tmp_path):
    with pytest.raises(ModelError, match="cannot load model"):
        load_model("runs:/0123456789abcdef/nothing")
    with pytest.raises(ValueError, match="code must be"):
        log_model(logged[2], code="wheel")


def _forecast_args(logged, model_uri, out: Path, *extra) -> list[str]:
    uri, _, _, _, _, path, _ = logged
    return [
        "forecast",
        "--model",
        model_uri,
        "--data",
        str(path),
        "--out",
        str(out),
        "--name",
        "sz",
        "--tracking-uri",
        uri,
        *extra,
    ]


def test_uncalibrated_model_forecasts_with_a_warning(logged, tmp_path):
    _, uris, _, _, history, _, _ = logged
    result = runner.invoke(app, _forecast_args(logged, uris["point"], tmp_path))
    assert result.exit_code == 0, result.output
    assert "no calibrated intervals" in result.output  # on stderr, yellow
    folder = next((tmp_path / "sz").iterdir())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert any("levels 80,90 were dropped" in w for w in manifest["warnings"])
    assert manifest["params"]["levels"] == ""
    fc = pd.read_parquet(folder / "forecast.parquet")
    assert not [c for c in fc.columns if c.startswith("yhat_lo")]
    assert fc["series_id"].nunique() == history["series_id"].nunique()


def test_calibrated_model_keeps_intervals_and_no_warning(logged, tmp_path):
    _, uris, _, _, _, _, _ = logged
    result = runner.invoke(app, _forecast_args(logged, uris["calibrated"], tmp_path))
    assert result.exit_code == 0, result.output
    folder = next((tmp_path / "sz").iterdir())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["warnings"] == []
    assert {"yhat_lo_80", "yhat_hi_90"} <= set(pd.read_parquet(folder / "forecast.parquet"))


def test_cron_output_is_one_line(logged, tmp_path, monkeypatch):
    _, uris, _, _, _, _, _ = logged
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    result = runner.invoke(app, _forecast_args(logged, uris["calibrated"], tmp_path))
    assert result.exit_code == 0, result.output
    assert "Downloading artifacts" not in result.output
    assert result.output.strip().count("\n") == 0, result.output
    import os

    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
