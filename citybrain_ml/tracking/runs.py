"""Run bookkeeping: where runs go, and the lineage every run carries.

Every training run logs its config, seed, the dataset's content hash / rows / time span,
library versions and the git commit, so any number in the MLflow UI can be traced back.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE, SeriesDataset

LIBRARIES = (
    "citybrain_ml",
    "numpy",
    "pandas",
    "scikit-learn",
    "lightgbm",
    "statsmodels",
    "torch",
    "mlflow",
)


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or used; nothing was logged."""


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else a SQLite store ``./mlflow.db`` in the working dir."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def configure_tracking(uri: str | None = None, experiment: str = "citybrain") -> str:
    """Point MLflow at ``uri`` (or the default), check it answers, select ``experiment``.

    Returns the experiment id. Raises :class:`TrackingError` with a one-line reason when the
    server is down or the URI is wrong -- before any work is done, so no run is half-written.
    """
    import mlflow

    uri = uri or default_tracking_uri()
    if uri.startswith(("http://", "https://")):
        # fail fast instead of MLflow's default minutes of retries
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    mlflow.set_tracking_uri(uri)
    try:
        client = mlflow.MlflowClient()
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            exp_id = client.create_experiment(
                experiment, artifact_location=_artifact_root(uri, experiment)
            )
        else:
            exp_id = exp.experiment_id
        mlflow.set_experiment(experiment_id=exp_id)
        return exp_id
    except Exception as exc:  # MLflow surfaces connection problems as many exception types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrackingError(f"MLflow tracking store {uri} is not usable: {reason}") from exc


def _artifact_root(uri: str, experiment: str) -> str | None:
    # a local SQLite store keeps artifacts beside it, not in a cwd-relative ./mlruns
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in experiment)
        return (db.parent / "mlartifacts" / safe).resolve().as_uri()
    return None


def dataset_fingerprint(ds: SeriesDataset | pd.DataFrame) -> dict:
    """Content hash (sha256 over values and column names), rows, series and time span."""
    df = ds.values if isinstance(ds, SeriesDataset) else ds
    h = hashlib.sha256()
    h.update(json.dumps([str(c) for c in df.columns]).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return {
        "dataset_sha256": h.hexdigest(),
        "dataset_rows": int(len(df)),
        "dataset_series": int(df[SERIES_ID].nunique()),
        "dataset_start": str(df[TIMESTAMP].min()),
        "dataset_end": str(df[TIMESTAMP].max()),
    }


def library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str:
    """The commit of the code that runs (``+dirty`` when uncommitted changes exist)."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and (when loaded) torch."""
    import random
    import sys

    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def log_lineage(
    ds: SeriesDataset,
    config: dict | None = None,
    seed: int | None = None,
    fingerprint: dict | None = None,
) -> dict:
    """Log dataset fingerprint, versions, git commit, seed and config to the active run.

    Pass ``fingerprint`` (from :func:`dataset_fingerprint`) to avoid re-hashing the data
    when several runs log the same dataset.
    """
    import mlflow

    info = fingerprint or dataset_fingerprint(ds)
    tags = {f"lineage.{k}": str(v) for k, v in info.items()}
    tags.update({f"version.{k}": v for k, v in library_versions().items()})
    tags["git_commit"] = git_commit()
    tags["dataset_name"] = ds.name
    tags["dataset_source"] = ds.source
    mlflow.set_tags(tags)
    mlflow.log_params(
        {"dataset_sha256": info["dataset_sha256"][:16], "dataset_rows": info["dataset_rows"]}
    )
    if seed is not None:
        mlflow.log_param("seed", seed)
    if config is not None:
        mlflow.log_dict(config, "config.json")
    return info


def log_metric_table(table: pd.DataFrame, name: str = "metrics_by_horizon") -> None:
    """Log a per-horizon metric table as metrics (``mae_h1``...) plus CSV/markdown artifacts."""
    import mlflow

    metrics = {}
    value_cols = [c for c in table.columns if c not in ("horizon_step", "n")]
    for _, row in table.iterrows():
        step = int(row["horizon_step"]) if "horizon_step" in table.columns else None
        for col in value_cols:
            val = row[col]
            if pd.notna(val) and np.isfinite(val):
                metrics[f"{col}_h{step}" if step is not None else col] = float(val)
    if metrics:
        mlflow.log_metrics(metrics)
    mlflow.log_text(table.to_csv(index=False), f"{name}.csv")
    mlflow.log_text(
        table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False),
        f"{name}.md",
    )


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def log_dataset(
    ds: SeriesDataset, fingerprint: dict | None = None, context: str = "training"
) -> None:
    """Log ``ds`` as an MLflow dataset input of the active run (the run page's Datasets panel).

    Parameters
    ----------
    ds : SeriesDataset
        The job's data; its ``source`` (file or dataset folder) and ``name`` are recorded.
    fingerprint : dict, optional
        From :func:`dataset_fingerprint`; its content hash is the dataset digest, so runs on
        the same data show the same digest.
    context : str
        How the run used the data (``training``, ``evaluation``).
    """
    import warnings

    import mlflow

    info = fingerprint or dataset_fingerprint(ds)
    with warnings.catch_warnings():
        # MLflow warns when it guesses the source type of a plain path
        warnings.simplefilter("ignore")
        dataset = mlflow.data.from_pandas(
            ds.values,
            source=str(ds.source or ds.name),
            targets=VALUE,
            name=ds.name,
            digest=info["dataset_sha256"][:16],
        )
    mlflow.log_input(dataset, context=context)


def describe_run(
    cfg, label: str, model, fingerprint: dict, metrics: pd.DataFrame, refit: bool = True
) -> str:
    """One paragraph for the run page (``mlflow.note.content``): model, data, split, metric.

    Parameters
    ----------
    cfg : JobConfig
        The job (its ``evaluation`` and ``select_metric``).
    label : str
        The model's label in the job.
    model : Forecaster
        The model (class and horizon).
    fingerprint : dict
        From :func:`dataset_fingerprint`.
    metrics : DataFrame
        Per-horizon metric table of the evaluation.
    refit : bool
        Whether the run then refits on all the data and logs that model.
    """
    ev = cfg.evaluation
    if ev.method == "backtest":
        split = f"rolling-origin backtest, {ev.n_windows} window(s)" + (
            f" every {ev.step} steps" if ev.step else ""
        )
    else:
        cut = ev.test_start or f"last {ev.test_ratio:.0%} of timestamps"
        split = f"holdout from {cut}, every {ev.stride}. origin"
    metric = cfg.select_metric
    values = metrics[metric].to_numpy(dtype=float)
    steps = metrics["horizon_step"].to_numpy() if "horizon_step" in metrics else [1, len(values)]
    headline = (
        f"{metric} {values[0]:.4g} at step {int(steps[0])}, {values[-1]:.4g} at step "
        f"{int(steps[-1])} (mean {np.nanmean(values):.4g})"
        if len(values)
        else f"no {metric} (nothing scored)"
    )
    return (
        f"{label}: {type(model).__name__}, horizon {getattr(model, 'horizon', '?')} steps, on "
        f"{cfg.name} data ({fingerprint['dataset_series']} series, "
        f"{fingerprint['dataset_rows']:,} rows, {fingerprint['dataset_start']} to "
        f"{fingerprint['dataset_end']}, sha256 {fingerprint['dataset_sha256'][:12]}). "
        f"Evaluated by {split}: {headline}."
        + (" The logged model is refit on all the data." if refit else "")
    )
