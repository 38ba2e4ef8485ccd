"""Time-based train/validation/test splits and rolling-origin schedules.

Every split cuts the *global* timestamp axis, so all series share the same boundary and
no series' test period overlaps another's training period (spatial models see the whole
network at each step, so a per-series cut would leak).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import TIMESTAMP, SeriesDataset

# guards floor(n * ratio) against float error, e.g. 10 * (1 - 0.3) = 6.999...
_EPS = 1e-9


def unique_timestamps(df: pd.DataFrame) -> pd.DatetimeIndex:
    """Sorted unique timestamps of a long frame (the global time axis)."""
    if TIMESTAMP not in df.columns:
        raise ValueError(f"frame lacks a '{TIMESTAMP}' column; columns are {list(df.columns)}")
    times = pd.DatetimeIndex(pd.to_datetime(df[TIMESTAMP]).unique()).sort_values()
    if len(times) == 0:
        raise ValueError("cannot split an empty frame")
    return times


def time_split(
    df: pd.DataFrame | SeriesDataset,
    test_ratio: float | None = None,
    test_start=None,
    val_ratio: float = 0.0,
) -> tuple:
    """Split a long frame on the global time axis into train/(val)/test.

    Give exactly one of ``test_ratio`` or ``test_start``.

    * By ratio (T-GCN / DCRNN style): with ``n`` unique timestamps, train gets the first
      ``floor(n * (1 - test_ratio - val_ratio))`` of them -- T-GCN's ``int(n * 0.8)`` for a
      20% test set, so 10 timestamps split 8/2 -- validation runs up to
      ``floor(n * (1 - test_ratio))`` and test gets the rest.
    * By date: test is every timestamp ``>= test_start``; with ``val_ratio`` the last
      ``floor(n_before * val_ratio)`` timestamps before ``test_start`` become validation.

    Parameters
    ----------
    df : DataFrame or SeriesDataset
        Long frame ``series_id, timestamp, value`` (or a dataset holding one).
    test_ratio : float, optional
        Share of unique timestamps for test, in (0, 1).
    test_start : str or Timestamp, optional
        First test timestamp; must lie after the first and not after the last timestamp.
    val_ratio : float
        Share of timestamps for validation (of all timestamps when splitting by ratio, of
        the pre-test ones when splitting by date); 0 returns no validation part.

    Returns
    -------
    tuple
        ``(train, test)`` or, when ``val_ratio > 0``, ``(train, val, test)``; the same
        type as ``df`` (frames keep their columns and row order, index reset).
    """
    frame = df.values if isinstance(df, SeriesDataset) else df
    times = unique_timestamps(frame)
    cuts = _cut_positions(times, test_ratio, test_start, val_ratio)
    bounds = [times[c] for c in cuts]  # first timestamp of val (if any) and of test
    stamps = pd.to_datetime(frame[TIMESTAMP])
    parts, lower = [], None
    for upper in [*bounds, None]:
        keep = np.ones(len(frame), dtype=bool)
        if lower is not None:
            keep &= (stamps >= lower).to_numpy()
        if upper is not None:
            keep &= (stamps < upper).to_numpy()
        parts.append(frame[keep].reset_index(drop=True))
        lower = upper
    if isinstance(df, SeriesDataset):
        return tuple(replace(df, values=part) for part in parts)
    return tuple(parts)


def _cut_positions(times: pd.DatetimeIndex, test_ratio, test_start, val_ratio) -> list[int]:
    """Positions in ``times`` where val (if any) and test begin."""
    if (test_ratio is None) == (test_start is None):
        raise ValueError("give exactly one of test_ratio or test_start")
    if not 0 <= val_ratio < 1:
        raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio}")
    n = len(times)
    if test_ratio is not None:
        if not 0 < test_ratio < 1:
            raise ValueError(f"test_ratio must be in (0, 1), got {test_ratio}")
        if test_ratio + val_ratio >= 1:
            raise ValueError(
                f"test_ratio + val_ratio = {test_ratio + val_ratio:g} leaves no training data"
            )
        test_at = math.floor(n * (1 - test_ratio) + _EPS)
        train_end = math.floor(n * (1 - test_ratio - val_ratio) + _EPS)
    else:
        start = pd.Timestamp(test_start)
        if start.tzinfo is None and times.tz is not None:
            start = start.tz_localize(times.tz)
        if not times[0] < start <= times[-1]:
            raise ValueError(
                f"test_start {start} is outside the data: it must be after the first timestamp "
                f"{times[0]} and at or before the last {times[-1]}"
            )
        test_at = int(times.searchsorted(start, side="left"))
        train_end = test_at - math.floor(test_at * val_ratio + _EPS)
    sizes = {"train": train_end, "val": test_at - train_end, "test": n - test_at}
    empty = [name for name, size in sizes.items() if size <= 0 and (name != "val" or val_ratio)]
    if empty:
        raise ValueError(
            f"split of {n} timestamps leaves {', '.join(empty)} empty (sizes {sizes}); "
            "use other ratios or a longer frame"
        )
    return [train_end, test_at] if val_ratio else [test_at]


def rolling_origins(
    timestamps,
    horizon: int,
    n_windows: int,
    step: int | None = None,
    end=None,
) -> list[pd.Timestamp]:
    """Forecast origins for a rolling-origin evaluation, oldest first.

    Origins are counted in positions on the sorted unique time axis: the last window's
    ``horizon`` targets end exactly at ``end`` (default: the last timestamp) and earlier
    origins lie ``step`` positions apart.

    Parameters
    ----------
    timestamps : array-like of datetimes
        Time axis (duplicates allowed, e.g. a long frame's ``timestamp`` column).
    horizon : int
        Steps forecast from each origin.
    n_windows : int
        Number of origins.
    step : int, optional
        Positions between consecutive origins; default ``horizon`` (windows tile the
        test period without overlap).
    end : str or Timestamp, optional
        Last target timestamp; default the last timestamp. Snaps to the latest timestamp
        at or before it.

    Returns
    -------
    list of Timestamp
    """
    horizon, n_windows = int(horizon), int(n_windows)
    step = horizon if step is None else int(step)
    for name, val in (("horizon", horizon), ("n_windows", n_windows), ("step", step)):
        if val < 1:
            raise ValueError(f"{name} must be >= 1, got {val}")
    times = pd.DatetimeIndex(pd.to_datetime(pd.Index(timestamps)).unique()).sort_values()
    if len(times) == 0:
        raise ValueError("rolling_origins: no timestamps given")
    last = len(times) - 1
    if end is not None:
        end_ts = pd.Timestamp(end)
        if not times[0] <= end_ts:
            raise ValueError(f"end {end_ts} is before the first timestamp {times[0]}")
        last = int(times.searchsorted(end_ts, side="right")) - 1
    first_origin = last - horizon - (n_windows - 1) * step
    if first_origin < 0:
        need = horizon + (n_windows - 1) * step + 1
        raise ValueError(
            f"{n_windows} window(s) of horizon {horizon} every {step} step(s) need {need} "
            f"timestamps up to {times[last]}, only {last + 1} available"
        )
    return [times[first_origin + i * step] for i in range(n_windows)]
