"""Reliability corpus, part 2: bad inputs, bad usage, bad configs, a dead tracking server.

Input files are generated here (deterministic) and fed to four surfaces: ``read_frame``,
``load_table``, ``citybrain data validate --path`` and ``citybrain forecast --data``. Each
case lists its expected outcome per surface:

* ``refused``: one clear line (CLI: ``error: ...``, exit 1 or 2; library: a
  ``DataValidationError``/``FileNotFoundError``/``ConfigError``) that names the file;
* ``warned``: accepted with a ``warning:`` line; ``skipped``: forecast published with the
  bad series skipped (exit 3); ``ok``: accepted.

Anything else is scored: a traceback or a foreign exception type (``traceback``), or an
accepted input that should have been refused (``silent_wrong``).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from publish_cases import Case, Outcome

START = pd.Timestamp("2024-03-01")
STEPS = 4 * 24 * 3  # 3 days of 15-minute values


def history(n_series: int = 3) -> pd.DataFrame:
    ts = pd.date_range(START, periods=STEPS, freq="15min")
    rng = np.random.default_rng(0)
    frames = [
        pd.DataFrame(
            {
                "series_id": f"road{i}",
                "timestamp": ts,
                "value": 30 + 5 * np.sin(np.arange(STEPS) / 16) + rng.normal(0, 1, STEPS) + i,
            }
        )
        for i in range(n_series)
    ]
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------- file builders
def _csv(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def _write(name: str, build):
    """``build(tmp) -> Path`` registered under ``name``."""
    build.__name__ = name
    return build


def f_valid_csv(tmp):
    return _csv(history(), tmp / "history.csv")


def f_valid_parquet(tmp):
    path = tmp / "history.parquet"
    history().to_parquet(path, index=False)
    return path


def f_valid_gz(tmp):
    path = tmp / "history.csv.gz"
    history().to_csv(path, index=False, compression="gzip")
    return path


def f_empty(suffix):
    def build(tmp):
        path = tmp / f"empty{suffix}"
        path.write_bytes(b"")
        return path

    return build


def f_blank_lines(tmp):
    path = tmp / "blank.csv"
    path.write_text("\n\n\n")
    return path


def f_header_only(tmp):
    path = tmp / "header.csv"
    path.write_text("series_id,timestamp,value\n")
    return path


def f_header_only_parquet(tmp):
    path = tmp / "header.parquet"
    history().iloc[:0].to_parquet(path, index=False)
    return path


def f_truncated_gz(tmp):
    full = f_valid_gz(tmp).read_bytes()
    path = tmp / "truncated.csv.gz"
    path.write_bytes(full[: len(full) // 2])
    return path


def f_corrupt_gz(tmp):
    full = bytearray(f_valid_gz(tmp).read_bytes())
    full[len(full) // 2 : len(full) // 2 + 64] = b"\x00" * 64
    path = tmp / "corrupt.csv.gz"
    path.write_bytes(bytes(full))
    return path


def f_not_gzip(tmp):
    path = tmp / "plain.csv.gz"
    path.write_text("series_id,timestamp,value\nroad0,2024-03-01,1\n")
    return path


def f_truncated_parquet(frac):
    def build(tmp):
        full = f_valid_parquet(tmp).read_bytes()
        path = tmp / f"truncated{int(frac * 100)}.parquet"
        path.write_bytes(full[: int(len(full) * frac)])
        return path

    return build


def f_garbage_parquet(tmp):
    path = tmp / "garbage.parquet"
    path.write_bytes(os.urandom(2048))
    return path


def f_csv_named_parquet(tmp):
    path = tmp / "really_csv.parquet"
    history().to_csv(path, index=False)
    return path


def f_binary_csv(tmp):
    path = tmp / "binary.csv"
    path.write_bytes(bytes(range(256)) * 8)
    return path


def f_latin1(tmp):
    df = history()
    df.loc[500, "series_id"] = "Straße-Köln"
    path = tmp / "latin1.csv"
    df.to_csv(path, index=False, encoding="latin-1")
    return path


def f_latin1_gz(tmp):
    df = history()
    df.loc[7, "series_id"] = "Ørestad"
    path = tmp / "latin1.csv.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(df.to_csv(index=False).encode("latin-1"))
    return path


def f_malformed(tmp):
    path = _csv(history(), tmp / "malformed.csv")
    lines = path.read_text().splitlines()
    lines[40] = lines[40] + ",extra,fields"
    path.write_text("\n".join(lines) + "\n")
    return path


def f_unsupported(tmp):
    path = tmp / "history.xlsx"
    path.write_bytes(b"PK\x03\x04 not really a workbook")
    return path


def f_directory(tmp):
    path = tmp / "a_folder.csv"
    path.mkdir()
    return path


def f_missing(tmp):
    return tmp / "does_not_exist.csv"


def _edit(name, fn, parquet=False):
    def build(tmp):
        df = fn(history())
        if parquet:
            path = tmp / f"{name}.parquet"
            df.to_parquet(path, index=False)
            return path
        return _csv(df, tmp / f"{name}.csv")

    return build


def _set(row, col, value):
    def fn(df):
        df = df.copy()
        if col == "value":
            df["value"] = df["value"].astype(object)
        df.loc[row, col] = value
        return df

    return fn


def _inf(df):
    df = df.copy()
    df.loc[100, "value"] = np.inf
    return df


def _neg_inf(df):
    df = df.copy()
    df.loc[[5, 300], "value"] = -np.inf
    return df


def _negative(df):
    df = df.copy()
    df.loc[[20, 21], "value"] = -12.5
    return df


def _future(years):
    def fn(df):
        df = df.copy()
        df["timestamp"] = df["timestamp"] + pd.DateOffset(years=years)
        return df

    return fn


def _skewed_row(df):
    df = df.copy()
    last = df[df["series_id"] == "road0"].index[-1]
    df.loc[last, "timestamp"] = pd.Timestamp("2030-01-01 00:00")
    return df


def _tz(zone):
    def fn(df):
        df = df.copy()
        df["timestamp"] = df["timestamp"].dt.tz_localize(zone)
        return df

    return fn


def _offset_strings(df):
    df = df.copy()
    df["timestamp"] = df["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S+08:00")
    return df


def _mixed_offsets(df):
    df = _offset_strings(df)
    df.loc[10, "timestamp"] = "2024-03-01T02:30:00"
    return df


def _drop(col):
    return lambda df: df.drop(columns=[col])


def _dup(df):
    return pd.concat([df, df.iloc[[50]]], ignore_index=True)


def _all_nan_series(df):
    df = df.copy()
    df.loc[df["series_id"] == "road2", "value"] = np.nan
    return df


def _all_nan(df):
    df = df.copy()
    df["value"] = np.nan
    return df


def _bad_timestamp(df):
    df = df.copy()
    df["timestamp"] = df["timestamp"].astype(str)
    df.loc[33, "timestamp"] = "2024-13-45 25:61"
    return df


def _off_grid(df):
    df = df.copy()
    df.loc[60, "timestamp"] = df.loc[60, "timestamp"] + pd.Timedelta("7min")
    return df


def _nan_strings(df):
    df = df.copy()
    df["value"] = df["value"].astype(object)
    df.loc[[3, 4], "value"] = "NaN"
    return df


@dataclass
class FileCase:
    name: str
    build: object
    #: expected outcome per surface: read_frame, load_table, validate, forecast
    expect: dict


R, OK, W, S = "refused", "ok", "warned", "skipped"


def _e(read=OK, table=R, validate=R, forecast=R):
    return {"read_frame": read, "load_table": table, "validate": validate, "forecast": forecast}


FILE_CASES = [
    FileCase("valid CSV", f_valid_csv, _e(OK, OK, OK, OK)),
    FileCase("valid Parquet", f_valid_parquet, _e(OK, OK, OK, OK)),
    FileCase("valid CSV.gz", f_valid_gz, _e(OK, OK, OK, OK)),
    FileCase("empty .csv (0 bytes)", f_empty(".csv"), _e(R)),
    FileCase("empty .parquet (0 bytes)", f_empty(".parquet"), _e(R)),
    FileCase("empty .csv.gz (0 bytes)", f_empty(".csv.gz"), _e(R)),
    FileCase("only blank lines", f_blank_lines, _e(R)),
    FileCase("header only CSV", f_header_only, _e(R)),
    FileCase("header only Parquet", f_header_only_parquet, _e(R)),
    FileCase("truncated gzip", f_truncated_gz, _e(R)),
    FileCase("corrupt gzip", f_corrupt_gz, _e(R)),
    FileCase("plain text named .csv.gz", f_not_gzip, _e(R)),
    FileCase("Parquet cut at 50%", f_truncated_parquet(0.5), _e(R)),
    FileCase("Parquet cut at 95%", f_truncated_parquet(0.95), _e(R)),
    FileCase("Parquet cut at 5%", f_truncated_parquet(0.05), _e(R)),
    FileCase("random bytes named .parquet", f_garbage_parquet, _e(R)),
    FileCase("CSV named .parquet", f_csv_named_parquet, _e(R)),
    FileCase("binary bytes named .csv", f_binary_csv, _e(R)),
    FileCase("Latin-1 CSV", f_latin1, _e(R)),
    FileCase("Latin-1 CSV.gz", f_latin1_gz, _e(R)),
    FileCase("CSV line with extra fields", f_malformed, _e(R)),
    FileCase("unsupported .xlsx", f_unsupported, _e(R)),
    FileCase("a folder instead of a file", f_directory, _e(R)),
    FileCase("missing file", f_missing, _e(R)),
    FileCase("inf value (CSV)", _edit("inf", _inf), _e(OK)),
    FileCase("inf value (Parquet)", _edit("inf_pq", _inf, True), _e(OK)),
    FileCase("-inf values", _edit("neginf", _neg_inf), _e(OK)),
    FileCase("'Infinity' text", _edit("infinity", _set(9, "value", "Infinity")), _e(OK)),
    FileCase("negative values (CSV)", _edit("negative", _negative), _e(OK, OK, W, R)),
    FileCase("negative values (Parquet)", _edit("neg_pq", _negative, True), _e(OK, OK, W, R)),
    FileCase("timestamps 85 years ahead", _edit("future85", _future(85)), _e(OK, OK, W, R)),
    FileCase("timestamps 3 years ahead", _edit("future3", _future(3)), _e(OK, OK, W, R)),
    FileCase("one row stamped 2030", _edit("skew", _skewed_row), _e(OK, R, R, R)),
    FileCase("tz-aware Parquet (UTC)", _edit("tz_utc", _tz("UTC"), True), _e(OK, OK, W, R)),
    FileCase(
        "tz-aware Parquet (Asia/Shanghai)",
        _edit("tz_sh", _tz("Asia/Shanghai"), True),
        _e(OK, OK, W, R),
    ),
    FileCase("CSV with +08:00 offsets", _edit("offsets", _offset_strings), _e(OK, OK, W, R)),
    FileCase("CSV mixing offsets and none", _edit("mixed", _mixed_offsets), _e(OK)),
    FileCase("no 'value' column", _edit("novalue", _drop("value")), _e(OK)),
    FileCase("no 'timestamp' column", _edit("nots", _drop("timestamp")), _e(OK)),
    FileCase("no 'series_id' column", _edit("noid", _drop("series_id")), _e(OK)),
    FileCase("non-numeric value", _edit("text", _set(77, "value", "n/a?")), _e(OK)),
    FileCase("unparseable timestamp", _edit("badts", _bad_timestamp), _e(OK)),
    FileCase("duplicate row", _edit("dup", _dup), _e(OK)),
    FileCase("empty series_id", _edit("noidval", _set(12, "series_id", None)), _e(OK)),
    FileCase(
        "one all-NaN series (dead sensor)", _edit("deadsensor", _all_nan_series), _e(OK, R, R, S)
    ),
    FileCase("every value NaN", _edit("allnan", _all_nan), _e(OK)),
    FileCase("timestamp off the 15-min grid", _edit("offgrid", _off_grid), _e(OK, R, R, OK)),
    FileCase("'NaN' text values", _edit("nantext", _nan_strings), _e(OK, OK, OK, OK)),
]


# ---------------------------------------------------------------------- surfaces
LIBRARY_ERRORS = ("DataValidationError", "InputFileError", "FileNotFoundError", "ConfigError")


def _library(fn, path: Path, expected: str) -> Outcome:
    t0 = time.perf_counter()
    try:
        fn(path)
    except Exception as exc:  # noqa: BLE001 - classified below
        dt = time.perf_counter() - t0
        kind = type(exc).__name__
        msg = str(exc)
        if kind not in LIBRARY_ERRORS and not isinstance(exc, ValueError | FileNotFoundError):
            return Outcome("traceback", f"{kind}: {msg[:200]}", dt, traceback=True)
        if kind not in LIBRARY_ERRORS:
            return Outcome("foreign", f"{kind}: {msg[:200]}", dt, traceback=True)
        if path.name not in msg:
            return Outcome("unclear", f"{kind} without the file name: {msg[:200]}", dt)
        return Outcome("refused", msg, dt)
    dt = time.perf_counter() - t0
    return Outcome("ok", "", dt, silent_wrong=expected == "refused")


def read_surface(path: Path, expected: str) -> Outcome:
    from citybrain_ml.data.io import read_frame

    return _library(read_frame, path, expected)


def table_surface(path: Path, expected: str) -> Outcome:
    from citybrain_ml.data import load_table

    mapping = {"series_id": "series_id", "timestamp": "timestamp", "value": "value"}
    return _library(lambda p: load_table(p, mapping=mapping), path, expected)


def cli(args: list[str], expected: str, name_hint: str | None = None) -> Outcome:
    from typer.testing import CliRunner

    from citybrain_ml.cli.main import app

    t0 = time.perf_counter()
    res = CliRunner().invoke(app, args)
    dt = time.perf_counter() - t0
    out = res.output
    if (res.exception is not None and not isinstance(res.exception, SystemExit)) or (
        "Traceback" in out
    ):
        return Outcome("traceback", f"{type(res.exception).__name__}: {out[-300:]}", dt, True)
    lines = [x for x in out.splitlines() if x.strip() and not x.startswith(("warning:", "note:"))]
    errors = [line for line in lines if line.startswith("error:")]
    code = res.exit_code
    if code in (1, 2):
        if len(errors) != 1 or len(lines) != 1:
            return Outcome("unclear", f"exit {code}: {out[-300:]}", dt)
        if name_hint and name_hint not in errors[0]:
            return Outcome("unclear", f"no file name: {errors[0][:300]}", dt)
        return Outcome("refused", errors[0], dt)
    warned = any(line.startswith("warning:") for line in out.splitlines())
    if code == 3:
        return Outcome("skipped", out.strip().splitlines()[-1][:200], dt, partial=False)
    got = "warned" if warned else "ok"
    if expected == "refused":
        return Outcome(got, f"exit {code}: {out[-200:]}", dt, silent_wrong=True)
    if expected == "ok" and warned:
        return Outcome("warned", out[-200:], dt)
    return Outcome(got, out.strip()[-200:], dt)


def validate_surface(path: Path, expected: str) -> Outcome:
    return cli(["data", "validate", "--path", str(path)], expected, path.name)


@dataclass
class Store:
    uri: str
    model_uri: str
    root: Path


def make_store(root: Path) -> Store:
    """A last-value model (horizon 4) logged to a private SQLite store."""
    import mlflow

    from citybrain_ml.models import make_model
    from citybrain_ml.tracking.pyfunc import log_model

    root.mkdir(parents=True, exist_ok=True)
    # a file store: no 10 s of SQLite schema migrations for a test fixture
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    uri = (root / "mlruns").as_uri()
    mlflow.set_tracking_uri(uri)
    exp = mlflow.set_experiment("reliability")
    model = make_model("last_value", horizon=4).fit(history())
    with mlflow.start_run(experiment_id=exp.experiment_id) as run:
        log_model(model, "model")
    return Store(uri, f"runs:/{run.info.run_id}/model", root)


def forecast_surface(store: Store, path: Path, expected: str, out: Path) -> Outcome:
    args = ["forecast", "--model", store.model_uri, "--data", str(path), "--out", str(out)]
    args += ["--name", "t", "--tracking-uri", store.uri, "--no-progress"]
    got = cli(args, expected, path.name)
    if got.outcome in ("ok", "warned", "skipped"):
        folders = list((out / "t").glob("as_of=*")) if (out / "t").is_dir() else []
        as_of = folders[0].name if folders else ""
        # a forecast from a clock-skewed or far-future origin is a wrong result
        if as_of and not as_of.startswith("as_of=2024-03-0"):
            got.silent_wrong = True
            got.message = f"published {as_of}"
        if expected == "refused":
            got.silent_wrong = True
    return got


def file_cases(store_getter) -> list[Case]:
    cases = []
    for fc in FILE_CASES:
        for surface, expected in fc.expect.items():

            def run(tmp, fc=fc, surface=surface, expected=expected):
                tmp.mkdir(parents=True, exist_ok=True)
                path = fc.build(tmp)
                if surface == "read_frame":
                    return read_surface(path, expected)
                if surface == "load_table":
                    return table_surface(path, expected)
                if surface == "validate":
                    return validate_surface(path, expected)
                return forecast_surface(store_getter(), path, expected, tmp / "out")

            cases.append(Case(f"{surface}: {fc.name}", f"input/{surface}", expected, run))
    return cases


# ---------------------------------------------------------------------- usage
USAGE = [
    ("--levels abc", ["--levels", "abc"], "refused"),
    ("--levels 80,x", ["--levels", "80,x"], "refused"),
    ("--levels 120", ["--levels", "120"], "refused"),
    ("--levels 0", ["--levels", "0"], "refused"),
    ("--levels ''", ["--levels", ""], "ok"),
    ("--horizon 0", ["--horizon", "0"], "refused"),
    ("--horizon -3", ["--horizon", "-3"], "refused"),
    ("--as-of garbage", ["--as-of", "garbage"], "refused"),
    ("--as-of with a UTC offset", ["--as-of", "2024-03-03T12:00+08:00"], "refused"),
    ("--as-of before any data", ["--as-of", "2020-01-01T00:00"], "refused"),
    # an earlier origin leaves less history than the model's features read: published,
    # with that said in the manifest's warnings
    ("--as-of explicit, valid", ["--as-of", "2024-03-03T12:00"], "warned"),
    ("--model runs:/nonexistent/model", ["--model", "runs:/0123456789abcdef/model"], "refused"),
    ("--model not-a-uri", ["--model", "not-a-uri"], "refused"),
    ("--model models:/missing@champion", ["--model", "models:/missing@champion"], "refused"),
    ("--config missing.yaml", ["--config", "missing.yaml"], "refused"),
    ("dead server (connection refused)", ["--tracking-uri", "http://127.0.0.1:9"], "refused"),
    ("hung server (accepts, never answers)", ["--tracking-uri", "HANG"], "refused"),
    (
        "sqlite store in a missing folder",
        ["--tracking-uri", "sqlite:////nonexistent/x.db"],
        "refused",
    ),
]


@contextlib.contextmanager
def hung_server():
    """An HTTP 'server' whose socket accepts connections but never answers (a hung MLflow)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def usage_cases(store_getter) -> list[Case]:
    cases = []
    for name, extra, expected in USAGE:

        def run(tmp, extra=extra, expected=expected):
            store = store_getter()
            tmp.mkdir(parents=True, exist_ok=True)
            data = f_valid_csv(tmp)
            args = ["forecast", "--model", store.model_uri, "--data", str(data)]
            args += ["--out", str(tmp / "out"), "--name", "t", "--no-progress"]
            if "--tracking-uri" not in extra:
                args += ["--tracking-uri", store.uri]
            if "--model" in extra:
                args = args[:1] + args[3:]
            if "HANG" not in extra:
                return cli(args + extra, expected)
            with hung_server() as uri:
                return cli(args + [x.replace("HANG", uri) for x in extra], expected)

        cases.append(Case(f"forecast {name}", "usage", expected, run))
    return cases


# ---------------------------------------------------------------------- configs
BASE_CONFIG = """
name: cfg
data: {{dataset: sz_taxi, root: {root}}}
horizon: 4
models:
  - {{type: last_value}}
evaluation: {{method: backtest, n_windows: 1, step: 24}}
tracking: {{experiment: reliability, tracking_uri: "{uri}"}}
output: {{dir: {out}}}
"""

CONFIGS = [
    ("misspelt top-level key 'horizn'", lambda c: c.replace("horizon:", "horizn:"), "'horizon'"),
    ("unknown top-level key", lambda c: c + "schedule: hourly\n", "schedule"),
    ("misspelt nested key", lambda c: c.replace("n_windows", "n_window"), "n_windows"),
    ("unknown model type", lambda c: c.replace("last_value", "lastvalue"), "last_value"),
    (
        "unknown model parameter",
        lambda c: c.replace("{type: last_value}", "{type: lightgbm, params: {n_estimator: 5}}"),
        "n_estimators",
    ),
    ("unknown dataset", lambda c: c.replace("sz_taxi", "sz_taxis"), "sz_taxi"),
    ("unknown selection metric", lambda c: c + "select_metric: accuracy\n", "accuracy"),
    ("misspelt selection metric", lambda c: c + "select_metric: rmsee\n", "rmse"),
    ("unknown decision type", lambda c: c + "decisions: [{type: hotspot}]\n", "hotspots"),
    ("level 150", lambda c: c + "levels: [80, 150]\n", "150"),
    ("horizon 0", lambda c: c.replace("horizon: 4", "horizon: 0"), "horizon"),
    ("data.root missing", lambda c: c.replace("data_samples", "no_such_folder"), "no_such_folder"),
    ("not YAML", lambda c: c + "  : - [\n", "YAML"),
    ("a list, not a mapping", lambda c: "- a\n- b\n", "mapping"),
    ("empty file", lambda c: "", "mapping"),
]


def config_cases(repo: Path) -> list[Case]:
    cases = []
    for name, edit, hint in CONFIGS:

        def run(tmp, edit=edit, hint=hint):
            tmp.mkdir(parents=True, exist_ok=True)
            db = tmp / "mlflow.db"
            text = BASE_CONFIG.format(
                root=repo / "data_samples", uri=f"sqlite:///{db}", out=tmp / "out"
            )
            path = tmp / "job.yaml"
            path.write_text(edit(text))
            got = cli(["train", "--config", str(path)], "refused", path.name)
            if got.outcome == "refused" and hint not in got.message:
                got.outcome, got.message = "unclear", f"does not name {hint!r}: {got.message}"
            if db.exists():  # an MLflow run (or store) was created before the refusal
                got.outcome, got.message = "late", f"store created before refusal: {got.message}"
            return got

        cases.append(Case(f"train --config: {name}", "config", "refused", run))
    # the train command itself with a dead server: refused before any data load
    for name, uri in (("dead", "http://127.0.0.1:9"), ("hung", "HANG")):

        def run(tmp, uri=uri):
            tmp.mkdir(parents=True, exist_ok=True)
            path = tmp / "job.yaml"
            with hung_server() as hung:
                path.write_text(
                    BASE_CONFIG.format(
                        root=repo / "data_samples", uri=uri.replace("HANG", hung), out=tmp / "out"
                    )
                )
                return cli(["train", "--config", str(path)], "refused")

        cases.append(Case(f"train with a {name} tracking server", "config", "refused", run))
    return cases
