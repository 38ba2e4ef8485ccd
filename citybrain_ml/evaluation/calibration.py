"""Calibration of probability forecasts of binary events (e.g. "at least one incident").

Reliability tables and diagrams, the Brier score and skill score, and the expected
calibration error. Bins are equal-width on [0, 1]: bin ``b`` holds ``b/n <= p < (b+1)/n``
and the last bin also holds ``p = 1``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _check(prob, outcome) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(prob, dtype=float).ravel()
    y = np.asarray(outcome, dtype=float).ravel()
    if p.shape != y.shape:
        raise ValueError(f"prob has {p.size} values, outcome {y.size}")
    if p.size == 0:
        raise ValueError("prob and outcome are empty")
    if np.isnan(p).any() or np.isnan(y).any():
        raise ValueError(
            f"prob/outcome contain NaN ({int(np.isnan(p).sum())}/{int(np.isnan(y).sum())}); "
            "drop those pairs first"
        )
    if ((p < 0) | (p > 1)).any():
        raise ValueError(f"prob must lie in [0, 1]; first bad value {p[(p < 0) | (p > 1)][0]}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"outcome must be 0/1; first bad value {y[~np.isin(y, (0.0, 1.0))][0]}")
    return p, y


def _bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    return np.minimum((p * n_bins).astype(int), n_bins - 1)


def reliability_table(prob, outcome, n_bins: int = 10) -> pd.DataFrame:
    """Mean forecast probability and observed frequency per probability bin.

    Parameters
    ----------
    prob : array-like
        Forecast probabilities in [0, 1].
    outcome : array-like
        Observed 0/1 outcomes (bool accepted), same length.
    n_bins : int
        Number of equal-width bins on [0, 1].

    Returns
    -------
    DataFrame
        One row per bin (empty bins included): ``bin, lower, upper, mean_predicted,
        observed_frequency, count``; the means are NaN for empty bins.
    """
    p, y = _check(prob, outcome)
    idx = _bin_index(p, n_bins)
    count = np.bincount(idx, minlength=n_bins)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(count > 0, sum_p / count, np.nan)
        freq = np.where(count > 0, sum_y / count, np.nan)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins),
            "lower": edges[:-1],
            "upper": edges[1:],
            "mean_predicted": mean_p,
            "observed_frequency": freq,
            "count": count,
        }
    )


def brier_score(prob, outcome) -> float:
    """Mean squared difference between forecast probability and 0/1 outcome.

    Parameters
    ----------
    prob, outcome : array-like
        See :func:`reliability_table`.

    Returns
    -------
    float
        Brier score in [0, 1]; lower is better.
    """
    p, y = _check(prob, outcome)
    return float(np.mean((p - y) ** 2))


def brier_skill_score(prob, outcome, reference_prob=None) -> float:
    """Brier skill score ``1 - BS / BS_reference``.

    Parameters
    ----------
    prob, outcome : array-like
        See :func:`reliability_table`.
    reference_prob : float or array-like, optional
        Reference forecast, e.g. climatology (the event rate in the *training* window).
        Default: the event rate of ``outcome`` itself (in-sample climatology, which flatters
        the reference slightly; pass the training rate for an honest comparison).

    Returns
    -------
    float
        1 = perfect, 0 = as good as the reference, < 0 = worse; NaN if the reference is
        itself perfect (BS_reference = 0).
    """
    p, y = _check(prob, outcome)
    ref = np.mean(y) if reference_prob is None else reference_prob
    ref = np.broadcast_to(np.asarray(ref, dtype=float), y.shape)
    ref_score = brier_score(ref, y)
    if ref_score == 0:
        return float("nan")
    return float(1.0 - brier_score(p, y) / ref_score)


def expected_calibration_error(prob, outcome, n_bins: int = 10) -> float:
    """Count-weighted mean gap between mean forecast and observed frequency per bin.

    ``ECE = sum_b (n_b / N) * |mean_predicted_b - observed_frequency_b|``, equal-width bins.

    Parameters
    ----------
    prob, outcome : array-like
        See :func:`reliability_table`.
    n_bins : int
        Number of bins.

    Returns
    -------
    float
        ECE in [0, 1].
    """
    table = reliability_table(prob, outcome, n_bins)
    full = table[table["count"] > 0]
    gaps = (full["mean_predicted"] - full["observed_frequency"]).abs()
    return float((gaps * full["count"]).sum() / full["count"].sum())


def plot_reliability(table: pd.DataFrame, ax=None, label: str | None = None):
    """Reliability diagram of a :func:`reliability_table` (with a count histogram).

    Parameters
    ----------
    table : DataFrame
        Output of :func:`reliability_table`.
    ax : matplotlib Axes, optional
        Axes to draw the curve on; default a new figure with a count panel below.
    label : str, optional
        Legend label of the curve.

    Returns
    -------
    matplotlib.figure.Figure
    """
    # a bare Figure (no pyplot) renders with Agg and leaves the user's backend alone
    from matplotlib.figure import Figure

    need = {"lower", "upper", "mean_predicted", "observed_frequency", "count"}
    if not need.issubset(table.columns):
        raise ValueError(f"table lacks columns {sorted(need - set(table.columns))}")
    full = table[table["count"] > 0]
    if ax is None:
        fig = Figure(figsize=(5, 6))
        ax, ax_count = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        widths = (table["upper"] - table["lower"]).to_numpy()
        ax_count.bar(table["lower"], table["count"], width=widths, align="edge", color="0.6")
        ax_count.set_xlabel("forecast probability")
        ax_count.set_ylabel("count")
    else:
        fig = ax.figure
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.5", label="perfectly calibrated")
    ax.plot(full["mean_predicted"], full["observed_frequency"], marker="o", label=label or "model")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("observed frequency")
    ax.legend(loc="upper left")
    return fig
