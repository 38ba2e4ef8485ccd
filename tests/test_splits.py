"""Time splits on the global timestamp axis and rolling-origin schedules."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import make_series

from citybrain_ml.data.schema import SeriesDataset
from citybrain_ml.data.splits import rolling_origins, time_split


def _frame(n_steps: int = 10, n_series: int = 2) -> pd.DataFrame:
    return make_series(n_series=n_series, n_steps=n_steps)


def _times(part: pd.DataFrame) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(part["timestamp"].unique()).sort_values()


def test_ratio_split_is_tgcn_80_20_on_the_global_axis():
    df = _frame(10, n_series=3)
    train, test = time_split(df, test_ratio=0.2)
    assert len(_times(train)) == 8 and len(_times(test)) == 2
    # same cut for every series, nothing lost, nothing shared
    assert (train.groupby("series_id").size() == 8).all()
    assert (test.groupby("series_id").size() == 2).all()
    assert len(train) + len(test) == len(df)
    assert train["timestamp"].max() < test["timestamp"].min()
    assert list(train.columns) == list(df.columns)


def test_ratio_split_with_validation_and_float_rounding():
    df = _frame(10)
    train, val, test = time_split(df, test_ratio=0.2, val_ratio=0.1)
    assert [len(_times(p)) for p in (train, val, test)] == [7, 1, 2]
    assert (
        train["timestamp"].max()
        < val["timestamp"].min()
        <= val["timestamp"].max()
        < test["timestamp"].min()
    )
    # 10 * (1 - 0.3) is 6.999... in floating point; the split must still be 7/3
    train, test = time_split(df, test_ratio=0.3)
    assert (len(_times(train)), len(_times(test))) == (7, 3)


def test_date_split_and_validation_from_the_pre_test_period():
    df = _frame(10)
    times = _times(df)
    train, test = time_split(df, test_start=times[6])
    assert (len(_times(train)), len(_times(test))) == (6, 4)
    assert test["timestamp"].min() == times[6]
    # a start between grid points: test begins at the next timestamp
    train, test = time_split(df, test_start=times[6] - pd.Timedelta("30min"))
    assert test["timestamp"].min() == times[6]
    train, val, test = time_split(df, test_start=str(times[6]), val_ratio=0.5)
    assert [len(_times(p)) for p in (train, val, test)] == [3, 3, 4]


def test_split_keeps_dataset_type_and_freq():
    ds = SeriesDataset(values=_frame(10), freq="h", name="toy")
    train, test = time_split(ds, test_ratio=0.2)
    assert isinstance(train, SeriesDataset) and isinstance(test, SeriesDataset)
    assert (train.freq, test.name) == ("h", "toy")
    assert len(train.values) == 16 and len(test.values) == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of test_ratio or test_start"),
        ({"test_ratio": 0.2, "test_start": "2024-01-01 05:00"}, "exactly one"),
        ({"test_ratio": 0.0}, r"test_ratio must be in \(0, 1\)"),
        ({"test_ratio": 1.0}, r"test_ratio must be in \(0, 1\)"),
        ({"test_ratio": 0.6, "val_ratio": 0.4}, "leaves no training data"),
        ({"test_ratio": 0.2, "val_ratio": -0.1}, r"val_ratio must be in \[0, 1\)"),
        ({"test_start": "2023-12-31"}, "outside the data"),
        ({"test_start": "2024-01-01 00:00"}, "outside the data"),  # the first timestamp
        ({"test_start": "2024-01-02"}, "outside the data"),  # after the last (09:00)
    ],
)
def test_split_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        time_split(_frame(10), **kwargs)


def test_split_error_when_a_part_would_be_empty():
    # 2 timestamps, 10 % val and 10 % test: train floor(1.6) = 1, test from floor(1.8) = 1
    with pytest.raises(ValueError, match="leaves val empty"):
        time_split(_frame(2), test_ratio=0.1, val_ratio=0.1)


def test_rolling_origins_count_spacing_and_end():
    times = pd.date_range("2024-01-01", periods=20, freq="h")
    origins = rolling_origins(times, horizon=3, n_windows=4, step=2)
    # the last window's 3 targets end at the last timestamp: origin index 19 - 3 = 16
    assert origins == [times[10], times[12], times[14], times[16]]
    # default step = horizon: non-overlapping windows; duplicates (a long column) are fine
    long_axis = pd.Series(list(times) * 2)
    assert rolling_origins(long_axis, horizon=3, n_windows=2) == [times[13], times[16]]
    # end snaps to the last timestamp at or before it
    assert rolling_origins(times, 3, 1, end=times[15] + pd.Timedelta("10min")) == [times[12]]


def test_rolling_origins_errors():
    times = pd.date_range("2024-01-01", periods=10, freq="h")
    with pytest.raises(ValueError, match=r"need 13 timestamps .* only 10 available"):
        rolling_origins(times, horizon=3, n_windows=4, step=3)
    with pytest.raises(ValueError, match="horizon must be >= 1"):
        rolling_origins(times, horizon=0, n_windows=1)
    with pytest.raises(ValueError, match="before the first timestamp"):
        rolling_origins(times, horizon=1, n_windows=1, end="2023-01-01")
