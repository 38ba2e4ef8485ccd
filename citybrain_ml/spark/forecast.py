"""Distributed batch scoring: ``citybrain forecast --engine spark`` on a Spark DataFrame.

The single-process job (:func:`citybrain_ml.scoring.run_forecast`) runs here once per
**bucket** of series: rows are hash-partitioned by ``series_id`` into buckets
(``repartition(n, series_id)``: every series whole in one partition, no sort), and
``mapInPandas`` hands each bucket to a Python worker that applies the same
input checks (``validate_long``, ``check_batch_input``), the same per-series checks and skip
reasons (``scoring._sorted_status``), the same history trimming and the same MLflow pyfunc
``predict`` with the same params. Every one of those is per series (or per row), so the
forecasts equal the single-process ones row for row.

* The driver never collects the history: it computes two scalars in one pass over the
  ``timestamp`` and ``value`` columns (the forecast origin, when ``as_of`` is not given, and
  the row count that sizes the buckets; with ``as_of`` only the count, which reads no
  column) and reads back only per-bucket counts and the skipped / short series. Its memory
  does not grow with the city.
* The model is downloaded once on the driver, shipped to the executors as one archive
  (``SparkContext.addFile``, as ``mlflow.pyfunc.spark_udf`` does) and loaded once per Python
  worker (a module-level cache; Spark reuses Python workers between tasks), so executors do
  not need to reach the tracking server.
* Models that read neighbouring series (an ``adjacency`` graph) are refused: a bucket would
  cut their graph.

Publishing (:func:`run_spark_forecast`) writes the forecast as Parquet part files into a
staging folder beside the job's ``as_of=`` folders, then the manifest (hashes of every part
file, skipped series, timings, ``engine: spark``) and swaps it in through the same ledger
transaction as the single-process path (:func:`citybrain_ml.scoring.commit_staged`), so
``citybrain audit`` checks it the same way. Layout::

    <out>/<name>/as_of=<ts>/forecast.parquet/part-00000.snappy.parquet ...
                            forecast.csv/part-00000.csv ...
                            manifest.json

Atomicity: see :data:`GUARANTEES`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import HORIZON_STEP, SERIES_ID, TIMESTAMP, VALUE

#: what a published folder promises, by file system (also in the README)
GUARANTEES = """\
Local disk, and POSIX file systems mounted on the driver (NFS, a FUSE mount of HDFS or of
an object store such as /dbfs or /Volumes on Databricks): the publish step is the same as the
single-process one -- the folder is complete in a hidden staging folder, its manifest is
written last, and rename(2) (an atomic exchange where Linux offers it) puts it in place under
the job's lock; a job killed at any point leaves no as_of= folder (only a hidden staging
folder that the next publication removes). On a FUSE mount of an object store a folder
rename is a copy + delete, not atomic: readers must only trust folders that have a
manifest.json and a ledger entry (the ledger line is the commit point; `citybrain audit`
checks exactly that). Executors write part files through Spark's commit protocol into the
staging folder, so a failed or killed task never leaves a part file there; a failed job
removes the staging folder. The output path must be visible to the driver and every
executor under the same name (local mode, a shared mount)."""

#: rows handed to one Python worker call (about 2,000 series of 8 days at 15 minutes):
#: bounds a worker's memory whatever the history length
ROWS_PER_BUCKET = 1_500_000
#: status columns added to the scored frame (``_kind``: forecast, skipped, short, bucket)
STATUS_COLUMNS = ("_kind", "_reason", "_rows", "_usable", "_future", "_forecast", "_pid", "_loaded")
STATUS_LONG = ("_rows", "_usable", "_future", "_forecast", "_pid", "_loaded")


# ---------------------------------------------------------------------- model shipping
_SHIPPED: dict[tuple[str, str], str] = {}  # (app id, archive name) -> local archive path
_WORKER_MODELS: dict[str, tuple] = {}  # archive name -> (pyfunc, forecaster); per process


def _dir_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + b"\0")
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def ship_model(spark, model_uri: str, tracking_uri: str | None = None):
    """Download ``model_uri`` once, load it on the driver and ship it to the executors.

    Returns ``(archive name, pyfunc, forecaster)``; workers load the archive with
    :func:`worker_model`. The archive is named by the model's content, so the same model is
    shipped once per Spark application.
    """
    import mlflow

    from citybrain_ml.models.base import ModelError
    from citybrain_ml.tracking.pyfunc import _first_line, load_forecaster
    from citybrain_ml.tracking.runs import default_tracking_uri

    mlflow.set_tracking_uri(tracking_uri or default_tracking_uri())
    tmp = Path(tempfile.mkdtemp(prefix="citybrain-model-"))
    try:
        try:
            local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp / "m")))
        except Exception as exc:  # MLflow raises many types: missing alias, bad run id...
            raise ModelError(f"cannot load model {model_uri}: {_first_line(exc)}") from exc
        pyfunc = load_forecaster(str(local))
        forecaster = pyfunc.unwrap_python_model().model
        name = f"citybrain-model-{_dir_digest(local)[:20]}.zip"
        app = spark.sparkContext.applicationId
        if (app, name) not in _SHIPPED:
            home = Path(tempfile.gettempdir()) / f"citybrain-spark-models-{os.getpid()}"
            home.mkdir(exist_ok=True)
            archive = home / name
            if not archive.exists():
                made = shutil.make_archive(str(archive.with_suffix("")), "zip", local)
                os.replace(made, archive)
            spark.sparkContext.addFile(str(archive))
            _SHIPPED[(app, name)] = str(archive)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return name, pyfunc, forecaster


def worker_model(name: str) -> tuple:
    """``(pyfunc, forecaster, loaded_now)`` for a shipped archive, loaded once per process."""
    if name in _WORKER_MODELS:
        return (*_WORKER_MODELS[name], False)
    import atexit

    import mlflow
    from pyspark import SparkFiles

    dest = tempfile.mkdtemp(prefix="citybrain-worker-model-")
    atexit.register(shutil.rmtree, dest, True)
    shutil.unpack_archive(SparkFiles.get(name), dest, "zip")
    pyfunc = mlflow.pyfunc.load_model(dest)
    _WORKER_MODELS[name] = (pyfunc, pyfunc.unwrap_python_model().model)
    return (*_WORKER_MODELS[name], True)


# ---------------------------------------------------------------------- the worker side
def _score_bucket(pdf: pd.DataFrame, ctx: dict) -> pd.DataFrame:
    """One bucket of series through the single-process job's steps (see module docstring)."""
    from citybrain_ml.data.batch_checks import check_batch_input
    from citybrain_ml.data.covariates import forecast_mode, split_future
    from citybrain_ml.data.validation import validate_long
    from citybrain_ml.scoring import _sorted_status, recent_history

    pyfunc, model, loaded = worker_model(ctx["model_file"])
    as_of_ts = pd.Timestamp(ctx["as_of"])
    # rows of a bucket do not map to file lines: messages name series and timestamps
    frame = validate_long(
        pdf, source=ctx["source"], allow_irregular=True, first_row=None, allow_empty_series=True
    )
    # the "every value is missing" refusal is about the whole input (checked on the driver);
    # the other rules are per row, so a bucket of dead sensors has nothing else to check
    if frame[VALUE].notna().any():
        check_batch_input(frame, ctx["source"], ctx["as_of_arg"])
    history, future, _ = split_future(frame, as_of_ts)
    parts = []
    usable_rows = pd.DataFrame()
    forecast = None
    if len(history):
        history, status = _sorted_status(model, history, as_of_ts)
        ok = status["reason"].isna().to_numpy()
        skipped = status[~ok]
        parts.append(
            pd.DataFrame(
                {
                    SERIES_ID: skipped.index.to_numpy(dtype=object),
                    "_kind": "skipped",
                    "_reason": skipped["reason"].to_numpy(dtype=object),
                    "_rows": skipped["rows"].to_numpy(),
                }
            )
        )
        usable_rows = status[ok]
        short = usable_rows[usable_rows["rows"] < ctx["need"]]
        parts.append(
            pd.DataFrame(
                {
                    SERIES_ID: short.index.to_numpy(dtype=object),
                    "_kind": "short",
                    "_rows": short["rows"].to_numpy(),
                }
            )
        )
        if ok.any():
            request = history if ok.all() else history[np.repeat(ok, status["rows"].to_numpy())]
            request = recent_history(model, request)
            if future is not None:
                request = pd.concat([request, future], ignore_index=True)
            forecast = pyfunc.predict(request, params=ctx["params"])
    mode = forecast_mode(forecast) if forecast is not None and len(forecast) else None
    parts.append(
        pd.DataFrame(
            {
                "_kind": ["bucket"],
                "_reason": [mode],
                "_rows": [len(history)],
                "_usable": [len(usable_rows)],
                "_future": [0 if future is None else len(future)],
                "_forecast": [0 if forecast is None else len(forecast)],
                "_pid": [os.getpid()],
                "_loaded": [int(loaded)],
            }
        )
    )
    if forecast is not None:
        extra = [c for c in forecast.columns if c not in ctx["columns"]]
        if extra:
            raise ValueError(
                f"the model returned column(s) {extra} not in its forecast schema "
                f"{ctx['columns']}; the Spark engine needs the columns up front"
            )
        parts.insert(0, forecast.assign(_kind="forecast"))
    out = pd.concat([p for p in parts if len(p)], ignore_index=True)
    return _conform(out, ctx["columns"], ctx["dtypes"])


def _bucket_function(ctx: dict):
    """The function ``mapInPandas`` ships (a closure over the small job context): the
    partition's Arrow batches joined into one bucket frame, scored once."""

    def score_bucket(batches):
        parts = [b for b in batches if len(b)]
        if parts:  # an empty partition (fewer series than buckets) has nothing to report
            yield _score_bucket(pd.concat(parts, ignore_index=True), ctx)

    return score_bucket


def _conform(out: pd.DataFrame, columns: list[str], dtypes: dict[str, str]) -> pd.DataFrame:
    """Columns in schema order with dtypes Arrow maps onto the Spark schema (nullable)."""
    out = out.reindex(columns=[*columns, *STATUS_COLUMNS])
    for col in columns:
        kind = dtypes[col]
        if kind == "int":
            out[col] = out[col].astype("Int64")
        elif kind == "float":
            out[col] = out[col].astype("float64")
        elif kind == "bool":
            out[col] = out[col].astype("boolean")
        elif kind == "timestamp":
            out[col] = pd.to_datetime(out[col])
        else:
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    for col in STATUS_LONG:
        out[col] = out[col].astype("Int64")
    for col in ("_kind", "_reason"):
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


# ---------------------------------------------------------------------- the driver side
@dataclass
class SparkScoring:
    """A planned (lazy) distributed forecast: ``frame`` holds forecast and status rows."""

    frame: object  # pyspark DataFrame: forecast columns + STATUS_COLUMNS
    columns: list[str]
    as_of: pd.Timestamp
    params: dict
    levels: list[int]
    warnings: list[str]
    model: object
    n_buckets: int
    timings: dict = field(default_factory=dict)

    def forecasts(self):
        """The forecast rows (a Spark DataFrame: ``series_id, timestamp, horizon_step, yhat``
        + interval columns), ordered by series and step within each partition."""
        from pyspark.sql import functions as F

        rows = self.frame.where(F.col("_kind") == "forecast").select(*self.columns)
        return rows.sortWithinPartitions(SERIES_ID, HORIZON_STEP)

    def status(self) -> dict:
        """Skipped series, short-history warnings and totals, from the status rows only
        (one row per bucket, one per skipped or short series: never the forecasts)."""
        from pyspark.sql import functions as F

        rows = self.frame.where(F.col("_kind").isin("skipped", "bucket"))
        cols = [SERIES_ID, "_kind", "_reason", "_rows", "_usable", "_future", "_forecast"]
        small = rows.select(*cols, "_pid", "_loaded").collect()  # one row per bucket or skip
        skipped = {
            str(r[SERIES_ID]): r["_reason"]
            for r in sorted((r for r in small if r["_kind"] == "skipped"), key=lambda r: r[0])
        }
        buckets = [r for r in small if r["_kind"] == "bucket"]
        totals = {c: sum(r[c] or 0 for r in buckets) for c in cols[3:] + ["_loaded"]}
        totals["workers"] = len({r["_pid"] for r in buckets})
        totals["modes"] = [r["_reason"] for r in buckets if r["_reason"]]
        short = self.frame.where(F.col("_kind") == "short")
        n_short = short.count()
        shown = []
        if n_short:  # the first five by id: never all of them
            shown = short.select(SERIES_ID, "_rows").orderBy(SERIES_ID).limit(5).collect()
        modes = set(totals["modes"] or [])
        return {
            "skipped": skipped,
            "input_rows": int(totals["_rows"] or 0),
            "series_forecast": int(totals["_usable"] or 0),
            "future_covariate_rows": int(totals["_future"] or 0),
            "forecast_rows": int(totals["_forecast"] or 0),
            "model_loads": int(totals["_loaded"] or 0),
            "workers": int(totals["workers"] or 0),
            "covariate_mode": modes.pop() if len(modes) == 1 else ("mixed" if modes else "history"),
            "short_warnings": _short_warning(self.model, n_short, [(r[0], r[1]) for r in shown]),
        }


def _short_warning(model, count: int, shown: list) -> list[str]:
    """:func:`citybrain_ml.scoring._short_history_warnings` from the cluster-wide count and
    the first five series (by id): the same sentence the single-process manifest carries."""
    from citybrain_ml.scoring import _short_history_warnings

    if not count:
        return []
    usable = pd.DataFrame({"rows": [r for _, r in shown]}, index=[s for s, _ in shown])
    (msg,) = _short_history_warnings(model, usable)
    _, sep, tail = msg.partition(" series have ")
    body, sep2, rest = tail.partition("; their forecasts")
    more = f" and {count - 5} more" if count > 5 else ""
    return [f"{count}{sep}{body}{more}{sep2}{rest}"]


def _spark_type(kind: str):
    from pyspark.sql import types as T

    return {
        "int": T.LongType(),
        "float": T.DoubleType(),
        "bool": T.BooleanType(),
        "timestamp": T.TimestampNTZType(),
        "str": T.StringType(),
    }[kind]


def _dtype_kind(dtype) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "timestamp"
    return "str"


def _check_model(model) -> None:
    graph = getattr(model, "adjacency", None)
    if graph is not None or getattr(model, "graph", False):
        raise ValueError(
            f"{type(model).__name__} reads neighbouring series (adjacency graph); the Spark "
            "engine scores buckets of unrelated series and cannot serve it yet: use "
            "--engine local"
        )


def score(
    spark_df,
    model_uri: str,
    horizon: int | None = None,
    as_of: str | None = None,
    levels: list[int] | None = None,
    tracking_uri: str | None = None,
    n_buckets: int | None = None,
    source: str = "<spark dataframe>",
) -> SparkScoring:
    """Plan the distributed forecast of ``spark_df`` (long format); nothing is scored yet.

    Parameters: as :func:`forecast`. Returns a :class:`SparkScoring` whose ``frame`` carries
    the forecast rows and the status rows (skip reasons, counts) of one pass.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from citybrain_ml.data.batch_checks import check_batch_input
    from citybrain_ml.scoring import _available_levels
    from citybrain_ml.tracking.probe import check_horizon

    check_horizon(horizon)
    spark = spark_df.sparkSession
    timings = {}
    t0 = time.perf_counter()
    missing = [c for c in (SERIES_ID, TIMESTAMP, VALUE) if c not in spark_df.columns]
    if missing:
        raise ValueError(
            f"{source}: missing column(s) {missing}; expected series_id, timestamp, value"
        )
    model_file, pyfunc, model = ship_model(spark, model_uri, tracking_uri)
    _check_model(model)
    timings["model_load_seconds"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    # one pass over two columns for two scalars: the origin (the last observed value) and
    # the row count (to size the buckets); with as_of given, only the count
    observed = F.col(VALUE).isNotNull() & ~F.isnan(F.col(VALUE).cast("double"))
    if as_of:
        as_of_ts, n_rows = pd.Timestamp(as_of), spark_df.count()
    else:
        last, n_rows = spark_df.agg(
            F.max(F.when(observed, F.col(TIMESTAMP))), F.count(F.lit(1))
        ).first()
        if last is None:  # the single-process refusal, word for word
            check_batch_input(
                pd.DataFrame({SERIES_ID: ["-"], TIMESTAMP: [pd.Timestamp(0)], VALUE: [np.nan]}),
                source,
            )
        as_of_ts = pd.Timestamp(last)
    levels, warnings = _available_levels(model, levels)
    params = {"as_of": str(as_of_ts), "levels": ",".join(str(v) for v in levels)}
    if horizon:
        params["horizon"] = int(horizon)
    # the forecast schema: the model's own output on two of its training series
    from citybrain_ml.tracking.pyfunc import _example

    probe = pyfunc.predict(_example(model, model.history_), params={**params, "as_of": ""})
    if SERIES_ID not in probe.columns:
        raise ValueError("the model's forecast has no series_id column")
    in_types = {f.name: f.dataType for f in spark_df.schema.fields}
    fields, dtypes = [], {}
    for col in probe.columns:
        if col in (SERIES_ID, TIMESTAMP):  # as they came in (e.g. integer ids stay integers)
            stype, kind = in_types[col], _spark_kind(in_types[col])
        else:
            kind = _dtype_kind(probe[col].dtype)
            stype = _spark_type(kind)
        fields.append(T.StructField(col, stype, True))
        dtypes[col] = kind
    fields += [
        T.StructField(c, T.LongType() if c in STATUS_LONG else T.StringType(), True)
        for c in STATUS_COLUMNS
    ]
    schema = T.StructType(fields)
    if n_buckets is None:
        n_buckets = bucket_count(n_rows, spark.sparkContext.defaultParallelism)
    timings["plan_seconds"] = time.perf_counter() - t1
    ctx = {
        "model_file": model_file,
        "as_of": str(as_of_ts),
        "as_of_arg": as_of or None,
        "params": params,
        "source": source,
        "need": int(model._history_to_keep()) if hasattr(model, "_history_to_keep") else 0,
        "columns": list(probe.columns),
        "dtypes": dtypes,
    }
    # an explicit partition count: one task per bucket (a groupBy would plan 200 shuffle
    # partitions, which adaptive execution may not coalesce once the result is persisted)
    bucketed = spark_df.repartition(n_buckets, F.col(SERIES_ID))
    frame = bucketed.mapInPandas(_bucket_function(ctx), schema=schema)
    return SparkScoring(
        frame, list(probe.columns), as_of_ts, params, levels, warnings, model, n_buckets, timings
    )


def bucket_count(n_rows: int, parallelism: int) -> int:
    """Buckets of at most :data:`ROWS_PER_BUCKET` rows, in whole waves of ``parallelism``
    (no core idles while one last, lone bucket is scored)."""
    parallelism = max(int(parallelism), 1)
    needed = max(int(np.ceil(n_rows / ROWS_PER_BUCKET)), 1)
    return int(np.ceil(needed / parallelism)) * parallelism


def _spark_kind(stype) -> str:
    from pyspark.sql import types as T

    if isinstance(stype, T.IntegralType):
        return "int"
    if isinstance(stype, (T.FloatType, T.DoubleType, T.DecimalType)):
        return "float"
    if isinstance(stype, T.BooleanType):
        return "bool"
    if isinstance(stype, (T.TimestampType, T.TimestampNTZType, T.DateType)):
        return "timestamp"
    return "str"


def forecast(
    spark_df,
    model_uri: str,
    horizon: int | None = None,
    as_of: str | None = None,
    levels: list[int] | None = None,
    tracking_uri: str | None = None,
    n_buckets: int | None = None,
):
    """Forecast every series of a long-format Spark DataFrame with a logged model.

    The same checks, skip rules and forecasts as :func:`citybrain_ml.scoring.run_forecast`,
    run per bucket of series on the executors (see the module docstring). Series that
    cannot be forecast are left out; :func:`score` (``.status()``) lists them with reasons.

    Parameters
    ----------
    spark_df : pyspark.sql.DataFrame
        ``series_id, timestamp, value`` (+ covariates); rows after the origin with an empty
        value are future covariates.
    model_uri : str
        ``runs:/<id>/model`` or ``models:/<name>@<alias>`` (downloaded once on the driver).
    horizon, as_of, levels, tracking_uri : as in ``citybrain forecast``.
    n_buckets : int, optional
        Groups handed to the Python workers (default: :func:`bucket_count`, at most
        :data:`ROWS_PER_BUCKET` rows each).

    Returns
    -------
    pyspark.sql.DataFrame
        ``series_id, timestamp, horizon_step, yhat`` (+ ``yhat_lo_XX``/``yhat_hi_XX``), lazy.

    Examples
    --------
    >>> from citybrain_ml.spark import forecast, get_spark        # doctest: +SKIP
    >>> spark = get_spark()                                         # doctest: +SKIP
    >>> history = spark.read.parquet("s3://city/traffic/history/")  # doctest: +SKIP
    >>> fc = forecast(history, "models:/traffic@champion", levels=[80, 90])  # doctest: +SKIP
    >>> fc.write.parquet("s3://city/traffic/forecast/")             # doctest: +SKIP
    """
    return score(spark_df, model_uri, horizon, as_of, levels, tracking_uri, n_buckets).forecasts()


# ---------------------------------------------------------------------- reading + publishing
def read_history(spark, path: str | Path):
    """A Parquet history (a file, a folder -- Hive-partitioned or not -- or a glob).

    Partition columns (``day=2024-01-01/`` folders) are dropped unless they are
    ``series_id``/``timestamp``/``value``: they are not covariates.
    """
    text = str(path)
    if text.lower().endswith((".csv", ".csv.gz", ".tsv", ".txt", ".gz")):
        raise ValueError(
            f"{text}: --engine spark reads Parquet (a file, folder or glob); convert the CSV "
            "once, e.g. pandas.read_csv(...).to_parquet(...), or use --engine local"
        )
    if "://" not in text and not any(ch in text for ch in "*?[") and not Path(text).exists():
        raise FileNotFoundError(f"input not found: {text}")
    df = spark.read.parquet(text)
    part_cols = set()
    for f in df.inputFiles()[:1000]:
        part_cols.update(m.group(1) for m in re.finditer(r"/([^/=]+)=[^/]*(?=/)", f))
    drop = [c for c in df.columns if c in part_cols and c not in (SERIES_ID, TIMESTAMP, VALUE)]
    return df.drop(*drop) if drop else df


def input_digest(path: str | Path) -> tuple[str | None, int]:
    """SHA-256 of the input (of the file; of ``path\\tsha`` lines for a folder or glob) and
    the number of files, read in 1 MiB chunks (flat memory). ``None`` for remote URIs."""
    import glob

    from citybrain_ml.data.io import sha256_file

    text = str(path)
    if "://" in text:
        return None, 0
    p = Path(text)
    if p.is_file():
        return sha256_file(p), 1
    if p.is_dir():
        files = [f for f in p.rglob("*") if f.is_file()]
        base = p
    else:
        files = [Path(f) for f in glob.glob(text, recursive=True) if Path(f).is_file()]
        base = Path(os.path.commonpath([str(f) for f in files])) if files else Path(".")
    files = sorted(f for f in files if not f.name.startswith(("_", ".")))
    h = hashlib.sha256()
    for f in files:
        rel = f.relative_to(base).as_posix() if base in f.parents else str(f)
        h.update(f"{rel}\t{sha256_file(f)}\n".encode())
    return h.hexdigest(), len(files)


class SparkJobError(RuntimeError):
    """The Spark job failed (a worker raised, an executor died); nothing was published."""


def worker_error(exc: BaseException) -> str:
    """The Python worker's own error line from a Spark exception (else its first line)."""
    text = str(exc).split("JVM stacktrace:")[0]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    found = [ln for ln in lines if re.match(r"^[\w.]*(Error|Exception|Exit)\b.*: ", ln)]
    return found[-1] if found else (lines[0] if lines else type(exc).__name__)


def _file_uri(path: Path) -> str:
    """``file://`` + the absolute path, unquoted (Hadoop reads ``%3D`` literally, and the
    folders are named ``as_of=...``); explicit so a cluster's default HDFS is not used."""
    return "file://" + str(Path(path).resolve())


def _tidy_parts(folder: Path) -> None:
    """Drop Spark's markers and checksums; part files renamed ``part-00000<suffix>`` in
    order (reruns give the same names, so an unchanged forecast is recognised)."""
    for p in list(folder.iterdir()):
        if p.name.startswith(("_", ".")):
            p.unlink()
    parts = sorted(p for p in folder.iterdir() if p.name.startswith("part-"))
    for i, p in enumerate(parts):
        suffix = p.name[p.name.index(".") :] if "." in p.name else ""
        p.rename(folder / f"part-{i:05d}{suffix}")


def _same_files(staging: Path, target: Path) -> bool:
    """Every forecast file (part files included) byte-identical; the manifest aside."""
    from citybrain_ml.ledger import MANIFEST, folder_files

    new = [f for f in folder_files(staging) if f != MANIFEST]
    old = [f for f in folder_files(target) if f != MANIFEST]
    return new == old and all((staging / f).read_bytes() == (target / f).read_bytes() for f in new)


def run_spark_forecast(
    model_uri: str,
    data_path: str | Path,
    out_dir: str | Path = "outputs",
    name: str = "forecast",
    horizon: int | None = None,
    as_of: str | None = None,
    levels: list[int] | None = None,
    tracking_uri: str | None = None,
    overwrite: bool = False,
    master: str | None = None,
    n_buckets: int | None = None,
    csv: bool = True,
    spark=None,
):
    """``citybrain forecast --engine spark``: :func:`citybrain_ml.scoring.run_forecast` on
    Spark, published in the same ``as_of=`` layout (part-file folders; see module docstring).

    Returns
    -------
    citybrain_ml.scoring.ForecastRun
    """
    from pyspark import StorageLevel

    from citybrain_ml import ledger
    from citybrain_ml.scoring import _fmt, _model_version, commit_staged
    from citybrain_ml.spark.session import get_spark

    t0 = time.perf_counter()
    spark = spark or get_spark(master)
    # no _SUCCESS markers in published folders (removed anyway; saves a write)
    spark.sparkContext._jsc.hadoopConfiguration().set(
        "mapreduce.fileoutputcommitter.marksuccessfuljobs", "false"
    )
    history = read_history(spark, data_path)
    scoring = score(
        history, model_uri, horizon, as_of, levels, tracking_uri, n_buckets, str(data_path)
    )
    timings = dict(scoring.timings)
    timings["session_seconds"] = time.perf_counter() - t0 - sum(timings.values())
    target = Path(out_dir) / name / f"as_of={scoring.as_of.strftime('%Y-%m-%dT%H%M%S')}"
    target.parent.mkdir(parents=True, exist_ok=True)
    key, _ = ledger.signing_key()  # a bad key file fails before any work
    staging = ledger.staging_dir(target)
    scored = scoring.frame.persist(StorageLevel.DISK_ONLY)
    scoring.frame = scored
    try:
        t1 = time.perf_counter()
        fc_dir = staging / "forecast.parquet"
        try:
            scoring.forecasts().write.mode("errorifexists").parquet(_file_uri(fc_dir))
        except Exception as exc:  # a worker raised: its last line, not the JVM's trace
            raise SparkJobError(
                f"Spark job failed, nothing published: {worker_error(exc)}"
            ) from exc
        timings["score_write_seconds"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        status = scoring.status()
        timings["status_seconds"] = time.perf_counter() - t1
        if not status["series_forecast"]:
            raise ValueError(
                f"{data_path}: no series can be forecast at {scoring.as_of}: "
                f"{_fmt(status['skipped'])}"
            )
        _tidy_parts(fc_dir)
        if csv:
            t1 = time.perf_counter()
            csv_dir = staging / "forecast.csv"
            spark.read.parquet(_file_uri(fc_dir)).write.option("header", True).option(
                "timestampNTZFormat", "yyyy-MM-dd HH:mm:ss"
            ).csv(_file_uri(csv_dir))
            _tidy_parts(csv_dir)
            timings["csv_seconds"] = time.perf_counter() - t1
        digest, n_files = input_digest(data_path)
        warnings = scoring.warnings + status["short_warnings"]
        manifest = {
            "engine": "spark",
            "model_uri": model_uri,
            "model_version": _model_version(model_uri),
            "as_of": str(scoring.as_of),
            "input_file": str(data_path),
            "input_sha256": digest,
            "input_files": n_files,
            "input_rows": status["input_rows"],
            "forecast_rows": status["forecast_rows"],
            "series_forecast": status["series_forecast"],
            "series_skipped": status["skipped"],
            "future_covariate_rows": status["future_covariate_rows"],
            "covariate_mode": status["covariate_mode"],
            "params": scoring.params,
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "warnings": warnings,
            "spark": {
                "master": spark.sparkContext.master,
                "version": spark.version,
                "buckets": scoring.n_buckets,
                "python_workers": status["workers"],
                "model_loads": status["model_loads"],
            },
            "publication": "staging folder + rename under the job lock "
            "(citybrain_ml.spark.forecast.GUARANTEES)",
        }
        run = commit_staged(
            staging, manifest, target, overwrite, status["skipped"], key, same=_same_files
        )
        run.warnings = warnings
        return run
    finally:
        scored.unpersist()
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def manifest_of(folder: str | Path) -> dict:
    """The manifest of a published as-of folder."""
    return json.loads((Path(folder) / "manifest.json").read_text())
