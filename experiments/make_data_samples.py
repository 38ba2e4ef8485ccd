"""Cut the small real slices in ``data_samples/`` from the shared datasets (rerunnable).

Every slice keeps the shared folder's file layout and format, so the same loaders read it
with ``root="data_samples"``. Run from the repository root:

    .venv/bin/python experiments/make_data_samples.py [--shared ../shared/data]

What is kept from each file is written to ``data_samples/README.md`` by hand; keep the
two in sync when changing a slice here.
"""

from __future__ import annotations

import argparse
import shutil
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "data_samples"


def connected_subset(adj: np.ndarray, size: int, allowed: np.ndarray) -> list[int]:
    """Breadth-first walk from the best-connected allowed node until ``size`` nodes."""
    sym = (adj + adj.T) > 0
    np.fill_diagonal(sym, False)
    degree = np.where(allowed, sym.sum(1), -1)
    seen, queue = [int(degree.argmax())], deque([int(degree.argmax())])
    while queue and len(seen) < size:
        node = queue.popleft()
        for nb in np.flatnonzero(sym[node] & allowed):
            if nb not in seen and len(seen) < size:
                seen.append(int(nb))
                queue.append(int(nb))
    return sorted(seen)


def sz_taxi(src: Path, dst: Path, n_roads: int = 12, days: int = 14) -> None:
    data = np.load(src / "sz_speed_stcgcn.npz")["data"]
    adj = pd.read_csv(src / "sz_adj.csv", header=None).to_numpy()
    # roads that are mostly zeros (no taxis) make a poor quickstart; keep busy roads
    allowed = (data[:, :, 0] == 0).mean(0) < 0.01
    roads = connected_subset(adj, n_roads, allowed)
    np.savez_compressed(
        dst / "sz_speed_stcgcn.npz",
        data=data[: days * 96, roads, :],
        road_index=np.array(roads),
    )
    sub = pd.DataFrame(adj[np.ix_(roads, roads)].astype(int))
    sub.to_csv(dst / "sz_adj.csv", header=False, index=False)


def los_loop(src: Path, dst: Path, n_sensors: int = 12, days: int = 2) -> None:
    speed = pd.read_csv(src / "los_speed.csv")
    adj = pd.read_csv(src / "los_adj.csv", header=None).to_numpy()
    sensors = connected_subset(adj, n_sensors, np.ones(len(adj), bool))
    speed.iloc[: days * 288, sensors].to_csv(dst / "los_speed.csv", index=False)
    pd.DataFrame(adj[np.ix_(sensors, sensors)]).to_csv(
        dst / "los_adj.csv", header=False, index=False
    )


BMRCL_STATIONS = [
    "Nadaprabhu Kempegowda Station, Majestic",
    "Indiranagar",
    "Jayanagar",
    "Electronic City",
]


def bengaluru(src: Path, dst: Path) -> None:
    # Aug 1-18 and Sep 1-7: keeps the Aug 19-31 gap; Electronic City opened Aug 11
    for name in ("station-hourly.parquet", "station-hourly-exits.parquet"):
        raw = pd.read_parquet(src / name)
        keep = raw["Station"].isin(BMRCL_STATIONS) & (raw["Date"] <= "2025-09-07")
        raw[keep].reset_index(drop=True).to_parquet(dst / name, index=False)
    for name in ("station-codes.csv", "LICENSE"):
        shutil.copy(src / name, dst / name)


def i94(src: Path, dst: Path) -> None:
    raw = pd.read_csv(src / "Metro_Interstate_Traffic_Volume.csv")
    # 2012-12-18..2013-01-07: Christmas + New Year holidays, duplicate-timestamp rows, gaps
    ts = pd.to_datetime(raw["date_time"])
    keep = (ts >= "2012-12-18") & (ts < "2013-01-08")
    raw[keep].to_csv(dst / "Metro_Interstate_Traffic_Volume.csv", index=False)


def beijing_multisite(src: Path, dst: Path) -> None:
    stations = ["Dongsi", "Aotizhongxin"]
    for station in stations:
        name = f"PRSA_Data_{station}_20130301-20170228.csv"
        raw = pd.read_csv(src / name, keep_default_na=False, dtype=str)
        day = raw["year"] + "-" + raw["month"].str.zfill(2) + "-" + raw["day"].str.zfill(2)
        # 2016-02-22..2016-03-13 (21 days) straddles the benchmark's 2016-03-01 test start
        keep = (day >= "2016-02-22") & (day <= "2016-03-13")
        raw[keep].to_csv(dst / name, index=False)
    coords = pd.read_csv(src / "station_coordinates.csv")
    coords[coords["station"].isin(stations)].to_csv(dst / "station_coordinates.csv", index=False)


def beijing_pm25(src: Path, dst: Path) -> None:
    name = "PRSA_data_2010.1.1-2014.12.31.csv"
    raw = pd.read_csv(src / name, keep_default_na=False, dtype=str)
    keep = (raw["year"] == "2014") & raw["month"].isin(["1"]) & (raw["day"].astype(int) <= 21)
    raw[keep].to_csv(dst / name, index=False)


def accident_grid(src: Path, dst: Path, size: int = 6, weeks: int = 8) -> None:
    npz = np.load(src / "chicago_risk_20x20_hourly.npz")
    mask = npz["risk_mask"]
    # the size x size window holding the most risk-mask cells
    best = max(
        ((r, c) for r in range(20 - size + 1) for c in range(20 - size + 1)),
        key=lambda rc: mask[rc[0] : rc[0] + size, rc[1] : rc[1] + size].sum(),
    )
    rows = np.arange(best[0], best[0] + size)
    cols = np.arange(best[1], best[1] + size)
    hours = weeks * 7 * 24
    cells = np.ix_(np.arange(hours), rows, cols)
    np.savez_compressed(
        dst / "chicago_risk_20x20_hourly.npz",
        risk=npz["risk"][cells],
        inflow=npz["inflow"][cells],
        outflow=npz["outflow"][cells],
        temperature=npz["temperature"][:hours],
        weather_onehot=npz["weather_onehot"][:hours],
        holiday=npz["holiday"][:hours],
        hour=npz["hour"][:hours],
        dow=npz["dow"][:hours],
        risk_mask=mask[np.ix_(rows, cols)],
        row_index=rows,
        col_index=cols,
        start=np.array("2016-02-01"),
    )


def chicago_crime(src: Path, dst: Path) -> None:
    name = "chicago_crime_2016_2017.csv.gz"
    raw = pd.read_csv(src / name, dtype=str)
    raw[raw["datetime"] < "2016-01-08"].to_csv(dst / name, index=False)  # first week of 2016


def toronto(src: Path, dst: Path) -> None:
    for name in ("train.csv.gz", "test.csv.gz"):
        raw = pd.read_csv(src / name, dtype=str, keep_default_na=False)
        # January 2016, both parts (the package's split is random, not by time)
        raw[raw["occurrencedate"].str.startswith("2016/01")].to_csv(dst / name, index=False)


SLICES = {
    ("traffic", "sz_taxi"): sz_taxi,
    ("traffic", "los_loop"): los_loop,
    ("traffic", "bengaluru_metro_bmrcl"): bengaluru,
    ("traffic", "metro_interstate_i94"): i94,
    ("air", "beijing_multisite"): beijing_multisite,
    ("air", "beijing_pm25_2010_2014"): beijing_pm25,
    ("incidents", "chicago_accident_risk_gsnet_grid"): accident_grid,
    ("incidents", "chicago_crime_2016_2017"): chicago_crime,
    ("incidents", "toronto_mci"): toronto,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    for (group, folder), cut in SLICES.items():
        dst = OUT / group / folder
        dst.mkdir(parents=True, exist_ok=True)
        cut(args.shared / group / folder, dst)
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"data_samples: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
