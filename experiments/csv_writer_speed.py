"""Published-forecast CSV: ``citybrain_ml.data.csv_writer.csv_bytes`` vs pandas ``to_csv``.

Forecast-shaped frames as ``citybrain forecast`` publishes them (string ids, 12 forecast
timestamps, ``horizon_step``, ``yhat`` and 0 or 4 interval columns), for 10k and 100k series.
Each writer runs ``--repeats`` times on the same frame in this process; the best time is
reported, with the ratio and a byte-for-byte comparison of the two outputs.

Rerun::

    .venv/bin/python experiments/csv_writer_speed.py --series 10000 100000
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.data.csv_writer import csv_bytes

RESULTS = Path(__file__).resolve().parent / "results" / "csv_writer_speed.md"
HORIZON = 12


def forecast_frame(n_series: int, levels: int, seed: int = 0) -> pd.DataFrame:
    """``series_id, timestamp, horizon_step, yhat`` (+ ``yhat_lo_XX``/``yhat_hi_XX``)."""
    rng = np.random.default_rng(seed)
    rows = n_series * HORIZON
    ids = np.array([f"s{i:06d}" for i in range(n_series)], dtype=object)
    times = pd.date_range("2024-04-01", periods=HORIZON, freq="15min").to_numpy()
    frame = pd.DataFrame(
        {
            "series_id": pd.array(np.repeat(ids, HORIZON), dtype="str"),
            "timestamp": np.tile(times, n_series),
            "horizon_step": np.tile(np.arange(1, HORIZON + 1), n_series),
            "yhat": rng.gamma(4.0, 10.0, rows),
        }
    )
    for level in (80, 90)[: levels // 2]:
        width = rng.uniform(1, 15, rows)
        frame[f"yhat_lo_{level}"] = frame["yhat"] - width
        frame[f"yhat_hi_{level}"] = frame["yhat"] + width
    return frame


def best_of(fn, repeats: int) -> tuple[float, bytes]:
    best, out = np.inf, b""
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    rows = []
    for n in args.series:
        for levels in (0, 4):
            frame = forecast_frame(n, levels)
            t_pd, a = best_of(lambda f=frame: f.to_csv(index=False).encode("utf-8"), args.repeats)
            t_cb, b = best_of(lambda f=frame: csv_bytes(f), args.repeats)
            rows.append((n, len(frame), levels, t_pd, t_cb, a == b, len(a)))
            print(rows[-1], flush=True)
    load = os.getloadavg()
    lines = [
        "# Published-forecast CSV: `csv_bytes` vs pandas `to_csv`",
        "",
        f"Produced by `python experiments/csv_writer_speed.py --series "
        f"{' '.join(map(str, args.series))} --repeats {args.repeats}` on "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, pandas {pd.__version__}; load average at the end "
        f"{load[0]:.1f}. Frames shaped like a published forecast (string ids, {HORIZON} "
        "timestamps, steps, `yhat` and 0 or 4 interval columns); best of the repeats, one "
        "process, same frame for both writers.",
        "",
        "| series | rows | interval columns | pandas to_csv s | csv_bytes s | speed-up | "
        "bytes identical | MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, r, lv, t_pd, t_cb, same, size in rows:
        lines.append(
            f"| {n:,} | {r:,} | {lv} | {t_pd:.3f} | {t_cb:.3f} | {t_pd / t_cb:.1f}x | "
            f"{'yes' if same else 'NO'} | {size / 1e6:.1f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
