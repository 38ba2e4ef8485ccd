"""The batch jobs behind the CLI: train (+ evaluate + forecast) and backtest.

Each job: validate config and tracking store first (fail before any work), load and
validate the data, then one MLflow run per model nested under one run for the job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from citybrain_ml.config import JobConfig
from citybrain_ml.data.covariates import forecast_mode, read_future_covariates
from citybrain_ml.data.io import atomic_write_frame
from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, SeriesDataset
from citybrain_ml.models import make_model, model_class
from citybrain_ml.models.base import Forecaster


@dataclass
class ModelOutcome:
    """What one model produced in a job."""

    label: str
    model: Forecaster
    metrics: pd.DataFrame
    score: float
    scored: pd.DataFrame | None = None
    forecast: pd.DataFrame | None = None
    run_id: str | None = None
    fit_seconds: float = 0.0


@dataclass
class JobResult:
    name: str
    parent_run_id: str
    outcomes: list[ModelOutcome] = field(default_factory=list)
    best: str | None = None
    output_files: list[Path] = field(default_factory=list)

    def leaderboard(self) -> pd.DataFrame:
        """Models by evaluation score, with why each was kept or not (and what auto chose)."""
        rows = [
            {"model": o.label, "score": o.score, "fit_seconds": o.fit_seconds}
            for o in self.outcomes
        ]
        board = pd.DataFrame(rows).sort_values("score").reset_index(drop=True)
        best = board["score"].iloc[0] if len(board) else float("nan")
        notes = {o.label: _auto_note(o.model) for o in self.outcomes}
        board["why"] = [
            ("best score" if s == best else f"score {s / best - 1:+.1%} vs best" if best else "")
            + notes.get(m, "")
            for m, s in zip(board["model"], board["score"], strict=True)
        ]
        return board


def _auto_note(model) -> str:
    """'; auto chose h1-2 seasonal_naive_day, ...' for an auto model, '' otherwise."""
    selected = getattr(model, "selected_", None)
    if not selected:
        return ""
    from citybrain_ml.models.auto import _ranges

    by_model: dict[str, list[int]] = {}
    for h, label in selected.items():
        by_model.setdefault(label, []).append(int(h))
    chose = ", ".join(f"h{_ranges(sorted(v))} {k}" for k, v in by_model.items())
    return f"; auto chose {chose} on validation days {model.validation_.get('days')}"


def load_job_data(cfg: JobConfig) -> SeriesDataset:
    """Load, filter and validate the dataset a job config names."""
    from citybrain_ml.data import load_dataset, validate_dataset

    d = cfg.data
    ds = load_dataset(d.dataset, root=d.root, **d.options)
    if d.series:
        unknown = sorted(set(d.series) - set(ds.series_ids))
        if unknown:
            raise ValueError(f"data.series lists ids not in {d.dataset}: {unknown[:5]}")
        ds = ds.select(d.series)
    if d.start or d.end:
        ts = ds.values[TIMESTAMP]
        keep = pd.Series(True, index=ds.values.index)
        if d.start:
            keep &= ts >= pd.Timestamp(d.start)
        if d.end:
            keep &= ts <= pd.Timestamp(d.end)
        ds.values = ds.values[keep].reset_index(drop=True)
    return validate_dataset(ds, service_hours=d.service_hours)


def build_model(cfg: JobConfig, mcfg, ds: SeriesDataset) -> Forecaster:
    params = dict(mcfg.params)
    params.setdefault("horizon", cfg.horizon)
    cls_params = set(model_class(mcfg.type)._param_names())
    # graph-aware models get the dataset's adjacency unless the config says otherwise
    if "adjacency" in cls_params and "adjacency" not in params and ds.adjacency is not None:
        params["adjacency"] = ds.adjacency
    # spatial models on an events grid learn its cell size, so bandwidths can be in metres
    grid = ds.extras.get("grid")
    if "cell_size_m" in cls_params and "cell_size_m" not in params and grid is not None:
        params["cell_size_m"] = grid.cell_size_m
    if "seed" in cls_params:
        params.setdefault("seed", cfg.seed)
    return make_model(mcfg.type, **params)


def evaluate_model(cfg: JobConfig, model: Forecaster, ds: SeriesDataset, progress: bool = True):
    """Backtest or holdout-evaluate ``model``; returns (metrics table, scored forecasts)."""
    from citybrain_ml.evaluation.backtest import backtest, evaluate_protocol

    ev = cfg.evaluation
    if ev.method == "backtest":
        res = backtest(
            model,
            ds.values,
            horizon=cfg.horizon,
            n_windows=ev.n_windows,
            step=ev.step or cfg.horizon,
            refit=True,
            levels=cfg.levels,
            progress=progress,
            null_value=ev.null_value,
            future_covariates=ev.future_covariates,
            calendar=ds.calendar,
        )
        return res.metrics, res.forecasts
    test_start = ev.test_start or _ratio_cut(ds.values, ev.test_ratio)
    res = evaluate_protocol(
        model,
        ds.values,
        test_start=test_start,
        horizon=cfg.horizon,
        stride=ev.stride,
        levels=cfg.levels,
        null_value=ev.null_value,
        future_covariates=ev.future_covariates,
        calendar=ds.calendar,
    )
    return res.metrics, res.forecasts


def evaluation_key(cfg: JobConfig, dataset_sha: str) -> str:
    """Same key <=> same data, windows and horizon: runs with equal keys are comparable."""
    import hashlib
    import json

    spec = {
        "data": dataset_sha,
        "evaluation": cfg.evaluation.model_dump(mode="json"),
        "horizon": cfg.horizon,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _ratio_cut(df: pd.DataFrame, test_ratio: float) -> pd.Timestamp:
    times = pd.Index(df[TIMESTAMP].unique()).sort_values()
    return times[int(len(times) * (1 - test_ratio))]


def run_train(cfg: JobConfig, progress: bool = True, write_outputs: bool = True) -> JobResult:
    """Train every configured model, evaluate it, log it, and write the forecasts."""
    import mlflow

    from citybrain_ml.tracking.runs import (
        configure_tracking,
        dataset_fingerprint,
        log_dataset,
        log_lineage,
        set_seed,
    )

    configure_tracking(cfg.tracking.tracking_uri, cfg.tracking.experiment)
    set_seed(cfg.seed)
    ds = load_job_data(cfg)
    future = job_future_covariates(cfg)  # read (and checked) before any run starts
    with mlflow.start_run(run_name=cfg.name) as parent:
        mlflow.set_tag("job", "train")
        # hashed once: every model run of the job logs the same fingerprint
        lineage = dataset_fingerprint(ds)
        log_lineage(ds, cfg.model_dump(mode="json"), cfg.seed, lineage)
        log_dataset(ds, lineage, context="training")
        result = JobResult(cfg.name, parent.info.run_id)
        for mcfg in cfg.models:
            outcome = _train_one(cfg, mcfg, ds, lineage, progress, write_outputs, future)
            result.outcomes.append(outcome)
        best = min(result.outcomes, key=lambda o: o.score)
        result.best = best.label
        mlflow.set_tag("best_model", best.label)
        mlflow.log_text(result.leaderboard().to_csv(index=False), "leaderboard.csv")
        log_model_cards(cfg, result, ds, lineage)
        if write_outputs:
            forecast_files = write_forecasts(cfg, result, ds)
            for path in forecast_files:
                mlflow.log_artifact(str(path), "outputs")
            # decision files are logged by run_decisions under decisions/<type>/
            result.output_files = forecast_files + run_decisions(cfg, ds, best)
        if cfg.tracking.register_as and best.run_id:
            mlflow.register_model(f"runs:/{best.run_id}/model", cfg.tracking.register_as)
    return result


def _train_one(
    cfg: JobConfig,
    mcfg,
    ds: SeriesDataset,
    lineage: dict,
    progress: bool,
    final_fit: bool,
    future: pd.DataFrame | None = None,
) -> ModelOutcome:
    import mlflow

    from citybrain_ml.evaluation.plots import plot_forecast_vs_actual, plot_metrics_by_horizon
    from citybrain_ml.tracking.review import log_review_artifacts
    from citybrain_ml.tracking.runs import describe_run, log_dataset, log_lineage, log_metric_table

    model = build_model(cfg, mcfg, ds)
    with mlflow.start_run(run_name=mcfg.label, nested=True) as run:
        mlflow.set_tags({"model_type": mcfg.type, "evaluation": cfg.evaluation.method})
        log_lineage(ds, cfg.model_dump(mode="json"), cfg.seed, lineage)
        log_dataset(ds, lineage, context="training")
        mlflow.set_tag("evaluation_key", evaluation_key(cfg, lineage["dataset_sha256"]))
        mlflow.log_params({f"model.{k}": _short(v) for k, v in model.get_params().items()})
        metrics, scored = evaluate_model(cfg, model, ds, progress)
        # NaN forecasts at observed targets are left out of the metrics: say how many
        nan_fc = int((scored["yhat"].isna() & scored["value"].notna()).sum())
        mlflow.set_tag("evaluation_nan_forecasts_dropped", str(nan_fc))
        # which inputs the scored forecasts used: observed future weather flatters a model
        mlflow.set_tags(
            {
                "evaluation_covariates": cfg.evaluation.future_covariates,
                "evaluation_covariate_mode": forecast_mode(scored),
            }
        )
        log_metric_table(metrics)
        score = float(metrics[cfg.select_metric].mean())
        mlflow.log_metric(f"{cfg.select_metric}_mean", score)
        # the run page's description: model, data, split and headline metric in one paragraph
        note = describe_run(cfg, mcfg.label, model, lineage, metrics, refit=final_fit)
        mlflow.set_tag("mlflow.note.content", note)
        mlflow.log_figure(
            plot_metrics_by_horizon(metrics, cfg.select_metric), "plots/metrics_by_horizon.png"
        )
        outcome = ModelOutcome(mcfg.label, model, metrics, score, scored, run_id=run.info.run_id)
        if not final_fit:
            log_review_artifacts(model, mcfg.type, metrics, scored)
            return outcome
        start = time.perf_counter()
        model.fit(ds.values, freq=ds.freq, calendar=ds.calendar)
        outcome.fit_seconds = time.perf_counter() - start
        log_model_choices(model)
        mlflow.log_metric("fit_seconds", outcome.fit_seconds)
        log_review_artifacts(model, mcfg.type, metrics, scored)
        levels = cfg.levels if model.conformal_scores_ else None
        outcome.forecast = model.predict(cfg.horizon, covariates=future, levels=levels)
        mlflow.set_tag("forecast_covariate_mode", forecast_mode(outcome.forecast))
        if cfg.output.privacy_k is None:
            # per-series plots and the model (which keeps recent history) would publish
            # small-cell counts, so a job under k-suppression logs neither
            ids = ds.series_ids[: cfg.evaluation.plot_series]
            path = scored_forecast(scored, ids)
            fig = plot_forecast_vs_actual(
                scored_history(ds, path, ids),
                path,
                actuals=None,
                series_ids=ids,
                max_series=cfg.evaluation.plot_series,
                levels=cfg.levels,
            )
            mlflow.log_figure(fig, "plots/forecast_vs_actual.png")
            if cfg.tracking.log_models:
                from citybrain_ml.tracking.pyfunc import log_forecaster

                log_forecaster(model, ds.values, name="model", levels=cfg.levels)
    return outcome


def log_model_choices(model: Forecaster) -> None:
    """Calendar, horizon convention, every fallback taken and (auto) the leaderboard."""
    import mlflow

    cal = getattr(model, "calendar_", None)
    closed = cal is not None and cal.has_closed
    tags = {
        "service_calendar": cal.describe() if cal is not None else "none",
        "horizon_convention": "service steps"
        if closed and model.service_aware
        else "grid steps" + (" (closed-slot forecasts dropped)" if closed else ""),
    }
    fallbacks = getattr(model, "fallbacks_", {}) or {}
    tags.update({f"fallback.{k}": str(v) for k, v in fallbacks.items()})
    tags["fallbacks"] = ", ".join(f"{k}={v}" for k, v in fallbacks.items()) or "none"
    mlflow.set_tags(tags)
    board = getattr(model, "leaderboard_", None)
    if board is not None:
        mlflow.log_text(board.to_csv(index=False), "auto_leaderboard.csv")
        mlflow.set_tag("auto_selected", ", ".join(f"h{h}:{m}" for h, m in model.selected_.items()))
        mlflow.set_tag("auto_validation", str(model.validation_))


def job_future_covariates(cfg: JobConfig) -> pd.DataFrame | None:
    """The job's future-covariate file (``data.future_covariates``), or None."""
    if not cfg.data.future_covariates:
        return None
    return read_future_covariates(cfg.data.future_covariates)


def scored_history(ds: SeriesDataset, forecast: pd.DataFrame, ids) -> pd.DataFrame:
    """Observed values around one plotted forecast path: context before it, then its targets.

    The context is three forecast spans (at least two days), so a year-long test period does
    not squash the forecast into a few pixels.
    """
    start, end = pd.Timestamp(forecast[TIMESTAMP].min()), pd.Timestamp(forecast[TIMESTAMP].max())
    context = max(3 * (end - start), pd.Timedelta(days=2))
    v = ds.values
    keep = v[SERIES_ID].isin(ids) & v[TIMESTAMP].between(start - context, end)
    return v[keep]


def scored_forecast(scored: pd.DataFrame, ids) -> pd.DataFrame:
    """One forecast path per series: the last evaluation origin's, for a readable plot."""
    part = scored[scored[SERIES_ID].isin(ids)]
    if "origin" in part.columns:
        part = part[part["origin"] == part["origin"].max()]
    return part


def log_model_cards(
    cfg: JobConfig, result: JobResult, ds: SeriesDataset, fingerprint: dict
) -> None:
    """A model card per model run, written once the whole leaderboard is known."""
    from mlflow import MlflowClient

    from citybrain_ml.optimize.hotspots import job_count_metrics
    from citybrain_ml.tracking.review import model_card

    client = MlflowClient()
    lineage = {**fingerprint, "dataset_name": ds.name, "dataset_source": ds.source}
    board = result.leaderboard()
    for o, mcfg in zip(result.outcomes, cfg.models, strict=True):
        # count models (hotspot jobs) are scored on counts and ranking, on the job's mask
        counts = job_count_metrics(cfg.decisions, mcfg.type, ds, o.scored, o.model)
        if counts:
            client.log_batch(o.run_id, metrics=_metric_list(counts[0]))
            client.set_tag(o.run_id, "count_metrics_mask", counts[1].description)
        card = model_card(
            o.label,
            mcfg.type,
            o.model.get_params(),
            lineage,
            cfg.evaluation.model_dump(),
            o.metrics,
            board,
            cfg.select_metric,
            count_metrics=counts,
        )
        client.log_text(o.run_id, card + _choices_section(o.model), "model_card.md")


def _choices_section(model: Forecaster) -> str:
    """Model-card section: service calendar, horizon convention, fallbacks, auto's choice."""
    cal = getattr(model, "calendar_", None)
    lines = ["", "## Calendar, fallbacks and choices", ""]
    lines.append(f"- Service calendar: {cal.describe() if cal is not None else 'none'}")
    if cal is not None and cal.has_closed:
        unit = "service steps" if model.service_aware else "grid steps (closed-slot rows dropped)"
        lines.append(f"- Horizons count {unit}.")
    fallbacks = getattr(model, "fallbacks_", {}) or {}
    if fallbacks:
        lines += [f"- Fallback `{k}`: {v}" for k, v in fallbacks.items()]
    else:
        lines.append("- No fallback was taken in the final fit.")
    board = getattr(model, "leaderboard_", None)
    if board is not None:
        lines += ["", f"Validation window: {model.validation_}", ""]
        cols = ["model", "validation_mae", "skill_vs_best_baseline", "steps", "reason"]
        lines.append(board[cols].to_markdown(index=False, floatfmt=".4g"))
    return "\n".join(lines) + "\n"


def _metric_list(metrics: dict) -> list:
    import math

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [
        Metric(f"count.{k}", float(v), now, 0)
        for k, v in metrics.items()
        if v is not None and math.isfinite(float(v))
    ]


def run_decisions(cfg: JobConfig, ds: SeriesDataset, best: ModelOutcome) -> list[Path]:
    """Run the configured decision plug-ins on the best model; write and log their outputs."""
    if not cfg.decisions:
        return []  # and the optimize package (scipy) stays unimported
    import mlflow

    from citybrain_ml.optimize.decisions import DecisionContext, run_decision

    files = []
    out_dir = Path(cfg.output.dir) / cfg.name
    for dcfg in cfg.decisions:
        ctx = DecisionContext(
            ds, best.forecast, best.scored, best.model, dcfg.params, ds.values[TIMESTAMP].max()
        )
        out = run_decision(dcfg.type, ctx)
        for name, table in out.tables.items():
            for fmt in cfg.output.formats:
                path = atomic_write_frame(table, out_dir / f"{name}.{fmt}", fmt)
                files.append(path)
                mlflow.log_artifact(str(path), f"decisions/{dcfg.type}")
        for name, fig in out.figures.items():
            mlflow.log_figure(fig, f"decisions/{dcfg.type}/{name}.png")
        if out.metrics:
            mlflow.log_metrics({f"{dcfg.type}.{k}": float(v) for k, v in out.metrics.items()})
        # e.g. the cells hotspot metrics were scored on
        tags = getattr(out, "tags", None) or {}
        if tags:
            mlflow.set_tags({f"{dcfg.type}.{k}": str(v) for k, v in tags.items()})
    return files


def write_forecasts(cfg: JobConfig, result: JobResult, ds: SeriesDataset) -> list[Path]:
    """Write every model's forecast (column ``model``, ``is_best``) as Parquet/CSV atomically.

    With ``output.privacy_k`` set, cells with fewer than k training events are suppressed.
    """
    frames = [
        o.forecast.assign(model=o.label, is_best=o.label == result.best) for o in result.outcomes
    ]
    fc = pd.concat(frames, ignore_index=True)
    if cfg.output.privacy_k:
        fc = suppress_forecast(fc, ds, cfg.output.privacy_k)
    out_dir = Path(cfg.output.dir) / cfg.name
    files = [atomic_write_frame(fc, out_dir / f"forecast.{fmt}", fmt) for fmt in cfg.output.formats]
    files.append(atomic_write_frame(result.leaderboard(), out_dir / "leaderboard.csv", "csv"))
    return files


def suppress_forecast(fc: pd.DataFrame, ds: SeriesDataset, k: int) -> pd.DataFrame:
    """Mask forecasts of cells with fewer than ``k`` events in the training data."""
    from citybrain_ml.data.privacy import suppress_small_cells
    from citybrain_ml.optimize.hotspots import training_event_counts

    counts = training_event_counts(ds.values, ds.values[TIMESTAMP].max())
    value_cols = [c for c in fc.columns if c.startswith("yhat")]
    return suppress_small_cells(fc, counts, k=k, mode="suppress", value_cols=value_cols)


def run_backtest(cfg: JobConfig, progress: bool = True) -> JobResult:
    """Evaluate the configured models and log them, without the final fit or outputs."""
    return run_train(
        cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"log_models": False})}),
        progress=progress,
        write_outputs=False,
    )


def _short(value) -> str:
    text = repr(value) if not isinstance(value, str) else value
    if isinstance(value, pd.DataFrame):
        text = f"<DataFrame {value.shape[0]}x{value.shape[1]}>"
    return text[:250]
