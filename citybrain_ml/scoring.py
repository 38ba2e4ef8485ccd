"""Scheduled batch scoring: load a logged model, check the history, forecast, publish.

Layout: ``<out>/<name>/as_of=<ts>/{forecast.parquet, forecast.csv, manifest.json}``.

* Atomic: the folder is built in a temp dir and renamed into place; a killed job leaves
  nothing partial.
* Idempotent: rerunning the same as-of reproduces byte-identical forecast files and leaves the
  published folder untouched; different content is refused unless ``overwrite``.
* Tamper-evident: each manifest carries the hashes of its files and of the previous as-of's
  manifest (a hash chain) -- :func:`audit` verifies both.
* Partial success: series that cannot be forecast (unknown to the model, stale, too short,
  wrong frequency) are skipped and listed with reasons in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.data.covariates import forecast_mode, split_future
from citybrain_ml.data.io import atomic_write_frame, read_frame, sha256_file
from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE
from citybrain_ml.data.sorted_frames import as_naive_utc as as_of_value
from citybrain_ml.data.sorted_frames import (
    series_starts,
    sorted_series_starts,
    take_rows,
    time_values,
)

MANIFEST = "manifest.json"
FORECAST_FILES = ("forecast.parquet", "forecast.csv")


class OutputExistsError(RuntimeError):
    """The as-of folder exists with different content and overwrite was not asked for."""


@dataclass
class ForecastRun:
    folder: Path
    files: list[Path]
    skipped: dict[str, str] = field(default_factory=dict)
    unchanged: bool = False
    #: conditions worth a look that did not stop the job (also in the manifest)
    warnings: list[str] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return bool(self.skipped)


def run_forecast(
    model_uri: str,
    data_path: str | Path,
    out_dir: str | Path = "outputs",
    name: str = "forecast",
    horizon: int | None = None,
    as_of: str | None = None,
    levels: list[int] | None = None,
    tracking_uri: str | None = None,
    overwrite: bool = False,
    job_config: str | Path | None = None,
) -> ForecastRun:
    """Forecast from ``model_uri`` over the long-format history in ``data_path``.

    Parameters
    ----------
    model_uri : str
        ``runs:/<id>/model`` or ``models:/<name>@<alias>``.
    data_path : path
        CSV or Parquet history ``series_id, timestamp, value`` (+ covariates).
    out_dir, name : output root and job name.
    horizon : int, optional
        Steps ahead (default: the model's horizon).
    as_of : str, optional
        Forecast origin (default: the last timestamp with an observed value). Later rows
        are future covariates (``value`` empty, covariates filled, e.g. a weather
        forecast), read by models fitted with future covariates.
    levels : list of int, optional
        Interval levels.
    tracking_uri : str, optional
        MLflow store holding the model.
    overwrite : bool
        Replace an existing as-of folder with different content.
    job_config : path, optional
        A job YAML whose ``decisions`` (e.g. hotspots) and ``output.privacy_k`` apply here too.

    Returns
    -------
    ForecastRun
    """
    import mlflow

    from citybrain_ml.data.validation import validate_blocks
    from citybrain_ml.tracking.probe import check_horizon
    from citybrain_ml.tracking.pyfunc import load_forecaster
    from citybrain_ml.tracking.runs import default_tracking_uri

    check_horizon(horizon)  # 0 steps would publish an empty forecast
    timings = {}
    t0 = time.perf_counter()
    # the manifest's input hash is computed beside the read (hashlib and Arrow release the
    # GIL): on a 30-day city file it costs as much as the forecast itself
    input_hash = _hash_in_background(data_path)
    mlflow.set_tracking_uri(tracking_uri or default_tracking_uri())
    from citybrain_ml.data.batch_checks import check_batch_input, first_line

    # line numbers of the file in messages; dead sensors are skipped later, not fatal.
    # Parquet ids are read as sorted categoricals: every per-series check compares codes
    frame, _, starts = validate_blocks(
        read_frame(data_path, categorical_ids=True),
        source=str(data_path),
        allow_irregular=True,
        first_row=first_line(data_path),
        allow_empty_series=True,
    )
    check_batch_input(frame, str(data_path), as_of)  # time zone, negatives, clock skew
    # rows after the origin may carry future covariates (e.g. a weather forecast)
    history, future, as_of_ts = split_future(frame, as_of)
    if len(history) != len(frame):
        starts = None  # rows after the origin were split off: series bounds change
    del frame
    timings["load_seconds"] = time.perf_counter() - t0
    pyfunc = load_forecaster(model_uri)
    forecaster = pyfunc.unwrap_python_model().model
    timings["model_load_seconds"] = time.perf_counter() - t0 - timings["load_seconds"]
    t1 = time.perf_counter()
    history, status = _sorted_status(forecaster, history, as_of_ts, starts)
    ok = status["reason"].isna().to_numpy()
    usable = status.index[ok].tolist()
    skipped = {str(k): v for k, v in status["reason"][~ok].items()}
    if not usable:
        raise ValueError(f"{data_path}: no series can be forecast at {as_of_ts}: {_fmt(skipped)}")
    # the rows the model reads, of usable series only, before any whole-frame copy
    request = _string_ids(_request(forecaster, history, status, ok))
    timings["check_seconds"] = time.perf_counter() - t1
    levels, warnings = _available_levels(forecaster, levels)
    warnings += _short_history_warnings(forecaster, status[ok])
    params = {"as_of": str(as_of_ts), "levels": ",".join(str(v) for v in levels)}
    if horizon:
        params["horizon"] = int(horizon)
    t1 = time.perf_counter()
    if future is not None:
        request = pd.concat([request, _string_ids(future)], ignore_index=True)
    # through the pyfunc, MLflow's input-schema enforcement included (it sets the dtypes the
    # published files carry); it checks the trimmed request only, not the whole file
    forecast = pyfunc.predict(request, params=params)
    timings["predict_seconds"] = time.perf_counter() - t1
    extras = {}
    if job_config is not None:
        history = _string_ids(history)
        forecast, extras = apply_job_config(job_config, forecaster, forecast, history, as_of_ts)
    manifest = {
        "model_uri": model_uri,
        "model_version": _model_version(model_uri),
        "as_of": str(as_of_ts),
        "input_file": str(data_path),
        "input_sha256": input_hash.result(),
        "input_rows": int(len(history)),
        "forecast_rows": int(len(forecast)),
        "series_forecast": len(usable),
        "series_skipped": skipped,
        "future_covariate_rows": 0 if future is None else int(len(future)),
        "covariate_mode": forecast_mode(forecast),
        "params": params,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "warnings": warnings,
    }
    target = Path(out_dir) / name / f"as_of={as_of_ts.strftime('%Y-%m-%dT%H%M%S')}"
    run = publish(forecast, manifest, target, overwrite, skipped, extras)
    run.warnings = warnings
    return run


def _hash_in_background(path):
    """A future of :func:`sha256_file` (a missing file's error is raised by the read)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1, thread_name_prefix="citybrain-hash")
    future = pool.submit(sha256_file, path)
    pool.shutdown(wait=False)  # the thread ends with the hash
    return future


def _available_levels(model, levels: list[int] | None) -> tuple[list[int], list[str]]:
    """The interval levels the model can give, and a warning for those it cannot.

    A model fitted without calibration (``calibration_steps=0``, or too short a history) has
    point forecasts only: a scheduled job then publishes them without interval columns and
    says so in the manifest, instead of failing.
    """
    levels = list(levels or [])
    if not levels or getattr(model, "conformal_scores_", None):
        return levels, []
    return [], [
        f"no interval columns: {type(model).__name__} has no calibrated intervals (fitted with "
        f"calibration_steps=0 or on too short a history); requested levels "
        f"{','.join(map(str, levels))} were dropped"
    ]


def quiet_mlflow() -> None:
    """No MLflow artifact-download bars and only MLflow errors (for cron logs).

    An explicit ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`` in the environment still wins.
    """
    import logging
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.ERROR)


def check_series(model, history: pd.DataFrame, as_of: pd.Timestamp) -> tuple[list, dict]:
    """Split the series in ``history`` into those the model can forecast and skipped ones.

    Checked in this order, first failure wins: unknown to a model tied to its training series,
    most common step not the model's frequency, no observed value at or one step before
    ``as_of``, fewer rows than the model's ``min_history``.

    Parameters
    ----------
    model : Forecaster
        The fitted model (``freq_``, ``series_ids_``, ``min_history``).
    history : DataFrame
        Long frame up to the origin; any row order (sorted input is not re-sorted).
    as_of : Timestamp
        The forecast origin.

    Returns
    -------
    usable : list
        Ids of the series to forecast, sorted.
    skipped : dict
        ``{str(series_id): reason}``, sorted by id.
    """
    _, status = _sorted_status(model, history, as_of)
    ok = status["reason"].isna().to_numpy()
    usable = status.index[ok].tolist()
    skipped = {str(k): v for k, v in status["reason"][~ok].items()}
    return usable, skipped


def series_status(model, history: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Per-series rows, first row and skip reason (None = usable), indexed by sorted id.

    Vectorised over the rows of a frame sorted by ``(series_id, timestamp)``: no per-series
    Python loop, so checking 10,000 series x 30 days costs a few NumPy passes.

    Returns
    -------
    DataFrame
        Index ``series_id``; columns ``start`` (first row in ``history`` once sorted),
        ``rows`` and ``reason``.
    """
    return _sorted_status(model, history, as_of)[1]


def _short_history_warnings(model, usable: pd.DataFrame) -> list[str]:
    """Series forecast with less history than the model's features read (lags, windows,
    seasonal lags): their features are partly missing, so say which ones, not skip them."""
    need = int(model._history_to_keep()) if hasattr(model, "_history_to_keep") else 0
    short = usable[usable["rows"] < need]
    if short.empty:
        return []
    shown = ", ".join(f"{sid} ({int(r)} rows)" for sid, r in short["rows"].head(5).items())
    more = f" and {len(short) - 5} more" if len(short) > 5 else ""
    return [
        f"{len(short)} series have less history than the model's features read ({need} steps): "
        f"{shown}{more}; their forecasts use partly missing features"
    ]


def recent_history(model, history: pd.DataFrame) -> pd.DataFrame:
    """The rows of a sorted ``history`` that ``model.predict`` reads (the same forecasts).

    Models with ``bounded_history`` read each series' last ``_history_to_keep()`` rows up
    to its last in-service slot; trimming before the pyfunc saves copying the rest.
    """
    if not getattr(model, "bounded_history", False):
        return history
    return model._trim_history(model._trim_closed_tail(history))


def _request(model, history: pd.DataFrame, status: pd.DataFrame, ok: np.ndarray) -> pd.DataFrame:
    """The rows of the usable series in a sorted ``history`` that ``model.predict`` reads.

    For ``bounded_history`` models without closed hours: each usable series' last
    ``_history_to_keep()`` rows, found from the series bounds in ``status`` (no pass over the
    whole frame); otherwise the usable series' rows through :func:`recent_history`.
    """
    starts, rows = status["start"].to_numpy(), status["rows"].to_numpy()
    bounded = getattr(model, "bounded_history", False)
    closed = getattr(model, "_service_calendar", lambda: None)() is not None
    if not bounded or closed:
        request = history if ok.all() else history[np.repeat(ok, rows)]
        return recent_history(model, request)
    keep = max(int(model._history_to_keep()), 1)
    counts = np.minimum(rows[ok], keep)
    first = starts[ok] + rows[ok] - counts
    offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    positions = np.repeat(first, counts) + offsets
    return history if len(positions) == len(history) else take_rows(history, positions)


def _string_ids(frame: pd.DataFrame) -> pd.DataFrame:
    """Ids read as categoricals (:func:`~citybrain_ml.data.io.read_frame`) back to strings,
    so the model sees the frame a plain read gives."""
    col = frame[SERIES_ID]
    if not isinstance(col.dtype, pd.CategoricalDtype):
        return frame
    cats = col.cat.categories
    if not (isinstance(cats.dtype, pd.StringDtype) and cats.dtype.storage == "pyarrow"):
        return frame.assign(**{SERIES_ID: col.astype(cats.dtype)})
    import pyarrow as pa

    # decoded by Arrow from the codes: no Python string per row
    dictionary = pa.array(cats.array)
    if isinstance(dictionary, pa.ChunkedArray):
        dictionary = dictionary.combine_chunks()
    codes = pa.array(col.cat.codes.to_numpy())
    strings = pa.DictionaryArray.from_arrays(codes, dictionary).dictionary_decode()
    ids = pd.Series(pd.array(strings, dtype=cats.dtype), index=frame.index, name=SERIES_ID)
    return frame.assign(**{SERIES_ID: ids})


def _sorted_status(
    model, history: pd.DataFrame, as_of, starts: np.ndarray | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``history`` sorted by ``(series_id, timestamp)`` and its :func:`series_status`.

    ``starts``: the first row of each series when ``history`` is known to be sorted (as
    :func:`~citybrain_ml.data.validation.validate_blocks` returns it).
    """
    if starts is None:
        starts = sorted_series_starts(history)
        if starts is None:
            history = history.sort_values([SERIES_ID, TIMESTAMP], kind="stable")
            starts = series_starts(history.reset_index(drop=True))
    history = history.reset_index(drop=True)
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(model.freq_))
    rows = np.diff(np.append(starts, len(history)))
    ids = history[SERIES_ID].iloc[starts].tolist()
    reason = np.full(len(starts), None, dtype=object)
    if not getattr(model, "handles_new_series", True):
        known = set(getattr(model, "series_ids_", []))
        for i, sid in enumerate(ids):
            if sid not in known:
                reason[i] = "unknown series: the model was trained on a fixed set of series"
    ts = time_values(history[TIMESTAMP])
    _frequency_reasons(reason, ts, starts, rows, step)
    _staleness_reasons(reason, history, ts, starts, as_of, step)
    need = max(int(getattr(model, "min_history", 1)), 1)
    for i in np.flatnonzero((rows < need) & pd.isna(reason)):
        reason[i] = f"too little history: {rows[i]} steps, model needs {need}"
    status = pd.DataFrame(
        {"start": starts, "rows": rows, "reason": reason},
        index=pd.Index(ids, name=SERIES_ID, dtype=object),
    )
    return history, status


def _frequency_reasons(reason, ts, starts, rows, step: pd.Timedelta) -> None:
    """Series whose most common step (ties: the shortest) is not the model's ``step``."""
    if len(ts) < 2:
        return
    hits = _steps_on(ts, starts, rows, step)  # steps inside each series equal to ``step``
    # more than half the steps at the model's frequency: that is the mode, nothing to check
    suspect = np.flatnonzero((rows > 1) & (2 * hits <= rows - 1) & pd.isna(reason))
    if not len(suspect):
        return
    series = np.repeat(suspect, rows[suspect] - 1)
    pos = np.concatenate([np.arange(starts[i], starts[i] + rows[i] - 1) for i in suspect])
    diffs = ts[pos + 1] - ts[pos]
    counts = pd.DataFrame({"s": series, "d": diffs}).value_counts().reset_index()
    counts = counts.sort_values(["s", "count", "d"], ascending=[True, False, True])
    mode = counts.drop_duplicates("s").set_index("s")["d"]
    for i, d in mode.items():
        if pd.Timedelta(d) != step:
            reason[i] = f"wrong frequency: step {pd.Timedelta(d)}, model expects {step}"


def _steps_on(ts, starts, rows, step: pd.Timedelta, chunk: int = 1 << 20) -> np.ndarray:
    """Per series, how many steps from one row to the next equal ``step``.

    Counted as (steps in the series) - (steps that differ), scanning the timestamps in
    chunks: only the positions of differing steps (series bounds, gaps) are kept.
    """
    unit = np.datetime_data(ts.dtype)[0]
    ticks = np.timedelta64(step.to_timedelta64()).astype(f"timedelta64[{unit}]")
    if ticks != step.to_timedelta64():  # not a whole number of the column's unit: none equal
        return np.zeros(len(starts), dtype=np.int64)
    t, ticks, n = ts.view(np.int64), int(ticks.view(np.int64)), len(ts)
    found = [
        np.flatnonzero(
            (t[lo + 1 : min(lo + chunk, n - 1) + 1] - t[lo : min(lo + chunk, n - 1)]) != ticks
        )
        + lo
        for lo in range(0, n - 1, chunk)
    ]
    odd = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
    series = np.searchsorted(starts, odd, side="right") - 1
    inside = odd < starts[series] + rows[series] - 1  # not the step into the next series
    misses = np.bincount(series[inside], minlength=len(starts))
    return rows - 1 - misses


def _staleness_reasons(reason, history, ts, starts, as_of, step: pd.Timedelta) -> None:
    """Series without an observed value at or one step before ``as_of``."""
    values = history[VALUE]
    ends = np.append(starts[1:], len(history)) - 1
    # usually each series' last row is observed; search further back only where it is not
    last = np.where(values.iloc[ends].notna().to_numpy(), ends, -1)
    todo = np.flatnonzero(last < 0)
    if len(todo):
        observed = values.notna().to_numpy()
        pos = np.where(observed, np.arange(len(history)), -1)
        last[todo] = np.maximum.reduceat(pos, starts)[todo]
    never = last < starts
    cutoff = as_of_value(as_of - step)
    stale = never | (ts[np.where(never, starts, last)] < cutoff)
    for i in np.flatnonzero(stale & pd.isna(reason)):
        seen = "never" if never[i] else str(history[TIMESTAMP].iloc[last[i]])
        reason[i] = f"missing recent history: last value {seen}, as-of {as_of}"


def publish(
    forecast, manifest: dict, target: Path, overwrite: bool, skipped=None, extras=None
) -> ForecastRun:
    """Write forecast files (+ decision tables/figures) and the manifest into ``target``
    atomically (see module docstring). ``extras`` maps file stems to frames or figures."""
    from citybrain_ml import ledger

    target.parent.mkdir(parents=True, exist_ok=True)
    key, _ = ledger.signing_key()  # a bad key file fails before any work
    staging = ledger.staging_dir(target)
    try:
        for fname in FORECAST_FILES:
            atomic_write_frame(forecast, staging / fname, fname.rsplit(".", 1)[1])
        for stem, item in (extras or {}).items():
            _write_extra(item, staging, stem)
        return commit_staged(staging, manifest, target, overwrite, skipped, key)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def commit_staged(
    staging: Path, manifest: dict, target: Path, overwrite: bool, skipped=None, key=None, same=None
) -> ForecastRun:
    """Publish a filled staging folder (from ``ledger.staging_dir(target)``) as ``target``:
    idempotence check, manifest with the hash of every file (part files inside sub-folders
    too, as the Spark engine writes them) and the hash chain, then the ledger swap. The caller
    removes ``staging`` afterwards. ``same(staging, target)`` decides "unchanged"."""
    from citybrain_ml import ledger

    same = same or _same_forecast
    # one publication at a time per job; a killed one is rolled back first (ledger.py)
    with ledger.job_lock(target.parent):
        ledger.recover(target.parent)
        if target.exists() and same(staging, target):
            # same as-of, same result: the published folder (and manifest) stays as it was
            return ForecastRun(target, sorted(target.iterdir()), skipped or {}, unchanged=True)
        if target.exists() and not overwrite:
            raise OutputExistsError(
                f"{target} exists with different content; pass --overwrite to replace it"
            )
        manifest = dict(manifest)
        manifest["files"] = staged_hashes(staging)
        manifest["previous_manifest_sha256"] = _previous_manifest_hash(target)
        manifest["ledger"] = {
            "file": f"../{ledger.LEDGER_DIR}/{target.parent.name}.jsonl",
            "signed": key is not None,
            "key_id": ledger.key_id(key) if key else None,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        ledger.swap_in(staging, target)
    return ForecastRun(target, sorted(target.iterdir()), skipped or {})


def staged_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` by its ``/``-separated path relative to it."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in files}


def _write_extra(item, folder: Path, stem: str) -> None:
    if isinstance(item, pd.DataFrame):
        for fmt in ("parquet", "csv"):
            atomic_write_frame(item, folder / f"{stem}.{fmt}", fmt)
    else:  # a matplotlib Figure; no timestamp in the PNG so reruns are byte-identical
        item.savefig(folder / f"{stem}.png", dpi=100, metadata={"Software": None})


def apply_job_config(config_path, forecaster, forecast, history, as_of) -> tuple:
    """Privacy suppression and decision plug-ins from a job config, for batch scoring.

    Returns the (possibly suppressed) forecast and ``{stem: table or figure}`` extras.
    """
    from citybrain_ml.config import load_config
    from citybrain_ml.data.schema import SeriesDataset
    from citybrain_ml.jobs import suppress_forecast
    from citybrain_ml.optimize.decisions import DecisionContext, run_decision

    cfg = load_config(config_path)
    ds = SeriesDataset(history, forecaster.freq_, name=cfg.name, source="batch history")
    if cfg.output.privacy_k:
        forecast = suppress_forecast(forecast, ds, cfg.output.privacy_k)
    extras = {}
    scored = past_forecasts(forecaster, history, as_of) if cfg.decisions else None
    for dcfg in cfg.decisions:
        ctx = DecisionContext(ds, forecast, scored, forecaster, dcfg.params, as_of)
        out = run_decision(dcfg.type, ctx)
        extras.update(out.tables)
        extras.update(out.figures)
    return forecast, extras


def past_forecasts(forecaster, history: pd.DataFrame, as_of, max_days: int = 60) -> pd.DataFrame:
    """What the model would have forecast at the same hour on earlier days of ``history``.

    No refit and no future data: each origin sees only rows up to itself. Decisions that
    calibrate on past errors (e.g. ``air_alerts``' exceedance probabilities) read these, as
    the train job's decisions read its evaluation forecasts.

    Returns
    -------
    DataFrame
        The forecast frame with ``origin`` and the observed ``value`` (empty rows dropped).
    """
    as_of = pd.Timestamp(as_of)
    start = history[TIMESTAMP].min()
    origins = [as_of - pd.Timedelta(days=d) for d in range(1, max_days + 1)]
    origins = [o for o in origins if o > start]
    if not origins:
        return pd.DataFrame()
    fc = forecaster.historical_forecasts(history, sorted(origins), int(forecaster.horizon))
    truth = history[[SERIES_ID, TIMESTAMP, VALUE]]
    return fc.merge(truth, on=[SERIES_ID, TIMESTAMP], how="inner").dropna(subset=[VALUE])


def _same_forecast(a: Path, b: Path) -> bool:
    return all(
        (b / f).is_file() and (a / f).read_bytes() == (b / f).read_bytes() for f in FORECAST_FILES
    )


def _as_of_folders(job_dir: Path) -> list[Path]:
    return sorted(p for p in job_dir.iterdir() if p.is_dir() and p.name.startswith("as_of="))


def _previous_manifest_hash(target: Path) -> str | None:
    earlier = [p for p in _as_of_folders(target.parent) if p.name < target.name]
    for folder in reversed(earlier):
        if (folder / MANIFEST).is_file():
            return _sha256_bytes((folder / MANIFEST).read_bytes())
    return None


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def audit(job_dir: str | Path, notes: list[str] | None = None) -> list[str]:
    """Verify a job folder against its publication ledger (``citybrain_ml.ledger``: signed
    entries, head anchored outside the folder, every file hashed); job folders published
    before the ledger existed get the older check (file hashes + as-of manifest chain).

    Returns a list of problems (empty when everything checks out), each naming the file;
    ``notes`` (if given) receives remarks that are not failures (e.g. unsigned entries).
    """
    from citybrain_ml import ledger

    job_dir = Path(job_dir)
    if not job_dir.is_dir():
        raise FileNotFoundError(f"no forecast job folder at {job_dir}")
    report = ledger.verify(job_dir)
    if report is not None:
        if notes is not None:
            notes.extend(report.notes)
        return report.problems
    if notes is not None:
        notes.append(f"{job_dir}: no ledger (published before it existed): head not anchored")
    problems, previous = [], None
    for folder in _as_of_folders(job_dir):
        mpath = folder / MANIFEST
        if not mpath.is_file():
            problems.append(f"{folder.name}: manifest.json missing")
            previous = None
            continue
        raw = mpath.read_bytes()
        try:
            manifest = json.loads(raw)
        except ValueError as exc:
            problems.append(f"{mpath}: not valid JSON ({exc})")
            previous = _sha256_bytes(raw)
            continue
        if manifest.get("previous_manifest_sha256") != previous:
            problems.append(
                f"{folder.name}: hash chain broken (previous manifest changed or removed)"
            )
        for fname, digest in manifest.get("files", {}).items():
            fpath = folder / fname
            if not fpath.is_file():
                problems.append(f"{folder.name}/{fname}: missing")
            elif sha256_file(fpath) != digest:
                problems.append(
                    f"{folder.name}/{fname}: content does not match its manifest hash (tampered)"
                )
        previous = _sha256_bytes(raw)
    return problems


def _model_version(model_uri: str) -> str | None:
    if not model_uri.startswith("models:/"):
        return None
    import mlflow

    ref = model_uri.removeprefix("models:/")
    client = mlflow.MlflowClient()
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            return str(client.get_model_version_by_alias(name, alias).version)
        name, _, version = ref.partition("/")
        return version or None
    except Exception:  # version lookup is informative only; the model itself loaded fine
        return None


def _fmt(skipped: dict) -> str:
    items = list(skipped.items())[:5]
    return "; ".join(f"{k}: {v}" for k, v in items) + (" ..." if len(skipped) > 5 else "")
