"""events_to_grid: exact counts, zeros, cell assignment and rook adjacency on hand-made events."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.data import GridSpec, events_to_grid
from citybrain_ml.data.grid import M_PER_DEG

# a 2 x 3 grid of 1 km cells anchored at (41.8, -87.7)
GRID = GridSpec(lat0=41.8, lon0=-87.7, cell_size_m=1000.0, n_rows=2, n_cols=3)


def _point(row: float, col: float) -> tuple[float, float]:
    """Lat/lon of fractional cell coordinates (e.g. 0.5, 0.5 is the centre of cell 0,0)."""
    lat = GRID.lat0 + row * 1000.0 / M_PER_DEG
    lon = GRID.lon0 + col * 1000.0 / (M_PER_DEG * np.cos(np.radians(GRID.ref_lat)))
    return lat, lon


def _events(cells_and_times, severity=None):
    rows = []
    for (r, c), ts in cells_and_times:
        lat, lon = _point(r, c)
        rows.append({"timestamp": pd.Timestamp(ts), "lat": lat, "lon": lon})
    events = pd.DataFrame(rows)
    if severity is not None:
        events["severity"] = severity
    return events


def test_counts_and_zeros_exact():
    events = _events(
        [
            ((0.5, 0.5), "2024-01-01 08:00"),
            ((0.2, 0.9), "2024-01-01 23:59"),  # same cell, same day
            ((1.5, 2.5), "2024-01-03 00:00"),  # north-east cell, day 3
        ]
    )
    ds = events_to_grid(events, grid=GRID, freq="D")
    wide = ds.to_wide()
    assert list(wide.index) == list(pd.date_range("2024-01-01", "2024-01-03", freq="D"))
    assert list(wide.columns) == [
        "cell_0_0",
        "cell_0_1",
        "cell_0_2",
        "cell_1_0",
        "cell_1_1",
        "cell_1_2",
    ]
    expected = np.zeros((3, 6))
    expected[0, 0] = 2
    expected[2, 5] = 1
    np.testing.assert_array_equal(wide.to_numpy(), expected)
    assert len(ds.values) == 3 * 6  # every cell x every period, zeros included


def test_cell_assignment_near_boundaries():
    # just inside each side of the boundary between col 0 and col 1, and row 0 / row 1
    events = _events(
        [((0.5, 0.999), "2024-01-01"), ((0.5, 1.001), "2024-01-01"), ((1.001, 0.5), "2024-01-01")]
    )
    rows, cols = GRID.cell_of(events["lat"], events["lon"])
    assert rows.tolist() == [0, 0, 1]
    assert cols.tolist() == [0, 1, 0]


def test_weight_column_is_summed():
    events = _events([((0.5, 0.5), "2024-01-01"), ((0.5, 0.5), "2024-01-01")], severity=[2.0, 0.5])
    ds = events_to_grid(events, grid=GRID, weight="severity")
    assert ds.to_wide().loc["2024-01-01", "cell_0_0"] == 2.5


def test_events_outside_grid_or_period_dropped_with_warning():
    events = _events(
        [((0.5, 0.5), "2024-01-02"), ((5.0, 0.5), "2024-01-02"), ((0.5, 0.5), "2023-12-25")]
    )
    with pytest.warns(UserWarning, match="dropped 2 of 3"):
        ds = events_to_grid(events, grid=GRID, start="2024-01-01", end="2024-01-03")
    wide = ds.to_wide()
    assert wide.shape == (3, 6) and wide.to_numpy().sum() == 1


def test_hourly_freq_and_sensors_and_rook_adjacency():
    events = _events([((0.5, 0.5), "2024-01-01 00:10"), ((0.5, 0.5), "2024-01-01 02:50")])
    ds = events_to_grid(events, grid=GRID, freq="h")
    assert ds.to_wide()["cell_0_0"].tolist() == [1.0, 0.0, 1.0]
    centre = ds.sensors.set_index("series_id").loc["cell_1_2"]
    lat, lon = _point(1.5, 2.5)
    assert centre["lat"] == pytest.approx(lat) and centre["lon"] == pytest.approx(lon)
    edges = set(zip(ds.adjacency["src"], ds.adjacency["dst"], strict=True))
    # 2x3 grid: 7 undirected sides, both directions
    assert len(edges) == 14
    assert ("cell_0_0", "cell_0_1") in edges and ("cell_1_1", "cell_0_1") in edges
    assert ("cell_0_0", "cell_1_1") not in edges  # diagonal is not a rook neighbour


def test_cell_size_builds_covering_grid():
    lat0, lon0 = 41.8, -87.7
    events = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(["2024-01-01", "2024-01-01"]),
            "lat": [lat0, lat0 + 2500 / M_PER_DEG],  # 2.5 km north -> 3 rows of 1 km
            "lon": [lon0, lon0],
        }
    )
    ds = events_to_grid(events, cell_size=1000)
    grid = ds.extras["grid"]
    assert (grid.n_rows, grid.n_cols) == (3, 1)
    assert ds.to_wide().iloc[0].tolist() == [1.0, 0.0, 1.0]


def test_calendar_frequency_weekly():
    events = _events([((0.5, 0.5), "2024-01-01"), ((0.5, 0.5), "2024-01-09")])  # Monday, Tuesday
    ds = events_to_grid(events, grid=GRID, freq="W")
    assert ds.to_wide()["cell_0_0"].tolist() == [1.0, 1.0]


def test_needs_cell_size_or_grid():
    with pytest.raises(ValueError, match="cell_size"):
        events_to_grid(_events([((0.5, 0.5), "2024-01-01")]))


def test_vectorised_on_300k_events():
    rng = np.random.default_rng(0)
    n = 321_877
    events = pd.DataFrame(
        {
            "timestamp": pd.Timestamp("2016-01-01")
            + pd.to_timedelta(rng.integers(0, 730 * 86400, n), unit="s"),
            "lat": rng.uniform(41.64, 42.02, n),
            "lon": rng.uniform(-87.94, -87.52, n),
        }
    )
    t0 = time.perf_counter()
    ds = events_to_grid(events, cell_size=3000, freq="D")
    assert time.perf_counter() - t0 < 10
    assert ds.values["value"].sum() == n
