"""The fast CSV writer must give the same bytes as ``DataFrame.to_csv(index=False)``."""

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.data.csv_writer import csv_bytes

EDGE_FLOATS = [
    0.0,
    -0.0,
    1.0,
    -3.0,
    42.0,
    1e-4,
    1.5e-4,
    9.99e-5,
    1e-5,
    1e15,
    1e16,
    -1e16,
    123456789012345678.0,
    0.1,
    1 / 3,
    2.5,
    np.inf,
    -np.inf,
    np.nan,
    5e-324,
    1.7976931348623157e308,
    9999999999999998.0,
    0.30000000000000004,
]


def _floats(rng, n):
    pools = [
        rng.normal(40, 10, n),
        rng.normal(0, 1e-6, n),
        rng.normal(0, 1e18, n),
        np.round(rng.normal(0, 100, n)),
        rng.choice(EDGE_FLOATS, n),
        # across both writers' switches to exponents (1e-4, ~1e10, 1e16)
        10 ** rng.uniform(-6, 17, n) * rng.choice([-1, 1], n),
    ]
    pick = rng.integers(0, len(pools), n)
    return np.choose(pick, pools)


def _frame(seed: int, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = ["a", "b,c", 'q"uote', "", " space ", "ünï", "x" * 30, "7"]
    frame = pd.DataFrame(
        {
            "series_id": rng.choice(ids, n),
            "timestamp": pd.Timestamp("2024-03-31 22:00")
            + pd.to_timedelta(rng.integers(0, 12, n) * 15, unit="min"),
            "horizon_step": rng.integers(1, 13, n),
            "yhat": _floats(rng, n),
            "yhat_lo_80": _floats(rng, n),
        }
    )
    frame.loc[rng.random(n) < 0.05, "series_id"] = None
    return frame


@pytest.mark.parametrize("seed", range(12))
def test_random_frames_equal_to_csv(seed):
    frame = _frame(seed)
    assert csv_bytes(frame) == frame.to_csv(index=False).encode("utf-8")


@pytest.mark.parametrize(
    "variant",
    [
        "categorical_ids",
        "dates_only",
        "fractional_seconds",
        "nat",
        "bool",
        "float32",
        "all_nan",
        "int_ids",
        "distinct_strings",
        "nullable_float",
        "empty",
        "tz",
    ],
)
def test_column_kinds_equal_to_csv(variant):
    frame = _frame(99, 300)
    if variant == "categorical_ids":
        frame["series_id"] = frame["series_id"].astype("category")
    elif variant == "dates_only":
        frame["timestamp"] = frame["timestamp"].dt.normalize()
    elif variant == "fractional_seconds":
        frame.loc[3, "timestamp"] += pd.Timedelta(microseconds=250)
    elif variant == "nat":
        frame.loc[::7, "timestamp"] = pd.NaT
    elif variant == "bool":
        frame["flag"] = frame["yhat"] > 40
    elif variant == "float32":
        frame["yhat"] = frame["yhat"].astype("float32")
    elif variant == "all_nan":
        frame["yhat"] = np.nan
    elif variant == "int_ids":
        frame["series_id"] = np.arange(len(frame)) % 17
    elif variant == "distinct_strings":
        frame["series_id"] = [f"id-{i}" for i in range(len(frame))]
    elif variant == "nullable_float":
        frame["yhat"] = frame["yhat"].astype("Float64")
    elif variant == "empty":
        frame = frame.head(0)
    elif variant == "tz":
        frame["timestamp"] = frame["timestamp"].dt.tz_localize("Europe/Berlin")
    assert csv_bytes(frame) == frame.to_csv(index=False).encode("utf-8")


def test_line_break_in_a_value_falls_back_to_pandas():
    frame = pd.DataFrame({"series_id": ["a\nb", "c"], "yhat": [1.5, 2.5]})
    assert csv_bytes(frame) == frame.to_csv(index=False).encode("utf-8")


def test_sliced_frame_equal_to_csv():
    frame = _frame(5, 1000).iloc[137:611]
    assert csv_bytes(frame) == frame.to_csv(index=False).encode("utf-8")


@pytest.mark.parametrize("values", [["", "a"], [None, "a"], [np.nan, 1.5]])
def test_single_column_with_empty_values_equal_to_csv(values):
    frame = pd.DataFrame({"v": values})
    assert csv_bytes(frame) == frame.to_csv(index=False).encode("utf-8")
