"""Training on Spark: many per-series models in parallel, global models from a sampled frame.

Many models
    :func:`fit_many_models` fits one clone of a per-series forecaster (seasonal baselines,
    :class:`~citybrain_ml.models.statistical.ETSForecaster`,
    :class:`~citybrain_ml.models.statistical.SARIMAXForecaster`...) per series on the
    executors with ``groupBy(series_id).applyInPandas``. Each task returns its fitted model
    pickled in a binary column; only those (small) states travel to the driver, where they
    are assembled into one :class:`~citybrain_ml.models.per_series.PerSeriesModel`. That is
    an ordinary forecaster: :func:`citybrain_ml.tracking.log_model` logs it as one MLflow
    model whose pyfunc takes a history frame and returns the forecast frame, and its
    forecasts equal ``PerSeriesModel(model).fit(df)`` in one process (the same
    :func:`~citybrain_ml.models.per_series.fit_one_series` runs on the same rows).

Global models
    LightGBM or STID learn across series and train on one machine. :func:`training_frame`
    builds their pandas training frame from a Spark DataFrame; when it has more rows than
    ``max_rows`` it keeps whole series (never parts of one), chosen by a seeded hash of the
    series id so the same data, seed and budget always give the same sample, whatever the
    partitioning. :func:`fit_global` fits the model on it and records the sample in the
    active MLflow run (params ``training_sample.*`` and the artifact
    ``training_sample/series.csv`` with every kept series and its rows).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from dataclasses import dataclass, field

import pandas as pd

from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE
from citybrain_ml.models.base import Forecaster, ModelError
from citybrain_ml.models.per_series import PerSeriesModel, fit_one_series

STATE_SCHEMA = "series_id string, state binary, n_rows long, fit_seconds double, error string"


def _check_columns(sdf) -> None:
    missing = [c for c in (SERIES_ID, TIMESTAMP, VALUE) if c not in sdf.columns]
    if missing:
        raise ValueError(
            f"Spark frame lacks column(s) {missing}; expected series_id, timestamp, value "
            f"(found {sdf.columns})"
        )


def infer_freq_spark(sdf) -> str:
    """Most common step between consecutive timestamps of a series (as ``infer_freq``)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy(SERIES_ID).orderBy(TIMESTAMP)
    ts = F.col(TIMESTAMP).cast("timestamp_ntz")
    step = F.timestamp_diff("MICROSECOND", F.lag(ts).over(w), ts)
    top = (
        sdf.select(step.alias("step"))
        .where(F.col("step").isNotNull())
        .groupBy("step")
        .count()
        .orderBy(F.desc("count"), F.asc("step"))
        .first()
    )
    if top is None:
        raise ValueError("cannot infer frequency: every series has a single timestamp")
    return pd.tseries.frequencies.to_offset(pd.Timedelta(int(top["step"]), "us")).freqstr


def fit_many_models(
    sdf,
    model: Forecaster,
    freq: str | None = None,
    calendar=None,
) -> PerSeriesModel:
    """Fit one clone of ``model`` per series on Spark and return them as one model.

    Parameters
    ----------
    sdf : pyspark.sql.DataFrame
        Long frame ``series_id, timestamp, value`` (+ covariates the model reads). All rows
        of a series go to one task, so a series must fit in an executor's memory.
    model : Forecaster
        Unfitted template, e.g. ``ETSForecaster(deseasonalize="day", n_jobs=1)`` (a task
        fits one series: keep ``n_jobs=1``, Spark supplies the parallelism).
    freq : str, optional
        Sampling interval of every series; inferred on Spark when omitted.
    calendar : ServiceCalendar or str, optional
        Service calendar given to every series' fit (None: each detects its own).

    Returns
    -------
    PerSeriesModel
        Fitted; ``fit_seconds_`` holds each series' fit time on its executor and
        ``fit_errors_`` the series whose fit raised (they get no forecasts).

    Examples
    --------
    >>> from citybrain_ml.models.statistical import ETSForecaster           # doctest: +SKIP
    >>> many = fit_many_models(sdf, ETSForecaster(deseasonalize="day", n_jobs=1))
    >>> with mlflow.start_run():
    ...     log_model(many)                        # one MLflow model for every series
    """
    _check_columns(sdf)
    if not isinstance(model, Forecaster):
        raise TypeError(f"model must be a citybrain_ml Forecaster, got {type(model).__name__}")
    freq = freq or infer_freq_spark(sdf)
    template = model.clone()

    def fit_group(pdf: pd.DataFrame) -> pd.DataFrame:
        sid = pdf[SERIES_ID].iloc[0]
        started = time.perf_counter()
        state, error = None, None
        try:
            fitted = fit_one_series(template, pdf, freq, calendar)
            state = pickle.dumps(fitted, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # reported per series, as PerSeriesModel.fit does
            error = f"{type(exc).__name__}: {exc}"
        return pd.DataFrame(
            {
                SERIES_ID: [str(sid)],
                "state": [state],
                "n_rows": [len(pdf)],
                "fit_seconds": [time.perf_counter() - started],
                "error": [error],
            }
        )

    states = sdf.groupBy(SERIES_ID).applyInPandas(fit_group, STATE_SCHEMA)
    fitted, errors, seconds = {}, {}, {}
    # only the fitted states come back to the driver, one row per series
    for row in states.toLocalIterator():
        sid = row[SERIES_ID]
        seconds[sid] = float(row["fit_seconds"])
        if row["error"] is not None:
            errors[sid] = row["error"]
        else:
            fitted[sid] = pickle.loads(row["state"])
    many = PerSeriesModel(template)._assemble(fitted, freq, errors)
    many.fit_seconds_ = dict(sorted(seconds.items()))
    return many


# ====================================================================== global models
@dataclass
class TrainingSample:
    """Which series a global model was trained on.

    Attributes
    ----------
    total_rows, total_series : int
        Rows and series of the full Spark frame.
    rows, n_series : int
        Rows and series kept.
    max_rows : int or None
        The row budget (None: everything kept).
    seed : int
        Seed of the series hash.
    series : DataFrame
        ``series_id, rows`` of every kept series, in series order.
    """

    total_rows: int
    total_series: int
    rows: int
    n_series: int
    max_rows: int | None
    seed: int
    series: pd.DataFrame = field(repr=False)

    @property
    def sampled(self) -> bool:
        return self.n_series < self.total_series

    def params(self) -> dict:
        """Flat ``training_sample.*`` MLflow params."""
        return {
            "training_sample.sampled": self.sampled,
            "training_sample.total_rows": self.total_rows,
            "training_sample.total_series": self.total_series,
            "training_sample.rows": self.rows,
            "training_sample.series": self.n_series,
            "training_sample.max_rows": self.max_rows,
            "training_sample.seed": self.seed,
        }

    def log(self) -> None:
        """Record the sample in the active MLflow run (params + ``training_sample/``)."""
        import mlflow

        mlflow.log_params(self.params())
        mlflow.log_text(self.series.to_csv(index=False), "training_sample/series.csv")
        summary = {k.split(".", 1)[1]: v for k, v in self.params().items()}
        mlflow.log_text(json.dumps(summary, indent=2), "training_sample/summary.json")


def _hash_key(series_id, seed: int) -> str:
    # stable across processes and machines (Python's hash() is salted per process)
    return hashlib.sha256(f"{seed}\x1f{series_id}".encode()).hexdigest()


def choose_series(counts: pd.DataFrame, max_rows: int | None, seed: int = 0) -> pd.DataFrame:
    """Whole series, in seeded-hash order, while their rows fit in ``max_rows``.

    Parameters
    ----------
    counts : DataFrame
        ``series_id, rows``.
    max_rows : int or None
        Row budget; None keeps every series.
    seed : int
        Another seed gives another (equally random) sample.

    Returns
    -------
    DataFrame
        The kept ``series_id, rows``, sorted by series id. At least one series is kept, even
        when it alone exceeds the budget.
    """
    counts = counts[[SERIES_ID, "rows"]].copy()
    if max_rows is None or counts["rows"].sum() <= max_rows:
        return counts.sort_values(SERIES_ID, kind="stable").reset_index(drop=True)
    counts["_key"] = [_hash_key(s, seed) for s in counts[SERIES_ID]]
    counts = counts.sort_values("_key", kind="stable")
    # skip a series that does not fit and try the next: the budget fills up with whole series
    keep, used = [], 0
    for sid, rows in zip(counts[SERIES_ID], counts["rows"], strict=True):
        if used + rows <= max_rows or not keep:
            keep.append(sid)
            used += int(rows)
        if used >= max_rows:
            break
    kept = counts[counts[SERIES_ID].isin(keep)].drop(columns="_key")
    return kept.sort_values(SERIES_ID, kind="stable").reset_index(drop=True)


def training_frame(
    sdf, max_rows: int | None = None, seed: int = 0, columns: list[str] | None = None
) -> tuple[pd.DataFrame, TrainingSample]:
    """The pandas training frame of a global model, whole series sampled to fit a budget.

    Parameters
    ----------
    sdf : pyspark.sql.DataFrame
        Long frame ``series_id, timestamp, value`` (+ covariates).
    max_rows : int, optional
        Most rows to bring to the driver (size it to the driver's memory: a LightGBM frame
        with lag features takes roughly ``rows x (lags + covariates) x 8`` bytes twice over).
        None brings everything.
    seed : int
        Seed of the series sample.
    columns : list of str, optional
        Columns to keep (default all).

    Returns
    -------
    frame : DataFrame
        Rows of the kept series, sorted by ``series_id, timestamp``.
    sample : TrainingSample
        What was kept (log it with :meth:`TrainingSample.log`).
    """
    from pyspark.sql import functions as F

    _check_columns(sdf)
    if max_rows is not None and int(max_rows) < 1:
        raise ValueError(f"max_rows must be >= 1 or None, got {max_rows}")
    if columns is not None:
        sdf = sdf.select(*dict.fromkeys([SERIES_ID, TIMESTAMP, VALUE, *columns]))
    counts = sdf.groupBy(SERIES_ID).agg(F.count(F.lit(1)).alias("rows")).toPandas()
    counts["rows"] = counts["rows"].astype("int64")
    kept = choose_series(counts, max_rows, seed)
    part = sdf
    if len(kept) < len(counts):
        ids = sdf.sparkSession.createDataFrame(kept[[SERIES_ID]].astype({SERIES_ID: str}))
        part = sdf.join(F.broadcast(ids), on=SERIES_ID, how="left_semi")
    frame = part.toPandas()
    frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP])
    frame = frame.sort_values([SERIES_ID, TIMESTAMP], kind="stable").reset_index(drop=True)
    sample = TrainingSample(
        total_rows=int(counts["rows"].sum()),
        total_series=len(counts),
        rows=len(frame),
        n_series=len(kept),
        max_rows=None if max_rows is None else int(max_rows),
        seed=int(seed),
        series=kept,
    )
    return frame, sample


def fit_global(
    model: Forecaster,
    sdf,
    max_rows: int | None = None,
    seed: int = 0,
    freq: str | None = None,
    calendar=None,
    log: bool = True,
) -> tuple[Forecaster, TrainingSample]:
    """Fit a global model (LightGBM, STID...) on one machine from a Spark frame.

    Parameters
    ----------
    model : Forecaster
        Unfitted model; fitted in place and returned.
    sdf : pyspark.sql.DataFrame
        Long training frame.
    max_rows, seed
        See :func:`training_frame`.
    freq, calendar
        Passed to ``model.fit``.
    log : bool
        Record the sample in the active MLflow run, if there is one.

    Returns
    -------
    model : Forecaster
        The fitted model.
    sample : TrainingSample
        The series it saw.
    """
    frame, sample = training_frame(sdf, max_rows=max_rows, seed=seed)
    if frame.empty:
        raise ModelError("the Spark training frame is empty")
    model.fit(frame, freq=freq, calendar=calendar)
    model.training_sample_ = sample.params()
    if log:
        import mlflow

        if mlflow.active_run() is not None:
            sample.log()
    return model, sample
