"""Loaders for the incident datasets under ``<root>/incidents/``.

Two kinds: a ready-made accident-risk grid (series per cell) and raw event tables
(``timestamp, lat, lon, type, severity``) to aggregate with
:func:`citybrain_ml.data.grid.events_to_grid`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.data.events import check_columns
from citybrain_ml.data.grid import rook_edges
from citybrain_ml.data.paths import dataset_file
from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE, SeriesDataset
from citybrain_ml.data.validation import validate_frame

WEATHER_LABELS = ["clear", "cloudy", "rain", "snow", "mist"]
EVENT_COLUMNS = [TIMESTAMP, "lat", "lon", "type", "severity"]
#: role -> column of the two crime files (the ``events`` dataset takes the same mapping)
CHICAGO_MAPPING = {
    "time": "datetime",
    "latitude": "latitude",
    "longitude": "longitude",
    "category": "primary_type",
}
TORONTO_MAPPING = {
    "time": "occurrencedate",
    "hour": "occurrencehour",
    "latitude": "Lat",
    "longitude": "Long",
    "category": "MCI",
    "neighbourhood": "Neighbourhood",
    "premises_type": "premises_type",
}


def load_chicago_accident_grid(
    root: str | Path | None = None, masked_only: bool = False, start: str = "2016-02-01"
) -> SeriesDataset:
    """GSNet/MGHSTN Chicago accident risk on a 20x20 grid, hourly, 2016-02..2016-09.

    Parameters
    ----------
    root : str or Path, optional
        Data root holding ``incidents/chicago_accident_risk_gsnet_grid/``.
    masked_only : bool
        Keep only the cells of ``risk_mask`` (the benchmark evaluates RMSE on those).
    start : str
        Timestamp of time index 0 (used when the file does not store its own start).

    Returns
    -------
    SeriesDataset
        Series ``r{row}_c{col}`` (zero-padded), freq ``h``, value = severity-weighted
        accident risk; covariates inflow/outflow (taxi, per cell), temperature (K),
        holiday (0/1), weather_clear/cloudy/rain/snow/mist (one-hot, city-wide; all
        zero in the 33 hours the source has no weather);
        ``sensors`` with row/col/in_mask; rook ``adjacency``; ``extras["mask"]`` = the
        (rows, cols) risk mask.
    """
    path = dataset_file(
        root, "incidents", "chicago_accident_risk_gsnet_grid", "chicago_risk_20x20_hourly.npz"
    )
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    risk = arrays["risk"]
    n_time, n_rows, n_cols = risk.shape
    # bundled slices store which rows/cols/start of the full grid they hold
    row_index = arrays.get("row_index", np.arange(n_rows))
    col_index = arrays.get("col_index", np.arange(n_cols))
    start = str(arrays["start"]) if "start" in arrays else start
    timestamps = pd.date_range(start, periods=n_time, freq="h")
    ids = _grid_ids(row_index, col_index)
    values = _grid_values(arrays, ids, timestamps)
    values, freq = validate_frame(values, str(path), "h", first_row=None)
    mask = arrays["risk_mask"].astype(bool)
    rows, cols = np.divmod(np.arange(n_rows * n_cols), n_cols)
    sensors = pd.DataFrame(
        {
            SERIES_ID: ids,
            "row": row_index[rows],
            "col": col_index[cols],
            "in_mask": mask.ravel(),
        }
    )
    extras = {"mask": mask, "row_index": row_index, "col_index": col_index}
    extras.update({k: arrays[k] for k in ("grid_node_map", "road_adj", "risk_adj") if k in arrays})
    ds = SeriesDataset(
        values,
        freq,
        sensors=sensors,
        adjacency=rook_edges(ids, n_rows, n_cols),
        name="chicago_accident_grid",
        source=str(path),
        extras=extras,
    )
    return ds.select(ids[mask.ravel()]) if masked_only else ds


def _grid_ids(row_index: np.ndarray, col_index: np.ndarray) -> np.ndarray:
    # fixed two-digit padding so slices name cells exactly as the full 20x20 grid does
    return np.array([f"r{int(r):02d}_c{int(c):02d}" for r in row_index for c in col_index])


def _grid_values(arrays: dict, ids: np.ndarray, timestamps: pd.DatetimeIndex) -> pd.DataFrame:
    n_time = len(timestamps)
    n_cells = len(ids)

    def per_cell(name: str) -> np.ndarray:  # (T, R, C) -> series-major flat
        return arrays[name].reshape(n_time, n_cells).T.ravel()

    def city_wide(column: np.ndarray) -> np.ndarray:  # (T,) -> repeated per cell
        return np.tile(column.astype(np.float32), n_cells)

    values = pd.DataFrame(
        {
            SERIES_ID: np.repeat(ids, n_time),
            TIMESTAMP: np.tile(timestamps.to_numpy(), n_cells),
            VALUE: per_cell("risk").astype(float),
            "inflow": per_cell("inflow"),
            "outflow": per_cell("outflow"),
            "temperature": city_wide(arrays["temperature"]),
            "holiday": city_wide(arrays["holiday"]),
        }
    )
    for i, label in enumerate(WEATHER_LABELS):
        values[f"weather_{label}"] = city_wide(arrays["weather_onehot"][:, i])
    return values


def load_chicago_crime(root: str | Path | None = None) -> pd.DataFrame:
    """Chicago crimes 2016-2017 (THEFT, BATTERY, ASSAULT, CRIMINAL DAMAGE) as an event table.

    Parameters
    ----------
    root : str or Path, optional
        Data root holding ``incidents/chicago_crime_2016_2017/``.

    Returns
    -------
    DataFrame
        ``timestamp`` (Chicago local time, naive), ``lat``, ``lon``, ``type``,
        ``severity`` (1.0), sorted by time. Rows without coordinates are dropped with a
        warning.
    """
    path = dataset_file(
        root, "incidents", "chicago_crime_2016_2017", "chicago_crime_2016_2017.csv.gz"
    )
    raw = pd.read_csv(path)
    # another city's file under this name must say what it lacks, not KeyError 'primary_type'
    check_columns(raw.columns, CHICAGO_MAPPING, path)
    events = pd.DataFrame(
        {
            TIMESTAMP: pd.to_datetime(raw["datetime"]),
            "lat": raw["latitude"].astype(float),
            "lon": raw["longitude"].astype(float),
            "type": raw["primary_type"].astype(str),
            "severity": 1.0,
        }
    )
    return _drop_without_coordinates(events, path)


def load_toronto_mci(root: str | Path | None = None) -> pd.DataFrame:
    """Toronto Police major crime indicators 2014-2021 (+ a few older) as an event table.

    The file's train/test split is random, so both parts are concatenated (column
    ``part`` says which) and users split by time themselves.

    Parameters
    ----------
    root : str or Path, optional
        Data root holding ``incidents/toronto_mci/``.

    Returns
    -------
    DataFrame
        ``timestamp`` (Toronto local time, naive, hour resolution), ``lat``, ``lon``,
        ``type`` (MCI category), ``severity`` (1.0), ``neighbourhood``, ``premises_type``,
        ``part``; sorted by time. Rows without coordinates are dropped with a warning.
    """
    parts = []
    for part in ("train", "test"):
        path = dataset_file(root, "incidents", "toronto_mci", f"{part}.csv.gz")
        raw = pd.read_csv(path)
        check_columns(raw.columns, TORONTO_MAPPING, path)
        parts.append(_toronto_events(raw).assign(part=part))
    events = pd.concat(parts, ignore_index=True)
    return _drop_without_coordinates(events, path.parent)


def _toronto_events(raw: pd.DataFrame) -> pd.DataFrame:
    # occurrencedate is local midnight written in UTC (04:00 or 05:00 +00 depending on DST)
    local_day = (
        pd.to_datetime(raw["occurrencedate"], utc=True)
        .dt.tz_convert("America/Toronto")
        .dt.tz_localize(None)
        .dt.normalize()
    )
    return pd.DataFrame(
        {
            TIMESTAMP: local_day + pd.to_timedelta(raw["occurrencehour"], unit="h"),
            "lat": raw["Lat"].astype(float),
            "lon": raw["Long"].astype(float),
            "type": raw["MCI"].astype(str),
            "severity": 1.0,
            "neighbourhood": raw["Neighbourhood"].astype(str),
            "premises_type": raw["premises_type"].astype(str),
        }
    )


def _drop_without_coordinates(events: pd.DataFrame, source: Path) -> pd.DataFrame:
    # exported crime tables write 0 (or nothing) where the location was withheld
    bad = events["lat"].isna() | events["lon"].isna() | (events["lat"] == 0) | (events["lon"] == 0)
    if bad.any():
        warnings.warn(
            f"{source}: dropped {int(bad.sum())} of {len(events)} events without coordinates",
            stacklevel=3,
        )
    events = events[~bad].sort_values(TIMESTAMP, kind="stable")
    return events.reset_index(drop=True)
