"""Station graphs from files (matrix, pickle, edge list), expanded to multi-variable series,
or built from coordinates."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.data import DataValidationError, load_los_loop
from citybrain_ml.data.adjacency import (
    adjacency_from_coordinates,
    expand_sensors,
    expand_station_graph,
    haversine_m,
    read_adjacency,
    station_series_ids,
)

IDS = ["a", "b", "c"]
MATRIX = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 2.0], [0.0, 0.5, 0.0]])
EXPECTED = [("a", "b", 1.0), ("b", "a", 1.0), ("b", "c", 2.0), ("c", "b", 0.5)]


def _triples(edges: pd.DataFrame) -> list:
    return sorted(edges[["src", "dst", "weight"]].itertuples(index=False, name=None))


@pytest.mark.parametrize("layout", ["bare", "header", "header_index", "index"])
def test_read_dense_csv_with_or_without_id_margins(tmp_path, layout):
    path = tmp_path / "adj.csv"
    frame = pd.DataFrame(MATRIX, index=IDS, columns=IDS)
    frame.to_csv(path, header=layout in ("header", "header_index"), index="index" in layout)
    ids = IDS if layout == "bare" else None
    assert _triples(read_adjacency(path, ids=ids)) == EXPECTED


def test_read_csv_with_numeric_id_header(tmp_path):
    # METR-LA style: the ids are numbers, told apart from weights by being distinct integers
    path = tmp_path / "adj.csv"
    pd.DataFrame(MATRIX, columns=[773869, 767541, 767542]).to_csv(path, index=False)
    assert sorted(read_adjacency(path)["src"].unique()) == ["767541", "767542", "773869"]


def test_file_order_wins_over_given_order(tmp_path):
    path = tmp_path / "adj.csv"
    pd.DataFrame(MATRIX, columns=IDS).to_csv(path, index=False)
    assert _triples(read_adjacency(path, ids=["c", "a", "b"])) == EXPECTED


def test_npy_npz_and_benchmark_pickle(tmp_path):
    np.save(tmp_path / "adj.npy", MATRIX)
    assert _triples(read_adjacency(tmp_path / "adj.npy", ids=IDS)) == EXPECTED
    np.savez(tmp_path / "adj.npz", adj_mx=MATRIX, sensor_ids=np.array(IDS))
    assert _triples(read_adjacency(tmp_path / "adj.npz")) == EXPECTED
    # (ids, id_to_index, matrix) as DCRNN's adj_mx.pkl; id_to_index decides the row order
    with open(tmp_path / "adj_mx.pkl", "wb") as fh:
        pickle.dump((["c", "a", "b"], {"a": 0, "b": 1, "c": 2}, MATRIX), fh)
    assert _triples(read_adjacency(tmp_path / "adj_mx.pkl")) == EXPECTED


def test_edge_list_csv_with_aliases_and_default_weight(tmp_path):
    path = tmp_path / "edges.csv"
    pd.DataFrame({"from": ["a", "b", "a"], "to": ["b", "c", "a"]}).to_csv(path, index=False)
    edges = read_adjacency(path, ids=IDS)
    assert _triples(edges) == [("a", "b", 1.0), ("b", "c", 1.0)]  # self-loop dropped


def test_errors_name_the_file_and_the_problem(tmp_path):
    path = tmp_path / "adj.csv"
    # 2 x 3 weights: the margin is no id list (0.0 repeats), so the matrix is not square
    pd.DataFrame([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]).to_csv(path, index=False, header=False)
    with pytest.raises(DataValidationError, match=r"adj\.csv: adjacency matrix is not square"):
        read_adjacency(path, ids=IDS[:2])
    np.save(tmp_path / "adj.npy", MATRIX)
    with pytest.raises(DataValidationError, match=r"adj\.npy: the 3 x 3 matrix has no ids"):
        read_adjacency(tmp_path / "adj.npy")
    with pytest.raises(DataValidationError, match=r"adj\.npy: adjacency matrix is 3 x 3 but 2"):
        read_adjacency(tmp_path / "adj.npy", ids=IDS[:2])
    np.save(tmp_path / "rect.npy", MATRIX[:2])
    with pytest.raises(DataValidationError, match=r"rect\.npy: .*not square: shape \(2, 3\)"):
        read_adjacency(tmp_path / "rect.npy", ids=IDS)
    pd.DataFrame(MATRIX, columns=IDS).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"in the file only \['c'\], given only \['z'\]"):
        read_adjacency(path, ids=["a", "b", "z"])
    bad = pd.DataFrame(MATRIX, columns=IDS).astype(object)
    bad.iat[1, 2] = "x"
    bad.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"non-numeric cell\(s\): line 3 column 3: 'x'"):
        read_adjacency(path)
    edges = tmp_path / "edges.csv"
    pd.DataFrame({"src": ["a", "q"], "dst": ["b", "a"]}).to_csv(edges, index=False)
    with pytest.raises(DataValidationError, match=r"edges\.csv: 1 edge.*line\(s\) 3.*q -> a"):
        read_adjacency(edges, ids=IDS)
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        read_adjacency(tmp_path / "nowhere.csv")


def test_expand_station_graph_to_in_out_series():
    stations = pd.DataFrame({"src": ["A"], "dst": ["B"], "weight": [0.5]})
    edges = expand_station_graph(stations, ["in", "out"])
    assert _triples(edges) == [("A/in", "B/in", 0.5), ("A/out", "B/out", 0.5)]
    linked = expand_station_graph(
        stations, ["in", "out"], separator="_", link_variables=0.1, stations=["A", "B", "C"]
    )
    assert ("C_in", "C_out", 0.1) in _triples(linked) and ("C_out", "C_in", 0.1) in _triples(linked)
    assert len(linked) == 2 + 3 * 2
    assert station_series_ids(["A", "B"], ["in", "out"]) == ["A/in", "A/out", "B/in", "B/out"]
    sensors = expand_sensors(pd.DataFrame({"series_id": ["A", "B"], "lat": [1.0, 2.0]}), ["in"])
    assert sensors.to_dict("list") == {
        "series_id": ["A/in", "B/in"],
        "station": ["A", "B"],
        "variable": ["in", "in"],
        "lat": [1.0, 2.0],
    }


def test_adjacency_from_coordinates_threshold_knn_and_weights():
    # one degree of latitude is ~111.2 km; stations on a meridian at 0, 1, 3 degrees
    sensors = pd.DataFrame({"series_id": ["p", "q", "r"], "lat": [0.0, 1.0, 3.0], "lon": 0.0})
    assert haversine_m(0.0, 0.0, 1.0, 0.0) == pytest.approx(111_195, rel=1e-4)
    near = adjacency_from_coordinates(sensors, threshold_m=150_000, weights="binary")
    assert _triples(near) == [("p", "q", 1.0), ("q", "p", 1.0)]
    knn = adjacency_from_coordinates(sensors, k=1, weights="binary")
    # edge j -> i: j is i's nearest; r's nearest is q, but nobody's nearest is r
    assert _triples(knn) == [("p", "q", 1.0), ("q", "p", 1.0), ("q", "r", 1.0)]
    both = adjacency_from_coordinates(sensors, threshold_m=150_000, k=2)
    assert len(both) == 2
    gauss = adjacency_from_coordinates(sensors, threshold_m=150_000, sigma_m=111_195)
    assert gauss["weight"].to_numpy() == pytest.approx(np.exp(-1.0), rel=1e-3)


def test_adjacency_from_coordinates_errors():
    sensors = pd.DataFrame({"series_id": ["p", "q"], "lat": [0.0, 95.0], "lon": [0.0, 0.0]})
    with pytest.raises(DataValidationError, match=r"without valid lat/lon.*\['q'\]"):
        adjacency_from_coordinates(sensors, k=1)
    with pytest.raises(DataValidationError, match="lacks column"):
        adjacency_from_coordinates(sensors.drop(columns="lon"), k=1)
    with pytest.raises(ValueError, match="threshold_m"):
        adjacency_from_coordinates(sensors)


def test_reads_the_los_loop_sample_matrix_like_the_loader(samples_dir):
    folder = samples_dir / "traffic" / "los_loop"
    ids = list(pd.read_csv(folder / "los_speed.csv", nrows=0).columns)
    edges = read_adjacency(folder / "los_adj.csv", ids=ids)
    assert edges.equals(load_los_loop(root=samples_dir).adjacency)


@pytest.mark.shared
def test_beijing_station_graph_from_coordinates(shared_data):
    from citybrain_ml.data.air import distance_edges

    coords = pd.read_csv(shared_data / "air" / "beijing_multisite" / "station_coordinates.csv")
    sensors = coords.rename(columns={"station": "series_id", "latitude": "lat", "longitude": "lon"})
    edges = adjacency_from_coordinates(sensors, threshold_m=40_000)
    pd.testing.assert_frame_equal(edges, distance_edges(sensors, 40.0))
    assert len(adjacency_from_coordinates(sensors, k=3)) == 12 * 3
    # 12 stations x 4 pollutants: the same graph on every pollutant
    expanded = expand_station_graph(edges, ["PM2.5", "PM10", "NO2", "O3"])
    assert len(expanded) == 4 * len(edges)


def test_parquet_edge_list_and_matrix(tmp_path):
    pd.DataFrame({"src": ["a", "b"], "dst": ["b", "c"], "weight": [1.0, 2.0]}).to_parquet(
        tmp_path / "edges.parquet"
    )
    assert _triples(read_adjacency(tmp_path / "edges.parquet")) == [
        ("a", "b", 1.0),
        ("b", "c", 2.0),
    ]
    pd.DataFrame(MATRIX, columns=IDS).to_parquet(tmp_path / "adj.parquet")
    assert _triples(read_adjacency(tmp_path / "adj.parquet")) == EXPECTED
