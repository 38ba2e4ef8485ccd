"""Event logs from any city: a raw CSV/Parquet of incidents -> counts per grid cell per period.

A city's crime, collision or call-for-service export is a table with one row per event. A
:class:`EventMapping` says which of its columns hold the time, latitude, longitude and
(optionally) the category; :func:`read_events` reads and cleans it (category filter, rows
without coordinates dropped and counted, times converted to the city's local time), and
:func:`load_events` counts the events per ``cell_size_m`` square cell per ``freq`` period
(:func:`~citybrain_ml.data.grid.events_to_grid`). It is the ``events`` dataset of job configs::

    data:
      dataset: events
      options:
        path: incidents/toronto_mci/train.csv.gz     # or a list of files
        mapping: {time: occurrencedate, latitude: Lat, longitude: Long, category: MCI}
        time_zone: America/Toronto
        cell_size_m: 1000
        freq: D
        boundary: toronto.geojson                    # or "history" (default) / "none"

The scoring mask travels with the dataset: ``sensors["in_mask"]`` and ``extras["mask_kind"]``
(``"boundary"``: cells overlapping the GeoJSON polygon; ``"history"``: cells with events —
the hotspot metrics recompute it on the training window only; ``"none"``: every cell).
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from citybrain_ml.data.grid import Boundary, GridSpec, _period_codes, boundary_grid, events_to_grid
from citybrain_ml.data.io import file_stem
from citybrain_ml.data.paths import resolve_root
from citybrain_ml.data.schema import TIMESTAMP, SeriesDataset
from citybrain_ml.data.validation import DataValidationError

#: default cell side, the 3 km of the crime benchmarks (set ``cell_size_m`` for your city)
DEFAULT_CELL_M = 3000.0
MASKS = ("history", "none")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.zip", ".csv.bz2", ".txt", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
#: column names tried, in order, when a mapping role is not given (case-insensitive)
GUESSES = {
    "time": ("timestamp", "datetime", "date_time", "occurred_at", "time", "date"),
    "latitude": ("latitude", "lat", "y_lat"),
    "longitude": ("longitude", "lon", "lng", "long", "x_lon"),
}
_AWARE = r"(?:Z|[+-]\d{2}(?::?\d{2})?)$"  # "...+00", "...+05:30", "...Z"


class EventMapping(BaseModel):
    """Which columns of an event file play which role.

    Parameters
    ----------
    time : str
        Date or date-time of the event. Values with a UTC offset are converted to
        ``time_zone``; values without one are taken as local time already.
    latitude, longitude : str
        WGS84 degrees.
    category : str, optional
        Event type (crime type, collision class); needed for a ``categories`` filter.
    hour : str, optional
        Hour of day (0-23) in its own column (some exports keep only the date in
        ``time``): the event time is then the local date of ``time`` plus this hour.
    """

    model_config = ConfigDict(extra="forbid")

    time: str
    latitude: str
    longitude: str
    category: str | None = None
    hour: str | None = None

    def roles(self) -> dict[str, str]:
        """``role -> column`` for the roles that are set."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class EventOptions(BaseModel):
    """Options of the ``events`` dataset (``data.options`` in a job config).

    See :func:`load_events` for the meaning of each field.
    """

    model_config = ConfigDict(extra="forbid")

    path: str | list[str]
    mapping: EventMapping
    categories: list[str] | None = None
    time_zone: str | None = None
    cell_size_m: float = DEFAULT_CELL_M
    freq: str = "D"
    boundary: str = "history"
    start: str | None = None
    end: str | None = None
    name: str | None = None

    @field_validator("cell_size_m")
    @classmethod
    def _positive(cls, v: float) -> float:
        if not v > 0:
            raise ValueError(f"cell_size_m must be > 0 metres, got {v}")
        return v


@dataclass
class EventReport:
    """What reading an event file kept and dropped (printed by ``citybrain data validate``)."""

    sources: list[str]
    rows: int = 0
    without_coordinates: int = 0
    other_categories: int = 0
    outside_time_range: int = 0
    outside_boundary: int = 0
    events: int = 0
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    categories: dict[str, int] = field(default_factory=dict)
    seen_categories: set = field(default_factory=set, repr=False)

    def summary(self) -> str:
        """A few lines for people: rows, kept events, drops with reasons, time span."""
        drops = {
            "without coordinates": self.without_coordinates,
            "other categories": self.other_categories,
            "outside start/end": self.outside_time_range,
            "outside the boundary": self.outside_boundary,
        }
        dropped = ", ".join(f"{n} {why}" for why, n in drops.items() if n) or "none"
        lines = [
            f"{', '.join(self.sources)}: {self.rows} rows, {self.events} events kept "
            f"(dropped: {dropped})",
            f"time span {self.start} .. {self.end}",
        ]
        if self.categories:
            top = sorted(self.categories.items(), key=lambda kv: -kv[1])[:8]
            more = f" (+{len(self.categories) - 8} more)" if len(self.categories) > 8 else ""
            lines.append("categories: " + ", ".join(f"{k} {v}" for k, v in top) + more)
        return "\n".join(lines)


# ---------------------------------------------------------------------- reading
def read_events(
    path: str | Path | list,
    mapping: EventMapping | dict,
    categories: list[str] | None = None,
    time_zone: str | None = None,
    root: str | Path | None = None,
) -> tuple[pd.DataFrame, EventReport]:
    """Read one or more raw event files into ``timestamp, lat, lon`` (+ ``type``).

    Parameters
    ----------
    path : str, Path or list of them
        CSV (``.csv``, ``.csv.gz``, ``.tsv``...) or Parquet files with the same columns
        (e.g. an export split by year). A relative path that does not exist from the
        working directory is looked up under the data root (``root``,
        ``$CITYBRAIN_SHARED_DATA`` or ``../shared/data``).
    mapping : EventMapping or dict
        Column roles, e.g. ``{"time": "datetime", "latitude": "lat", "longitude": "lon"}``.
    categories : list of str, optional
        Keep only events whose ``category`` column has one of these values.
    time_zone : str, optional
        IANA zone of the city (``"America/Chicago"``). Required when the times carry UTC
        offsets (converted to local time); naive times are taken as local already.
    root : str or Path, optional
        Data root for relative paths.

    Returns
    -------
    events : DataFrame
        ``timestamp`` (local, naive), ``lat``, ``lon`` and ``type`` (when a category is
        mapped), sorted by time.
    report : EventReport
        Rows read, kept and dropped (with reasons), time span, events per category.

    Raises
    ------
    DataValidationError
        A mapped column is missing (the message names the file, the column and its role,
        and lists the file's columns), unparseable times (file, column, lines), a category
        of the filter that never occurs, or no event left.
    """
    mapping = as_mapping(mapping)
    paths = [resolve_event_path(p, root) for p in _as_list(path)]
    _check_time_zone(time_zone)
    report = EventReport([str(p) for p in paths])
    frames = [_read_one(p, mapping, categories, time_zone, report) for p in paths]
    events = pd.concat(frames, ignore_index=True).sort_values(TIMESTAMP, kind="stable")
    events = events.reset_index(drop=True)
    if categories:
        _check_categories_seen(categories, report)
    if events.empty:
        raise DataValidationError(
            f"{', '.join(report.sources)}: no events left\n{report.summary()}"
        )
    if report.without_coordinates:
        warnings.warn(
            f"{', '.join(report.sources)}: dropped {report.without_coordinates} of "
            f"{report.rows} events without coordinates",
            stacklevel=2,
        )
    _describe(events, report)
    return events, report


def as_mapping(mapping: EventMapping | dict) -> EventMapping:
    """An :class:`EventMapping` from a dict; errors say which role is missing or unknown."""
    if isinstance(mapping, EventMapping):
        return mapping
    if not isinstance(mapping, dict):
        raise DataValidationError(
            f"events mapping must be a mapping like {{time: ..., latitude: ..., longitude: ...}},"
            f" got {mapping!r}"
        )
    try:
        return EventMapping(**mapping)
    except ValidationError as exc:
        first = exc.errors()[0]
        role = ".".join(str(p) for p in first["loc"])
        raise DataValidationError(
            f"events mapping {mapping!r}: '{role}': {first['msg']} (roles: time, latitude, "
            f"longitude, optional category and hour; values are the file's column names)"
        ) from exc


def resolve_event_path(path: str | Path, root: str | Path | None = None) -> Path:
    """``path`` as given, else under the data root; FileNotFoundError naming both."""
    p = Path(path)
    if p.exists() or p.is_absolute():
        if not p.exists():
            raise FileNotFoundError(f"event file {p} not found")
        return p
    try:
        under = resolve_root(root) / p
    except FileNotFoundError:
        under = None
    if under is not None and under.exists():
        return under
    tried = f"{p.resolve()}" + (f" or {under}" if under is not None else "")
    raise FileNotFoundError(f"event file {p} not found (tried {tried})")


def check_columns(columns, roles: dict[str, str], source) -> None:
    """Raise a :class:`DataValidationError` naming every mapped column the file lacks.

    Parameters
    ----------
    columns : iterable of str
        The file's columns.
    roles : dict
        ``role -> column`` (e.g. ``{"category": "primary_type"}``).
    source : str or Path
        The file, for the message.
    """
    columns = [str(c) for c in columns]
    missing = [(role, col) for role, col in roles.items() if col not in columns]
    if not missing:
        return
    parts = []
    for role, col in missing:
        close = difflib.get_close_matches(
            col.lower(), [c.lower() for c in columns], n=1, cutoff=0.8
        )
        hint = ""
        if close:
            hint = f", did you mean {next(c for c in columns if c.lower() == close[0])!r}?"
        parts.append(f"{col!r} (mapped as {role}{hint})")
    raise DataValidationError(
        f"{source}: missing column(s) {', '.join(parts)}; the file has {columns}. "
        "Map your own columns with dataset: events, options.mapping"
    )


def guess_mapping(columns) -> EventMapping:
    """A mapping from common column names (``lat``, ``Latitude``, ``datetime``...).

    Raises
    ------
    DataValidationError
        When a role has no recognisable column; the message lists the columns.
    """
    lower = {str(c).lower(): str(c) for c in columns}
    found, missing = {}, []
    for role, names in GUESSES.items():
        hit = next((lower[n] for n in names if n in lower), None)
        if hit is None:
            missing.append(role)
        else:
            found[role] = hit
    if missing:
        raise DataValidationError(
            f"cannot guess the {', '.join(missing)} column(s) from {list(columns)}; give the "
            "mapping, e.g. --mapping time=<col>,latitude=<col>,longitude=<col>"
        )
    return EventMapping(**found)


def parse_event_mapping(text: str) -> EventMapping:
    """A mapping from the command line: ``time=datetime,latitude=lat,...`` or YAML ``{...}``."""
    text = text.strip()
    if text.startswith("{"):
        import yaml

        try:
            return as_mapping(yaml.safe_load(text))
        except yaml.YAMLError as exc:
            raise DataValidationError(f"--mapping {text!r} is not valid YAML: {exc}") from exc
    pairs = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise DataValidationError(
            f"--mapping: {bad[0]!r} is not role=column (e.g. time=datetime,latitude=lat,"
            "longitude=lon,category=type)"
        )
    return as_mapping(dict(tuple(x.strip() for x in p.split("=", 1)) for p in pairs))


def validate_event_file(
    path: str | Path | list,
    mapping: EventMapping | dict | str | None = None,
    time_zone: str | None = None,
    cell_size_m: float = DEFAULT_CELL_M,
    freq: str = "D",
    root: str | Path | None = None,
) -> str:
    """Check a raw event file and describe it (``citybrain data validate --events``).

    Parameters
    ----------
    path : str, Path or list
        Event file(s).
    mapping : EventMapping, dict or str, optional
        Column roles (a ``role=column,...`` string is parsed); guessed from common column
        names when omitted.
    time_zone : str, optional
        The city's IANA zone (needed when times carry UTC offsets).
    cell_size_m : float
        Cell side for the grid summary.
    freq : str
        Period for the grid summary.
    root : str or Path, optional
        Data root for relative paths.

    Returns
    -------
    str
        Rows, kept events, dropped rows with reasons, time span, categories, and the grid
        (cells, cells with events, periods).

    Raises
    ------
    DataValidationError, FileNotFoundError
        As :func:`read_events`.
    """
    paths = [resolve_event_path(p, root) for p in _as_list(path)]
    if mapping is None:
        mapping = guess_mapping(read_columns(paths[0]))
        guessed = f"mapping guessed from the columns: {mapping.roles()}\n"
    else:
        mapping = parse_event_mapping(mapping) if isinstance(mapping, str) else mapping
        guessed = ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the report already counts what was dropped
        ds = load_events(
            root,
            path=paths,
            mapping=mapping,
            time_zone=time_zone,
            cell_size_m=cell_size_m,
            freq=freq,
        )
    report, grid = ds.extras["events_report"], ds.extras["grid"]
    n_periods = ds.values["timestamp"].nunique()
    active = int(ds.sensors["in_mask"].sum())
    return (
        f"ok: {guessed}{report.summary()}\n"
        f"grid: {grid.n_rows} x {grid.n_cols} cells of {grid.cell_size_m:g} m, {active} with "
        f"events; {n_periods} periods of {freq}"
    )


def read_columns(path: Path) -> list[str]:
    """The column names of a CSV or Parquet file, without reading its rows."""
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    if name.endswith(CSV_SUFFIXES):
        return list(pd.read_csv(path, nrows=0, sep=_sep(path)).columns)
    raise DataValidationError(
        f"{path}: unsupported file type; use one of {CSV_SUFFIXES + PARQUET_SUFFIXES}"
    )


def _read_one(
    path: Path, mapping: EventMapping, categories, time_zone, report: EventReport
) -> pd.DataFrame:
    roles = mapping.roles()
    if categories and mapping.category is None:
        raise DataValidationError(
            f"{path}: a categories filter needs mapping.category (the column with the type)"
        )
    check_columns(read_columns(path), roles, path)
    is_csv = not path.name.lower().endswith(PARQUET_SUFFIXES)
    used = list(dict.fromkeys(roles.values()))
    if is_csv:
        raw = pd.read_csv(path, usecols=used, sep=_sep(path))
    else:
        raw = pd.read_parquet(path, columns=used)
    report.rows += len(raw)
    first_line = 2 if is_csv else 1  # CSV: the header is line 1
    if categories:
        kind = raw[mapping.category].astype("string").str.strip()
        report.seen_categories.update(kind.dropna().unique().tolist())
        keep = kind.isin([str(c).strip() for c in categories]).fillna(False)
        report.other_categories += int((~keep).sum())
        raw = raw[keep.to_numpy(dtype=bool)]
    lat = pd.to_numeric(raw[mapping.latitude], errors="coerce")
    lon = pd.to_numeric(raw[mapping.longitude], errors="coerce")
    # exports write 0 (or nothing) where the location was withheld
    bad = lat.isna() | lon.isna() | (lat == 0) | (lon == 0) | (lat.abs() > 90) | (lon.abs() > 180)
    report.without_coordinates += int(bad.sum())
    raw, lat, lon = raw[~bad.to_numpy()], lat[~bad], lon[~bad]
    times = parse_event_times(raw, mapping, time_zone, path, first_line)
    out = pd.DataFrame({TIMESTAMP: times.to_numpy(), "lat": lat.to_numpy(), "lon": lon.to_numpy()})
    if mapping.category is not None:
        out["type"] = raw[mapping.category].astype(str).str.strip().to_numpy()
    return out


def parse_event_times(
    raw: pd.DataFrame,
    mapping: EventMapping,
    time_zone: str | None,
    source,
    first_line: int = 2,
) -> pd.Series:
    """Local, naive event times from the mapped ``time`` (and ``hour``) columns.

    Raises
    ------
    DataValidationError
        Unparseable or missing values (naming the file, column and lines), values with and
        without UTC offsets mixed, or offsets without a ``time_zone``.
    """
    col = mapping.time
    column = raw[col]
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        parsed, aware = column, True
    elif pd.api.types.is_datetime64_dtype(column):
        parsed, aware = column, False
    else:
        text = column.astype("string").str.strip()
        has_tz = text.str.contains(_AWARE).fillna(False).to_numpy(dtype=bool)
        present = text.notna().to_numpy()
        aware = bool(has_tz.any())
        if aware and not has_tz[present].all():
            naive = np.flatnonzero(~has_tz & present)
            raise DataValidationError(
                f"{source}: column {col!r} (time) mixes values with and without a UTC offset, "
                f"e.g. {_lines(raw, naive, col, first_line)}; use one convention"
            )
        parsed = pd.to_datetime(text, errors="coerce", utc=aware)
        retry = parsed.isna() & text.notna()
        if retry.any():  # formats that differ between rows
            parsed[retry] = pd.to_datetime(text[retry], errors="coerce", utc=aware, format="mixed")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        raise DataValidationError(
            f"{source}: column {col!r} (time) has {len(bad)} missing or unparseable value(s): "
            f"{_lines(raw, bad, col, first_line)}"
        )
    if aware:
        if time_zone is None:
            raise DataValidationError(
                f"{source}: column {col!r} (time) carries UTC offsets (e.g. "
                f"{_lines(raw, [0], col, first_line)}); give time_zone (the city's IANA zone, "
                "e.g. America/Chicago) so that periods are local days and hours"
            )
        parsed = parsed.dt.tz_convert(time_zone).dt.tz_localize(None)
    if mapping.hour is not None:
        parsed = parsed.dt.normalize() + _hours(raw, mapping.hour, source, first_line)
    return parsed


def _hours(raw: pd.DataFrame, col: str, source, first_line: int) -> pd.Series:
    hour = pd.to_numeric(raw[col], errors="coerce")
    bad = np.flatnonzero((hour.isna() | (hour < 0) | (hour > 23)).to_numpy())
    if len(bad):
        raise DataValidationError(
            f"{source}: column {col!r} (hour) needs hours 0-23; {len(bad)} value(s) are not: "
            f"{_lines(raw, bad, col, first_line)}"
        )
    return pd.to_timedelta(hour.to_numpy(), unit="h")


def _lines(raw: pd.DataFrame, positions, col: str, first_line: int) -> str:
    # raw keeps the file's row index through filtering, so labels are file lines
    labels = raw.index[list(positions)[:5]]
    return ", ".join(f"line {int(i) + first_line}: {raw.at[i, col]!r}" for i in labels)


def _check_time_zone(time_zone: str | None) -> None:
    if time_zone is None:
        return
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise DataValidationError(
            f"unknown time_zone {time_zone!r}; use an IANA name such as America/Toronto"
        ) from exc


def _check_categories_seen(categories: list[str], report: EventReport) -> None:
    # a category of the filter that never occurs is a typo, not an empty result
    unknown = [c for c in categories if str(c).strip() not in report.seen_categories]
    if unknown:
        seen = sorted(report.seen_categories)
        raise DataValidationError(
            f"{', '.join(report.sources)}: categories {unknown} never occur in the category "
            f"column; it has {seen[:20]}{' ...' if len(seen) > 20 else ''}"
        )


def _describe(events: pd.DataFrame, report: EventReport) -> None:
    report.events = len(events)
    report.start, report.end = events[TIMESTAMP].min(), events[TIMESTAMP].max()
    if "type" in events.columns:
        report.categories = {str(k): int(v) for k, v in events["type"].value_counts().items()}


def _as_list(path) -> list:
    if isinstance(path, (list, tuple)):
        if not path:
            raise DataValidationError("events: path is an empty list")
        return list(path)
    return [path]


def _sep(path: Path) -> str:
    return "\t" if path.name.lower().endswith(".tsv") else ","


# ---------------------------------------------------------------------- gridding
def load_events(
    root: str | Path | None = None,
    *,
    path: str | Path | list,
    mapping: EventMapping | dict,
    categories: list[str] | None = None,
    time_zone: str | None = None,
    cell_size_m: float = DEFAULT_CELL_M,
    freq: str = "D",
    boundary: str | Path = "history",
    start=None,
    end=None,
    name: str | None = None,
) -> SeriesDataset:
    """Events of a raw file counted per ``cell_size_m`` cell per ``freq`` period.

    Parameters
    ----------
    root : str or Path, optional
        Data root for relative paths (see :func:`read_events`).
    path, mapping, categories, time_zone
        See :func:`read_events`.
    cell_size_m : float
        Side of the square cells in metres.
    freq : str
        Period: ``"h"``, ``"6h"``, ``"D"``, ``"W"``... (periods labelled by their start).
    boundary : str or Path
        ``"history"`` (default): the grid covers the events and the scoring mask is the
        cells with events (hotspot metrics recompute it on the training window);
        ``"none"``: every cell of the events' bounding box is scored; or a GeoJSON file of
        the area (Polygon/MultiPolygon): the grid covers it, events outside are dropped and
        the mask is the cells overlapping it.
    start, end : timestamp-like, optional
        First and last period kept (local time); events outside are dropped before the
        grid is laid out.
    name : str, optional
        Dataset name; default the first file's name without suffixes.

    Returns
    -------
    SeriesDataset
        Series ``cell_{row}_{col}``, value = events per period; ``sensors`` with ``row,
        col, lat, lon`` (cell centre), ``in_mask`` and ``boundary_share``; rook
        ``adjacency``; ``extras``: ``grid`` (:class:`GridSpec`), ``mask_kind`` (``"history"``,
        ``"boundary"`` or ``"none"``), ``boundary`` (file or None), ``events_report``.
    """
    opts = EventOptions(
        path=[str(p) for p in _as_list(path)],
        mapping=as_mapping(mapping),
        categories=categories,
        time_zone=time_zone,
        cell_size_m=cell_size_m,
        freq=freq,
        boundary=str(boundary),
        start=None if start is None else str(start),
        end=None if end is None else str(end),
        name=name,
    )
    _check_freq(opts.freq)
    events, report = read_events(opts.path, opts.mapping, opts.categories, opts.time_zone, root)
    events = _in_time_range(events, opts, report)
    area = (
        None
        if opts.boundary in MASKS
        else Boundary.from_geojson(resolve_event_path(opts.boundary, root))
    )
    if area is not None:
        grid = boundary_grid(area, opts.cell_size_m)
        events = _inside(events, area, grid, report)
    else:
        grid = GridSpec.covering(events["lat"], events["lon"], opts.cell_size_m)
    stem = opts.name or _stem(Path(report.sources[0]))
    ds = events_to_grid(
        events, grid=grid, freq=opts.freq, start=opts.start, end=opts.end, name=stem
    )
    ds.source = ", ".join(report.sources)
    _attach_mask(ds, events, area, opts.boundary)
    ds.extras["events_report"] = report
    return ds


def load_events_dataset(root: str | Path | None = None, **options: Any) -> SeriesDataset:
    """The ``events`` registry entry: options validated first, errors naming the option."""
    try:
        opts = EventOptions(**options)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        known = ", ".join(EventOptions.model_fields)
        raise DataValidationError(
            f"dataset events: option '{where}': {first['msg']} (options: {known})"
        ) from exc
    return load_events(root, **opts.model_dump(exclude={"mapping"}), mapping=opts.mapping)


def _check_freq(freq: str) -> None:
    try:
        pd.tseries.frequencies.to_offset(freq)
    except ValueError as exc:
        raise DataValidationError(
            f"events: freq {freq!r} is not a pandas period (try h, 6h, D, W)"
        ) from exc


def _in_time_range(events: pd.DataFrame, opts: EventOptions, report: EventReport) -> pd.DataFrame:
    if opts.start is None and opts.end is None:
        return events
    periods, code = _period_codes(events[TIMESTAMP], opts.freq, opts.start, opts.end)
    keep = (code >= 0) & (code < len(periods))
    report.outside_time_range += int((~keep).sum())
    events = events[keep].reset_index(drop=True)
    if events.empty:
        raise DataValidationError(
            f"{', '.join(report.sources)}: no events between start={opts.start} and end={opts.end}"
        )
    _describe(events, report)
    return events


def _inside(events: pd.DataFrame, area: Boundary, grid: GridSpec, report) -> pd.DataFrame:
    share = area.cell_share(grid)
    rows, cols = grid.cell_of(events["lat"], events["lon"])
    on_grid = (rows >= 0) & (rows < grid.n_rows) & (cols >= 0) & (cols < grid.n_cols)
    flat = np.where(on_grid, rows * grid.n_cols + cols, 0)
    keep = on_grid & (share[flat] == 1.0)
    # only events in cells the boundary clips need the exact (slower) polygon test
    unsure = on_grid & ~keep & (share[flat] < 1.0)
    idx = np.flatnonzero(unsure)
    keep[idx] = area.contains(events["lat"].to_numpy()[idx], events["lon"].to_numpy()[idx])
    report.outside_boundary += int((~keep).sum())
    events = events[keep].reset_index(drop=True)
    if events.empty:
        raise DataValidationError(f"no events inside the boundary {area.source}")
    _describe(events, report)
    return events


def _attach_mask(ds: SeriesDataset, events: pd.DataFrame, area, boundary: str) -> None:
    grid = ds.extras["grid"]
    if area is not None:
        share = area.cell_share(grid)
        kind = "boundary"
    else:
        rows, cols = grid.cell_of(events["lat"], events["lon"])
        seen = np.bincount(rows * grid.n_cols + cols, minlength=grid.n_rows * grid.n_cols)
        share = (seen > 0).astype(float) if boundary == "history" else np.ones(len(seen))
        kind = boundary
    ds.sensors = ds.sensors.assign(in_mask=share > 0)
    if area is not None:
        ds.sensors["boundary_share"] = share
    ds.extras.update({"mask_kind": kind, "boundary": None if area is None else area.source})


def _stem(path: Path) -> str:
    return file_stem(path, CSV_SUFFIXES + PARQUET_SUFFIXES)
