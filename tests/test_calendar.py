"""Service calendars: closed hours are never origins, calibration points or forecast rows."""

import warnings

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.data import validate_long
from citybrain_ml.data.calendar import CalendarError, ServiceCalendar, detect_calendar
from citybrain_ml.evaluation import backtest
from citybrain_ml.models import make_model
from citybrain_ml.models.base import FallbackWarning

OPEN = (22, 92)  # 05:30 .. 23:00 at 15 min


def closed_panel(days=8, n=3, start="2024-03-04", seed=0):
    """Counts every 15 min, no rows while closed (23:15-05:15), like a metro export."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=days * 96, freq="15min")
    slot = idx.hour * 4 + idx.minute // 15
    is_open = (slot >= OPEN[0]) & (slot <= OPEN[1])
    frames = []
    for s in range(n):
        level = 10.0 ** (s + 1)
        value = rng.poisson(level * (1.2 + np.sin(2 * np.pi * slot / 96))).astype(float)
        frames.append(
            pd.DataFrame(
                {"series_id": f"st{s}", "timestamp": idx[is_open], "value": value[is_open]}
            )
        )
    return validate_long(pd.concat(frames, ignore_index=True))


def test_detects_operating_hours_and_reports_them():
    df = closed_panel()
    cal = detect_calendar(df, "15min")
    assert cal.has_closed and cal.source == "detected"
    assert cal.hours() == "05:30-23:00"
    assert len(cal.open_slots) == OPEN[1] - OPEN[0] + 1
    assert "71 of 96" in cal.describe()


def test_always_open_data_has_no_closed_slots():
    idx = pd.date_range("2024-01-01", periods=4 * 96, freq="15min")
    df = pd.DataFrame({"series_id": "a", "timestamp": idx, "value": np.arange(len(idx)) + 1.0})
    assert not detect_calendar(df, "15min").has_closed


def test_given_hours_parse_and_wrap_midnight():
    cal = ServiceCalendar.from_hours("18:00-02:00", "h")
    assert cal.open_slots == (0, 1, 2, 18, 19, 20, 21, 22, 23)
    assert cal.hours() == "18:00-02:00"
    with pytest.raises(CalendarError, match="HH:MM-HH:MM"):
        ServiceCalendar.from_hours("6am to 11pm", "h")
    with pytest.raises(CalendarError, match="not on the 15min grid"):
        ServiceCalendar.from_hours("05:20-23:00", "15min")


def test_horizon_continues_after_closing():
    df = closed_panel()
    last_evening = df[df["timestamp"] <= "2024-03-06 23:00"]
    model = make_model("last_value", horizon=4, calibration_steps=0).fit(last_evening)
    fc = model.predict(4)
    first = fc[fc["series_id"] == "st0"]["timestamp"].tolist()
    assert first == [
        pd.Timestamp("2024-03-07 05:30"),
        pd.Timestamp("2024-03-07 05:45"),
        pd.Timestamp("2024-03-07 06:00"),
        pd.Timestamp("2024-03-07 06:15"),
    ]


@pytest.mark.parametrize("name", ["last_value", "seasonal_naive", "historical_average", "lightgbm"])
def test_no_closed_origins_targets_or_published_rows(name):
    df = closed_panel()
    params = {"n_estimators": 10, "n_jobs": 1} if name == "lightgbm" else {}
    model = make_model(name, horizon=6, **params).fit(df[df["timestamp"] < "2024-03-09"])
    cal = model.calendar_
    origins = pd.date_range("2024-03-09 20:00", "2024-03-10 08:00", freq="15min")
    fc = model.historical_forecasts(df, origins, 6, levels=[90])
    assert cal.is_open(fc["origin"]).all()
    assert cal.is_open(fc["timestamp"]).all()
    assert set(fc["horizon_step"]) == set(range(1, 7))
    published = model.predict(6, history_df=df, levels=[90])
    assert cal.is_open(published["timestamp"]).all() and len(published) == 3 * 6


def test_calibration_uses_only_in_service_targets():
    df = closed_panel()
    model = make_model("last_value", horizon=4).fit(df)
    # every residual comes from an observed, in-service target: none is NaN, and each
    # step has at least one service day of origins x 3 series
    for scores in model.conformal_scores_.values():
        assert np.isfinite(scores).all() and len(scores) >= 3 * 50


def test_backtest_origins_are_in_service():
    df = closed_panel()
    res = backtest(make_model("seasonal_naive", horizon=4), df, 4, 3, step=30, progress=False)
    cal = detect_calendar(df, "15min")
    assert cal.is_open(pd.DatetimeIndex(res.origins)).all()
    assert cal.is_open(res.forecasts["timestamp"]).all()


def test_seasonal_lags_are_in_calendar_time_across_closed_hours():
    df = closed_panel()
    model = make_model("seasonal_naive", horizon=3, calibration_steps=0).fit(df)
    origin = pd.Timestamp("2024-03-08 23:00")  # last open slot of the day
    fc = model.historical_forecasts(df, [origin], 3)
    lookup = df.set_index(["series_id", "timestamp"])["value"]
    for _, row in fc.iterrows():
        yesterday = row["timestamp"] - pd.Timedelta("1D")
        assert row["yhat"] == lookup[(row["series_id"], yesterday)]


def test_lightgbm_seasonal_feature_looks_one_day_back_in_calendar_time():
    df = closed_panel()
    model = make_model("lightgbm", horizon=2, n_estimators=5, n_jobs=1, calibration_steps=0)
    model.fit(df)
    assert 96 in model.seasonal_lags_
    from citybrain_ml.features.lag_transforms import to_matrix

    grid = to_matrix(df, "15min")
    panel = model._panel(df, grid, upto=len(grid.times))
    t = int(grid.times.get_loc(pd.Timestamp("2024-03-08 23:00")))
    feats = model._step_features(panel, np.array([t]), np.array([0]), 1)
    target = pd.Timestamp("2024-03-09 05:30")  # first open slot after closing
    expected = df.set_index(["series_id", "timestamp"])["value"][
        ("st0", target - pd.Timedelta("1D"))
    ]
    assert feats["seasonal_96"][0] == pytest.approx(expected)


def test_grid_step_models_drop_closed_forecasts_aloud():
    df = closed_panel()
    model = make_model("var", horizon=4, maxlags=1, calibration_steps=0)
    model.fit(df[df["timestamp"] <= "2024-03-06 22:30"])
    with pytest.warns(FallbackWarning, match="closed hours"):
        fc = model.predict(4)
    assert model.calendar_.is_open(fc["timestamp"]).all()
    assert model.fallbacks_["closed_slot_forecasts_dropped"] > 0


def test_unseen_slot_fallback_is_counted_and_warned():
    df = closed_panel(days=3)
    model = make_model("historical_average", period="week", horizon=4, calibration_steps=0)
    model.fit(df, calendar="always")  # no calendar: closed slots are ordinary, unseen slots
    with pytest.warns(FallbackWarning, match="never seen in training"):
        model.predict(4)
    assert model.fallbacks_["unseen_slot_series_mean"] > 0


def test_calibration_with_too_few_residuals_pools_steps_aloud():
    idx = pd.date_range("2024-01-01", periods=60, freq="h")
    df = pd.DataFrame({"series_id": "a", "timestamp": idx, "value": np.arange(60.0) % 7})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model = make_model("last_value", horizon=3).fit(df)
    kinds = set(model.fallbacks_)
    assert {"calibration_window_widened", "calibration_steps_pooled"} <= kinds
    assert any(issubclass(w.category, FallbackWarning) for w in seen)
    # each step borrows from its nearest steps; here even all of them are fewer than 50
    assert len({len(v) for v in model.conformal_scores_.values()}) == 1


def test_nan_forecasts_left_out_of_metrics_are_counted_aloud():
    df = closed_panel()
    # st0 lost the day before the backtest: its "same slot yesterday" forecasts are NaN
    lost = (df["series_id"] == "st0") & (df["timestamp"].dt.normalize() == "2024-03-10")
    df.loc[lost, "value"] = np.nan
    model = make_model("seasonal_naive", horizon=2, calibration_steps=0)
    with pytest.warns(FallbackWarning, match="left out of the metrics"):
        res = backtest(model, df, 2, 2, step=10, refit=False, progress=False)
    fc = res.forecasts
    assert res.dropped_forecasts == int((fc["yhat"].isna() & fc["value"].notna()).sum()) > 0
    assert (fc.loc[fc["yhat"].isna(), "series_id"] == "st0").all()
