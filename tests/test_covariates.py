"""Future covariates (a weather forecast) through evaluation, the train job, the pyfunc and
batch scoring -- and every run says whether its forecasts used them."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLES

from citybrain_ml.config import JobConfig
from citybrain_ml.data.covariates import read_future_covariates, split_future
from citybrain_ml.data.validation import DataValidationError
from citybrain_ml.evaluation.backtest import backtest, evaluate_protocol
from citybrain_ml.models.lightgbm import LightGBMForecaster
from citybrain_ml.tracking.pyfunc import ForecasterPyfunc

FAST = dict(n_estimators=40, num_leaves=15, min_child_samples=10, n_jobs=1)
WEATHER = ["TEMP", "PRES", "DEWP", "RAIN", "WSPM", "wind_u", "wind_v"]


@pytest.fixture(scope="module")
def windy() -> pd.DataFrame:
    """Target driven by the wind at the same hour: only future wind can explain it."""
    rng = np.random.default_rng(11)
    ts = pd.date_range("2024-01-01", periods=24 * 30, freq="h")
    frames = []
    for i in range(2):
        wind = rng.normal(0, 1, len(ts))
        value = 50 + 20 * wind + rng.normal(0, 1, len(ts))
        frames.append(
            pd.DataFrame({"series_id": f"s{i}", "timestamp": ts, "value": value, "wind": wind})
        )
    return pd.concat(frames, ignore_index=True)


def _mae(fc: pd.DataFrame, truth: pd.DataFrame) -> float:
    m = fc.drop(columns="value", errors="ignore").merge(truth, on=["series_id", "timestamp"])
    return float((m["yhat"] - m["value"]).abs().mean())


# ---------------------------------------------------------------------- splitting and files
def test_split_future_defaults_to_last_observed_value(windy):
    frame = windy.copy()
    late = frame["timestamp"] > "2024-01-29 23:00"
    frame.loc[late, "value"] = np.nan
    history, future, origin = split_future(frame)
    assert origin == pd.Timestamp("2024-01-29 23:00")
    assert history["timestamp"].max() == origin and future["timestamp"].min() > origin
    assert list(future.columns) == ["series_id", "timestamp", "wind"] and len(future) == 48
    # an explicit origin wins; a frame without covariates has no future part
    _, fut, origin = split_future(frame, "2024-01-29 12:00")
    assert origin == pd.Timestamp("2024-01-29 12:00") and len(fut) == 2 * 35
    _, none, _ = split_future(frame.drop(columns="wind"))
    assert none is None


def test_future_covariate_file_errors_name_file_and_row(tmp_path):
    path = tmp_path / "weather.csv"
    path.write_text("series_id,timestamp,wind\ns0,2024-01-01 00:00,1.0\ns0,not a time,2.0\n")
    with pytest.raises(DataValidationError, match=r"weather.csv: column 'timestamp', row 3"):
        read_future_covariates(path)
    path.write_text("series_id,timestamp,wind\ns0,2024-01-01,1.0\ns0,2024-01-01,2.0\n")
    with pytest.raises(DataValidationError, match="row 3: duplicate"):
        read_future_covariates(path)
    path.write_text("series_id,wind\ns0,1.0\n")
    with pytest.raises(DataValidationError, match=r"lack column\(s\) \['timestamp'\]"):
        read_future_covariates(path)


# ---------------------------------------------------------------------- evaluation
def test_evaluation_uses_observed_covariates_only_when_asked(windy):
    model = LightGBMForecaster(horizon=3, future_covariates=("wind",), **FAST)
    kw = dict(test_start="2024-01-25", horizon=3, stride=5)
    history = evaluate_protocol(model, windy, **kw)
    observed = evaluate_protocol(model, windy, future_covariates="observed", **kw)
    assert set(history.forecasts["covariate_mode"]) == {"history"}
    assert set(observed.forecasts["covariate_mode"]) == {"future"}
    assert _mae(observed.forecasts, windy) < 0.5 * _mae(history.forecasts, windy)
    with pytest.raises(ValueError, match="future_covariates must be one of"):
        evaluate_protocol(model, windy, future_covariates="forecast", **kw)


def test_backtest_is_history_only_by_default(windy):
    model = LightGBMForecaster(horizon=2, future_covariates=("wind",), calibration_steps=0, **FAST)
    kw = dict(horizon=2, n_windows=2, step=24, progress=False)
    plain = backtest(model, windy, **kw)
    oracle = backtest(model, windy, future_covariates="observed", **kw)
    assert set(plain.forecasts["covariate_mode"]) == {"history"}
    assert set(oracle.forecasts["covariate_mode"]) == {"future"}
    assert oracle.metrics["mae"].mean() < 0.5 * plain.metrics["mae"].mean()


def test_pyfunc_reads_future_rows_of_the_request(windy):
    model = LightGBMForecaster(horizon=3, future_covariates=("wind",), calibration_steps=0, **FAST)
    model.fit(windy[windy["timestamp"] < "2024-01-25"])
    wrapper = ForecasterPyfunc()
    wrapper.model = model
    request = windy[windy["timestamp"] <= "2024-01-26 03:00"].copy()
    request.loc[request["timestamp"] > "2024-01-26 00:00", "value"] = np.nan
    with_weather = wrapper.predict(None, request, params={"horizon": 3})
    assert set(with_weather["covariate_mode"]) == {"future"}
    assert with_weather["timestamp"].min() == pd.Timestamp("2024-01-26 01:00")
    no_weather = wrapper.predict(None, request[request["value"].notna()], params={"horizon": 3})
    assert set(no_weather["covariate_mode"]) == {"history"}
    assert _mae(with_weather, windy) < _mae(no_weather, windy)


# ---------------------------------------------------------------------- job + batch scoring
def _air_job(tmp, future_file=None) -> JobConfig:
    lgbm = {
        "type": "lightgbm",
        "params": {
            "strategy": "pooled",
            "lags": [1, 2, 24],
            "rolling_windows": [6],
            "future_covariates": WEATHER,
            "calibration_steps": 24,
            **FAST,
        },
    }
    return JobConfig.model_validate(
        {
            "name": "air_weather",
            "data": {
                "dataset": "beijing_multisite",
                "root": str(SAMPLES),
                "future_covariates": future_file,
            },
            "horizon": 6,
            "levels": [90],
            "models": [lgbm],
            "evaluation": {
                "method": "holdout",
                "test_start": "2016-03-10",
                "stride": 6,
                "future_covariates": "observed",
            },
            "tracking": {"experiment": "covariate-tests"},
            "output": {"dir": str(tmp / "outputs")},
        }
    )


def test_job_and_batch_scoring_with_a_weather_forecast(tmp_path, monkeypatch):
    from citybrain_ml.data.air import load_beijing_multisite
    from citybrain_ml.jobs import run_train
    from citybrain_ml.scoring import run_forecast

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    values = load_beijing_multisite(SAMPLES).values
    end = values["timestamp"].max()
    # "forecast weather" for the 6 hours after the sample ends: the last day's weather again
    last_day = values[values["timestamp"] > end - pd.Timedelta(hours=6)]
    forecast_weather = last_day[["series_id", "timestamp", *WEATHER]].assign(
        timestamp=lambda f: f["timestamp"] + pd.Timedelta(hours=6)
    )
    weather_file = tmp_path / "weather_forecast.csv"
    forecast_weather.to_csv(weather_file, index=False)

    result = run_train(_air_job(tmp_path, str(weather_file)), progress=False)
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(result.outcomes[0].run_id)
    assert run.data.tags["evaluation_covariates"] == "observed"
    assert run.data.tags["evaluation_covariate_mode"] == "future"
    assert run.data.tags["forecast_covariate_mode"] == "future"
    assert set(result.outcomes[0].forecast["covariate_mode"]) == {"future"}

    # batch scoring: the same weather forecast travels as rows after the origin
    request = pd.concat([values, forecast_weather], ignore_index=True)
    path = tmp_path / "request.csv"
    request.to_csv(path, index=False)
    model_uri = f"runs:/{result.outcomes[0].run_id}/model"
    out = run_forecast(model_uri, path, out_dir=tmp_path / "scored", name="air", levels=[90])
    manifest = json.loads((out.folder / "manifest.json").read_text())
    assert manifest["as_of"] == str(end) and manifest["covariate_mode"] == "future"
    assert manifest["future_covariate_rows"] == len(forecast_weather)
    scored = pd.read_parquet(out.folder / "forecast.parquet")
    assert scored["timestamp"].min() == end + pd.Timedelta(hours=1)
    # without the weather rows the same model still forecasts, from history alone
    values.to_csv(path, index=False)
    plain = run_forecast(model_uri, path, out_dir=tmp_path / "plain", name="air", levels=[90])
    assert json.loads((plain.folder / "manifest.json").read_text())["covariate_mode"] == "history"


def test_batch_scoring_runs_air_alerts_calibrated_on_past_forecasts(tmp_path, monkeypatch):
    from conftest import REPO

    from citybrain_ml.config import load_config
    from citybrain_ml.data.air import load_beijing_multisite
    from citybrain_ml.jobs import run_train
    from citybrain_ml.scoring import past_forecasts, run_forecast

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = REPO / "configs" / "air_quickstart.yaml"
    cfg = load_config(config)
    cfg = cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update={"root": str(SAMPLES)}),
            "models": [m for m in cfg.models if m.type == "lightgbm"],
            "output": cfg.output.model_copy(update={"dir": str(tmp_path / "out")}),
            "decisions": [],
        }
    )
    result = run_train(cfg, progress=False)
    model = result.outcomes[0].model
    values = load_beijing_multisite(SAMPLES, **cfg.data.options).values
    as_of = pd.Timestamp("2016-03-10 23:00")
    history = values[values["timestamp"] <= as_of]
    past = past_forecasts(model, history, as_of, max_days=5)
    # origins at the same hour on earlier days, every target already observed by as_of
    assert set(past["origin"]) == {as_of - pd.Timedelta(days=d) for d in range(1, 6)}
    assert past["timestamp"].max() <= as_of and past["value"].notna().all()

    path = tmp_path / "history.csv"
    history.to_csv(path, index=False)
    run = run_forecast(
        f"runs:/{result.outcomes[0].run_id}/model",
        path,
        out_dir=tmp_path / "scored",
        name="air",
        levels=[90],
        job_config=config,
    )
    alerts = pd.read_csv(run.folder / "air_alerts.csv")
    assert set(alerts["station"]) == {"Aotizhongxin", "Dongsi"}
    assert "primary_pollutant" in alerts.columns  # the quickstart forecasts four pollutants
    assert alerts["probability"].between(0, 1).all()
    assert (run.folder / "air_response_plan.csv").is_file()


@pytest.mark.parametrize("name", ["last_value", "seasonal_naive", "sarimax", "ets"])
def test_observed_covariates_are_ignored_by_models_that_do_not_read_them(windy, name):
    from citybrain_ml.models import make_model

    model = make_model(name, horizon=2, calibration_steps=0)
    kw = dict(test_start="2024-01-28", horizon=2, stride=12)
    plain = evaluate_protocol(model, windy, **kw)
    observed = evaluate_protocol(model, windy, future_covariates="observed", **kw)
    pd.testing.assert_frame_equal(plain.forecasts, observed.forecasts)


def test_missing_weather_file_fails_before_any_run(tmp_path, monkeypatch):
    from citybrain_ml.jobs import run_train

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(FileNotFoundError, match="no_such_weather.csv"):
        run_train(_air_job(tmp_path, str(tmp_path / "no_such_weather.csv")), progress=False)
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert client.search_runs(experiments) == []
