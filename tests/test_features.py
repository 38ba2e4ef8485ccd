"""Feature values on tiny hand-computed frames: lags, windows, no look-ahead, calendar, graph."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.features.calendar import add_calendar_features, calendar_features
from citybrain_ml.features.graph import (
    add_neighbour_features,
    neighbour_features,
    neighbour_weights,
)
from citybrain_ml.features.lag_transforms import (
    add_lag_features,
    ewm_features,
    history_needed,
    lag_features,
    rolling_features,
    seasonal_lag,
    to_matrix,
)

NAN = np.nan


def _frame(values: dict[str, list[float]], freq: str = "h") -> pd.DataFrame:
    frames = []
    for sid, vals in values.items():
        ts = pd.date_range("2024-01-01", periods=len(vals), freq=freq)
        frames.append(pd.DataFrame({"series_id": sid, "timestamp": ts, "value": vals}))
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------- lags and windows
def test_lag_1_is_the_origin_value_and_lags_look_back():
    a = np.array([[1.0], [2.0], [3.0], [4.0]])
    f = lag_features(a, (1, 3))
    np.testing.assert_array_equal(f["lag_1"][:, 0], [1, 2, 3, 4])
    np.testing.assert_array_equal(f["lag_3"][:, 0], [NAN, NAN, 1, 2])


def test_lag_zero_is_rejected():
    with pytest.raises(ValueError, match="lags start at 1"):
        lag_features(np.zeros((3, 1)), (0,))


def test_rolling_windows_end_at_origin_and_skip_nan():
    a = np.array([[1.0], [3.0], [NAN], [7.0], [9.0]])
    f = rolling_features(a, (2,))
    np.testing.assert_allclose(f["roll_mean_2"][:, 0], [1, 2, 3, 7, 8])
    np.testing.assert_allclose(f["roll_min_2"][:, 0], [1, 1, 3, 7, 7])
    np.testing.assert_allclose(f["roll_max_2"][:, 0], [1, 3, 3, 7, 9])
    np.testing.assert_allclose(f["roll_std_2"][:, 0], [NAN, np.sqrt(2), NAN, NAN, np.sqrt(2)])


def test_features_never_use_values_after_the_origin():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 3))
    changed = a.copy()
    changed[25:] += 100.0  # alter the future of origin 24
    kwargs = dict(lags=(1, 2, 5), windows=(3, 7), diffs=(1,), halflives=(2.0,))
    df_a = _frame({f"s{j}": list(a[:, j]) for j in range(3)})
    df_b = _frame({f"s{j}": list(changed[:, j]) for j in range(3)})
    fa = add_lag_features(df_a, "h", **kwargs)
    fb = add_lag_features(df_b, "h", **kwargs)
    past = fa["timestamp"] <= pd.Timestamp("2024-01-01") + pd.Timedelta(hours=24)
    feature_cols = [c for c in fa.columns if c not in ("series_id", "timestamp", "value")]
    pd.testing.assert_frame_equal(fa.loc[past, feature_cols], fb.loc[past, feature_cols])
    assert not np.allclose(fa.loc[~past, "lag_1"], fb.loc[~past, "lag_1"])


def test_add_lag_features_on_long_frame_keeps_series_apart():
    df = _frame({"a": [1.0, 2.0, 3.0], "b": [10.0, 20.0, 30.0]})
    out = add_lag_features(df, "h", lags=(2,), diffs=(1,))
    np.testing.assert_array_equal(out["lag_2"], [NAN, 1, 2, NAN, 10, 20])
    np.testing.assert_array_equal(out["diff_1"], [NAN, 1, 1, NAN, 10, 10])


def test_ewm_matches_hand_weights_and_skips_nan():
    a = np.array([[2.0], [NAN], [4.0]])
    f = ewm_features(a, (1.0,))["ewm_1"][:, 0]
    # half-life 1: weights 1, 0.5, 0.25 for lags 0, 1, 2
    assert f[0] == pytest.approx(2.0)
    assert f[1] == pytest.approx(2.0)
    assert f[2] == pytest.approx((4.0 * 1 + 2.0 * 0.25) / 1.25)


def test_seasonal_lag_is_aligned_to_the_target():
    a = np.arange(10, dtype=float)[:, None]
    # season 4: for h=1 the value at t+1-4, for h=5 two seasons back: t+5-8
    np.testing.assert_array_equal(seasonal_lag(a, 4, 1)[5:, 0], a[2:7, 0])
    np.testing.assert_array_equal(seasonal_lag(a, 4, 5)[5:, 0], a[2:7, 0])
    np.testing.assert_array_equal(seasonal_lag(a, 4, 4)[:, 0], a[:, 0])


def test_history_needed_covers_every_feature():
    assert history_needed(lags=(1, 3), windows=(5,), diffs=(2,), seasonal=(24,)) == 24
    assert history_needed(lags=(1, 3), windows=(5,), diffs=(6,)) == 7


def test_to_matrix_places_gaps_and_rejects_bad_grids():
    df = _frame({"a": [1.0, 2.0, 3.0]}).drop(index=1)
    m = to_matrix(df, "h")
    np.testing.assert_array_equal(m.values[:, 0], [1, NAN, 3])
    np.testing.assert_array_equal(m.present[:, 0], [True, False, True])
    off = df.assign(timestamp=df["timestamp"] + pd.to_timedelta([0, 30], unit="min"))
    with pytest.raises(ValueError, match="off the regular h grid"):
        to_matrix(off, "h")
    with pytest.raises(ValueError, match="duplicate row for series 'a'"):
        to_matrix(pd.concat([df, df.iloc[:1]]), "h")


# ---------------------------------------------------------------------- calendar
def test_calendar_values():
    ts = pd.to_datetime(["2024-01-06 00:00", "2024-01-08 06:30", "2024-01-08 18:00"])
    cal = calendar_features(ts, holiday=[0, 1, NAN])
    np.testing.assert_array_equal(cal["hour"], [0, 6, 18])
    np.testing.assert_array_equal(cal["minute_of_day"], [0, 390, 1080])
    np.testing.assert_array_equal(cal["day_of_week"], [5, 0, 0])  # Saturday, Monday
    np.testing.assert_array_equal(cal["is_weekend"], [1, 0, 0])
    np.testing.assert_allclose(cal["tod_sin"], [0, np.sin(2 * np.pi * 390 / 1440), -1], atol=1e-12)
    np.testing.assert_allclose(cal["tod_cos"], [1, np.cos(2 * np.pi * 390 / 1440), 0], atol=1e-12)
    np.testing.assert_array_equal(cal["is_holiday"], [0, 1, NAN])


def test_add_calendar_features_needs_an_existing_holiday_column():
    df = _frame({"a": [1.0, 2.0]}).assign(bank_holiday=[1, 0])
    out = add_calendar_features(df, holiday_column="bank_holiday")
    np.testing.assert_array_equal(out["is_holiday"], [1, 0])
    with pytest.raises(ValueError, match="holiday column 'nope'"):
        add_calendar_features(df, holiday_column="nope")


# ---------------------------------------------------------------------- graph
PATH_EDGES = pd.DataFrame({"src": ["a", "b"], "dst": ["b", "c"], "weight": [1.0, 1.0]})


def test_path_graph_neighbour_means_are_exact():
    # path a - b - c (plus an isolated node d), two time steps
    a = np.array([[1.0, 2.0, 4.0, 9.0], [3.0, NAN, 8.0, 9.0]])
    f = neighbour_features(a, PATH_EDGES, ["a", "b", "c", "d"], lags=(1, 2), windows=(2,))
    # t0: a sees b, b sees mean(a, c), c sees b; d has no neighbours -> NaN
    np.testing.assert_allclose(f["nbr_lag_1"][0], [2.0, 2.5, 2.0, NAN])
    # t1: b missing -> a and c have no observed neighbour; b still averages a and c
    np.testing.assert_allclose(f["nbr_lag_1"][1], [NAN, 5.5, NAN, NAN])
    np.testing.assert_allclose(f["nbr_lag_2"][1], [2.0, 2.5, 2.0, NAN])
    # rolling mean over 2 of each neighbour, then averaged: b at t1 = mean(2, 6) = 4
    np.testing.assert_allclose(f["nbr_roll_mean_2"][1], [2.0, 4.0, 2.0, NAN])


def test_weighted_two_hop_and_directed_edges():
    edges = pd.DataFrame({"src": ["a", "b", "a"], "dst": ["b", "c", "c"], "weight": [1.0, 1, 3]})
    ids = ["a", "b", "c"]
    w = neighbour_weights(edges, ids).toarray()
    np.testing.assert_array_equal(w, [[0, 1, 3], [1, 0, 1], [3, 1, 0]])
    a = np.array([[1.0, 2.0, 5.0]])
    f = neighbour_features(a, edges, ids)
    np.testing.assert_allclose(f["nbr_lag_1"][0], [(2 + 15) / 4, 3.0, (3 + 2) / 4])
    directed = neighbour_weights(edges, ids, symmetric=False).toarray()
    np.testing.assert_array_equal(directed, [[0, 0, 0], [1, 0, 0], [3, 1, 0]])
    ring = neighbour_weights(PATH_EDGES, ids, hops=2).toarray()
    np.testing.assert_array_equal(ring, [[0, 0, 1], [0, 0, 0], [1, 0, 0]])
    f2 = neighbour_features(a, PATH_EDGES, ids, two_hop=True)
    np.testing.assert_allclose(f2["nbr2_lag_1"][0], [5.0, NAN, 1.0])


def test_add_neighbour_features_long_frame_and_bad_edges():
    df = _frame({"a": [1.0, 3.0], "b": [2.0, NAN], "c": [4.0, 8.0]})
    out = add_neighbour_features(df, PATH_EDGES, "h", lags=(1,), windows=())
    np.testing.assert_allclose(out["nbr_lag_1"], [2.0, NAN, 2.5, 5.5, 2.0, NAN])
    with pytest.raises(ValueError, match="adjacency lacks column"):
        neighbour_weights(PATH_EDGES.rename(columns={"weight": "w"}), ["a", "b", "c"])
