"""Explicit handling of gaps (missing values) in long ``series_id, timestamp, value`` frames.

Nothing here fills a value silently:

* :func:`gap_mask` marks every missing value with the length of the gap it belongs to;
* :func:`gap_summary` reports per series how much is missing and the longest gap;
* :func:`interpolate_short_gaps` fills only gaps of at most ``max_gap`` steps that have an
  observed value on both sides, only in the columns it is told to, never at or after a
  ``protect_from`` timestamp for the target column (test targets stay as observed), and adds
  a ``<column>_imputed`` flag for every filled column.

Frames must be on a regular grid per series (as :func:`citybrain_ml.data.validate_long`
produces): a gap is a run of consecutive rows with NaN, not a missing row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE

IMPUTED_SUFFIX = "_imputed"


def _check(df: pd.DataFrame, columns: Sequence[str]) -> None:
    lacking = [c for c in (SERIES_ID, TIMESTAMP, *columns) if c not in df.columns]
    if lacking:
        raise ValueError(f"frame lacks column(s) {lacking} (columns: {list(df.columns)})")
    if not df[[SERIES_ID, TIMESTAMP]].apply(lambda s: s.is_monotonic_increasing).all():
        order = df.sort_values([SERIES_ID, TIMESTAMP], kind="stable").index
        if not order.equals(df.index):
            raise ValueError("frame must be sorted by (series_id, timestamp); sort it first")


def _run_lengths(missing: pd.Series, series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Gap id (0 = observed) and gap length for each row; runs never cross series."""
    m = missing.to_numpy(dtype=bool)
    new_series = series.ne(series.shift()).to_numpy()
    starts = m & (new_series | ~np.roll(m, 1))
    if len(m):
        starts[0] = m[0]
    gap_id = np.where(m, np.cumsum(starts), 0)
    counts = np.bincount(gap_id)
    length = np.where(m, counts[gap_id], 0)
    return gap_id, length


def gap_mask(df: pd.DataFrame, column: str = VALUE) -> pd.DataFrame:
    """Mark missing values of ``column`` with the gap they belong to.

    Parameters
    ----------
    df : DataFrame
        Long frame sorted by ``series_id, timestamp`` on a regular grid.
    column : str
        Column to inspect.

    Returns
    -------
    DataFrame
        ``series_id, timestamp, is_missing, gap_id, gap_length``: ``gap_id`` numbers each run
        of consecutive missing rows (0 for observed rows), ``gap_length`` is its length in steps.
    """
    _check(df, [column])
    missing = df[column].isna()
    gap_id, length = _run_lengths(missing, df[SERIES_ID])
    return pd.DataFrame(
        {
            SERIES_ID: df[SERIES_ID].to_numpy(),
            TIMESTAMP: df[TIMESTAMP].to_numpy(),
            "is_missing": missing.to_numpy(),
            "gap_id": gap_id,
            "gap_length": length,
        }
    )


def gap_summary(df: pd.DataFrame, column: str = VALUE) -> pd.DataFrame:
    """Per series: rows, missing rows, share missing, number of gaps and the longest gap.

    Parameters
    ----------
    df : DataFrame
        Long frame sorted by ``series_id, timestamp``.
    column : str
        Column to inspect.

    Returns
    -------
    DataFrame
        ``series_id, n_rows, n_missing, missing_share, n_gaps, longest_gap``.
    """
    mask = gap_mask(df, column)
    grouped = mask.groupby(SERIES_ID, sort=False)
    out = grouped.agg(
        n_rows=("is_missing", "size"),
        n_missing=("is_missing", "sum"),
        longest_gap=("gap_length", "max"),
    )
    out["n_gaps"] = grouped["gap_id"].agg(lambda g: g[g > 0].nunique())
    out["missing_share"] = out["n_missing"] / out["n_rows"]
    cols = ["n_rows", "n_missing", "missing_share", "n_gaps", "longest_gap"]
    return out[cols].reset_index()


def interpolate_short_gaps(
    df: pd.DataFrame,
    max_gap: int,
    columns: Sequence[str] = (VALUE,),
    protect_from=None,
) -> pd.DataFrame:
    """Linearly interpolate gaps of at most ``max_gap`` steps, flagging what was filled.

    Parameters
    ----------
    df : DataFrame
        Long frame sorted by ``series_id, timestamp`` on a regular grid per series.
    max_gap : int
        Longest run of consecutive missing values to fill (steps); longer gaps stay NaN
        entirely (not partly filled). ``0`` fills nothing.
    columns : sequence of str
        Columns to fill; every other column is left untouched.
    protect_from : timestamp, optional
        Start of the test period: ``value`` (the target) is never filled at or after it, and
        target gaps that straddle it stay NaN, so no test target and no training value derived
        from a test target is invented. Covariate columns are filled everywhere.

    Returns
    -------
    DataFrame
        A copy with gaps filled and a bool ``<column>_imputed`` column per filled column.
    """
    if int(max_gap) < 0:
        raise ValueError(f"max_gap must be >= 0, got {max_gap}")
    _check(df, columns)
    out = df.copy()
    cutoff = None if protect_from is None else pd.Timestamp(protect_from)
    for col in columns:
        fill = _fillable(out, col, int(max_gap))
        if col == VALUE and cutoff is not None:
            fill &= ~_touches(out, fill, cutoff)
        interp = out.groupby(SERIES_ID, sort=False)[col].transform(
            lambda s: s.interpolate(method="linear", limit_area="inside")
        )
        out[col] = out[col].where(~fill, interp)
        out[col + IMPUTED_SUFFIX] = fill
    return out


def _fillable(df: pd.DataFrame, column: str, max_gap: int) -> np.ndarray:
    """Missing rows in gaps of <= max_gap steps with an observed value on both sides."""
    missing = df[column].isna()
    gap_id, length = _run_lengths(missing, df[SERIES_ID])
    series = df[SERIES_ID]
    observed = df[column].notna()
    # a gap is bounded when its series has an observed value before and after it
    before = observed.groupby(series, sort=False).cummax().to_numpy()
    after = observed[::-1].groupby(series[::-1], sort=False).cummax()[::-1].to_numpy()
    return missing.to_numpy() & (length <= max_gap) & before & after & (gap_id > 0)


def _touches(df: pd.DataFrame, fill: np.ndarray, cutoff: pd.Timestamp) -> np.ndarray:
    """Rows of gaps that end at or after ``cutoff`` (their right neighbour is a test value)."""
    gap_id, _ = _run_lengths(pd.Series(fill, index=df.index), df[SERIES_ID])
    ts = pd.DatetimeIndex(df[TIMESTAMP])
    if ts.tz is not None and cutoff.tzinfo is None:
        cutoff = cutoff.tz_localize(ts.tz)
    late = fill & (ts.to_numpy() >= cutoff.to_datetime64())
    # the observed value right after the gap decides: it must lie before the cutoff
    step_after = df.groupby(SERIES_ID, sort=False)[TIMESTAMP].shift(-1)
    next_in_test = fill & (pd.DatetimeIndex(step_after).to_numpy() >= cutoff.to_datetime64())
    bad_ids = np.unique(gap_id[late | next_in_test])
    return np.isin(gap_id, bad_ids[bad_ids > 0])
