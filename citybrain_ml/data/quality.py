"""Data-quality findings that are suspicious rather than invalid: reported, never raised.

* :func:`duplicate_series` -- series with exactly the same values at every timestamp: a
  column exported twice, one detector mapped under two ids, a join that copied a station.
  A model would count the same evidence twice, and a graph would link a node to itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE


def duplicate_series(values: pd.DataFrame, column: str = VALUE) -> list[list[str]]:
    """Groups of series ids whose ``column`` is identical at every timestamp.

    Two series are duplicates when, on the union of their timestamps, they hold the same
    number or are both missing everywhere (so a copy that covers a shorter span is not one).
    Series with no observed value at all are left out: they are an error of their own. So
    are constant series (an event-grid cell with no event, a sensor stuck at one value):
    two of them agreeing says nothing about a copied export.

    Parameters
    ----------
    values : DataFrame
        Long frame ``series_id, timestamp, <column>``.
    column : str
        Column to compare (default ``value``).

    Returns
    -------
    list of list of str
        One list per group of two or more ids (sorted), groups ordered by their first id;
        empty when there are none.

    Examples
    --------
    >>> ts = pd.date_range("2024-01-01", periods=3, freq="h")
    >>> df = pd.DataFrame({"series_id": list("aaabbbccc"), "timestamp": list(ts) * 3,
    ...                    "value": [1, 2, 3, 1, 2, 3, 1, 2, 4.0]})
    >>> duplicate_series(df)
    [['a', 'b']]
    """
    wide = values.pivot(index=TIMESTAMP, columns=SERIES_ID, values=column)
    matrix = wide.to_numpy(dtype=float)
    missing = np.isnan(matrix)
    # +0.0 turns -0.0 into 0.0, so byte equality below is numeric equality
    filled = np.where(missing, 0.0, matrix) + 0.0
    groups: dict[bytes, list[str]] = {}
    for j, sid in enumerate(wide.columns):
        observed = matrix[~missing[:, j], j]
        if observed.size == 0 or np.all(observed == observed[0]):
            continue
        key = missing[:, j].tobytes() + filled[:, j].tobytes()
        groups.setdefault(key, []).append(str(sid))
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def describe_duplicates(groups: list[list[str]], limit: int = 5) -> str:
    """One warning line for :func:`duplicate_series` groups ('' when there are none)."""
    if not groups:
        return ""
    n = sum(len(g) for g in groups)
    shown = "; ".join(" = ".join(g) for g in groups[:limit])
    more = f"; +{len(groups) - limit} more group(s)" if len(groups) > limit else ""
    return (
        f"{n} series in {len(groups)} group(s) are exact duplicates (same value at every "
        f"timestamp): {shown}{more}. A column exported twice or a sensor under two ids?"
    )
