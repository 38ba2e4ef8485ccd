"""Daily AQI from forecasts of several pollutants and its use in the alert table.

Hand-checked numbers (HJ 633-2012 Table 1):
* PM2.5 24-h mean 80 ug/m3 -> IAQI 100 + (80 - 75) / (115 - 75) * 50 = 106.25 -> AQI 107;
* PM2.5 24-h mean 30 -> 30 / 35 * 50 = 42.9;
* O3 at 240 for hours 10..17, else 0 -> daily max 8-h mean 240 ->
  150 + (240 - 215) / (265 - 215) * 50 = 175 (the 1-h max 240 gives only
  100 + (240 - 200) / (300 - 200) * 50 = 120).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.data.schema import SeriesDataset
from citybrain_ml.optimize import air_alerts as aa

ORIGIN = pd.Timestamp("2024-01-01 23:00")


def hourly(values, origin=ORIGIN, series="s1") -> pd.DataFrame:
    """Forecast rows for steps 1..len(values) after ``origin``."""
    steps = np.arange(1, len(values) + 1)
    return pd.DataFrame(
        {
            "series_id": series,
            "timestamp": origin + pd.to_timedelta(steps, unit="h"),
            "horizon_step": steps,
            "yhat": np.asarray(values, dtype=float),
            "origin": origin,
        }
    )


def o3_day(peak: float) -> np.ndarray:
    day = np.zeros(24)
    day[10:18] = peak
    return day


@pytest.fixture
def forecasts() -> dict[str, pd.DataFrame]:
    pm25 = np.r_[np.full(24, 80.0), np.full(24, 30.0)]
    o3 = np.r_[np.full(24, 50.0), o3_day(240.0)]
    return {"PM2.5": hourly(pm25), "o3": hourly(o3)}


def test_expected_daily_aqi_takes_the_worst_pollutant(forecasts):
    daily = aa.expected_daily_aqi(forecasts)
    assert daily["date"].tolist() == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03")]
    assert daily["lead_day"].tolist() == [1, 2]
    assert daily["aqi"].tolist() == [107.0, 175.0]
    assert daily["primary_pollutant"].tolist() == ["PM2.5", "O3_8h"]
    assert daily["level"].tolist() == ["III", "IV"]
    assert daily["iaqi_PM2.5"].to_numpy() == pytest.approx([106.25, 30 / 35 * 50])
    assert daily["O3_8h"].tolist() == pytest.approx([50.0, 240.0])
    assert daily["iaqi_O3_1h"].tolist() == pytest.approx([50 / 160 * 50, 120.0])
    assert (daily["origin"] == ORIGIN).all()


def test_excellent_day_has_no_primary_pollutant():
    daily = aa.expected_daily_aqi({"PM2.5": hourly(np.full(24, 20.0))})
    assert daily["aqi"].tolist() == [29.0]  # 20 / 35 * 50 = 28.6, rounded up
    assert daily["primary_pollutant"].tolist() == [None]
    assert daily["category"].tolist() == ["Excellent"]


def test_origin_day_is_completed_with_observed_hours():
    origin = pd.Timestamp("2024-01-01 11:00")
    fc = {"PM2.5": hourly(np.full(36, 100.0), origin=origin)}
    observed = pd.DataFrame(
        {
            "series_id": "s1",
            "timestamp": pd.date_range("2024-01-01", periods=12, freq="h"),
            "value": 40.0,
        }
    )
    with_obs = aa.expected_daily_aqi(fc, {"PM2.5": observed})
    # day 1: (12 * 40 + 12 * 100) / 24 = 70 -> 50 + (70 - 35) / 40 * 50 = 93.75 -> 94
    assert with_obs["PM2.5"].tolist() == pytest.approx([70.0, 100.0])
    assert with_obs["aqi"].tolist() == [94.0, 132.0]
    assert with_obs["lead_day"].tolist() == [1, 2]
    # without history the half-forecast origin day is incomplete and left out
    alone = aa.expected_daily_aqi(fc)
    assert alone["date"].tolist() == [pd.Timestamp("2024-01-02")]


def test_each_origin_and_station_is_kept_apart():
    later = ORIGIN + pd.Timedelta(days=1)
    fc = pd.concat(
        [
            hourly(np.full(24, 80.0)),
            hourly(np.full(24, 30.0), origin=later),
            hourly(np.full(24, 150.0), series="s2"),
        ]
    )
    daily = aa.expected_daily_aqi({"PM2.5": fc})
    got = daily.set_index(["series_id", "origin"])["aqi"]
    assert got[("s1", ORIGIN)] == 107.0
    assert got[("s1", later)] == 43.0
    assert got[("s2", ORIGIN)] == 200.0  # the IV/V breakpoint


def test_alert_table_category_from_all_pollutants(forecasts):
    pm25_daily = aa.daily_forecast_means(forecasts["PM2.5"])
    residuals = {1: np.array([0.0]), 2: np.array([0.0])}  # median daily mean = forecast
    probs = aa.exceedance_probabilities(pm25_daily, residuals, [75.0])
    pm25_only = aa.alert_table(probs)
    assert pm25_only["expected_category"].tolist() == ["Lightly polluted", "Excellent"]
    assert "expected_aqi" not in pm25_only
    daily = aa.expected_daily_aqi(forecasts)
    table = aa.alert_table(probs, daily_aqi_forecast=daily)
    assert table["expected_aqi"].tolist() == [107.0, 175.0]
    assert table["primary_pollutant"].tolist() == ["PM2.5", "O3_8h"]
    assert table["expected_category"].tolist() == ["Lightly polluted", "Moderately polluted"]
    # the PM2.5 columns and the alert itself are unchanged
    for col in ("expected_pm25", "expected_iaqi", "probability", "alert"):
        pd.testing.assert_series_equal(table[col], pm25_only[col])
    # a day the AQI frame does not cover has no category rather than a PM2.5-only one
    partial = aa.alert_table(probs, daily_aqi_forecast=daily.iloc[:1])
    assert partial["expected_level"].iloc[0] == "III"
    assert pd.isna(partial["expected_level"].iloc[1]) and np.isnan(partial["expected_aqi"].iloc[1])


def test_bad_inputs_raise_clear_errors(forecasts):
    with pytest.raises(ValueError, match="empty"):
        aa.expected_daily_aqi({})
    with pytest.raises(ValueError, match="unknown pollutant"):
        aa.expected_daily_aqi({"PM1": forecasts["PM2.5"]})
    with pytest.raises(ValueError, match="hourly"):
        aa.expected_daily_aqi(forecasts, freq="15min")
    with pytest.raises(ValueError, match="lacks column"):
        aa.expected_daily_aqi({"PM2.5": forecasts["PM2.5"].drop(columns="yhat")})
    probs = aa.exceedance_probabilities(
        aa.daily_forecast_means(forecasts["PM2.5"]), {1: np.array([0.0])}, [75.0]
    )
    with pytest.raises(ValueError, match="daily_aqi_forecast lacks"):
        aa.alert_table(probs, daily_aqi_forecast=pd.DataFrame({"series_id": ["s1"]}))


def test_decision_uses_other_pollutant_forecasts_when_given():
    times = pd.date_range("2024-01-01", "2024-01-10 23:00", freq="h")
    values = pd.DataFrame({"series_id": "s1", "timestamp": times, "value": 50.0})
    origins = pd.date_range("2024-01-01 23:00", periods=6, freq="D")
    scored = pd.concat([hourly(np.full(48, 50.0), origin=o) for o in origins])
    scored = scored.merge(values, on=["series_id", "timestamp"])
    end = times[-1]
    ctx = SimpleNamespace(
        dataset=SeriesDataset(values, "h"),
        forecast=hourly(np.full(24, 80.0), origin=end).drop(columns="origin"),
        scored=scored,
        model=None,
        params={"min_residuals": 1},
        train_end=end,
    )
    plain = aa.air_alerts_decision(ctx).tables["air_alerts"]
    assert plain["expected_category"].tolist() == ["Lightly polluted"]  # PM2.5 80 -> 107
    ctx.pollutant_forecasts = {"O3": hourly(o3_day(240.0), origin=end).drop(columns="origin")}
    table = aa.air_alerts_decision(ctx).tables["air_alerts"]
    assert table["expected_aqi"].tolist() == [175.0]
    assert table["primary_pollutant"].tolist() == ["O3_8h"]
    assert table["expected_category"].tolist() == ["Moderately polluted"]


# ---------------------------------------------------------------------- multi-pollutant jobs
POLLUTANTS4 = ["PM2.5", "PM10", "NO2", "O3"]


def test_multi_pollutant_loader_names_series_and_links_same_pollutant_only():
    from conftest import SAMPLES

    from citybrain_ml.data.air import load_beijing_multisite, split_series_id

    ds = load_beijing_multisite(SAMPLES, targets=POLLUTANTS4, adjacency_km=40)
    assert len(ds.series_ids) == 8 and "Dongsi/NO2" in ds.series_ids
    assert split_series_id("Dongsi/NO2") == ("Dongsi", "NO2")
    assert split_series_id("Dongsi") == ("Dongsi", None)
    no2 = ds.values[ds.values["series_id"] == "Dongsi/NO2"]
    assert (no2["is_NO2"] == 1).all() and (no2["is_O3"] == 0).all()
    assert "is_PM2.5" not in ds.values.columns  # the first target is the reference level
    pollutant = ds.sensors.set_index("series_id")["pollutant"]
    assert (pollutant[ds.adjacency["src"]].to_numpy() == pollutant[ds.adjacency["dst"]]).all()
    single = load_beijing_multisite(SAMPLES, target="NO2")
    merged = no2.merge(single.values, on="timestamp", suffixes=("", "_single"))
    merged = merged[merged["series_id_single"] == "Dongsi"]
    np.testing.assert_array_equal(merged["value"], merged["value_single"])
    with pytest.raises(ValueError, match="targets must be distinct"):
        load_beijing_multisite(SAMPLES, targets=["PM2.5", "PM2.5"])


def test_split_pollutants_gives_station_frames():
    frame = pd.DataFrame(
        {"series_id": ["A/PM2.5", "A/O3", "B/O3"], "timestamp": ORIGIN, "yhat": [1.0, 2.0, 3.0]}
    )
    parts = aa.split_pollutants(frame)
    assert sorted(parts) == ["O3", "PM2.5"]
    assert parts["O3"]["series_id"].tolist() == ["A", "B"]
    assert parts["O3"]["yhat"].tolist() == [2.0, 3.0]
    assert aa.split_pollutants(frame.assign(series_id="A")) == {}


def test_multi_pollutant_job_alerts_use_the_all_pollutant_aqi(tmp_path, monkeypatch):
    from conftest import SAMPLES

    from citybrain_ml.config import JobConfig
    from citybrain_ml.jobs import run_train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = JobConfig.model_validate(
        {
            "name": "air_aqi",
            "data": {
                "dataset": "beijing_multisite",
                "root": str(SAMPLES),
                "options": {"targets": POLLUTANTS4},
            },
            "horizon": 24,
            "levels": [90],
            "models": [
                {
                    "type": "lightgbm",
                    "params": {
                        "strategy": "pooled",
                        "objective": "quantile",
                        "quantiles": [0.05, 0.5, 0.95],
                        "target_transform": "log1p",
                        "lags": [1, 2, 24],
                        "rolling_windows": [6],
                        "n_estimators": 30,
                        "num_leaves": 15,
                        "min_child_samples": 20,
                        "calibration_steps": 24,
                        "n_jobs": 1,
                    },
                }
            ],
            "evaluation": {"method": "holdout", "test_start": "2016-03-05", "stride": 6},
            "tracking": {"log_models": False},
            "output": {"dir": str(tmp_path / "out")},
            "decisions": [{"type": "air_alerts", "params": {"min_residuals": 5}}],
        }
    )
    result = run_train(cfg, progress=False)
    assert len(pd.unique(result.outcomes[0].forecast["series_id"])) == 8
    alerts = pd.read_csv(tmp_path / "out" / "air_aqi" / "air_alerts.csv")
    assert set(alerts["station"]) == {"Aotizhongxin", "Dongsi"}
    assert {"expected_aqi", "primary_pollutant"} <= set(alerts.columns)
    # the AQI is the worst pollutant: never below the PM2.5-only IAQI of the same day
    assert (alerts["expected_aqi"] >= alerts["expected_iaqi"] - 1).all()
    plan = pd.read_csv(tmp_path / "out" / "air_aqi" / "air_response_plan.csv")
    assert set(plan["station"]) == {"Aotizhongxin", "Dongsi"}
