"""Event aggregation on Spark gives the pandas grid: same cells, periods, counts and masks."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.data.events import load_events
from citybrain_ml.data.grid import M_PER_DEG, GridSpec, events_to_grid

pytest.importorskip("pyspark")

REPO = Path(__file__).resolve().parents[1]
LAT0, LON0 = 45.0, 7.0


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def border_events(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Random events plus events placed exactly on cell borders (in float arithmetic)."""
    rng = np.random.default_rng(seed)
    cell = 500.0
    ref = GridSpec(LAT0, LON0, cell, 8, 1).ref_lat
    lon_m = M_PER_DEG * np.cos(np.radians(ref))
    lat = LAT0 + rng.uniform(0, 4000, n) / M_PER_DEG
    lon = LON0 + rng.uniform(0, 3000, n) / lon_m
    k = np.arange(0, 8)
    # borders: k whole cells north/east of the corner, computed the way a user would
    lat = np.concatenate([lat, LAT0 + k * cell / M_PER_DEG, np.full(8, LAT0)])
    lon = np.concatenate([lon, np.full(8, LON0), LON0 + k[:8] * cell / lon_m])
    start = pd.Timestamp("2024-03-30 22:00")
    minutes = rng.integers(0, 3 * 24 * 60, len(lat))
    ts = start + pd.to_timedelta(minutes, unit="min")
    ts = ts.where(np.arange(len(lat)) % 7 != 0, ts.floor("h"))  # events on period borders
    return pd.DataFrame({"timestamp": ts, "lat": lat, "lon": lon}).astype(
        {"timestamp": "datetime64[us]"}
    )


def test_frame_grid_equals_pandas_with_borders_and_fixed_grid(spark):
    from citybrain_ml.spark.events import events_to_grid_spark

    events = border_events()
    sdf = spark.createDataFrame(events, "timestamp timestamp_ntz, lat double, lon double")
    ref = events_to_grid(events, cell_size=500, freq="h")
    got = events_to_grid_spark(sdf, cell_size=500, freq="h").to_dataset()
    assert got.extras["grid"] == ref.extras["grid"]
    pd.testing.assert_frame_equal(got.values, ref.values)
    pd.testing.assert_frame_equal(got.sensors, ref.sensors)
    pd.testing.assert_frame_equal(got.adjacency, ref.adjacency)
    # a fixed, smaller grid, calendar weeks (W-SUN periods) and a window: same events dropped
    grid = GridSpec(LAT0 + 0.002, LON0 + 0.001, 700.0, 4, 3)
    window = {"grid": grid, "freq": "W", "start": "2024-04-01", "end": "2024-04-20"}
    with pytest.warns(UserWarning, match="dropped"):
        ref = events_to_grid(events, **window)
    with pytest.warns(UserWarning, match="dropped"):
        got = events_to_grid_spark(sdf, **window).to_dataset()
    assert len(got.values) == 12 * 3
    pd.testing.assert_frame_equal(got.values, ref.values)


def _city_csv(tmp_path: Path) -> Path:
    """Raw export: UTC offsets over the DST change, categories, withheld coordinates."""
    events = border_events(300, seed=1)
    utc = events["timestamp"].dt.tz_localize("Europe/Rome", ambiguous="NaT", nonexistent="NaT")
    events = events[utc.notna().to_numpy()]
    utc = utc.dropna().dt.tz_convert("UTC")
    kinds = np.array(["Theft", " Burglary ", "Fraud"])[np.arange(len(events)) % 3]
    frame = pd.DataFrame(
        {
            "When": utc.dt.strftime("%Y/%m/%d %H:%M:%S+00").to_numpy(),
            "Y": events["lat"].to_numpy(),
            "X": events["lon"].to_numpy(),
            "Offence": kinds,
        }
    )
    frame.loc[5, ["Y", "X"]] = 0.0  # location withheld
    frame.loc[9, "Y"] = np.nan
    path = tmp_path / "city.csv"
    frame.to_csv(path, index=False, float_format="%.17g")
    return path


def _assert_same(got, ref):
    pd.testing.assert_frame_equal(got.values, ref.values)
    pd.testing.assert_frame_equal(got.sensors, ref.sensors)
    assert got.extras["grid"] == ref.extras["grid"]
    assert got.extras["mask_kind"] == ref.extras["mask_kind"]
    a, b = got.extras["events_report"], ref.extras["events_report"]
    assert a.summary() == b.summary()
    assert a.outside_boundary == b.outside_boundary


def test_raw_file_with_time_zone_categories_and_masks(spark, tmp_path):
    from citybrain_ml.spark.events import load_events_spark

    path = _city_csv(tmp_path)
    opts = {
        "path": str(path),
        "mapping": {"time": "When", "latitude": "Y", "longitude": "X", "category": "Offence"},
        "categories": ["Theft", "Burglary"],
        "time_zone": "Europe/Rome",
        "cell_size_m": 500,
        "freq": "h",
    }
    ref = _quiet(load_events, **opts)
    assert 0 < ref.sensors["in_mask"].sum() < len(ref.sensors)  # some cells without events
    with pytest.warns(UserWarning, match="without coordinates"):
        got = load_events_spark(spark, **opts).to_dataset()
    _assert_same(got, ref)
    # a time window and a GeoJSON boundary clipping the grid
    north, east = 2600 / M_PER_DEG, 1700 / (M_PER_DEG * np.cos(np.radians(LAT0)))
    ring = [[LON0, LAT0], [LON0 + east, LAT0], [LON0 + 0.6 * east, LAT0 + north], [LON0, LAT0]]
    geo = tmp_path / "area.geojson"
    geo.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    extra = {"boundary": str(geo), "freq": "6h", "start": "2024-03-31 06:00", "end": "2024-04-01"}
    ref = _quiet(load_events, **{**opts, **extra})
    got = _quiet(load_events_spark, spark, **{**opts, **extra}).to_dataset()
    _assert_same(got, ref)
    assert got.extras["events_report"].outside_time_range > 0
    assert got.extras["events_report"].outside_boundary > 0
    share = got.sensors["boundary_share"]
    assert ((share > 0) & (share < 1)).any()


def test_bundled_crime_samples_match_pandas(spark):
    from citybrain_ml.spark.events import load_events_spark

    root = REPO / "data_samples"
    cases = [
        {
            "path": "incidents/chicago_crime_2016_2017/chicago_crime_2016_2017.csv.gz",
            "mapping": {
                "time": "datetime",
                "latitude": "latitude",
                "longitude": "longitude",
                "category": "primary_type",
            },
            "categories": ["THEFT", "BATTERY"],
            "time_zone": "America/Chicago",
            "cell_size_m": 3000,
            "freq": "6h",
            "boundary": "none",  # every cell scored
        },
        {  # local midnight written in UTC (+00) plus an hour column
            "path": ["incidents/toronto_mci/train.csv.gz", "incidents/toronto_mci/test.csv.gz"],
            "mapping": {
                "time": "occurrencedate",
                "hour": "occurrencehour",
                "latitude": "Lat",
                "longitude": "Long",
                "category": "MCI",
            },
            "time_zone": "America/Toronto",
            "cell_size_m": 3000,
            "freq": "D",
            "start": "2016-01-05",
            "end": "2016-01-20",
        },
    ]
    for opts in cases:
        ref = _quiet(load_events, root, **opts)
        got = _quiet(load_events_spark, spark, root=root, **opts).to_dataset()
        _assert_same(got, ref)


def test_errors_match_the_pandas_reader(spark, tmp_path):
    from citybrain_ml.data import DataValidationError
    from citybrain_ml.spark.events import load_events_spark

    path = _city_csv(tmp_path)
    mapping = {"time": "When", "latitude": "Y", "longitude": "X", "category": "Offence"}
    with pytest.raises(DataValidationError, match="carries UTC offsets"):
        _quiet(load_events_spark, spark, path=str(path), mapping=mapping)
    with pytest.raises(DataValidationError, match="never occur"):
        _quiet(
            load_events_spark,
            spark,
            path=str(path),
            mapping=mapping,
            time_zone="Europe/Rome",
            categories=["Theft", "Arson"],
        )
