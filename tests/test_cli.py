"""The CLI end to end: the quickstart job, error handling, exit codes, batch forecasts."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from citybrain_ml.cli.main import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _quickstart_config(tmp: Path, **overrides) -> Path:
    cfg = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    cfg["data"]["root"] = str(REPO / "data_samples")
    cfg["output"] = {"dir": str(tmp / "outputs")}
    cfg.update(overrides)
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """Run the quickstart job once through the CLI with a private MLflow store."""
    tmp = tmp_path_factory.mktemp("quickstart")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    result = runner.invoke(
        app, ["train", "--config", str(_quickstart_config(tmp)), "--no-progress"]
    )
    yield tmp, uri, result
    mp.undo()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("train", "backtest", "forecast", "data"):
        assert cmd in result.output


def test_quickstart_writes_forecasts(quickstart):
    tmp, _, result = quickstart
    assert result.exit_code == 0, result.output
    fc = pd.read_parquet(tmp / "outputs" / "quickstart" / "forecast.parquet")
    assert set(fc["model"]) == {"seasonal_naive", "historical_average", "lightgbm"}
    assert fc["is_best"].any()
    assert {"yhat", "yhat_lo_90", "yhat_hi_90", "horizon_step"} <= set(fc.columns)
    csv = pd.read_csv(tmp / "outputs" / "quickstart" / "forecast.csv")
    assert len(csv) == len(fc)


def test_quickstart_logs_runs_with_metrics_and_plots(quickstart):
    _, uri, result = quickstart
    assert result.exit_code == 0, result.output
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("citybrain-quickstart")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(children) == 3
    lgbm = next(r for r in children if r.data.tags["model_type"] == "lightgbm")
    assert {"mae_h1", "rmse_h4", "mae_mean"} <= set(lgbm.data.metrics)
    assert lgbm.data.tags["lineage.dataset_sha256"]
    assert lgbm.data.params["seed"] == "0"
    artifacts = {a.path for a in client.list_artifacts(lgbm.info.run_id, "plots")}
    assert "plots/forecast_vs_actual.png" in artifacts


def test_forecast_from_logged_model_is_idempotent(quickstart, tmp_path):
    tmp, uri, result = quickstart
    assert result.exit_code == 0, result.output
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("citybrain-quickstart")
    run = client.search_runs([exp.experiment_id], "tags.model_type = 'lightgbm'")[0]
    from citybrain_ml.data import load_dataset

    history = load_dataset("sz_taxi", root=str(REPO / "data_samples")).values
    data = tmp_path / "history.parquet"
    history.to_parquet(data)
    args = [
        "forecast",
        "--model",
        f"runs:/{run.info.run_id}/model",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "out"),
        "--name",
        "sz",
        "--tracking-uri",
        uri,
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    folder = next((tmp_path / "out" / "sz").iterdir())
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert before == {p.name: p.read_bytes() for p in folder.iterdir()}
    fc = pd.read_parquet(folder / "forecast.parquet")
    assert fc["series_id"].nunique() == history["series_id"].nunique()


def test_bad_config_is_one_line_exit_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nhorizon: 0\ndata: {dataset: sz_taxi}\nmodels: [{type: lightgbm}]\n")
    result = runner.invoke(app, ["train", "--config", str(path)])
    assert result.exit_code == 2
    assert "horizon" in result.output and "Traceback" not in result.output


def test_tracking_server_down_fails_before_work(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    result = runner.invoke(
        app, ["train", "--config", str(_quickstart_config(tmp_path)), "--no-progress"]
    )
    assert result.exit_code == 1
    assert "not usable" in result.output
    assert not (tmp_path / "outputs").exists()


def test_data_validate_names_bad_row(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("series_id,timestamp,value\na,2024-01-01 00:00,1\na,2024-01-01 01:00,oops\n")
    result = runner.invoke(app, ["data", "validate", "--path", str(bad)])
    assert result.exit_code == 1
    assert "bad.csv" in result.output and "oops" in result.output


def test_data_validate_ok_on_samples():
    result = runner.invoke(
        app, ["data", "validate", "--dataset", "sz_taxi", "--root", str(REPO / "data_samples")]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok:")
