"""``auto``: never worse than the best baseline on validation, day-type-matched validation."""

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.models import make_model
from citybrain_ml.models.base import FallbackWarning


def hourly_panel(start: str, days: int, n: int = 4, noise: float = 1.0, seed: int = 0):
    """Strong daily profile, quieter weekends, small noise: yesterday beats the last hour."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=days * 24, freq="h")
    hour = idx.hour.to_numpy()
    weekend = idx.day_of_week.to_numpy() >= 5
    profile = 50 + 40 * np.sin(2 * np.pi * hour / 24) - 30 * weekend
    frames = [
        pd.DataFrame(
            {
                "series_id": f"s{i}",
                "timestamp": idx,
                "value": (i + 1) * profile + rng.normal(0, noise, len(idx)),
            }
        )
        for i in range(n)
    ]
    return pd.concat(frames, ignore_index=True)


FAST = {"n_estimators": 20, "n_jobs": 1, "max_origins": 48}


def test_chosen_model_is_never_worse_than_the_best_baseline_at_any_step():
    df = hourly_panel("2024-03-04", days=10)  # Monday
    model = make_model("auto", horizon=3, **FAST).fit(df)
    board = model.leaderboard_.set_index("model")
    baselines = [m for m in board.index if not m.startswith("lightgbm")]
    for h, chosen in model.selected_.items():
        assert board.loc[chosen, f"mae_h{h}"] <= board.loc[baselines, f"mae_h{h}"].min()
    assert set(board["reason"].str.split(":").str[0].str.split(" ").str[0]) <= {"kept", "dropped"}
    fc = model.predict(3, levels=[90])
    assert np.isfinite(fc["yhat"]).all() and (fc["yhat_lo_90"] <= fc["yhat_hi_90"]).all()


def test_validation_days_match_the_forecast_days_type():
    # ends on a Monday: the forecast day is a Tuesday (weekday after weekday), so the
    # Monday after a Sunday must not be the validation day
    df = hourly_panel("2024-03-04", days=8)  # Mon 4 .. Mon 11
    model = make_model("auto", horizon=3, validation_days=2, **FAST).fit(df)
    assert model.validation_["day_type"] == "weekday<-weekday"
    days = pd.to_datetime(model.validation_["days"])
    # 4 series x 24 origins a day: three days reach 200 targets per step
    assert list(days.day_name()) == ["Wednesday", "Thursday", "Friday"]
    assert model.validation_["fallback"] == ""


def test_two_weeks_of_history_validate_a_whole_week_and_choose_per_day_type():
    df = hourly_panel("2024-03-04", days=16, noise=5.0)
    model = make_model("auto", horizon=2, n_estimators=20, n_jobs=1, max_origins=200).fit(df)
    assert model.validation_["day_type"] == "all (last 7 days)"
    # Monday's "same slot yesterday" is a Sunday: never the daily seasonal naive there
    monday = model._choice(pd.Series([1, 2]), pd.Series(["weekday<-weekend"] * 2))
    assert "seasonal_naive_day" not in set(monday)
    board = model.leaderboard_.set_index("model")
    assert board.loc["seasonal_naive_day", "reason"].startswith(("kept", "dropped"))


def test_weekend_trap_validates_on_a_day_related_the_same_way_and_says_so():
    # Sat, Sun, Mon only: no weekday-after-weekday day exists. Validating on the Monday
    # (after a Sunday) would throw out the daily seasonal models that win on Tuesday.
    df = hourly_panel("2024-03-02", days=3)
    with pytest.warns(FallbackWarning, match="relates to its previous day the same way"):
        model = make_model("auto", horizon=3, **FAST).fit(df)
    assert model.validation_["days"] == ["2024-03-03"]  # Sunday after Saturday
    assert model.fallbacks_["validation_day_type_unmatched"] == 1
    assert "last_value" not in model.selected_.values()


def test_nan_forecasts_fall_back_to_last_value_aloud():
    df = hourly_panel("2024-03-04", days=10)
    model = make_model("auto", horizon=2, learned=False, max_origins=24).fit(df)
    model.selected_ = {1: "seasonal_naive_day", 2: "seasonal_naive_day"}
    model.selected_by_day_ = {}
    short = df.groupby("series_id").tail(5)  # less than a day: no value a season back
    with pytest.warns(FallbackWarning, match="use the last value"):
        fc = model.predict(2, history_df=short)
    assert np.isfinite(fc["yhat"]).all()
    assert model.fallbacks_["nan_forecast_last_value"] == len(fc)


def test_lightgbm_learns_holidays_as_a_day_type():
    df = hourly_panel("2024-03-04", days=10)
    model = make_model(
        "lightgbm",
        horizon=2,
        n_estimators=5,
        n_jobs=1,
        calibration_steps=0,
        holidays=["2024-03-14"],
    ).fit(df)
    assert "is_holiday" in model.feature_names_
    fc = model.predict(2)
    assert np.isfinite(fc["yhat"]).all()
