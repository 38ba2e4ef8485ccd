"""Lag-based features computed at a forecast origin, on a ``(T, N)`` time x series matrix.

Every feature row ``t`` describes the forecast made *at origin* ``t`` and uses only values at
rows ``<= t`` (no look-ahead). Conventions, kept the same across the library:

* ``lag_k`` is the k-th most recent value at the origin: ``lag_1`` is the origin's own value,
  ``lag_2`` the one before (so ``lags=(1, 2, 3, 4)`` are the "4 steps in" of T-GCN);
* rolling windows end at the origin, inclusive (``roll_mean_4`` = mean of ``lag_1..lag_4``);
* seasonal lags are aligned to the *target*: for horizon step ``h`` and season ``m`` the
  feature is the value one season before the target timestamp, ``y[t + h - m]`` (stepping
  back whole seasons when ``h > m``, as a seasonal naive forecast would).

Missing values are NaN in and NaN out; window statistics skip NaN.

The long-frame helpers :func:`to_matrix` / :func:`add_lag_features` turn the canonical
``series_id, timestamp, value`` frame into this matrix and back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE

ROLLING_STATS = ("mean", "std", "min", "max")


# ---------------------------------------------------------------------- long <-> matrix
@dataclass
class Matrix:
    """A long frame laid out on a regular time grid.

    Attributes
    ----------
    times : DatetimeIndex
        Regular grid from the first to the last timestamp, length ``T``.
    ids : ndarray
        Series ids in order of first appearance, length ``N``.
    values : ndarray
        ``(T, N)`` float64 matrix of one column; NaN where missing or absent.
    present : ndarray
        ``(T, N)`` bool, True where the long frame has a row (even with a NaN value).
    row_pos, col_pos : ndarray
        Grid position of every row of the source frame (to map features back).
    """

    times: pd.DatetimeIndex
    ids: np.ndarray
    values: np.ndarray
    present: np.ndarray
    row_pos: np.ndarray
    col_pos: np.ndarray

    def column(self, df: pd.DataFrame, name: str) -> np.ndarray:
        """Lay out another column of the same frame on this grid."""
        out = np.full(self.values.shape, np.nan)
        out[self.row_pos, self.col_pos] = pd.to_numeric(df[name]).to_numpy(dtype=float)
        return out


def to_matrix(df: pd.DataFrame, freq: str, column: str = VALUE) -> Matrix:
    """Lay out a long frame on a regular ``(T, N)`` grid at ``freq``.

    Parameters
    ----------
    df : DataFrame
        Long frame with ``series_id, timestamp`` and ``column``.
    freq : str
        Pandas offset alias of the sampling interval.
    column : str
        Column to put in :attr:`Matrix.values`.

    Returns
    -------
    Matrix

    Raises
    ------
    ValueError
        If a timestamp is off the ``freq`` grid or a (series, timestamp) pair repeats.
    """
    if df.empty:
        raise ValueError("cannot build features from an empty frame")
    ts = pd.DatetimeIndex(df[TIMESTAMP])
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    start = ts.min()
    offset = (ts - start).to_numpy()
    row = offset // step.to_timedelta64()
    off_grid = offset % step.to_timedelta64() != np.timedelta64(0)
    if off_grid.any():
        bad = int(np.flatnonzero(off_grid)[0])
        raise ValueError(
            f"row {bad} (series {df[SERIES_ID].iloc[bad]!r}, timestamp {ts[bad]}) is off the "
            f"regular {freq} grid starting {start}; resample the data first"
        )
    col, ids = pd.factorize(df[SERIES_ID], sort=False)
    row = row.astype(np.int64)
    times = pd.date_range(start, periods=int(row.max()) + 1, freq=freq)
    present = np.zeros((len(times), len(ids)), dtype=bool)
    present[row, col] = True
    if present.sum() != len(df):
        dup = df[df.duplicated([SERIES_ID, TIMESTAMP], keep=False)].iloc[0]
        raise ValueError(
            f"duplicate row for series {dup[SERIES_ID]!r} at {dup[TIMESTAMP]}; "
            "each (series_id, timestamp) must appear once"
        )
    values = np.full(present.shape, np.nan)
    values[row, col] = pd.to_numeric(df[column]).to_numpy(dtype=float)
    return Matrix(times, np.asarray(ids, dtype=object), values, present, row, col)


# ---------------------------------------------------------------------- matrix features
def shift(a: np.ndarray, k: int) -> np.ndarray:
    """Rows moved down by ``k`` (``out[t] = a[t - k]``), NaN-padded at the top."""
    if k < 0:
        raise ValueError(f"shift must be >= 0 (no look-ahead), got {k}")
    if k == 0:
        return a.copy()
    out = np.full(a.shape, np.nan, dtype=float)
    if k < len(a):
        out[k:] = a[:-k]
    return out


def lag_features(a: np.ndarray, lags) -> dict[str, np.ndarray]:
    """``lag_k`` = the k-th most recent value at each origin (``lag_1`` = the origin's own).

    Parameters
    ----------
    a : ndarray
        ``(T, N)`` values.
    lags : iterable of int
        Lags, each >= 1.

    Returns
    -------
    dict
        ``{"lag_k": (T, N) array}``.
    """
    out = {}
    for k in lags:
        if int(k) < 1:
            raise ValueError(f"lags start at 1 (the value at the origin), got {k}")
        out[f"lag_{int(k)}"] = shift(a, int(k) - 1)
    return out


def rolling_features(a: np.ndarray, windows, stats=ROLLING_STATS) -> dict[str, np.ndarray]:
    """Rolling statistics over the ``w`` most recent steps, ending at the origin (inclusive).

    NaN readings are skipped; a window with no reading gives NaN (``std`` needs two).

    Parameters
    ----------
    a : ndarray
        ``(T, N)`` values.
    windows : iterable of int
        Window lengths in steps.
    stats : iterable of str
        Any of ``mean, std, min, max``.

    Returns
    -------
    dict
        ``{"roll_<stat>_<w>": (T, N) array}``.
    """
    unknown = set(stats) - set(ROLLING_STATS)
    if unknown:
        raise ValueError(f"unknown rolling stat(s) {sorted(unknown)}; choose from {ROLLING_STATS}")
    frame = pd.DataFrame(a)
    out = {}
    for w in windows:
        roll = frame.rolling(int(w), min_periods=1)
        for stat in stats:
            out[f"roll_{stat}_{int(w)}"] = getattr(roll, stat)().to_numpy(dtype=float)
    return out


def diff_features(a: np.ndarray, periods) -> dict[str, np.ndarray]:
    """``diff_k`` = value at the origin minus the value ``k`` steps earlier."""
    return {f"diff_{int(k)}": a - shift(a, int(k)) for k in periods}


def ewm_window(halflife: float, tol: float = 1e-3) -> int:
    """Steps after which an exponential weight with this half-life drops below ``tol``."""
    return int(np.ceil(halflife * np.log2(1 / tol))) + 1


def ewm_features(a: np.ndarray, halflives) -> dict[str, np.ndarray]:
    """Exponentially weighted mean ending at the origin, ``ewm_<halflife>``.

    The kernel is truncated at :func:`ewm_window` steps (weight < 0.1%) so the value depends
    only on a fixed stretch of history: forecasting from a trimmed history gives exactly the
    same feature as from the full one. NaN readings are skipped (weights renormalised).
    """
    out = {}
    observed = ~np.isnan(a)
    filled = np.where(observed, a, 0.0)
    for hl in halflives:
        decay = 0.5 ** (1.0 / float(hl))
        num = np.zeros(a.shape)
        den = np.zeros(a.shape)
        for k in range(min(ewm_window(hl), len(a))):
            w = decay**k
            num[k:] += w * filled[: len(a) - k]
            den[k:] += w * observed[: len(a) - k]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"ewm_{hl:g}"] = np.where(den > 0, num / den, np.nan)
    return out


def seasonal_lag(a: np.ndarray, season: int, h: int) -> np.ndarray:
    """Value one season before the target ``t + h`` (whole seasons back when ``h > season``).

    Returns a ``(T, N)`` array whose row ``t`` is ``a[t + h - season * ceil(h / season)]``.
    """
    back = int(season) * int(np.ceil(h / season))
    return shift(a, back - int(h))


def history_needed(lags=(), windows=(), diffs=(), halflives=(), seasonal=()) -> int:
    """Steps of history (ending at the origin) that fully determine these features.

    A target-aligned seasonal lag reaches furthest back at horizon step 1 (``season`` steps
    including the origin), so ``season`` covers every horizon.
    """
    spans = [1, *lags, *windows, *(k + 1 for k in diffs), *(ewm_window(h) for h in halflives)]
    return int(max([*spans, *seasonal]))


# ---------------------------------------------------------------------- long-frame wrapper
def add_lag_features(
    df: pd.DataFrame,
    freq: str,
    lags=(1, 2, 3),
    windows=(),
    diffs=(),
    halflives=(),
    column: str = VALUE,
) -> pd.DataFrame:
    """Return ``df`` with lag/rolling/diff/EWM feature columns, treating each row as an origin.

    Parameters
    ----------
    df : DataFrame
        Long frame ``series_id, timestamp, <column>``, regular at ``freq``.
    freq : str
        Sampling interval.
    lags, windows, diffs, halflives : iterables of int/float
        See :func:`lag_features`, :func:`rolling_features`, :func:`diff_features`,
        :func:`ewm_features`.
    column : str
        Column to derive features from.

    Returns
    -------
    DataFrame
        A copy of ``df`` with one new column per feature.
    """
    m = to_matrix(df, freq, column)
    feats = {
        **lag_features(m.values, lags),
        **rolling_features(m.values, windows),
        **diff_features(m.values, diffs),
        **ewm_features(m.values, halflives),
    }
    out = df.copy()
    for name, mat in feats.items():
        out[name] = mat[m.row_pos, m.col_pos]
    return out
