"""Diagnostic plots for forecasts and backtests (matplotlib, Agg canvas, no pyplot).

Figures are built as ``matplotlib.figure.Figure`` on an Agg canvas rather than through
``pyplot``: that needs no display, keeps no global figure registry (no leaks in long
jobs) and leaves a notebook's own backend alone. matplotlib is imported inside the
functions so ``import citybrain_ml`` stays light.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import HORIZON_STEP, SERIES_ID, TIMESTAMP, VALUE, YHAT
from citybrain_ml.evaluation.metrics import interval_levels


def _new_figure(nrows: int = 1, ncols: int = 1, size=(8.0, 3.0), **kwargs):
    """A Figure on its own Agg canvas plus its axes (always a flat array)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes.ravel()


def plot_forecast_vs_actual(
    history: pd.DataFrame | None,
    forecast: pd.DataFrame,
    actuals: pd.DataFrame | None = None,
    series_ids: Sequence | None = None,
    max_series: int = 4,
    levels: Sequence[int] | None = None,
):
    """History, forecast path(s), shaded intervals and actuals, one panel per series.

    Parameters
    ----------
    history : DataFrame or None
        Long frame of past values to draw before the forecast (slice it to the tail you
        want to see).
    forecast : DataFrame
        ``series_id, timestamp, yhat`` (+ ``yhat_lo_XX``/``yhat_hi_XX``); with an
        ``origin`` column each origin's path is drawn separately.
    actuals : DataFrame, optional
        Long frame of realised values; drawn over the forecast period only.
    series_ids : sequence, optional
        Series to draw; default the first ``max_series`` in ``forecast``.
    max_series : int
        Panel cap when ``series_ids`` is not given.
    levels : sequence of int, optional
        Interval levels to shade; default every level present. Levels without
        ``yhat_lo_XX``/``yhat_hi_XX`` columns are skipped.

    Returns
    -------
    matplotlib.figure.Figure
    """
    ids = (
        list(series_ids)
        if series_ids is not None
        else list(pd.unique(forecast[SERIES_ID]))[:max_series]
    )
    if not ids:
        raise ValueError("forecast frame is empty: nothing to plot")
    present = interval_levels(forecast.columns)
    # a diagnostic plot should not fail for want of a band: draw the requested ones present
    levels = present if levels is None else [lv for lv in levels if int(lv) in present]
    fig, axes = _new_figure(len(ids), 1)
    for ax, sid in zip(axes, ids, strict=True):
        fc = forecast[forecast[SERIES_ID] == sid]
        if fc.empty:
            raise ValueError(f"series {sid!r} has no rows in the forecast frame")
        if history is not None:
            hist = history[history[SERIES_ID] == sid]
            ax.plot(hist[TIMESTAMP], hist[VALUE], color="0.3", lw=1, label="history")
        _draw_paths(ax, fc, levels)
        if actuals is not None:
            act = actuals[actuals[SERIES_ID] == sid]
            act = act[act[TIMESTAMP].between(fc[TIMESTAMP].min(), fc[TIMESTAMP].max())]
            ax.plot(act[TIMESTAMP], act[VALUE], "k.", ms=3, label="actual")
        ax.set_title(str(sid), fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="upper left")
    return fig


def _draw_paths(ax, fc: pd.DataFrame, levels: list[int]) -> None:
    paths = fc.groupby("origin", sort=True) if "origin" in fc.columns else [(None, fc)]
    for i, (_, path) in enumerate(paths):
        path = path.sort_values(TIMESTAMP)
        # wider (higher-level) bands lighter, drawn first so narrower ones sit on top
        for level in sorted(levels, reverse=True):
            ax.fill_between(
                path[TIMESTAMP],
                path[f"yhat_lo_{level}"],
                path[f"yhat_hi_{level}"],
                color="tab:blue",
                alpha=0.15 + 0.15 * (level == min(levels)),
                lw=0,
                label=f"{level}% interval" if i == 0 else None,
            )
        ax.plot(
            path[TIMESTAMP],
            path[YHAT],
            color="tab:blue",
            lw=1.2,
            label="forecast" if i == 0 else None,
        )


def plot_metrics_by_horizon(metrics_table: pd.DataFrame, metric: str, hue: str | None = None):
    """A metric against ``horizon_step``, one line per value of ``hue`` (e.g. ``"model"``).

    Parameters
    ----------
    metrics_table : DataFrame
        Output of :func:`~citybrain_ml.evaluation.evaluate` (possibly several concatenated
        with a ``hue`` column).
    metric : str
        Column to plot, e.g. ``"mae"`` or ``"coverage_90"``.
    hue : str, optional
        Column that tells lines apart.

    Returns
    -------
    matplotlib.figure.Figure
    """
    for col in (HORIZON_STEP, metric, hue):
        if col is not None and col not in metrics_table.columns:
            raise ValueError(
                f"metrics table has no column {col!r}; columns are {list(metrics_table.columns)}"
            )
    fig, (ax,) = _new_figure(size=(6.0, 3.5))
    groups = metrics_table.groupby(hue, sort=True) if hue else [(metric, metrics_table)]
    for name, table in groups:
        table = table.sort_values(HORIZON_STEP)
        ax.plot(table[HORIZON_STEP], table[metric], marker="o", ms=3, label=str(name))
    ax.set_xlabel("horizon step")
    ax.set_ylabel(metric)
    if hue:
        ax.legend(fontsize=8)
    return fig


def plot_residuals(forecasts_with_actuals: pd.DataFrame):
    """Residual (``value - yhat``) histogram and residual spread per horizon step.

    Parameters
    ----------
    forecasts_with_actuals : DataFrame
        Forecast frame with a ``value`` column (e.g. ``BacktestResult.forecasts``);
        rows with a missing target or forecast are skipped.

    Returns
    -------
    matplotlib.figure.Figure
    """
    for col in (VALUE, YHAT):
        if col not in forecasts_with_actuals.columns:
            raise ValueError(f"frame lacks column {col!r}; pass forecasts joined with actuals")
    df = forecasts_with_actuals.dropna(subset=[VALUE, YHAT])
    if df.empty:
        raise ValueError("no row has both a forecast and an actual value")
    resid = (df[VALUE] - df[YHAT]).to_numpy(dtype=float)
    fig, (left, right) = _new_figure(1, 2, size=(5.0, 3.5))
    left.hist(resid, bins=min(50, max(10, len(resid) // 20)), color="tab:blue", alpha=0.8)
    left.axvline(0, color="k", lw=0.8)
    left.set_xlabel("residual (actual - forecast)")
    left.set_ylabel("count")
    if HORIZON_STEP in df.columns:
        steps = np.sort(df[HORIZON_STEP].unique())
        by_step = [resid[(df[HORIZON_STEP] == h).to_numpy()] for h in steps]
        right.boxplot(by_step, positions=steps, showfliers=False)
        right.set_xlabel("horizon step")
    else:
        right.scatter(df[YHAT], resid, s=4, alpha=0.4)
        right.set_xlabel("forecast")
    right.axhline(0, color="k", lw=0.8)
    right.set_ylabel("residual")
    return fig


def plot_coverage(metrics_table: pd.DataFrame):
    """Empirical interval coverage per horizon step against each nominal level.

    Parameters
    ----------
    metrics_table : DataFrame
        Output of :func:`~citybrain_ml.evaluation.evaluate` with ``coverage_XX`` columns.

    Returns
    -------
    matplotlib.figure.Figure
    """
    levels = sorted(
        int(c.removeprefix("coverage_")) for c in metrics_table if str(c).startswith("coverage_")
    )
    if not levels or HORIZON_STEP not in metrics_table.columns:
        raise ValueError(
            "metrics table needs horizon_step and coverage_XX columns (score with levels)"
        )
    fig, (ax,) = _new_figure(size=(6.0, 3.5))
    table = metrics_table.sort_values(HORIZON_STEP)
    for level in levels:
        line = ax.plot(
            table[HORIZON_STEP], table[f"coverage_{level}"], marker="o", ms=3, label=f"{level}%"
        )
        ax.axhline(level, color=line[0].get_color(), ls="--", lw=0.8)
    ax.set_xlabel("horizon step")
    ax.set_ylabel("empirical coverage (%)")
    ax.legend(fontsize=8, title="nominal")
    return fig


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` atomically (temporary file in the same folder, then rename).

    The format follows the suffix (``.png``, ``.svg``, ``.pdf``); parent folders are
    created. A reader never sees a half-written file.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if not fmt:
        raise ValueError(f"cannot tell the image format of {path}: give it a suffix such as .png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format=fmt, dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
