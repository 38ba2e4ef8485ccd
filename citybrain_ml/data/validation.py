"""Input checks that turn a user's long frame into the canonical, regular shape.

Every check raises :class:`DataValidationError` with a message that names the source (file
path or ``"<frame>"``), the column and the first few offending rows, so a data engineer can
open the file at the right line. Row numbers are 1-based; for a CSV read by
:func:`citybrain_ml.data.load_table` they are line numbers of the file (the header is line 1).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE, SeriesDataset

#: how many offending rows an error message lists
MAX_REPORTED = 5

# a trailing UTC offset or "Z" on a timestamp string ("...T08:00+02:00", "...08:00Z")
_TZ_SUFFIX = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")


class DataValidationError(ValueError):
    """Bad input data; the message names the source, column and row(s) at fault."""


def validate_long(
    df: pd.DataFrame,
    source: str = "<frame>",
    freq: str | None = None,
    missing_value: float | None = None,
    allow_irregular: bool = False,
    first_row: int | None = 1,
    allow_empty_series: bool = False,
) -> pd.DataFrame:
    """Check a long frame and return a clean, sorted, regular copy.

    Parameters
    ----------
    df : DataFrame
        ``series_id, timestamp, value`` plus optional covariate columns.
    source : str
        Where the frame came from (a file path), used in error messages.
    freq : str, optional
        Expected sampling interval (pandas alias such as ``"15min"``, ``"h"``, ``"D"``);
        inferred as the most common step when omitted.
    missing_value : float, optional
        A sentinel (e.g. ``0`` for loop detectors) that means "no reading"; such values
        become NaN so models mask them instead of learning them.
    allow_irregular : bool
        Skip the regular-grid check and the gap reindexing.
    first_row : int or None
        Number of the frame's first row in ``source`` (``2`` for a CSV whose header is line
        1). ``None`` when rows do not map to a file (reshaped matrices): messages then name
        only series and timestamps.
    allow_empty_series : bool
        Keep series without any observed value (a dead sensor) instead of refusing the
        frame; batch scoring skips them with a reason.

    Returns
    -------
    DataFrame
        Sorted by ``(series_id, timestamp)``, float ``value``, gaps that are whole multiples
        of ``freq`` filled with NaN rows, index reset.

    Raises
    ------
    DataValidationError
        Missing columns, non-numeric values, unparseable or mixed-time-zone timestamps,
        duplicate ``(series_id, timestamp)``, steps off the ``freq`` grid, all-NaN series.
    """
    frame, _ = validate_frame(
        df, source, freq, missing_value, allow_irregular, first_row, allow_empty_series
    )
    return frame


def validate_frame(
    df: pd.DataFrame,
    source: str = "<frame>",
    freq: str | None = None,
    missing_value: float | None = None,
    allow_irregular: bool = False,
    first_row: int | None = 1,
    allow_empty_series: bool = False,
) -> tuple[pd.DataFrame, str]:
    """As :func:`validate_long`, but also return the (given or inferred) frequency."""
    frame, freq, _ = validate_blocks(
        df, source, freq, missing_value, allow_irregular, first_row, allow_empty_series
    )
    return frame, freq


def validate_blocks(
    df: pd.DataFrame,
    source: str = "<frame>",
    freq: str | None = None,
    missing_value: float | None = None,
    allow_irregular: bool = False,
    first_row: int | None = 1,
    allow_empty_series: bool = False,
) -> tuple[pd.DataFrame, str, np.ndarray]:
    """As :func:`validate_frame`, plus the first row of each series in the returned frame.

    Sorted-aware: a frame already ordered by ``(series_id, timestamp)`` is not re-sorted or
    copied, and every per-series check (duplicates, frequency, grid, gaps, empty series)
    compares neighbouring rows inside the series blocks -- no hashing of the ids, no
    ``groupby`` -- so a city-scale file costs a few NumPy passes. The errors are those of the
    hash/groupby checks they replace (same rows named, same order).
    """
    _check_columns(df, source)
    # index == original position from here on, so sorted rows still know where they came from
    df = df.reset_index(drop=True)
    rows = _RowNamer(source, first_row)
    _check_series_ids(df, rows)
    df[TIMESTAMP] = _parse_timestamps(df[TIMESTAMP], rows)
    df[VALUE] = _parse_values(df, rows)
    _check_finite(df, rows)
    if missing_value is not None:
        df.loc[df[VALUE] == missing_value, VALUE] = np.nan
    df, starts = _sorted_with_starts(df, rows)
    blocks = _Blocks(df, starts)
    _check_duplicates_sorted(df, blocks, rows)
    freq = freq or _infer_freq_sorted(blocks, source)
    if not allow_irregular:
        _check_grid_sorted(df, blocks, freq, rows)
        _check_gap_growth_sorted(df, blocks, freq, rows)
        df, starts = _reindex_gaps_sorted(df, blocks, freq)
        blocks = _Blocks(df, starts)
    if not allow_empty_series:
        _check_all_nan_sorted(df, blocks, source)
    columns = [SERIES_ID, TIMESTAMP, VALUE] + [c for c in df.columns if c not in _LONG]
    if list(df.columns) != columns:
        df = df[columns]
    return df.reset_index(drop=True), freq, starts


def validate_dataset(ds: SeriesDataset, service_hours: str | None = None) -> SeriesDataset:
    """Validate a dataset's values and check sensors/adjacency refer to its series ids.

    Parameters
    ----------
    ds : SeriesDataset
    service_hours : str, optional
        Operating hours (``"05:30-23:00"``, ``"always"``); ``None``/``"auto"`` keeps the
        dataset's calendar or detects one (slots no series is ever observed in).

    Returns
    -------
    SeriesDataset
        A copy with validated values (same freq, sensors, adjacency, name, extras) and its
        service calendar; ``extras["closed_rows"]`` counts grid rows that fall in closed
        slots (NaN rows added by the regular grid, never scored or forecast).
    """
    from citybrain_ml.data.calendar import in_service, resolve_calendar

    source = ds.source or ds.name or "<dataset>"
    # rows as read from the source (a loader may have regularised the grid already)
    n_in = int(ds.extras.get("rows_read", len(ds.values)))
    values, freq = validate_frame(ds.values, source, ds.freq, first_row=None)
    known = set(pd.unique(values[SERIES_ID]))
    if ds.sensors is not None:
        _check_known_ids(ds.sensors, [SERIES_ID], known, f"{source} (sensors)")
    if ds.adjacency is not None:
        _check_known_ids(ds.adjacency, ["src", "dst"], known, f"{source} (adjacency)")
    auto = service_hours is None or str(service_hours).lower() == "auto"
    spec = ds.calendar if auto and ds.calendar is not None else service_hours
    calendar = resolve_calendar(spec, values, freq)
    extras = dict(ds.extras)
    extras["closed_rows"] = int((~in_service(values, calendar)).sum())
    extras["rows_added_by_grid"] = max(len(values) - n_in, 0)
    return SeriesDataset(
        values, freq, ds.sensors, ds.adjacency, ds.name, ds.source, extras, calendar
    )


# ---------------------------------------------------------------------- helpers
_LONG = (SERIES_ID, TIMESTAMP, VALUE)


class _RowNamer:
    """Formats 'rows 3, 7 (series s1 at 2024-01-01 00:00)' style locations."""

    def __init__(self, source: str, first_row: int | None):
        self.source = source
        self.first_row = first_row

    def describe(self, df: pd.DataFrame, positions) -> str:
        positions = list(positions)[:MAX_REPORTED]
        parts = []
        for pos in positions:
            sid = df.at[pos, SERIES_ID] if SERIES_ID in df.columns else "?"
            ts = df.at[pos, TIMESTAMP] if TIMESTAMP in df.columns else "?"
            where = f"series {sid!s} at {ts!s}"
            if self.first_row is not None:
                where = f"row {pos + self.first_row} ({where})"
            parts.append(where)
        return "; ".join(parts)


def _check_columns(df: pd.DataFrame, source: str) -> None:
    missing = [c for c in _LONG if c not in df.columns]
    if missing:
        raise DataValidationError(
            f"{source}: missing required column(s) {missing}; "
            f"found {list(df.columns)} (expected series_id, timestamp, value)"
        )


def _check_series_ids(df: pd.DataFrame, rows: _RowNamer) -> None:
    bad = np.flatnonzero(df[SERIES_ID].isna().to_numpy())
    if len(bad):
        raise DataValidationError(
            f"{rows.source}: column 'series_id' is empty in {len(bad)} row(s): "
            f"{rows.describe(df, bad)}"
        )


def _parse_timestamps(raw: pd.Series, rows: _RowNamer) -> pd.Series:
    """Datetime column; tz-aware inputs are kept in one zone, strings with offsets -> UTC."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(raw):
        parsed = raw
    elif raw.dtype == object and _holds_datetimes(raw):
        _check_object_zones(raw, rows)
        parsed = pd.to_datetime(raw, utc=_is_aware(raw.dropna().iloc[0]))
    else:
        text = raw.astype("string").str.strip()
        has_tz = text.str.contains(_TZ_SUFFIX).fillna(False).to_numpy(dtype=bool)
        present = text.notna().to_numpy()
        if has_tz.any() and not has_tz[present].all():
            aware = np.flatnonzero(has_tz)
            naive = np.flatnonzero(~has_tz & present)
            frame = raw.to_frame(TIMESTAMP)
            raise DataValidationError(
                f"{rows.source}: column 'timestamp' mixes time zones: some values carry a UTC "
                f"offset and some do not. With offset: {_raw_rows(frame, aware, rows)}; "
                f"without: {_raw_rows(frame, naive, rows)}. Use one convention throughout."
            )
        parsed = pd.to_datetime(text, errors="coerce", utc=bool(has_tz.any()))
        retry = parsed.isna() & text.notna()
        if retry.any():
            # formats that differ between rows (e.g. '2024-01-01' and '01/02/2024 10:00')
            parsed[retry] = pd.to_datetime(
                text[retry], errors="coerce", utc=bool(has_tz.any()), format="mixed"
            )
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        frame = raw.to_frame(TIMESTAMP)
        raise DataValidationError(
            f"{rows.source}: column 'timestamp' has {len(bad)} missing or unparseable "
            f"value(s): {_raw_rows(frame, bad, rows)}"
        )
    return parsed


def _holds_datetimes(raw: pd.Series) -> bool:
    first = raw.dropna()
    return len(first) > 0 and hasattr(first.iloc[0], "tzinfo")


def _is_aware(value) -> bool:
    return getattr(value, "tzinfo", None) is not None


def _check_object_zones(raw: pd.Series, rows: _RowNamer) -> None:
    zones = raw.map(lambda v: str(getattr(v, "tzinfo", None)), na_action="ignore").dropna()
    if zones.nunique() > 1:
        first = zones.index[zones != zones.iloc[0]][0]
        frame = raw.to_frame(TIMESTAMP)
        raise DataValidationError(
            f"{rows.source}: column 'timestamp' mixes time zones ({sorted(zones.unique())}), "
            f"e.g. {_raw_rows(frame, [zones.index[0], first], rows)}"
        )


def _raw_rows(frame: pd.DataFrame, positions, rows: _RowNamer) -> str:
    positions = list(positions)[:MAX_REPORTED]
    parts = []
    for pos in positions:
        label = f"row {pos + rows.first_row}" if rows.first_row is not None else f"item {pos}"
        parts.append(f"{label}: {frame.iat[pos, 0]!r}")
    return ", ".join(parts)


def _parse_values(df: pd.DataFrame, rows: _RowNamer) -> pd.Series:
    raw = df[VALUE]
    if pd.api.types.is_bool_dtype(raw) or pd.api.types.is_numeric_dtype(raw):
        return raw.astype(float)
    values = pd.to_numeric(raw, errors="coerce")
    bad = np.flatnonzero((values.isna() & raw.notna()).to_numpy())
    if len(bad):
        shown = ", ".join(f"{rows.describe(df, [p])}: {raw.iat[p]!r}" for p in bad[:MAX_REPORTED])
        raise DataValidationError(
            f"{rows.source}: column 'value' has {len(bad)} non-numeric value(s): {shown}"
        )
    return values.astype(float)


def _check_finite(df: pd.DataFrame, rows: _RowNamer) -> None:
    """``inf``/``-inf`` are never readings: refuse them (use NaN or empty for missing)."""
    values = df[VALUE].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):
        # two reductions without a temporary column (fmax/fmin skip NaN)
        if not len(values) or np.isfinite(np.fmax.reduce(values) - np.fmin.reduce(values)):
            return
    bad = np.flatnonzero(np.isinf(values))
    if len(bad):
        shown = ", ".join(
            f"{rows.describe(df, [p])}: {df[VALUE].iat[p]}" for p in bad[:MAX_REPORTED]
        )
        raise DataValidationError(
            f"{rows.source}: column 'value' has {len(bad)} infinite value(s): {shown}. Write "
            "missing readings as empty/NaN; infinities usually come from a division by zero "
            "upstream."
        )


def _check_duplicates(df: pd.DataFrame, rows: _RowNamer) -> None:
    dup = df.duplicated([SERIES_ID, TIMESTAMP], keep=False).to_numpy()
    if dup.any():
        positions = np.flatnonzero(dup)
        raise DataValidationError(
            f"{rows.source}: {int(dup.sum())} rows share a (series_id, timestamp) with another "
            f"row: {rows.describe(df, positions)}. Aggregate or drop duplicates first."
        )


def _infer_freq(df: pd.DataFrame, source: str) -> str:
    steps = df.groupby(SERIES_ID, sort=False)[TIMESTAMP].diff().dropna()
    steps = steps[steps > pd.Timedelta(0)]
    if steps.empty:
        raise DataValidationError(
            f"{source}: cannot infer the frequency (every series has a single timestamp); "
            "pass freq="
        )
    return pd.tseries.frequencies.to_offset(steps.mode().iloc[0]).freqstr


def _fixed_step(freq: str) -> pd.Timedelta | None:
    """The step as a Timedelta for fixed frequencies ('15min', 'h', 'D'); None for 'MS', 'W'."""
    offset = pd.tseries.frequencies.to_offset(freq)
    try:
        return pd.Timedelta(offset)
    except ValueError:
        return None


def _check_grid(df: pd.DataFrame, freq: str, rows: _RowNamer) -> None:
    step = _fixed_step(freq)
    diffs = df.groupby(SERIES_ID, sort=False)[TIMESTAMP].diff()
    if step is not None:
        off = diffs.notna() & ((diffs % step) != pd.Timedelta(0))
    else:
        # calendar frequencies: each timestamp must be on the offset's anchor
        offset = pd.tseries.frequencies.to_offset(freq)
        off = ~df[TIMESTAMP].map(offset.is_on_offset).astype(bool)
    if off.any():
        positions = off[off].index
        raise DataValidationError(
            f"{rows.source}: column 'timestamp' breaks the regular {freq} grid at "
            f"{rows.describe(df, positions)}. Resample to {freq}, pass the right freq= or "
            "allow_irregular=True."
        )


#: filling gaps may add at most this many NaN rows per input row (beyond MAX_GAP_ROWS)
MAX_GAP_GROWTH = 10
MAX_GAP_ROWS = 100_000


def _check_gap_growth(df: pd.DataFrame, freq: str, rows: _RowNamer) -> None:
    """Refuse a frame whose gaps would explode into NaN rows (one row stamped years away,
    a clock-skewed sensor), naming the series and the widest jump."""
    step = _fixed_step(freq)
    if step is None or len(df) == 0:
        return
    bounds = df.groupby(SERIES_ID, sort=False)[TIMESTAMP].agg(["min", "max", "size"])
    grid_rows = ((bounds["max"] - bounds["min"]) // step + 1).astype("int64")
    added = int((grid_rows - bounds["size"]).sum())
    if added <= max(MAX_GAP_GROWTH * len(df), MAX_GAP_ROWS):
        return
    diffs = df.groupby(SERIES_ID, sort=False)[TIMESTAMP].diff()
    pos = diffs.idxmax()
    raise DataValidationError(
        f"{rows.source}: column 'timestamp' jumps by {diffs.loc[pos]} at "
        f"{rows.describe(df, [pos])}; filling the gaps would add {added:,} empty rows "
        f"({added / len(df):.0f}x the input). A clock-skewed or mistyped timestamp? Fix or "
        "drop that row."
    )


def _reindex_gaps(df: pd.DataFrame, freq: str) -> pd.DataFrame:
    """Insert NaN rows for missing steps between each series' first and last timestamp."""
    bounds = df.groupby(SERIES_ID, sort=False)[TIMESTAMP].agg(["min", "max", "size"])
    grids = [
        pd.date_range(lo, hi, freq=freq)
        for lo, hi in zip(bounds["min"], bounds["max"], strict=True)
    ]
    lengths = np.array([len(g) for g in grids])
    if (lengths == bounds["size"].to_numpy()).all():
        return df
    full = pd.DataFrame(
        {
            SERIES_ID: np.repeat(bounds.index.to_numpy(), lengths),
            TIMESTAMP: np.concatenate([g.to_numpy() for g in grids]),
        }
    )
    full[TIMESTAMP] = full[TIMESTAMP].astype(df[TIMESTAMP].dtype)
    return full.merge(df, on=[SERIES_ID, TIMESTAMP], how="left", sort=False)


def _check_all_nan(df: pd.DataFrame, source: str) -> None:
    has_value = df[VALUE].notna().groupby(df[SERIES_ID], sort=False).any()
    empty = has_value.index[~has_value.to_numpy()].tolist()
    if empty:
        raise DataValidationError(
            f"{source}: column 'value' is entirely missing (NaN) for {len(empty)} series: "
            f"{empty[:MAX_REPORTED]}. Drop them or check the missing_value sentinel."
        )


# ---------------------------------------------------------------------- sorted-aware checks
class _Blocks:
    """Series blocks of a frame sorted by ``(series_id, timestamp)``: starts, ends, steps.

    Steps (``ts[i + 1] - ts[i]`` inside a series, in the column's time unit) are compared
    with a candidate step in chunks: what is kept are the few positions whose step differs
    (gaps, duplicates, irregular rows), not a step per row.
    """

    CHUNK = 1 << 20

    def __init__(self, df: pd.DataFrame, starts: np.ndarray):
        from citybrain_ml.data.sorted_frames import time_values

        self.n = len(df)
        self.starts = starts
        self.ends = np.append(starts[1:], self.n)[: len(starts)] - 1  # last row of each series
        self.sizes = self.ends - starts + 1
        self.ts = time_values(df[TIMESTAMP])  # naive UTC: steps as the zone-aware ones
        self.t = self.ts.view(np.int64)  # no NaT here: unparseable timestamps were refused
        self.unit = np.datetime_data(self.ts.dtype)[0]
        self.inner_total = self.n - len(starts)  # steps inside a series
        self._odd = {}

    def step_at(self, pos: np.ndarray) -> np.ndarray:
        """Steps from rows ``pos`` to ``pos + 1`` (int64, the column's unit)."""
        return self.t[pos + 1] - self.t[pos]

    def odd(self, step: int) -> np.ndarray:
        """Ascending positions ``i`` inside a series whose step to ``i + 1`` is not ``step``."""
        if step not in self._odd:
            t, found = self.t, []
            for lo in range(0, max(self.n - 1, 0), self.CHUNK):
                hi = min(lo + self.CHUNK, self.n - 1)
                found.append(np.flatnonzero((t[lo + 1 : hi + 1] - t[lo:hi]) != step) + lo)
            pos = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
            self._odd[step] = pos[~self.at_boundary(pos)]
        return self._odd[step]

    def at_boundary(self, pos: np.ndarray) -> np.ndarray:
        """Whether position ``i`` is the last row of its series (its step leaves the series)."""
        last = self.ends[:-1]  # the last series' end has no step
        if not len(last):
            return np.zeros(len(pos), dtype=bool)
        k = np.minimum(np.searchsorted(last, pos), len(last) - 1)
        return last[k] == pos

    def all_steps(self) -> np.ndarray:
        """Every step inside a series (int64; a whole-frame array, for the rare slow paths)."""
        steps = np.diff(self.t)
        inner = np.ones(len(steps), dtype=bool)
        inner[self.ends[:-1]] = False
        return steps[inner]

    def guess(self) -> int | None:
        """The most common step in an even sample of the steps (ties: the shortest)."""
        if self.inner_total == 0:
            return None
        stride = max(1, (self.n - 1) // 4096)
        pos = np.arange(0, self.n - 1, stride)
        pos = pos[~self.at_boundary(pos)]
        if not len(pos):
            return int(self.all_steps()[0])
        vals, counts = np.unique(self.step_at(pos), return_counts=True)
        return int(vals[np.argmax(counts)])

    def ticks(self, step: pd.Timedelta) -> int | None:
        """``step`` in the column's time unit, or None when it is not a whole number of them."""
        value = np.timedelta64(step.to_timedelta64()).astype(f"timedelta64[{self.unit}]")
        if value != step.to_timedelta64():
            return None
        return int(value.view(np.int64))

    def timedelta(self, ticks) -> pd.Timedelta:
        return pd.Timedelta(np.timedelta64(int(ticks), self.unit))


def _sorted_with_starts(df: pd.DataFrame, rows: _RowNamer) -> tuple[pd.DataFrame, np.ndarray]:
    """``df`` sorted by ``(series_id, timestamp)`` (stable; not copied when already sorted)
    and the first row of each series."""
    from citybrain_ml.data.sorted_frames import series_starts, sorted_series_starts

    starts = sorted_series_starts(df)
    if starts is not None:
        return df, starts
    try:
        df = df.sort_values([SERIES_ID, TIMESTAMP], kind="stable")
    except TypeError:
        # ids that do not compare (mixed types): duplicates are still named first
        _check_duplicates(df, rows)
        raise
    return df, series_starts(df)


def _check_duplicates_sorted(df: pd.DataFrame, b: _Blocks, rows: _RowNamer) -> None:
    """As :func:`_check_duplicates` (``duplicated(keep=False)``), from neighbouring rows."""
    if b.inner_total == 0:
        return
    guess = b.guess()
    if guess:  # a zero step is one of the steps that differ from the common one
        pos = b.odd(guess)
        pair = pos[b.step_at(pos) == 0]
    else:  # duplicates everywhere: scan for zero steps directly
        pos = b.odd(0)
        inner = np.flatnonzero(~b.at_boundary(np.arange(b.n - 1)))
        pair = np.setdiff1d(inner, pos, assume_unique=True)
    if not len(pair):
        return
    dup = np.zeros(b.n, dtype=bool)
    dup[pair] = True  # rows i and i + 1 share (series, time)
    dup[pair + 1] = True
    positions = np.sort(df.index.to_numpy()[dup])  # original rows, in file order
    raise DataValidationError(
        f"{rows.source}: {int(dup.sum())} rows share a (series_id, timestamp) with another "
        f"row: {rows.describe(df, positions)}. Aggregate or drop duplicates first."
    )


def _infer_freq_sorted(b: _Blocks, source: str) -> str:
    """As :func:`_infer_freq` (most common step inside the series, ties: the shortest)."""
    if b.inner_total == 0:
        raise DataValidationError(
            f"{source}: cannot infer the frequency (every series has a single timestamp); "
            "pass freq="
        )
    # steps inside series are all > 0 once duplicates are refused; a candidate from a sample
    # that more than half of all steps equal is the mode
    mode = b.guess()
    if 2 * (b.inner_total - len(b.odd(mode))) <= b.inner_total:
        vals, counts = np.unique(b.all_steps(), return_counts=True)
        mode = int(vals[np.argmax(counts)])  # np.unique sorts: ties go to the shortest
    return pd.tseries.frequencies.to_offset(b.timedelta(mode)).freqstr


def _check_grid_sorted(df: pd.DataFrame, b: _Blocks, freq: str, rows: _RowNamer) -> None:
    """As :func:`_check_grid`: every step inside a series a whole multiple of ``freq``."""
    step = _fixed_step(freq)
    ticks = None if step is None else b.ticks(step)
    if ticks is None or ticks == 0:
        _check_grid(df, freq, rows)
        return
    if b.inner_total == 0:
        return
    # steps of exactly one ``freq`` are on the grid: the modulo runs on the others only
    other = b.odd(ticks)
    off = other[(b.step_at(other) % ticks) != 0]
    if len(off):
        positions = df.index.to_numpy()[off[:MAX_REPORTED] + 1]
        raise DataValidationError(
            f"{rows.source}: column 'timestamp' breaks the regular {freq} grid at "
            f"{rows.describe(df, positions)}. Resample to {freq}, pass the right freq= or "
            "allow_irregular=True."
        )


def _grid_lengths(b: _Blocks, step: pd.Timedelta) -> np.ndarray:
    """Rows each series has once its gaps are filled (first to last timestamp)."""
    span = b.ts[b.ends] - b.ts[b.starts]
    return (span // step.to_timedelta64()).astype(np.int64) + 1


def _check_gap_growth_sorted(df: pd.DataFrame, b: _Blocks, freq: str, rows: _RowNamer) -> None:
    """As :func:`_check_gap_growth`, on the series blocks."""
    step = _fixed_step(freq)
    if step is None or b.n == 0:
        return
    added = int((_grid_lengths(b, step) - b.sizes).sum())
    if added <= max(MAX_GAP_GROWTH * b.n, MAX_GAP_ROWS):
        return
    steps = np.diff(b.t)
    steps[b.ends[:-1]] = np.iinfo(np.int64).min  # steps between series do not count
    i = int(np.argmax(steps))  # the first of the widest steps, as idxmax
    pos = df.index[i + 1]
    raise DataValidationError(
        f"{rows.source}: column 'timestamp' jumps by {b.timedelta(steps[i])} at "
        f"{rows.describe(df, [pos])}; filling the gaps would add {added:,} empty rows "
        f"({added / b.n:.0f}x the input). A clock-skewed or mistyped timestamp? Fix or "
        "drop that row."
    )


def _reindex_gaps_sorted(
    df: pd.DataFrame, b: _Blocks, freq: str
) -> tuple[pd.DataFrame, np.ndarray]:
    """As :func:`_reindex_gaps` (no copy when there is no gap), with the new series starts."""
    step = _fixed_step(freq)
    tz = getattr(df[TIMESTAMP].dtype, "tz", None)
    if step is None or tz is not None or b.n == 0:
        out = _reindex_gaps(df, freq)
        if out is df:
            return df, b.starts
        from citybrain_ml.data.sorted_frames import series_starts

        return out, series_starts(out)
    lengths = _grid_lengths(b, step)
    if (lengths == b.sizes).all():
        return df, b.starts
    first = np.cumsum(lengths) - lengths
    offsets = np.arange(int(lengths.sum())) - np.repeat(first, lengths)
    times = np.repeat(b.ts[b.starts], lengths) + offsets * step.to_timedelta64()
    full = pd.DataFrame(
        {SERIES_ID: np.repeat(df[SERIES_ID].iloc[b.starts].to_numpy(), lengths), TIMESTAMP: times}
    )
    full[TIMESTAMP] = full[TIMESTAMP].astype(df[TIMESTAMP].dtype)
    out = full.merge(df, on=[SERIES_ID, TIMESTAMP], how="left", sort=False)
    return out, first.astype(np.int64)


def _check_all_nan_sorted(df: pd.DataFrame, b: _Blocks, source: str) -> None:
    """As :func:`_check_all_nan`, on the series blocks."""
    values = df[VALUE].to_numpy()
    if b.n == 0 or not np.isnan(np.sum(values)):  # no NaN at all: every series has values
        return
    has_value = np.logical_or.reduceat(~np.isnan(values), b.starts)
    if has_value.all():
        return
    empty = df[SERIES_ID].iloc[b.starts[~has_value]].tolist()
    raise DataValidationError(
        f"{source}: column 'value' is entirely missing (NaN) for {len(empty)} series: "
        f"{empty[:MAX_REPORTED]}. Drop them or check the missing_value sentinel."
    )


def _check_known_ids(table: pd.DataFrame, columns: list[str], known: set, source: str) -> None:
    for col in columns:
        if col not in table.columns:
            raise DataValidationError(f"{source}: missing required column '{col}'")
        unknown = ~table[col].isin(known).to_numpy()
        if unknown.any():
            positions = np.flatnonzero(unknown)[:MAX_REPORTED]
            ids = table[col].to_numpy()[positions].tolist()
            raise DataValidationError(
                f"{source}: column '{col}' refers to {int(unknown.sum())} unknown series id(s), "
                f"e.g. rows {[int(p) + 1 for p in positions]}: {ids}"
            )
