"""Load a user's own CSV or Parquet table(s) into a :class:`SeriesDataset` via a column mapping.

Two layouts are read, each with the date in one column or split over several:

* **long**: one row per (series, time): ``detector, time, flow`` -> ``series_id, timestamp,
  value``;
* **wide**: one row per time and one column per series -- the usual export of a monitoring
  network (``year, month, day, hour, Dongsi, Tiantan, ...``), optionally with a column naming
  the measured variable (``date, hour, type, Dongsi, ...`` with ``type`` = PM2.5, PM10, ...).

Errors name the file, the column and the line (CSV: the file's line number, header = line 1;
Parquet: the 1-based row).
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from citybrain_ml.data.adjacency import STATION_SEPARATOR, expand_station_graph, read_adjacency
from citybrain_ml.data.io import file_stem
from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE, SeriesDataset
from citybrain_ml.data.validation import (
    MAX_REPORTED,
    DataValidationError,
    validate_dataset,
    validate_frame,
)
from citybrain_ml.features.wind import unknown_wind_directions, wind_components

CSV_SUFFIXES = (".csv", ".csv.gz", ".txt", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")

#: timestamp parts a mapping may name, with their valid ranges
TIMESTAMP_PARTS = {
    "year": (1, 9999),
    "month": (1, 12),
    "day": (1, 31),
    # 24 = midnight at the end of the day, as in period-ending exports (01:00 .. 24:00)
    "hour": (0, 24),
    "minute": (0, 59),
    "second": (0, 59),
}
_DATE_KEYS = ("year", "month", "day")


class ColumnMapping(BaseModel):
    """Which of the file's columns play which role.

    Parameters
    ----------
    series_id : str or None
        Long files: column naming the series; None for a single series named after the file.
    timestamp : str or None
        Column with the timestamps. Give this or ``timestamp_parts``.
    timestamp_parts : dict, optional
        The date split over several columns: part -> column, with parts ``year``, ``month``,
        ``day`` (or ``date`` for one column holding the day, e.g. ``20140101``), and optional
        ``hour``, ``minute``, ``second``. E.g. ``{"year": "year", "month": "month", "day":
        "day", "hour": "hour"}``. ``hour`` may run 0-23 or 1-24 (24 = midnight at the end of
        the day, i.e. 00:00 of the next one).
    value : str or None
        Long files: column with the target. Not used for wide files.
    covariates : list of str
        Extra columns to carry along (weather, calendar, ...). In a wide file they belong to
        the row's time and are repeated for every series.
    wide : bool
        One column per series (the column name is the series id) instead of one row per
        series and time.
    series_columns : list of str, optional
        Wide files: the series columns; default every column not mapped to another role and
        not in ``exclude``.
    exclude : list of str
        Wide files: columns that are neither series nor covariates (a row number, a text
        status column, ...).
    variable : str, optional
        Wide files: column naming the measured variable of each row; the series id becomes
        ``<column><separator><variable>`` (``Dongsi/PM2.5``).
    separator : str
        Between station and variable in series ids (``"/"``); also used by
        ``load_table(adjacency_variables=...)``.
    wind_direction : str, optional
        Column with wind direction as compass labels (``N``, ``NNE``, ... 16-point, ``cv`` =
        calm) or degrees (the direction the wind comes from); adds covariates ``wind_u``,
        ``wind_v`` (see :func:`citybrain_ml.features.wind.wind_components`).
    wind_speed : str, optional
        Column with the wind speed: ``wind_u``/``wind_v`` become velocity components in its
        unit; without it they are the unit vector.
    """

    model_config = ConfigDict(extra="forbid")

    series_id: str | None = None
    timestamp: str | None = None
    timestamp_parts: dict[str, str] | None = None
    value: str | None = None
    covariates: list[str] = []
    wide: bool = False
    series_columns: list[str] | None = None
    exclude: list[str] = []
    variable: str | None = None
    separator: str = STATION_SEPARATOR
    wind_direction: str | None = None
    wind_speed: str | None = None

    @model_validator(mode="after")
    def _check_roles(self) -> ColumnMapping:
        if (self.timestamp is None) == (self.timestamp_parts is None):
            raise ValueError("give exactly one of timestamp (a column) or timestamp_parts")
        if self.timestamp_parts is not None:
            _check_parts(self.timestamp_parts)
        if self.wide:
            if self.value is not None or self.series_id is not None:
                raise ValueError(
                    "a wide file has one column per series: drop value/series_id "
                    "(choose the columns with series_columns or exclude)"
                )
        else:
            if self.value is None:
                raise ValueError("value (the target column) is required for a long file")
            if self.series_columns is not None or self.variable is not None or self.exclude:
                raise ValueError("series_columns, exclude and variable apply to wide=True only")
        if self.wind_speed is not None and self.wind_direction is None:
            raise ValueError("wind_speed needs wind_direction")
        return self

    def time_columns(self) -> list[str]:
        """The column(s) the timestamp is read from."""
        return [self.timestamp] if self.timestamp else list(self.timestamp_parts.values())

    def role_columns(self) -> dict[str, str]:
        """Mapped column -> role, for error messages and the wide layout's leftovers."""
        roles = {}
        if self.timestamp:
            roles[self.timestamp] = "timestamp"
        for part, col in (self.timestamp_parts or {}).items():
            roles[col] = f"timestamp part {part}"
        for role in ("series_id", "value", "variable", "wind_direction", "wind_speed"):
            if getattr(self, role) is not None:
                roles[getattr(self, role)] = role
        roles.update({c: f"covariate {c!r}" for c in self.covariates})
        roles.update({c: "series" for c in self.series_columns or []})
        roles.update({c: "excluded" for c in self.exclude})
        return roles


def _check_parts(parts: dict[str, str]) -> None:
    unknown = sorted(set(parts) - set(TIMESTAMP_PARTS) - {"date"})
    if unknown:
        raise ValueError(
            f"unknown timestamp part(s) {unknown}; use date or year/month/day, and "
            "hour/minute/second"
        )
    has_ymd = [k for k in _DATE_KEYS if k in parts]
    if "date" in parts and has_ymd:
        raise ValueError(f"timestamp_parts: give either date or {list(_DATE_KEYS)}, not both")
    if "date" not in parts and len(has_ymd) != 3:
        raise ValueError("timestamp_parts needs date, or all of year, month and day")


_LIST_FIELDS = ("covariates", "series_columns", "exclude")


def parse_column_mapping(text: str) -> dict:
    """A mapping written on one command line -> the dict :class:`ColumnMapping` takes.

    Parameters
    ----------
    text : str
        Either ``role=column`` pairs separated by commas -- ``series_id=detector,
        timestamp=time,value=flow,covariates=temp+rain`` (list fields ``covariates``,
        ``series_columns``, ``exclude`` join columns with ``+``; timestamp parts ``year``,
        ``month``, ``day``, ``date``, ``hour``, ``minute``, ``second`` go to
        ``timestamp_parts``; ``wide=true``) -- or YAML/JSON, e.g. ``{wide: true,
        timestamp_parts: {year: year, month: month, day: day, hour: hour}}``.

    Returns
    -------
    dict

    Raises
    ------
    DataValidationError
        A pair without ``=``, or YAML that is not a mapping.
    """
    text = text.strip()
    if text.startswith("{"):
        parsed = _yaml_mapping(text)
        if not isinstance(parsed, dict):
            raise DataValidationError(f"--mapping: expected a YAML mapping, got {text!r}")
        return _as_strings(parsed)
    out: dict = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, val = pair.partition("=")
        key, val = key.strip(), val.strip()
        if not sep or not key or not val:
            raise DataValidationError(
                f"--mapping: {pair!r} is not role=column (e.g. series_id=detector,"
                "timestamp=time,value=flow)"
            )
        if key in TIMESTAMP_PARTS or key == "date":
            out.setdefault("timestamp_parts", {})[key] = val
        elif key in _LIST_FIELDS:
            out[key] = [v.strip() for v in val.split("+") if v.strip()]
        elif key == "wide":
            out[key] = val.lower() in ("1", "true", "yes")
        else:
            out[key] = val
    return out


def _yaml_mapping(text: str):
    import re

    import yaml

    # YAML 1.1 reads a column called No/Yes/On/Off as a boolean: only true/false are booleans
    class _Loader(yaml.SafeLoader):
        pass

    _Loader.yaml_implicit_resolvers = {
        key: [r for r in resolvers if r[0] != "tag:yaml.org,2002:bool"]
        for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    _Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool",
        re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
        list("tTfF"),
    )
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: builds no objects


def _as_strings(obj):
    """Column names read by YAML as numbers (``2024``) back to strings; booleans stay."""
    if isinstance(obj, dict):
        return {str(k): _as_strings(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_as_strings(v) for v in obj]
    return obj if isinstance(obj, bool) or obj is None else str(obj)


def load_table(
    path: str | Path | Sequence[str | Path],
    mapping: ColumnMapping | dict,
    freq: str | None = None,
    missing_value: float | None = None,
    sensors_path: str | Path | None = None,
    adjacency_path: str | Path | None = None,
    name: str | None = None,
    adjacency_ids: Sequence | None = None,
    adjacency_variables: Sequence[str] | None = None,
    service_hours: str | None = "auto",
) -> SeriesDataset:
    """Read CSV or Parquet file(s) of series into the canonical long format.

    Parameters
    ----------
    path : str, Path or list of them
        ``.csv``/``.csv.gz``/``.tsv`` or ``.parquet`` file; a list of files or a glob pattern
        (``"stations/PRSA_*.csv"``) for one file per station -- a long file without a
        ``series_id`` column then gives one series per file, named after it.
    mapping : ColumnMapping or dict
        Column roles, e.g. ``{"series_id": "sensor", "timestamp": "time", "value": "speed"}``,
        or ``{"wide": True, "timestamp_parts": {"year": "year", "month": "month", "day":
        "day", "hour": "hour"}}``; see :class:`ColumnMapping`.
    freq : str, optional
        Sampling interval; inferred when omitted.
    missing_value : float, optional
        A sentinel the source writes when there is **no reading** (e.g. ``-999``, or ``0`` from
        a loop detector that reports 0 km/h when it is down) -> NaN, masked rather than
        learned. Never set it on counts where 0 is a real zero (no passengers, no vehicles):
        those zeros would become missing. Blank cells and ``NA`` are missing already.
    sensors_path : str or Path, optional
        Table with one row per series: a ``series_id`` column (or the mapped series
        column) plus ``lat``, ``lon``, ...
    adjacency_path : str or Path, optional
        Station/sensor graph read by :func:`citybrain_ml.data.adjacency.read_adjacency`:
        an edge list (``src``, ``dst``, optional ``weight``), a dense matrix (CSV with or
        without ids, ``.npy``, ``.npz``) or a ``(ids, id_to_index, matrix)`` pickle.
    name : str, optional
        Dataset name; default the file name without suffix.
    adjacency_ids : sequence, optional
        Id of each matrix row, for a matrix file without ids (``.npy``, header-less CSV).
    adjacency_variables : sequence of str, optional
        The graph is between stations and the series are ``<station><separator><variable>``
        (``A/in``, ``A/out``): expand it with
        :func:`citybrain_ml.data.adjacency.expand_station_graph` to these variables.
    service_hours : str, optional
        When the series can be observed: ``"auto"`` detects daily closed hours (slots in
        which no series has a non-zero reading, e.g. a metro at night), ``"always"`` turns
        that off, ``"05:30-23:00"`` gives them. Closed slots stay NaN rows on the regular grid
        but are never origins, calibration points, scored targets or forecast rows.

    Returns
    -------
    SeriesDataset

    Raises
    ------
    FileNotFoundError, DataValidationError
        Messages name the file and the missing or bad column/lines.
    """
    paths = _expand_paths(path)
    source = str(path) if isinstance(path, (str, Path)) else ", ".join(map(str, paths))
    mapping = _as_mapping(mapping, source)
    if len(paths) == 1 and not mapping.wide:
        # one long file: validated in one pass so every message carries the file's line
        frame = _long_frame(paths[0], mapping)
        n_read = len(frame)
        values, freq = validate_frame(
            frame, str(paths[0]), freq, missing_value, first_row=_first_line(paths[0])
        )
    else:
        frames = [_file_to_long(p, mapping, freq, missing_value) for p in paths]
        n_read = sum(len(f) for f in frames)
        # row-level problems were named per file above; what is left (duplicates across
        # files, the grid, empty series) is named by series and timestamp
        values, freq = validate_frame(
            pd.concat(frames, ignore_index=True), source, freq, missing_value, first_row=None
        )
    stem = _stem(paths[0]) if len(paths) == 1 else _stem(Path(str(path)))
    sensors = None if sensors_path is None else _read_sensors(Path(sensors_path), mapping)
    adjacency = None
    if adjacency_path is not None:
        adjacency = read_adjacency(adjacency_path, ids=adjacency_ids)
        if adjacency_variables:
            adjacency = expand_station_graph(adjacency, adjacency_variables, mapping.separator)
    # (series, time) cells read, so a report can say how many rows the regular grid added
    extras = {"rows_read": n_read}
    ds = SeriesDataset(values, freq, sensors, adjacency, name or stem, source, extras=extras)
    return validate_dataset(ds, service_hours=service_hours)


def _expand_paths(path) -> list[Path]:
    if isinstance(path, (str, Path)):
        text = str(path)
        if any(ch in text for ch in "*?[") and not Path(text).exists():
            matched = sorted(glob.glob(text))
            if not matched:
                raise FileNotFoundError(f"no file matches {text}")
            return [Path(p) for p in matched]
        return [Path(path)]
    paths = [Path(p) for p in path]
    if not paths:
        raise ValueError("load_table: empty list of files")
    return paths


def _file_to_long(
    path: Path, mapping: ColumnMapping, freq: str | None, missing_value: float | None
) -> pd.DataFrame:
    """One of several files, or a wide file: row-level checks with this file's lines."""
    if mapping.wide:
        return _wide_frame(path, mapping)
    frame = _long_frame(path, mapping)
    # the grid is checked once all files are together (a station may start later)
    values, _ = validate_frame(
        frame, str(path), freq, missing_value, allow_irregular=True, first_row=_first_line(path)
    )
    return values


def _long_frame(path: Path, mapping: ColumnMapping) -> pd.DataFrame:
    raw = _read(path)
    _check_mapped_columns(raw, mapping, path)
    frame = pd.DataFrame(
        {
            SERIES_ID: raw[mapping.series_id].astype(str) if mapping.series_id else _stem(path),
            TIMESTAMP: _timestamps(raw, mapping, path),
            VALUE: raw[mapping.value],
        }
    )
    for col in mapping.covariates:
        frame[col] = raw[col]
    _add_wind(frame, raw, mapping, path)
    return frame


def _wide_frame(path: Path, mapping: ColumnMapping) -> pd.DataFrame:
    """A wide file -> long rows, after naming any bad cell by column and line."""
    raw = _read(path)
    _check_mapped_columns(raw, mapping, path)
    roles = mapping.role_columns()
    columns = mapping.series_columns or [c for c in raw.columns if c not in roles]
    if not columns:
        raise DataValidationError(
            f"{path}: no series columns left in the wide file (columns {list(raw.columns)}, "
            f"all mapped or excluded)"
        )
    times = _timestamps(raw, mapping, path)
    if mapping.timestamp is not None:
        times = _parse_times(times, path)
    _check_wide_duplicates(raw, times, mapping, path)
    hint = " (not a series? list it in exclude)"
    block = pd.DataFrame({str(c): _numeric_column(raw, c, path, hint) for c in columns})
    keys = pd.DataFrame({TIMESTAMP: times})
    for col in mapping.covariates:
        keys[col] = raw[col].to_numpy()
    _add_wind(keys, raw, mapping, path)
    n_rows, n_series = block.shape
    ids = np.repeat(np.asarray(block.columns, dtype=object), n_rows)
    if mapping.variable is not None:
        var = raw[mapping.variable].astype(str).to_numpy()
        ids = ids + mapping.separator + np.tile(var, n_series)
    long = pd.concat([keys] * n_series, ignore_index=True)
    long.insert(0, SERIES_ID, ids)
    long.insert(2, VALUE, block.to_numpy(dtype=float).T.ravel())
    return long


def _check_wide_duplicates(
    raw: pd.DataFrame, times: pd.Series, mapping: ColumnMapping, path: Path
) -> None:
    key = pd.DataFrame({TIMESTAMP: times})
    if mapping.variable is not None:
        key["variable"] = raw[mapping.variable].to_numpy()
    dup = np.flatnonzero(key.duplicated(keep=False).to_numpy())
    if len(dup):
        what = "time and variable" if mapping.variable is not None else "time"
        shown = ", ".join(f"{_where(path, p)} ({times.iat[p]})" for p in dup[:MAX_REPORTED])
        raise DataValidationError(
            f"{path}: {len(dup)} rows share a {what} with another row: {shown}. "
            "A wide file needs one row per time."
        )


def _numeric_column(raw: pd.DataFrame, col, path: Path, hint: str = "") -> np.ndarray:
    values = pd.to_numeric(raw[col], errors="coerce")
    bad = np.flatnonzero((values.isna() & raw[col].notna()).to_numpy())
    if len(bad):
        shown = ", ".join(
            f"{_where(path, p)}: {_show(raw[col].iat[p])}" for p in bad[:MAX_REPORTED]
        )
        raise DataValidationError(
            f"{path}: column {col!r} has {len(bad)} non-numeric value(s): {shown}{hint}"
        )
    return values.to_numpy(dtype=float)


# -------------------------------------------------------------------- timestamps
def _timestamps(raw: pd.DataFrame, mapping: ColumnMapping, path: Path) -> pd.Series:
    """The mapped timestamp column as is (parsed by validation), or built from its parts."""
    if mapping.timestamp is not None:
        return raw[mapping.timestamp]
    parts = mapping.timestamp_parts
    if "date" in parts:
        base = _date_column(raw, parts["date"], path)
    else:
        ymd = {k: _part(raw, parts[k], k, path) for k in _DATE_KEYS}
        base = pd.to_datetime(pd.DataFrame(ymd), errors="coerce")
        _report_bad_dates(base, raw, [parts[k] for k in _DATE_KEYS], path)
    offset = pd.Series(pd.Timedelta(0), index=raw.index)
    for unit, code in (("hour", "h"), ("minute", "min"), ("second", "s")):
        if unit in parts:
            offset += pd.to_timedelta(_part(raw, parts[unit], unit, path), unit=code)
    # keep the resolution pandas gave the date (adding a timedelta may change it)
    return (base + offset).astype(base.dtype)


def _parse_times(times: pd.Series, path: Path) -> pd.Series:
    """Parse a timestamp column by the validation rules (formats, time zones), in row order."""
    n = len(times)
    # one pseudo-series per row: only the timestamp rules apply here, with this file's lines
    probe = pd.DataFrame(
        {
            SERIES_ID: np.arange(n).astype(str),
            TIMESTAMP: times.reset_index(drop=True),
            VALUE: 0.0,
            "_row": np.arange(n),
        }
    )
    checked, _ = validate_frame(
        probe, str(path), freq="s", allow_irregular=True, first_row=_first_line(path)
    )
    return checked.set_index("_row")[TIMESTAMP].sort_index().reset_index(drop=True)


def _part(raw: pd.DataFrame, col: str, part: str, path: Path) -> pd.Series:
    """An integer timestamp part, within its range; errors name column and lines."""
    values = pd.to_numeric(raw[col], errors="coerce")
    lo, hi = TIMESTAMP_PARTS[part]
    bad = values.isna() | (values != values.round()) | (values < lo) | (values > hi)
    positions = np.flatnonzero(bad.to_numpy())
    if len(positions):
        shown = ", ".join(
            f"{_where(path, p)}: {_show(raw[col].iat[p])}" for p in positions[:MAX_REPORTED]
        )
        raise DataValidationError(
            f"{path}: column {col!r} (timestamp part {part}, whole numbers {lo}..{hi}) has "
            f"{len(positions)} missing or invalid value(s): {shown}"
        )
    return values.astype(int)


def _date_column(raw: pd.DataFrame, col: str, path: Path) -> pd.Series:
    text = raw[col].astype("string").str.strip()
    parsed = pd.to_datetime(text, errors="coerce", format="mixed")
    _report_bad_dates(parsed, raw, [col], path)
    return parsed


def _report_bad_dates(parsed: pd.Series, raw: pd.DataFrame, cols: list[str], path: Path):
    positions = np.flatnonzero(parsed.isna().to_numpy())
    if len(positions):
        shown = ", ".join(
            f"{_where(path, p)}: " + "-".join(str(raw[c].iat[p]) for c in cols)
            for p in positions[:MAX_REPORTED]
        )
        raise DataValidationError(
            f"{path}: column(s) {cols} give {len(positions)} missing or impossible date(s): {shown}"
        )


# -------------------------------------------------------------------------- wind
def _add_wind(frame: pd.DataFrame, raw: pd.DataFrame, mapping: ColumnMapping, path: Path):
    if mapping.wind_direction is None:
        return
    direction = raw[mapping.wind_direction]
    bad = unknown_wind_directions(direction)
    if len(bad):
        shown = ", ".join(
            f"{_where(path, p)}: {_show(direction.iat[p])}" for p in bad[:MAX_REPORTED]
        )
        raise DataValidationError(
            f"{path}: column {mapping.wind_direction!r} (wind direction) has {len(bad)} "
            f"value(s) that are neither a 16-point compass label, calm (cv/C/CALM/VRB) nor "
            f"degrees 0..360: {shown}"
        )
    speed = None
    if mapping.wind_speed is not None:
        speed = _numeric_column(raw, mapping.wind_speed, path)
    frame["wind_u"], frame["wind_v"] = wind_components(direction.to_numpy(), speed)


# ------------------------------------------------------------------------ files
def _as_mapping(mapping, source: str) -> ColumnMapping:
    if isinstance(mapping, ColumnMapping):
        return mapping
    try:
        return ColumnMapping(**dict(mapping))
    except ValidationError as err:
        # one line per CLI convention: "field: problem; ..." plus the known roles
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'mapping'}: {e['msg']}" for e in err.errors()
        )
        raise DataValidationError(
            f"{source}: invalid column mapping {mapping!r}: {problems} "
            f"(roles: {', '.join(ColumnMapping.model_fields)})"
        ) from err


def _is_csv(path: Path) -> bool:
    return path.name.lower().endswith(CSV_SUFFIXES)


def _first_line(path: Path) -> int:
    return 2 if _is_csv(path) else 1  # CSV: line numbers, header is line 1


def _where(path: Path, position: int) -> str:
    """'line 7' (CSV, header = line 1) or 'row 6' (Parquet) for a 0-based data position."""
    return f"line {position + 2}" if _is_csv(path) else f"row {position + 1}"


def _show(value) -> str:
    """A cell for a message: ``13``, ``'calib'`` (not ``np.int64(13)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _stem(path: Path) -> str:
    return file_stem(path, CSV_SUFFIXES + PARQUET_SUFFIXES)


def _read(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"table {path} not found")
    if _is_csv(path):
        from citybrain_ml.data.io import read_csv_checked

        sep = "\t" if path.name.lower().endswith(".tsv") else ","
        # empty, truncated, non-UTF-8 files: the library's InputFileError, naming the file
        return read_csv_checked(path, sep=sep, low_memory=False)
    if path.name.lower().endswith(PARQUET_SUFFIXES):
        from citybrain_ml.data.io import read_parquet_checked

        return read_parquet_checked(path)
    raise DataValidationError(
        f"{path}: unsupported file type; use one of {CSV_SUFFIXES + PARQUET_SUFFIXES}"
    )


def _check_mapped_columns(raw: pd.DataFrame, mapping: ColumnMapping, path: Path) -> None:
    roles = mapping.role_columns()
    missing = [f"{col!r} (mapped as {role})" for col, role in roles.items() if col not in raw]
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
