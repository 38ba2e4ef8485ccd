"""Calendar features of a timestamp: hour, minute of day, day of week, weekend, time-of-day cycle.

Forecasters compute these at the *target* timestamp (origin + horizon step), which is known
in advance, so a model sees "what time is it when the forecast lands".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import TIMESTAMP

CALENDAR_COLUMNS = ["hour", "minute_of_day", "day_of_week", "is_weekend", "tod_sin", "tod_cos"]
HOLIDAY = "is_holiday"


def calendar_features(timestamps, holiday=None) -> pd.DataFrame:
    """Calendar features of each timestamp.

    Parameters
    ----------
    timestamps : array-like of datetime
        Timestamps to describe.
    holiday : array-like of bool/0-1, optional
        Holiday flag aligned with ``timestamps`` (e.g. a covariate column); adds
        ``is_holiday`` (NaN stays NaN: unknown).

    Returns
    -------
    DataFrame
        One row per timestamp, columns :data:`CALENDAR_COLUMNS` (+ ``is_holiday``), float.
        ``tod_sin``/``tod_cos`` place the minute of day on a circle so 23:45 is next to 00:00.
    """
    ts = pd.DatetimeIndex(timestamps)
    minute = (ts.hour * 60 + ts.minute).to_numpy(dtype=float)
    dow = ts.dayofweek.to_numpy(dtype=float)
    angle = 2 * np.pi * minute / 1440.0
    out = pd.DataFrame(
        {
            "hour": ts.hour.to_numpy(dtype=float),
            "minute_of_day": minute,
            "day_of_week": dow,
            "is_weekend": (dow >= 5).astype(float),
            "tod_sin": np.sin(angle),
            "tod_cos": np.cos(angle),
        }
    )
    if holiday is not None:
        flag = pd.to_numeric(pd.Series(np.asarray(holiday)), errors="raise").to_numpy(dtype=float)
        if len(flag) != len(ts):
            raise ValueError(f"holiday has {len(flag)} values for {len(ts)} timestamps")
        out[HOLIDAY] = np.where(np.isnan(flag), np.nan, (flag != 0).astype(float))
    return out


def add_calendar_features(df: pd.DataFrame, holiday_column: str | None = None) -> pd.DataFrame:
    """Return ``df`` with calendar columns of its ``timestamp`` (and a holiday flag).

    Parameters
    ----------
    df : DataFrame
        Long frame with a ``timestamp`` column.
    holiday_column : str, optional
        Name of a 0/1 covariate column in ``df`` to copy in as ``is_holiday``.

    Returns
    -------
    DataFrame
        A copy of ``df`` with the calendar columns added.
    """
    holiday = None
    if holiday_column is not None:
        if holiday_column not in df.columns:
            raise ValueError(
                f"holiday column {holiday_column!r} not in frame; columns: {list(df.columns)}"
            )
        holiday = df[holiday_column].to_numpy()
    feats = calendar_features(df[TIMESTAMP], holiday)
    out = df.copy()
    for name in feats.columns:
        out[name] = feats[name].to_numpy()
    return out
