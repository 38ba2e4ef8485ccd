"""Cut the own-data walkthrough files from the Bengaluru metro slice (a metro's own export).

Writes ``data_samples/own_data/metro_station_flows.csv`` -- one row per hour in service and
one column per station and direction (``KGWA/in``, ``KGWA/out``, ...), the way a metro's
operations team exports it: no rows while the metro is closed (hours with no entry or exit
at any of the four stations in the whole slice) -- and ``metro_station_graph.csv``, a 4 x 4
station matrix (header and first column = station codes) weighted by each pair's share of
the trips between the four stations, from the shared origin-destination table.

    .venv/bin/python experiments/make_own_data_sample.py --shared ../shared/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

SAMPLE = Path("data_samples/traffic/bengaluru_metro_bmrcl")
OUT = Path("data_samples/own_data")
CODES = {
    "Nadaprabhu Kempegowda Station, Majestic": "KGWA",
    "Indiranagar": "IDN",
    "Jayanagar": "JAYN",
    "Electronic City": "ETCT",
}


def flows() -> pd.DataFrame:
    parts = []
    for name, direction in (
        ("station-hourly.parquet", "in"),
        ("station-hourly-exits.parquet", "out"),
    ):
        raw = pd.read_parquet(SAMPLE / name)
        raw = raw.assign(
            time=pd.to_datetime(raw["Date"]) + pd.to_timedelta(raw["Hour"], unit="h"),
            column=raw["Station"].map(CODES) + "/" + direction,
        )
        parts.append(raw.pivot_table(index="time", columns="column", values="Ridership"))
    wide = pd.concat(parts, axis=1).sort_index()
    hours = wide.index.hour
    busy = wide.fillna(0).groupby(hours).sum().sum(axis=1)
    closed = busy.index[busy == 0]
    return wide[~hours.isin(closed)]


def graph(shared: Path) -> pd.DataFrame:
    od = pd.read_parquet(shared / "traffic/bengaluru_metro_bmrcl/stationpair-hourly.parquet")
    od = od[od["Origin Station"].isin(CODES) & od["Destination Station"].isin(CODES)]
    trips = od.groupby(["Origin Station", "Destination Station"])["Ridership"].sum()
    mat = trips.unstack(fill_value=0).reindex(index=list(CODES), columns=list(CODES), fill_value=0)
    mat = mat + mat.T.to_numpy()
    for s in CODES:
        mat.loc[s, s] = 0
    mat = (mat / mat.to_numpy().max()).round(4)
    mat.index = mat.columns = [CODES[s] for s in CODES]
    return mat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default="../shared/data", type=Path)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    wide = flows()
    wide.index.name = "time"
    wide.astype("Int64").to_csv(OUT / "metro_station_flows.csv")
    graph(args.shared).to_csv(OUT / "metro_station_graph.csv", index_label="station")
    print(f"{len(wide)} rows x {wide.shape[1]} series; closed hours dropped")


if __name__ == "__main__":
    main()
