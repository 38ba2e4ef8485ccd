"""validate_long / validate_dataset: each check raises a clear error or fixes what it should."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_series

from citybrain_ml.data import DataValidationError, SeriesDataset, validate_dataset, validate_long


def _frame(values, sid="a", start="2024-01-01", freq="h"):
    ts = pd.date_range(start, periods=len(values), freq=freq)
    return pd.DataFrame({"series_id": sid, "timestamp": ts, "value": values})


def test_clean_frame_is_sorted_float_and_unchanged_in_content():
    df = make_series(n_series=2, n_steps=48)
    shuffled = df.sample(frac=1.0, random_state=0)
    out = validate_long(shuffled)
    assert out["value"].dtype == float
    pd.testing.assert_frame_equal(out, df.astype({"value": float}))


def test_missing_column_is_named():
    df = make_series(1, 5).drop(columns="value")
    with pytest.raises(DataValidationError, match=r"my\.csv.*missing required column.*'value'"):
        validate_long(df, source="my.csv")


def test_non_numeric_value_names_row_and_raw_value():
    df = _frame([1.0, 2.0, 3.0, 4.0]).astype({"value": object})
    df.loc[2, "value"] = "n/a?"
    with pytest.raises(DataValidationError) as err:
        validate_long(df, source="speeds.csv", first_row=2)
    msg = str(err.value)
    assert "speeds.csv" in msg and "'value'" in msg
    assert "row 4" in msg and "'n/a?'" in msg and "2024-01-01 02:00" in msg


def test_unparseable_timestamp_names_row():
    df = pd.DataFrame(
        {"series_id": "a", "timestamp": ["2024-01-01 00:00", "not a date"], "value": [1, 2]}
    )
    with pytest.raises(DataValidationError, match=r"'timestamp'.*row 2: 'not a date'"):
        validate_long(df)


def test_duplicates_name_both_rows():
    df = pd.concat([_frame([1.0, 2.0, 3.0]), _frame([9.0], start="2024-01-01 01:00")])
    with pytest.raises(DataValidationError) as err:
        validate_long(df.reset_index(drop=True))
    msg = str(err.value)
    assert "share a (series_id, timestamp)" in msg
    assert "row 2 " in msg and "row 4 " in msg and "series a at 2024-01-01 01:00" in msg


def test_mixed_time_zones_rejected():
    df = pd.DataFrame(
        {
            "series_id": "a",
            "timestamp": ["2024-01-01T00:00:00+01:00", "2024-01-01T01:00:00", "2024-01-01T02:00"],
            "value": [1.0, 2.0, 3.0],
        }
    )
    with pytest.raises(DataValidationError, match="mixes time zones"):
        validate_long(df)


def test_consistent_offsets_become_utc():
    # a DST change: both offsets belong to one zone, so this is consistent, not mixed
    df = pd.DataFrame(
        {
            "series_id": "a",
            "timestamp": ["2024-03-31T01:00:00+01:00", "2024-03-31T03:00:00+02:00"],
            "value": [1.0, 2.0],
        }
    )
    out = validate_long(df, freq="h")
    assert str(out["timestamp"].dt.tz) == "UTC"
    assert list(out["timestamp"].dt.hour) == [0, 1]


def test_unsorted_timestamps_are_sorted():
    df = _frame([1.0, 2.0, 3.0]).iloc[[2, 0, 1]]
    out = validate_long(df)
    assert out["value"].tolist() == [1.0, 2.0, 3.0]


def test_irregular_step_names_series_and_timestamp():
    df = _frame([1.0, 2.0, 3.0, 4.0, 5.0])
    df.loc[3, "timestamp"] = pd.Timestamp("2024-01-01 03:30")
    with pytest.raises(
        DataValidationError, match=r"breaks the regular h grid.*series a at 2024-01-01 03:30"
    ):
        validate_long(df, freq="h")


def test_allow_irregular_skips_grid_check():
    df = _frame([1.0, 2.0, 3.0])
    df.loc[2, "timestamp"] = pd.Timestamp("2024-01-01 02:30")
    assert len(validate_long(df, freq="h", allow_irregular=True)) == 3


def test_gaps_of_whole_steps_are_reindexed_to_nan():
    df = _frame(np.arange(6.0)).drop(index=[2, 3])
    out = validate_long(df)  # freq inferred as 'h' from the most common step
    assert len(out) == 6
    assert out["value"].isna().tolist() == [False, False, True, True, False, False]
    assert out["timestamp"].diff().dropna().eq(pd.Timedelta("1h")).all()


def test_all_nan_series_named():
    df = pd.concat([_frame([1.0, 2.0], "ok"), _frame([np.nan, np.nan], "dead")])
    with pytest.raises(DataValidationError, match=r"entirely missing.*\['dead'\]"):
        validate_long(df)


def test_missing_value_sentinel_masked():
    out = validate_long(_frame([5.0, 0.0, 7.0]), missing_value=0)
    assert out["value"].isna().tolist() == [False, True, False]


def test_missing_value_making_a_series_empty_is_reported():
    with pytest.raises(DataValidationError, match="entirely missing"):
        validate_long(_frame([0.0, 0.0]), missing_value=0)


def test_validate_dataset_rejects_unknown_adjacency_ids():
    values = make_series(2, 10)
    edges = pd.DataFrame({"src": ["s0", "s9"], "dst": ["s1", "s0"], "weight": [1.0, 1.0]})
    ds = SeriesDataset(values, "h", adjacency=edges, source="net.csv")
    with pytest.raises(DataValidationError, match=r"adjacency.*'src'.*unknown.*rows \[2\].*s9"):
        validate_dataset(ds)


def test_validate_dataset_rejects_unknown_sensor_ids():
    sensors = pd.DataFrame({"series_id": ["s0", "zz"], "lat": [0.0, 1.0], "lon": [0.0, 1.0]})
    ds = SeriesDataset(make_series(1, 10), "h", sensors=sensors)
    with pytest.raises(DataValidationError, match=r"sensors.*zz"):
        validate_dataset(ds)


# ---------------------------------------------------------------------- sorted-aware checks
def _hash_checks(df: pd.DataFrame, freq=None):
    """The hash/groupby checks the sorted-aware ones replace: (duplicate error, freq)."""
    from citybrain_ml.data.validation import _check_duplicates, _infer_freq, _RowNamer

    df = df.reset_index(drop=True)
    try:
        _check_duplicates(df, _RowNamer("x.csv", 2))
    except DataValidationError as exc:
        return str(exc), None
    ordered = df.sort_values(["series_id", "timestamp"], kind="stable")
    return None, freq or _infer_freq(ordered, "x.csv")


def _bad_frames():
    rng = np.random.default_rng(3)
    ok = pd.concat([_frame(rng.normal(size=12), sid) for sid in ("b", "a", "c")])
    dup = pd.concat([ok, ok.iloc[[4, 30]]])
    mixed = pd.concat([_frame(rng.normal(size=40), "a", freq="15min"), _frame([1.0] * 30, "b")])
    tie = pd.concat([_frame([1.0] * 3, "a", freq="h"), _frame([1.0] * 3, "b", freq="30min")])
    return {
        "clean": ok,
        "duplicates": dup,
        "mixed freq": mixed,
        "tie": tie,
        "all duplicated": pd.concat([ok, ok]),
    }


@pytest.mark.parametrize("name", ["clean", "duplicates", "mixed freq", "tie", "all duplicated"])
@pytest.mark.parametrize("order", ["as given", "shuffled", "reversed"])
def test_sorted_aware_checks_give_the_hash_checks_errors(name, order):
    df = _bad_frames()[name]
    if order == "shuffled":
        df = df.sample(frac=1.0, random_state=0)
    elif order == "reversed":
        df = df.iloc[::-1]
    df = df.reset_index(drop=True)
    error, freq = _hash_checks(df)
    if error is not None:
        with pytest.raises(DataValidationError) as err:
            validate_long(df, source="x.csv", first_row=2, allow_irregular=True)
        assert str(err.value) == error  # same count, same rows (in file order), same words
    else:
        from citybrain_ml.data.validation import validate_frame

        assert validate_frame(df, source="x.csv", allow_irregular=True)[1] == freq


def test_unsorted_duplicates_name_rows_in_file_order():
    df = pd.concat([_frame([1.0, 2.0, 3.0], "b"), _frame([1.0, 2.0], "a"), _frame([9.0], "b")])
    df = df.reset_index(drop=True)  # row 6 repeats row 1 (series b at 00:00)
    with pytest.raises(DataValidationError) as err:
        validate_long(df, source="f.csv", first_row=2)
    msg = str(err.value)
    assert msg.startswith("f.csv: 2 rows share a (series_id, timestamp)")
    assert msg.index("row 2 (series b at 2024-01-01 00:00:00)") < msg.index("row 7 (series b")


def test_mixed_frequencies_infer_the_most_common_step():
    # 39 quarter-hour steps against 29 hourly ones: '15min'; a tie goes to the shorter step
    frames = _bad_frames()
    assert validate_long(frames["mixed freq"], allow_irregular=True)["value"].notna().all()
    from citybrain_ml.data.validation import validate_frame

    assert validate_frame(frames["mixed freq"], allow_irregular=True)[1] == "15min"
    assert validate_frame(frames["tie"], allow_irregular=True)[1] == "30min"
    # hourly steps are on a quarter-hour grid (their gaps are filled with NaN rows); half-hour
    # steps are not on an hourly one
    assert len(validate_long(frames["mixed freq"])) == 40 + 29 * 4 + 1
    with pytest.raises(
        DataValidationError, match=r"regular h grid at series b at 2024-01-01 00:30"
    ):
        validate_long(frames["tie"], freq="h", first_row=None)


def test_gap_explosion_names_the_widest_jump_of_an_unsorted_frame():
    df = pd.concat([_frame(np.arange(5.0), "a"), _frame(np.arange(5.0), "b")])
    df = df.reset_index(drop=True)
    df.loc[9, "timestamp"] = pd.Timestamp("2040-01-01")
    # reversed: the bad row (10th of the file) is row 1 of the frame validated
    with pytest.raises(
        DataValidationError, match=r"jumps by 5843 days .* at row 1 \(series b at 2040"
    ):
        validate_long(df.iloc[::-1], first_row=1)


def test_sorted_frame_is_returned_without_a_sort(monkeypatch):
    df = make_series(n_series=3, n_steps=24)
    calls = []
    original = pd.DataFrame.sort_values

    def spy(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "sort_values", spy)
    pd.testing.assert_frame_equal(validate_long(df), df.astype({"value": float}))
    assert calls == []
    validate_long(df.iloc[::-1])
    assert len(calls) == 1


def test_categorical_ids_read_from_parquet_sort_as_strings(tmp_path):
    from citybrain_ml.data.io import read_frame
    from citybrain_ml.data.validation import validate_blocks

    df = make_series(n_series=4, n_steps=10)
    df["series_id"] = df["series_id"].map({"s0": "z", "s1": "b", "s2": "a10", "s3": "a9"})
    path = tmp_path / "h.parquet"
    df.sample(frac=1.0, random_state=0).to_parquet(path, index=False)
    read = read_frame(path, categorical_ids=True)
    assert isinstance(read["series_id"].dtype, pd.CategoricalDtype)
    assert read["series_id"].cat.categories.is_monotonic_increasing
    plain = validate_long(read_frame(path))
    out, _, starts = validate_blocks(read)
    assert list(starts) == [0, 10, 20, 30]
    back = out.assign(series_id=out["series_id"].astype(out["series_id"].cat.categories.dtype))
    pd.testing.assert_frame_equal(back, plain)
