"""The one canonical data shape every loader returns and every model accepts.

* ``values``: long frame ``series_id, timestamp, value`` plus optional covariate columns,
  sorted by ``(series_id, timestamp)``, regular at ``freq``; missing targets are NaN.
* ``sensors``: optional table ``series_id, lat, lon, ...``.
* ``adjacency``: optional sparse edge list ``src, dst, weight`` (series ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

SERIES_ID = "series_id"
TIMESTAMP = "timestamp"
VALUE = "value"
LONG_COLUMNS = [SERIES_ID, TIMESTAMP, VALUE]

HORIZON_STEP = "horizon_step"
YHAT = "yhat"
FORECAST_COLUMNS = [SERIES_ID, TIMESTAMP, HORIZON_STEP, YHAT]

EDGE_COLUMNS = ["src", "dst", "weight"]


def interval_columns(level: int) -> tuple[str, str]:
    """Names of the lower/upper columns of a central ``level``% interval."""
    return f"yhat_lo_{int(level)}", f"yhat_hi_{int(level)}"


@dataclass
class SeriesDataset:
    """A validated set of series in long format with optional sensor metadata.

    Parameters
    ----------
    values : DataFrame
        Long frame ``series_id, timestamp, value`` (+ covariates).
    freq : str
        Pandas offset alias of the sampling interval (``"15min"``, ``"h"``, ``"D"``).
    sensors : DataFrame, optional
        One row per series: ``series_id, lat, lon, ...``.
    adjacency : DataFrame, optional
        Edge list ``src, dst, weight`` between series ids.
    name : str
        Short dataset name, used in run names and output paths.
    source : str
        Where the data came from (file path or URL), used in error messages and lineage.
    extras : dict
        Dataset-specific extras (e.g. masks for grid data).
    calendar : ServiceCalendar, optional
        When the series are observable (daily operating hours); set by validation
        (detected or given) and handed to every model's ``fit``.
    """

    values: pd.DataFrame
    freq: str
    sensors: pd.DataFrame | None = None
    adjacency: pd.DataFrame | None = None
    name: str = ""
    source: str = ""
    extras: dict = field(default_factory=dict)
    calendar: object | None = None

    @property
    def series_ids(self) -> list:
        return list(pd.unique(self.values[SERIES_ID]))

    @property
    def covariate_columns(self) -> list[str]:
        return [c for c in self.values.columns if c not in LONG_COLUMNS]

    def to_wide(self, column: str = VALUE) -> pd.DataFrame:
        """Timestamps x series matrix of one column (NaN where missing)."""
        return self.values.pivot(index=TIMESTAMP, columns=SERIES_ID, values=column)

    def adjacency_matrix(self) -> np.ndarray:
        """Dense ``(n, n)`` weight matrix in the order of :attr:`series_ids` (zeros if none)."""
        ids = self.series_ids
        mat = np.zeros((len(ids), len(ids)))
        if self.adjacency is None or self.adjacency.empty:
            return mat
        pos = {s: i for i, s in enumerate(ids)}
        edges = self.adjacency[self.adjacency["src"].isin(pos) & self.adjacency["dst"].isin(pos)]
        mat[edges["src"].map(pos).to_numpy(), edges["dst"].map(pos).to_numpy()] = edges["weight"]
        return mat

    def select(self, series_ids) -> SeriesDataset:
        """A copy restricted to ``series_ids`` (sensors and edges filtered too)."""
        keep = set(series_ids)
        values = self.values[self.values[SERIES_ID].isin(keep)].reset_index(drop=True)
        sensors = None if self.sensors is None else self.sensors[self.sensors[SERIES_ID].isin(keep)]
        adj = self.adjacency
        if adj is not None:
            adj = adj[adj["src"].isin(keep) & adj["dst"].isin(keep)].reset_index(drop=True)
        return SeriesDataset(
            values,
            self.freq,
            sensors,
            adj,
            self.name,
            self.source,
            dict(self.extras),
            self.calendar,
        )


def wide_to_long(wide: pd.DataFrame, value_name: str = VALUE) -> pd.DataFrame:
    """Turn a ``timestamps x series`` matrix into the sorted long format."""
    wide = wide.copy()
    wide.index.name = TIMESTAMP
    wide.columns.name = SERIES_ID
    long = wide.stack(future_stack=True).rename(value_name).reset_index()
    long = long[[SERIES_ID, TIMESTAMP, value_name]]
    return long.sort_values([SERIES_ID, TIMESTAMP], kind="stable").reset_index(drop=True)


def matrix_to_edges(matrix: np.ndarray, ids) -> pd.DataFrame:
    """Dense adjacency matrix -> sparse edge list (self-loops dropped, zeros dropped)."""
    ids = list(ids)
    src, dst = np.nonzero(matrix)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    return pd.DataFrame(
        {
            "src": [ids[i] for i in src],
            "dst": [ids[j] for j in dst],
            "weight": matrix[src, dst].astype(float),
        }
    )
