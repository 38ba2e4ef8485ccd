"""Batch scoring at city scale: ``citybrain forecast`` single process vs ``--engine spark``.

A synthetic city (daily + weekly seasonality, noise, gaps, a few broken series), 15-minute
data, 8 days of history per series, written as one Parquet file per size. The same LightGBM
model (fitted once on 300 series of the same generator, logged to a private MLflow store)
forecasts 12 steps through (a) ``citybrain forecast`` and (b) ``citybrain forecast --engine
spark --spark-master local[2]``, each in its own subprocess whose process tree is sampled
with psutil every 0.25 s: the driver's own RSS, and for (b) the JVM and the Python workers.

Rerun (sizes are run in order; --max-series caps the largest)::

    .venv/bin/python experiments/spark_scale.py --sizes 10000 30000 100000 300000 \\
        --local-mem-gb 21 --timeout 1800

Writes ``experiments/results/spark_scale.md`` (+ ``spark_scale.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "experiments" / "results"
STEPS = 8 * 96  # 8 days of 15-minute steps
START = pd.Timestamp("2024-03-04")  # a Monday
HORIZON = 12


def make_city(n: int, seed: int = 0, first: int = 0) -> pd.DataFrame:
    """``n`` series x 8 days at 15 min: daily + weekly pattern, noise, gaps, broken series."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range(START, periods=STEPS, freq="15min").to_numpy()
    hour = (np.arange(STEPS) % 96) / 4.0
    weekend = ((np.arange(STEPS) // 96) % 7 >= 5).astype(float)
    level = rng.uniform(20, 80, n)[:, None]
    phase = rng.uniform(-1, 1, n)[:, None]
    daily = np.sin(2 * np.pi * (hour[None, :] - 8 + phase) / 24) * level * 0.4
    peak = np.exp(-((hour[None, :] - 17.5 - phase) ** 2) / 2) * level * 0.3
    values = level + daily + peak * (1 - weekend[None, :]) - 0.15 * level * weekend[None, :]
    values = np.maximum(values + rng.normal(0, 0.05, (n, STEPS)) * level, 0)
    # gaps: a few stretches of missing readings
    for i in rng.choice(n, max(n // 20, 1), replace=False):
        start = rng.integers(0, STEPS - 40)
        values[i, start : start + rng.integers(4, 40)] = np.nan
    ids = np.array([f"s{first + i:07d}" for i in range(n)], dtype=object)
    frame = pd.DataFrame(
        {
            "series_id": np.repeat(ids, STEPS),
            "timestamp": np.tile(ts, n),
            "value": values.reshape(-1),
        }
    )
    # a few broken series (about 0.1%): stale, hourly, dead, too short
    broken = rng.choice(n, max(n // 1000, 4), replace=False)
    keep = np.ones(len(frame), dtype=bool)
    for k, i in enumerate(broken):
        rows = slice(i * STEPS, (i + 1) * STEPS)
        if k % 4 == 0:  # stale: stopped reporting 3 hours ago
            keep[i * STEPS + STEPS - 12 : (i + 1) * STEPS] = False
        elif k % 4 == 1:  # wrong frequency: hourly
            keep[rows] = np.arange(STEPS) % 4 == 0
        elif k % 4 == 2:  # dead sensor: no reading at all
            frame.loc[frame.index[rows], "value"] = np.nan
        else:  # too little history: 5 rows
            keep[i * STEPS : (i + 1) * STEPS - 5] = False
    return frame[keep].reset_index(drop=True)


def write_city(n: int, path: Path, chunk: int = 10_000) -> None:
    """The city as one Parquet file, generated chunk by chunk (flat memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for first in range(0, n, chunk):
            part = make_city(min(chunk, n - first), seed=first, first=first)
            table = pa.Table.from_pandas(part, preserve_index=False)
            table = table.cast(
                pa.schema(
                    [
                        ("series_id", pa.string()),
                        ("timestamp", pa.timestamp("us")),
                        ("value", pa.float64()),
                    ]
                )
            )
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=1 << 20)
    finally:
        if writer is not None:
            writer.close()


def fit_model(store: Path) -> str:
    import mlflow

    from citybrain_ml.models.lightgbm import LightGBMForecaster
    from citybrain_ml.tracking import log_model

    uri = f"sqlite:///{store / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    train = make_city(300, seed=12345, first=9_000_000)
    train = train[train.groupby("series_id")["value"].transform("count") > 100]
    model = LightGBMForecaster(horizon=HORIZON, n_estimators=100, n_jobs=1).fit(train)
    with mlflow.start_run():
        return log_model(model).model_uri


def run_sampled(cmd: list[str], env: dict, timeout: float, mem_cap_gb: float) -> dict:
    """Run ``cmd``; sample the RSS of it (driver), its JVM and Python workers."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    top = psutil.Process(proc.pid)
    peak = {"driver": 0, "jvm": 0, "workers": 0, "worker_max": 0, "tree": 0}
    killed = [None]

    def sample():
        while proc.poll() is None:
            try:
                driver = top.memory_info().rss
                jvm = workers = worker_max = 0
                for c in top.children(recursive=True):
                    try:
                        rss = c.memory_info().rss
                        name = " ".join(c.cmdline()[:1])
                    except psutil.Error:
                        continue
                    if "java" in name:
                        jvm += rss
                    elif "python" in name:
                        workers += rss
                        worker_max = max(worker_max, rss)
                vals = {
                    "driver": driver,
                    "jvm": jvm,
                    "workers": workers,
                    "worker_max": worker_max,
                    "tree": driver + jvm + workers,
                }
                for k, v in vals.items():
                    peak[k] = max(peak[k], v)
                if vals["tree"] > mem_cap_gb * 2**30 and killed[0] is None:
                    killed[0] = f"memory: process tree passed {mem_cap_gb:g} GB RSS"
                    for c in top.children(recursive=True):
                        c.kill()
                    proc.kill()
            except psutil.Error:
                pass
            time.sleep(0.25)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        killed[0] = f"time: still running after {timeout:g} s"
        for c in psutil.Process(proc.pid).children(recursive=True):
            c.kill()
        proc.kill()
        out, err = proc.communicate()
    thread.join(timeout=2)
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "rc": proc.returncode,
        "killed": killed[0],
        "peak_gb": {k: v / 2**30 for k, v in peak.items()},
        "stdout": out.decode(errors="replace")[-2000:],
        "stderr": "\n".join(
            ln
            for ln in err.decode(errors="replace").splitlines()
            if "error" in ln.lower() or "partial" in ln or "Traceback" in ln
        )[-2000:],
    }


def _num_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def forecast_folder(out: Path) -> Path | None:
    job = out / "city"
    if not job.is_dir():
        return None
    found = [p for p in job.iterdir() if p.name.startswith("as_of=")]
    return found[0] if found else None


def compare(a: Path, b: Path) -> float:
    x = pd.read_parquet(a / "forecast.parquet").sort_values(["series_id", "horizon_step"])
    y = pd.read_parquet(b / "forecast.parquet").sort_values(["series_id", "horizon_step"])
    assert len(x) == len(y), (len(x), len(y))
    assert (x["series_id"].astype(str).to_numpy() == y["series_id"].astype(str).to_numpy()).all()
    assert (x["timestamp"].to_numpy() == y["timestamp"].to_numpy()).all()
    cols = [c for c in x.columns if c.startswith("yhat")]
    return float(np.nanmax(np.abs(x[cols].to_numpy() - y[cols].to_numpy())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000, 300_000])
    ap.add_argument("--max-series", type=int, default=None, help="skip sizes above this")
    ap.add_argument(
        "--local-mem-gb",
        type=float,
        default=12.0,
        help="kill a run whose process tree passes this RSS (shared machine)",
    )
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    ap.add_argument(
        "--skip-local-above",
        type=int,
        default=None,
        help="do not run (a) above this many series (known to fail)",
    )
    ap.add_argument(
        "--engines",
        nargs="+",
        choices=["local", "spark"],
        default=["local", "spark"],
        help="run only these (the other engine's earlier row for the size is kept)",
    )
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/citybrain_spark_scale"))
    ap.add_argument("--driver-memory", default="4g", help="Spark driver JVM heap (local mode)")
    args = ap.parse_args()

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    store = work / "store"
    store.mkdir(exist_ok=True)
    uri_file = store / "model_uri.txt"
    if not uri_file.exists():
        uri_file.write_text(fit_model(store))
    model_uri = uri_file.read_text().strip()
    tracking = f"sqlite:///{store / 'mlflow.db'}"
    exe = str(Path(sys.executable).with_name("citybrain"))
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=tracking,
        CITYBRAIN_LEDGER_HOME=str(work / "anchors"),
        PYSPARK_SUBMIT_ARGS=f"--driver-memory {args.driver_memory} pyspark-shell",
        PYSPARK_PYTHON=sys.executable,
    )
    results_path = RESULTS / "spark_scale.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for n in args.sizes:
        if args.max_series and n > args.max_series:
            results[str(n)] = {"not_run": f"capped by --max-series {args.max_series}"}
            continue
        data = work / f"city_{n}.parquet"
        t0 = time.perf_counter()
        if not data.exists():
            write_city(n, data)
        print(
            f"{n} series: data {data.stat().st_size / 2**20:.0f} MiB "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        kept = {e: v for e, v in results.get(str(n), {}).items() if e in ("local", "spark")}
        row = {"series": n, "rows": _num_rows(data), "load_before": os.getloadavg()}
        row.update({e: v for e, v in kept.items() if e not in args.engines})
        base = [
            exe,
            "forecast",
            "--model",
            model_uri,
            "--data",
            str(data),
            "--name",
            "city",
            "--levels",
            "80,90",
            "--no-progress",
        ]
        for engine in args.engines:
            out = work / f"out_{engine}_{n}"
            shutil.rmtree(out, ignore_errors=True)
            if engine == "local" and args.skip_local_above and n > args.skip_local_above:
                row[engine] = {"not_run": f"skipped above {args.skip_local_above} series"}
                continue
            cmd = base + ["--out", str(out), "--engine", engine]
            if engine == "spark":
                cmd += ["--spark-master", "local[2]"]
            res = run_sampled(cmd, env, args.timeout, args.local_mem_gb)
            res["mem_cap_gb"] = args.local_mem_gb
            res["load_before"] = row["load_before"]
            folder = forecast_folder(out)
            res["completed"] = folder is not None and res["rc"] in (0, 3) and not res["killed"]
            if res["completed"]:
                manifest = json.loads((folder / "manifest.json").read_text())
                res["series_forecast"] = manifest["series_forecast"]
                res["series_skipped"] = len(manifest["series_skipped"])
                res["timings"] = manifest["timings"]
                res["series_per_s"] = n / res["wall_s"]
            row[engine] = res
            print(
                f"  {engine}: {res['wall_s']:.0f} s rc={res['rc']} killed={res['killed']} "
                f"peak={ {k: round(v, 2) for k, v in res['peak_gb'].items()} }",
                flush=True,
            )
        both = all((work / f"out_{e}_{n}").exists() for e in ("local", "spark"))
        if both and row.get("local", {}).get("completed") and row["spark"].get("completed"):
            row["max_abs_diff"] = compare(
                forecast_folder(work / f"out_local_{n}"), forecast_folder(work / f"out_spark_{n}")
            )
            print(f"  max abs diff {row['max_abs_diff']:.3g}", flush=True)
        row["load_after"] = os.getloadavg()
        results[str(n)] = row
        results_path.write_text(json.dumps(results, indent=1, default=str))
        for engine in ("local", "spark"):  # outputs of 300k series are large
            shutil.rmtree(work / f"out_{engine}_{n}", ignore_errors=True)
    report(results)


def report(results: dict, notes: str = "") -> None:
    done = {int(k): v for k, v in results.items() if "spark" in v}
    lines = [
        "# Batch scoring at city scale: single process vs `--engine spark` (local[2])",
        "",
        "Rerun: `.venv/bin/python experiments/spark_scale.py --sizes 10000 30000 100000 "
        "300000 --local-mem-gb 21 --timeout 1800`, then `--sizes 500000 --local-mem-gb 20` "
        "(where one process outgrows this machine; see the script's docstring).",
        "",
        f"Machine: {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GB RAM, "
        f"{platform.platform()}. The 1-minute load average before each run is in the table "
        "(2 cores: a load well above 2 means other jobs shared the machine and times are "
        "pessimistic). A run is killed when its process tree passes the memory cap in the "
        "table (`--local-mem-gb`), below the machine's RAM so that other jobs survive.",
        "",
        "Synthetic city: 15-minute data, 8 days per series (768 rows), daily + weekly pattern, "
        "noise, gaps (NaN stretches in 5% of series), ~0.1% broken series (stale, hourly, dead, "
        "5 rows) which both engines skip with the same reasons. Model: LightGBM (100 trees, "
        "horizon 12, 80/90% intervals), fitted once on 300 other series.",
        "",
        "| series | rows | engine | wall s | series/s | driver peak RSS GB | JVM peak GB "
        "| Python workers peak GB (sum / max) | outcome | memory cap GB | load avg before |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in sorted(done):
        row = done[n]
        for engine in ("local", "spark"):
            r = row.get(engine, {})
            if "not_run" in r:
                lines.append(
                    f"| {n:,} | {row['rows']:,} | {engine} | - | - | - | - | - | "
                    f"not run: {r['not_run']} | | |"
                )
                continue
            pk = r["peak_gb"]
            outcome = "ok" if r.get("completed") else f"FAILED ({r.get('killed') or r['rc']})"
            lines.append(
                f"| {n:,} | {row['rows']:,} | {engine} | {r['wall_s']:.0f} | "
                f"{n / r['wall_s']:.0f} | {pk['driver']:.2f} | "
                f"{pk['jvm']:.2f} | {pk['workers']:.2f} / {pk['worker_max']:.2f} | {outcome} | "
                f"{r.get('mem_cap_gb', '-')} | {r.get('load_before', row['load_before'])[0]:.1f} |"
            )
    not_run = [k for k, v in results.items() if "not_run" in v]
    lines[4:4] = ["## Targets (computed from the rows below)", "", *_targets(done), ""]
    lines += ["", "Equality (max abs difference of yhat and interval columns, same rows):", ""]
    for n in sorted(done):
        d = done[n].get("max_abs_diff")
        why = "" if _ok(done[n], "local") else " (the single process did not complete)"
        lines.append(f"* {n:,} series: " + (f"{d:.3g}" if d is not None else "not compared" + why))
    lines += ["", "Spark stage seconds (from each manifest's `timings`):", ""]
    for n in sorted(done):
        t = done[n].get("spark", {}).get("timings")
        if t:
            stages = ", ".join(f"{k.removesuffix('_seconds')} {v:.1f}" for k, v in t.items())
            lines.append(f"* {n:,} series: {stages}")
    if not_run:
        lines += [
            "",
            "Not run: " + "; ".join(f"{k} series ({results[k]['not_run']})" for k in not_run),
        ]
    if notes:
        lines[4:4] = [notes, ""]
    (RESULTS / "spark_scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _ok(row: dict, engine: str) -> bool:
    return bool(row.get(engine, {}).get("completed"))


def _targets(done: dict) -> list[str]:
    """Met / missed / not measured, for each target of the issue."""
    out = []
    if 10_000 in done and _ok(done[10_000], "local") and _ok(done[10_000], "spark"):
        ratio = done[10_000]["spark"]["wall_s"] / done[10_000]["local"]["wall_s"]
        t = done[10_000]["spark"].get("timings") or {}
        fixed = sum(v for k, v in t.items() if k != "score_write_seconds")
        why = (
            f"; Spark's stages other than scoring (session, model shipping, plan, status, "
            f"CSV) alone take {fixed:.1f} s against (a)'s {done[10_000]['local']['wall_s']:.1f} s"
            if t
            else ""
        )
        out.append(
            f"* (b) within 1.5x of (a) at 10k series: **{'MET' if ratio <= 1.5 else 'MISSED'}**"
            f" ({ratio:.1f}x{why})"
        )
    else:
        out.append("* (b) within 1.5x of (a) at 10k series: not measured")
    per = {n: done[n]["spark"]["wall_s"] / n for n in done if _ok(done[n], "spark")}
    if 30_000 in per and 300_000 in per:
        r = per[300_000] / per[30_000]
        out.append(
            f"* linear up to 300k (cost/series at 300k within 1.3x of 30k): "
            f"**{'MET' if r <= 1.3 else 'MISSED'}** ({r:.2f}x)"
        )
    else:
        sizes = ", ".join(f"{n:,}: {v * 1000:.1f} ms" for n, v in sorted(per.items()))
        out.append(
            f"* linear up to 300k: **not measured** (300k and/or 30k not run); "
            f"Spark cost per series so far: {sizes or 'none'}"
        )
    drv = {n: done[n]["spark"]["peak_gb"]["driver"] for n in per}
    if len(drv) >= 2:
        lo, hi = min(drv.values()), max(drv.values())
        out.append(
            f"* flat driver RSS: **{'MET' if hi <= 1.2 * lo else 'MISSED'}** "
            f"({', '.join(f'{n:,}: {v:.2f} GB' for n, v in sorted(drv.items()))})"
        )
    else:
        out.append(
            f"* flat driver RSS: **not measured** (one size only: "
            f"{', '.join(f'{n:,}: {v:.2f} GB' for n, v in drv.items()) or 'none'})"
        )
    beyond = [
        n
        for n in done
        if _ok(done[n], "spark")
        and not _ok(done[n], "local")
        and "not_run" not in done[n].get("local", {})
    ]
    out.append(
        "* (b) completes where (a) does not: "
        + (
            f"**MET** at {', '.join(f'{n:,}' for n in sorted(beyond))}"
            if beyond
            else "**not measured** (no size run where (a) fails)" + _local_growth(done)
        )
    )
    return out


def _local_growth(done: dict) -> str:
    """(a)'s peak memory per series at the largest size it completed, and the size at which
    it would pass this machine's RAM at that rate."""
    ok = [n for n in sorted(done) if _ok(done[n], "local")]
    if not ok:
        return ""
    n = ok[-1]
    peak = done[n]["local"]["peak_gb"]["tree"]
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"; (a) peaked at {peak:.1f} GB at {n:,} series ({peak / n * 1e6:.0f} MB per 1k "
        f"series), i.e. past this machine's {ram:.0f} GB from about "
        f"{ram / peak * n / 1000:,.0f}k series"
    )


if __name__ == "__main__":
    main()
