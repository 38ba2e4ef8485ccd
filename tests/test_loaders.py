"""Dataset loaders on the bundled samples (always) and the full shared data (when present)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.data import (
    DATASETS,
    ColumnMapping,
    DataValidationError,
    SeriesDataset,
    load_beijing_multisite,
    load_beijing_pm25,
    load_bengaluru_metro,
    load_chicago_accident_grid,
    load_chicago_crime,
    load_dataset,
    load_i94,
    load_los_loop,
    load_sz_taxi,
    load_table,
    load_toronto_mci,
)
from citybrain_ml.data.grid import GridSpec


def _check_canonical(ds: SeriesDataset) -> None:
    """The contract every loader promises: sorted, regular, float values, known ids."""
    v = ds.values
    assert list(v.columns[:3]) == ["series_id", "timestamp", "value"]
    assert v["value"].dtype == float
    assert not v.duplicated(["series_id", "timestamp"]).any()
    assert v.equals(v.sort_values(["series_id", "timestamp"], kind="stable").reset_index(drop=True))
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(ds.freq))
    assert v.groupby("series_id")["timestamp"].diff().dropna().eq(step).all()
    ids = set(ds.series_ids)
    if ds.adjacency is not None:
        assert set(ds.adjacency["src"]) <= ids and set(ds.adjacency["dst"]) <= ids
    if ds.sensors is not None:
        assert set(ds.sensors["series_id"]) <= ids


# ------------------------------------------------------------------ bundled samples
def test_sz_taxi_sample_keeps_road_ids_and_connected_adjacency(samples_dir):
    ds = load_sz_taxi(samples_dir)
    _check_canonical(ds)
    assert ds.freq == "15min" and len(ds.series_ids) >= 12
    assert ds.values["timestamp"].min() == pd.Timestamp("2015-01-01")
    assert ds.values.groupby("series_id").size().iloc[0] == 14 * 96
    adj = ds.adjacency_matrix()
    sym = (adj + adj.T) > 0
    reached, frontier = {0}, [0]
    while frontier:  # breadth-first search: the sample graph must be connected
        node = frontier.pop()
        for nb in np.flatnonzero(sym[node]):
            if nb not in reached:
                reached.add(int(nb))
                frontier.append(int(nb))
    assert len(reached) == len(ds.series_ids)


def test_los_loop_sample_masks_zeros(samples_dir):
    ds = load_los_loop(samples_dir)
    _check_canonical(ds)
    assert ds.freq == "5min" and ds.values["value"].min() > 0
    assert (ds.adjacency["weight"] > 0).all() and ds.adjacency["weight"].max() <= 1


def test_bengaluru_sample_gap_and_opening_are_nan(samples_dir):
    ds = load_bengaluru_metro(samples_dir)
    _check_canonical(ds)
    wide = ds.to_wide()
    assert wide.loc["2025-08-19":"2025-08-31"].isna().all().all()  # no data released
    assert wide.loc[:"2025-08-10", "Electronic City"].isna().all()  # before it opened
    assert wide.loc["2025-09-01":].notna().all().all()
    exits = load_bengaluru_metro(samples_dir, kind="exits")
    assert not exits.values["value"].equals(ds.values["value"])
    with pytest.raises(ValueError, match="kind"):
        load_bengaluru_metro(samples_dir, kind="both")


def test_i94_sample_deduped_reindexed_with_holidays(samples_dir):
    raw = pd.read_csv(
        samples_dir / "traffic/metro_interstate_i94/Metro_Interstate_Traffic_Volume.csv"
    )
    assert raw["date_time"].duplicated().any()  # the slice does contain the dirt
    ds = load_i94(samples_dir)
    _check_canonical(ds)
    v = ds.values.set_index("timestamp")
    assert len(v) == 21 * 24
    assert v.loc["2012-12-25", "holiday"].eq(1).all() and v.loc["2012-12-24", "holiday"].eq(0).all()
    assert {"temp", "rain_1h", "snow_1h", "clouds_all"} <= set(v.columns)


def test_beijing_multisite_sample(samples_dir):
    ds = load_beijing_multisite(samples_dir, adjacency_km=50)
    _check_canonical(ds)
    assert sorted(ds.series_ids) == ["Aotizhongxin", "Dongsi"]
    assert {"TEMP", "PRES", "DEWP", "RAIN", "WSPM", "wind_u", "wind_v"} <= set(ds.values.columns)
    assert ds.sensors[["lat", "lon"]].notna().all().all()
    assert len(ds.adjacency) == 2
    speed = np.hypot(ds.values["wind_u"], ds.values["wind_v"]).dropna()
    np.testing.assert_allclose(speed, 1.0)
    pm10 = load_beijing_multisite(samples_dir, target="PM10", pollutant_covariates=True)
    assert "PM2.5" in pm10.values.columns and "PM10" not in pm10.values.columns


def test_beijing_pm25_sample_wind_encoding(samples_dir):
    ds = load_beijing_pm25(samples_dir)
    _check_canonical(ds)
    raw = pd.read_csv(samples_dir / "air/beijing_pm25_2010_2014/PRSA_data_2010.1.1-2014.12.31.csv")
    u, v = ds.values["wind_u"].to_numpy(), ds.values["wind_v"].to_numpy()
    calm = (raw["cbwd"] == "cv").to_numpy()
    assert (u[calm] == 0).all() and (v[calm] == 0).all()
    nw = (raw["cbwd"] == "NW").to_numpy()  # wind from the north-west blows south-east
    assert (u[nw] > 0).all() and (v[nw] < 0).all()


def test_chicago_accident_grid_sample(samples_dir):
    ds = load_chicago_accident_grid(samples_dir)
    _check_canonical(ds)
    mask = ds.extras["mask"]
    assert ds.sensors["in_mask"].sum() == mask.sum() > 0
    weather = ds.values.filter(like="weather_")
    # one-hot; a handful of hours in the source carry no weather at all (all zeros)
    assert weather.shape[1] == 5 and weather.sum(axis=1).isin([0, 1]).all()
    masked = load_chicago_accident_grid(samples_dir, masked_only=True)
    assert len(masked.series_ids) == mask.sum()


def test_event_loaders_sample(samples_dir):
    for events in (load_chicago_crime(samples_dir), load_toronto_mci(samples_dir)):
        assert {"timestamp", "lat", "lon", "type", "severity"} <= set(events.columns)
        assert events["timestamp"].is_monotonic_increasing
        assert events[["lat", "lon"]].notna().all().all()
    toronto = load_toronto_mci(samples_dir)
    assert toronto["timestamp"].min() >= pd.Timestamp("2016-01-01")  # local midnight, not UTC


def test_registry_grids_and_unknown_name(samples_dir):
    assert set(DATASETS) >= {"sz_taxi", "chicago_crime", "toronto_mci", "table"}
    ds = load_dataset("chicago_crime", root=samples_dir, cell_size=5000, freq="D")
    _check_canonical(ds)
    events = load_chicago_crime(samples_dir)
    assert ds.values["value"].sum() == len(events)
    with pytest.raises(KeyError, match="known datasets.*sz_taxi"):
        load_dataset("nope")


def test_missing_root_says_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="CITYBRAIN_SHARED_DATA"):
        load_sz_taxi(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="sz_speed_stcgcn.npz"):
        load_sz_taxi(tmp_path)


# ------------------------------------------------------------------ user tables
def _user_frame():
    ts = pd.date_range("2024-05-01", periods=6, freq="15min").astype(str)
    return pd.DataFrame(
        {
            "sensor": ["A"] * 6 + ["B"] * 6,
            "time": list(ts) * 2,
            "speed": np.arange(12.0),
            "rain": 0.1,
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_load_table_with_mapping(tmp_path, suffix):
    path = tmp_path / f"speeds{suffix}"
    frame = _user_frame()
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    mapping = {"series_id": "sensor", "timestamp": "time", "value": "speed", "covariates": ["rain"]}
    ds = load_table(path, mapping)
    _check_canonical(ds)
    assert ds.freq == "15min" and ds.series_ids == ["A", "B"] and ds.name == "speeds"
    assert list(ds.values.columns) == ["series_id", "timestamp", "value", "rain"]


def test_load_table_single_series_pydantic_mapping(tmp_path):
    path = tmp_path / "counter.csv"
    _user_frame().iloc[:6].to_csv(path, index=False)
    ds = load_table(path, ColumnMapping(timestamp="time", value="speed"))
    assert ds.series_ids == ["counter"]


def test_load_table_missing_column_names_file_and_column(tmp_path):
    path = tmp_path / "speeds.csv"
    _user_frame().to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"speeds\.csv.*'velocity' \(mapped as value\)"):
        load_table(path, {"series_id": "sensor", "timestamp": "time", "value": "velocity"})


def test_load_table_bad_value_reports_file_line(tmp_path):
    path = tmp_path / "speeds.csv"
    frame = _user_frame().astype({"speed": object})
    frame.loc[4, "speed"] = "broken"
    frame.to_csv(path, index=False)
    # data row 5 sits on line 6 of the file (line 1 is the header)
    with pytest.raises(DataValidationError, match=r"speeds\.csv.*row 6 .*'broken'"):
        load_table(path, {"series_id": "sensor", "timestamp": "time", "value": "speed"})


def test_load_table_sensors_and_adjacency(tmp_path):
    path, sensors, edges = tmp_path / "s.csv", tmp_path / "sensors.csv", tmp_path / "edges.csv"
    _user_frame().to_csv(path, index=False)
    pd.DataFrame({"sensor": ["A", "B"], "lat": [1.0, 2.0], "lon": [3.0, 4.0]}).to_csv(
        sensors, index=False
    )
    pd.DataFrame({"src": ["A"], "dst": ["B"]}).to_csv(edges, index=False)
    mapping = {"series_id": "sensor", "timestamp": "time", "value": "speed"}
    ds = load_table(path, mapping, sensors_path=sensors, adjacency_path=edges)
    assert ds.adjacency_matrix().tolist() == [[0.0, 1.0], [0.0, 0.0]]
    pd.DataFrame({"src": ["A"], "dst": ["Z"]}).to_csv(edges, index=False)
    with pytest.raises(DataValidationError, match="unknown series id"):
        load_table(path, mapping, adjacency_path=edges)


def test_load_dataset_table(tmp_path):
    path = tmp_path / "speeds.csv"
    _user_frame().to_csv(path, index=False)
    ds = load_dataset(
        "table", path=path, mapping={"series_id": "sensor", "timestamp": "time", "value": "speed"}
    )
    assert len(ds.values) == 12


# ------------------------------------------------------------------ full shared data
SPANS = {
    "sz_taxi": (156, "15min", "2015-01-01", "2015-01-31 23:45"),
    "los_loop": (207, "5min", "2012-03-01", "2012-03-07 23:55"),
    "bengaluru_metro": (83, "h", "2025-08-01", "2025-09-30 23:00"),
    "i94": (1, "h", "2012-10-02 09:00", "2018-09-30 23:00"),
    "beijing_multisite": (12, "h", "2013-03-01", "2017-02-28 23:00"),
    "beijing_pm25": (1, "h", "2010-01-01", "2014-12-31 23:00"),
    "chicago_accident_grid": (400, "h", "2016-02-01", "2016-09-30 23:00"),
}


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(SPANS))
def test_full_dataset_shape_and_span(shared_data, name):
    n_series, freq, first, last = SPANS[name]
    ds = load_dataset(name, root=shared_data)
    assert len(ds.series_ids) == n_series and ds.freq == freq
    assert ds.values["timestamp"].min() == pd.Timestamp(first)
    assert ds.values["timestamp"].max() == pd.Timestamp(last)
    assert ds.values["value"].dtype == float
    per_series = ds.values.groupby("series_id").size()
    assert per_series.nunique() == 1  # same regular grid for every series


@pytest.mark.shared
def test_full_sz_adjacency_and_accident_mask(shared_data):
    assert len(load_sz_taxi(shared_data).adjacency) == 532
    grid = load_chicago_accident_grid(shared_data, masked_only=True)
    assert len(grid.series_ids) == int(grid.extras["mask"].sum())


@pytest.mark.shared
def test_full_event_tables(shared_data):
    crime = load_chicago_crime(shared_data)
    assert len(crime) == 321_877
    assert crime["timestamp"].dt.year.isin([2016, 2017]).all()
    toronto = load_toronto_mci(shared_data)
    assert len(toronto) == 240_992
    ds = load_dataset("chicago_crime", root=shared_data, cell_size=3000, freq="D")
    assert ds.values["value"].sum() == len(crime)
    assert isinstance(ds.extras["grid"], GridSpec)
