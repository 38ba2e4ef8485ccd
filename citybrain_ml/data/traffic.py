"""Loaders for the traffic datasets under ``<root>/traffic/``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.data.paths import dataset_file
from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE, SeriesDataset, matrix_to_edges
from citybrain_ml.data.validation import validate_frame


def matrix_to_long(matrix: np.ndarray, ids, timestamps: pd.DatetimeIndex) -> pd.DataFrame:
    """``(T, N)`` matrix -> long frame, series-major (already sorted by series, time)."""
    ids = np.asarray(ids)
    n_time, n_series = matrix.shape
    return pd.DataFrame(
        {
            SERIES_ID: np.repeat(ids, n_time),
            TIMESTAMP: np.tile(timestamps.to_numpy(), n_series),
            VALUE: np.asarray(matrix, dtype=float).T.ravel(),
        }
    )


def _finish(values, freq, source, name, missing_value=None, **kwargs) -> SeriesDataset:
    values, freq = validate_frame(
        values, source=str(source), freq=freq, missing_value=missing_value, first_row=None
    )
    return SeriesDataset(values, freq, name=name, source=str(source), **kwargs)


def load_sz_taxi(
    root: str | Path | None = None, start: str = "2015-01-01", missing_value: float | None = None
) -> SeriesDataset:
    """SZ-taxi (T-GCN): taxi speed (km/h) on 156 Shenzhen roads, every 15 min, January 2015.

    Parameters
    ----------
    root : str or Path, optional
        Data root holding ``traffic/sz_taxi/``; see :func:`citybrain_ml.data.paths.resolve_root`.
    start : str
        Timestamp of the first row (the file has none; T-GCN documents 2015-01-01).
    missing_value : float, optional
        Sentinel to turn into NaN. Default None: the T-GCN protocol keeps the zeros
        (some roads report 0 km/h for hours) as observed values.

    Returns
    -------
    SeriesDataset
        Series ``road_000``..``road_155`` in matrix column order, freq ``15min``,
        0/1 adjacency from ``sz_adj.csv``.
    """
    path = dataset_file(root, "traffic", "sz_taxi", "sz_speed_stcgcn.npz")
    with np.load(path) as npz:
        matrix = npz["data"][:, :, 0]
        # bundled slices keep the original column numbers so ids match the full data
        columns = npz["road_index"] if "road_index" in npz.files else np.arange(matrix.shape[1])
    ids = [f"road_{int(c):03d}" for c in columns]
    timestamps = pd.date_range(start, periods=matrix.shape[0], freq="15min")
    adj = pd.read_csv(path.with_name("sz_adj.csv"), header=None).to_numpy(dtype=float)
    _check_square(adj, len(ids), path.with_name("sz_adj.csv"))
    return _finish(
        matrix_to_long(matrix, ids, timestamps),
        "15min",
        path,
        "sz_taxi",
        missing_value,
        adjacency=matrix_to_edges(adj, ids),
    )


def load_los_loop(
    root: str | Path | None = None, start: str = "2012-03-01", missing_value: float | None = 0
) -> SeriesDataset:
    """Los-loop (T-GCN): loop-detector speed (mph), 207 METR-LA sensors, every 5 min, 1 week.

    Parameters
    ----------
    root : str or Path, optional
        Data root holding ``traffic/los_loop/``.
    start : str
        Timestamp of the first row (T-GCN documents 2012-03-01).
    missing_value : float, optional
        Sentinel for "no reading"; default 0 (loop detectors report 0 when down) -> NaN.

    Returns
    -------
    SeriesDataset
        Series named by METR-LA sensor id (file header order), freq ``5min``, weighted
        adjacency from ``los_adj.csv``.
    """
    path = dataset_file(root, "traffic", "los_loop", "los_speed.csv")
    wide = pd.read_csv(path)
    ids = [str(c) for c in wide.columns]
    timestamps = pd.date_range(start, periods=len(wide), freq="5min")
    adj_path = path.with_name("los_adj.csv")
    adj = pd.read_csv(adj_path, header=None).to_numpy(dtype=float)
    _check_square(adj, len(ids), adj_path)
    return _finish(
        matrix_to_long(wide.to_numpy(dtype=float), ids, timestamps),
        "5min",
        path,
        "los_loop",
        missing_value,
        adjacency=matrix_to_edges(adj, ids),
    )


def load_bengaluru_metro(root: str | Path | None = None, kind: str = "entries") -> SeriesDataset:
    """Bengaluru metro (BMRCL): hourly entries or exits per station, Aug-Sep 2025.

    The grid is every hour from the first to the last day for every station. Missing
    values are filled deliberately:

    * an hour without a row on a day the station has rows -> 0 (no passengers recorded);
    * a whole day without rows for the station -> NaN. This covers the Aug 19-31 gap
      (no data released) and days before a station opened (Yellow Line, Aug 2025), which
      are unknown/not-applicable rather than zero demand.

    Parameters
    ----------
    root : str or Path, optional
        Data root holding ``traffic/bengaluru_metro_bmrcl/``.
    kind : {"entries", "exits"}

    Returns
    -------
    SeriesDataset
        Series named by station, freq ``h``; ``sensors`` lists station codes;
        ``extras["first_day"]`` maps station -> first day with data.
    """
    files = {"entries": "station-hourly.parquet", "exits": "station-hourly-exits.parquet"}
    if kind not in files:
        raise ValueError(f"kind must be one of {sorted(files)}, got {kind!r}")
    path = dataset_file(root, "traffic", "bengaluru_metro_bmrcl", files[kind])
    raw = pd.read_parquet(path)
    day = pd.to_datetime(raw["Date"])
    raw = pd.DataFrame(
        {
            SERIES_ID: raw["Station"].astype(str),
            "day": day,
            TIMESTAMP: day + pd.to_timedelta(raw["Hour"], unit="h"),
            VALUE: raw["Ridership"].astype(float),
        }
    )
    values = _metro_grid(raw)
    return _finish(
        values,
        "h",
        path,
        f"bengaluru_metro_{kind}",
        sensors=_metro_sensors(path.with_name("station-codes.csv"), values),
        extras={"first_day": raw.groupby(SERIES_ID)["day"].min().to_dict()},
    )


def _metro_grid(raw: pd.DataFrame) -> pd.DataFrame:
    stations = np.sort(raw[SERIES_ID].unique())
    hours = pd.date_range(raw["day"].min(), raw["day"].max() + pd.Timedelta(hours=23), freq="h")
    full = pd.DataFrame(
        {
            SERIES_ID: np.repeat(stations, len(hours)),
            TIMESTAMP: np.tile(hours.to_numpy(), len(stations)),
        }
    )
    full["day"] = full[TIMESTAMP].dt.normalize()
    full = full.merge(raw[[SERIES_ID, TIMESTAMP, VALUE]], on=[SERIES_ID, TIMESTAMP], how="left")
    operating = raw[[SERIES_ID, "day"]].drop_duplicates().assign(_operating=True)
    full = full.merge(operating, on=[SERIES_ID, "day"], how="left")
    fill_zero = full[VALUE].isna() & full["_operating"].eq(True)
    full.loc[fill_zero, VALUE] = 0.0
    return full[[SERIES_ID, TIMESTAMP, VALUE]]


def _metro_sensors(codes_path: Path, values: pd.DataFrame) -> pd.DataFrame:
    stations = pd.DataFrame({SERIES_ID: pd.unique(values[SERIES_ID])})
    if not codes_path.exists():
        return stations
    codes = pd.read_csv(codes_path, sep=";")
    joined = codes.groupby("name")["code"].agg(lambda c: ",".join(sorted(c)))
    stations["codes"] = stations[SERIES_ID].map(joined)
    return stations


I94_COVARIATES = ["temp", "rain_1h", "snow_1h", "clouds_all", "holiday"]


def load_i94(root: str | Path | None = None) -> SeriesDataset:
    """Metro Interstate I-94 westbound hourly traffic volume with weather and holidays.

    Cleaning, each for a reason in the raw file:

    * duplicate timestamps (one row per weather condition) -> the first row is kept; the
      traffic volume is identical within a timestamp;
    * gaps (hours to days) -> NaN rows on the hourly grid;
    * ``holiday`` is only set on the 00:00 row of a holiday -> spread to the whole day as 0/1;
    * ``temp == 0`` Kelvin (sensor error) -> NaN.

    Parameters
    ----------
    root : str or Path, optional
        Data root holding ``traffic/metro_interstate_i94/``.

    Returns
    -------
    SeriesDataset
        One series ``i94_westbound``, freq ``h``, covariates temp (K), rain_1h, snow_1h
        (mm), clouds_all (%), holiday (0/1).
    """
    path = dataset_file(
        root, "traffic", "metro_interstate_i94", "Metro_Interstate_Traffic_Volume.csv"
    )
    raw = pd.read_csv(path)
    ts = pd.to_datetime(raw["date_time"])
    holiday_days = set(ts[raw["holiday"].notna() & (raw["holiday"] != "None")].dt.normalize())
    frame = pd.DataFrame(
        {
            SERIES_ID: "i94_westbound",
            TIMESTAMP: ts,
            VALUE: raw["traffic_volume"].astype(float),
            "temp": raw["temp"].where(raw["temp"] > 0).astype(float),
            "rain_1h": raw["rain_1h"].astype(float),
            "snow_1h": raw["snow_1h"].astype(float),
            "clouds_all": raw["clouds_all"].astype(float),
        }
    )
    frame = frame.drop_duplicates([SERIES_ID, TIMESTAMP], keep="first")
    values, freq = validate_frame(frame, source=str(path), freq="h", first_row=2)
    values["holiday"] = values[TIMESTAMP].dt.normalize().isin(holiday_days).astype(float)
    return SeriesDataset(values, freq, name="i94", source=str(path))


def _check_square(adj: np.ndarray, n: int, path: Path) -> None:
    if adj.shape != (n, n):
        raise ValueError(f"{path}: adjacency matrix is {adj.shape}, expected ({n}, {n})")
