"""Disclosure control: small-cell suppression/merging and the coordinate guard."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.data.privacy import (
    PrivacyError,
    assert_no_raw_coordinates,
    suppress_small_cells,
)


def _forecast():
    ids = ["cell_0_0", "cell_0_1", "cell_1_0", "cell_1_1", "cell_0_2", "cell_0_3"]
    return pd.DataFrame(
        {
            "series_id": ids,
            "timestamp": pd.Timestamp("2024-01-01"),
            "yhat": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "yhat_lo_90": [0.5] * 6,
        }
    )


COUNTS = pd.Series(
    {"cell_0_0": 4, "cell_0_1": 5, "cell_1_0": 9, "cell_1_1": 0, "cell_0_2": 5, "cell_0_3": 7}
)


def test_suppress_threshold_boundary():
    out = suppress_small_cells(_forecast(), COUNTS, k=5)
    # 4 < 5 and 0 < 5 are suppressed; exactly 5 is kept
    assert out["suppressed"].tolist() == [True, False, False, True, False, False]
    assert np.isnan(out.loc[0, "yhat"]) and np.isnan(out.loc[0, "yhat_lo_90"])
    assert out.loc[1, "yhat"] == 2.0
    dropped = suppress_small_cells(_forecast(), COUNTS, k=5, drop=True)
    assert dropped["series_id"].tolist() == ["cell_0_1", "cell_1_0", "cell_0_2", "cell_0_3"]


def test_cells_missing_from_training_counts_are_suppressed():
    out = suppress_small_cells(_forecast(), COUNTS.drop("cell_0_3"), k=1)
    assert out.set_index("series_id").loc["cell_0_3", "suppressed"]


def test_merge_sums_blocks_with_a_small_cell():
    out = suppress_small_cells(_forecast(), COUNTS, k=5, mode="merge").set_index("series_id")
    # block2_0_0 = cells (0,0) (0,1) (1,0) (1,1); it holds small cells -> pooled:
    # yhat 1 + 2 + 3 + 4 = 10; training count 4 + 5 + 9 + 0 = 18 >= 5 -> published
    assert out.loc["block2_0_0", "yhat"] == 10.0 and out.loc["block2_0_0", "merged"]
    assert not out.loc["block2_0_0", "suppressed"]
    assert np.isnan(out.loc["block2_0_0", "yhat_lo_90"])  # interval bounds do not add up
    # block2_0_1 = cells (0,2) (0,3): counts 5 and 7, no small cell -> full resolution
    assert out.loc["cell_0_2", "yhat"] == 5.0 and not out.loc["cell_0_2", "merged"]
    assert "cell_0_0" not in out.index


def test_merge_block_still_small_is_suppressed():
    counts = pd.Series({"cell_0_0": 1, "cell_0_1": 1, "cell_1_0": 1, "cell_1_1": 1})
    frame = _forecast().iloc[:4]
    out = suppress_small_cells(frame, counts, k=5, mode="merge")
    # block count 1 + 1 + 1 + 1 = 4 < 5 -> the pooled row is masked
    assert out["series_id"].tolist() == ["block2_0_0"] and out["suppressed"].iloc[0]
    assert np.isnan(out["yhat"].iloc[0])


def test_merge_with_sensor_positions():
    frame = pd.DataFrame({"series_id": ["a", "b"], "timestamp": 0, "value": [1.0, 2.0]})
    sensors = pd.DataFrame({"series_id": ["a", "b"], "row": [0, 1], "col": [0, 1]})
    out = suppress_small_cells(
        frame, pd.Series({"a": 0, "b": 9}), k=5, mode="merge", sensors=sensors
    )
    assert out["series_id"].tolist() == ["block2_0_0"] and out["value"].iloc[0] == 3.0
    with pytest.raises(ValueError, match="pass sensors"):
        suppress_small_cells(frame, pd.Series({"a": 0}), mode="merge")


def test_coordinate_guard():
    with pytest.raises(PrivacyError, match="raw coordinates"):
        assert_no_raw_coordinates(pd.DataFrame({"series_id": ["a"], "Latitude": [41.9]}))
    with pytest.raises(PrivacyError, match="raw coordinates"):
        assert_no_raw_coordinates(pd.DataFrame({"x": [1.0], "y": [2.0]}))
    centroids = pd.DataFrame(
        {"series_id": ["a", "a", "b"], "centroid_lat": [41.9, 41.9, 42.0], "centroid_lon": 0.0}
    )
    assert_no_raw_coordinates(centroids)  # one centroid per cell: allowed
    events = centroids.assign(centroid_lat=[41.9, 41.91, 42.0])
    with pytest.raises(PrivacyError, match="event-level"):
        assert_no_raw_coordinates(events, name="events.csv")
    with pytest.raises(PrivacyError, match="need a 'series_id'"):
        assert_no_raw_coordinates(pd.DataFrame({"cell_lat": [1.0]}))
