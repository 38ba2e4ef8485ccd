"""Explicit gap handling: masks, summaries, short-gap filling that never touches test targets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.features.gaps import gap_mask, gap_summary, interpolate_short_gaps

NAN = np.nan


def _frame(values_a, values_b=None, covariate=None):
    ts = pd.date_range("2024-01-01", periods=len(values_a), freq="h")
    frames = [pd.DataFrame({"series_id": "a", "timestamp": ts, "value": values_a})]
    if values_b is not None:
        frames.append(pd.DataFrame({"series_id": "b", "timestamp": ts, "value": values_b}))
    df = pd.concat(frames, ignore_index=True)
    if covariate is not None:
        df["temp"] = covariate
    return df


def test_gap_mask_numbers_runs_and_lengths_per_series():
    df = _frame([1, NAN, NAN, 4, NAN], [NAN, 2, 3, NAN, NAN])
    mask = gap_mask(df)
    assert mask["is_missing"].tolist() == [False, True, True, False, True] + [
        True,
        False,
        False,
        True,
        True,
    ]
    assert mask["gap_length"].tolist() == [0, 2, 2, 0, 1, 1, 0, 0, 2, 2]
    # the trailing gap of series a and the leading gap of series b are distinct gaps
    assert mask["gap_id"].iloc[4] != mask["gap_id"].iloc[5]
    assert mask["gap_id"].nunique() == 5  # 4 gaps + the 0 of observed rows


def test_gap_summary():
    df = _frame([1, NAN, NAN, 4, NAN], [1, 2, 3, 4, 5])
    summary = gap_summary(df).set_index("series_id")
    assert summary.loc["a", "n_missing"] == 3
    assert summary.loc["a", "n_gaps"] == 2
    assert summary.loc["a", "longest_gap"] == 2
    assert summary.loc["b", "n_missing"] == 0
    assert summary.loc["a", "missing_share"] == pytest.approx(0.6)


def test_short_gaps_filled_long_and_open_gaps_left():
    df = _frame([NAN, 1, NAN, 3, NAN, NAN, NAN, 7, NAN])
    out = interpolate_short_gaps(df, max_gap=2)
    assert out["value"].iloc[2] == pytest.approx(2.0)  # 1-step gap inside: filled linearly
    assert out["value"].iloc[4:7].isna().all()  # 3-step gap: longer than max_gap, left whole
    assert np.isnan(out["value"].iloc[0]) and np.isnan(out["value"].iloc[8])  # open ends
    assert out["value_imputed"].tolist() == [False, False, True] + [False] * 6
    assert df["value"].isna().sum() == 6  # input untouched


def test_max_gap_zero_fills_nothing_and_series_do_not_bleed():
    df = _frame([1, NAN, 3], [NAN, 5, 6])
    assert interpolate_short_gaps(df, 0)["value"].isna().sum() == 2
    out = interpolate_short_gaps(df, 5)
    assert out["value"].iloc[1] == pytest.approx(2.0)
    assert np.isnan(out["value"].iloc[3])  # b's leading gap is not filled from a's last value


def test_test_targets_never_filled_but_covariates_are():
    values = [1, NAN, 3, 4, NAN, 6, NAN, 8]
    cov = [0, NAN, 2, 3, NAN, 5, NAN, 7]
    df = _frame(values, covariate=cov)
    cutoff = df["timestamp"].iloc[4]  # test starts at the 5th hour
    out = interpolate_short_gaps(df, 2, columns=("value", "temp"), protect_from=cutoff)
    assert out["value"].iloc[1] == pytest.approx(2.0)  # training gap filled
    assert np.isnan(out["value"].iloc[4]) and np.isnan(out["value"].iloc[6])  # test gaps kept
    assert out["temp"].iloc[[1, 4, 6]].tolist() == pytest.approx([1.0, 4.0, 6.0])


def test_gap_straddling_test_start_is_not_filled():
    df = _frame([1, 2, NAN, 4, 5])
    cutoff = df["timestamp"].iloc[3]  # the gap's right neighbour is the first test target
    out = interpolate_short_gaps(df, 2, protect_from=cutoff)
    assert np.isnan(out["value"].iloc[2])


def test_bad_input_errors():
    df = _frame([1, NAN, 3])
    with pytest.raises(ValueError, match="lacks column"):
        interpolate_short_gaps(df, 1, columns=("temp",))
    with pytest.raises(ValueError, match="max_gap"):
        interpolate_short_gaps(df, -1)
