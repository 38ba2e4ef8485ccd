"""Issue 4 model choices on a validation period inside the training data (no test-year data).

Data: UCI Beijing Multi-Site Air Quality, ``<root>/air/beijing_multisite``, data up to
2016-02-29 23:00 only (the benchmark's training period).
Split: fit on 2013-03-01 .. 2015-08-31; the CQR calibration tail is 2015-09-01 .. 2015-11-30
(``calibration_refit=False``: one fit, the tail only calibrates); validation targets are
2015-12-01 .. 2016-02-29, origins from 2015-11-30 23:00 every ``--stride`` h while all 72
targets lie in the validation period.
Compared: LightGBM ``pooled`` vs ``hybrid`` (direct boosters for steps 1..k), history mode
(weather at the origin only), against persistence, on the same rows. Metric: PM2.5 MAE
(ug/m3) and P5..P95 coverage after CQR, per horizon step.

Run: ``.venv/bin/python experiments/air_beijing_validation.py --stations 4`` (a few minutes);
writes ``experiments/results/air_beijing_validation.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.data.air import distance_edges, load_beijing_multisite
from citybrain_ml.features.gaps import interpolate_short_gaps
from citybrain_ml.models.lightgbm import quantile_column

try:  # run as a script from the repository root
    from air_beijing import COVARIATES, REPORT_STEPS, lightgbm, log, markdown, persistence
except ImportError:  # imported as experiments.air_beijing_validation
    from experiments.air_beijing import (
        COVARIATES,
        REPORT_STEPS,
        lightgbm,
        log,
        markdown,
        persistence,
    )

FIT_END = pd.Timestamp("2015-08-31 23:00")
VALID_ORIGIN = pd.Timestamp("2015-11-30 23:00")
VALID_END = pd.Timestamp("2016-02-29 23:00")
HORIZON = 72
OUT = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="data root (default ../shared/data)")
    parser.add_argument("--stations", type=int, default=4, help="first N stations (speed)")
    parser.add_argument("--stride", type=int, default=6)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--direct-rows", type=int, default=50_000)
    parser.add_argument("--direct-steps", type=int, nargs="+", default=[3, 6])
    args = parser.parse_args()
    args.level_target = False

    ds = load_beijing_multisite(args.root)
    keep = sorted(ds.values["series_id"].unique())[: args.stations]
    values = ds.values[ds.values["series_id"].isin(keep) & (ds.values["timestamp"] <= VALID_END)]
    values = interpolate_short_gaps(values, 3, columns=COVARIATES)
    values = values.drop(columns=[c for c in values if c.endswith("_imputed")])
    adjacency = distance_edges(ds.sensors[ds.sensors["series_id"].isin(keep)], 40.0)
    fit_df = values[values["timestamp"] <= VALID_ORIGIN]
    calib_steps = int((VALID_ORIGIN - FIT_END) / pd.Timedelta(hours=1))
    times = pd.DatetimeIndex(np.sort(values["timestamp"].unique()))
    last = times.get_loc(VALID_END) - HORIZON
    orig = times[times.get_loc(VALID_ORIGIN) : last + 1 : args.stride]
    truth = values[["series_id", "timestamp", "value"]]

    frames = {"persistence": persistence(values, orig, HORIZON)}
    configs = {"pooled": {}} | {
        f"hybrid_{k}": {"strategy": "hybrid", "direct_steps": k} for k in args.direct_steps
    }
    fit_s = {}
    for name, extra in configs.items():
        model = lightgbm(
            args,
            adjacency,
            future=False,
            direct_max_train_rows=args.direct_rows,
            calibration_steps=calib_steps,
            calibration_refit=False,
            **extra,
        )
        start = time.perf_counter()
        model.fit(fit_df, freq="h")
        fit_s[name] = time.perf_counter() - start
        frames[name] = model.historical_forecasts(values, orig, HORIZON)
        log(f"{name}: fit+calibrate {fit_s[name]:.0f} s")

    scored = {m: f.merge(truth, on=["series_id", "timestamp"]) for m, f in frames.items()}
    keys = ["origin", "series_id", "horizon_step"]
    ok = None
    for f in scored.values():
        k = f.loc[f["value"].notna() & f["yhat"].notna(), keys]
        ok = k if ok is None else ok.merge(k, on=keys)
    rows = []
    lo, hi = quantile_column(0.05), quantile_column(0.95)
    for m, f in scored.items():
        f = f.merge(ok, on=keys)
        f = f[f["horizon_step"].isin(REPORT_STEPS)]
        err = (f["yhat"] - f["value"]).abs().groupby(f["horizon_step"]).mean()
        row = {"model": m, **{f"mae_{h}": err.loc[h] for h in REPORT_STEPS}}
        if lo in f:
            inside = (f["value"] >= f[lo]) & (f["value"] <= f[hi])
            cov = 100 * inside.groupby(f["horizon_step"]).mean()
            row |= {f"cov90_{h}": cov.loc[h] for h in REPORT_STEPS}
        row["fit_s"] = fit_s.get(m, np.nan)
        rows.append(row)
    table = pd.DataFrame(rows)
    text = f"""# Beijing PM2.5: validation of model choices (issue 4)

Generated by `.venv/bin/python experiments/air_beijing_validation.py --stations {args.stations}
--stride {args.stride} --rows {args.rows} --trees {args.trees} --jobs {args.jobs}
--direct-rows {args.direct_rows} --direct-steps {" ".join(map(str, args.direct_steps))}`.
No test-year (2016-03-01 ..) data is read.

* Stations: {", ".join(keep)}.
* Fit on targets 2013-03-01 .. {FIT_END:%Y-%m-%d %H:%M}; CQR calibration tail
  {FIT_END + pd.Timedelta(hours=1):%Y-%m-%d %H:%M} .. {VALID_ORIGIN:%Y-%m-%d %H:%M} (one fit);
  validation targets {VALID_ORIGIN + pd.Timedelta(hours=1):%Y-%m-%d %H:%M} ..
  {VALID_END:%Y-%m-%d %H:%M}, {len(orig)} origins every {args.stride} h; history mode
  (weather at the origin only). Models otherwise as in `experiments/air_beijing.py`, with
  fewer rows/trees for speed.
* MAE in ug/m3; cov90 = % of targets inside P5..P95 after CQR; fit_s includes calibration.

{markdown(table, index=False)}
"""
    OUT.mkdir(exist_ok=True)
    (OUT / "air_beijing_validation.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
