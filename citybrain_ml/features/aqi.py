"""China Air Quality Index (AQI) per HJ 633-2012.

Implements *Technical Regulation on Ambient Air Quality Index (on trial)*, HJ 633-2012
(Ministry of Environmental Protection of China, issued 2012-02-29, with GB 3095-2012):

* individual indices (IAQI) by linear interpolation in Table 1 (:data:`BREAKPOINTS`),
* the overall AQI as the maximum IAQI and the primary pollutant(s) when AQI > 50,
* the six categories (levels I..VI) and the Appendix A colours (:data:`CATEGORIES`),
* daily means from hourly data with the GB 3095-2012 completeness rules (:func:`daily_aqi`).

A revised edition of HJ 633 with lower particulate breakpoints has since been issued; this
module implements the 2012 edition only.

Units: ug/m3 for every pollutant except CO, which is in mg/m3 (pass ``co_unit="ug/m3"``
where your CO column is in ug/m3, as in the UCI Beijing multi-site data).

Concentrations outside the table
    * SO2 1-h above 800 ug/m3 and O3 8-h above 800 ug/m3: the standard (Table 1, notes 2
      and 3) says no IAQI is computed from them; :func:`iaqi` returns NaN and :func:`aqi`
      reports the SO2 index from the 24-h mean and the O3 index from the 1-h value.
    * Any other pollutant above its IAQI = 500 limit: the standard defines no index beyond
      500 (the table stops there). ``above_range="cap"`` (default) reports 500, the value
      shown by public AQI displays; ``"nan"`` reports missing; ``"extrapolate"`` continues
      the last segment linearly (not part of the standard; for research use).
    * Negative concentrations are instrument artefacts, not concentrations: NaN.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

# IAQI values of the rows of HJ 633-2012 Table 1.
IAQI_LEVELS = (0, 50, 100, 150, 200, 300, 400, 500)

# HJ 633-2012 Table 1 "IAQI and corresponding pollutant concentration limits".
# Key: (pollutant, averaging period). Values: concentration at IAQI_LEVELS[0..n-1].
# CO in mg/m3, all others in ug/m3. SO2 1-h stops at IAQI 200 (note 2) and O3 8-h at
# IAQI 300 (note 3); above those the standard computes no index from that average.
BREAKPOINTS: dict[tuple[str, str], tuple[float, ...]] = {
    ("SO2", "24h"): (0, 50, 150, 475, 800, 1600, 2100, 2620),
    ("SO2", "1h"): (0, 150, 500, 650, 800),
    ("NO2", "24h"): (0, 40, 80, 180, 280, 565, 750, 940),
    ("NO2", "1h"): (0, 100, 200, 700, 1200, 2340, 3090, 3840),
    ("PM10", "24h"): (0, 50, 150, 250, 350, 420, 500, 600),
    ("CO", "24h"): (0, 2, 4, 14, 24, 36, 48, 60),
    ("CO", "1h"): (0, 5, 10, 35, 60, 90, 120, 150),
    ("O3", "1h"): (0, 160, 200, 300, 400, 800, 1000, 1200),
    ("O3", "8h"): (0, 100, 160, 215, 265, 800),
    ("PM2.5", "24h"): (0, 35, 75, 115, 150, 250, 350, 500),
}

# Averages above which Table 1 notes 2 and 3 say "no IAQI is computed from this average".
_NOT_COMPUTED_ABOVE_TOP = {("SO2", "1h"), ("O3", "8h")}

POLLUTANTS = ("SO2", "NO2", "CO", "PM10", "PM2.5", "O3")

# Columns (after name normalisation) each report type uses, as (pollutant, averaging).
# Daily report: 24-h means, O3 daily max 1-h and daily max 8-h moving average.
# Real-time report: 1-h values for SO2/NO2/CO (Table 1 note 1), PM 24-h moving means,
# O3 1-h and 8-h moving average; the SO2 24-h mean only as the note-2 fallback.
REPORT_INPUTS = {
    "daily": {
        "SO2": ("SO2", "24h"),
        "NO2": ("NO2", "24h"),
        "CO": ("CO", "24h"),
        "PM10": ("PM10", "24h"),
        "PM2.5": ("PM2.5", "24h"),
        "O3_1h": ("O3", "1h"),
        "O3_8h": ("O3", "8h"),
    },
    "realtime": {
        "SO2_1h": ("SO2", "1h"),
        "SO2": ("SO2", "24h"),
        "NO2_1h": ("NO2", "1h"),
        "CO_1h": ("CO", "1h"),
        "PM10": ("PM10", "24h"),
        "PM2.5": ("PM2.5", "24h"),
        "O3_1h": ("O3", "1h"),
        "O3_8h": ("O3", "8h"),
    },
}

_DEFAULT_AVERAGING = {"SO2": "24h", "NO2": "24h", "CO": "24h", "PM10": "24h", "PM2.5": "24h"}


@dataclass(frozen=True)
class AQICategory:
    """One AQI category of HJ 633-2012 Table 2 with its Appendix A colour."""

    level: str
    name: str
    upper: float  # inclusive upper AQI bound (inf for the last)
    colour: str  # colour name in the standard
    rgb: tuple[int, int, int]

    @property
    def hex(self) -> str:
        return "#{:02X}{:02X}{:02X}".format(*self.rgb)


# HJ 633-2012 Table 2 (AQI 0-50, 51-100, ..., >300) and Appendix A (R, G, B).
CATEGORIES = (
    AQICategory("I", "Excellent", 50, "green", (0, 228, 0)),
    AQICategory("II", "Good", 100, "yellow", (255, 255, 0)),
    AQICategory("III", "Lightly polluted", 150, "orange", (255, 126, 0)),
    AQICategory("IV", "Moderately polluted", 200, "red", (255, 0, 0)),
    AQICategory("V", "Heavily polluted", 300, "purple", (153, 0, 76)),
    AQICategory("VI", "Severely polluted", math.inf, "maroon", (126, 0, 35)),
)

# GB 3095-2012 Table 4 (data validity): a 24-h mean needs at least 20 hourly values; an
# 8-h mean at least 6 hourly values. HJ 663-2013: the daily maximum 8-h O3 needs at least
# 14 valid 8-h means among the 17 windows ending 08:00..24:00.
MIN_HOURS_DAILY = 20
MIN_HOURS_8H = 6
MIN_WINDOWS_O3_8H = 14


def normalise_pollutant(name: str) -> str:
    """Canonical pollutant name (``"pm25"``, ``"PM2_5"`` -> ``"PM2.5"``); ValueError if unknown."""
    key = str(name).strip().upper().replace(" ", "").replace("₂", "2").replace("₃", "3")
    key = {"PM25": "PM2.5", "PM2_5": "PM2.5", "PM2,5": "PM2.5"}.get(key, key)
    if key not in POLLUTANTS:
        raise ValueError(f"unknown pollutant {name!r}; expected one of {POLLUTANTS}")
    return key


def _split_column(name: str) -> tuple[str, str | None]:
    """``"O3_8h"`` -> ``("O3", "8h")``; ``"PM2.5"`` -> ``("PM2.5", None)``."""
    text = str(name).strip()
    for suffix in ("_24h", "_1h", "_8h"):
        if text.lower().endswith(suffix):
            return normalise_pollutant(text[: -len(suffix)]), suffix[1:]
    return normalise_pollutant(text), None


def _table_key(pollutant: str, averaging: str | None) -> tuple[str, str]:
    pol = normalise_pollutant(pollutant)
    avg = averaging if averaging is not None else _DEFAULT_AVERAGING.get(pol)
    if avg is None:
        raise ValueError("O3 needs averaging='1h' or '8h' (HJ 633-2012 has no 24-h O3 index)")
    avg = str(avg).lower()
    if (pol, avg) not in BREAKPOINTS:
        allowed = sorted(a for p, a in BREAKPOINTS if p == pol)
        raise ValueError(f"HJ 633-2012 has no {avg} index for {pol}; use one of {allowed}")
    return pol, avg


def iaqi(pollutant: str, concentration, averaging: str | None = None, above_range: str = "cap"):
    """Individual air quality index (IAQI) of one pollutant, HJ 633-2012 formula (1).

    ``IAQI = (IAQI_hi - IAQI_lo) / (BP_hi - BP_lo) * (C - BP_lo) + IAQI_lo`` with the
    breakpoints ``BP_lo <= C <= BP_hi`` of Table 1. The function is continuous, so a value
    exactly on a breakpoint gets that breakpoint's IAQI from either segment.

    Parameters
    ----------
    pollutant : str
        ``SO2``, ``NO2``, ``CO`` (mg/m3), ``PM10``, ``PM2.5`` or ``O3`` (case-insensitive).
    concentration : float, array-like or Series
        Concentration(s); NaN and negative values give NaN.
    averaging : {"24h", "1h", "8h"}, optional
        Averaging period; default ``"24h"`` (required for O3: ``"1h"`` or ``"8h"``).
    above_range : {"cap", "nan", "extrapolate"}
        Index for concentrations above the IAQI = 500 limit (see module docstring). SO2 1-h
        and O3 8-h above 800 ug/m3 are always NaN (Table 1 notes 2 and 3).

    Returns
    -------
    float, ndarray or Series
        Unrounded IAQI, same shape (and index, for a Series) as ``concentration``.
    """
    if above_range not in ("cap", "nan", "extrapolate"):
        raise ValueError(f"above_range must be 'cap', 'nan' or 'extrapolate', got {above_range!r}")
    key = _table_key(pollutant, averaging)
    bp = np.asarray(BREAKPOINTS[key], dtype=float)
    levels = np.asarray(IAQI_LEVELS[: len(bp)], dtype=float)
    c = np.asarray(concentration, dtype=float)
    out = np.interp(c, bp, levels)
    over = c > bp[-1]
    if key in _NOT_COMPUTED_ABOVE_TOP or above_range == "nan":
        out = np.where(over, np.nan, out)
    elif above_range == "extrapolate":
        slope = (levels[-1] - levels[-2]) / (bp[-1] - bp[-2])
        out = np.where(over, levels[-1] + slope * (c - bp[-1]), out)
    out = np.where(np.isnan(c) | (c < 0), np.nan, out)
    if isinstance(concentration, pd.Series):
        return pd.Series(out, index=concentration.index, name=concentration.name)
    return float(out) if out.ndim == 0 else out


def _as_frame(concentrations) -> tuple[pd.DataFrame, bool]:
    """Dict of scalars/arrays or DataFrame -> DataFrame; flag whether the input was scalar."""
    if isinstance(concentrations, pd.DataFrame):
        return concentrations, False
    if not isinstance(concentrations, dict):
        raise TypeError(f"concentrations must be a dict or DataFrame, got {type(concentrations)}")
    scalar = all(np.ndim(v) == 0 for v in concentrations.values())
    if scalar:
        return pd.DataFrame({k: [v] for k, v in concentrations.items()}), True
    return pd.DataFrame(concentrations), False


def _recognised_columns(frame: pd.DataFrame, report: str, strict: bool) -> dict[str, str]:
    """Map each report label (``"SO2_1h"``, ``"O3_8h"``, ...) to the frame column holding it."""
    wanted = REPORT_INPUTS[report]
    found: dict[str, str] = {}
    for col in frame.columns:
        try:
            pol, avg = _split_column(col)
        except ValueError:
            if strict:
                raise
            continue  # e.g. station/timestamp columns of a DataFrame
        key = (pol, avg or _DEFAULT_AVERAGING.get(pol, "?"))
        label = next((lab for lab, k in wanted.items() if k == key), None)
        if label is None:
            other = "realtime" if report == "daily" else "daily"
            raise ValueError(
                f"column {col!r} ({key[0]} {key[1]}) is not used by the {report} report; "
                f"HJ 633-2012 Table 1 note 1: 1-h SO2/NO2/CO indices are for the real-time "
                f"report only (try report={other!r}); O3 needs an explicit _1h or _8h suffix"
            )
        if label in found:
            raise ValueError(f"columns {found[label]!r} and {col!r} both give {label}")
        found[label] = col
    if not found:
        raise ValueError(f"no pollutant columns found among {list(frame.columns)}")
    return found


def iaqi_table(
    concentrations,
    report: str = "daily",
    co_unit: str = "mg/m3",
    above_range: str = "cap",
) -> pd.DataFrame:
    """IAQI of every pollutant present, one column per report label.

    Parameters
    ----------
    concentrations : dict or DataFrame
        Pollutant columns named ``SO2``, ``NO2``, ``CO``, ``PM10``, ``PM2.5``, ``O3_1h``,
        ``O3_8h`` (daily report), or ``SO2_1h``, ``NO2_1h``, ``CO_1h``, ``PM10``, ``PM2.5``,
        ``O3_1h``, ``O3_8h`` and optionally ``SO2`` (24-h, the note-2 fallback) for the
        real-time report. A ``_24h`` suffix is accepted. In a DataFrame, columns that are
        not pollutant names are ignored; in a dict every key must be one.
    report : {"daily", "realtime"}
        Which HJ 633-2012 report the values are for.
    co_unit : {"mg/m3", "ug/m3"}
        Unit of the CO columns.
    above_range : {"cap", "nan", "extrapolate"}
        See :func:`iaqi`.

    Returns
    -------
    DataFrame
        Same index as the input; columns ``SO2, NO2, CO, PM10, PM2.5, O3_1h, O3_8h`` (those
        present). In the real-time report ``SO2`` is the 1-h index, or the 24-h index where
        the 1-h value exceeds 800 ug/m3.
    """
    if report not in REPORT_INPUTS:
        raise ValueError(f"report must be 'daily' or 'realtime', got {report!r}")
    if co_unit not in ("mg/m3", "ug/m3"):
        raise ValueError(f"co_unit must be 'mg/m3' or 'ug/m3', got {co_unit!r}")
    frame, _ = _as_frame(concentrations)
    columns = _recognised_columns(frame, report, strict=isinstance(concentrations, dict))
    out = pd.DataFrame(index=frame.index)
    for label, col in columns.items():
        pol, avg = REPORT_INPUTS[report][label]
        values = pd.to_numeric(frame[col], errors="raise").astype(float)
        if pol == "CO" and co_unit == "ug/m3":
            values = values / 1000.0
        out[label] = iaqi(pol, values.to_numpy(), avg, above_range)
    if report == "realtime":
        out = _apply_realtime_so2(out, frame, columns)
    _warn_o3_fallback(out, frame, columns)
    order = ["SO2", "NO2_1h", "NO2", "CO_1h", "CO", "PM10", "PM2.5", "O3_1h", "O3_8h"]
    out = out[[c for c in order if c in out.columns]]
    return out.rename(columns={"NO2_1h": "NO2", "CO_1h": "CO"})


def _apply_realtime_so2(out: pd.DataFrame, frame: pd.DataFrame, columns: dict) -> pd.DataFrame:
    """Real-time SO2 index: the 1-h index, or the 24-h index where the 1-h value > 800."""
    if "SO2_1h" not in out.columns:
        return out  # only the 24-h SO2 was given: that is the SO2 index
    over = frame[columns["SO2_1h"]].to_numpy(dtype=float) > BREAKPOINTS[("SO2", "1h")][-1]
    fallback = out["SO2"].to_numpy() if "SO2" in out.columns else np.full(len(out), np.nan)
    if over.any() and np.isnan(fallback[over]).any():
        warnings.warn(
            "SO2 1-h above 800 ug/m3 with no 24-h SO2 mean given: SO2 index left missing "
            "(HJ 633-2012 Table 1 note 2)",
            stacklevel=3,
        )
    out["SO2"] = np.where(over, fallback, out["SO2_1h"].to_numpy())
    return out.drop(columns="SO2_1h")


def _warn_o3_fallback(out: pd.DataFrame, frame: pd.DataFrame, columns: dict) -> None:
    if "O3_8h" not in columns:
        return
    over = frame[columns["O3_8h"]].to_numpy(dtype=float) > BREAKPOINTS[("O3", "8h")][-1]
    no_1h = ~np.isfinite(out["O3_1h"].to_numpy()) if "O3_1h" in out else np.ones(len(out), bool)
    if (over & no_1h).any():
        warnings.warn(
            "O3 8-h above 800 ug/m3 with no O3 1-h value given: O3 index left missing "
            "(HJ 633-2012 Table 1 note 3)",
            stacklevel=3,
        )


def _ceil_index(values: np.ndarray) -> np.ndarray:
    # Published indices are whole numbers rounded up; the tolerance keeps 50.0000000001
    # (float noise from the interpolation) at 50 instead of 51.
    return np.ceil(np.round(values, 9))


def aqi(
    concentrations,
    report: str = "daily",
    round_up: bool = True,
    co_unit: str = "mg/m3",
    above_range: str = "cap",
):
    """Overall AQI (maximum IAQI) and primary pollutant(s), HJ 633-2012 section 4.

    Parameters
    ----------
    concentrations : dict or DataFrame
        See :func:`iaqi_table` for column names; a dict of scalars gives scalar results.
    report : {"daily", "realtime"}
        Report type (which averaging periods are used).
    round_up : bool
        Round each IAQI up to a whole number before taking the maximum, as published
        Chinese AQI values are integers rounded up. ``False`` keeps the exact values.
    co_unit, above_range
        See :func:`iaqi_table`.

    Returns
    -------
    aqi : float or Series
        Maximum of the available IAQIs (missing pollutants are skipped); NaN where none.
    primary_pollutants : tuple or Series of tuples
        Labels whose IAQI equals the AQI, in column order, only where AQI > 50 (the
        standard names no primary pollutant for an "Excellent" day); ``()`` otherwise.
    """
    _, scalar = _as_frame(concentrations)
    table = iaqi_table(concentrations, report, co_unit, above_range)
    values = table.to_numpy(dtype=float)
    if round_up:
        values = _ceil_index(values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows -> NaN is intended
        overall = np.nanmax(values, axis=1) if values.shape[1] else np.full(len(table), np.nan)
    labels = list(table.columns)
    primary = [
        tuple(lab for lab, v in zip(labels, row, strict=True) if v == top) if top > 50 else ()
        for row, top in zip(values, overall, strict=True)
    ]
    if scalar:
        return float(overall[0]), primary[0]
    return (
        pd.Series(overall, index=table.index, name="aqi"),
        pd.Series(primary, index=table.index, name="primary_pollutants", dtype=object),
    )


def _category_index(values: np.ndarray) -> np.ndarray:
    uppers = np.array([c.upper for c in CATEGORIES[:-1]])
    # right-closed bins: 50 -> I, 50.5 or 51 -> II, 300 -> V, 301 -> VI
    return np.searchsorted(uppers, values, side="left")


def aqi_category(value, field: str = "name"):
    """AQI category of HJ 633-2012 Table 2.

    Parameters
    ----------
    value : float, array-like or Series
        AQI value(s); bins are right-closed (0-50 I, (50, 100] II, ..., > 300 VI).
    field : {"name", "level", "colour", "hex", "category"}
        What to return: English name (``"Excellent"`` ...), level (``"I"`` ... ``"VI"``),
        the standard's colour name, its hex code, or the :class:`AQICategory` record.

    Returns
    -------
    str, AQICategory, ndarray of object or Series
        Same shape as ``value``; None where the AQI is NaN or negative.
    """
    if field not in ("name", "level", "colour", "hex", "category"):
        raise ValueError(f"field must be name/level/colour/hex/category, got {field!r}")
    arr = np.asarray(value, dtype=float)
    idx = _category_index(arr)
    valid = ~np.isnan(arr) & (arr >= 0)

    def pick(i: int, ok: bool):
        if not ok:
            return None
        cat = CATEGORIES[int(i)]
        return cat if field == "category" else getattr(cat, field)

    out = np.array(
        [pick(i, ok) for i, ok in zip(idx.ravel(), valid.ravel(), strict=True)], dtype=object
    ).reshape(arr.shape)
    if isinstance(value, pd.Series):
        return pd.Series(out, index=value.index, name=field, dtype=object)
    return out.item() if out.ndim == 0 else out


def _hourly_wide(
    hourly: pd.DataFrame, station_col: str, pollutant_col: str, value_col: str, time_col: str
) -> pd.DataFrame:
    """Long (station, time, pollutant, value) or wide (pollutant columns) -> wide frame."""
    for col in (station_col, time_col):
        if col not in hourly.columns:
            raise ValueError(
                f"hourly frame has no column {col!r} (columns: {list(hourly.columns)})"
            )
    if pollutant_col in hourly.columns:
        if value_col not in hourly.columns:
            raise ValueError(f"hourly frame has no value column {value_col!r}")
        long = hourly[[station_col, time_col, pollutant_col, value_col]].copy()
        long[pollutant_col] = long[pollutant_col].map(normalise_pollutant)
        dup = long.duplicated([station_col, time_col, pollutant_col])
        if dup.any():
            row = long[dup].iloc[0]
            raise ValueError(
                f"duplicate hourly value for station {row[station_col]!r}, "
                f"{row[pollutant_col]} at {row[time_col]} (row {long.index[dup][0]})"
            )
        wide = long.pivot(index=[station_col, time_col], columns=pollutant_col, values=value_col)
        wide.columns.name = None
        return wide.reset_index()
    cols = {}
    for col in hourly.columns:
        try:
            cols[col] = normalise_pollutant(col)
        except ValueError:
            continue
    if not cols:
        raise ValueError(
            f"hourly frame has neither a {pollutant_col!r} column nor pollutant columns "
            f"({', '.join(POLLUTANTS)})"
        )
    return hourly[[station_col, time_col, *cols]].rename(columns=cols)


def _regular_hours(group: pd.DataFrame, time_col: str) -> pd.DataFrame:
    """Reindex one station to every hour of its covered days (missing hours -> NaN)."""
    times = pd.DatetimeIndex(group[time_col])
    if times.has_duplicates:
        raise ValueError(f"duplicate timestamp {times[times.duplicated()][0]} for one station")
    start, end = times.min().floor("D"), times.max().floor("D") + pd.Timedelta(hours=23)
    full = pd.date_range(start, end, freq="h", tz=times.tz)
    return group.set_index(time_col).reindex(full)


def _o3_daily_max_8h(o3: pd.Series, min_hours_8h: int, min_windows: int) -> pd.Series:
    """Daily maximum 8-h moving average from a regular hourly O3 series."""
    # window ending at hour label t covers labels t-7..t; windows ending at labels 07..23
    # are the 17 windows lying wholly within the day (08:00..24:00 in hour-ending terms)
    moving = o3.rolling(8, min_periods=min_hours_8h).mean()
    moving = moving[moving.index.hour >= 7]
    day = moving.index.floor("D")
    stats = moving.groupby(day).agg(["max", "count"])
    return stats["max"].where(stats["count"] >= min_windows)


def daily_aqi(
    hourly: pd.DataFrame,
    station_col: str = "series_id",
    time_col: str = "timestamp",
    pollutant_col: str = "pollutant",
    value_col: str = "value",
    min_hours: int = MIN_HOURS_DAILY,
    min_hours_8h: int = MIN_HOURS_8H,
    min_o3_windows: int = MIN_WINDOWS_O3_8H,
    co_unit: str = "mg/m3",
    round_up: bool = True,
) -> pd.DataFrame:
    """Daily concentrations and the daily AQI report per station and calendar day.

    Daily values: 24-h means of SO2, NO2, CO, PM10 and PM2.5 (valid with at least
    ``min_hours`` hourly values, GB 3095-2012 Table 4); O3 daily maximum 1-h value (same
    completeness rule, a conservative choice of ours); O3 daily maximum 8-h moving average
    (each 8-h mean valid with at least ``min_hours_8h`` hours; the daily maximum valid with
    at least ``min_o3_windows`` of the 17 windows lying within the day). Invalid days are NaN
    and drop out of the AQI (which then uses the remaining pollutants).

    Timestamps must label the *start* of each hour (00:00 = the hour 00:00-01:00), so a day
    is the 24 labels 00:00..23:00. Chinese monitoring data labelled by hour end (01:00..24:00)
    must be shifted back one hour first.

    Parameters
    ----------
    hourly : DataFrame
        Either long ``station_col, time_col, pollutant_col, value_col`` or wide with one
        column per pollutant (``PM2.5``, ``PM10``, ``SO2``, ``NO2``, ``CO``, ``O3``).
    station_col, time_col, pollutant_col, value_col : str
        Column names.
    min_hours, min_hours_8h, min_o3_windows : int
        Completeness rules (defaults from GB 3095-2012 / HJ 663-2013).
    co_unit : {"mg/m3", "ug/m3"}
        Unit of CO in ``hourly``; the output CO column is always mg/m3.
    round_up : bool
        See :func:`aqi`.

    Returns
    -------
    DataFrame
        ``station_col, date``, daily concentrations ``SO2, NO2, CO, PM10, PM2.5, O3_1h,
        O3_8h``, ``n_hours_<pollutant>`` counts, unrounded ``iaqi_<label>`` columns, ``aqi``,
        ``primary_pollutants`` (tuple), ``level`` and ``category``.
    """
    wide = _hourly_wide(hourly, station_col, pollutant_col, value_col, time_col)
    wide[time_col] = pd.to_datetime(wide[time_col])
    if co_unit == "ug/m3" and "CO" in wide:
        wide["CO"] = wide["CO"] / 1000.0
    frames = [
        _station_daily(
            g.drop(columns=station_col), time_col, min_hours, min_hours_8h, min_o3_windows
        ).assign(**{station_col: station})
        for station, g in wide.groupby(station_col, sort=True)
    ]
    daily = pd.concat(frames, ignore_index=True)
    conc_cols = [c for c in ["SO2", "NO2", "CO", "PM10", "PM2.5", "O3_1h", "O3_8h"] if c in daily]
    table = iaqi_table(daily[conc_cols], report="daily")
    index, primary = aqi(daily[conc_cols], report="daily", round_up=round_up)
    daily = daily.join(table.add_prefix("iaqi_"))
    daily["aqi"] = index
    daily["primary_pollutants"] = primary
    daily["level"] = aqi_category(index, "level")
    daily["category"] = aqi_category(index, "name")
    first = [station_col, "date", *conc_cols]
    first += sorted(c for c in daily.columns if c.startswith("n_hours_"))
    return daily[first + [c for c in daily.columns if c not in first]]


def _station_daily(
    group: pd.DataFrame, time_col: str, min_hours: int, min_hours_8h: int, min_windows: int
) -> pd.DataFrame:
    hours = _regular_hours(group, time_col)
    day = hours.index.floor("D")
    out = pd.DataFrame(index=pd.DatetimeIndex(day.unique(), name="date"))
    for pol in ("SO2", "NO2", "CO", "PM10", "PM2.5", "O3"):
        if pol not in hours:
            continue
        values = pd.to_numeric(hours[pol], errors="raise").astype(float)
        stats = values.groupby(day).agg(["mean", "max", "count"])
        ok = stats["count"] >= min_hours
        out[f"n_hours_{pol}"] = stats["count"].astype(int)
        if pol == "O3":
            out["O3_1h"] = stats["max"].where(ok)
            out["O3_8h"] = _o3_daily_max_8h(values, min_hours_8h, min_windows)
        else:
            out[pol] = stats["mean"].where(ok)
    return out.reset_index()
