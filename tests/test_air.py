"""Air-quality early warning: daily means, exceedance probabilities, alerts, response plan,
LightGBM future-covariate mode, and an end-to-end train job with the ``air_alerts`` decision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, SAMPLES
from scipy.stats import norm

from citybrain_ml.models.lightgbm import LightGBMForecaster
from citybrain_ml.optimize import air_alerts as aa

FAST = dict(n_estimators=40, num_leaves=15, min_child_samples=10, n_jobs=1, calibration_steps=0)


# ---------------------------------------------------------------------- daily means
def _hourly_forecast(origin: str, values, series="s1") -> pd.DataFrame:
    origin = pd.Timestamp(origin)
    steps = np.arange(1, len(values) + 1)
    return pd.DataFrame(
        {
            "series_id": series,
            "timestamp": origin + pd.to_timedelta(steps, unit="h"),
            "horizon_step": steps,
            "yhat": np.asarray(values, dtype=float),
        }
    )


def test_daily_means_from_an_end_of_day_origin():
    values = np.r_[np.full(24, 10.0), np.full(24, 40.0), np.arange(24.0)]
    daily = aa.daily_forecast_means(_hourly_forecast("2024-01-01 23:00", values))
    assert daily["lead_day"].tolist() == [1, 2, 3]
    assert daily["forecast_mean"].tolist() == pytest.approx([10.0, 40.0, 11.5])
    assert daily["date"].tolist() == list(pd.date_range("2024-01-02", periods=3, freq="D"))


def test_daily_means_mix_observed_hours_before_the_origin():
    # origin 11:00: hours 00..11 of the day are observed (value 100), 12..23 forecast (20)
    hist_ts = pd.date_range("2024-01-01", periods=12, freq="h")
    history = pd.DataFrame({"series_id": "s1", "timestamp": hist_ts, "value": 100.0})
    history.loc[3, "value"] = np.nan  # one missing observed hour: 23 valid hours remain
    fc = _hourly_forecast("2024-01-01 11:00", np.full(36, 20.0))
    daily = aa.daily_forecast_means(fc, history)
    first = daily.iloc[0]
    assert first["lead_day"] == 1 and first["n_forecast_hours"] == 12
    assert first["forecast_mean"] == pytest.approx((11 * 100 + 12 * 20) / 23)
    assert len(daily) == 2  # day 2 is complete from the forecast alone (steps 13..36)
    # without history the origin's own day is incomplete and dropped
    assert len(aa.daily_forecast_means(fc)) == 1


# ---------------------------------------------------------------------- probabilities
def test_exceedance_is_monotone_in_threshold():
    rng = np.random.default_rng(1)
    resid = np.sort(rng.normal(0, 0.5, 400))
    fc = rng.uniform(5, 300, 50)
    thresholds = np.linspace(0, 600, 61)
    probs = np.column_stack([aa.exceedance_from_residuals(fc, resid, c) for c in thresholds])
    assert ((probs >= 0) & (probs <= 1)).all()
    assert (np.diff(probs, axis=1) <= 0).all()
    assert probs[:, 0].min() > 0.99 and probs[:, -1].max() < 0.2


def test_exceedance_matches_a_known_distribution_and_is_calibrated():
    # log1p(actual) = log1p(forecast) + N(0, s): the true P(actual > c) is known in closed form
    rng = np.random.default_rng(7)
    s, n_cal, n_test = 0.45, 4000, 20000
    resid = np.sort(rng.normal(0, s, n_cal))
    fc = rng.uniform(20, 200, n_test)
    p = aa.exceedance_from_residuals(fc, resid, 75.0)
    truth = norm.sf((np.log1p(75.0) - np.log1p(fc)) / s)
    assert np.abs(p - truth).max() < 0.05
    actual = np.expm1(np.log1p(fc) + rng.normal(0, s, n_test))
    outcome = actual > 75.0
    from citybrain_ml.evaluation.calibration import expected_calibration_error, reliability_table

    assert expected_calibration_error(p, outcome) < 0.03
    table = reliability_table(p, outcome)
    full = table[table["count"] > 1000]
    assert (full["mean_predicted"] - full["observed_frequency"]).abs().max() < 0.04


def _scored_daily(n_days=120, seed=0):
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2024-01-02", periods=n_days, freq="D")
    rows = []
    for lead in (1, 2):
        fc = rng.uniform(20, 200, n_days)
        actual = np.expm1(np.log1p(fc) + rng.normal(0, 0.2 * lead, n_days))
        rows.append(
            pd.DataFrame(
                {
                    "series_id": "s1",
                    "origin": dates - pd.Timedelta(hours=1) - pd.Timedelta(days=lead - 1),
                    "date": dates,
                    "lead_day": lead,
                    "n_forecast_hours": 24,
                    "forecast_mean": fc,
                    "actual_mean": actual,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_rolling_exceedance_uses_only_past_days():
    daily = _scored_daily()
    probs = aa.rolling_exceedance(daily, [75.0], min_residuals=20)
    first = probs.sort_values("origin").groupby("lead_day").head(20)
    assert first["p_gt_75"].isna().all()  # fewer than 20 finished days before these origins
    assert probs["p_gt_75"].notna().sum() > 150
    # changing a future outcome cannot change an earlier probability
    changed = daily.copy()
    changed.loc[changed["date"] == changed["date"].max(), "actual_mean"] = 1e4
    again = aa.rolling_exceedance(changed, [75.0], min_residuals=20)
    pd.testing.assert_series_equal(probs["p_gt_75"], again["p_gt_75"])


def test_alert_table_columns_and_categories():
    daily = _scored_daily(60)
    resid = aa.log_residuals(daily)
    live = daily[daily["date"] == daily["date"].max()].drop(columns="actual_mean").copy()
    live["forecast_mean"] = [100.0, 30.0]
    probs = aa.exceedance_probabilities(live, resid, [75.0])
    table = aa.alert_table(probs, 75.0, alert_probability=0.5)
    assert list(table.columns) == [
        "station",
        "day",
        "lead_day",
        "threshold",
        "probability",
        "expected_pm25",
        "expected_iaqi",
        "expected_level",
        "expected_category",
        "alert",
    ]
    by_lead = table.set_index("lead_day")
    # PM2.5 ~ 100 ug/m3 -> IAQI in (100, 150] -> III; ~ 30 -> IAQI <= 50 -> I
    assert by_lead.loc[1, "expected_level"] == "III"
    assert by_lead.loc[1, "expected_category"] == "Lightly polluted"
    assert by_lead.loc[2, "expected_category"] == "Excellent"
    assert bool(by_lead.loc[1, "alert"]) and not bool(by_lead.loc[2, "alert"])
    # hand check of the IAQI: 100 ug/m3 -> 100 + 50 * (100 - 75) / 40 = 131.25 -> 132
    assert aa.pm25_daily_category(100.0) == "III"
    with pytest.raises(ValueError, match="p_gt_150"):
        aa.alert_table(probs, 150.0)


def _plan_input(p150, p250, station="s1"):
    days = pd.date_range("2024-01-02", periods=len(p150), freq="D")
    frame = pd.DataFrame(
        {"series_id": station, "date": days, "lead_day": np.arange(1, len(days) + 1)}
    )
    for c in aa.PLAN_THRESHOLDS:
        frame[aa.prob_column(c)] = 1.0 if c <= 75 else 0.0
    # P(> 115) = P(> 150) here: a day above AQI 150 is also above AQI 200 in these cases
    frame["p_gt_115"], frame["p_gt_150"], frame["p_gt_250"] = p150, p150, p250
    frame["median_mean"] = 120.0
    frame["forecast_mean"] = 120.0
    return frame


def test_response_plan_levels_and_ranking():
    heavy = _plan_input([0.9, 0.8, 0.7], [0.6, 0.1, 0.0], "heavy")  # 3 days > 200, 1 > 300
    light = _plan_input([0.9, 0.2, 0.1], [0.0, 0.0, 0.0], "light")  # 1 day > 200
    clean = _plan_input([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], "clean")
    plan = aa.response_plan(pd.concat([light, clean, heavy], ignore_index=True))
    assert plan["rank"].tolist() == list(range(1, 10))
    top = plan.iloc[0]
    assert (top["station"], top["alert_level"]) == ("heavy", "orange")
    levels = plan.set_index(["station", "lead_day"])["alert_level"]
    assert levels[("light", 1)] == "blue" and levels[("clean", 1)] == "none"
    assert levels[("heavy", 2)] == "yellow"  # from day 2: two days > 200 remain
    assert levels[("clean", 1)] == "none"
    clean_likely = plan.set_index(["station", "lead_day"]).loc[("clean", 1), "likely_level"]
    assert clean_likely == "III"  # P(> 75) = 1, P(> 115) = 0
    assert plan.set_index(["station", "lead_day"]).loc[("heavy", 1), "likely_level"] == "VI"
    assert plan["action"].str.len().gt(0).all()

    # MEP 2017 grading: one day > 200 is blue, two are yellow, three with one > 300 orange,
    # four with two > 300 red; days above 150 alone raise no episode alert
    def level(n200, n300=0, n500=0, rules=aa.ALERT_RULES):
        flags = {150: np.ones(4), 200: np.r_[np.ones(n200), np.zeros(4 - n200)]}
        flags |= {300: np.r_[np.ones(n300), np.zeros(4 - n300)], 500: np.ones(n500)}
        return aa.episode_alert_level(flags, rules)

    assert [level(0), level(1), level(2), level(3), level(3, 1), level(4, 2)] == [
        "none",
        "blue",
        "yellow",
        "yellow",
        "orange",
        "red",
    ]
    assert level(1, 1, 1) == "red"  # AQI reaching 500 on one day
    three = aa.ALERT_RULES_THREE_LEVEL
    assert [level(1, rules=three), level(3, rules=three), level(4, 2, rules=three)] == [
        "none",
        "orange",
        "red",
    ]


# ---------------------------------------------------------------------- future covariates
@pytest.fixture(scope="module")
def weather_frame() -> pd.DataFrame:
    """Target driven by the wind at the *same* hour: future wind explains what history cannot."""
    rng = np.random.default_rng(3)
    ts = pd.date_range("2024-01-01", periods=24 * 40, freq="h")
    frames = []
    for i in range(2):
        wind = rng.normal(0, 1, len(ts))
        value = (
            60 + 25 * wind + 5 * np.sin(2 * np.pi * ts.hour / 24 + i) + rng.normal(0, 2, len(ts))
        )
        frames.append(
            pd.DataFrame({"series_id": f"s{i}", "timestamp": ts, "value": value, "wind": wind})
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def future_model(weather_frame) -> LightGBMForecaster:
    train = weather_frame[weather_frame["timestamp"] < "2024-02-01"]
    return LightGBMForecaster(horizon=3, future_covariates=("wind",), **FAST).fit(train)


def test_future_covariate_mode_beats_history_mode(future_model, weather_frame):
    origins = pd.date_range("2024-02-01", periods=40, freq="5h")  # targets inside the data
    cov = weather_frame[["series_id", "timestamp", "wind"]]
    hist = future_model.historical_forecasts(weather_frame, origins, 3)
    assert future_model.covariate_mode_ == "history"
    fut = future_model.historical_forecasts(weather_frame, origins, 3, covariates=cov)
    assert future_model.covariate_mode_ == "future"
    assert set(fut["covariate_mode"]) == {"future"} and set(hist["covariate_mode"]) == {"history"}

    def mae(fc):
        m = fc.merge(weather_frame, on=["series_id", "timestamp"])
        return float((m["yhat"] - m["value"]).abs().mean())

    assert mae(fut) < 0.5 * mae(hist)


def test_partial_future_covariates_fall_back_per_row(future_model, weather_frame):
    history = weather_frame[weather_frame["timestamp"] <= "2024-02-01"]
    end = history["timestamp"].max()
    cov = weather_frame[
        (weather_frame["timestamp"] > end)
        & (weather_frame["timestamp"] <= end + pd.Timedelta(hours=2))
        & (weather_frame["series_id"] == "s0")
    ]
    fc = future_model.predict(3, history_df=history, covariates=cov)
    assert future_model.covariate_mode_ == "mixed"
    modes = fc.set_index(["series_id", "horizon_step"])["covariate_mode"]
    assert modes[("s0", 1)] == "future" and modes[("s0", 3)] == "history"
    assert (modes.loc["s1"] == "history").all()
    with pytest.raises(ValueError, match="lacks column"):
        future_model.predict(3, history_df=history, covariates=cov.drop(columns="wind"))


def test_history_only_model_ignores_future_covariates(weather_frame):
    train = weather_frame[weather_frame["timestamp"] < "2024-02-01"]
    model = LightGBMForecaster(horizon=2, **FAST).fit(train)
    cov = weather_frame[["series_id", "timestamp", "wind"]]
    a = model.predict(2)
    b = model.predict(2, covariates=cov)
    pd.testing.assert_frame_equal(a, b)
    assert model.covariate_mode_ == "history" and "covariate_mode" not in a.columns
    with pytest.raises(ValueError, match="future_covariates"):
        LightGBMForecaster(horizon=2, future_covariates=("rain",), **FAST).fit(train)


def test_future_model_save_load_round_trip(future_model, weather_frame, tmp_path):
    cov = weather_frame[["series_id", "timestamp", "wind"]]
    before = future_model.predict(3, covariates=cov)
    loaded = LightGBMForecaster.load(future_model.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(loaded.predict(3, covariates=cov), before)
    assert loaded.future_covariates_ == ["wind"]


# ---------------------------------------------------------------------- data_samples + job
def test_beijing_sample_loads_with_weather_covariates():
    from citybrain_ml.data.air import load_beijing_multisite

    ds = load_beijing_multisite(SAMPLES)
    assert set(ds.series_ids) == {"Aotizhongxin", "Dongsi"}
    assert {"TEMP", "PRES", "DEWP", "RAIN", "WSPM", "wind_u", "wind_v"} <= set(ds.values.columns)


def test_air_quickstart_job_with_alerts(tmp_path, monkeypatch):
    import mlflow

    from citybrain_ml.config import load_config
    from citybrain_ml.jobs import run_train

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = load_config(REPO / "configs" / "air_quickstart.yaml")
    cfg = cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update={"root": str(SAMPLES)}),
            "output": cfg.output.model_copy(update={"dir": str(tmp_path / "out")}),
            "tracking": cfg.tracking.model_copy(update={"log_models": False}),
        }
    )
    result = run_train(cfg, progress=False)
    out = Path(tmp_path / "out" / cfg.name)
    alerts = pd.read_csv(out / "air_alerts.csv")
    plan = pd.read_csv(out / "air_response_plan.csv")
    assert set(alerts["station"]) == {"Aotizhongxin", "Dongsi"}
    assert alerts["probability"].between(0, 1).all()
    assert set(alerts["expected_level"]) <= {"I", "II", "III", "IV", "V", "VI"}
    assert set(plan["alert_level"]) <= set(aa.ALERT_ORDER)
    assert plan["rank"].tolist() == list(range(1, len(plan) + 1))
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(result.parent_run_id)
    assert "air_alerts.n_alerts" in run.data.metrics
    artifacts = [
        a.path
        for a in mlflow.MlflowClient(tracking_uri=uri).list_artifacts(
            result.parent_run_id, "decisions/air_alerts"
        )
    ]
    assert any(p.endswith("air_alerts.csv") for p in artifacts)


def test_delta_target_tracks_a_random_walk_and_matches_per_origin_predict():
    rng = np.random.default_rng(5)
    ts = pd.date_range("2024-01-01", periods=24 * 30, freq="h")
    frames = [
        pd.DataFrame(
            {
                "series_id": f"s{i}",
                "timestamp": ts,
                "value": 200 + np.cumsum(rng.normal(0, 3, len(ts))),
            }
        )
        for i in range(2)
    ]
    df = pd.concat(frames, ignore_index=True)
    df.loc[df.index[100:103], "value"] = np.nan  # a missing origin value: anchor steps back
    train = df[df["timestamp"] < "2024-01-25"]
    origins = pd.date_range("2024-01-25", periods=20, freq="5h")
    kw = dict(horizon=2, strategy="pooled", **FAST)
    delta = LightGBMForecaster(delta_target=True, **kw).fit(train)
    level = LightGBMForecaster(**kw).fit(train)

    def mae(fc):
        m = fc.merge(df, on=["series_id", "timestamp"])
        return float((m["yhat"] - m["value"]).abs().mean())

    fast = delta.historical_forecasts(df, origins, 2)
    # a level model cannot follow the walk beyond its training range; the delta model can
    assert mae(fast) < 0.5 * mae(level.historical_forecasts(df, origins, 2))
    one = delta.predict(2, history_df=df[df["timestamp"] <= origins[3]])
    got = fast[fast["origin"] == origins[3]].drop(columns="origin").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, one, check_exact=False, rtol=1e-6)
