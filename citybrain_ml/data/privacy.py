"""Disclosure control for published grid outputs (forecasts, hotspot lists, counts).

Two guards:

* :func:`suppress_small_cells`: a cell with fewer than ``k`` events in the training window
  can point at individual people or addresses, so its outputs are either masked
  (``mode="suppress"``) or pooled with its neighbours (``mode="merge"``).
* :func:`assert_no_raw_coordinates`: refuse frames that look like they carry event-level
  coordinates.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import HORIZON_STEP, SERIES_ID, TIMESTAMP

#: columns that identify a row rather than carry a published value
KEY_COLUMNS = (SERIES_ID, TIMESTAMP, HORIZON_STEP, "origin", "period", "rank")
#: value columns that may be summed when cells are merged (counts and expected counts)
ADDITIVE_COLUMNS = ("value", "yhat", "expected_count", "count")

_CELL_ID = re.compile(r"^cell_(\d+)_(\d+)$")

#: column names treated as coordinates (case-insensitive)
COORDINATE_NAMES = frozenset(
    {"lat", "lon", "lng", "long", "latitude", "longitude", "x", "y", "easting", "northing"}
)
#: prefixes that declare a coordinate column to be a cell centroid
CENTROID_PREFIXES = ("centroid_", "cell_")


class PrivacyError(ValueError):
    """A frame would publish something the disclosure rules forbid."""


def _training_counts(counts_in_training: pd.Series, ids: pd.Series) -> pd.Series:
    if not isinstance(counts_in_training, pd.Series):
        raise TypeError("counts_in_training must be a Series indexed by series_id")
    if counts_in_training.index.duplicated().any():
        dup = counts_in_training.index[counts_in_training.index.duplicated()][0]
        raise ValueError(f"counts_in_training has series_id {dup!r} more than once")
    # a cell absent from the training counts had no events there: count 0 (suppressed)
    return ids.map(counts_in_training).fillna(0).astype(float)


def _value_columns(frame: pd.DataFrame, value_cols) -> list[str]:
    if value_cols is not None:
        missing = [c for c in value_cols if c not in frame.columns]
        if missing:
            raise ValueError(f"value columns {missing} not in frame")
        return list(value_cols)
    return [
        c
        for c in frame.columns
        if c not in KEY_COLUMNS
        and pd.api.types.is_numeric_dtype(frame[c])
        and not pd.api.types.is_bool_dtype(frame[c])
    ]


def suppress_small_cells(
    frame: pd.DataFrame,
    counts_in_training: pd.Series,
    k: int = 5,
    mode: str = "suppress",
    sensors: pd.DataFrame | None = None,
    value_cols=None,
    drop: bool = False,
    block: int = 2,
) -> pd.DataFrame:
    """Mask or pool the outputs of cells with fewer than ``k`` training-window events.

    ``mode="suppress"``: rows of cells whose training count is ``< k`` keep their keys but
    every value column becomes NaN and ``suppressed`` is True (or the rows are dropped with
    ``drop=True``). A cell with exactly ``k`` events is published.

    ``mode="merge"``: cells are grouped into ``block x block`` parent blocks by grid position
    (``cell_{row}_{col}`` -> parent ``block{block}_{row // block}_{col // block}``, or the
    ``row``/``col`` columns of ``sensors``). Every block that contains at least one small
    cell is published *only* as the block (all its cells pooled, so the small cell cannot be
    recovered by subtracting its neighbours from a block total): additive columns
    (:data:`ADDITIVE_COLUMNS` present in ``value_cols``) are summed over the member cells,
    other value columns (e.g. interval bounds, which do not add up) become NaN. A block whose
    own training count (sum over members) is still ``< k`` is then suppressed as above.
    Blocks with no small cell are left at full resolution.

    Parameters
    ----------
    frame : DataFrame
        Output to publish: ``series_id`` plus key columns (``timestamp``, ``horizon_step``,
        ``origin``, ``period``) and value columns.
    counts_in_training : Series
        Events per ``series_id`` in the training window; ids absent from it count as 0.
    k : int
        Minimum events for a cell to be published on its own.
    mode : {"suppress", "merge"}
        See above.
    sensors : DataFrame, optional
        ``series_id, row, col`` grid positions, needed for ``mode="merge"`` when ids are not
        of the form ``cell_{row}_{col}``.
    value_cols : list of str, optional
        Columns to mask/pool; default every numeric column that is not a key column.
    drop : bool
        Drop suppressed rows instead of masking them.
    block : int
        Side of the parent block in cells for ``mode="merge"``.

    Returns
    -------
    DataFrame
        The frame with a boolean ``suppressed`` column (and for ``merge`` a ``merged``
        column, ``True`` for block rows whose ``series_id`` is the parent id).
    """
    if SERIES_ID not in frame.columns:
        raise ValueError(f"frame has no {SERIES_ID!r} column")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    values = _value_columns(frame, value_cols)
    if mode == "suppress":
        counts = _training_counts(counts_in_training, frame[SERIES_ID])
        return _mask(frame.copy(), (counts < k).to_numpy(), values, drop)
    if mode == "merge":
        return _merge(frame, counts_in_training, k, sensors, values, drop, block)
    raise ValueError(f"mode must be 'suppress' or 'merge', got {mode!r}")


def _mask(frame: pd.DataFrame, small: np.ndarray, values: list[str], drop: bool) -> pd.DataFrame:
    if drop:
        return frame.loc[~small].assign(suppressed=False).reset_index(drop=True)
    for col in values:
        frame[col] = frame[col].astype(float).where(~small)
    frame["suppressed"] = small
    return frame


def _grid_positions(ids: pd.Index, sensors: pd.DataFrame | None) -> pd.DataFrame:
    """``series_id -> (row, col)`` from ``sensors`` or ``cell_{row}_{col}`` ids."""
    if sensors is not None:
        missing = [c for c in (SERIES_ID, "row", "col") if c not in sensors.columns]
        if missing:
            raise ValueError(f"sensors lacks columns {missing}")
        pos = sensors.set_index(SERIES_ID)[["row", "col"]].reindex(ids)
        if pos.isna().any(axis=None):
            raise ValueError(f"sensors has no row/col for {pos.index[pos.isna().any(axis=1)][0]!r}")
        return pos.astype(int)
    parsed = [_CELL_ID.match(str(i)) for i in ids]
    bad = [i for i, m in zip(ids, parsed, strict=True) if m is None]
    if bad:
        raise ValueError(
            f"series_id {bad[0]!r} is not 'cell_{{row}}_{{col}}'; pass sensors with row/col"
        )
    rows = [(int(m.group(1)), int(m.group(2))) for m in parsed]
    return pd.DataFrame(rows, index=ids, columns=["row", "col"])


def _merge(frame, counts_in_training, k, sensors, values, drop, block) -> pd.DataFrame:
    if block < 2:
        raise ValueError(f"block must be >= 2, got {block}")
    ids = pd.Index(pd.unique(frame[SERIES_ID]))
    pos = _grid_positions(ids, sensors)
    parent = (
        f"block{block}_"
        + (pos["row"] // block).astype(str)
        + "_"
        + (pos["col"] // block).astype(str)
    )
    counts = _training_counts(counts_in_training, pd.Series(ids, index=ids))
    # a block is pooled when any of its cells in this frame is small
    pooled_blocks = set(parent[counts < k])
    in_pooled = frame[SERIES_ID].map(parent).isin(pooled_blocks).to_numpy()
    keep = frame.loc[~in_pooled].assign(merged=False, suppressed=False)
    pooled = _pool(frame.loc[in_pooled], parent, values)
    # block count over the member cells present in the frame (conservative: absent cells add 0)
    block_counts = counts.groupby(parent).sum()
    small = (pooled[SERIES_ID].map(block_counts) < k).to_numpy()
    pooled = _mask(pooled.assign(merged=True), small, values, drop)
    out = pd.concat([keep, pooled], ignore_index=True)
    keys = [c for c in KEY_COLUMNS if c in out.columns]
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def _pool(part: pd.DataFrame, parent: pd.Series, values: list[str]) -> pd.DataFrame:
    """Sum additive value columns over the members of each parent block."""
    # a rank refers to single cells, so pooled rows drop it
    keys = [c for c in KEY_COLUMNS if c in part.columns and c not in (SERIES_ID, "rank")]
    additive = [c for c in values if c in ADDITIVE_COLUMNS]
    grouped = part.assign(**{SERIES_ID: part[SERIES_ID].map(parent)})
    # min_count=1: a block whose members are all NaN stays NaN rather than 0
    pooled = grouped.groupby([SERIES_ID, *keys], as_index=False, sort=True, dropna=False)[
        additive
    ].sum(min_count=1)
    for col in values:
        if col not in additive:
            pooled[col] = np.nan  # not additive (e.g. interval bounds): cannot be pooled
    return pooled


def assert_no_raw_coordinates(frame: pd.DataFrame, name: str = "<frame>") -> None:
    """Raise :class:`PrivacyError` if ``frame`` may carry event-level coordinates.

    Rule:

    1. A column whose name (case-insensitive) is one of :data:`COORDINATE_NAMES` (``lat``,
       ``lon``, ``latitude``, ``longitude``, ``x``, ``y``, ...) is a raw coordinate and is
       refused.
    2. The same names with a :data:`CENTROID_PREFIXES` prefix (``centroid_lat``,
       ``cell_x``) declare cell centroids and are allowed, but only if the frame has a
       ``series_id`` column and every ``series_id`` has a single value of each such column
       (a centroid is fixed per cell; varying values mean per-event coordinates).

    Parameters
    ----------
    frame : DataFrame
        Frame about to be published or logged.
    name : str
        Name used in the error message (file or artifact name).

    Raises
    ------
    PrivacyError
        Naming the offending column(s).
    """
    raw = [c for c in frame.columns if str(c).strip().lower() in COORDINATE_NAMES]
    if raw:
        raise PrivacyError(
            f"{name}: columns {raw} look like raw coordinates; publish cell ids, or cell "
            f"centroids named with a prefix from {CENTROID_PREFIXES} (e.g. 'centroid_lat')"
        )
    centroids = [c for c in frame.columns if _is_centroid_column(str(c))]
    if not centroids:
        return
    if SERIES_ID not in frame.columns:
        raise PrivacyError(
            f"{name}: centroid columns {centroids} need a {SERIES_ID!r} column to show "
            f"they are per cell"
        )
    varying = frame.groupby(SERIES_ID)[centroids].nunique(dropna=False).max()
    varying = list(varying[varying > 1].index)
    if varying:
        raise PrivacyError(
            f"{name}: centroid columns {varying} take several values within one "
            f"{SERIES_ID}; that is event-level data, not cell centroids"
        )


def _is_centroid_column(column: str) -> bool:
    low = column.strip().lower()
    return any(
        low.startswith(prefix) and low[len(prefix) :] in COORDINATE_NAMES
        for prefix in CENTROID_PREFIXES
    )
