"""Published CSV bytes: the fast writer equals ``DataFrame.to_csv(index=False)`` byte for byte."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.data.io import _csv_bytes, frame_bytes


def _pandas(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode("utf-8")


def forecast_frame(n_series: int = 400, origins: int = 24, horizon: int = 12) -> pd.DataFrame:
    """A forecast frame as ``citybrain forecast`` publishes it, with float edge cases."""
    rng = np.random.default_rng(0)
    ids = np.array([f"road_{i:04d}" for i in range(n_series)])
    origin = pd.date_range("2024-03-01", periods=origins, freq="15min")
    steps = np.arange(1, horizon + 1)
    o, s, h = (a.ravel() for a in np.meshgrid(origin, ids, steps, indexing="ij"))
    n = len(s)
    yhat = rng.normal(50, 20, n)
    edge = [
        3.0,
        -0.0,
        0.0,
        1e-5,
        1.5e-7,
        123456789012.0,
        1e16,
        1e22,
        -2.5,
        np.nan,
        np.inf,
        -np.inf,
        0.1 + 0.2,
        5e-324,
        1.7976931348623157e308,
    ]
    yhat[: len(edge)] = edge
    yhat[len(edge) : 2 * len(edge)] = np.round(yhat[len(edge) : 2 * len(edge)])  # integral
    lo = yhat - rng.uniform(0, 5, n)
    lo[::97] = np.nan
    with np.errstate(over="ignore"):  # 1.8e308 overflows float32 to inf
        hi = (yhat + 3).astype(np.float32)
    return pd.DataFrame(
        {
            "series_id": s,
            "timestamp": pd.DatetimeIndex(o) + pd.to_timedelta(h * 15, unit="min"),
            "horizon_step": h.astype(np.int64),
            "yhat": yhat,
            "yhat_lo_90": lo,
            "yhat_hi_90": hi,
            "covariate_mode": np.where(h > 6, "history", "future"),
        }
    )


def test_forecast_frame_bytes_identical():
    df = forecast_frame()
    got = _csv_bytes(df)
    assert got == _pandas(df)
    assert frame_bytes(df, "csv") == got
    assert b"-0.0" in got and b"1e-05" in got and b"1e+22" in got  # the edge cases are there


def _with(ts) -> pd.DataFrame:
    n = len(ts)
    return pd.DataFrame(
        {"series_id": [f"s{i % 3}" for i in range(n)], "timestamp": ts, "yhat": np.arange(n) / 7}
    )


@pytest.mark.parametrize(
    "ts",
    [
        pd.DatetimeIndex(["2024-01-01", "2024-01-02"] * 50),  # dates only: written without time
        pd.DatetimeIndex(["2024-01-01", "2024-01-01 00:15", pd.NaT] * 40),  # NaT -> empty
        pd.DatetimeIndex(["2024-01-01 00:00:00.5", "2024-01-01 00:00:01"] * 50),  # sub-second
        pd.DatetimeIndex(["2024-01-01 00:00:00.000000001", "2024-01-02"] * 50),  # nanoseconds
        pd.date_range("2024-03-31", periods=8, freq="h", tz="Europe/Berlin").repeat(20),  # DST
        pd.DatetimeIndex(["2024-01-01 06:00", "2024-01-01 07:00"] * 50).as_unit("s"),
        pd.DatetimeIndex([pd.NaT] * 30),
        pd.date_range("2024-01-01", periods=100, freq="min"),  # all distinct: left to pandas
    ],
)
def test_timestamp_formats_identical(ts):
    df = _with(ts)
    assert _csv_bytes(df) == _pandas(df)


def test_two_datetime_columns_and_empty_frame():
    df = _with(pd.date_range("2024-01-01", periods=5, freq="D").repeat(10))
    df["origin"] = df["timestamp"] - pd.Timedelta("15min")
    assert _csv_bytes(df) == _pandas(df)
    assert _csv_bytes(df.iloc[:0]) == _pandas(df.iloc[:0])
    single = df[["timestamp"]].copy()
    single.loc[::7, "timestamp"] = pd.NaT  # a lone empty field is written as ""
    assert _csv_bytes(single) == _pandas(single)
