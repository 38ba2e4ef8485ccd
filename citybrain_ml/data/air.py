"""Loaders for the Beijing air-quality datasets under ``<root>/air/``.

Wind direction is given as compass labels (``"NNW"``, or ``"NW"``/``"cv"`` for the
single site). Labels are circular, so they are encoded by
:func:`citybrain_ml.features.wind.wind_components` as the unit vector the wind blows
*towards*: ``wind_u`` (east) = ``-sin(theta)``, ``wind_v`` (north) = ``-cos(theta)``, where
``theta`` is the compass bearing the wind comes *from* (meteorological convention). Calm
or variable (``"cv"``) is ``(0, 0)``; an unknown label is NaN. Wind speed stays a separate
column, so both datasets share the same direction encoding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.data.adjacency import adjacency_from_coordinates, haversine_m
from citybrain_ml.data.paths import dataset_file
from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE, SeriesDataset
from citybrain_ml.data.validation import validate_frame
from citybrain_ml.features.wind import wind_components

POLLUTANTS = ["PM2.5", "PM10", "SO2", "NO2", "CO", "O3"]
WEATHER = ["TEMP", "PRES", "DEWP", "RAIN", "WSPM"]


def _hourly_timestamp(raw: pd.DataFrame) -> pd.Series:
    """Beijing local time (naive) from the files' year/month/day/hour columns."""
    return pd.to_datetime(raw[["year", "month", "day", "hour"]])


def load_beijing_multisite(
    root: str | Path | None = None,
    target: str = "PM2.5",
    pollutant_covariates: bool = False,
    adjacency_km: float | None = None,
    targets: list[str] | None = None,
) -> SeriesDataset:
    """UCI Beijing Multi-Site Air Quality: 12 stations, hourly, 2013-03..2017-02.

    Parameters
    ----------
    root : str or Path, optional
        Data root holding ``air/beijing_multisite/``.
    target : str
        Pollutant used as ``value``: one of PM2.5, PM10, SO2, NO2, CO, O3 (ug/m3).
    pollutant_covariates : bool
        Add the other five pollutants as covariate columns (measured at the same hour, so
        only usable as lagged features).
    adjacency_km : float, optional
        Connect stations closer than this many km, weighted by a Gaussian kernel
        ``exp(-(d / sigma)^2)`` with ``sigma`` the std of all pairwise distances
        (the DCRNN convention). None: no adjacency. With ``targets``, only series of the
        same pollutant are connected.
    targets : list of str, optional
        Several pollutants at once (e.g. PM2.5, PM10, NO2, O3 for the AQI): one series per
        station and pollutant, named ``<station>/<pollutant>``, with indicator covariates
        ``is_<pollutant>`` (constant per series) so one global model can tell them apart;
        ``sensors`` gains ``station`` and ``pollutant``. Overrides ``target``.

    Returns
    -------
    SeriesDataset
        Series named by station, freq ``h``, covariates TEMP (C), PRES (hPa), DEWP (C),
        RAIN (mm), WSPM (m/s), wind_u, wind_v; ``sensors`` with lat/lon/station_type.
    """
    chosen = list(targets) if targets else [target]
    unknown = [t for t in chosen if t not in POLLUTANTS]
    if unknown or len(set(chosen)) != len(chosen):
        raise ValueError(f"targets must be distinct names from {POLLUTANTS}, got {chosen}")
    coords_path = dataset_file(root, "air", "beijing_multisite", "station_coordinates.csv")
    files = sorted(coords_path.parent.glob("PRSA_Data_*.csv"))
    if not files:
        raise FileNotFoundError(f"no PRSA_Data_*.csv station files in {coords_path.parent}")
    # one Aotizhongxin SO2 cell holds a lone blank (" "): read it as missing, not as text
    raws = [pd.read_csv(f, na_values=[" "], low_memory=False) for f in files]
    if targets:
        frames = [_pollutant_frame(raw, t, chosen) for t in chosen for raw in raws]
    else:
        extra = [p for p in POLLUTANTS if p != target] if pollutant_covariates else []
        frames = [_multisite_frame(raw, target, extra) for raw in raws]
    values, freq = validate_frame(
        pd.concat(frames, ignore_index=True), str(coords_path.parent), "h", first_row=None
    )
    sensors = _station_sensors(coords_path, values)
    adjacency = None if adjacency_km is None else _adjacency(sensors, adjacency_km)
    name = "_".join(t.lower().replace(".", "") for t in chosen)
    return SeriesDataset(
        values,
        freq,
        sensors=sensors,
        adjacency=adjacency,
        name=f"beijing_multisite_{name}",
        source=str(coords_path.parent),
    )


POLLUTANT_SEPARATOR = "/"  # series "<station>/<pollutant>" in multi-pollutant datasets


def split_series_id(series_id: str) -> tuple[str, str | None]:
    """``"Dongsi/PM10"`` -> ``("Dongsi", "PM10")``; a plain station id -> ``(id, None)``."""
    station, sep, pollutant = str(series_id).rpartition(POLLUTANT_SEPARATOR)
    return (station, pollutant) if sep and pollutant in POLLUTANTS else (str(series_id), None)


def _pollutant_frame(raw: pd.DataFrame, pollutant: str, chosen: list[str]) -> pd.DataFrame:
    frame = _multisite_frame(raw, pollutant, [])
    frame[SERIES_ID] = frame[SERIES_ID] + POLLUTANT_SEPARATOR + pollutant
    # the first pollutant is the reference level: the indicators of the others are enough
    for other in chosen[1:]:
        frame[f"is_{other}"] = float(other == pollutant)
    return frame


def _adjacency(sensors: pd.DataFrame, max_km: float) -> pd.DataFrame:
    if "pollutant" not in sensors.columns:
        return distance_edges(sensors, max_km)
    parts = [distance_edges(g, max_km) for _, g in sensors.groupby("pollutant", sort=False)]
    return pd.concat(parts, ignore_index=True)


def _multisite_frame(raw: pd.DataFrame, target: str, extra: list[str]) -> pd.DataFrame:
    u, v = wind_components(raw["wd"])
    frame = pd.DataFrame({SERIES_ID: raw["station"].astype(str), TIMESTAMP: _hourly_timestamp(raw)})
    frame[VALUE] = raw[target].astype(float)
    for col in extra + WEATHER:
        frame[col] = raw[col].astype(float)
    frame["wind_u"], frame["wind_v"] = u, v
    return frame


def _station_sensors(coords_path: Path, values: pd.DataFrame) -> pd.DataFrame:
    coords = pd.read_csv(coords_path).rename(columns={"latitude": "lat", "longitude": "lon"})
    ids = pd.unique(values[SERIES_ID])
    parts = [split_series_id(sid) for sid in ids]
    series = pd.DataFrame({SERIES_ID: ids, "station": [p[0] for p in parts]})
    if any(p[1] for p in parts):
        series["pollutant"] = [p[1] for p in parts]
    out = series.merge(coords[["station", "lat", "lon", "station_type"]], how="left")
    return out if "pollutant" in out.columns else out.drop(columns="station")


def haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in km (broadcasts)."""
    return haversine_m(lat1, lon1, lat2, lon2) / 1000.0


def distance_edges(sensors: pd.DataFrame, max_km: float) -> pd.DataFrame:
    """Edges between sensors within ``max_km``, Gaussian-kernel weights (no self loops).

    The Beijing form of :func:`citybrain_ml.data.adjacency.adjacency_from_coordinates`.

    Parameters
    ----------
    sensors : DataFrame
        ``series_id, lat, lon``.
    max_km : float
        Distance threshold.

    Returns
    -------
    DataFrame
        ``src, dst, weight`` with ``weight = exp(-(d / sigma)^2)``, ``sigma`` = std of the
        pairwise distances.
    """
    return adjacency_from_coordinates(sensors, threshold_m=max_km * 1000.0)


def load_beijing_pm25(root: str | Path | None = None) -> SeriesDataset:
    """UCI Beijing PM2.5 at the US Embassy, hourly, 2010-2014.

    Parameters
    ----------
    root : str or Path, optional
        Data root holding ``air/beijing_pm25_2010_2014/``.

    Returns
    -------
    SeriesDataset
        One series ``us_embassy``, freq ``h``; covariates DEWP, TEMP (C), PRES (hPa),
        wind_speed_cum (Iws: wind speed accumulated over hours of the same direction, m/s),
        snow_hours_cum (Is), rain_hours_cum (Ir), wind_u, wind_v (from ``cbwd``: NE, NW,
        SE, cv = calm/variable).
    """
    path = dataset_file(root, "air", "beijing_pm25_2010_2014", "PRSA_data_2010.1.1-2014.12.31.csv")
    raw = pd.read_csv(path)
    u, v = wind_components(raw["cbwd"])
    frame = pd.DataFrame(
        {
            SERIES_ID: "us_embassy",
            TIMESTAMP: _hourly_timestamp(raw),
            VALUE: raw["pm2.5"].astype(float),
            "DEWP": raw["DEWP"].astype(float),
            "TEMP": raw["TEMP"].astype(float),
            "PRES": raw["PRES"].astype(float),
            "wind_speed_cum": raw["Iws"].astype(float),
            "snow_hours_cum": raw["Is"].astype(float),
            "rain_hours_cum": raw["Ir"].astype(float),
            "wind_u": u,
            "wind_v": v,
        }
    )
    values, freq = validate_frame(frame, str(path), "h", first_row=2)
    return SeriesDataset(values, freq, name="beijing_pm25", source=str(path))
