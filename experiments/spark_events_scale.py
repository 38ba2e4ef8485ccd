"""Event aggregation at scale: pandas ``events_to_grid`` vs ``events_to_grid_spark``.

Synthetic events (uniform over a 20 km x 20 km city, 30 days, written to Parquet in chunks of
``--chunk`` rows, never held in memory whole) are counted on a 500 m x 1 h grid (40 x 40 cells
x 720 hours = 1,152,000 output rows). Each engine runs in its own process; a monitor samples
the RSS of that process tree every 0.2 s (driver = the Python process, JVM = Spark's driver and
executors in local mode, workers = Python children of the JVM). Where both engines finish,
their outputs are compared row for row.

Rerun::

    .venv/bin/python experiments/spark_events_scale.py --sizes 1000000 10000000 \
        --master 'local[2]' --out experiments/results/spark_events_scale.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
LAT0, LON0 = 41.80, -87.75  # somewhere like Chicago
SIDE_M = 20_000.0
DAYS = 30
CELL_M = 500.0
FREQ = "h"


# ---------------------------------------------------------------------- data
def generate(n: int, folder: Path, chunk: int, seed: int = 0) -> Path:
    """``n`` events as Parquet files of ``chunk`` rows (skipped if already there)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from citybrain_ml.data.grid import M_PER_DEG

    folder = folder / f"events_{n}"
    done = folder / "_done"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-03-01T00:00:00", "us")
    lon_m = M_PER_DEG * np.cos(np.radians(LAT0))
    for i, lo in enumerate(range(0, n, chunk)):
        k = min(chunk, n - lo)
        # a few hot spots on top of a uniform background, like a city's incidents
        hot = rng.random(k) < 0.3
        north = np.where(hot, rng.normal(8000, 1500, k), rng.uniform(0, SIDE_M, k))
        east = np.where(hot, rng.normal(12000, 2000, k), rng.uniform(0, SIDE_M, k))
        north, east = np.clip(north, 0, SIDE_M - 1), np.clip(east, 0, SIDE_M - 1)
        micros = rng.integers(0, DAYS * 86_400_000_000, k)
        table = pa.table(
            {
                "timestamp": pa.array(start + micros.astype("timedelta64[us]")),
                "lat": LAT0 + north / M_PER_DEG,
                "lon": LON0 + east / lon_m,
            }
        )
        pq.write_table(table, folder / f"part-{i:05d}.parquet")
    done.write_text(str(n))
    return folder


# ---------------------------------------------------------------------- engines (child)
def run_pandas(data: Path, out: Path) -> dict:
    from citybrain_ml.data.grid import events_to_grid

    t0 = time.perf_counter()
    events = pd.read_parquet(data)
    t1 = time.perf_counter()
    ds = events_to_grid(events, cell_size=CELL_M, freq=FREQ)
    t2 = time.perf_counter()
    ds.values.to_parquet(out)
    return {"read_s": t1 - t0, "grid_s": t2 - t1, "rows_out": len(ds.values)}


def run_spark(data: Path, out: Path, master: str, driver_memory: str) -> dict:
    from citybrain_ml.spark import get_spark
    from citybrain_ml.spark.events import events_to_grid_spark

    t0 = time.perf_counter()
    spark = get_spark(
        master,
        app_name="events-scale",
        conf={
            "spark.driver.memory": driver_memory,
            "spark.sql.shuffle.partitions": "8",
            "spark.local.dir": str(out.parent / "spark-tmp"),
        },
    )
    spark.sparkContext.setLogLevel("ERROR")
    t1 = time.perf_counter()
    events = spark.read.parquet(str(data))
    result = events_to_grid_spark(events, cell_size=CELL_M, freq=FREQ)
    result.values.write.mode("overwrite").parquet(str(out))
    t2 = time.perf_counter()
    spark.stop()
    return {"startup_s": t1 - t0, "grid_s": t2 - t1}


def child(args) -> None:
    data, out = Path(args.data), Path(args.output)
    if args.engine == "pandas":
        result = run_pandas(data, out)
    else:
        result = run_spark(data, out, args.master, args.driver_memory)
    print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------------- monitor (parent)
def _tree_rss(proc) -> dict:
    import psutil

    parts = {"driver": 0, "jvm": 0, "workers": 0}
    try:
        parts["driver"] = proc.memory_info().rss
        for c in proc.children(recursive=True):
            try:
                name = c.name()
                rss = c.memory_info().rss
            except psutil.Error:
                continue
            parts["jvm" if "java" in name else "workers"] += rss
    except psutil.Error:
        pass
    return parts


def _kill_tree(proc, popen) -> None:
    import psutil

    try:
        for c in proc.children(recursive=True):
            c.kill()
    except psutil.Error:
        pass
    popen.kill()


def measure(cmd: list[str], timeout: float, mem_cap_gb: float | None = None) -> dict:
    import psutil

    t0 = time.perf_counter()
    popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc = psutil.Process(popen.pid)
    peak = {"driver": 0, "jvm": 0, "workers": 0, "total": 0}
    stop = threading.Event()
    capped = []

    def poll():
        while not stop.is_set():
            parts = _tree_rss(proc)
            for k, v in parts.items():
                peak[k] = max(peak[k], v)
            peak["total"] = max(peak["total"], sum(parts.values()))
            if mem_cap_gb and sum(parts.values()) > mem_cap_gb * 1024**3:
                capped.append(True)  # stopped before the machine's OOM killer picks a victim
                _kill_tree(proc, popen)
                return
            time.sleep(0.2)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        stdout, stderr = popen.communicate(timeout=timeout)
        status = "ok" if popen.returncode == 0 else f"failed (exit {popen.returncode})"
    except subprocess.TimeoutExpired:
        _kill_tree(proc, popen)
        stdout, stderr = popen.communicate()
        status = f"timed out after {timeout:.0f} s"
    stop.set()
    thread.join()
    if capped:
        status = f"killed: process tree passed {mem_cap_gb:g} GB RSS"
    wall = time.perf_counter() - t0
    result = {}
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
    if status != "ok":
        result["error"] = (stderr or "").strip().splitlines()[-3:]
    return {"status": status, "wall_s": wall, "peak": peak, **result}


def compare(pandas_out: Path, spark_out: Path) -> str:
    a = pd.read_parquet(pandas_out)
    b = pd.read_parquet(spark_out)
    b["timestamp"] = b["timestamp"].astype(a["timestamp"].dtype)
    b = b.sort_values(["series_id", "timestamp"], kind="stable").reset_index(drop=True)
    try:
        pd.testing.assert_frame_equal(a, b, check_dtype=False)
    except AssertionError as exc:
        return "DIFFERENT: " + str(exc).splitlines()[0]
    return f"identical ({len(a):,} rows, {int(a['value'].sum()):,} events)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--engines", nargs="+", default=["pandas", "spark"])
    p.add_argument("--master", default="local[2]")
    p.add_argument("--driver-memory", default="4g")
    p.add_argument("--chunk", type=int, default=5_000_000)
    p.add_argument("--work", default="/tmp/citybrain_events_scale")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument(
        "--mem-cap-gb",
        type=float,
        default=None,
        help="kill a run whose process tree passes this RSS (below the machine's RAM)",
    )
    p.add_argument("--out", default=str(REPO / "experiments/results/spark_events_scale.md"))
    p.add_argument("--not-run", default="", help="note on the sizes not run and why")
    p.add_argument("--from-log", help="rebuild the report from a previous run's stdout")
    # child mode
    p.add_argument("--engine")
    p.add_argument("--data")
    p.add_argument("--output")
    args = p.parse_args()
    if args.engine:
        child(args)
        return

    import psutil

    if args.from_log:  # e.g. after a size was stopped by hand
        rows, verdicts = [], {}
        for line in Path(args.from_log).read_text().splitlines():
            if line.startswith("{"):
                rows.append(json.loads(line))
            elif line.startswith(("identical", "DIFFERENT", "not compared")):
                verdicts[rows[-1]["n"]] = line
        for r in rows:
            r["equal"] = verdicts.get(r["n"], "not compared (an engine did not finish)")
        args.sizes = sorted({r["n"] for r in rows})
        write_report(rows, args, os.getloadavg(), psutil)
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    rows = []
    for n in args.sizes:
        t0 = time.perf_counter()
        data = generate(n, work, args.chunk)
        gen_s = time.perf_counter() - t0
        outs = {}
        for engine in args.engines:
            out = work / (f"out_{engine}_{n}" + (".parquet" if engine == "pandas" else ""))
            cmd = [sys.executable, __file__, "--engine", engine, "--data", str(data)]
            cmd += ["--output", str(out), "--master", args.master]
            cmd += ["--driver-memory", args.driver_memory]
            load = os.getloadavg()[0]
            res = measure(cmd, args.timeout, args.mem_cap_gb)
            res.update(engine=engine, n=n, gen_s=gen_s, load=load)
            print(json.dumps(res), flush=True)
            rows.append(res)
            if res["status"] == "ok":
                outs[engine] = out
        if len(outs) == 2:
            verdict = compare(outs["pandas"], outs["spark"])
        else:
            verdict = "not compared (an engine did not finish)"
        for r in rows:
            if r["n"] == n:
                r["equal"] = verdict
        print(verdict, flush=True)
    write_report(rows, args, load_before, psutil)


def write_report(rows, args, load_before, psutil) -> None:
    gib = 1024**3
    mem = psutil.virtual_memory()
    lines = [
        "# Event aggregation at scale: pandas vs Spark",
        "",
        "Rerun: `.venv/bin/python experiments/spark_events_scale.py --sizes "
        + " ".join(str(n) for n in args.sizes)
        + f" --master '{args.master}'"
        + (f" --mem-cap-gb {args.mem_cap_gb:g}" if args.mem_cap_gb else "")
        + " --out experiments/results/spark_events_scale.md`",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, "
        f"{mem.total / gib:.0f} GiB RAM ({mem.available / gib:.0f} GiB available at the end), "
        f"Python {platform.python_version()}, pandas {pd.__version__}. The 1-minute load "
        "before each run is in the table (2 CPUs: a load well above 2 means other jobs shared "
        "the machine and wall times are inflated).",
        "Load average at start (with --from-log: when the report was rebuilt): "
        f"{load_before[0]:.1f} / {load_before[1]:.1f} / "
        f"{load_before[2]:.1f} (1/5/15 min); at the end: "
        + " / ".join(f"{x:.1f}" for x in os.getloadavg())
        + ".",
        "",
        f"Task: synthetic events over {SIDE_M / 1000:.0f} km x {SIDE_M / 1000:.0f} km and "
        f"{DAYS} days -> counts per {CELL_M:.0f} m cell per hour, zeros included "
        f"(40 x 40 cells x {DAYS * 24} h = {40 * 40 * DAYS * 24:,} rows). "
        f"Spark: `{args.master}`, driver memory {args.driver_memory}, reads the Parquet files "
        "and writes the grid to Parquet; pandas: `pd.read_parquet` + `events_to_grid` + "
        "`to_parquet`. Peak RSS sampled every 0.2 s with psutil over the engine's process "
        "tree (Spark: Python driver, JVM, Python workers; the total is the peak of their sum).",
        "",
        "| events | engine | status | wall s | engine s | peak RSS total GiB | driver GiB | "
        "JVM GiB | workers GiB | load (1 min) | outputs |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        pk = r["peak"]
        inner = r.get("grid_s")
        if r["engine"] == "pandas" and "read_s" in r:
            inner = r["read_s"] + r["grid_s"]
        lines.append(
            f"| {r['n']:,} | {r['engine']} | {r['status']} | {r['wall_s']:.1f} | "
            + (f"{inner:.1f}" if inner is not None else "-")
            + f" | {pk['total'] / gib:.2f} | {pk['driver'] / gib:.2f} | {pk['jvm'] / gib:.2f} | "
            f"{pk['workers'] / gib:.2f} | {r['load']:.1f} | {r.get('equal', '')} |"
        )
    lines += [
        "",
        "`wall s` is the whole child process (Python imports, for Spark also the session/JVM "
        "start: "
        + ", ".join(f"{r['startup_s']:.0f} s at {r['n']:,}" for r in rows if "startup_s" in r)
        + "); `engine s` is read + aggregation + write of the grid inside the process.",
    ]
    if args.not_run:
        lines += ["", "Not run: " + args.not_run]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
