"""Own-data import: wide files with split dates, wind u/v, station graphs in load_table,
duplicate series, and `citybrain data validate --path --mapping`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from citybrain_ml.cli.main import app
from citybrain_ml.data import (
    ColumnMapping,
    DataValidationError,
    duplicate_series,
    load_beijing_multisite,
    load_table,
)
from citybrain_ml.data.tables import parse_column_mapping
from citybrain_ml.features import add_wind_components, wind_components

PARTS = {"year": "year", "month": "month", "day": "day", "hour": "hour"}
PRSA_MAPPING = {
    "series_id": "station",
    "timestamp_parts": PARTS,
    "value": "PM2.5",
    "covariates": ["TEMP", "PRES", "DEWP", "RAIN", "WSPM"],
    "wind_direction": "wd",
}


def _network_export(hours: int = 6) -> pd.DataFrame:
    """What a monitoring network exports: a row number, split date, one column per station."""
    ts = pd.date_range("2024-03-01", periods=hours, freq="h")
    return pd.DataFrame(
        {
            "No": np.arange(1, hours + 1),
            "year": ts.year,
            "month": ts.month,
            "day": ts.day,
            "hour": ts.hour,
            "Dongsi": np.arange(hours, dtype=float),
            "Tiantan": np.arange(hours, dtype=float) * 2,
            "TEMP": np.linspace(1.0, 2.0, hours),
        }
    )


# ------------------------------------------------------------------ wide files
def test_wide_file_with_split_date(tmp_path):
    path = tmp_path / "network.csv"
    _network_export().to_csv(path, index=False)
    mapping = {"wide": True, "timestamp_parts": PARTS, "covariates": ["TEMP"], "exclude": ["No"]}
    ds = load_table(path, mapping)
    assert ds.series_ids == ["Dongsi", "Tiantan"] and ds.freq == "h"
    tiantan = ds.values[ds.values["series_id"] == "Tiantan"]
    assert tiantan["value"].tolist() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert tiantan["timestamp"].iloc[-1] == pd.Timestamp("2024-03-01 05:00")
    # a per-time covariate is repeated for every station
    assert ds.values.groupby("timestamp")["TEMP"].nunique().eq(1).all()
    assert ds.extras["rows_read"] == 12


def test_wide_file_with_variable_column_and_date_column(tmp_path):
    # the national air-quality export layout: date, hour, type, one column per station
    path = tmp_path / "beijing_all_20240301.csv"
    frame = pd.DataFrame(
        {
            "date": [20240301] * 4,
            "hour": [0, 0, 1, 1],
            "type": ["PM2.5", "PM10", "PM2.5", "PM10"],
            "Dongsi": [10.0, 20.0, 11.0, 21.0],
            "Tiantan": [30.0, 40.0, 31.0, None],
        }
    )
    frame.to_csv(path, index=False)
    mapping = parse_column_mapping("wide=true,date=date,hour=hour,variable=type")
    ds = load_table(path, mapping)
    assert ds.series_ids == ["Dongsi/PM10", "Dongsi/PM2.5", "Tiantan/PM10", "Tiantan/PM2.5"]
    v = ds.values.set_index(["series_id", "timestamp"])["value"]
    assert v[("Dongsi/PM10", pd.Timestamp("2024-03-01 01:00"))] == 21.0
    assert np.isnan(v[("Tiantan/PM10", pd.Timestamp("2024-03-01 01:00"))])


def test_wide_file_with_a_timestamp_column_and_chosen_series(tmp_path):
    path = tmp_path / "flows.parquet"
    ts = pd.date_range("2024-03-01 05:30", periods=4, freq="15min")
    pd.DataFrame({"time": ts, "A_in": 1.0, "A_out": 2.0, "status": "ok"}).to_parquet(path)
    mapping = ColumnMapping(wide=True, timestamp="time", series_columns=["A_in", "A_out"])
    ds = load_table(path, mapping)
    assert ds.series_ids == ["A_in", "A_out"] and ds.freq == "15min"


def test_hour_24_is_midnight_at_the_end_of_the_day(tmp_path):
    path = tmp_path / "period_ending.csv"
    frame = pd.DataFrame({"date": ["2024-03-01"] * 3, "hour": [22, 23, 24], "S1": [1.0, 2, 3]})
    frame.to_csv(path, index=False)
    ds = load_table(path, {"wide": True, "timestamp_parts": {"date": "date", "hour": "hour"}})
    assert ds.values["timestamp"].iloc[-1] == pd.Timestamp("2024-03-02 00:00")


def test_wide_file_errors_name_file_column_and_line(tmp_path):
    path = tmp_path / "network.csv"
    mapping = {"wide": True, "timestamp_parts": PARTS, "exclude": ["No"]}
    frame = _network_export()
    frame.loc[3, "month"] = 13  # data row 4 = line 5 (line 1 is the header)
    frame.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"network\.csv: column 'month' .*line 5: 13"):
        load_table(path, mapping)
    frame = _network_export()
    frame.loc[2, ["month", "day"]] = [2, 30]
    frame.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"impossible date\(s\): line 4: 2024-2-30"):
        load_table(path, mapping)
    frame = _network_export().astype({"Tiantan": object})
    frame.loc[1, "Tiantan"] = "calib"
    frame.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"column 'Tiantan' .*line 3: 'calib'"):
        load_table(path, mapping)
    frame = _network_export()
    frame.loc[5, "hour"] = 4
    frame.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"2 rows share a time .*line 6 .*line 7"):
        load_table(path, mapping)
    with pytest.raises(DataValidationError, match=r"'hr' \(mapped as timestamp part hour\)"):
        load_table(path, {"wide": True, "timestamp_parts": {**PARTS, "hour": "hr"}})


@pytest.mark.parametrize(
    ("mapping", "problem"),
    [
        ({"wide": True, "timestamp": "t", "value": "x"}, "drop value/series_id"),
        ({"timestamp": "t", "timestamp_parts": PARTS, "value": "x"}, "exactly one of"),
        ({"timestamp_parts": {"year": "y", "hour": "h"}, "value": "x"}, "all of year, month"),
        ({"timestamp": "t", "value": "x", "valeu": "y"}, "valeu: Extra inputs"),
        ({"timestamp": "t", "value": "x", "wind_speed": "ws"}, "wind_speed needs"),
    ],
)
def test_bad_mappings_say_what_is_wrong(tmp_path, mapping, problem):
    path = tmp_path / "x.csv"
    pd.DataFrame({"t": ["2024-01-01"], "x": [1.0]}).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=problem):
        load_table(path, mapping)


# ---------------------------------------------- long files in parts, many files
def test_station_files_with_split_date_and_wind_match_the_beijing_loader(samples_dir):
    pattern = samples_dir / "air" / "beijing_multisite" / "PRSA_Data_*.csv"
    ds = load_table(str(pattern), PRSA_MAPPING)
    ref = load_beijing_multisite(root=samples_dir)
    columns = ["series_id", "timestamp", "value", "TEMP", "WSPM", "wind_u", "wind_v"]
    pd.testing.assert_frame_equal(ds.values[columns], ref.values[columns])
    files = sorted(pattern.parent.glob("PRSA_Data_*.csv"))
    assert load_table(files, PRSA_MAPPING).values.equals(ds.values)


def test_one_series_per_file_named_after_the_file(tmp_path):
    ts = pd.date_range("2024-01-01", periods=4, freq="h")
    for name in ("north", "south"):
        pd.DataFrame({"time": ts, "count": [0, 3, 0, 1]}).to_csv(tmp_path / f"{name}.csv")
    ds = load_table(str(tmp_path / "*.csv"), {"timestamp": "time", "value": "count"})
    assert ds.series_ids == ["north", "south"]
    # counts: zeros are real, nothing is masked without a sentinel
    assert ds.values["value"].eq(0).sum() == 4 and ds.values["value"].notna().all()


def test_missing_value_is_a_sentinel_for_no_reading(tmp_path):
    path = tmp_path / "speeds.csv"
    ts = pd.date_range("2024-01-01", periods=4, freq="5min")
    pd.DataFrame({"time": ts, "speed": [55.0, -999, 0.0, 61.0]}).to_csv(path, index=False)
    ds = load_table(path, {"timestamp": "time", "value": "speed"}, missing_value=-999)
    assert ds.values["value"].isna().tolist() == [False, True, False, False]


# -------------------------------------------------------------------------- wind
def test_wind_components_labels_degrees_speed_and_calm():
    u, v = wind_components(["N", "E", "s", 270, "cv", None], speed=[2, 3, 1, 4, 5, 1])
    np.testing.assert_allclose(u, [0, -3, 0, 4, 0, np.nan], atol=1e-12)
    np.testing.assert_allclose(v, [-2, 0, 1, 0, 0, np.nan], atol=1e-12)
    # 16-point labels and their bearings agree; no speed = unit vector
    u1, v1 = wind_components(["NNE", "WSW"])
    u2, v2 = wind_components([22.5, 247.5])
    np.testing.assert_allclose(np.c_[u1, v1], np.c_[u2, v2])
    np.testing.assert_allclose(np.hypot(u1, v1), 1.0)
    frame = add_wind_components(pd.DataFrame({"wd": ["W"], "ws": [2.0]}), "wd", "ws", drop=True)
    assert list(frame.columns) == ["ws", "wind_u", "wind_v"] and frame["wind_u"].iat[0] == 2.0


def test_air_module_reuses_the_features_wind_code():
    from citybrain_ml.data import air
    from citybrain_ml.features import wind

    assert air.wind_components is wind.wind_components


def test_load_table_wind_speed_and_unknown_label(tmp_path):
    path = tmp_path / "met.csv"
    ts = pd.date_range("2024-01-01", periods=3, freq="h")
    frame = pd.DataFrame({"time": ts, "pm": [1.0, 2, 3], "wd": ["N", "ESE", "NW"], "ws": 2.0})
    frame.to_csv(path, index=False)
    mapping = {"timestamp": "time", "value": "pm", "wind_direction": "wd", "wind_speed": "ws"}
    ds = load_table(path, mapping)
    np.testing.assert_allclose(np.hypot(ds.values["wind_u"], ds.values["wind_v"]), 2.0)
    frame.loc[2, "wd"] = "NWW"
    frame.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"column 'wd' \(wind direction\).*line 4: 'NWW'"):
        load_table(path, mapping)


# ----------------------------------------------------------- graph in load_table
def test_station_matrix_expanded_to_in_out_series(tmp_path):
    path = tmp_path / "metro.csv"
    ts = pd.date_range("2024-03-01 05:30", periods=8, freq="15min")
    rng = np.random.default_rng(0)
    wide = pd.DataFrame({"time": ts})
    for station in ("A", "B", "C"):
        for var in ("in", "out"):
            wide[f"{station}/{var}"] = rng.poisson(5, len(ts)).astype(float)
    wide.to_csv(path, index=False)
    np.save(tmp_path / "stations.npy", np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0.0]]))
    ds = load_table(
        path,
        {"wide": True, "timestamp": "time"},
        adjacency_path=tmp_path / "stations.npy",
        adjacency_ids=["A", "B", "C"],
        adjacency_variables=["in", "out"],
    )
    assert len(ds.series_ids) == 6 and len(ds.adjacency) == 8
    mat = pd.DataFrame(ds.adjacency_matrix(), index=ds.series_ids, columns=ds.series_ids)
    assert mat.loc["A/in", "B/in"] == 1 and mat.loc["A/in", "B/out"] == 0
    with pytest.raises(DataValidationError, match=r"stations\.npy: .*3 x 3 but 2 ids"):
        load_table(
            path,
            {"wide": True, "timestamp": "time"},
            adjacency_path=tmp_path / "stations.npy",
            adjacency_ids=["A", "B"],
        )


# -------------------------------------------------------------- duplicate series
def test_duplicate_series_groups_exact_copies_only():
    ts = pd.date_range("2024-01-01", periods=4, freq="h")
    values = {
        "a": [1.0, np.nan, 3.0, 4.0],
        "b": [1.0, np.nan, 3.0, 4.0],  # copy of a, including the gap
        "c": [1.0, 2.0, 3.0, 4.0],  # differs from a where a is missing
        "d": [0.0, 1.0, 0.0, 0.0],
        "e": [-0.0, 1.0, 0.0, 0.0],  # the same numbers as d
        "f": [0.0, 0.0, 0.0, 0.0],  # constant series (an empty event cell) are not flagged
        "g": [0.0, 0.0, 0.0, 0.0],
    }
    long = pd.DataFrame(
        {
            "series_id": np.repeat(list(values), 4),
            "timestamp": list(ts) * len(values),
            "value": np.concatenate(list(values.values())),
        }
    )
    assert duplicate_series(long) == [["a", "b"], ["d", "e"]]
    assert duplicate_series(long[long["series_id"].isin(["a", "c"])]) == []


# -------------------------------------------------------------------------- CLI
def test_cli_validate_own_file_with_mapping_and_duplicate_warning(tmp_path):
    path = tmp_path / "counts.csv"
    ts = pd.date_range("2024-01-01", periods=8, freq="15min")
    pd.DataFrame(
        {
            "detector": np.repeat(["d1", "d2", "d3"], 8),
            "time": list(ts) * 3,
            "flow": np.r_[np.arange(8), np.arange(8), np.arange(8) % 3],
        }
    ).to_csv(path, index=False)
    runner = CliRunner()
    args = ["data", "validate", "--path", str(path), "--mapping"]
    result = runner.invoke(app, [*args, "series_id=detector,timestamp=time,value=flow"])
    assert result.exit_code == 0, result.output
    assert "ok: counts: 3 series, 24 rows" in result.output
    assert "warning: 2 series in 1 group(s) are exact duplicates" in result.output
    assert "d1 = d2" in result.output
    bad = runner.invoke(app, [*args, "series_id=detector,timestamp=time,value=speed"])
    assert bad.exit_code == 1 and "'speed' (mapped as value)" in bad.output


def test_cli_validate_wide_file_with_yaml_mapping(tmp_path):
    path = tmp_path / "network.csv"
    _network_export().to_csv(path, index=False)
    # "No" stays a column name (YAML 1.1 would read it as false)
    mapping = (
        "{wide: true, timestamp_parts: {year: year, month: month, day: day, hour: hour}, "
        "exclude: [No, TEMP]}"
    )
    result = CliRunner().invoke(
        app, ["data", "validate", "--path", str(path), "--mapping", mapping]
    )
    assert result.exit_code == 0, result.output
    assert "2 series, 12 rows, freq h" in result.output
    assert "warning" not in result.output


def test_parse_column_mapping_pairs():
    assert parse_column_mapping("series_id=s, timestamp=t,value=v,covariates=a+b") == {
        "series_id": "s",
        "timestamp": "t",
        "value": "v",
        "covariates": ["a", "b"],
    }
    with pytest.raises(DataValidationError, match="not role=column"):
        parse_column_mapping("series_id")


# -------------------------------------------------------------------- full data
@pytest.mark.shared
@pytest.mark.slow
def test_beijing_network_as_a_wide_export(shared_data, tmp_path):
    folder = shared_data / "air" / "beijing_multisite"
    ds = load_table(str(folder / "PRSA_Data_*.csv"), PRSA_MAPPING)
    ref = load_beijing_multisite(root=shared_data)
    columns = ["series_id", "timestamp", "value", "wind_u", "wind_v"]
    pd.testing.assert_frame_equal(ds.values[columns], ref.values[columns])
    # the same data as one wide file per pollutant x station column, split date
    files = sorted(folder.glob("PRSA_Data_*.csv"))
    raw = pd.concat([pd.read_csv(f, na_values=[" "], low_memory=False) for f in files])
    wide = raw.pivot(index=["year", "month", "day", "hour"], columns="station")[["PM2.5", "NO2"]]
    wide.columns = [f"{station}/{pollutant}" for pollutant, station in wide.columns]
    wide.reset_index().to_csv(tmp_path / "network.csv", index=False)
    net = load_table(tmp_path / "network.csv", {"wide": True, "timestamp_parts": PARTS})
    assert len(net.series_ids) == 24 and net.freq == "h"
    pm = net.values[net.values["series_id"].str.endswith("/PM2.5")].copy()
    pm["series_id"] = pm["series_id"].str.removesuffix("/PM2.5")
    np.testing.assert_array_equal(pm["value"].to_numpy(), ref.values["value"].to_numpy())
    assert duplicate_series(net.values) == []
