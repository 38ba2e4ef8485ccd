"""LightGBMForecaster: the model contract, the vectorised rolling-origin path, persistence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_series

from citybrain_ml.features.lag_transforms import to_matrix
from citybrain_ml.models.base import conformal_quantile
from citybrain_ml.models.baselines import LastValue
from citybrain_ml.models.lightgbm import LightGBMForecaster, _gather, quantile_column

FAST = dict(n_estimators=25, num_leaves=15, min_child_samples=10, n_jobs=1)


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return make_series(n_series=3, n_steps=24 * 21)


@pytest.fixture(scope="module")
def fitted(df) -> LightGBMForecaster:
    return LightGBMForecaster(horizon=4, calibration_steps=48, **FAST).fit(df)


def _mae(fc: pd.DataFrame, truth: pd.DataFrame) -> float:
    m = fc.merge(truth, on=["series_id", "timestamp"])
    return float((m["yhat"] - m["value"]).abs().mean())


def test_fit_returns_self_and_forecast_shape(df):
    model = LightGBMForecaster(horizon=4, calibration_steps=0, **FAST)
    assert model.fit(df) is model
    fc = model.predict(4)
    assert list(fc.columns) == ["series_id", "timestamp", "horizon_step", "yhat"]
    assert len(fc) == 3 * 4
    assert fc["horizon_step"].tolist() == [1, 2, 3, 4] * 3
    last = df["timestamp"].max()
    expected = [last + pd.Timedelta(hours=h) for h in (1, 2, 3, 4)] * 3
    assert fc["timestamp"].tolist() == expected
    assert fc["yhat"].notna().all()


def test_intervals_are_nested(fitted):
    fc = fitted.predict(4, levels=[80, 90])
    assert (fc["yhat_lo_80"] <= fc["yhat"]).all() and (fc["yhat"] <= fc["yhat_hi_80"]).all()
    assert (fc["yhat_lo_90"] <= fc["yhat_lo_80"]).all()
    assert (fc["yhat_hi_80"] <= fc["yhat_hi_90"]).all()


def test_vectorised_historical_forecasts_equal_per_origin_predict(fitted, df):
    origins = pd.DatetimeIndex(np.sort(df["timestamp"].unique())[-40:-30:3])
    fast = fitted.historical_forecasts(df, origins, 4)
    for origin in origins:
        slow = fitted.predict(4, history_df=df[df["timestamp"] <= origin])
        got = fast[fast["origin"] == origin].drop(columns="origin").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, slow, check_exact=False, rtol=1e-6)
    assert len(fast) == len(origins) * 3 * 4


def test_same_seed_gives_identical_forecasts(df):
    a = LightGBMForecaster(horizon=2, calibration_steps=0, seed=3, **FAST).fit(df).predict(2)
    b = LightGBMForecaster(horizon=2, calibration_steps=0, seed=3, **FAST).fit(df).predict(2)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_save_load_round_trip_is_identical(fitted, tmp_path):
    fitted.save(tmp_path / "lgbm")
    loaded = LightGBMForecaster.load(tmp_path / "lgbm")
    pd.testing.assert_frame_equal(
        loaded.predict(4, levels=[90]), fitted.predict(4, levels=[90]), check_exact=True
    )


def test_quantile_objective_gives_ordered_columns(df):
    model = LightGBMForecaster(
        horizon=2, objective="quantile", quantiles=(0.1, 0.9), calibration_steps=0, **FAST
    ).fit(df)
    fc = model.predict(2)
    lo, hi = quantile_column(0.1), quantile_column(0.9)
    assert list(fc.columns[-2:]) == [lo, hi]
    assert (fc[lo] <= fc["yhat"]).all() and (fc["yhat"] <= fc[hi]).all()
    assert (fc[hi] - fc[lo]).mean() > 0.5  # noise sd is 1, so a real spread


def test_nan_targets_are_ignored(df):
    holed = df.copy()
    holed.loc[holed.index % 5 == 0, "value"] = np.nan
    params = dict(horizon=2, calibration_steps=0, **FAST)
    model = LightGBMForecaster(**params).fit(holed)
    fc = model.predict(2)
    assert fc["yhat"].notna().all()
    # missing targets must not be learned as zeros: forecasts stay at the data's level
    assert fc["yhat"].min() > 20


def test_beats_last_value_on_seasonal_series():
    data = make_series(n_series=4, n_steps=24 * 28, seed=1)
    cut = data["timestamp"].unique()[24 * 21]
    train = data[data["timestamp"] <= cut]
    origins = pd.DatetimeIndex(np.sort(data["timestamp"].unique())[24 * 21 : -6 : 5])
    lgbm = LightGBMForecaster(horizon=6, calibration_steps=0, **FAST).fit(train)
    naive = LastValue(horizon=6, calibration_steps=0).fit(train)
    mae_lgbm = _mae(lgbm.historical_forecasts(data, origins, 6), data)
    mae_naive = _mae(naive.historical_forecasts(data, origins, 6), data)
    assert mae_lgbm < 0.6 * mae_naive


def test_pooled_strategy_normalised_target_and_covariates(df):
    frame = df.assign(temp=np.cos(np.arange(len(df)) / 7.0))
    model = LightGBMForecaster(
        horizon=3,
        strategy="pooled",
        target_transform="normalize_per_series",
        calibration_steps=0,
        **FAST,
    ).fit(frame)
    names = set(model.feature_importance()["feature"])
    assert {"horizon_step", "cov_temp", "seasonal_24", "hour"} <= names
    fc = model.predict(3)
    assert fc["yhat"].between(30, 75).all()
    with pytest.raises(ValueError, match="lacks covariate column"):
        model.predict(3, history_df=df)


def test_graph_features_and_unseen_series(df):
    edges = pd.DataFrame({"src": ["s0", "s1"], "dst": ["s1", "s2"], "weight": [1.0, 1.0]})
    model = LightGBMForecaster(horizon=2, adjacency=edges, calibration_steps=0, **FAST).fit(df)
    imp = model.feature_importance(by_step=True)
    assert set(imp["horizon_step"]) == {1, 2}
    assert {"nbr_lag_1", "nbr_roll_mean_4"} <= set(imp["feature"])
    new = df[df["series_id"] == "s1"].assign(series_id="fresh")
    fc = model.predict(2, history_df=new)
    assert fc["series_id"].unique().tolist() == ["fresh"] and fc["yhat"].notna().all()


def test_clear_errors(df, fitted):
    short = df.groupby("series_id").tail(3)
    with pytest.raises(ValueError, match=r"at least 12 steps of history.*'s0'"):
        fitted.predict(2, history_df=short)
    with pytest.raises(ValueError, match="trained for horizon 4"):
        fitted.predict(5)
    with pytest.raises(ValueError, match="objective must be one of"):
        LightGBMForecaster(objective="mse").fit(df)
    with pytest.raises(ValueError, match="needs values >= 0"):
        LightGBMForecaster(target_transform="log1p", calibration_steps=0).fit(
            df.assign(value=df["value"] - 100)
        )


def test_early_stopping_on_time_ordered_tail_picks_fewer_trees(df):
    params = {**FAST, "n_estimators": 200, "learning_rate": 0.3}
    model = LightGBMForecaster(
        horizon=1, calibration_steps=0, early_stopping_rounds=3, **params
    ).fit(df)
    trees = model.boosters_[(1, None)].num_trees()
    assert 1 <= trees < 200


# ---------------------------------------------------------------------- hybrid strategy
def test_hybrid_uses_direct_boosters_for_short_steps_and_pooled_for_the_rest(df):
    model = LightGBMForecaster(
        horizon=5,
        strategy="hybrid",
        direct_steps=2,
        direct_max_train_rows=200,
        calibration_steps=0,
        **FAST,
    ).fit(df)
    assert set(model.boosters_) == {(1, None), (2, None), (0, None)}
    assert [model._booster_key(h) for h in range(1, 6)] == [1, 2, 0, 0, 0]
    # the pooled booster trains only on the steps the direct ones do not cover
    assert list(model._pooled_steps()) == [3, 4, 5]
    # the row cap of the direct boosters (internal helpers: no public view of booster rows)
    grid = to_matrix(df, model.freq_)
    panel = model._panel(df, grid, upto=len(grid.times))
    t_idx, n_idx = model._origin_rows(panel)
    base = _gather(model._origin_block(panel), t_idx, n_idx)
    X, y, _, _ = model._training_set(panel, base, t_idx, n_idx, 1)
    assert len(y) <= 200 and X.shape[0] == len(y)
    fc = model.predict(5)
    assert fc["yhat"].notna().all() and len(fc) == 3 * 5


def test_hybrid_needs_a_direct_step(df):
    with pytest.raises(ValueError, match="direct_steps"):
        LightGBMForecaster(horizon=3, strategy="hybrid", direct_steps=0, **FAST).fit(df)


def test_hybrid_longer_than_horizon_is_all_direct(df):
    model = LightGBMForecaster(
        horizon=2, strategy="hybrid", direct_steps=4, calibration_steps=0, **FAST
    ).fit(df)
    assert set(model.boosters_) == {(1, None), (2, None)}


# ---------------------------------------------------------------------- CQR intervals
def _noisy(seed: int, n_steps: int) -> pd.DataFrame:
    """Positive series with multiplicative noise, where narrow raw quantiles under-cover."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_steps)
    frames = []
    for i in range(4):
        level = 40 + 10 * np.sin(2 * np.pi * t / 24) + 5 * i
        frames.append(
            pd.DataFrame(
                {
                    "series_id": f"s{i}",
                    "timestamp": pd.date_range("2024-01-01", periods=n_steps, freq="h"),
                    "value": level * np.exp(0.3 * rng.standard_normal(n_steps)),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


# deliberately over-fitted (deep trees, tiny leaves, fast learning): raw quantiles under-cover
CQR = dict(
    horizon=3,
    objective="quantile",
    quantiles=(0.05, 0.5, 0.95),
    target_transform="log1p",
    strategy="hybrid",
    direct_steps=1,
    n_estimators=60,
    learning_rate=0.3,
    num_leaves=63,
    min_child_samples=3,
    n_jobs=1,
)


def _without_cqr(model: LightGBMForecaster) -> LightGBMForecaster:
    """The same fitted boosters with the CQR correction switched off (raw quantiles)."""
    raw = model.clone()
    raw.__dict__.update(model.__dict__)
    raw.cqr_scores_ = {}
    return raw


@pytest.fixture(scope="module")
def cqr_data() -> pd.DataFrame:
    return _noisy(seed=5, n_steps=24 * 40)


@pytest.fixture(scope="module")
def cqr_model(cqr_data) -> LightGBMForecaster:
    train = cqr_data[cqr_data["timestamp"] < pd.Timestamp("2024-01-31")]
    return LightGBMForecaster(calibration_steps=24 * 10, **CQR).fit(train)


def test_cqr_shift_matches_conformal_quantile_of_log_scores(cqr_model, cqr_data):
    scores = cqr_model.cqr_scores_["history"][(0.05, 0.95)]
    assert set(scores) == {1, 2, 3}
    calibrated = cqr_model.predict(3)
    raw_model = _without_cqr(cqr_model)
    raw = raw_model.predict(3)
    lo, hi = quantile_column(0.05), quantile_column(0.95)
    for h in (1, 2, 3):
        shift = conformal_quantile(scores[h], 90)
        c, r = calibrated[calibrated["horizon_step"] == h], raw[raw["horizon_step"] == h]
        expected_lo = np.minimum(np.expm1(np.log1p(r[lo]) - shift), r["yhat"])
        expected_hi = np.maximum(np.expm1(np.log1p(r[hi]) + shift), r["yhat"])
        np.testing.assert_allclose(c[lo], expected_lo, rtol=1e-9)
        np.testing.assert_allclose(c[hi], expected_hi, rtol=1e-9)
    assert (calibrated[lo] <= calibrated["yhat"]).all()
    assert (calibrated["yhat"] <= calibrated[hi]).all()


def test_cqr_brings_coverage_near_nominal_on_unseen_data(cqr_model, cqr_data):
    times = np.sort(cqr_data["timestamp"].unique())
    origins = pd.DatetimeIndex(times[24 * 30 : -3 : 2])
    raw_model = _without_cqr(cqr_model)
    lo, hi = quantile_column(0.05), quantile_column(0.95)
    coverage = {}
    for name, model in (("cqr", cqr_model), ("raw", raw_model)):
        fc = model.historical_forecasts(cqr_data, origins, 3)
        fc = fc.merge(cqr_data, on=["series_id", "timestamp"])
        coverage[name] = ((fc["value"] >= fc[lo]) & (fc["value"] <= fc[hi])).mean()
    assert coverage["raw"] < 0.8, coverage
    assert 0.86 <= coverage["cqr"] <= 0.96, coverage


def test_interval_levels_use_the_conformalised_quantile_pair(cqr_model):
    fc = cqr_model.predict(3, levels=[80, 90])
    # 90% = the CQR-corrected P5/P95: asymmetric, never below zero for a log1p target
    np.testing.assert_array_equal(fc["yhat_lo_90"], fc[quantile_column(0.05)])
    np.testing.assert_array_equal(fc["yhat_hi_90"], fc[quantile_column(0.95)])
    assert (fc["yhat_lo_90"] >= 0).all()
    assert not np.allclose(fc["yhat"] - fc["yhat_lo_90"], fc["yhat_hi_90"] - fc["yhat"])
    # 80% has no quantile pair: split-conformal +- |residual| quantile, symmetric
    np.testing.assert_allclose(fc["yhat"] - fc["yhat_lo_80"], fc["yhat_hi_80"] - fc["yhat"])
    # without CQR scores (raw quantiles are not calibrated) every level is symmetric
    raw = _without_cqr(cqr_model).predict(3, levels=[90])
    np.testing.assert_allclose(raw["yhat"] - raw["yhat_lo_90"], raw["yhat_hi_90"] - raw["yhat"])


def test_calibration_without_refit_keeps_the_clone_and_round_trips(cqr_model, cqr_data, tmp_path):
    train = cqr_data[cqr_data["timestamp"] < pd.Timestamp("2024-01-31")]
    one_fit = LightGBMForecaster(calibration_steps=24 * 10, calibration_refit=False, **CQR)
    one_fit.fit(train)
    cut = np.sort(train["timestamp"].unique())[-24 * 10 - 1]
    plain = LightGBMForecaster(calibration_steps=0, **CQR).fit(train[train["timestamp"] <= cut])
    # same boosters as a model fitted without the tail; forecasts start from the full history
    got = one_fit.predict(3)
    plain_fc = plain.predict(3, history_df=train)
    np.testing.assert_allclose(got["yhat"], plain_fc["yhat"], rtol=1e-9)
    assert got["timestamp"].min() > cut
    assert one_fit.cqr_scores_ and not hasattr(one_fit, "_calibration_model")
    loaded = LightGBMForecaster.load(one_fit.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(loaded.predict(3), got)


def test_cqr_scores_are_kept_per_covariate_mode(df):
    frame = df.assign(temp=np.cos(np.arange(len(df)) / 7.0))
    model = LightGBMForecaster(
        horizon=2,
        objective="quantile",
        quantiles=(0.1, 0.5, 0.9),
        future_covariates=("temp",),
        calibration_steps=48,
        calibration_refit=False,
        **FAST,
    ).fit(frame)
    assert set(model.cqr_scores_) == {"history", "future"}
    assert set(model.cqr_scores_["future"][(0.1, 0.9)]) == {1, 2}
    future = frame[["series_id", "timestamp", "temp"]].assign(
        timestamp=lambda f: f["timestamp"] + pd.Timedelta(hours=2)
    )
    fc = model.predict(2, covariates=future)
    assert (fc["covariate_mode"] == "future").all()
    lo, hi = quantile_column(0.1), quantile_column(0.9)
    assert (fc[lo] <= fc["yhat"]).all() and (fc["yhat"] <= fc[hi]).all()


def _two_noise_levels(n_steps: int = 24 * 40) -> pd.DataFrame:
    """Series "<i>/calm" (log-noise sd 0.05) and "<i>/wild" (sd 0.6) with the same daily cycle."""
    rng = np.random.default_rng(9)
    t = np.arange(n_steps)
    level = 40 + 10 * np.sin(2 * np.pi * t / 24)
    stamps = pd.date_range("2024-01-01", periods=n_steps, freq="h")
    frames = [
        pd.DataFrame(
            {
                "series_id": f"s{i}/{kind}",
                "timestamp": stamps,
                "value": level * np.exp(sd * rng.standard_normal(n_steps)),
            }
        )
        for kind, sd in (("calm", 0.05), ("wild", 0.6))
        for i in range(3)
    ]
    return pd.concat(frames, ignore_index=True).sort_values(["series_id", "timestamp"])


def test_calibration_groups_correct_each_group_on_its_own():
    df = _two_noise_levels().reset_index(drop=True)
    train = df[df["timestamp"] < pd.Timestamp("2024-01-31")]
    kw = dict(CQR, calibration_steps=24 * 10, min_child_samples=30, num_leaves=15)
    pooled = LightGBMForecaster(**kw).fit(train)
    grouped = LightGBMForecaster(calibration_groups="/(.+)$", **kw).fit(train)
    assert set(grouped.cqr_group_scores_["history"]) == {"calm", "wild"}
    origins = pd.DatetimeIndex(np.sort(df["timestamp"].unique())[24 * 30 : -3 : 2])
    lo, hi = quantile_column(0.05), quantile_column(0.95)

    def coverage(model) -> pd.Series:
        fc = model.historical_forecasts(df, origins, 3).merge(df, on=["series_id", "timestamp"])
        inside = (fc["value"] >= fc[lo]) & (fc["value"] <= fc[hi])
        return inside.groupby(fc["series_id"].str.split("/").str[1]).mean()

    p, g = coverage(pooled), coverage(grouped)
    # per-group corrections land near 90% for each kind; the pooled one is further off
    assert g.between(0.84, 0.97).all(), (p, g)
    assert (g - 0.9).abs().max() < (p - 0.9).abs().max(), (p, g)
    with pytest.raises(ValueError, match="exactly one capture group"):
        LightGBMForecaster(calibration_groups="/.+$", **kw).fit(train)
