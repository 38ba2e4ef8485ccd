"""``citybrain`` command line: train, backtest, forecast and data checks for scheduled jobs.

Errors print as one readable line and exit non-zero; ``--debug`` shows the traceback.
Exit codes: 0 ok, 1 error, 2 bad usage/config, 3 partial success (some series skipped).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

app = typer.Typer(
    help="citybrain_ml: forecasts for traffic, air quality and incident risk, tracked in MLflow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Check data before it reaches a model.", no_args_is_help=True)
app.add_typer(data_app, name="data")
optimize_app = typer.Typer(
    help="Turn forecasts into decisions: signal plans, unit placement.", no_args_is_help=True
)
app.add_typer(optimize_app, name="optimize")

_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")):
    _state["debug"] = debug


def _fail(exc: BaseException, code: int = 1):
    if _state["debug"]:
        raise exc
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _run(fn, *args, **kwargs):
    """Run a job step, turning any exception into one line + exit code."""
    from citybrain_ml.config import ConfigError

    try:
        return fn(*args, **kwargs)
    except typer.Exit:
        raise
    except (ConfigError, FileNotFoundError) as exc:
        _fail(exc, 2)
    except KeyboardInterrupt:
        _fail(RuntimeError("interrupted"), 130)
    except Exception as exc:  # the CLI boundary: every failure becomes one readable line
        _fail(exc, 1)


@app.command()
def train(
    config: Path = typer.Option(
        ..., "--config", "-c", help="YAML job config, e.g. configs/quickstart.yaml"
    ),
    progress: bool = typer.Option(True, help="Show progress bars."),
):
    """Load + validate data, evaluate each configured model, fit it on all data, log to
    MLflow (metrics per horizon, plots, pyfunc model) and write forecasts to the output dir."""
    from citybrain_ml.config import load_config
    from citybrain_ml.jobs import run_train

    cfg = _run(load_config, config)
    result = _run(run_train, cfg, progress=progress)
    _print_result(result)


@app.command()
def backtest(
    config: Path = typer.Option(..., "--config", "-c", help="YAML job config."),
    progress: bool = typer.Option(True, help="Show progress bars."),
):
    """Rolling-origin backtest (or holdout evaluation) of the configured models; logs metrics
    to MLflow, writes no forecasts."""
    from citybrain_ml.config import load_config
    from citybrain_ml.jobs import run_backtest

    cfg = _run(load_config, config)
    result = _run(run_backtest, cfg, progress=progress)
    _print_result(result)


@app.command()
def forecast(
    model: str = typer.Option(
        ..., "--model", "-m", help="MLflow model URI: runs:/<id>/model or models:/<name>@<alias>."
    ),
    data: Path = typer.Option(
        ...,
        "--data",
        "-d",
        help="History in long format (CSV or Parquet). Rows after the origin with an empty "
        "value and covariates filled (e.g. a weather forecast) are future covariates.",
    ),
    out: Path = typer.Option(Path("outputs"), "--out", "-o", help="Output root folder."),
    name: str = typer.Option("forecast", help="Job name: outputs go to <out>/<name>/as_of=<ts>/."),
    horizon: int = typer.Option(
        None, "--horizon", help="Steps ahead (default: the model's horizon)."
    ),
    as_of: str = typer.Option(
        None,
        "--as-of",
        help="Forecast origin, e.g. 2015-01-28T08:00 (default: the last observed value; "
        "later rows only supply future covariates).",
    ),
    levels: str = typer.Option("80,90", help="Interval levels, comma separated ('' for none)."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing as-of output that differs."
    ),
    config: Path = typer.Option(
        None, "--config", "-c", help="Job YAML whose decisions / privacy_k also apply here."
    ),
    tracking_uri: str = typer.Option(
        None, help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or ./mlflow.db)."
    ),
):
    """Batch-forecast from a logged model (scheduled jobs): validate the history, forecast the
    series that can be forecast, write forecast.parquet/csv + manifest.json atomically.
    Exit 0 = all series, 3 = some series skipped (listed in the manifest), 1 = failure."""
    from citybrain_ml.scoring import run_forecast

    level_list = [int(v) for v in levels.split(",") if v.strip()]
    res = _run(
        run_forecast,
        model_uri=model,
        data_path=data,
        out_dir=out,
        name=name,
        horizon=horizon,
        as_of=as_of,
        levels=level_list,
        tracking_uri=tracking_uri,
        overwrite=overwrite,
        job_config=config,
    )
    state = "unchanged (same as-of, same result)" if res.unchanged else "written"
    typer.echo(f"{res.folder}: {state}")
    if res.partial:
        typer.secho(
            f"partial: skipped {len(res.skipped)} series (reasons in manifest.json)",
            err=True,
            fg=typer.colors.YELLOW,
        )
        raise typer.Exit(3)


@app.command()
def audit(job_dir: Path = typer.Argument(..., help="A forecast job folder, e.g. outputs/traffic")):
    """Verify every as-of folder of a forecast job: file hashes and the manifest hash chain."""
    from citybrain_ml.scoring import audit as audit_job

    problems = _run(audit_job, job_dir)
    if problems:
        for p in problems:
            typer.secho(p, err=True, fg=typer.colors.RED)
        raise typer.Exit(1)
    typer.echo(f"ok: {job_dir}: every file matches its manifest and the hash chain is intact")


@app.command()
def register(
    run_id: str = typer.Option(..., "--run-id", help="MLflow run holding the model."),
    name: str = typer.Option(..., "--name", help="Registered model name."),
    tracking_uri: str = typer.Option(None, help="MLflow tracking URI."),
):
    """Register a run's model under a name; prints the new version."""
    from citybrain_ml.tracking.registry import register as do_register
    from citybrain_ml.tracking.runs import configure_tracking

    _run(configure_tracking, tracking_uri)
    version = _run(do_register, run_id, name)
    typer.echo(f"registered {name} v{version}")


@app.command()
def promote(
    name: str = typer.Option(..., "--name", help="Registered model name."),
    version: str = typer.Option(..., "--version", help="Challenger version."),
    metric: str = typer.Option("mae_mean", help="Backtest metric to compare (lower is better)."),
    min_improvement: float = typer.Option(
        0.0, help="Relative improvement needed, e.g. 0.02 for 2%."
    ),
    alias: str = typer.Option("champion", help="Alias to move."),
    tracking_uri: str = typer.Option(None, help="MLflow tracking URI."),
):
    """Move the champion alias to a challenger only if it beats the champion on the same
    backtest windows; the decision and reason are recorded as model-version tags."""
    from citybrain_ml.tracking.registry import promote as do_promote
    from citybrain_ml.tracking.runs import configure_tracking

    _run(configure_tracking, tracking_uri)
    d = _run(do_promote, name, version, metric, min_improvement, alias)
    typer.echo(("promoted: " if d.promoted else "kept champion: ") + d.reason)


@data_app.command("validate")
def data_validate(
    config: Path = typer.Option(
        None, "--config", "-c", help="Job config whose data section to check."
    ),
    dataset: str = typer.Option(None, "--dataset", help="Dataset registry name (e.g. sz_taxi)."),
    root: str = typer.Option(None, "--root", help="Folder holding traffic/ air/ incidents/."),
    path: Path = typer.Option(None, "--path", help="A long-format CSV/Parquet file to check."),
    missing_value: float = typer.Option(None, help="Sentinel meaning 'sensor missing' (e.g. 0)."),
):
    """Validate a dataset (columns, numbers, duplicates, time zones, frequency, empty series)
    and print a summary; exit 0 when clean, 1 naming the first problem (file, column, row)."""
    from citybrain_ml.data import load_dataset, validate_dataset, validate_long

    def _check():
        if config is not None:
            from citybrain_ml.config import load_config
            from citybrain_ml.jobs import load_job_data

            return load_job_data(load_config(config))
        if path is not None:
            from citybrain_ml.data.io import read_frame
            from citybrain_ml.data.schema import SeriesDataset
            from citybrain_ml.models.base import infer_freq

            df = validate_long(read_frame(path), source=str(path), missing_value=missing_value)
            return SeriesDataset(df, infer_freq(df), name=path.stem, source=str(path))
        if dataset is not None:
            return validate_dataset(load_dataset(dataset, root=root))
        raise typer.BadParameter("give one of --config, --dataset or --path")

    ds = _run(_check)
    v = ds.values
    typer.echo(
        f"ok: {ds.name or ds.source}: {v['series_id'].nunique()} series, {len(v)} rows, "
        f"freq {ds.freq}, {v['timestamp'].min()} .. {v['timestamp'].max()}, "
        f"{int(v['value'].isna().sum())} missing values"
    )


@optimize_app.command("signals")
def optimize_signals(
    config: Path = typer.Option(
        ..., "--config", "-c", help="YAML, e.g. configs/signals_cologne8.yaml"
    ),
):
    """Compute signal plans (fixed-time, Webster, max-pressure, forecast-driven),
    rehearse them in SUMO, write the plans (JSON/CSV) and simulated metrics, log to MLflow."""
    from citybrain_ml.optimize.simulation import run_signals_job

    summary = _run(run_signals_job, config)
    typer.echo(summary)


@optimize_app.command("patrols")
def optimize_patrols(
    config: Path = typer.Option(
        ..., "--config", "-c", help="YAML, e.g. configs/patrols_chicago.yaml"
    ),
):
    """Place response units on forecast risk (maximal covering), write placement + coverage
    tables, log to MLflow with a map."""
    from citybrain_ml.optimize.patrols import run_patrols_job

    summary = _run(run_patrols_job, config)
    typer.echo(summary)


def _print_result(result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.name}: models (lower score is better)")
    for col in ("model", "score", "fit_seconds"):
        table.add_column(col)
    for _, row in result.leaderboard().iterrows():
        table.add_row(str(row["model"]), f"{row['score']:.4f}", f"{row['fit_seconds']:.1f}")
    console = Console()
    console.print(table)
    console.print(f"best: {result.best}; MLflow run {result.parent_run_id}")
    for p in result.output_files:
        console.print(f"wrote {p}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
