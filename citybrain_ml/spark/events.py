"""Event logs -> counts per grid cell per period on Spark, identical to the pandas path.

:func:`events_to_grid_spark` is :func:`citybrain_ml.data.grid.events_to_grid` for a Spark
DataFrame of ``timestamp, lat, lon`` events and :func:`load_events_spark` is
:func:`citybrain_ml.data.events.load_events` for raw CSV/Parquet exports (column mapping,
category filter, coordinates withheld, UTC offsets converted to the city's time zone,
``start``/``end``, ``boundary="history"|"none"|<GeoJSON>``). Both give the same cell ids,
periods and counts as the pandas functions on the same input.

How the answers stay identical
------------------------------
* **Cells.** The grid (:class:`~citybrain_ml.data.grid.GridSpec`) is laid out on the driver
  from the events' exact minimum and maximum (``GridSpec.covering`` of the bounding box
  gives the same grid as of all points, because every step of the cell formula is
  monotone). Each event's row and column use the same double-precision operations in the
  same order as :meth:`GridSpec.cell_of`: ``floor((lat - lat0) * M_PER_DEG / cell)`` and
  ``floor((lon - lon0) * M_PER_DEG * cos_ref / cell)``, with ``cos_ref`` computed once by
  numpy on the driver and passed as a literal (a JVM ``cos`` could differ in the last bit).
  Events exactly on a cell border land in the same cell.
* **Periods.** Times are handled as integer microseconds since 1970-01-01 in local wall
  time (no session time zone is involved): a fixed period (``h``, ``6h``, ``D``, ``2D``)
  is an integer floor division from the epoch (as ``Timestamp.floor``), ``W-XXX`` weeks and
  ``ME`` months use the same anchors as pandas periods. Period labels come from the pandas
  code itself (``_period_codes`` on the driver).
* **Times of raw files.** Text times are normalised with a few regular expressions
  (``2024/03/01`` and US ``03/01/2024 ... [AM|PM]`` to ISO, a trailing UTC offset ``Z``,
  ``+00``, ``-05:00`` split off with the same rule as the pandas reader) and cast to
  ``TIMESTAMP_NTZ`` (ISO dates, ``T`` or space, optional seconds and fractions). Values with
  an offset are converted to ``time_zone`` with ``convert_timezone``; values without are
  local already, as in :func:`~citybrain_ml.data.events.parse_event_times`. Other formats are
  reported as unparseable (pandas may guess more of them). Parquet timestamp columns are
  used as they are (instants converted to ``time_zone``).
* **Zeros.** The sparse counts are joined onto the cross product of every cell and every
  period, so a cell without events has a 0 in every period.

Only SQL functions run per event (no Python UDF), except for the exact point-in-polygon test
of a GeoJSON boundary, which runs (vectorised, ``mapInPandas``) only on the events of the
cells the boundary clips.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.data.grid import (
    M_PER_DEG,
    Boundary,
    GridSpec,
    _period_codes,
    boundary_grid,
    cell_ids,
    rook_edges,
)
from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE, SeriesDataset

EPOCH = pd.Timestamp("1970-01-01")
US_PER_DAY = 86_400_000_000
#: same rule as citybrain_ml.data.events._AWARE (a trailing UTC offset)
AWARE = r"(?:Z|[+-]\d{2}(?::?\d{2})?)$"


@dataclass
class SparkEventGrid:
    """The event grid as a Spark DataFrame plus the small pieces the driver holds.

    Attributes
    ----------
    values : pyspark.sql.DataFrame
        ``series_id, timestamp, value`` for every cell and period (zeros included);
        ``timestamp`` is a ``TIMESTAMP_NTZ`` (local time, as in the pandas dataset).
    grid : GridSpec
        The grid.
    periods : DatetimeIndex
        Period start times.
    sensors : DataFrame
        ``series_id, row, col, lat, lon`` (cell centre) and, from :func:`load_events_spark`,
        ``in_mask`` (+ ``boundary_share`` for a GeoJSON boundary).
    freq, name : str
        Period alias and dataset name.
    extras : dict
        ``dropped`` (events outside the grid or periods), and from :func:`load_events_spark`
        ``mask_kind``, ``boundary``, ``events_report``.
    """

    values: object
    grid: GridSpec
    periods: pd.DatetimeIndex
    sensors: pd.DataFrame
    freq: str
    name: str
    extras: dict = field(default_factory=dict)

    @property
    def ids(self) -> np.ndarray:
        return cell_ids(self.grid.n_rows, self.grid.n_cols)

    def to_pandas(self) -> pd.DataFrame:
        """``values`` collected, in the pandas dataset's order (series, then time)."""
        frame = self.values.toPandas()
        frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP]).astype(
            f"datetime64[{self.periods.unit}]"
        )
        frame[VALUE] = frame[VALUE].astype(float)
        return frame.sort_values([SERIES_ID, TIMESTAMP], kind="stable").reset_index(drop=True)

    def to_dataset(self) -> SeriesDataset:
        """The same :class:`SeriesDataset` the pandas functions return (values collected)."""
        extras = {"grid": self.grid}
        extras.update({k: v for k, v in self.extras.items() if k != "dropped"})
        return SeriesDataset(
            values=self.to_pandas(),
            freq=self.freq,
            sensors=self.sensors.copy(),
            adjacency=rook_edges(self.ids, self.grid.n_rows, self.grid.n_cols),
            name=self.name,
            source="events",
            extras=extras,
        )


# ====================================================================== time helpers
def _epoch_ntz():
    from pyspark.sql import functions as F

    return F.lit(EPOCH.to_pydatetime()).cast("timestamp_ntz")


def _us(ts) -> int:
    """Microseconds since the epoch of a naive timestamp."""
    return int((pd.Timestamp(ts) - EPOCH) // pd.Timedelta(1, "us"))


def _micros_of(col, dtype):
    """Local wall time of a timestamp column as integer microseconds since the epoch."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if isinstance(dtype, T.TimestampType):
        # an instant: its wall time in the session time zone, as toPandas() shows it
        col = col.cast("timestamp_ntz")
    elif isinstance(dtype, T.DateType):
        col = col.cast("timestamp_ntz")
    return F.timestamp_diff("MICROSECOND", _epoch_ntz(), col)


def _text_micros(frame, time_zone: str | None):
    """Add ``_t`` (local wall time, micros), ``_has_tz``, ``_present`` from text ``_txt``.

    Built in stages (one column per step) so that no regular expression is evaluated twice
    per row and the generated code stays small.
    """
    from pyspark.sql import functions as F

    offset = r"\s*(Z|[+-]\d{2}(?::?\d{2})?)$"
    frame = frame.withColumn("_has_tz", F.coalesce(F.col("_txt").rlike(AWARE), F.lit(False)))
    frame = frame.withColumn(
        "_off", F.when(F.col("_has_tz"), F.regexp_extract("_txt", offset, 1)).otherwise("")
    )
    body = F.when(F.col("_has_tz"), F.regexp_replace("_txt", offset, "")).otherwise(F.col("_txt"))
    frame = frame.withColumn("_body", body)
    frame = frame.withColumn("_ampm", F.upper(F.regexp_extract("_body", r"\s*([AaPp][Mm])$", 1)))
    iso = F.regexp_replace(
        F.regexp_replace(
            F.regexp_replace("_body", r"\s*[AaPp][Mm]$", ""),
            r"^(\d{1,2})/(\d{1,2})/(\d{4})",
            "$3-$1-$2",
        ),
        r"^(\d{4})/(\d{1,2})/(\d{1,2})",
        "$1-$2-$3",
    )
    frame = frame.withColumn("_wall", iso.try_cast("timestamp_ntz"))
    hour = F.hour("_wall")
    shift = (
        F.when((F.col("_ampm") == "AM") & (hour == 12), F.lit(-12))
        .when((F.col("_ampm") == "PM") & (hour < 12), F.lit(12))
        .otherwise(F.lit(0))
    )
    wall_us = F.timestamp_diff("MICROSECOND", _epoch_ntz(), F.col("_wall")) + shift.cast(
        "long"
    ) * F.lit(3_600_000_000)
    sign = F.when(F.substring("_off", 1, 1) == "-", F.lit(-1)).otherwise(F.lit(1))
    hh = F.regexp_extract("_off", r"^[+-](\d{2})", 1)
    mm = F.regexp_extract("_off", r"^[+-]\d{2}:?(\d{2})$", 1)
    minutes = sign * (
        F.coalesce(hh.try_cast("long"), F.lit(0)) * 60 + F.coalesce(mm.try_cast("long"), F.lit(0))
    )
    frame = frame.withColumn("_wall_us", wall_us).withColumn("_off_min", minutes)
    if time_zone:
        utc = F.timestamp_add(
            "MICROSECOND", F.col("_wall_us") - F.col("_off_min") * F.lit(60_000_000), _epoch_ntz()
        )
        local = F.timestamp_diff(
            "MICROSECOND", _epoch_ntz(), F.convert_timezone(F.lit("UTC"), F.lit(time_zone), utc)
        )
    else:
        local = F.lit(None).cast("long")
    frame = frame.withColumn("_t", F.when(F.col("_has_tz"), local).otherwise(F.col("_wall_us")))
    return frame.withColumn("_present", F.col("_txt").isNotNull())


def _with_micros(frame, column: str, time_zone: str | None):
    """``frame`` plus ``_t`` (local wall time in micros; null where unparseable, or where the
    value carries an offset and no ``time_zone`` is given), ``_has_tz`` and ``_present``."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    dtype = frame.schema[column].dataType
    col = F.col(column)
    if isinstance(dtype, T.TimestampType):  # an instant (tz-aware in pandas)
        if time_zone:
            utc = F.timestamp_add("MICROSECOND", F.unix_micros(col), _epoch_ntz())
            local = F.convert_timezone(F.lit("UTC"), F.lit(time_zone), utc)
            micros = F.timestamp_diff("MICROSECOND", _epoch_ntz(), local)
        else:
            micros = F.lit(None).cast("long")
        return frame.select(
            "*",
            micros.alias("_t"),
            col.isNotNull().alias("_has_tz"),
            col.isNotNull().alias("_present"),
        )
    if isinstance(dtype, (T.TimestampNTZType, T.DateType)):
        return frame.select(
            "*",
            _micros_of(col, dtype).alias("_t"),
            F.lit(False).alias("_has_tz"),
            col.isNotNull().alias("_present"),
        )
    text = F.trim(col.cast("string"))
    frame = frame.withColumn("_txt", F.when(text == "", F.lit(None)).otherwise(text))
    return _text_micros(frame, time_zone)


# ====================================================================== periods
@dataclass(frozen=True)
class _PeriodRule:
    """Absolute period key of an event time (a long), as pandas numbers periods."""

    kind: str  # "fixed", "week" or "month"
    step_us: int = 0
    week_start: int = 0  # Monday = 0

    @classmethod
    def of(cls, freq: str) -> _PeriodRule:
        offset = pd.tseries.frequencies.to_offset(freq)
        try:
            step = pd.Timedelta(offset)
        except ValueError:
            step = None
        if step is not None:
            return cls("fixed", step_us=int(step // pd.Timedelta(1, "us")))
        name = type(offset).__name__
        if name == "Week" and offset.n == 1 and offset.weekday is not None:
            # W-SUN: weeks end on Sunday (weekday 6) and start on Monday
            return cls("week", week_start=(offset.weekday + 1) % 7)
        if name == "MonthEnd" and offset.n == 1:
            return cls("month")
        raise NotImplementedError(
            f"freq {freq!r} is not supported on Spark; use a fixed period (h, 6h, D, 2D), "
            "a weekly one (W, W-MON...) or ME"
        )

    def key(self, micros):
        """Spark expression of the absolute period key of ``micros`` (local wall time)."""
        from pyspark.sql import functions as F

        if self.kind == "fixed":
            return _floor_div(micros, self.step_us)
        day = _floor_div(micros, US_PER_DAY)
        if self.kind == "week":
            # 1970-01-01 was a Thursday (Monday = 0 -> 3)
            start_day = day - F.pmod(day + F.lit(3 - self.week_start), F.lit(7))
            return _floor_div(start_day, 7)
        ts = F.timestamp_add("MICROSECOND", micros, _epoch_ntz())
        return (F.year(ts) * 12 + F.month(ts) - 1).cast("long")

    def key_of(self, ts: pd.Timestamp) -> int:
        """The same key on the driver, for a period start."""
        us = _us(ts)
        if self.kind == "fixed":
            return us // self.step_us
        day = us // US_PER_DAY
        if self.kind == "week":
            return (day - (day + 3 - self.week_start) % 7) // 7
        ts = pd.Timestamp(ts)
        return ts.year * 12 + ts.month - 1


def _floor_div(col, divisor: int):
    """Integer floor division (``div`` truncates toward zero; floor is wanted for negatives)."""
    from pyspark.sql import functions as F

    return ((col - F.pmod(col, F.lit(divisor))) / F.lit(divisor)).cast("long")


def _time_bounds(freq: str, start, end) -> tuple[int | None, int | None]:
    """``[lo, hi)`` in micros of the periods from ``start`` to ``end`` (None: open)."""
    lo = hi = None
    if start is not None:
        periods, _ = _period_codes(pd.Series([pd.Timestamp(start)]), freq, start, start)
        lo = _us(periods[0])
    if end is not None:
        periods, _ = _period_codes(pd.Series([pd.Timestamp(end)]), freq, end, end)
        following = pd.date_range(periods[0], periods=2, freq=freq)
        after = following[1] if following[0] == periods[0] else following[0]
        hi = _us(after)
    return lo, hi


def _periods(freq: str, t_min_us: int, t_max_us: int, start, end) -> pd.DatetimeIndex:
    """The pandas period labels for events spanning ``[t_min, t_max]``."""
    ts = pd.Series(pd.to_datetime([EPOCH + pd.Timedelta(t, "us") for t in (t_min_us, t_max_us)]))
    periods, _ = _period_codes(ts, freq, start, end)
    return pd.DatetimeIndex(periods)


# ====================================================================== cells
def _cell_exprs(grid: GridSpec, lat: str = "lat", lon: str = "lon"):
    """Row and column of each event, operation for operation as ``GridSpec.cell_of``."""
    from pyspark.sql import functions as F

    cos_ref = float(np.cos(np.radians(grid.ref_lat)))
    north = (F.col(lat).cast("double") - F.lit(float(grid.lat0))) * F.lit(float(M_PER_DEG))
    east = (F.col(lon).cast("double") - F.lit(float(grid.lon0))) * F.lit(float(M_PER_DEG))
    east = east * F.lit(cos_ref)
    size = F.lit(float(grid.cell_size_m))
    return F.floor(north / size).cast("long"), F.floor(east / size).cast("long")


def _covering_grid(lat_min, lat_max, lon_min, lon_max, cell_size: float) -> GridSpec:
    # the cell formula is monotone: the bounding box gives GridSpec.covering(all points)
    return GridSpec.covering(
        np.array([lat_min, lat_max], float), np.array([lon_min, lon_max], float), cell_size
    )


def _sensors(grid: GridSpec) -> pd.DataFrame:
    ids = cell_ids(grid.n_rows, grid.n_cols)
    rows, cols = np.divmod(np.arange(grid.n_rows * grid.n_cols), grid.n_cols)
    lat, lon = grid.centroids()
    return pd.DataFrame({SERIES_ID: ids, "row": rows, "col": cols, "lat": lat, "lon": lon})


def _dense_values(spark, counts, grid: GridSpec, periods: pd.DatetimeIndex, rule, weight):
    """Zero-filled ``series_id, timestamp, value`` from sparse ``cell, code, total``."""
    from pyspark.sql import functions as F

    n_cells = grid.n_rows * grid.n_cols
    wr, wc = len(str(grid.n_rows - 1)), len(str(grid.n_cols - 1))
    period_us = [_us(p) for p in periods]
    # the period table is tiny (one row per period): built on the driver
    table = spark.createDataFrame(
        [(i, us) for i, us in enumerate(period_us)], "code long, start_us long"
    )
    cells = spark.range(n_cells).withColumnRenamed("id", "cell")
    dense = cells.crossJoin(F.broadcast(table))
    out = dense.join(counts, on=["cell", "code"], how="left")
    row = (F.col("cell") / F.lit(grid.n_cols)).cast("long")
    col = F.pmod(F.col("cell"), F.lit(grid.n_cols))
    series = F.format_string(f"cell_%0{wr}d_%0{wc}d", row, col)
    return out.select(
        series.alias(SERIES_ID),
        F.timestamp_add("MICROSECOND", F.col("start_us"), _epoch_ntz()).alias(TIMESTAMP),
        F.coalesce(F.col("total").cast("double"), F.lit(0.0)).alias(VALUE),
    )


def _aggregate(events, grid: GridSpec, rule: _PeriodRule, weight: str | None, extra_keys=()):
    """Sparse totals per ``(period key, row, col[, extra])`` with min/max time (one pass)."""
    from pyspark.sql import functions as F

    row, col = _cell_exprs(grid)
    total = F.count(F.lit(1)) if weight is None else F.sum(F.col(weight).cast("double"))
    keyed = events.select(
        rule.key(F.col("_t")).alias("pkey"),
        row.alias("row"),
        col.alias("col"),
        *[F.col(k) for k in extra_keys],
        F.col("_t"),
        *([F.col(weight)] if weight else []),
    )
    return keyed.groupBy("pkey", "row", "col", *extra_keys).agg(
        total.alias("total"),
        F.count(F.lit(1)).alias("n"),
        F.min("_t").alias("t_min"),
        F.max("_t").alias("t_max"),
    )


def _counts(agg, grid: GridSpec, rule: _PeriodRule, periods: pd.DatetimeIndex):
    """Sparse ``cell, code, total`` of the events inside the grid and the periods."""
    from pyspark.sql import functions as F

    first = rule.key_of(periods[0])
    code = F.col("pkey") - F.lit(first)
    inside = (
        (F.col("row") >= 0)
        & (F.col("row") < grid.n_rows)
        & (F.col("col") >= 0)
        & (F.col("col") < grid.n_cols)
        & (code >= 0)
        & (code < len(periods))
    )
    kept = agg.where(inside)
    return kept.groupBy(
        (F.col("row") * grid.n_cols + F.col("col")).alias("cell"), code.alias("code")
    ).agg(F.sum("total").alias("total")), agg.where(~inside)


# ====================================================================== public
def events_to_grid_spark(
    events,
    cell_size: float | None = None,
    grid: GridSpec | None = None,
    freq: str = "D",
    start=None,
    end=None,
    weight: str | None = None,
    name: str = "events_grid",
) -> SparkEventGrid:
    """:func:`~citybrain_ml.data.grid.events_to_grid` on a Spark DataFrame of events.

    Parameters
    ----------
    events : pyspark.sql.DataFrame
        ``timestamp`` (``TIMESTAMP_NTZ`` local time, or ``TIMESTAMP`` read as wall time of
        the session time zone), ``lat``, ``lon`` (+ ``weight``).
    cell_size, grid, freq, start, end, weight, name
        As in :func:`~citybrain_ml.data.grid.events_to_grid`.

    Returns
    -------
    SparkEventGrid
        ``values`` (Spark), ``grid``, ``periods``, ``sensors``; ``to_dataset()`` collects
        the same :class:`SeriesDataset` as the pandas function. Counts are exact; sums of a
        ``weight`` may differ from pandas in the last bits (summation order).

    Raises
    ------
    ValueError
        Missing columns, events without lat/lon, or neither ``cell_size`` nor ``grid``.
    """
    from pyspark.sql import functions as F

    missing = [
        c
        for c in [TIMESTAMP, "lat", "lon"] + ([weight] if weight else [])
        if c not in events.columns
    ]
    if missing:
        raise ValueError(f"event table lacks column(s) {missing}; found {events.columns}")
    if grid is None and (cell_size is None or cell_size <= 0):
        raise ValueError("events_to_grid needs cell_size (metres, > 0) or grid=GridSpec(...)")
    rule = _PeriodRule.of(freq)
    frame = events.select(
        _micros_of(F.col(TIMESTAMP), events.schema[TIMESTAMP].dataType).alias("_t"),
        F.col("lat").cast("double").alias("lat"),
        F.col("lon").cast("double").alias("lon"),
        *([F.col(weight)] if weight else []),
    )
    stats = frame.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(
            (F.col("lat").isNull() | F.isnan("lat") | F.col("lon").isNull() | F.isnan("lon")).cast(
                "long"
            )
        ).alias("bad"),
        F.min("lat"),
        F.max("lat"),
        F.min("lon"),
        F.max("lon"),
        F.min("_t"),
        F.max("_t"),
    ).first()
    if stats["bad"]:
        raise ValueError(f"event table has {stats['bad']} rows without lat/lon; drop them first")
    if stats["n"] == 0:
        raise ValueError("event table is empty")
    covering = grid is None
    if covering:
        grid = _covering_grid(stats[2], stats[3], stats[4], stats[5], cell_size)
    periods = _periods(freq, stats[6], stats[7], start, end)
    agg = _aggregate(frame, grid, rule, weight)
    counts, outside = _counts(agg, grid, rule, periods)
    dropped = 0
    if not (covering and start is None and end is None):  # else nothing can fall outside
        agg = agg.persist()
        counts, outside = _counts(agg, grid, rule, periods)
        dropped = int(outside.agg(F.sum("n")).first()[0] or 0)
    if dropped:
        warnings.warn(
            f"events_to_grid_spark: dropped {dropped} of {stats['n']} events outside the grid "
            "or the period range",
            stacklevel=2,
        )
    spark = events.sparkSession
    values = _dense_values(spark, counts, grid, periods, rule, weight)
    return SparkEventGrid(values, grid, periods, _sensors(grid), freq, name, {"dropped": dropped})


def load_events_spark(
    spark,
    *,
    path,
    mapping,
    categories: list[str] | None = None,
    time_zone: str | None = None,
    cell_size_m: float | None = None,
    freq: str = "D",
    boundary: str | Path = "history",
    start=None,
    end=None,
    name: str | None = None,
    root=None,
) -> SparkEventGrid:
    """:func:`~citybrain_ml.data.events.load_events` on Spark: raw files -> event grid.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
    path, mapping, categories, time_zone, cell_size_m, freq, boundary, start, end, name, root
        As in :func:`~citybrain_ml.data.events.load_events` (``cell_size_m`` defaults to its
        3 km). Paths may be anything Spark reads (``s3a://...``); a relative path that does not
        exist is looked up under the data root as in the pandas reader.

    Returns
    -------
    SparkEventGrid
        ``sensors`` has ``in_mask`` (and ``boundary_share`` for a GeoJSON boundary);
        ``extras``: ``mask_kind``, ``boundary``, ``events_report`` (an
        :class:`~citybrain_ml.data.events.EventReport` with the same counts as pandas).

    Raises
    ------
    DataValidationError
        As the pandas reader: missing columns, unparseable or mixed times, offsets without a
        time zone, unknown categories, no events left.
    """
    from pyspark.sql import functions as F

    from citybrain_ml.data.events import (
        DEFAULT_CELL_M,
        MASKS,
        EventOptions,
        EventReport,
        _as_list,
        _check_time_zone,
        _stem,
        as_mapping,
        check_columns,
        resolve_event_path,
    )
    from citybrain_ml.data.validation import DataValidationError

    opts = EventOptions(
        path=[str(p) for p in _as_list(path)],
        mapping=as_mapping(mapping),
        categories=categories,
        time_zone=time_zone,
        cell_size_m=DEFAULT_CELL_M if cell_size_m is None else cell_size_m,
        freq=freq,
        boundary=str(boundary),
        start=None if start is None else str(start),
        end=None if end is None else str(end),
        name=name,
    )
    rule = _PeriodRule.of(opts.freq)
    _check_time_zone(opts.time_zone)
    m = opts.mapping
    if opts.categories and m.category is None:
        raise DataValidationError(
            f"{opts.path[0]}: a categories filter needs mapping.category (the column with the type)"
        )
    paths = [_spark_path(p, root, resolve_event_path) for p in opts.path]
    report = EventReport([str(p) for p in paths])
    wanted = None if not opts.categories else [str(c).strip() for c in opts.categories]
    lo, hi = _time_bounds(opts.freq, opts.start, opts.end)
    frames = []
    for i, p in enumerate(paths):
        raw = _read_raw(spark, p)
        check_columns(raw.columns, m.roles(), p)
        frames.append(_clean(raw, m, opts.time_zone, wanted, i))
    events = frames[0]
    for other in frames[1:]:
        events = events.unionByName(other)

    # pass 1: what is dropped and why, the time span and the bounding box
    good_xy = ~F.col("_bad_xy")
    kept_cat = F.col("_kept_cat")
    in_time = F.lit(True)
    if lo is not None:
        in_time = in_time & (F.col("_t") >= F.lit(lo))
    if hi is not None:
        in_time = in_time & (F.col("_t") < F.lit(hi))
    parsed = F.col("_t").isNotNull()
    usable = kept_cat & good_xy & parsed & in_time
    stats = (
        events.groupBy("_file")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum((~kept_cat).cast("long")).alias("other"),
            F.sum((kept_cat & ~good_xy).cast("long")).alias("no_xy"),
            F.sum((kept_cat & good_xy & F.col("_present") & F.col("_has_tz")).cast("long")).alias(
                "aware"
            ),
            F.sum((kept_cat & good_xy & F.col("_present") & ~F.col("_has_tz")).cast("long")).alias(
                "naive"
            ),
            F.sum((kept_cat & good_xy & ~parsed).cast("long")).alias("bad_t"),
            F.sum((kept_cat & good_xy & parsed & ~in_time).cast("long")).alias("out_t"),
            F.sum(usable.cast("long")).alias("usable"),
            F.min(F.when(usable, F.col("_lat"))).alias("lat_min"),
            F.max(F.when(usable, F.col("_lat"))).alias("lat_max"),
            F.min(F.when(usable, F.col("_lon"))).alias("lon_min"),
            F.max(F.when(usable, F.col("_lon"))).alias("lon_max"),
            F.collect_set("_cat").alias("seen"),
        )
        .toPandas()
        .sort_values("_file")
    )
    _check_times(stats, paths, events, opts.time_zone, m.time)
    report.rows = int(stats["rows"].sum())
    report.other_categories = int(stats["other"].sum())
    report.without_coordinates = int(stats["no_xy"].sum())
    report.outside_time_range = int(stats["out_t"].sum())
    report.seen_categories = {c for s in stats["seen"] for c in s}
    if wanted:
        unknown = [c for c in opts.categories if str(c).strip() not in report.seen_categories]
        if unknown:
            seen = sorted(report.seen_categories)
            raise DataValidationError(
                f"{', '.join(report.sources)}: categories {unknown} never occur in the category "
                f"column; it has {seen[:20]}{' ...' if len(seen) > 20 else ''}"
            )
    if int(stats["usable"].sum()) == 0:
        raise DataValidationError(f"{', '.join(report.sources)}: no events left")
    if report.without_coordinates:
        warnings.warn(
            f"{', '.join(report.sources)}: dropped {report.without_coordinates} of "
            f"{report.rows} events without coordinates",
            stacklevel=2,
        )

    # pass 2: counts per period x cell (x category, for the report)
    usable_events = events.where(usable).select(
        "_t", F.col("_lat").alias("lat"), F.col("_lon").alias("lon"), "_cat"
    )
    area = None
    if opts.boundary in MASKS:
        grid = _covering_grid(
            stats["lat_min"].min(),
            stats["lat_max"].max(),
            stats["lon_min"].min(),
            stats["lon_max"].max(),
            opts.cell_size_m,
        )
        usable_events = usable_events.withColumn("_inside", F.lit(True))
    else:
        area = Boundary.from_geojson(resolve_event_path(opts.boundary, root))
        grid = boundary_grid(area, opts.cell_size_m)
        usable_events = _inside_boundary(spark, usable_events, area, grid)
    agg = _aggregate(usable_events, grid, rule, None, extra_keys=("_cat", "_inside")).persist()
    cell = F.when(F.col("_inside"), F.col("row") * grid.n_cols + F.col("col")).otherwise(
        F.lit(-1).cast("long")
    )
    # one small collect: events, time span and categories kept, and the cells with events
    summary = (
        agg.groupBy("_cat", "_inside", cell.alias("cell"))
        .agg(F.sum("n").alias("n"), F.min("t_min").alias("t_min"), F.max("t_max").alias("t_max"))
        .toPandas()
    )
    inside = summary[summary["_inside"].astype(bool)]
    report.outside_boundary = int(summary.loc[~summary["_inside"].astype(bool), "n"].sum())
    report.events = int(inside["n"].sum())
    if report.events == 0:
        raise DataValidationError(f"no events inside the boundary {area.source}")
    t_min, t_max = int(inside["t_min"].min()), int(inside["t_max"].max())
    report.start = EPOCH + pd.Timedelta(t_min, "us")
    report.end = EPOCH + pd.Timedelta(t_max, "us")
    if m.category is not None:
        per_cat = inside.groupby("_cat", sort=False)["n"].sum()
        per_cat = per_cat.sort_values(ascending=False, kind="stable")
        report.categories = {str(k): int(v) for k, v in per_cat.items()}
    periods = _periods(opts.freq, t_min, t_max, opts.start, opts.end)
    counts, _ = _counts(agg.where(F.col("_inside")), grid, rule, periods)
    values = _dense_values(spark, counts, grid, periods, rule, None)
    sensors = _sensors(grid)
    if area is not None:
        share = area.cell_share(grid)
        sensors["in_mask"] = share > 0
        sensors["boundary_share"] = share
        kind = "boundary"
    elif opts.boundary == "history":
        active = inside.loc[inside["n"] > 0, "cell"].to_numpy(dtype=np.int64)
        sensors["in_mask"] = np.isin(np.arange(len(sensors)), active)
        kind = "history"
    else:
        sensors["in_mask"] = True
        kind = "none"
    stem = opts.name or _stem(Path(str(report.sources[0])))
    extras = {
        "dropped": 0,
        "mask_kind": kind,
        "boundary": None if area is None else area.source,
        "events_report": report,
    }
    return SparkEventGrid(values, grid, periods, sensors, opts.freq, stem, extras)


# ====================================================================== reading
def _spark_path(path, root, resolve):
    """A local path resolved as the pandas reader does; URLs (``s3a://``) as given."""
    text = str(path)
    if "://" in text:
        return text
    return resolve(text, root)


def _read_raw(spark, path):
    from citybrain_ml.data.events import CSV_SUFFIXES, PARQUET_SUFFIXES
    from citybrain_ml.data.validation import DataValidationError

    name = str(path).lower()
    if name.endswith(PARQUET_SUFFIXES):
        return spark.read.parquet(str(path))
    if name.endswith(".zip"):
        raise DataValidationError(f"{path}: Spark cannot read .zip files; unzip it first")
    if name.endswith(CSV_SUFFIXES):
        sep = "\t" if name.endswith(".tsv") else ","
        # every column as text: the same parsing rules as the pandas reader, no inference
        return spark.read.option("header", True).option("sep", sep).csv(str(path))
    raise DataValidationError(
        f"{path}: unsupported file type; use one of {CSV_SUFFIXES + PARQUET_SUFFIXES}"
    )


def _clean(raw, mapping, time_zone, wanted, index: int):
    """Flagged events of one file: ``_t, _lat, _lon, _cat`` and why a row would be dropped."""
    from pyspark.sql import functions as F

    if mapping.category is not None:
        cat = F.regexp_replace(F.col(mapping.category).cast("string"), r"^\s+|\s+$", "")
    else:
        cat = F.lit(None).cast("string")
    cols = list(dict.fromkeys([mapping.time] + ([mapping.hour] if mapping.hour else [])))
    frame = raw.select(
        *[F.col(c) for c in cols],
        F.col(mapping.latitude).cast("string").try_cast("double").alias("_lat"),
        F.col(mapping.longitude).cast("string").try_cast("double").alias("_lon"),
        cat.alias("_cat"),
    )
    kept_cat = F.lit(True) if not wanted else F.coalesce(F.col("_cat").isin(wanted), F.lit(False))
    lat, lon = F.col("_lat"), F.col("_lon")
    bad = (
        lat.isNull()
        | lon.isNull()
        | F.isnan(lat)
        | F.isnan(lon)
        | (lat == 0)
        | (lon == 0)
        | (F.abs(lat) > 90)
        | (F.abs(lon) > 180)
    )
    frame = _with_micros(frame, mapping.time, time_zone)
    if mapping.hour is not None:
        hour = F.col(mapping.hour).cast("string").try_cast("double")
        hour_ok = hour.isNotNull() & ~F.isnan(hour) & (hour >= 0) & (hour <= 23)
        day = _floor_div(F.col("_t"), US_PER_DAY) * F.lit(US_PER_DAY)
        # a bad hour is an error as in pandas: counted with the unparseable times
        frame = frame.withColumn(
            "_t",
            F.when(hour_ok, day + (hour * F.lit(3_600_000_000)).cast("long")).otherwise(
                F.lit(None).cast("long")
            ),
        )
    return frame.select(
        F.lit(index).alias("_file"),
        "_t",
        "_lat",
        "_lon",
        "_cat",
        kept_cat.alias("_kept_cat"),
        bad.alias("_bad_xy"),
        "_has_tz",
        "_present",
        F.col(mapping.time).cast("string").alias("_raw_time"),
    )


def _check_times(stats: pd.DataFrame, paths, events, time_zone, column: str) -> None:
    """The pandas reader's time errors: mixed offsets, offsets without a zone, bad values."""
    from pyspark.sql import functions as F

    from citybrain_ml.data.validation import DataValidationError

    for _, s in stats.iterrows():
        source = paths[int(s["_file"])]
        if s["aware"] and s["naive"]:
            raise DataValidationError(
                f"{source}: column {column!r} (time) mixes values with and without a UTC "
                "offset; use one convention"
            )
        if s["aware"] and time_zone is None:
            raise DataValidationError(
                f"{source}: column {column!r} (time) carries UTC offsets; give time_zone (the "
                "city's IANA zone, e.g. America/Chicago) so that periods are local days and hours"
            )
        if s["bad_t"]:
            bad = (
                events.where(
                    (F.col("_file") == int(s["_file"]))
                    & F.col("_kept_cat")
                    & ~F.col("_bad_xy")
                    & F.col("_t").isNull()
                )
                .select("_raw_time")
                .limit(5)
                .toPandas()["_raw_time"]
                .tolist()
            )
            raise DataValidationError(
                f"{source}: column {column!r} (time) has {int(s['bad_t'])} missing or "
                f"unparseable value(s) (or hours outside 0-23): {bad}"
            )


def _inside_boundary(spark, events, area: Boundary, grid: GridSpec):
    """Flag ``_inside``: SQL for cells wholly inside, exact polygon test for clipped cells."""
    from pyspark.sql import functions as F

    share = area.cell_share(grid)
    shares = spark.createDataFrame(
        [(int(i), float(s)) for i, s in enumerate(share)], "cell long, share double"
    )
    row, col = _cell_exprs(grid)
    on_grid = (row >= 0) & (row < grid.n_rows) & (col >= 0) & (col < grid.n_cols)
    keyed = events.withColumn(
        "cell", F.when(on_grid, row * grid.n_cols + col).otherwise(F.lit(-1).cast("long"))
    ).join(F.broadcast(shares), on="cell", how="left")
    sure = keyed.where(F.col("share") == 1.0).withColumn("_inside", F.lit(True))
    off = keyed.where(F.col("cell") < 0).withColumn("_inside", F.lit(False))
    unsure = keyed.where((F.col("cell") >= 0) & (F.col("share") < 1.0))
    from pyspark.sql import types as T

    schema = T.StructType([*unsure.schema.fields, T.StructField("_inside", T.BooleanType())])

    def test(batches):
        for pdf in batches:
            yield pdf.assign(_inside=area.contains(pdf["lat"].to_numpy(), pdf["lon"].to_numpy()))

    tested = unsure.mapInPandas(test, schema)
    cols = ["_t", "lat", "lon", "_cat", "_inside"]
    return sure.select(cols).unionByName(off.select(cols)).unionByName(tested.select(cols))
