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
) -> str:
    """Markdown model card for one model of a job."""
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


def _tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
