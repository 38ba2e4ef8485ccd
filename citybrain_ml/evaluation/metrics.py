"""Forecast accuracy metrics: array-level functions plus a frame-level ``evaluate``.

Point metrics come in two flavours:

* ``mae, rmse, mape, smape`` -- strict: they raise on NaN instead of silently
  returning NaN, so a gap in the data never hides inside an average.
* ``masked_mae, masked_rmse, masked_mape`` -- ignore targets that are NaN or equal to a
  ``null_value`` (e.g. ``0`` where a loop detector reported nothing).

The masked convention is the one of the reference METR-LA / PEMS-BAY evaluation code
(DCRNN ``lib/metrics.py``, Graph WaveNet ``util.py``, BasicTS/STID ``masked_mae``):
there the mask is ``labels != null_val`` (or ``~isnan(labels)`` when ``null_val`` is NaN),
it is rescaled by its mean and masked-out terms are zeroed, which equals the plain mean
of the error over the valid targets only. Their METR-LA numbers are computed with
``null_val=0`` for MAE, RMSE *and* MAPE, so zero readings are excluded from all three,
and RMSE is the square root of the mean squared error pooled over every valid entry of a
horizon step (not a mean of per-series RMSEs). Ours give the same numbers, with three
deliberate differences: (1) MAPE here always skips zero targets, whatever ``null_value``
(a percentage of zero is undefined; the reference code gets the same effect only when
``null_val=0``); (2) a NaN *prediction* at a valid target raises, where the reference code
zeroes it; (3) when no target is valid the result is NaN, where the reference returns 0.
Percentages (MAPE, sMAPE, coverage) are returned in percent, as papers report them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import HORIZON_STEP, SERIES_ID, TIMESTAMP, VALUE, YHAT

DEFAULT_METRICS = ("mae", "rmse", "mape", "smape")
_INTERVAL_RE = re.compile(r"^yhat_(lo|hi)_(\d+)$")


# ---------------------------------------------------------------------- input checks
def _as_float(name: str, values) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError(f"{name} is empty: need at least one value to score")
    return arr


def _pair(y_true, y_pred, func: str, names=("y_true", "y_pred")) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = _as_float(names[0], y_true), _as_float(names[1], y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"{func}: {names[0]} has shape {y_true.shape} but {names[1]} has shape {y_pred.shape}"
        )
    return y_true, y_pred


def _no_nan(func: str, hint: str, **arrays: np.ndarray) -> None:
    for name, arr in arrays.items():
        bad = np.isnan(arr)
        if bad.any():
            first = np.unravel_index(np.argmax(bad), arr.shape)
            where = first[0] if len(first) == 1 else first
            raise ValueError(
                f"{func}: {name} has {int(bad.sum())} NaN value(s) (first at index {where}); {hint}"
            )


def _strict(y_true, y_pred, func: str) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = _pair(y_true, y_pred, func)
    hint = "drop missing targets first"
    if func in ("mae", "rmse", "mape"):
        hint += f" or use masked_{func}() to ignore them"
    _no_nan(func, hint, y_true=y_true, y_pred=y_pred)
    return y_true, y_pred


# ---------------------------------------------------------------------- point metrics
def mae(y_true, y_pred) -> float:
    """Mean absolute error.

    Parameters
    ----------
    y_true, y_pred : array-like of the same shape
        Targets and forecasts; NaN in either raises ``ValueError``.

    Returns
    -------
    float
    """
    y_true, y_pred = _strict(y_true, y_pred, "mae")
    return float(np.mean(np.abs(y_pred - y_true)))


def rmse(y_true, y_pred) -> float:
    """Root mean squared error (NaN raises; see :func:`mae`)."""
    y_true, y_pred = _strict(y_true, y_pred, "rmse")
    return float(np.sqrt(np.mean((y_pred - y_true) ** 2)))


def mape(y_true, y_pred) -> float:
    """Mean absolute percentage error, in percent.

    Raises ``ValueError`` on NaN or on a zero target (the ratio is undefined there); use
    :func:`masked_mape`, which skips zero targets like the METR-LA reference code.
    """
    y_true, y_pred = _strict(y_true, y_pred, "mape")
    zeros = y_true == 0
    if zeros.any():
        raise ValueError(
            f"mape: y_true has {int(zeros.sum())} zero value(s) (first at index "
            f"{int(np.argmax(zeros.ravel()))}); MAPE is undefined there -- use masked_mape()"
        )
    return float(100.0 * np.mean(np.abs((y_pred - y_true) / y_true)))


def smape(y_true, y_pred) -> float:
    """Symmetric MAPE in percent, ``100 * mean(2|y - f| / (|y| + |f|))``, range [0, 200].

    A point where both target and forecast are zero counts as a perfect forecast (0).
    NaN raises ``ValueError``.
    """
    y_true, y_pred = _strict(y_true, y_pred, "smape")
    denom = np.abs(y_true) + np.abs(y_pred)
    num = 2.0 * np.abs(y_pred - y_true)
    ratio = np.divide(num, denom, out=np.zeros_like(num), where=denom > 0)
    return float(100.0 * np.mean(ratio))


def bias(y_true, y_pred) -> float:
    """Mean error ``mean(y_pred - y_true)``: positive means over-forecasting (NaN raises)."""
    y_true, y_pred = _strict(y_true, y_pred, "bias")
    return float(np.mean(y_pred - y_true))


# ---------------------------------------------------------------------- masked metrics
def valid_mask(y_true, null_value: float | None = np.nan) -> np.ndarray:
    """Boolean mask of targets to score: not NaN and not equal to ``null_value``.

    Parameters
    ----------
    y_true : array-like
        Targets.
    null_value : float, optional
        Sentinel meaning "no reading" (e.g. ``0.0`` for METR-LA). NaN or None: only NaN
        targets are masked.

    Returns
    -------
    ndarray of bool, same shape as ``y_true``.
    """
    y_true = np.asarray(y_true, dtype=float)
    mask = ~np.isnan(y_true)
    if null_value is not None and not np.isnan(null_value):
        mask &= y_true != null_value
    return mask


def _masked_errors(y_true, y_pred, null_value, func: str) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = _pair(y_true, y_pred, func)
    mask = valid_mask(y_true, null_value)
    y_true, y_pred = y_true[mask], y_pred[mask]
    _no_nan(func, "every valid target needs a forecast", y_pred=y_pred)
    return y_true, y_pred


def masked_mae(y_true, y_pred, null_value: float | None = np.nan) -> float:
    """MAE over valid targets only (not NaN, not ``null_value``); NaN if none is valid.

    Parameters
    ----------
    y_true, y_pred : array-like of the same shape
    null_value : float, optional
        Sentinel for a missing reading, e.g. ``0.0`` on METR-LA / PEMS-BAY.

    Returns
    -------
    float
    """
    y_true, y_pred = _masked_errors(y_true, y_pred, null_value, "masked_mae")
    return float(np.mean(np.abs(y_pred - y_true))) if y_true.size else float("nan")


def masked_rmse(y_true, y_pred, null_value: float | None = np.nan) -> float:
    """RMSE over valid targets only, pooled over all entries (see :func:`masked_mae`)."""
    y_true, y_pred = _masked_errors(y_true, y_pred, null_value, "masked_rmse")
    return float(np.sqrt(np.mean((y_pred - y_true) ** 2))) if y_true.size else float("nan")


def masked_mape(y_true, y_pred, null_value: float | None = np.nan) -> float:
    """MAPE in percent over valid, non-zero targets (zero targets are always skipped)."""
    y_true, y_pred = _pair(y_true, y_pred, "masked_mape")
    keep = valid_mask(y_true, null_value) & (y_true != 0)
    y_true, y_pred = y_true[keep], y_pred[keep]
    _no_nan("masked_mape", "every valid target needs a forecast", y_pred=y_pred)
    if not y_true.size:
        return float("nan")
    return float(100.0 * np.mean(np.abs((y_pred - y_true) / y_true)))


# ---------------------------------------------------------------------- probabilistic
def pinball_loss(y_true, q_pred, q: float) -> float:
    """Mean pinball (quantile) loss of forecasts of the ``q`` quantile.

    ``max(q * (y - f), (q - 1) * (y - f))`` averaged over points; NaN raises.

    Parameters
    ----------
    y_true, q_pred : array-like of the same shape
    q : float in (0, 1)
    """
    if not 0 < q < 1:
        raise ValueError(f"pinball_loss: quantile q must be in (0, 1), got {q}")
    y_true, q_pred = _pair(y_true, q_pred, "pinball_loss", ("y_true", "q_pred"))
    _no_nan("pinball_loss", "drop missing targets first", y_true=y_true, q_pred=q_pred)
    diff = y_true - q_pred
    return float(np.mean(np.maximum(q * diff, (q - 1) * diff)))


def _interval(lo, hi, func: str) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = _pair(lo, hi, func, ("lo", "hi"))
    _no_nan(func, "interval bounds must be finite", lo=lo, hi=hi)
    crossed = lo > hi
    if crossed.any():
        raise ValueError(
            f"{func}: lo > hi at {int(crossed.sum())} point(s) (first at index "
            f"{int(np.argmax(crossed.ravel()))}); bounds are swapped or the interval is broken"
        )
    return lo, hi


def interval_coverage(y_true, lo, hi) -> float:
    """Share of targets inside ``[lo, hi]`` (bounds included), in percent."""
    lo, hi = _interval(lo, hi, "interval_coverage")
    y_true, lo = _pair(y_true, lo, "interval_coverage", ("y_true", "lo"))
    _no_nan("interval_coverage", "drop missing targets first", y_true=y_true)
    return float(100.0 * np.mean((y_true >= lo) & (y_true <= hi)))


def interval_width(lo, hi) -> float:
    """Mean width ``hi - lo`` of the intervals."""
    lo, hi = _interval(lo, hi, "interval_width")
    return float(np.mean(hi - lo))


def winkler_score(y_true, lo, hi, level: float) -> float:
    """Mean Winkler (interval) score of central ``level``% intervals; lower is better.

    Width plus ``2 / alpha`` times the distance by which the target falls outside,
    with ``alpha = 1 - level / 100`` (Winkler 1972; Gneiting & Raftery 2007, eq. 43).
    """
    if not 0 < level < 100:
        raise ValueError(f"winkler_score: level must be in (0, 100) percent, got {level}")
    lo, hi = _interval(lo, hi, "winkler_score")
    y_true, lo = _pair(y_true, lo, "winkler_score", ("y_true", "lo"))
    _no_nan("winkler_score", "drop missing targets first", y_true=y_true)
    alpha = 1.0 - level / 100.0
    below = np.clip(lo - y_true, 0, None)
    above = np.clip(y_true - hi, 0, None)
    return float(np.mean((hi - lo) + (2.0 / alpha) * (below + above)))


def poisson_deviance(y_true, mu) -> float:
    """Mean Poisson deviance ``2 * mean(y log(y / mu) - (y - mu))`` for count targets.

    ``y log(y / mu)`` is taken as 0 where ``y == 0`` (its limit), so zero counts score
    ``2 * mu``. Targets must be >= 0 and predicted means strictly > 0.
    """
    y_true, mu = _pair(y_true, mu, "poisson_deviance", ("y_true", "mu"))
    _no_nan("poisson_deviance", "drop missing targets first", y_true=y_true, mu=mu)
    if (mu <= 0).any():
        bad = mu <= 0
        raise ValueError(
            f"poisson_deviance: mu must be > 0, got {int(bad.sum())} value(s) <= 0 (first "
            f"{mu.ravel()[np.argmax(bad.ravel())]!r}); clip predicted rates, e.g. to 1e-9"
        )
    if (y_true < 0).any():
        raise ValueError("poisson_deviance: y_true holds negative values; counts must be >= 0")
    pos = y_true > 0
    ylogy = np.zeros_like(y_true)
    ylogy[pos] = y_true[pos] * np.log(y_true[pos] / mu[pos])
    return float(2.0 * np.mean(ylogy - (y_true - mu)))


# ---------------------------------------------------------------------- frame level
#: point metrics ``evaluate`` knows by name; each takes (y_true, y_pred) with no NaN
POINT_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "mae": mae,
    "rmse": rmse,
    # zero targets are skipped rather than raising (METR-LA convention, see module doc)
    "mape": lambda y, f: masked_mape(y, f, null_value=np.nan),
    "smape": smape,
    "bias": bias,
    "poisson_deviance": poisson_deviance,
}


def interval_levels(columns: Iterable[str]) -> list[int]:
    """Levels (percent) that have both ``yhat_lo_XX`` and ``yhat_hi_XX`` columns."""
    found: dict[int, set[str]] = {}
    for col in columns:
        match = _INTERVAL_RE.match(str(col))
        if match:
            found.setdefault(int(match.group(2)), set()).add(match.group(1))
    return sorted(level for level, sides in found.items() if sides == {"lo", "hi"})


def evaluate(
    forecast: pd.DataFrame,
    actuals: pd.DataFrame | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    levels: Sequence[int] | None = None,
    by: Sequence[str] = (HORIZON_STEP,),
    null_value: float | None = None,
    missing_forecast: str = "raise",
) -> pd.DataFrame:
    """Score a forecast frame against actuals, per group.

    Parameters
    ----------
    forecast : DataFrame
        ``series_id, timestamp, horizon_step, yhat`` (+ ``yhat_lo_XX``/``yhat_hi_XX``,
        ``origin``, or any column to group by).
    actuals : DataFrame, optional
        Long frame ``series_id, timestamp, value``. When omitted, ``forecast`` must already
        carry a ``value`` column (as :class:`~citybrain_ml.evaluation.BacktestResult`
        forecasts do).
    metrics : sequence of str
        Names from :data:`POINT_METRICS` (``mae, rmse, mape, smape, bias,
        poisson_deviance``) plus ``"winkler"`` for a Winkler score per interval level.
    levels : sequence of int, optional
        Interval levels to score; default every level whose lo/hi columns are present.
    by : sequence of str
        Group columns; ``()`` gives one overall row, ``("series_id",)`` one per series.
    null_value : float, optional
        Target value meaning "missing" (e.g. ``0`` on METR-LA); such targets are not
        scored, like NaN targets. MAPE always skips zero targets.
    missing_forecast : {"raise", "drop"}
        What to do with a NaN forecast at a valid target.

    Returns
    -------
    DataFrame
        One row per group: the ``by`` columns, ``n`` (points scored), each metric, then
        ``coverage_XX`` (percent) and ``width_XX`` (and ``winkler_XX``) per level.
    """
    metrics = list(metrics)
    unknown = [m for m in metrics if m not in POINT_METRICS and m != "winkler"]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {[*POINT_METRICS, 'winkler']}")
    scored = _join_actuals(forecast, actuals)
    by = list(by)
    missing = [c for c in by if c not in scored.columns]
    if missing:
        raise ValueError(f"cannot group by {missing}: forecast columns are {list(scored.columns)}")
    levels = interval_levels(scored.columns) if levels is None else [int(x) for x in levels]
    scored = scored[valid_mask(scored[VALUE].to_numpy(dtype=float), null_value)]
    scored = _handle_missing_forecasts(scored, levels, missing_forecast)
    if scored.empty:
        raise ValueError("no forecast row has a valid (non-missing) target to score against")
    groups = scored.groupby(by, sort=True) if by else [((), scored)]
    rows = []
    for keys, group in groups:
        keys = keys if isinstance(keys, tuple) else (keys,)
        rows.append({**dict(zip(by, keys, strict=True)), **_score(group, metrics, levels)})
    return pd.DataFrame(rows)


def summarise(
    forecast: pd.DataFrame,
    actuals: pd.DataFrame | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    levels: Sequence[int] | None = None,
    null_value: float | None = None,
    missing_forecast: str = "raise",
) -> pd.DataFrame:
    """One overall row: every point pooled (all series, steps and origins).

    Same parameters as :func:`evaluate` without ``by``.
    """
    return evaluate(forecast, actuals, metrics, levels, (), null_value, missing_forecast)


def _join_actuals(forecast: pd.DataFrame, actuals: pd.DataFrame | None) -> pd.DataFrame:
    need = [SERIES_ID, TIMESTAMP, YHAT]
    lacking = [c for c in need if c not in forecast.columns]
    if lacking:
        raise ValueError(
            f"forecast frame lacks column(s) {lacking}; expected {need} (+ horizon_step)"
        )
    if actuals is None:
        if VALUE not in forecast.columns:
            raise ValueError("no actuals given and the forecast frame has no 'value' column")
        return forecast.reset_index(drop=True)
    lacking = [c for c in (SERIES_ID, TIMESTAMP, VALUE) if c not in actuals.columns]
    if lacking:
        raise ValueError(
            f"actuals frame lacks column(s) {lacking}; expected series_id, timestamp, value"
        )
    truth = actuals[[SERIES_ID, TIMESTAMP, VALUE]]
    if not pd.api.types.is_datetime64_any_dtype(truth[TIMESTAMP]):
        truth = truth.assign(**{TIMESTAMP: pd.to_datetime(truth[TIMESTAMP])})
    dup = truth.duplicated([SERIES_ID, TIMESTAMP])
    if dup.any():
        row = truth[dup].iloc[0]
        raise ValueError(
            f"actuals hold {int(dup.sum())} duplicate (series_id, timestamp) row(s), first "
            f"({row[SERIES_ID]!r}, {row[TIMESTAMP]}); aggregate them before scoring"
        )
    # a forecast with no matching actual row gets NaN and is then skipped as missing
    return forecast.drop(columns=[VALUE], errors="ignore").merge(
        truth, on=[SERIES_ID, TIMESTAMP], how="left"
    )


def _handle_missing_forecasts(scored: pd.DataFrame, levels: list[int], how: str) -> pd.DataFrame:
    if how not in ("raise", "drop"):
        raise ValueError(f"missing_forecast must be 'raise' or 'drop', got {how!r}")
    cols = [YHAT]
    for level in levels:
        cols += [f"yhat_lo_{level}", f"yhat_hi_{level}"]
    absent = [c for c in cols if c not in scored.columns]
    if absent:
        raise ValueError(f"forecast frame lacks interval column(s) {absent} for levels {levels}")
    bad = scored[cols].isna().any(axis=1)
    if not bad.any():
        return scored
    if how == "drop":
        return scored[~bad]
    row = scored[bad].iloc[0]
    step = f", horizon_step {row[HORIZON_STEP]}" if HORIZON_STEP in scored.columns else ""
    raise ValueError(
        f"{int(bad.sum())} forecast row(s) have NaN in {cols} where the target is known, first "
        f"series {row[SERIES_ID]!r} at {row[TIMESTAMP]}{step}; pass missing_forecast='drop' "
        "to skip them"
    )


def _score(group: pd.DataFrame, metrics: list[str], levels: list[int]) -> dict:
    y = group[VALUE].to_numpy(dtype=float)
    f = group[YHAT].to_numpy(dtype=float)
    row: dict = {"n": len(group)}
    for name in metrics:
        if name != "winkler":
            row[name] = POINT_METRICS[name](y, f)
    for level in levels:
        lo = group[f"yhat_lo_{level}"].to_numpy(dtype=float)
        hi = group[f"yhat_hi_{level}"].to_numpy(dtype=float)
        row[f"coverage_{level}"] = interval_coverage(y, lo, hi)
        row[f"width_{level}"] = interval_width(lo, hi)
        if "winkler" in metrics:
            row[f"winkler_{level}"] = winkler_score(y, lo, hi, level)
    return row
