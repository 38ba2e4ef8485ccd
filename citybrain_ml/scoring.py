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
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from citybrain_ml.data.covariates import forecast_mode, split_future
from citybrain_ml.data.io import atomic_write_frame, read_frame, sha256_file
from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE

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

    from citybrain_ml.data.validation import validate_long
    from citybrain_ml.tracking.pyfunc import load_forecaster
    from citybrain_ml.tracking.runs import default_tracking_uri

    timings = {}
    t0 = time.perf_counter()
    mlflow.set_tracking_uri(tracking_uri or default_tracking_uri())
    frame = validate_long(read_frame(data_path), source=str(data_path), allow_irregular=True)
    # rows after the origin may carry future covariates (e.g. a weather forecast)
    history, future, as_of_ts = split_future(frame, as_of)
    timings["load_seconds"] = time.perf_counter() - t0
    pyfunc = load_forecaster(model_uri)
    forecaster = pyfunc.unwrap_python_model().model
    timings["model_load_seconds"] = time.perf_counter() - t0 - timings["load_seconds"]
    usable, skipped = check_series(forecaster, history, as_of_ts)
    if not usable:
        raise ValueError(f"{data_path}: no series can be forecast at {as_of_ts}: {_fmt(skipped)}")
    params = {"as_of": str(as_of_ts), "levels": ",".join(str(v) for v in levels or [])}
    if horizon:
        params["horizon"] = int(horizon)
    t1 = time.perf_counter()
    request = history if future is None else pd.concat([history, future], ignore_index=True)
    forecast = pyfunc.predict(request[request[SERIES_ID].isin(usable)], params=params)
    timings["predict_seconds"] = time.perf_counter() - t1
    extras = {}
    if job_config is not None:
        forecast, extras = apply_job_config(job_config, forecaster, forecast, history, as_of_ts)
    manifest = {
        "model_uri": model_uri,
        "model_version": _model_version(model_uri),
        "as_of": str(as_of_ts),
        "input_file": str(data_path),
        "input_sha256": sha256_file(data_path),
        "input_rows": int(len(history)),
        "forecast_rows": int(len(forecast)),
        "series_forecast": len(usable),
        "series_skipped": skipped,
        "future_covariate_rows": 0 if future is None else int(len(future)),
        "covariate_mode": forecast_mode(forecast),
        "params": params,
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    target = Path(out_dir) / name / f"as_of={as_of_ts.strftime('%Y-%m-%dT%H%M%S')}"
    return publish(forecast, manifest, target, overwrite, skipped, extras)


def check_series(model, history: pd.DataFrame, as_of: pd.Timestamp) -> tuple[list, dict]:
    """Split the series in ``history`` into those the model can forecast and skipped ones."""
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(model.freq_))
    known = set(getattr(model, "series_ids_", []))
    fixed = not getattr(model, "handles_new_series", True)
    need = max(int(getattr(model, "min_history", 1)), 1)
    usable, skipped = [], {}
    for sid, grp in history.groupby(SERIES_ID, sort=True):
        observed = grp.dropna(subset=[VALUE])
        steps = grp[TIMESTAMP].diff().dropna()
        if fixed and sid not in known:
            skipped[str(sid)] = "unknown series: the model was trained on a fixed set of series"
        elif len(steps) and steps.mode().iloc[0] != step:
            skipped[str(sid)] = (
                f"wrong frequency: step {steps.mode().iloc[0]}, model expects {step}"
            )
        elif observed.empty or observed[TIMESTAMP].max() < as_of - step:
            last = "never" if observed.empty else str(observed[TIMESTAMP].max())
            skipped[str(sid)] = f"missing recent history: last value {last}, as-of {as_of}"
        elif len(grp) < need:
            skipped[str(sid)] = f"too little history: {len(grp)} steps, model needs {need}"
        else:
            usable.append(sid)
    return usable, skipped


def publish(
    forecast, manifest: dict, target: Path, overwrite: bool, skipped=None, extras=None
) -> ForecastRun:
    """Write forecast files (+ decision tables/figures) and the manifest into ``target``
    atomically (see module docstring). ``extras`` maps file stems to frames or figures."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        for fname in FORECAST_FILES:
            atomic_write_frame(forecast, staging / fname, fname.rsplit(".", 1)[1])
        for stem, item in (extras or {}).items():
            _write_extra(item, staging, stem)
        if target.exists() and _same_forecast(staging, target):
            # same as-of, same result: the published folder (and its manifest) stays as it was
            return ForecastRun(target, sorted(target.iterdir()), skipped or {}, unchanged=True)
        if target.exists() and not overwrite:
            raise OutputExistsError(
                f"{target} exists with different content; pass --overwrite to replace it"
            )
        manifest = dict(manifest)
        manifest["files"] = {p.name: sha256_file(p) for p in sorted(staging.iterdir())}
        manifest["previous_manifest_sha256"] = _previous_manifest_hash(target)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        return ForecastRun(target, sorted(target.iterdir()), skipped or {})
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


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


def audit(job_dir: str | Path) -> list[str]:
    """Verify every as-of folder of a job: file hashes and the manifest hash chain.

    Returns a list of problems (empty when everything checks out).
    """
    job_dir = Path(job_dir)
    if not job_dir.is_dir():
        raise FileNotFoundError(f"no forecast job folder at {job_dir}")
    problems, previous = [], None
    for folder in _as_of_folders(job_dir):
        mpath = folder / MANIFEST
        if not mpath.is_file():
            problems.append(f"{folder.name}: manifest.json missing")
            previous = None
            continue
        raw = mpath.read_bytes()
        manifest = json.loads(raw)
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
