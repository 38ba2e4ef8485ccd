"""Per-series bookkeeping on long frames sorted by ``(series_id, timestamp)``, without groupby.

A city-scale scoring input has tens of millions of rows; hashing or Python-comparing every
``series_id`` (``groupby``, ``is_monotonic_increasing`` on strings, ``isin``) then costs more
than the forecast itself. In a frame sorted by series, each series is one contiguous block of
rows, so everything here reduces to comparing neighbouring ids -- done on Arrow arrays for
Arrow-backed strings (the dtype Parquet and pandas 3 give), on codes for categoricals and on
NumPy arrays otherwise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP


def is_sorted(df: pd.DataFrame) -> bool:
    """True when rows are ordered by ``(series_id, timestamp)`` (ties allowed).

    Parameters
    ----------
    df : DataFrame
        Long frame with ``series_id`` and a datetime ``timestamp``.

    Returns
    -------
    bool
        False also when ids cannot be compared (mixed types): sorting then decides.
    """
    n = len(df)
    if n < 2:
        return True
    try:
        ids = _comparable(df[SERIES_ID])
        if _lag_compare(ids, 1, "less").any():
            return False
    except (TypeError, ValueError):
        return False
    ts = _time_ints(df[TIMESTAMP])
    back = np.flatnonzero(ts[1:] < ts[:-1])
    if back.size == 0:
        return True
    # a step back in time is fine only where a new series starts (compared there only)
    return bool(_differ_at(ids, back).all())


def sorted_series_starts(df: pd.DataFrame) -> np.ndarray | None:
    """:func:`series_starts` when ``df`` is sorted by ``(series_id, timestamp)``, else None.

    One comparison of neighbouring ids (``!=``) finds the series boundaries; the ids are then
    in order when each boundary steps up, which needs the ids at the boundaries only --
    ``is_sorted`` then ``series_starts`` would compare every id three times. Ties in time
    are allowed, as in :func:`is_sorted`.
    """
    n = len(df)
    if n < 2:
        return np.zeros(min(n, 1), dtype=np.int64)
    try:
        ids = _comparable(df[SERIES_ID])
        change = _lag_compare(ids, 1, "not_equal")
        bounds = np.flatnonzero(change)
        if len(bounds) and not np.all(_at(ids, bounds + 1) > _at(ids, bounds)):
            return None
    except (TypeError, ValueError):
        return None
    ts = _time_ints(df[TIMESTAMP])
    back = np.flatnonzero(ts[1:] < ts[:-1])  # a step back in time: only where a series starts
    if len(back) and not change[back].all():
        return None
    return np.concatenate([[0], bounds + 1]).astype(np.int64)


def take_rows(df: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """``df.take(positions).reset_index(drop=True)`` for ascending ``positions``.

    Arrow-backed string columns of a file read in many row groups are chunked; Arrow's take
    on a chunked column first joins every chunk (a copy of the whole column), so those are
    taken chunk by chunk here.
    """
    out = df.take(positions) if not _chunked_strings(df) else _take_chunked(df, positions)
    return out.reset_index(drop=True)


def series_starts(df: pd.DataFrame) -> np.ndarray:
    """First row of each series in a frame sorted by series (ascending, ``int64``)."""
    if len(df) == 0:
        return np.zeros(0, dtype=np.int64)
    change = _lag_compare(_comparable(df[SERIES_ID]), 1, "not_equal")
    return np.concatenate([[0], np.flatnonzero(change) + 1]).astype(np.int64)


def tail_rows(df: pd.DataFrame, n: int, starts: np.ndarray | None = None) -> np.ndarray:
    """Positions of the rows among the last ``n`` of their series, in a frame sorted by series.

    Parameters
    ----------
    df : DataFrame
        Sorted by ``(series_id, timestamp)``.
    n : int
        Rows kept per series.
    starts : ndarray, optional
        :func:`series_starts` of ``df`` when already known.

    Returns
    -------
    ndarray of int64
        Ascending row positions (cost proportional to the rows kept, not to ``len(df)``).
    """
    if n < 1 or len(df) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = series_starts(df) if starts is None else starts
    ends = np.append(starts[1:], len(df))
    first = np.maximum(ends - n, starts)
    counts = ends - first
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(first, counts) + offsets


def tail_mask(df: pd.DataFrame, n: int, starts: np.ndarray | None = None) -> np.ndarray:
    """:func:`tail_rows` as a boolean row mask."""
    keep = np.zeros(len(df), dtype=bool)
    keep[tail_rows(df, n, starts)] = True
    return keep


def time_values(col: pd.Series) -> np.ndarray:
    """Timestamps as naive UTC ``datetime64`` (tz-aware columns are converted, not copied twice)."""
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        col = col.dt.tz_convert("UTC").dt.tz_localize(None)
    return col.to_numpy()


def as_naive_utc(ts: pd.Timestamp) -> np.datetime64:
    """A timestamp on the same scale as :func:`time_values` (naive UTC)."""
    ts = pd.Timestamp(ts)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_datetime64()


# ---------------------------------------------------------------------- helpers
def _comparable(col: pd.Series):
    """The ids as an array with fast vectorised comparisons."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        # categories order the ids exactly as sort_values does
        return col.cat.codes.to_numpy()
    arrow = getattr(col.array, "__arrow_array__", None)
    if arrow is not None:
        import pyarrow as pa

        return pa.array(col.array)  # zero-copy for Arrow-backed columns (maybe chunked)
    return col.to_numpy()


def _lag_compare(ids, lag: int, op: str) -> np.ndarray:
    """``op(ids[i + lag], ids[i])`` for every ``i`` with a row ``lag`` later, as booleans."""
    n = len(ids)
    if isinstance(ids, np.ndarray):
        later, earlier = ids[lag:], ids[: n - lag]
        out = later < earlier if op == "less" else later != earlier
        return np.asarray(out, dtype=bool)
    import pyarrow.compute as pc

    later, earlier = ids.slice(lag), ids.slice(0, n - lag)
    out = pc.less(later, earlier) if op == "less" else pc.not_equal(later, earlier)
    # a missing id never equals its neighbour (validation rejects them before this)
    return out.fill_null(op != "less").to_numpy(zero_copy_only=False)


def _differ_at(ids, pos: np.ndarray) -> np.ndarray:
    """``ids[pos + 1] != ids[pos]`` for a few positions only."""
    if isinstance(ids, np.ndarray):
        return np.asarray(ids[pos + 1] != ids[pos], dtype=bool)
    import pyarrow as pa
    import pyarrow.compute as pc

    later, earlier = ids.take(pa.array(pos + 1)), ids.take(pa.array(pos))
    return pc.not_equal(later, earlier).fill_null(True).to_numpy(zero_copy_only=False)


def _at(ids, pos: np.ndarray) -> np.ndarray:
    """``ids[pos]`` for a few ascending positions, as a NumPy array (comparable with ``>``)."""
    if isinstance(ids, np.ndarray):
        return ids[pos]
    return np.asarray(_take_arrow(ids, pos).to_numpy(zero_copy_only=False))


def _take_arrow(arr, pos: np.ndarray):
    """``arr.take(pos)`` for ascending ``pos``, chunk by chunk for a chunked array."""
    import pyarrow as pa

    if not isinstance(arr, pa.ChunkedArray):
        return arr.take(pa.array(pos))
    lengths = np.array([len(c) for c in arr.chunks], dtype=np.int64)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    cuts = np.searchsorted(pos, bounds)
    parts = [
        arr.chunk(j).take(pa.array(pos[cuts[j] : cuts[j + 1]] - bounds[j]))
        for j in range(len(lengths))
        if cuts[j + 1] > cuts[j]
    ]
    return pa.chunked_array(parts, type=arr.type)


def _chunked_strings(df: pd.DataFrame) -> list[str]:
    """Columns held as chunked Arrow arrays with more than one chunk."""
    out = []
    for name, col in df.items():
        values = getattr(col.array, "_pa_array", None)
        if values is not None and getattr(values, "num_chunks", 1) > 1:
            out.append(name)
    return out


def _take_chunked(df: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    chunked = _chunked_strings(df)
    out = df.drop(columns=chunked).take(positions)
    data = {}
    for name in df.columns:
        if name in chunked:
            arr = df[name].array
            try:
                data[name] = type(arr)(_take_arrow(arr._pa_array, positions), dtype=arr.dtype)
            except TypeError:  # an Arrow-backed array whose constructor takes no dtype
                data[name] = type(arr)(_take_arrow(arr._pa_array, positions))
        else:
            data[name] = out[name]
    index = out.index
    return pd.DataFrame({k: pd.Series(v, index=index) for k, v in data.items()}, index=index)


def _time_ints(col: pd.Series) -> np.ndarray:
    return time_values(col).view(np.int64)
