"""Baselines against hand-computed forecasts, and the shared base-class machinery."""

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.models import HistoricalAverage, LastValue, SeasonalNaive, make_model
from citybrain_ml.models.base import Forecaster, ModelError, conformal_quantile


def _frame(values, start="2024-01-01", freq="h", sid="a"):
    ts = pd.date_range(start, periods=len(values), freq=freq)
    return pd.DataFrame({"series_id": sid, "timestamp": ts, "value": values})


def test_last_value_skips_trailing_missing():
    df = _frame([1.0, 2.0, 3.0, np.nan])
    fc = LastValue(calibration_steps=0).fit(df).predict(2)
    assert fc["yhat"].tolist() == [3.0, 3.0]
    # forecasts start one step after the last timestamp, even a missing one
    assert fc["timestamp"].tolist() == list(pd.date_range("2024-01-01 04:00", periods=2, freq="h"))
    assert fc["horizon_step"].tolist() == [1, 2]


def test_seasonal_naive_repeats_last_season():
    df = _frame([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])
    fc = SeasonalNaive(season_length=3, calibration_steps=0).fit(df).predict(5)
    assert fc["yhat"].tolist() == [10.0, 20.0, 30.0, 10.0, 20.0]


def test_historical_average_by_time_of_day():
    # two days of 12-hour steps: slots 00:00 -> (1+3)/2, 12:00 -> (2+4)/2
    df = _frame([1.0, 2.0, 3.0, 4.0], freq="12h")
    fc = HistoricalAverage(period="day", calibration_steps=0).fit(df).predict(2)
    assert fc["yhat"].tolist() == [2.0, 3.0]


def test_predict_from_new_history_uses_it():
    model = LastValue(calibration_steps=0).fit(_frame([1.0, 2.0]))
    fc = model.predict(1, history_df=_frame([7.0, 8.0, 9.0], start="2024-02-01"))
    assert fc["yhat"].tolist() == [9.0]
    assert fc["timestamp"].iloc[0] == pd.Timestamp("2024-02-01 03:00")


def test_conformal_quantile_finite_sample():
    scores = np.arange(1.0, 10.0)  # n = 9; 80% -> ceil(10 * 0.8) = 8th smallest
    assert conformal_quantile(scores, 80) == 8.0
    assert conformal_quantile(scores, 99) == 9.0


def test_intervals_are_nested_and_ordered(hourly_df):
    model = SeasonalNaive(season_length=24, horizon=6, calibration_steps=72).fit(hourly_df)
    fc = model.predict(6, levels=[80, 90])
    assert (fc["yhat_lo_90"] <= fc["yhat_lo_80"]).all()
    assert (fc["yhat_lo_80"] <= fc["yhat"]).all() and (fc["yhat"] <= fc["yhat_hi_80"]).all()
    assert (fc["yhat_hi_80"] <= fc["yhat_hi_90"]).all()


def test_intervals_without_calibration_raise():
    model = LastValue(calibration_steps=0).fit(_frame([1.0, 2.0, 3.0]))
    with pytest.raises(ModelError, match="no calibrated intervals"):
        model.predict(1, levels=[90])


def test_unfitted_model_raises():
    with pytest.raises(ModelError, match="not fitted"):
        LastValue().predict(3)


def test_missing_columns_named():
    with pytest.raises(ValueError, match="value"):
        LastValue().fit(pd.DataFrame({"series_id": ["a"], "timestamp": ["2024-01-01"]}))


def test_historical_forecasts_use_only_past(hourly_df):
    model = LastValue(calibration_steps=0).fit(hourly_df)
    origins = pd.to_datetime(["2024-01-05 10:00", "2024-01-09 00:00"])
    fc = model.historical_forecasts(hourly_df, origins, 3)
    at_origin = hourly_df.set_index(["series_id", "timestamp"])["value"]
    for (sid, origin), grp in fc.groupby(["series_id", "origin"]):
        assert np.allclose(grp["yhat"], at_origin[(sid, origin)])


def test_save_load_roundtrip(tmp_path, hourly_df):
    model = HistoricalAverage(horizon=4).fit(hourly_df)
    model.save(tmp_path / "m")
    again = Forecaster.load(tmp_path / "m")
    pd.testing.assert_frame_equal(model.predict(4, levels=[90]), again.predict(4, levels=[90]))


def test_load_corrupt_model_is_clear(tmp_path, hourly_df):
    path = LastValue().fit(hourly_df).save(tmp_path / "m")
    (path / "model.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ModelError, match="corrupt model file"):
        Forecaster.load(path)


def test_make_model_rejects_unknown_params():
    with pytest.raises(ValueError, match="no parameter"):
        make_model("last_value", seasn=3)
    with pytest.raises(ValueError, match="unknown model type"):
        make_model("prophet")


@pytest.mark.parametrize(
    "model",
    [
        LastValue(calibration_steps=0),
        SeasonalNaive(season_length=24, calibration_steps=0),
        HistoricalAverage(calibration_steps=0),
    ],
    ids=["last_value", "seasonal_naive", "historical_average"],
)
def test_vectorised_origins_match_per_origin_predict(model, hourly_df):
    df = hourly_df.copy()
    df.loc[df.sample(frac=0.05, random_state=1).index, "value"] = np.nan
    model.fit(df)
    origins = pd.to_datetime(["2024-01-08 05:00", "2024-01-12 23:00", "2024-01-20 00:00"])
    fast = model.historical_forecasts(df, origins, 30)
    slow = Forecaster._predict_origins(model, df, origins, 30)
    slow = slow.sort_values(["origin", "series_id", "horizon_step"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(fast[slow.columns], slow, check_dtype=False)
