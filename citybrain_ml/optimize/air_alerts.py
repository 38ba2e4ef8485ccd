"""PM2.5 exceedance early warning: daily-mean exceedance probabilities, alerts, response plan.

Method (why it accounts for the 24-h averaging)
-----------------------------------------------
The alert quantity is the calendar-day mean of hourly PM2.5 (the HJ 633-2012 24-h average).
Hourly forecast errors within a day are strongly correlated (a whole episode arrives early or
late), so the spread of a daily mean cannot be built from independent hourly quantiles. We
therefore calibrate *on daily means directly*:

1. For every (station, origin, day) the forecast daily mean is the mean of the 24 hourly
   values of that day, taking the observed value for hours at or before the origin and the
   forecast (``yhat``, the median) after it (:func:`daily_forecast_means`). Only complete
   days are kept (every hour either observed or forecast; at least 20 valid hours, the
   GB 3095-2012 rule).
2. On past forecasts with known outcomes, residuals ``r = log1p(actual) - log1p(forecast)``
   of the daily means are collected per *lead day* (``ceil(last step in the day / 24)``).
   The log scale makes the spread proportional to the level, as PM2.5 errors are.
3. ``P(daily mean > c) = #{r : log1p(forecast) + r > log1p(c)} / n`` -- the empirical
   predictive distribution of the daily mean (split-conformal style). It is non-increasing in
   ``c`` by construction and calibrated when future residuals resemble past ones.

:func:`rolling_exceedance` evaluates this honestly on a scored period: each origin uses only
residuals of days that had ended by that origin.

Alert levels
------------
Daily categories follow HJ 633-2012 Table 2 via the PM2.5 24-h IAQI -- a PM2.5-only lower
bound of the AQI -- unless forecasts of the other pollutants are given: then
:func:`expected_daily_aqi` computes the daily AQI over all forecast pollutants (24-h means,
O3 daily maximum 1-h and 8-h values) and :func:`alert_table` reports that category. The
episode alert levels follow the national heavy-pollution warning grading standard issued by
the Ministry of Environmental Protection with the 2017 revision of the emergency-plan
guidance (:data:`ALERT_RULES`): blue -- forecast daily AQI > 200 (one day); yellow -- > 200
for 2 days or more; orange -- > 200 for 3 days and > 300 on at least one; red -- > 200 for 4
days and > 300 for 2, or AQI reaching 500. Many cities later adopted a three-level form
without blue (:data:`ALERT_RULES_THREE_LEVEL`: yellow 2 days > 200, orange 3 days > 200, red
4 days > 200 and 2 days > 300, or 500). Rules are data and can be replaced by the city's own
plan. Differences from the standard, by design: "days" are calendar days counted over the
forecast window (the standard allows rolling 24-h means across midnight), and a day counts
as above a level when its exceedance probability reaches ``decide_probability``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import HORIZON_STEP, SERIES_ID, TIMESTAMP, VALUE, YHAT
from citybrain_ml.features.aqi import (
    BREAKPOINTS,
    CATEGORIES,
    IAQI_LEVELS,
    aqi_category,
    daily_aqi,
    iaqi,
    normalise_pollutant,
)

ORIGIN = "origin"
DATE = "date"
LEAD_DAY = "lead_day"
MIN_HOURS = 20  # GB 3095-2012 Table 4: a valid 24-h mean needs >= 20 hourly values
HOURS = 24

# PM2.5 24-h concentration at each AQI category's upper bound (IAQI 50, 100, 150, 200, 300).
CATEGORY_THRESHOLDS = {
    cat.level: float(c)
    for cat, c in zip(CATEGORIES[:-1], BREAKPOINTS[("PM2.5", "24h")][1:6], strict=True)
}

# HJ 633-2012 Table 2 recommended measures per category (abridged English rendering).
ACTIONS = {
    "I": "No action: air quality satisfactory.",
    "II": "Advise unusually sensitive people to reduce outdoor activity.",
    "III": "Advise children, the elderly and heart/respiratory patients to reduce prolonged or "
    "heavy outdoor exertion.",
    "IV": "Advise sensitive groups to avoid prolonged or heavy outdoor exertion; general public "
    "to reduce outdoor exercise.",
    "V": "Advise sensitive groups to stay indoors and stop outdoor activity; general public to "
    "reduce outdoor activity.",
    "VI": "Advise sensitive groups to stay indoors and avoid exertion; general public to avoid "
    "outdoor activity.",
}


@dataclass(frozen=True)
class AlertRule:
    """An episode alert level: triggered when, counting from a day over the forecast days,
    at least ``days`` days have AQI above ``aqi_above`` (all conditions of a rule must hold)."""

    level: str
    conditions: tuple[tuple[int, float], ...]  # (days, aqi_above)


# Checked from the most severe down; the first rule that holds gives the level.
# MEP heavy-pollution warning grading standard (2017 emergency-plan revision), four levels.
ALERT_RULES = (
    AlertRule("red", ((4, 200), (2, 300))),
    AlertRule("red", ((1, 500),)),
    AlertRule("orange", ((3, 200), (1, 300))),
    AlertRule("yellow", ((2, 200),)),
    AlertRule("blue", ((1, 200),)),
)
# The three-level form many city plans use (no blue; orange needs no day above 300).
ALERT_RULES_THREE_LEVEL = (
    AlertRule("red", ((4, 200), (2, 300))),
    AlertRule("red", ((1, 500),)),
    AlertRule("orange", ((3, 200),)),
    AlertRule("yellow", ((2, 200),)),
)
RULE_SETS = {"mep2017": ALERT_RULES, "three_level": ALERT_RULES_THREE_LEVEL}
ALERT_ORDER = {"none": 0, "blue": 1, "yellow": 2, "orange": 3, "red": 4}


# ---------------------------------------------------------------------- daily means
def _with_origin(forecast: pd.DataFrame, freq: str) -> pd.DataFrame:
    lacking = [c for c in (SERIES_ID, TIMESTAMP, HORIZON_STEP, YHAT) if c not in forecast.columns]
    if lacking:
        raise ValueError(f"forecast frame lacks column(s) {lacking}")
    fc = forecast[[c for c in (SERIES_ID, TIMESTAMP, HORIZON_STEP, YHAT, ORIGIN) if c in forecast]]
    fc = fc.assign(**{TIMESTAMP: pd.to_datetime(fc[TIMESTAMP])})
    if ORIGIN not in fc.columns:
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
        fc = fc.assign(**{ORIGIN: fc[TIMESTAMP] - fc[HORIZON_STEP].astype(int) * step})
    return fc


def _observed_so_far(history: pd.DataFrame, origins: pd.DataFrame) -> pd.DataFrame:
    """Sum and count of observed values from the start of each origin's day up to the origin."""
    h = history[[SERIES_ID, TIMESTAMP, VALUE]].copy()
    h[TIMESTAMP] = pd.to_datetime(h[TIMESTAMP])
    day = h[TIMESTAMP].dt.floor("D")
    h["obs_sum"] = h[VALUE].fillna(0.0).groupby([h[SERIES_ID], day]).cumsum()
    h["obs_count"] = h[VALUE].notna().astype(int).groupby([h[SERIES_ID], day]).cumsum()
    keys = origins.rename(columns={ORIGIN: TIMESTAMP})
    out = keys.merge(h[[SERIES_ID, TIMESTAMP, "obs_sum", "obs_count"]], how="left")
    return out.rename(columns={TIMESTAMP: ORIGIN}).fillna({"obs_sum": 0.0, "obs_count": 0})


def daily_forecast_means(
    forecast: pd.DataFrame,
    history: pd.DataFrame | None = None,
    freq: str = "h",
    min_hours: int = MIN_HOURS,
) -> pd.DataFrame:
    """Forecast calendar-day means per (station, origin, day), observed hours included.

    Parameters
    ----------
    forecast : DataFrame
        Hourly forecasts ``series_id, timestamp, horizon_step, yhat`` (+ ``origin``; derived
        from ``timestamp - horizon_step`` when absent).
    history : DataFrame, optional
        Observed ``series_id, timestamp, value``; hours of the origin's day up to the origin
        are taken from it. Without it only days wholly inside the forecast are kept.
    freq : str
        Sampling interval of the forecasts (hourly).
    min_hours : int
        Valid hours a day needs (observed non-missing + forecast).

    Returns
    -------
    DataFrame
        ``series_id, origin, date, lead_day, n_forecast_hours, forecast_mean``; one row per
        complete day.
    """
    if pd.Timedelta(pd.tseries.frequencies.to_offset(freq)) != pd.Timedelta(hours=1):
        raise ValueError(f"daily means need hourly forecasts, got freq={freq!r}")
    fc = _with_origin(forecast, freq)
    fc[DATE] = fc[TIMESTAMP].dt.floor("D")
    keys = [SERIES_ID, ORIGIN, DATE]
    days = fc.groupby(keys, sort=True).agg(
        fc_sum=(YHAT, "sum"), n_forecast_hours=(YHAT, "count"), last_step=(HORIZON_STEP, "max")
    )
    days = days.reset_index()
    first_day = days[DATE] == days[ORIGIN].dt.floor("D")
    # hours of the origin's own day at or before the origin are history, not forecast
    hours_before = np.where(first_day, (days[ORIGIN] - days[DATE]) / pd.Timedelta(hours=1) + 1, 0)
    if history is not None and first_day.any():
        obs = _observed_so_far(history, days.loc[first_day, [SERIES_ID, ORIGIN]].drop_duplicates())
        days = days.merge(obs, on=[SERIES_ID, ORIGIN], how="left")
        days["obs_sum"] = days["obs_sum"].where(first_day, 0.0).fillna(0.0)
        days["obs_count"] = days["obs_count"].where(first_day, 0).fillna(0)
    else:
        days["obs_sum"], days["obs_count"] = 0.0, 0
        hours_before = np.where(first_day, np.inf, 0)  # unknown past hours: day incomplete
    complete = days["n_forecast_hours"] + hours_before == HOURS
    valid = days["n_forecast_hours"] + days["obs_count"] >= min_hours
    days = days[complete & valid].copy()
    n = days["n_forecast_hours"] + days["obs_count"]
    days["forecast_mean"] = (days["fc_sum"] + days["obs_sum"]) / n
    days[LEAD_DAY] = np.ceil(days["last_step"] / HOURS).astype(int)
    cols = [SERIES_ID, ORIGIN, DATE, LEAD_DAY, "n_forecast_hours", "forecast_mean"]
    return days[cols].reset_index(drop=True)


def daily_actual_means(actuals: pd.DataFrame, min_hours: int = MIN_HOURS) -> pd.DataFrame:
    """Observed calendar-day means (NaN with fewer than ``min_hours`` valid hours).

    Parameters
    ----------
    actuals : DataFrame
        Hourly ``series_id, timestamp, value``.
    min_hours : int
        Valid hours needed for a daily mean (GB 3095-2012: 20).

    Returns
    -------
    DataFrame
        ``series_id, date, actual_mean, n_hours``.
    """
    a = actuals[[SERIES_ID, TIMESTAMP, VALUE]]
    day = pd.to_datetime(a[TIMESTAMP]).dt.floor("D").rename(DATE)
    stats = a[VALUE].groupby([a[SERIES_ID], day]).agg(["mean", "count"]).reset_index()
    stats = stats.rename(columns={"mean": "actual_mean", "count": "n_hours"})
    stats["actual_mean"] = stats["actual_mean"].where(stats["n_hours"] >= min_hours)
    return stats


# ---------------------------------------------------------------------- probabilities
def log_residuals(daily: pd.DataFrame) -> dict[int, np.ndarray]:
    """Sorted ``log1p(actual_mean) - log1p(forecast_mean)`` per lead day (NaN pairs dropped)."""
    ok = daily["actual_mean"].notna() & daily["forecast_mean"].notna()
    d = daily[ok]
    r = np.log1p(d["actual_mean"].clip(lower=0)) - np.log1p(d["forecast_mean"].clip(lower=0))
    return {int(k): np.sort(v.to_numpy()) for k, v in r.groupby(d[LEAD_DAY])}


def exceedance_from_residuals(forecast_mean, residuals: np.ndarray, threshold: float) -> np.ndarray:
    """``P(daily mean > threshold)`` under the empirical residual distribution.

    Parameters
    ----------
    forecast_mean : array-like
        Forecast daily means (ug/m3).
    residuals : ndarray
        Sorted log1p residuals (see :func:`log_residuals`).
    threshold : float
        Concentration threshold (ug/m3).

    Returns
    -------
    ndarray
        Probabilities in [0, 1]; NaN when there are no residuals.
    """
    f = np.log1p(np.clip(np.asarray(forecast_mean, dtype=float), 0, None))
    if len(residuals) == 0:
        return np.full(f.shape, np.nan)
    need = np.log1p(float(threshold)) - f
    below = np.searchsorted(residuals, need, side="right")
    return 1.0 - below / len(residuals)


def _pool(residuals: dict[int, np.ndarray], lead: int) -> np.ndarray:
    if lead in residuals:
        return residuals[lead]
    # a lead day never calibrated borrows the longest calibrated one (the widest spread)
    return residuals[max(residuals)] if residuals else np.array([])


def exceedance_probabilities(
    daily: pd.DataFrame, residuals: dict[int, np.ndarray], thresholds
) -> pd.DataFrame:
    """Add ``p_gt_<c>`` columns (and the median daily mean) to a daily forecast frame.

    Parameters
    ----------
    daily : DataFrame
        Output of :func:`daily_forecast_means`.
    residuals : dict
        Lead day -> sorted log residuals (:func:`log_residuals`).
    thresholds : iterable of float
        PM2.5 daily-mean thresholds (ug/m3).

    Returns
    -------
    DataFrame
        ``daily`` plus ``median_mean`` (forecast shifted by the median residual) and one
        ``p_gt_<c>`` column per threshold.
    """
    out = daily.copy()
    out["median_mean"] = np.nan
    cols = {float(c): prob_column(c) for c in thresholds}
    for col in cols.values():
        out[col] = np.nan
    for lead, idx in out.groupby(LEAD_DAY).groups.items():
        pool = _pool(residuals, int(lead))
        fc = out.loc[idx, "forecast_mean"].to_numpy(dtype=float)
        if len(pool):
            out.loc[idx, "median_mean"] = np.expm1(np.log1p(np.clip(fc, 0, None)) + np.median(pool))
        for c, col in cols.items():
            out.loc[idx, col] = exceedance_from_residuals(fc, pool, c)
    return out


def prob_column(threshold: float) -> str:
    """Column name of ``P(daily mean > threshold)``: 75 -> ``p_gt_75``."""
    return f"p_gt_{float(threshold):g}"


def rolling_exceedance(
    daily: pd.DataFrame, thresholds, window_days: int | None = None, min_residuals: int = 20
) -> pd.DataFrame:
    """Past-only probabilities on a scored period, for honest calibration checks.

    Each origin uses residuals of days that had ended by the origin (and started within
    ``window_days`` before it, when given), per lead day. Origins with fewer than
    ``min_residuals`` such residuals get NaN.

    Parameters
    ----------
    daily : DataFrame
        :func:`daily_forecast_means` joined with ``actual_mean``.
    thresholds : iterable of float
        Thresholds (ug/m3).
    window_days : int, optional
        Only the last ``window_days`` days of residuals.
    min_residuals : int
        Smallest usable residual pool.

    Returns
    -------
    DataFrame
        ``daily`` plus ``p_gt_<c>`` columns.
    """
    d = daily.copy()
    ok = d["actual_mean"].notna()
    d["resid"] = np.where(
        ok,
        np.log1p(d["actual_mean"].clip(lower=0)) - np.log1p(d["forecast_mean"].clip(lower=0)),
        np.nan,
    )
    d["day_end"] = d[DATE] + pd.Timedelta(days=1)
    cols = {float(c): prob_column(c) for c in thresholds}
    for col in cols.values():
        d[col] = np.nan
    done = d[ok].sort_values("day_end")
    for (origin, lead), idx in d.groupby([ORIGIN, LEAD_DAY]).groups.items():
        past = done[(done["day_end"] <= origin) & (done[LEAD_DAY] == lead)]
        if window_days is not None:
            past = past[past[DATE] >= origin - pd.Timedelta(days=int(window_days))]
        if len(past) < min_residuals:
            continue
        pool = np.sort(past["resid"].to_numpy())
        fc = d.loc[idx, "forecast_mean"].to_numpy(dtype=float)
        for c, col in cols.items():
            d.loc[idx, col] = exceedance_from_residuals(fc, pool, c)
    return d.drop(columns=["resid", "day_end"])


def monthly_climatology(actual_daily: pd.DataFrame, threshold: float) -> pd.Series:
    """Share of station-days with daily mean above ``threshold``, per calendar month (1..12)."""
    d = actual_daily.dropna(subset=["actual_mean"])
    exceed = (d["actual_mean"] > threshold).astype(float)
    return exceed.groupby(pd.to_datetime(d[DATE]).dt.month).mean()


# ---------------------------------------------------------------------- multi-pollutant AQI
def expected_daily_aqi(
    forecasts_by_pollutant: dict[str, pd.DataFrame],
    history_by_pollutant: dict[str, pd.DataFrame] | None = None,
    freq: str = "h",
) -> pd.DataFrame:
    """Forecast daily AQI per (station, origin, day) from hourly forecasts of several pollutants.

    Each pollutant's hourly median forecasts (``yhat``) -- with the observed hours of the
    origin's own day up to the origin, when ``history_by_pollutant`` is given -- form an
    hourly series per (station, origin); :func:`citybrain_ml.features.aqi.daily_aqi` turns
    it into HJ 633-2012 daily values: 24-h means of PM2.5, PM10, NO2 (and SO2, CO), the O3
    daily maximum 1-h value and daily maximum 8-h moving mean, their IAQIs, the AQI (their
    maximum) and the primary pollutant(s). A plug-in of point forecasts: the AQI of the
    median forecasts, not the median of the AQI.

    Parameters
    ----------
    forecasts_by_pollutant : dict
        Pollutant name (``"PM2.5"``, ``"PM10"``, ``"NO2"``, ``"O3"``, ``"SO2"``, ``"CO"``;
        spellings such as ``"pm25"`` accepted) -> hourly forecasts ``series_id, timestamp,
        horizon_step, yhat`` (+ ``origin``; derived from ``timestamp - horizon_step`` when
        absent). Concentrations in ug/m3 (CO in mg/m3).
    history_by_pollutant : dict, optional
        Pollutant -> observed ``series_id, timestamp, value``; fills the hours of the
        origin's day at or before the origin. Without it only days wholly inside the
        forecast are returned.
    freq : str
        Sampling interval of the forecasts (must be hourly).

    Returns
    -------
    DataFrame
        ``series_id, origin, date, lead_day, aqi, level, category, primary_pollutant`` (the
        labels joined with ``"+"``, None when AQI <= 50), then the daily values and
        ``iaqi_<label>`` columns of :func:`~citybrain_ml.features.aqi.daily_aqi`; one row per
        complete day (every hour forecast or observed). ``lead_day`` is as in
        :func:`daily_forecast_means`.
    """
    if not forecasts_by_pollutant:
        raise ValueError("forecasts_by_pollutant is empty: pass at least one pollutant")
    if pd.Timedelta(pd.tseries.frequencies.to_offset(freq)) != pd.Timedelta(hours=1):
        raise ValueError(f"daily AQI needs hourly forecasts, got freq={freq!r}")
    history_by_pollutant = {
        normalise_pollutant(k): v for k, v in (history_by_pollutant or {}).items()
    }
    long = []
    for name, forecast in forecasts_by_pollutant.items():
        pollutant = normalise_pollutant(name)
        fc = _with_origin(forecast, freq)
        long.append(fc.rename(columns={YHAT: VALUE}).assign(pollutant=pollutant))
        if pollutant in history_by_pollutant:
            keys = fc[[SERIES_ID, ORIGIN]].drop_duplicates()
            long.append(_origin_day_hours(history_by_pollutant[pollutant], keys, pollutant))
    hourly = pd.concat(long, ignore_index=True)
    hourly["pollutant"] = hourly["pollutant"].astype(object)
    hourly = hourly.drop_duplicates([SERIES_ID, ORIGIN, TIMESTAMP, "pollutant"], keep="first")
    return _daily_from_hourly(hourly, with_history=bool(history_by_pollutant))


def _origin_day_hours(history: pd.DataFrame, keys: pd.DataFrame, pollutant: str) -> pd.DataFrame:
    """Observed rows of each origin's day at or before the origin (NaN where not observed)."""
    hours = (keys[ORIGIN] - keys[ORIGIN].dt.floor("D")) // pd.Timedelta(hours=1) + 1
    rep = keys.loc[keys.index.repeat(hours)].reset_index(drop=True)
    offset = rep.groupby([SERIES_ID, ORIGIN]).cumcount()
    rep[TIMESTAMP] = rep[ORIGIN].dt.floor("D") + pd.to_timedelta(offset, unit="h")
    obs = history[[SERIES_ID, TIMESTAMP, VALUE]].assign(
        **{TIMESTAMP: pd.to_datetime(history[TIMESTAMP])}
    )
    rep = rep.merge(obs, on=[SERIES_ID, TIMESTAMP], how="left")
    return rep.assign(**{HORIZON_STEP: 0, "pollutant": pollutant})


def _daily_from_hourly(hourly: pd.DataFrame, with_history: bool) -> pd.DataFrame:
    """``daily_aqi`` per (station, origin), keeping complete days that hold a forecast hour."""
    key = hourly.groupby([SERIES_ID, ORIGIN], sort=True).ngroup()
    hourly = hourly.assign(_key=key.to_numpy())
    keys = hourly.drop_duplicates("_key")[["_key", SERIES_ID, ORIGIN]]
    hourly[DATE] = hourly[TIMESTAMP].dt.floor("D")
    fc = hourly[hourly[HORIZON_STEP] > 0]
    days = fc.groupby(["_key", DATE]).agg(
        n_hours=(TIMESTAMP, "nunique"), last_step=(HORIZON_STEP, "max")
    )
    days = days.reset_index().merge(keys, on="_key")
    first_day = days[DATE] == days[ORIGIN].dt.floor("D")
    before = (days[ORIGIN] - days[DATE]) // pd.Timedelta(hours=1) + 1
    days["n_hours"] += np.where(first_day, before if with_history else np.inf, 0)
    days = days[days["n_hours"] == HOURS]
    daily = daily_aqi(hourly[["_key", TIMESTAMP, "pollutant", VALUE]], station_col="_key")
    daily = days[["_key", SERIES_ID, ORIGIN, DATE, "last_step"]].merge(daily, on=["_key", DATE])
    daily[LEAD_DAY] = np.ceil(daily["last_step"] / HOURS).astype(int)
    daily["primary_pollutant"] = [
        "+".join(p) if p else None for p in daily.pop("primary_pollutants")
    ]
    first = [SERIES_ID, ORIGIN, DATE, LEAD_DAY, "aqi", "level", "category", "primary_pollutant"]
    rest = [c for c in daily.columns if c not in (*first, "_key", "last_step")]
    return daily[first + rest].sort_values([SERIES_ID, ORIGIN, DATE], ignore_index=True)


# ---------------------------------------------------------------------- tables
def pm25_daily_category(concentration, field: str = "level"):
    """HJ 633-2012 category of PM2.5 24-h means via the IAQI (rounded up, as the AQI is)."""
    index = np.ceil(np.round(np.asarray(iaqi("PM2.5", concentration, "24h"), dtype=float), 9))
    return aqi_category(index, field)


def alert_table(
    probs: pd.DataFrame,
    threshold: float = 75.0,
    alert_probability: float = 0.5,
    daily_aqi_forecast: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Station/day alert table for one threshold.

    Parameters
    ----------
    probs : DataFrame
        Output of :func:`exceedance_probabilities` (must hold ``p_gt_<threshold>``).
    threshold : float
        PM2.5 daily-mean threshold (default 75 ug/m3: above it the PM2.5 IAQI exceeds 100,
        i.e. category III "Lightly polluted" or worse).
    alert_probability : float
        Probability at or above which ``alert`` is True.
    daily_aqi_forecast : DataFrame, optional
        Output of :func:`expected_daily_aqi` for the same forecasts. When given, the
        expected level and category come from the AQI over all its pollutants (matched on
        station, origin and day; NaN where it has no row) and ``expected_aqi`` and
        ``primary_pollutant`` are added. Without it they come from PM2.5 alone (a lower
        bound of the AQI).

    Returns
    -------
    DataFrame
        ``station, day, lead_day, threshold, probability, expected_pm25, expected_iaqi``
        (PM2.5 IAQI of the median daily mean), [``expected_aqi, primary_pollutant``],
        ``expected_level, expected_category, alert``.
    """
    col = prob_column(threshold)
    if col not in probs.columns:
        raise ValueError(f"probabilities frame has no column {col!r}; compute it first")
    expected = probs["median_mean"].fillna(probs["forecast_mean"])
    index = np.ceil(np.round(np.asarray(iaqi("PM2.5", expected.to_numpy(), "24h")), 9))
    out = pd.DataFrame(
        {
            "station": probs[SERIES_ID].to_numpy(),
            "day": probs[DATE].to_numpy(),
            LEAD_DAY: probs[LEAD_DAY].to_numpy(),
            "threshold": float(threshold),
            "probability": probs[col].to_numpy(dtype=float),
            "expected_pm25": expected.to_numpy(dtype=float),
            "expected_iaqi": index,
            "expected_level": aqi_category(index, "level"),
            "expected_category": aqi_category(index, "name"),
        }
    )
    if daily_aqi_forecast is not None:
        out = _with_all_pollutant_aqi(out, probs, daily_aqi_forecast)
    out["alert"] = out["probability"] >= float(alert_probability)
    return out.sort_values(["day", "station"], ignore_index=True)


def _with_all_pollutant_aqi(
    out: pd.DataFrame, probs: pd.DataFrame, daily: pd.DataFrame
) -> pd.DataFrame:
    """Replace the PM2.5-only expected category with the all-pollutant AQI category."""
    keys = [SERIES_ID, ORIGIN, DATE] if ORIGIN in probs and ORIGIN in daily else [SERIES_ID, DATE]
    lacking = [c for c in (*keys, "aqi", "primary_pollutant") if c not in daily.columns]
    if lacking:
        raise ValueError(
            f"daily_aqi_forecast lacks column(s) {lacking}; pass expected_daily_aqi()'s output"
        )
    if daily.duplicated(keys).any():
        raise ValueError(f"daily_aqi_forecast has duplicate rows for {keys}")
    match = probs[keys].merge(daily[[*keys, "aqi", "primary_pollutant"]], on=keys, how="left")
    index = match["aqi"].to_numpy(dtype=float)
    position = out.columns.get_loc("expected_level")
    out.insert(position, "expected_aqi", index)
    out.insert(position + 1, "primary_pollutant", match["primary_pollutant"].to_numpy())
    out["expected_level"] = aqi_category(index, "level")
    out["expected_category"] = aqi_category(index, "name")
    return out


def _likely_aqi_over(probs: pd.DataFrame, aqi_level: int, decide: float) -> np.ndarray:
    """Days whose AQI (PM2.5) exceeds ``aqi_level`` with probability >= ``decide``."""
    bp = BREAKPOINTS[("PM2.5", "24h")]
    conc = bp[IAQI_LEVELS.index(aqi_level)]
    return probs[prob_column(conc)].to_numpy(dtype=float) >= decide


def episode_alert_level(day_flags: dict[int, np.ndarray], rules=ALERT_RULES) -> str:
    """Alert level from per-day flags ``{aqi_above: bool array over the forecast days}``."""
    for rule in rules:
        if all(day_flags[level].sum() >= days for days, level in rule.conditions):
            return rule.level
    return "none"


def response_plan(
    probs: pd.DataFrame, decide_probability: float = 0.5, rules=ALERT_RULES
) -> pd.DataFrame:
    """Ranked action table per station (district) and day.

    A day "has AQI > a" when ``P(PM2.5 daily mean > breakpoint(a)) >= decide_probability``.
    For each station and day the episode alert level applies ``rules`` to that day and the
    forecast days after it; the recommended measure is the HJ 633-2012 advice of the most
    severe category reached with that probability.

    Parameters
    ----------
    probs : DataFrame
        Output of :func:`exceedance_probabilities` with thresholds 35, 75, 115, 150, 250, 500.
    decide_probability : float
        Probability at which a day counts as above a level.
    rules : sequence of AlertRule
        Episode rules, most severe first.

    Returns
    -------
    DataFrame
        ``rank, station, day, lead_day, alert_level, likely_level, likely_category,
        p_gt_75, p_gt_150, p_gt_250, expected_pm25, action``, most urgent first.
    """
    needed = [prob_column(c) for c in BREAKPOINTS[("PM2.5", "24h")][1:]]
    lacking = [c for c in needed if c not in probs.columns]
    if lacking:
        raise ValueError(f"probabilities frame lacks {lacking}; pass all PM2.5 breakpoints")
    rows = []
    for station, g in probs.sort_values(DATE).groupby(SERIES_ID, sort=True):
        g = g.drop_duplicates(DATE, keep="last")
        flags = {a: _likely_aqi_over(g, a, decide_probability) for a in (150, 200, 300, 500)}
        likely = _likely_level(g, decide_probability)
        for i, (_, row) in enumerate(g.iterrows()):
            level = episode_alert_level({a: f[i:] for a, f in flags.items()}, rules)
            rows.append(
                {
                    "station": station,
                    "day": row[DATE],
                    LEAD_DAY: row[LEAD_DAY],
                    "alert_level": level,
                    "likely_level": likely[i].level,
                    "likely_category": likely[i].name,
                    "p_gt_75": row["p_gt_75"],
                    "p_gt_150": row["p_gt_150"],
                    "p_gt_250": row["p_gt_250"],
                    "expected_pm25": row["median_mean"],
                    "action": ACTIONS[likely[i].level],
                }
            )
    plan = pd.DataFrame(rows)
    if plan.empty:
        return plan
    plan["_severity"] = plan["alert_level"].map(ALERT_ORDER)
    plan = plan.sort_values(
        ["_severity", "p_gt_150", "p_gt_75", "day"], ascending=[False, False, False, True]
    )
    plan = plan.drop(columns="_severity").reset_index(drop=True)
    plan.insert(0, "rank", np.arange(1, len(plan) + 1))
    return plan


def _likely_level(g: pd.DataFrame, decide: float) -> list:
    """Most severe category whose lower bound is exceeded with probability >= ``decide``."""
    out = []
    bounds = list(CATEGORY_THRESHOLDS.values())  # 35, 75, 115, 150, 250
    for _, row in g.iterrows():
        k = sum(row[prob_column(c)] >= decide for c in bounds)
        out.append(CATEGORIES[k])
    return out


# ---------------------------------------------------------------------- decision plug-in
PLAN_THRESHOLDS = tuple(float(c) for c in BREAKPOINTS[("PM2.5", "24h")][1:])


def scored_daily(scored: pd.DataFrame, history: pd.DataFrame, freq: str = "h") -> pd.DataFrame:
    """Daily forecast means of evaluation forecasts joined with the observed daily means."""
    daily = daily_forecast_means(scored, history, freq)
    return daily.merge(daily_actual_means(history), on=[SERIES_ID, DATE], how="left")


def calibration_report(
    daily_probs: pd.DataFrame, threshold: float, climatology: pd.Series, n_bins: int = 10
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Reliability table and Brier scores (model vs monthly climatology) for one threshold."""
    from citybrain_ml.evaluation.calibration import brier_score, reliability_table

    col = prob_column(threshold)
    d = daily_probs.dropna(subset=[col, "actual_mean"])
    if d.empty:
        return pd.DataFrame(), {}
    outcome = (d["actual_mean"] > threshold).to_numpy(dtype=float)
    months = pd.to_datetime(d[DATE]).dt.month
    clim = months.map(climatology).fillna(float(np.mean(outcome))).to_numpy(dtype=float)
    bs, bs_ref = brier_score(d[col], outcome), brier_score(clim, outcome)
    metrics = {
        "brier": bs,
        "brier_climatology": bs_ref,
        "brier_skill": 1 - bs / bs_ref if bs_ref > 0 else float("nan"),
        "base_rate": float(outcome.mean()),
        "n_days": float(len(d)),
    }
    return reliability_table(d[col], outcome, n_bins=n_bins), metrics


def split_pollutants(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Rows of a multi-pollutant frame (series ``<station>/<pollutant>``) by pollutant.

    Returns ``{pollutant: frame with series_id = station}``; an empty dict when the series
    are plain station ids (a single-pollutant dataset).
    """
    from citybrain_ml.data.air import split_series_id

    if frame is None or frame.empty:
        return {}
    parts = [split_series_id(sid) for sid in frame[SERIES_ID]]
    pollutants = pd.Series([p[1] for p in parts], index=frame.index)
    if pollutants.isna().any():
        return {}
    stations = pd.Series([p[0] for p in parts], index=frame.index)
    return {
        str(name): rows.assign(**{SERIES_ID: stations[rows.index]}).reset_index(drop=True)
        for name, rows in frame.groupby(pollutants, sort=True)
    }


def _one_pollutant_view(ctx, target: str):
    """The decision's view of a multi-pollutant job: ``target``'s series drive exceedance and
    the response plan, the other pollutants only the expected AQI.

    Returns ``(ctx, other_forecasts, other_history)``; a single-pollutant job passes through
    with any ``pollutant_forecasts`` / ``pollutant_history`` set on its context.
    """
    from dataclasses import replace

    from citybrain_ml.data.schema import SeriesDataset

    history = split_pollutants(ctx.dataset.values)
    if not history:
        return (
            ctx,
            getattr(ctx, "pollutant_forecasts", None) or {},
            getattr(ctx, "pollutant_history", None) or {},
        )
    if target not in history:
        raise ValueError(
            f"air_alerts: target_pollutant {target!r} is not among the job's pollutants "
            f"{sorted(history)}"
        )
    forecasts = split_pollutants(ctx.forecast)
    scored = split_pollutants(ctx.scored)
    dataset = SeriesDataset(history[target], ctx.dataset.freq, name=ctx.dataset.name)
    main = replace(
        ctx,
        dataset=dataset,
        forecast=forecasts.get(target, ctx.forecast.iloc[:0]),
        scored=scored.get(target, pd.DataFrame()),
    )
    others = {k: v for k, v in forecasts.items() if k != target}
    return main, others, {k: v for k, v in history.items() if k != target}


def _decision_daily_aqi(
    target: str, live: pd.DataFrame, history: pd.DataFrame, others, others_history, freq, end
):
    """All-pollutant daily AQI for the alert table, or None (target-only categories)."""
    if not others:
        return None
    origin = {ORIGIN: pd.Timestamp(end)}
    forecasts = {target: live} | {
        name: fc if ORIGIN in fc.columns else fc.assign(**origin) for name, fc in others.items()
    }
    return expected_daily_aqi(forecasts, {target: history, **others_history}, freq)


def _rules(params: dict):
    name = str(params.get("alert_rules", "mep2017"))
    if name not in RULE_SETS:
        raise ValueError(
            f"air_alerts: alert_rules must be one of {sorted(RULE_SETS)}, got {name!r}"
        )
    return RULE_SETS[name]


def air_alerts_decision(ctx):
    """Decision plug-in ``air_alerts``: alert table, response plan and calibration report.

    Params (config ``decisions: [{type: air_alerts, params: {...}}]``): ``threshold`` (75),
    ``alert_probability`` (0.5), ``decide_probability`` (0.5), ``window_days`` (None: all
    past residuals), ``min_residuals`` (20), ``n_bins`` (10), ``target_pollutant`` ("PM2.5"),
    ``alert_rules`` ("mep2017" or "three_level", see :data:`RULE_SETS`).
    In a multi-pollutant job (series ``<station>/<pollutant>``, loader option ``targets``),
    ``target_pollutant``'s series drive exceedance and the plan and the alert table's
    expected category is the all-pollutant daily AQI (:func:`expected_daily_aqi`); the same
    holds when a context carries ``pollutant_forecasts`` (and ``pollutant_history``).
    Otherwise the category comes from PM2.5 alone.

    Returns
    -------
    DecisionOutput
        Tables ``air_alerts``, ``air_response_plan``, ``air_exceedance_reliability``; figure
        ``exceedance_reliability``; metrics ``brier``, ``brier_climatology``, ``brier_skill``,
        ``base_rate``, ``n_days``, ``n_alerts``.
    """
    from citybrain_ml.evaluation.calibration import plot_reliability
    from citybrain_ml.optimize.decisions import DecisionOutput

    p = dict(ctx.params)
    target = str(p.get("target_pollutant", "PM2.5"))
    ctx, others, others_history = _one_pollutant_view(ctx, target)
    threshold = float(p.get("threshold", 75.0))
    thresholds = sorted({threshold, *PLAN_THRESHOLDS})
    history, freq = ctx.dataset.values, ctx.dataset.freq
    scored = scored_daily(ctx.scored, history, freq)
    residuals = log_residuals(scored)
    if not residuals:
        raise ValueError(
            "air_alerts: no complete scored day to calibrate on; use an hourly dataset and an "
            "evaluation whose forecasts cover whole days (horizon >= 24)"
        )
    live = ctx.forecast
    if ORIGIN not in live.columns:
        live = live.assign(**{ORIGIN: pd.Timestamp(ctx.train_end)})
    probs = exceedance_probabilities(
        daily_forecast_means(live, history, freq), residuals, thresholds
    )
    alerts = alert_table(
        probs,
        threshold,
        float(p.get("alert_probability", 0.5)),
        _decision_daily_aqi(target, live, history, others, others_history, freq, ctx.train_end),
    )
    plan = response_plan(probs, float(p.get("decide_probability", 0.5)), _rules(p))
    past = rolling_exceedance(
        scored, [threshold], p.get("window_days"), int(p.get("min_residuals", 20))
    )
    first = pd.Timestamp(ctx.scored[ORIGIN].min()) if ORIGIN in ctx.scored else None
    before = history if first is None else history[history[TIMESTAMP] <= first]
    clim = monthly_climatology(daily_actual_means(before), threshold)
    table, metrics = calibration_report(past, threshold, clim, int(p.get("n_bins", 10)))
    out = DecisionOutput(
        tables={"air_alerts": alerts, "air_response_plan": plan},
        metrics={**metrics, "n_alerts": float(alerts["alert"].sum())},
    )
    if table.empty:
        warnings.warn(
            "air_alerts: too few past scored days for a calibration check "
            f"(need {p.get('min_residuals', 20)} residuals per lead day)",
            stacklevel=2,
        )
    else:
        out.tables["air_exceedance_reliability"] = table
        out.figures["exceedance_reliability"] = plot_reliability(
            table, label=f"P(PM2.5 24-h mean > {threshold:g})"
        )
    return out
