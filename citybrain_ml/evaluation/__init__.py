"""Metrics, backtests and diagnostic plots.

Plots import matplotlib lazily, so importing this package stays light.
"""

from citybrain_ml.evaluation.backtest import BacktestResult, backtest, evaluate_protocol
from citybrain_ml.evaluation.metrics import (
    DEFAULT_METRICS,
    POINT_METRICS,
    bias,
    evaluate,
    interval_coverage,
    interval_levels,
    interval_width,
    mae,
    mape,
    masked_mae,
    masked_mape,
    masked_rmse,
    pinball_loss,
    poisson_deviance,
    rmse,
    smape,
    summarise,
    valid_mask,
    winkler_score,
)
from citybrain_ml.evaluation.plots import (
    plot_coverage,
    plot_forecast_vs_actual,
    plot_metrics_by_horizon,
    plot_residuals,
    save_figure,
)

__all__ = [
    "DEFAULT_METRICS",
    "POINT_METRICS",
    "BacktestResult",
    "backtest",
    "bias",
    "evaluate",
    "evaluate_protocol",
    "interval_coverage",
    "interval_levels",
    "interval_width",
    "mae",
    "mape",
    "masked_mae",
    "masked_mape",
    "masked_rmse",
    "pinball_loss",
    "plot_coverage",
    "plot_forecast_vs_actual",
    "plot_metrics_by_horizon",
    "plot_residuals",
    "poisson_deviance",
    "rmse",
    "save_figure",
    "smape",
    "summarise",
    "valid_mask",
    "winkler_score",
]
