"""City-scale scoring costs what the model needs: vectorised series checks, no re-sort of sorted
input, history trimmed to the model's need, features at the forecast origins only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_series

from citybrain_ml.data.sorted_frames import is_sorted, series_starts, tail_mask
from citybrain_ml.features.graph import neighbour_features
from citybrain_ml.features.lag_transforms import (
    diff_features,
    ewm_features,
    lag_features,
    rolling_features,
)
from citybrain_ml.features.origin import features_at_rows, neighbour_features_at_rows
from citybrain_ml.models.base import _prepare
from citybrain_ml.models.lightgbm import LightGBMForecaster
from citybrain_ml.scoring import check_series

FAST = dict(n_estimators=20, num_leaves=15, min_child_samples=10, n_jobs=1)


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return make_series(n_series=4, n_steps=24 * 21)


@pytest.fixture(scope="module")
def model(df) -> LightGBMForecaster:
    return LightGBMForecaster(horizon=3, calibration_steps=24, **FAST).fit(df)


# ---------------------------------------------------------------------- sortedness
def test_sorted_check_on_series_and_time():
    df = make_series(n_series=3, n_steps=10)
    assert is_sorted(df)  # multi-series, sorted: timestamps go back at each new series
    assert not is_sorted(df.iloc[::-1])
    swapped = df.copy()
    swapped.loc[[3, 4], "timestamp"] = swapped.loc[[4, 3], "timestamp"].to_numpy()
    assert not is_sorted(swapped)
    for dtype in ("object", "category", "str"):
        assert is_sorted(df.astype({"series_id": dtype}))
    assert list(series_starts(df)) == [0, 10, 20]
    assert tail_mask(df, 4).sum() == 12 and tail_mask(df, 4)[6:10].all()


def test_sorted_input_is_not_resorted(monkeypatch, df):
    calls = []
    original = pd.DataFrame.sort_values

    def spy(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "sort_values", spy)
    _prepare(df)
    assert calls == []
    _prepare(df.sample(frac=1.0, random_state=0))
    assert len(calls) == 1


def test_unsorted_input_forecasts_the_same(model, df):
    shuffled = df.sample(frac=1.0, random_state=1).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        model.predict(3, history_df=shuffled, levels=[90]),
        model.predict(3, history_df=df, levels=[90]),
    )


# ---------------------------------------------------------------------- trimming + origins
def test_trimmed_history_gives_identical_forecasts(model, df):
    keep = model._history_to_keep()
    assert model.bounded_history and keep < df.groupby("series_id").size().min()
    full = model.predict(3, history_df=df, levels=[80, 90])
    trimmed = model.predict(3, history_df=df.groupby("series_id").tail(keep), levels=[80, 90])
    pd.testing.assert_frame_equal(full, trimmed, check_exact=True)
    # what predict passes on to the features: each series' last `keep` rows only
    seen = []
    original = model._predict
    model._predict = lambda history, *a: seen.append(len(history)) or original(history, *a)
    try:
        model.predict(3, history_df=df)
    finally:
        del model._predict
    assert seen == [4 * keep]


def test_ragged_ends_and_short_series_keep_their_own_origin(model, df):
    ragged = df[
        ~(df["series_id"].eq("s1") & (df["timestamp"] > df["timestamp"].max() - pd.Timedelta("5h")))
    ]
    fc = model.predict(3, history_df=ragged)
    ends = ragged.groupby("series_id")["timestamp"].max()
    first = fc[fc["horizon_step"] == 1].set_index("series_id")["timestamp"]
    assert (first - ends == pd.Timedelta("1h")).all()
    pd.testing.assert_frame_equal(
        fc, model.predict(3, history_df=ragged.groupby("series_id").tail(model._history_to_keep()))
    )


def test_features_at_origins_match_the_full_matrix():
    rng = np.random.default_rng(0)
    a = rng.normal(50, 10, (300, 6))
    a[rng.random(a.shape) < 0.15] = np.nan
    a[40:120, 2] = np.nan  # a long gap: windows with no reading give NaN
    rows = np.array([0, 1, 5, 47, 100, 130, 299])
    spec = dict(lags=(1, 2, 12), windows=(4, 48), diffs=(1, 24), halflives=(2.0, 8.0))
    full = {
        **lag_features(a, spec["lags"]),
        **rolling_features(a, spec["windows"]),
        **diff_features(a, spec["diffs"]),
        **ewm_features(a, spec["halflives"]),
    }
    got = features_at_rows(a, rows, **spec)
    assert list(got) == list(full)
    for name, mat in full.items():
        np.testing.assert_allclose(got[name], mat[rows], rtol=1e-9, atol=1e-9, err_msg=name)
    edges = pd.DataFrame({"src": ["a", "b", "c", "d"], "dst": ["b", "c", "d", "e"], "weight": 1.0})
    ids = np.array(["a", "b", "c", "d", "e", "f"], dtype=object)
    nbr = neighbour_features(a, edges, ids, lags=(1, 2), windows=(4,), two_hop=True)
    got = neighbour_features_at_rows(a, rows, edges, ids, lags=(1, 2), windows=(4,), two_hop=True)
    assert list(got) == list(nbr)
    for name, mat in nbr.items():
        np.testing.assert_allclose(got[name], mat[rows], rtol=1e-9, atol=1e-9, err_msg=name)


def test_graph_model_forecasts_from_origins_equal_rolling_origin_path(df):
    edges = pd.DataFrame({"src": ["s0", "s1", "s2"], "dst": ["s1", "s2", "s3"], "weight": 1.0})
    model = LightGBMForecaster(horizon=3, calibration_steps=0, adjacency=edges, **FAST).fit(df)
    last = df["timestamp"].max()
    fast = model.historical_forecasts(df, [last], 3).drop(columns="origin")
    pd.testing.assert_frame_equal(model.predict(3, history_df=df), fast, rtol=1e-6)


# ---------------------------------------------------------------------- series checks
def _legacy_check_series(model, history, as_of):
    """The per-series loop the vectorised check replaced (reference for equality)."""
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(model.freq_))
    known = set(getattr(model, "series_ids_", []))
    fixed = not getattr(model, "handles_new_series", True)
    need = max(int(getattr(model, "min_history", 1)), 1)
    usable, skipped = [], {}
    for sid, grp in history.groupby("series_id", sort=True):
        observed = grp.dropna(subset=["value"])
        steps = grp["timestamp"].diff().dropna()
        if fixed and sid not in known:
            skipped[str(sid)] = "unknown series: the model was trained on a fixed set of series"
        elif len(steps) and steps.mode().iloc[0] != step:
            skipped[str(sid)] = (
                f"wrong frequency: step {steps.mode().iloc[0]}, model expects {step}"
            )
        elif observed.empty or observed["timestamp"].max() < as_of - step:
            last = "never" if observed.empty else str(observed["timestamp"].max())
            skipped[str(sid)] = f"missing recent history: last value {last}, as-of {as_of}"
        elif len(grp) < need:
            skipped[str(sid)] = f"too little history: {len(grp)} steps, model needs {need}"
        else:
            usable.append(sid)
    return usable, skipped


class _Fixed:
    """A model tied to its training series (as STID)."""

    freq_ = "h"
    series_ids_ = ["good0", "good1", "stale", "never", "short", "hourly2h", "tie", "gappy"]
    handles_new_series = False
    min_history = 12


def _bad_corpus() -> pd.DataFrame:
    ts = pd.date_range("2024-03-01", periods=96, freq="h")
    end = ts[-1]
    parts = {
        "good0": pd.DataFrame({"timestamp": ts, "value": 1.0}),
        "good1": pd.DataFrame({"timestamp": ts, "value": 2.0}),
        "stale": pd.DataFrame(
            {"timestamp": ts, "value": np.where(ts > end - pd.Timedelta("3h"), np.nan, 1.0)}
        ),
        "never": pd.DataFrame({"timestamp": ts, "value": np.nan}),
        "short": pd.DataFrame({"timestamp": ts[-5:], "value": 1.0}),
        "hourly2h": pd.DataFrame({"timestamp": ts[::2], "value": 1.0}),
        # as many 1 h as 2 h steps: the mode is the shorter one, 1 h
        "tie": pd.DataFrame({"timestamp": ts[np.r_[0:10, 10:30:2, 30:96]], "value": 1.0}),
        "gappy": pd.DataFrame({"timestamp": ts[np.r_[0:20, 21:40:3, 40:96]], "value": 1.0}),
        "unknown": pd.DataFrame({"timestamp": ts, "value": 1.0}),
        "one_row": pd.DataFrame({"timestamp": ts[-1:], "value": 1.0}),
        "daily_stale": pd.DataFrame({"timestamp": ts[::24], "value": 1.0}),
        "mostly_2h": pd.DataFrame({"timestamp": ts[np.r_[0:60:2, 60:96]], "value": 1.0}),
    }
    return pd.concat([p.assign(series_id=k) for k, p in parts.items()], ignore_index=True)[
        ["series_id", "timestamp", "value"]
    ]


@pytest.mark.parametrize("fixed", [True, False])
@pytest.mark.parametrize("order", ["sorted", "shuffled"])
@pytest.mark.parametrize("tz", [None, "Asia/Shanghai"])
def test_vectorised_checks_match_the_per_series_loop(fixed, order, tz):
    corpus = _bad_corpus()
    if tz:
        corpus["timestamp"] = corpus["timestamp"].dt.tz_localize(tz)
    if order == "shuffled":
        corpus = corpus.sample(frac=1.0, random_state=0).reset_index(drop=True)
    model = _Fixed()
    model.handles_new_series = not fixed
    as_of = corpus["timestamp"].max()
    expected = _legacy_check_series(model, corpus.sort_values(["series_id", "timestamp"]), as_of)
    assert check_series(model, corpus, as_of) == expected
    usable, skipped = expected
    assert len(skipped) >= 6 + fixed and usable  # the corpus exercises every reason
    reasons = " ".join(skipped.values())
    for kind in ("wrong frequency", "missing recent history", "too little history"):
        assert kind in reasons
    assert ("unknown series" in reasons) == fixed


# ---------------------------------------------------------------------- one-pass bounds
@pytest.mark.parametrize("dtype", ["object", "category", "str"])
def test_sorted_series_starts_match_the_two_pass_checks(dtype):
    from citybrain_ml.data.sorted_frames import sorted_series_starts

    df = make_series(n_series=4, n_steps=6).astype({"series_id": dtype})
    assert list(sorted_series_starts(df)) == list(series_starts(df)) == [0, 6, 12, 18]
    rng = np.random.default_rng(0)
    for _ in range(30):
        order = rng.permutation(len(df)) if rng.random() < 0.7 else np.arange(len(df))
        sample = df.iloc[order]
        starts = sorted_series_starts(sample)
        assert (starts is not None) == is_sorted(sample)
        if starts is not None:
            assert list(starts) == list(series_starts(sample))
    # a series split in two blocks is not sorted even though each block is
    split = pd.concat([df.iloc[:3], df.iloc[6:], df.iloc[3:6]])
    assert sorted_series_starts(split) is None and not is_sorted(split)


def test_take_rows_on_chunked_arrow_strings_equals_take(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from citybrain_ml.data.sorted_frames import take_rows

    df = make_series(n_series=5, n_steps=40)
    path = tmp_path / "h.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=7)
    read = pd.read_parquet(path)
    chunks = getattr(read["series_id"].array, "_pa_array", None)
    pos = tail_mask(read, 9).nonzero()[0]
    got = take_rows(read, pos)
    pd.testing.assert_frame_equal(got, read.take(pos).reset_index(drop=True))
    if chunks is not None:
        assert chunks.num_chunks > 1  # the chunk-by-chunk path was the one tested
