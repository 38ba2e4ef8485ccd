"""Metrics against hand-computed values, masking, and frame-level evaluate()."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.evaluation import (
    evaluate,
    interval_coverage,
    interval_levels,
    interval_width,
    mae,
    mape,
    masked_mae,
    masked_mape,
    masked_rmse,
    pinball_loss,
    poisson_deviance,
    rmse,
    smape,
    summarise,
    winkler_score,
)
from citybrain_ml.evaluation.metrics import bias

# y = [1, 2, 4], f = [2, 2, 1]  ->  f - y = [1, 0, -3]
Y = [1.0, 2.0, 4.0]
F = [2.0, 2.0, 1.0]


def test_point_metrics_hand_computed():
    assert mae(Y, F) == pytest.approx(4 / 3)  # (1 + 0 + 3) / 3
    assert rmse(Y, F) == pytest.approx(math.sqrt(10 / 3))  # sqrt((1 + 0 + 9) / 3)
    assert mape(Y, F) == pytest.approx(100 * (1 / 1 + 0 / 2 + 3 / 4) / 3)  # 58.33 %
    # sMAPE terms 2|e| / (|y| + |f|): 2/3, 0, 6/5
    assert smape(Y, F) == pytest.approx(100 * (2 / 3 + 0 + 6 / 5) / 3)
    assert bias(Y, F) == pytest.approx(-2 / 3)


def test_smape_counts_zero_over_zero_as_perfect():
    # terms: 0/0 -> 0, then 2*1/(1+0) = 2  -> mean 1 -> 100 %
    assert smape([0.0, 1.0], [0.0, 0.0]) == pytest.approx(100.0)


@pytest.mark.parametrize("func", [mae, rmse, mape, smape])
def test_strict_metrics_raise_on_nan(func):
    with pytest.raises(ValueError, match=r"y_true has 1 NaN value\(s\) \(first at index 1\)"):
        func([1.0, np.nan, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="y_pred has 1 NaN"):
        func([1.0, 2.0, 3.0], [1.0, 2.0, np.nan])


def test_strict_metrics_reject_bad_shapes_and_empty_input():
    with pytest.raises(ValueError, match=r"shape \(2,\) but y_pred has shape \(3,\)"):
        mae([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="empty"):
        rmse([], [])


def test_mape_raises_on_zero_target_and_points_to_masked_version():
    with pytest.raises(ValueError, match="masked_mape"):
        mape([0.0, 1.0], [1.0, 1.0])


# y = [0, 2, nan, 4], f = [5, 3, 7, 2]
YM = [0.0, 2.0, np.nan, 4.0]
FM = [5.0, 3.0, 7.0, 2.0]


def test_masked_metrics_skip_null_value_and_nan():
    # null_value=0 keeps indices 1 and 3: errors |3-2| = 1, |2-4| = 2
    assert masked_mae(YM, FM, null_value=0.0) == pytest.approx(1.5)
    assert masked_rmse(YM, FM, null_value=0.0) == pytest.approx(math.sqrt((1 + 4) / 2))
    assert masked_mape(YM, FM, null_value=0.0) == pytest.approx(100 * (1 / 2 + 2 / 4) / 2)
    # null_value NaN keeps the zero target for MAE: (5 + 1 + 2) / 3
    assert masked_mae(YM, FM) == pytest.approx(8 / 3)
    # ... but MAPE skips zero targets whatever null_value is
    assert masked_mape(YM, FM) == pytest.approx(50.0)


def _reference_masked(preds, labels, null_val, kind):
    """The DCRNN / Graph WaveNet recipe: rescale mask by its mean, zero masked terms."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mask = ~np.isnan(labels) if np.isnan(null_val) else labels != null_val
        mask = mask.astype(float) / mask.astype(float).mean()
        if kind == "mae":
            err = np.abs(preds - labels)
        elif kind == "mse":
            err = (preds - labels) ** 2
        else:
            err = np.abs((preds - labels) / labels)
        return float(np.mean(np.nan_to_num(err * mask)))


def test_masked_metrics_equal_the_metr_la_reference_recipe():
    rng = np.random.default_rng(3)
    labels = rng.uniform(20, 70, size=(50, 12, 7))  # samples x horizon x sensors
    labels[rng.random(labels.shape) < 0.1] = 0.0  # METR-LA marks missing readings as 0
    preds = labels + rng.normal(0, 3, labels.shape)
    assert masked_mae(labels, preds, 0.0) == pytest.approx(
        _reference_masked(preds, labels, 0.0, "mae")
    )
    assert masked_rmse(labels, preds, 0.0) == pytest.approx(
        math.sqrt(_reference_masked(preds, labels, 0.0, "mse"))
    )
    # the reference returns a fraction; ours is in percent
    assert masked_mape(labels, preds, 0.0) == pytest.approx(
        100 * _reference_masked(preds, labels, 0.0, "mape")
    )


def test_masked_metrics_nan_when_nothing_valid_and_raise_on_missing_forecast():
    assert math.isnan(masked_mae([0.0, np.nan], [1.0, 2.0], null_value=0.0))
    # a NaN forecast at a masked target is fine, at a valid target it is an error
    assert masked_mae([0.0, 2.0], [np.nan, 3.0], null_value=0.0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="every valid target needs a forecast"):
        masked_mae([1.0, 2.0], [np.nan, 3.0])


def test_pinball_loss_hand_computed():
    # y = 10, forecasts 8 and 12 of the 0.9 quantile: diffs +2 and -2
    # losses max(0.9*2, -0.1*2) = 1.8 and max(-1.8, 0.2) = 0.2 -> mean 1.0
    assert pinball_loss([10.0, 10.0], [8.0, 12.0], 0.9) == pytest.approx(1.0)
    # at q = 0.5 the pinball loss is half the MAE
    assert pinball_loss(Y, F, 0.5) == pytest.approx(mae(Y, F) / 2)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        pinball_loss(Y, F, 1.0)


def test_interval_metrics_hand_computed():
    y, lo, hi = [1.0, 5.0, 10.0], [0.0, 5.0, 11.0], [2.0, 6.0, 12.0]
    # 1 in [0, 2], 5 on the lower bound (counts), 10 below [11, 12]
    assert interval_coverage(y, lo, hi) == pytest.approx(200 / 3)
    assert interval_width(lo, hi) == pytest.approx((2 + 1 + 1) / 3)
    # 80 % interval: alpha = 0.2, penalty 2/alpha = 10 per unit outside; third point is 1 below
    assert winkler_score(y, lo, hi, 80) == pytest.approx((2 + 1 + (1 + 10 * 1)) / 3)
    with pytest.raises(ValueError, match="lo > hi"):
        interval_width([2.0], [1.0])


def test_poisson_deviance_handles_zero_counts():
    # y=0, mu=1: 0*log(.) - (0 - 1) = 1;  y=2, mu=2: 2*log(1) - 0 = 0  -> 2 * mean(1, 0) = 1
    assert poisson_deviance([0.0, 2.0], [1.0, 2.0]) == pytest.approx(1.0)
    # y=1, mu=e: log(1/e) - (1 - e) = e - 2
    assert poisson_deviance([1.0], [math.e]) == pytest.approx(2 * (math.e - 2))
    with pytest.raises(ValueError, match="mu must be > 0"):
        poisson_deviance([1.0, 0.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="counts must be >= 0"):
        poisson_deviance([-1.0], [1.0])


# ---------------------------------------------------------------------- evaluate()
T1, T2 = pd.Timestamp("2024-01-01 01:00"), pd.Timestamp("2024-01-01 02:00")


def _forecast() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "series_id": ["a", "a", "b", "b"],
            "timestamp": [T1, T2, T1, T2],
            "horizon_step": [1, 2, 1, 2],
            "yhat": [10.0, 10.0, 20.0, 20.0],
            "yhat_lo_80": [8.0, 7.0, 18.0, 17.0],
            "yhat_hi_80": [12.0, 13.0, 22.0, 23.0],
        }
    )


def _actuals(b_t1: float = 18.0) -> pd.DataFrame:
    # b at T2 is missing (NaN) and must not be scored
    return pd.DataFrame(
        {
            "series_id": ["a", "a", "b", "b"],
            "timestamp": [T1, T2, T1, T2],
            "value": [11.0, 14.0, b_t1, np.nan],
        }
    )


def test_evaluate_per_horizon_step_with_intervals():
    table = evaluate(_forecast(), _actuals()).set_index("horizon_step")
    assert list(table.columns) == ["n", "mae", "rmse", "mape", "smape", "coverage_80", "width_80"]
    # step 1: a err 1 (11 in [8, 12]), b err 2 (18 on the bound of [18, 22])
    assert table.loc[1, "n"] == 2
    assert table.loc[1, "mae"] == pytest.approx(1.5)
    assert table.loc[1, "rmse"] == pytest.approx(math.sqrt(2.5))
    assert table.loc[1, "mape"] == pytest.approx(100 * (1 / 11 + 2 / 18) / 2)
    assert table.loc[1, "coverage_80"] == pytest.approx(100.0)
    assert table.loc[1, "width_80"] == pytest.approx(4.0)
    # step 2: only a (err 4, 14 outside [7, 13]); b's NaN target is dropped
    assert table.loc[2, "n"] == 1
    assert table.loc[2, "mae"] == pytest.approx(4.0)
    assert table.loc[2, "coverage_80"] == pytest.approx(0.0)
    assert table.loc[2, "width_80"] == pytest.approx(6.0)


def test_evaluate_overall_and_per_series():
    overall = evaluate(_forecast(), _actuals(), metrics=("mae", "winkler"), by=())
    assert len(overall) == 1
    assert overall.loc[0, "n"] == 3
    assert overall.loc[0, "mae"] == pytest.approx((1 + 4 + 2) / 3)
    assert overall.loc[0, "coverage_80"] == pytest.approx(200 / 3)
    # winkler: widths 4, 6, 4 plus 10 * 1 for a@T2 (14 is 1 above 13)
    assert overall.loc[0, "winkler_80"] == pytest.approx((4 + 16 + 4) / 3)
    per_series = evaluate(_forecast(), _actuals(), metrics=("mae",), by=("series_id",))
    assert per_series.set_index("series_id")["mae"].to_dict() == {"a": 2.5, "b": 2.0}
    pd.testing.assert_frame_equal(
        summarise(_forecast(), _actuals()), evaluate(_forecast(), _actuals(), by=())
    )


def test_evaluate_null_value_masks_sentinel_targets():
    # b@T1 reads 0 = "sensor missing": with null_value=0 only a's two points count
    table = evaluate(_forecast(), _actuals(b_t1=0.0), metrics=("mae",), by=(), null_value=0.0)
    assert table.loc[0, "n"] == 2
    assert table.loc[0, "mae"] == pytest.approx((1 + 4) / 2)


def test_evaluate_uses_value_column_when_no_actuals_and_honours_levels():
    joined = _forecast().merge(_actuals(), on=["series_id", "timestamp"])
    table = evaluate(joined, metrics=("mae",), levels=[], by=())
    assert list(table.columns) == ["n", "mae"]
    assert table.loc[0, "mae"] == pytest.approx(7 / 3)
    assert interval_levels(["yhat_lo_80", "yhat_hi_80", "yhat_lo_95"]) == [80]


def test_evaluate_missing_forecast_raises_or_drops():
    fc = _forecast()
    fc.loc[0, "yhat"] = np.nan
    with pytest.raises(
        ValueError, match=r"first series 'a' at 2024-01-01 01:00:00, horizon_step 1"
    ):
        evaluate(fc, _actuals())
    table = evaluate(fc, _actuals(), metrics=("mae",), by=(), missing_forecast="drop")
    assert table.loc[0, "n"] == 2  # a@T2 (err 4) and b@T1 (err 2)
    assert table.loc[0, "mae"] == pytest.approx(3.0)


def test_evaluate_clear_errors():
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(_forecast(), _actuals(), metrics=("mase",))
    with pytest.raises(ValueError, match=r"cannot group by \['origin'\]"):
        evaluate(_forecast(), _actuals(), by=("origin",))
    with pytest.raises(ValueError, match="duplicate"):
        evaluate(_forecast(), pd.concat([_actuals(), _actuals()]))
    with pytest.raises(ValueError, match="no 'value' column"):
        evaluate(_forecast())
    with pytest.raises(ValueError, match="interval column"):
        evaluate(_forecast(), _actuals(), levels=[95])
    all_missing = _actuals().assign(value=np.nan)
    with pytest.raises(ValueError, match="no forecast row has a valid"):
        evaluate(_forecast(), all_missing)
