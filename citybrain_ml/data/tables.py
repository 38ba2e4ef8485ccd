"""Load a user's own CSV or Parquet table into a :class:`SeriesDataset` via a column mapping."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ValidationError

from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE, SeriesDataset
from citybrain_ml.data.validation import DataValidationError, validate_dataset, validate_frame

CSV_SUFFIXES = (".csv", ".csv.gz", ".txt", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")


class ColumnMapping(BaseModel):
    """Which of the file's columns play which role.

    Parameters
    ----------
    series_id : str or None
        Column naming the series; None for a single series named after the file.
    timestamp : str
        Column with the timestamps.
    value : str
        Column with the target.
    covariates : list of str
        Extra columns to carry along (weather, calendar, ...).
    """

    series_id: str | None = None
    timestamp: str
    value: str
    covariates: list[str] = []


def load_table(
    path: str | Path,
    mapping: ColumnMapping | dict,
    freq: str | None = None,
    missing_value: float | None = None,
    sensors_path: str | Path | None = None,
    adjacency_path: str | Path | None = None,
    name: str | None = None,
) -> SeriesDataset:
    """Read a CSV or Parquet file of series into the canonical long format.

    Parameters
    ----------
    path : str or Path
        ``.csv``/``.csv.gz``/``.tsv`` or ``.parquet`` file.
    mapping : ColumnMapping or dict
        Column roles, e.g. ``{"series_id": "sensor", "timestamp": "time", "value": "speed"}``.
    freq : str, optional
        Sampling interval; inferred when omitted.
    missing_value : float, optional
        Sentinel meaning "no reading" (-> NaN).
    sensors_path : str or Path, optional
        Table with one row per series: a ``series_id`` column (or the mapped series
        column) plus ``lat``, ``lon``, ...
    adjacency_path : str or Path, optional
        Edge list with ``src``, ``dst`` and optional ``weight`` (default 1).
    name : str, optional
        Dataset name; default the file name without suffix.

    Returns
    -------
    SeriesDataset

    Raises
    ------
    FileNotFoundError, DataValidationError
        Messages name the file and the missing or bad column/rows.
    """
    path = Path(path)
    mapping = _as_mapping(mapping, path)
    raw = _read(path)
    _check_mapped_columns(raw, mapping, path)
    stem = _stem(path)
    frame = pd.DataFrame(
        {
            SERIES_ID: raw[mapping.series_id].astype(str) if mapping.series_id else stem,
            TIMESTAMP: raw[mapping.timestamp],
            VALUE: raw[mapping.value],
        }
    )
    for col in mapping.covariates:
        frame[col] = raw[col]
    first_row = 2 if _is_csv(path) else 1  # CSV: line numbers, header is line 1
    values, freq = validate_frame(frame, str(path), freq, missing_value, first_row=first_row)
    sensors = None if sensors_path is None else _read_sensors(Path(sensors_path), mapping)
    adjacency = None if adjacency_path is None else _read_edges(Path(adjacency_path))
    ds = SeriesDataset(values, freq, sensors, adjacency, name or stem, str(path))
    return validate_dataset(ds) if sensors is not None or adjacency is not None else ds


def _as_mapping(mapping, path: Path) -> ColumnMapping:
    if isinstance(mapping, ColumnMapping):
        return mapping
    try:
        return ColumnMapping(**dict(mapping))
    except ValidationError as err:
        raise DataValidationError(f"{path}: invalid column mapping {mapping!r}: {err}") from err


def _is_csv(path: Path) -> bool:
    return path.name.lower().endswith(CSV_SUFFIXES)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in CSV_SUFFIXES + PARQUET_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _read(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"table {path} not found")
    if _is_csv(path):
        sep = "\t" if path.name.lower().endswith(".tsv") else ","
        return pd.read_csv(path, sep=sep)
    if path.name.lower().endswith(PARQUET_SUFFIXES):
        return pd.read_parquet(path)
    raise DataValidationError(
        f"{path}: unsupported file type; use one of {CSV_SUFFIXES + PARQUET_SUFFIXES}"
    )


def _check_mapped_columns(raw: pd.DataFrame, mapping: ColumnMapping, path: Path) -> None:
    roles = {"timestamp": mapping.timestamp, "value": mapping.value}
    if mapping.series_id:
        roles["series_id"] = mapping.series_id
    roles.update({f"covariate {c!r}": c for c in mapping.covariates})
    missing = [f"{col!r} (mapped as {role})" for role, col in roles.items() if col not in raw]
    if missing:
        raise DataValidationError(
            f"{path}: missing column(s) {', '.join(missing)}; the file has {list(raw.columns)}"
        )


def _read_sensors(path: Path, mapping: ColumnMapping) -> pd.DataFrame:
    sensors = _read(path)
    if SERIES_ID not in sensors.columns and mapping.series_id in sensors.columns:
        sensors = sensors.rename(columns={mapping.series_id: SERIES_ID})
    if SERIES_ID not in sensors.columns:
        raise DataValidationError(
            f"{path}: sensors table needs a 'series_id' column (or {mapping.series_id!r}); "
            f"found {list(sensors.columns)}"
        )
    sensors[SERIES_ID] = sensors[SERIES_ID].astype(str)
    return sensors


def _read_edges(path: Path) -> pd.DataFrame:
    edges = _read(path)
    missing = [c for c in ("src", "dst") if c not in edges.columns]
    if missing:
        raise DataValidationError(
            f"{path}: adjacency edge list lacks column(s) {missing}; found {list(edges.columns)}"
        )
    weight = edges["weight"].astype(float) if "weight" in edges.columns else 1.0
    return pd.DataFrame(
        {"src": edges["src"].astype(str), "dst": edges["dst"].astype(str), "weight": weight}
    )
