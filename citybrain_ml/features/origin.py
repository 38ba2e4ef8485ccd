"""Lag-based features evaluated only at chosen origin rows of a ``(T, N)`` matrix.

:mod:`citybrain_ml.features.lag_transforms` builds every feature at every row, which training
needs. Forecasting needs them at the origins only -- one row per series for ``predict``, a
few hundred rows for a backtest -- so this module computes the same features (same names,
same conventions, NaN skipped the same way) at ``rows`` only, reading for each origin the
``span`` rows that end at it. Cost: ``len(rows) x N x span`` instead of ``T x N`` per
feature, independent of how much history the caller passes.

Values agree with the full-matrix functions up to floating-point rounding (window sums are
accumulated in a different order than pandas' running sums).
"""

from __future__ import annotations

import numpy as np

from citybrain_ml.features.graph import neighbour_mean, neighbour_weights
from citybrain_ml.features.lag_transforms import ROLLING_STATS, ewm_window


def features_at_rows(
    a: np.ndarray,
    rows: np.ndarray,
    lags=(),
    windows=(),
    stats=ROLLING_STATS,
    diffs=(),
    halflives=(),
) -> dict[str, np.ndarray]:
    """``lag_k``, ``roll_<stat>_<w>``, ``diff_k`` and ``ewm_<hl>`` at ``rows`` only.

    Parameters
    ----------
    a : ndarray
        ``(T, N)`` values (NaN = missing).
    rows : ndarray of int
        Origin rows, each in ``0..T-1``.
    lags, windows, stats, diffs, halflives :
        As :func:`~citybrain_ml.features.lag_transforms.lag_features`,
        :func:`~citybrain_ml.features.lag_transforms.rolling_features`,
        :func:`~citybrain_ml.features.lag_transforms.diff_features` and
        :func:`~citybrain_ml.features.lag_transforms.ewm_features`.

    Returns
    -------
    dict
        ``{name: (len(rows), N) array}``, in the order the full-matrix functions give.
    """
    rows = np.asarray(rows, dtype=np.int64)
    out = {f"lag_{int(k)}": _back(a, rows, int(k) - 1) for k in lags}
    for w in windows:
        out.update(_window_stats(a, rows, int(w), stats))
    for k in diffs:
        out[f"diff_{int(k)}"] = _back(a, rows, 0) - _back(a, rows, int(k))
    for hl in halflives:
        out[f"ewm_{hl:g}"] = _ewm(a, rows, float(hl))
    return out


def neighbour_features_at_rows(
    a: np.ndarray,
    rows: np.ndarray,
    edges,
    ids,
    lags=(1,),
    windows=(4,),
    two_hop: bool = False,
    symmetric: bool = True,
) -> dict[str, np.ndarray]:
    """:func:`~citybrain_ml.features.graph.neighbour_features` at ``rows`` only."""
    rows = np.asarray(rows, dtype=np.int64)
    w1 = neighbour_weights(edges, ids, symmetric=symmetric, hops=1)
    out = {f"nbr_lag_{int(k)}": neighbour_mean(_back(a, rows, int(k) - 1), w1) for k in lags}
    for w in windows:
        mean = _window_stats(a, rows, int(w), ("mean",))[f"roll_mean_{int(w)}"]
        out[f"nbr_roll_mean_{int(w)}"] = neighbour_mean(mean, w1)
    if two_hop:
        w2 = neighbour_weights(edges, ids, symmetric=symmetric, hops=2)
        out.update(
            {f"nbr2_lag_{int(k)}": neighbour_mean(_back(a, rows, int(k) - 1), w2) for k in lags}
        )
    return out


# ---------------------------------------------------------------------- helpers
def _back(a: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Rows ``rows - k`` of ``a`` as float, NaN where that is before the first row."""
    src = rows - k
    out = np.full((len(rows), a.shape[1]), np.nan)
    ok = src >= 0
    out[ok] = a[src[ok]]
    return out


def _window_stats(a: np.ndarray, rows: np.ndarray, w: int, stats) -> dict[str, np.ndarray]:
    """Window statistics over ``rows - w + 1 .. rows``, NaN skipped (``std`` needs two)."""
    unknown = set(stats) - set(ROLLING_STATS)
    if unknown:
        raise ValueError(f"unknown rolling stat(s) {sorted(unknown)}; choose from {ROLLING_STATS}")
    shape = (len(rows), a.shape[1])
    total, count = np.zeros(shape), np.zeros(shape)
    low, high = np.full(shape, np.inf), np.full(shape, -np.inf)
    for k in range(w):
        x = _back(a, rows, k)
        seen = ~np.isnan(x)
        total += np.where(seen, x, 0.0)
        count += seen
        if "min" in stats:
            low = np.fmin(low, x)
        if "max" in stats:
            high = np.fmax(high, x)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
    out = {}
    for stat in stats:
        if stat == "mean":
            out[f"roll_mean_{w}"] = mean
        elif stat == "min":
            out[f"roll_min_{w}"] = np.where(count > 0, low, np.nan)
        elif stat == "max":
            out[f"roll_max_{w}"] = np.where(count > 0, high, np.nan)
        else:  # two passes: no cancellation for large levels with small spread
            sq = np.zeros(shape)
            for k in range(w):
                dev = _back(a, rows, k) - mean
                sq += np.where(np.isnan(dev), 0.0, dev * dev)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[f"roll_std_{w}"] = np.where(count > 1, np.sqrt(sq / (count - 1)), np.nan)
    return out


def _ewm(a: np.ndarray, rows: np.ndarray, halflife: float) -> np.ndarray:
    """Truncated exponentially weighted mean ending at each row (as ``ewm_features``)."""
    decay = 0.5 ** (1.0 / halflife)
    shape = (len(rows), a.shape[1])
    num, den = np.zeros(shape), np.zeros(shape)
    for k in range(ewm_window(halflife)):
        x = _back(a, rows, k)
        seen = ~np.isnan(x)
        num += decay**k * np.where(seen, x, 0.0)
        den += decay**k * seen
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)
