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
    from citybrain_ml.tracking.probe import probe_tracking

    cfg = _run(load_config, config)
    _run(probe_tracking, cfg.tracking.tracking_uri)  # a dead server: one line within seconds
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
    from citybrain_ml.tracking.probe import probe_tracking

    cfg = _run(load_config, config)
    _run(probe_tracking, cfg.tracking.tracking_uri)  # a dead server: one line within seconds
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
    progress: bool = typer.Option(
        None,
        "--progress/--no-progress",
        help="MLflow download bars and library notices (default: only on a terminal).",
    ),
    engine: str = typer.Option(
        "local",
        "--engine",
        help="local: one process. spark: buckets of series on Spark executors (--data is a "
        "Parquet file, folder or glob; forecast.parquet/ and forecast.csv/ hold part files).",
    ),
    spark_master: str = typer.Option(
        None,
        "--spark-master",
        help="Spark master for --engine spark (default: the spark-submit session, else "
        "$CITYBRAIN_SPARK_MASTER, else local[*]).",
    ),
):
    """Batch-forecast from a logged model (scheduled jobs): validate the history, forecast the
    series that can be forecast, write forecast.parquet/csv + manifest.json atomically.
    Exit 0 = all series, 3 = some series skipped (listed in the manifest), 1 = failure.
    Quiet under cron: one line per run (plus warnings and errors on stderr)."""
    from citybrain_ml.scoring import quiet_mlflow, run_forecast

    if not (sys.stderr.isatty() if progress is None else progress):
        quiet_mlflow()
    from citybrain_ml.tracking.probe import (
        check_as_of,
        check_horizon,
        parse_levels,
        probe_tracking,
    )

    try:  # usage errors: one line, exit 2, before anything is read
        level_list = parse_levels(levels)
        check_horizon(horizon)
        check_as_of(as_of)
        if engine not in ("local", "spark"):
            raise ValueError(f"--engine must be 'local' or 'spark', got {engine!r}")
        if engine == "spark" and config is not None:
            raise ValueError(
                "--config (decisions, privacy) needs the whole history in one process: "
                "use --engine local"
            )
    except ValueError as exc:
        _fail(exc, 2)
    if config is not None:  # the job config is checked before the data and the model
        from citybrain_ml.config import load_config

        _run(load_config, config)
    _run(probe_tracking, tracking_uri)  # a dead server: one line within seconds
    common = dict(
        model_uri=model,
        data_path=data,
        out_dir=out,
        name=name,
        horizon=horizon,
        as_of=as_of,
        levels=level_list,
        tracking_uri=tracking_uri,
        overwrite=overwrite,
    )
    if engine == "spark":
        from citybrain_ml.spark.forecast import run_spark_forecast

        res = _run(run_spark_forecast, master=spark_master, **common)
    else:
        res = _run(run_forecast, job_config=config, **common)
    state = "unchanged (same as-of, same result)" if res.unchanged else "written"
    typer.echo(f"{res.folder}: {state}")
    for note in res.warnings:
        typer.secho(f"warning: {note}", err=True, fg=typer.colors.YELLOW)
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

    notes: list[str] = []
    problems = _run(audit_job, job_dir, notes)
    for note in notes:
        typer.secho(f"note: {note}", err=True, fg=typer.colors.YELLOW)
    if problems:
        for p in problems:
            typer.secho(p, err=True, fg=typer.colors.RED)
        raise typer.Exit(1)
    typer.echo(
        f"ok: {job_dir}: every published file matches the ledger and its anchored head"
        if not any("no ledger" in n for n in notes)
        else f"ok: {job_dir}: every file matches its manifest and the hash chain is intact"
    )


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
    path: Path = typer.Option(
        None, "--path", help="A CSV/Parquet file to check (long format unless --mapping)."
    ),
    mapping: str = typer.Option(
        None,
        "--mapping",
        help="Column roles of the --path file, e.g. series_id=detector,timestamp=time,"
        "value=flow (covariates=a+b); wide files: wide=true,year=year,month=month,day=day,"
        "hour=hour, or YAML '{wide: true, ...}' (see ColumnMapping).",
    ),
    missing_value: float = typer.Option(
        None,
        help="Sentinel the source writes for 'no reading' (e.g. -999, or 0 from a loop "
        "detector that is down) -> NaN. Not for counts, where 0 is a real zero.",
    ),
    service_hours: str = typer.Option(
        "auto",
        "--service-hours",
        help="Operating hours, e.g. '05:30-23:00'; 'auto' detects closed hours, 'always' none.",
    ),
    events: bool = typer.Option(
        False,
        "--events",
        help="--path is a raw event log (one row per incident); --mapping then gives "
        "time=,latitude=,longitude=[,category=,hour=] (guessed from common names if omitted).",
    ),
    time_zone: str = typer.Option(
        None, "--time-zone", help="Events: the city's IANA zone, e.g. America/Toronto."
    ),
    cell_size_m: float = typer.Option(3000.0, "--cell-size-m", help="Events: cell side (m)."),
):
    """Validate a dataset (columns, numbers, duplicates, time zones, frequency, empty series,
    service calendar) and print a summary; exit 0 when clean, 1 naming the first problem."""
    from citybrain_ml.data import load_dataset, validate_dataset, validate_long

    if events:
        from citybrain_ml.data.events import validate_event_file

        if path is None:
            _fail(typer.BadParameter("--events needs --path (the event file)"), 2)
        typer.echo(_run(validate_event_file, path, mapping, time_zone, cell_size_m, root=root))
        return

    def _check():
        if config is not None:
            from citybrain_ml.config import load_config
            from citybrain_ml.jobs import load_job_data

            return load_job_data(load_config(config))
        if path is not None and mapping is not None:
            from citybrain_ml.data.tables import load_table, parse_column_mapping

            ds = load_table(path, parse_column_mapping(mapping), missing_value=missing_value)
            ds = validate_dataset(ds, service_hours=service_hours)
            ds.extras["rows_added_by_grid"] = max(len(ds.values) - ds.extras["rows_read"], 0)
            return ds
        if path is not None:
            from citybrain_ml.data.batch_checks import batch_warnings, first_line
            from citybrain_ml.data.io import read_frame
            from citybrain_ml.data.schema import SeriesDataset
            from citybrain_ml.models.base import infer_freq

            raw = read_frame(path)
            df = validate_long(
                raw, source=str(path), missing_value=missing_value, first_row=first_line(path)
            )
            ds = SeriesDataset(df, infer_freq(df), name=path.stem, source=str(path))
            ds.extras["warnings"] = batch_warnings(df, str(path))
            ds = validate_dataset(ds, service_hours=service_hours)
            ds.extras["rows_added_by_grid"] = max(len(df) - len(raw), 0)
            return ds
        if dataset is not None:
            return validate_dataset(load_dataset(dataset, root=root), service_hours=service_hours)
        raise typer.BadParameter("give one of --config, --dataset or --path")

    ds = _run(_check)
    v = ds.values
    typer.echo(
        f"ok: {ds.name or ds.source}: {v['series_id'].nunique()} series, {len(v)} rows, "
        f"freq {ds.freq}, {v['timestamp'].min()} .. {v['timestamp'].max()}, "
        f"{int(v['value'].isna().sum())} missing values"
    )
    typer.echo(_calendar_report(ds))
    from citybrain_ml.data.quality import describe_duplicates, duplicate_series

    duplicates = describe_duplicates(duplicate_series(v))
    if duplicates:
        typer.secho(f"warning: {duplicates}", fg=typer.colors.YELLOW)
    for note in ds.extras.get("warnings", []):  # negatives, time zones, clock skew
        typer.secho(f"warning: {note}", fg=typer.colors.YELLOW)


def _calendar_report(ds) -> str:
    """The service calendar and how many grid rows it takes out of scoring and forecasts."""
    cal = ds.calendar
    if cal is None or not cal.has_closed:
        return f"service calendar: {cal.describe() if cal is not None else 'open all day'}"
    closed = ds.extras.get("closed_rows", 0)
    added = ds.extras.get("rows_added_by_grid", 0)
    return (
        f"service calendar: {cal.describe()}; {closed} rows fall in closed hours "
        f"({added} NaN rows were added to keep the grid regular); they are never origins, "
        "calibration points, scored targets or forecast rows. Override with "
        "--service-hours / data.service_hours."
    )


@optimize_app.command("signals")
def optimize_signals(
    config: Path = typer.Option(
        ..., "--config", "-c", help="YAML, e.g. configs/signals_cologne8.yaml"
    ),
):
    """Compute signal plans (fixed-time, Webster, max-pressure, forecast-driven),
    rehearse them in SUMO on a RESCO scenario or your own network (network: sumocfg, net +
    route files, CityFlow or OSM), write the plans (JSON/CSV) and simulated metrics (every
    planned vehicle counted), log to MLflow."""
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
    for col in ("model", "score", "fit_seconds", "why"):
        table.add_column(col)
    for _, row in result.leaderboard().iterrows():
        table.add_row(
            str(row["model"]), f"{row['score']:.4f}", f"{row['fit_seconds']:.1f}", str(row["why"])
        )
    console = Console()
    console.print(table)
    console.print(f"best: {result.best}; MLflow run {result.parent_run_id}")
    for p in result.output_files:
        console.print(f"wrote {p}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
