"""Event logs from any city: column mapping, clear errors, time zones, boundaries and masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.data import DataValidationError, load_dataset
from citybrain_ml.data.events import (
    guess_mapping,
    load_events,
    parse_event_mapping,
    read_events,
    validate_event_file,
)
from citybrain_ml.data.grid import M_PER_DEG, Boundary, GridSpec

REPO = Path(__file__).resolve().parents[1]
MAPPING = {"time": "When", "latitude": "Y", "longitude": "X", "category": "Offence"}
LAT0, LON0 = 45.0, 7.0  # somewhere new: no built-in loader knows this city


def _lon_step(metres: float) -> float:
    return metres / (M_PER_DEG * np.cos(np.radians(LAT0 + 0.01)))


def city_file(tmp_path: Path, name: str = "events.csv.gz") -> Path:
    """Six events of another city with its own column names, one without coordinates."""
    rows = [
        ("2024-03-01 08:00", LAT0 + 0.001, LON0 + 0.001, "Burglary"),
        ("2024-03-01 09:30", LAT0 + 0.002, LON0 + 0.002, "Theft"),
        ("2024-03-02 23:10", LAT0 + 0.001, LON0 + _lon_step(1500), "Theft"),
        ("2024-03-03 00:05", LAT0 + 1500 / M_PER_DEG, LON0 + 0.001, "Theft"),
        ("2024-03-03 12:00", 0.0, 0.0, "Theft"),  # location withheld
        ("2024-03-03 13:00", LAT0 + 0.001, LON0 + 0.001, "Fraud"),
    ]
    frame = pd.DataFrame(rows, columns=["When", "Y", "X", "Offence"])
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_events_dataset_with_other_column_names(tmp_path):
    path = city_file(tmp_path)
    with pytest.warns(UserWarning, match="dropped 1 of 6 events without coordinates"):
        ds = load_dataset(
            "events",
            path=str(path),
            mapping=MAPPING,
            categories=["Theft", "Burglary"],
            cell_size_m=1000,
            freq="D",
        )
    report = ds.extras["events_report"]
    assert (report.rows, report.events) == (6, 4)
    assert (report.without_coordinates, report.other_categories) == (1, 1)
    wide = ds.to_wide()
    assert list(wide.index) == list(pd.date_range("2024-03-01", "2024-03-03", freq="D"))
    assert wide.to_numpy().sum() == 4 and wide.loc["2024-03-01", "cell_0_0"] == 2
    assert ds.extras["mask_kind"] == "history"
    assert set(ds.sensors.loc[ds.sensors["in_mask"], "series_id"]) == {
        "cell_0_0",
        "cell_0_1",
        "cell_1_0",
    }
    assert ds.name == "events"


def test_missing_column_is_named_with_file_and_role(tmp_path):
    path = city_file(tmp_path)
    with pytest.raises(DataValidationError) as err:
        load_dataset("events", path=str(path), mapping={**MAPPING, "latitude": "lat"})
    text = str(err.value)
    assert str(path) in text and "'lat' (mapped as latitude" in text and "'Y'" in text


def test_builtin_crime_loader_on_another_citys_file_names_the_column(tmp_path):
    folder = tmp_path / "incidents" / "chicago_crime_2016_2017"
    folder.mkdir(parents=True)
    city_file(folder, "chicago_crime_2016_2017.csv.gz")
    with pytest.raises(DataValidationError, match="'primary_type' \\(mapped as category"):
        load_dataset("chicago_crime", root=str(tmp_path))


def test_bad_options_and_categories_are_named(tmp_path):
    path = str(city_file(tmp_path))
    with pytest.raises(DataValidationError, match="option 'cell_size'"):
        load_dataset("events", path=path, mapping=MAPPING, cell_size=500)
    with pytest.raises(DataValidationError, match="'mapping.latitude': Field required"):
        load_dataset("events", path=path, mapping={"time": "When", "longitude": "X"})
    with pytest.raises(DataValidationError, match=r"\['Thefts'\] never occur"):
        load_dataset("events", path=path, mapping=MAPPING, categories=["Thefts"])


def test_utc_offsets_need_a_time_zone_and_hour_column(tmp_path):
    # Toronto style: local midnight written in UTC, hour of day in its own column
    frame = pd.DataFrame(
        {
            "occurred": ["2021/07/01 04:00:00+00", "2021/01/05 05:00:00+00"],
            "hour": [23, 0],
            "lat": [43.70, 43.71],
            "lon": [-79.40, -79.41],
        }
    )
    path = tmp_path / "mci.csv"
    frame.to_csv(path, index=False)
    mapping = {"time": "occurred", "hour": "hour", "latitude": "lat", "longitude": "lon"}
    with pytest.raises(DataValidationError, match="give time_zone"):
        read_events(path, mapping)
    events, _ = read_events(path, mapping, time_zone="America/Toronto")
    assert list(events["timestamp"]) == [
        pd.Timestamp("2021-01-05 00:00"),
        pd.Timestamp("2021-07-01 23:00"),
    ]
    frame.loc[1, "occurred"] = "not a date"
    frame.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match="line 3: 'not a date'"):
        read_events(path, mapping, time_zone="America/Toronto")


def test_boundary_geojson_drops_outside_events_and_masks_cells(tmp_path):
    path = city_file(tmp_path)
    # a 2 km x 1 km rectangle (2 rows x 1 column of 1 km cells), a hole in the top cell
    # (just under 2 km x 1 km, so the covering grid has no extra row or column)
    north, east = 1999 / M_PER_DEG, _lon_step(999)
    outer = [[LON0, LAT0], [LON0 + east, LAT0], [LON0 + east, LAT0 + north], [LON0, LAT0 + north]]
    hole = [
        [LON0 + 0.3 * east, LAT0 + 0.6 * north],
        [LON0 + 0.7 * east, LAT0 + 0.6 * north],
        [LON0 + 0.7 * east, LAT0 + 0.9 * north],
        [LON0 + 0.3 * east, LAT0 + 0.9 * north],
    ]
    geo = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [outer, hole]}}
        ],
    }
    boundary = tmp_path / "city.geojson"
    boundary.write_text(json.dumps(geo))
    area = Boundary.from_geojson(boundary)
    assert area.contains([LAT0 + 0.1 * north], [LON0 + 0.5 * east]).tolist() == [True]
    assert area.contains([LAT0 + 0.75 * north], [LON0 + 0.5 * east]).tolist() == [False]
    with pytest.warns(UserWarning):
        ds = load_events(
            path=path, mapping=MAPPING, cell_size_m=1000, boundary=str(boundary), freq="D"
        )
    report = ds.extras["events_report"]
    # the event 1.5 km east is outside the rectangle
    assert report.outside_boundary == 1 and report.events == 4
    assert ds.extras["mask_kind"] == "boundary" and ds.extras["boundary"] == str(boundary)
    share = ds.sensors.set_index("series_id")["boundary_share"]
    assert share["cell_0_0"] == 1.0 and 0 < share["cell_1_0"] < 1
    assert ds.sensors["in_mask"].all()
    bad = tmp_path / "points.geojson"
    bad.write_text(json.dumps({"type": "Point", "coordinates": [7.0, 45.0]}))
    with pytest.raises(DataValidationError, match="no Polygon"):
        Boundary.from_geojson(bad)


def test_cell_share_of_a_clipped_grid():
    grid = GridSpec(LAT0, LON0, 1000.0, 1, 2)
    east = _lon_step(1000)
    half = [[LON0, LAT0], [LON0 + 1.5 * east, LAT0], [LON0 + 1.5 * east, LAT0 + 0.01]]
    half.append([LON0, LAT0 + 0.01])
    area = Boundary(((np.array(half),),))
    share = area.cell_share(grid, samples=10)
    assert share[0] == 1.0 and share[1] == pytest.approx(0.5)


def test_mapping_parsing_and_guessing():
    m = parse_event_mapping("time=datetime, latitude=lat,longitude=lon,category=type")
    assert m.roles() == {
        "time": "datetime",
        "latitude": "lat",
        "longitude": "lon",
        "category": "type",
    }
    assert parse_event_mapping("{time: t, latitude: y, longitude: x}").longitude == "x"
    assert guess_mapping(["Date", "Lat", "Long", "MCI"]).roles() == {
        "time": "Date",
        "latitude": "Lat",
        "longitude": "Long",
    }
    with pytest.raises(DataValidationError, match="cannot guess the latitude"):
        guess_mapping(["occurred_at", "northing", "lon"])


def test_validate_event_file_and_cli(tmp_path):
    from typer.testing import CliRunner

    from citybrain_ml.cli.main import app

    path = city_file(tmp_path)
    text = validate_event_file(path, "time=When,latitude=Y,longitude=X", cell_size_m=1000)
    assert "6 rows, 5 events kept (dropped: 1 without coordinates)" in text
    assert "3 with events" in text
    runner = CliRunner()
    args = ["data", "validate", "--events", "--path", str(path), "--cell-size-m", "1000"]
    res = runner.invoke(app, [*args, "--mapping", "time=When,latitude=Y,longitude=X"])
    assert res.exit_code == 0, res.output
    assert "time span 2024-03-01 08:00:00 .. 2024-03-03 13:00:00" in res.output
    res = runner.invoke(app, [*args, "--mapping", "time=When,latitude=lat,longitude=X"])
    assert res.exit_code == 1 and "'lat' (mapped as latitude" in res.output


def test_samples_crime_file_through_events_matches_builtin_loader():
    from citybrain_ml.data.loaders import load_chicago_crime_grid

    root = REPO / "data_samples"
    ds = load_dataset(
        "events",
        root=str(root),
        path="incidents/chicago_crime_2016_2017/chicago_crime_2016_2017.csv.gz",
        mapping={"time": "datetime", "latitude": "latitude", "longitude": "longitude"},
        time_zone="America/Chicago",
        cell_size_m=3000,
    )
    ref = load_chicago_crime_grid(root, cell_size=3000)
    pd.testing.assert_frame_equal(ds.values, ref.values)
    assert ds.extras["grid"] == ref.extras["grid"]


def test_toronto_file_through_events_matches_builtin_loader(shared_data):
    from citybrain_ml.data.loaders import load_toronto_mci_grid

    folder = "incidents/toronto_mci"
    ds = load_dataset(
        "events",
        root=str(shared_data),
        path=[f"{folder}/train.csv.gz", f"{folder}/test.csv.gz"],
        mapping={
            "time": "occurrencedate",
            "hour": "occurrencehour",
            "latitude": "Lat",
            "longitude": "Long",
        },
        time_zone="America/Toronto",
        start="2014-01-01",
        end="2021-12-31",
    )
    ref = load_toronto_mci_grid(shared_data, start="2014-01-01", end="2021-12-31")
    pd.testing.assert_frame_equal(ds.values, ref.values)
