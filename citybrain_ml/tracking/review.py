"""What a reviewer needs in the MLflow UI, logged with every trained model.

Residual and coverage plots, feature importance (gradient-boosted models), and a short
model card in markdown: data and lineage, evaluation split, metrics against the other models
of the same job (the baselines), and known limitations.
"""

from __future__ import annotations

import pandas as pd

LIMITATIONS = {
    "last_value": "Persistence: no seasonality; errors grow quickly with the horizon.",
    "seasonal_naive": "Repeats one season ago; blind to trends, holidays and incidents.",
    "historical_average": "Average profile per time slot; ignores the current state of the series.",
    "lightgbm": "Direct per-step boosters: horizon fixed at fit time; unseen regimes (new roads, "
    "closures) extrapolate poorly; covariates used at the origin unless future values are given.",
    "sarimax": "Per-series linear model; long seasonalities approximated; slow for many series.",
    "ets": "Per-series exponential smoothing; no cross-series information.",
    "var": "Joint linear model for a small sensor set only.",
    "stid": "Node embeddings tie the model to the training sensors: new sensors need retraining.",
    "ensemble": "Average of the members chosen on one validation tail; inherits their limits.",
    "glm_poisson": "Log-linear rates from recent, neighbour and calendar terms; variance = mean "
    "(overdispersed counts get intervals that are too narrow).",
    "glm_negbin": "As the Poisson GLM with a fitted NB2 dispersion; the mean forecast is about the "
    "same, the dispersion feeds P(at least one).",
    "kde_hotspot": "Spatially smoothed past rates: ranks cells by where events were, not by what "
    "changes next; a wide bandwidth blurs neighbouring cells with very different levels.",
}
#: per-horizon columns left out of count models' cards: undefined or meaningless at zero counts
PERCENT_METRICS = ("mape", "smape", "masked_mape")
#: count metrics shown in a card, in this order, with their labels
COUNT_METRICS = {
    "poisson_deviance": "Poisson deviance (mean)",
    "mae": "MAE (events per cell and period)",
    "recall_at_k": "Recall@K (K = cells with an event)",
    "map_at_k": "MAP@K",
    "pai_1pct": "PAI at 1% of the area",
    "pai_5pct": "PAI at 5% of the area",
    "pai_10pct": "PAI at 10% of the area",
    "brier_p_at_least_one": "Brier score of P(at least one)",
}


def log_review_artifacts(
    model, model_type: str, metrics: pd.DataFrame, scored: pd.DataFrame
) -> None:
    """Log residual/coverage plots and (for a fitted GBM) feature importance to the active run."""
    import mlflow

    from citybrain_ml.evaluation.plots import plot_coverage, plot_residuals

    if {"value", "yhat"} <= set(scored.columns) and scored["value"].notna().any():
        mlflow.log_figure(
            plot_residuals(scored.dropna(subset=["value", "yhat"])), "plots/residuals.png"
        )
    if any(c.startswith("coverage_") for c in metrics.columns):
        mlflow.log_figure(plot_coverage(metrics), "plots/interval_coverage.png")
    if hasattr(model, "feature_importance") and hasattr(model, "history_"):
        imp = model.feature_importance()
        mlflow.log_text(imp.to_csv(index=False), "feature_importance.csv")
        mlflow.log_figure(_importance_figure(imp), "plots/feature_importance.png")


def _importance_figure(imp: pd.DataFrame, top: int = 20):
    from matplotlib.figure import Figure

    top_rows = imp.sort_values("gain", ascending=False).head(top).iloc[::-1]
    fig = Figure(figsize=(7, 0.3 * len(top_rows) + 1))
    ax = fig.add_subplot()
    ax.barh(top_rows["feature"].astype(str), top_rows["gain"])
    ax.set_xlabel("total gain (mean over boosters)")
    ax.set_title("Feature importance")
    fig.tight_layout()
    return fig


def model_card(
    label: str,
    model_type: str,
    params: dict,
    lineage: dict,
    evaluation: dict,
    metrics: pd.DataFrame,
    leaderboard: pd.DataFrame,
    metric: str,
    count_metrics: tuple | None = None,
) -> str:
    """Markdown model card for one model of a job.

    Parameters
    ----------
    label, model_type : str
        Run label and model registry name.
    params : dict
        Model parameters.
    lineage : dict
        Dataset fingerprint plus ``dataset_name`` and ``dataset_source``.
    evaluation : dict
        The job's evaluation config.
    metrics : DataFrame
        Per-horizon metrics.
    leaderboard : DataFrame
        All models of the job.
    metric : str
        The selection metric.
    count_metrics : (dict, ScoringMask), optional
        From :func:`citybrain_ml.optimize.hotspots.job_count_metrics`: for count models the
        card shows these (deviance, MAE, Recall/PAI on the mask) and drops MAPE/sMAPE.

    Returns
    -------
    str
    """
    if count_metrics is not None:
        metrics = metrics.drop(columns=[c for c in PERCENT_METRICS if c in metrics.columns])
    table = (
        metrics.round(4).to_markdown(index=False)
        if _tabulate()
        else metrics.round(4).to_string(index=False)
    )
    board = leaderboard.round(4)
    board_md = board.to_markdown(index=False) if _tabulate() else board.to_string(index=False)
    shown = {k: v for k, v in params.items() if not isinstance(v, pd.DataFrame)}
    return "\n".join(
        [
            f"# Model card: {label} ({model_type})",
            "",
            "## Data",
            f"- dataset: {lineage.get('dataset_name', '?')} ({lineage.get('dataset_source', '')})",
            f"- rows: {lineage['dataset_rows']}, series: {lineage['dataset_series']}, "
            f"span: {lineage['dataset_start']} .. {lineage['dataset_end']}",
            f"- content sha256: `{lineage['dataset_sha256']}`",
            "",
            "## Evaluation",
            f"- method: {evaluation}",
            f"- selection metric: {metric} (mean over horizon steps)",
            "",
            "### Metrics per horizon step",
            table,
            "",
            *_count_section(count_metrics),
            "### Against the other models of this job (baselines included)",
            board_md,
            "",
            "## Parameters",
            *[f"- `{k}`: `{v!r}`" for k, v in shown.items()],
            "",
            "## Limitations",
            f"- {LIMITATIONS.get(model_type, 'See the model docstring.')}",
            "- Intervals are split-conformal on a recent tail: coverage holds on average over "
            "series and times like the calibration tail, not for every series or regime.",
            "",
        ]
    )


def _count_section(count_metrics: tuple | None) -> list[str]:
    """Markdown lines with the count metrics and the mask they were computed on."""
    if count_metrics is None:
        return []
    values, mask = count_metrics
    rows = [
        f"| {label} | {values[key]:.4g} |" for key, label in COUNT_METRICS.items() if key in values
    ]
    return [
        "### Count metrics (first horizon step)",
        f"Scored on the mask {mask.description}. MAPE/sMAPE are left out: undefined or "
        "meaningless for zero-heavy counts.",
        "",
        "| metric | value |",
        "|---|---|",
        *rows,
        "",
    ]


def _tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
