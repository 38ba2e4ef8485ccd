"""Statistical forecasters: contract, estimation, fast rolling origins, budget, exog, VAR, I/O."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import make_series

from citybrain_ml.models.base import Forecaster
from citybrain_ml.models.statistical import (
    ETSForecaster,
    SARIMAXForecaster,
    VARForecaster,
    fit_in_parallel,
    naive_forecasts,
)

FAST = {"n_jobs": 1, "calibration_steps": 0}


def ar1_frame(phi=0.7, n=600, n_series=2, seed=1, exog_beta=None):
    """Long frame of AR(1) series (+ an optional 'temp' regressor with effect ``exog_beta``)."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=n, freq="h")
    frames = []
    for i in range(n_series):
        noise = np.zeros(n)
        eps = rng.normal(0, 1, n)
        for t in range(1, n):
            noise[t] = phi * noise[t - 1] + eps[t]
        frame = pd.DataFrame({"series_id": f"s{i}", "timestamp": ts, "value": 20 + noise})
        if exog_beta is not None:
            temp = rng.normal(0, 2, n)
            frame["temp"] = temp
            frame["value"] += exog_beta * temp
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def slow_origins(model, df, origins, horizon):
    """Reference: the base class's one-``_predict``-per-origin path, same sort order."""
    out = Forecaster._predict_origins(model, df, pd.DatetimeIndex(origins), horizon)
    return out.sort_values(["origin", "series_id", "horizon_step"]).reset_index(drop=True)


MODELS = {
    "sarimax": lambda: SARIMAXForecaster(order=(2, 0, 0), trend="c", horizon=4, **FAST),
    "sarimax_day": lambda: SARIMAXForecaster(
        order=(1, 0, 0), deseasonalize="day", horizon=4, **FAST
    ),
    "sarimax_fourier": lambda: SARIMAXForecaster(
        order=(1, 0, 0), trend="c", fourier_terms=2, season_length=24, horizon=4, **FAST
    ),
    "ets": lambda: ETSForecaster(trend="add", damped_trend=True, horizon=4, **FAST),
    "ets_day": lambda: ETSForecaster(deseasonalize="day", horizon=4, **FAST),
    "var": lambda: VARForecaster(maxlags=2, deseasonalize="day", horizon=4, calibration_steps=0),
}


@pytest.fixture(scope="module")
def two_weeks():
    return make_series(n_series=3, n_steps=24 * 14)


@pytest.mark.parametrize("name", list(MODELS))
def test_contract_columns_timestamps_steps(name, two_weeks):
    model = MODELS[name]().fit(two_weeks)
    fc = model.predict(4)
    assert list(fc.columns) == ["series_id", "timestamp", "horizon_step", "yhat"]
    assert len(fc) == 3 * 4 and fc["yhat"].notna().all()
    last = two_weeks["timestamp"].max()
    for _, g in fc.groupby("series_id"):
        assert g["horizon_step"].tolist() == [1, 2, 3, 4]
        assert list(g["timestamp"]) == list(pd.date_range(last, periods=5, freq="h")[1:])


@pytest.mark.parametrize("name", list(MODELS))
def test_fast_origins_equal_slow_per_origin_path(name, two_weeks):
    df = two_weeks.copy()
    df.loc[df.index[[40, 200, 201, 700]], "value"] = np.nan  # gaps the filter must skip
    model = MODELS[name]().fit(df[df["timestamp"] < "2024-01-11"])
    origins = pd.date_range("2024-01-11", "2024-01-14 20:00", freq="7h")
    fast = model.historical_forecasts(df, origins, 4)
    slow = slow_origins(model, df, origins, 4)
    pd.testing.assert_frame_equal(fast[slow.columns], slow, check_dtype=False, atol=1e-8)


def test_sarimax_recovers_ar1_coefficient():
    model = SARIMAXForecaster(order=(1, 0, 0), trend="c", horizon=2, **FAST)
    model.fit(ar1_frame(phi=0.7, n=800))
    phi = [p[model.param_names_.index("ar.L1")] for p in model.params_.values()]
    assert np.allclose(phi, 0.7, atol=0.07), phi
    assert model.fallback_series_ == {}


def test_sarimax_forecast_matches_statsmodels_forecast():
    """The vectorised state recursion reproduces statsmodels' own forecast (exog + trend)."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    df = ar1_frame(n=300, n_series=1, exog_beta=2.0)
    train, future = df.iloc[:-3], df.iloc[-3:]
    model = SARIMAXForecaster(order=(1, 0, 1), trend="ct", exog=["temp"], horizon=3, **FAST)
    model.fit(train)
    ours = model.predict(3, covariates=future)["yhat"].to_numpy()
    sm = SARIMAX(
        train["value"].to_numpy(), exog=train[["temp"]].to_numpy(), order=(1, 0, 1), trend="ct"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sm.filter(model.params_["s0"]).forecast(3, exog=future[["temp"]].to_numpy())
    np.testing.assert_allclose(ours, ref, rtol=1e-8)


def test_time_budget_triggers_fallback_and_records_reason(two_weeks):
    model = SARIMAXForecaster(season_length=24, time_budget_s=0.0, horizon=3, **FAST)
    model.fit(two_weeks)
    assert set(model.fallback_series_) == {"s0", "s1", "s2"}
    assert all("time budget" in reason for reason in model.fallback_series_.values())
    fc = model.predict(3)
    values = two_weeks[two_weeks["series_id"] == "s0"]["value"].to_numpy()
    # seasonal naive: each step repeats the value one day (24 steps) earlier
    np.testing.assert_allclose(fc[fc["series_id"] == "s0"]["yhat"], values[-24:-21])


def test_naive_fallback_fills_gaps_forward_and_marks_missing_history():
    values = np.array([1.0, 2.0, np.nan, 4.0, np.nan])
    np.testing.assert_allclose(naive_forecasts(values, np.array([4]), 2, None), [[4.0, 4.0]])
    np.testing.assert_allclose(naive_forecasts(values, np.array([2]), 2, 2), [[2.0, 2.0]])
    np.testing.assert_allclose(naive_forecasts(values, np.array([1]), 2, 3), [[np.nan, 1.0]])


def _slow_fit(payload, callback):
    time.sleep(0.3)
    callback()  # the deadline has passed by now
    return np.zeros(1)


def _broken_fit(payload, callback):
    raise np.linalg.LinAlgError("singular matrix")


def test_budget_interrupts_running_fit_and_failures_are_recorded():
    params, failures = fit_in_parallel(_slow_fit, {"a": None}, n_jobs=1, time_budget_s=0.1)
    assert params == {} and "during its fit" in failures["a"]
    params, failures = fit_in_parallel(_broken_fit, {"b": None}, n_jobs=1, time_budget_s=None)
    assert "LinAlgError" in failures["b"]


def test_parallel_fit_equals_in_process_fit():
    df = ar1_frame(n=300, n_series=3)
    serial = SARIMAXForecaster(order=(1, 0, 0), horizon=2, **FAST).fit(df)
    parallel = SARIMAXForecaster(order=(1, 0, 0), horizon=2, n_jobs=2, calibration_steps=0).fit(df)
    assert parallel.fallback_series_ == {}
    for sid, params in serial.params_.items():
        np.testing.assert_allclose(parallel.params_[sid], params)


def test_unseen_series_uses_fallback(two_weeks):
    model = SARIMAXForecaster(season_length=24, horizon=2, **FAST)
    model.fit(two_weeks[two_weeks["series_id"] != "s2"])
    fc = model.predict(2, history_df=two_weeks)
    s2 = two_weeks[two_weeks["series_id"] == "s2"]["value"].to_numpy()
    np.testing.assert_allclose(fc[fc["series_id"] == "s2"]["yhat"], s2[-24:-22])


# ---------------------------------------------------------------------- exogenous regressors
@pytest.fixture(scope="module")
def exog_df():
    return ar1_frame(n=400, n_series=2, exog_beta=2.0)


def test_exog_required_mode(exog_df):
    train, future = exog_df[exog_df["timestamp"] < "2024-01-17"], exog_df
    model = SARIMAXForecaster(order=(1, 0, 0), exog=["temp"], horizon=3, **FAST).fit(train)
    beta = [p[model.param_names_.index("x1")] for p in model.params_.values()]
    assert np.allclose(beta, 2.0, atol=0.15)
    with pytest.raises(ValueError, match="covariates"):
        model.predict(3)
    fc = model.predict(3, covariates=future)
    assert model.exog_source_ == "covariates" and fc["yhat"].notna().all()
    # doubling the future regressor moves each forecast by beta * temp
    bumped = future.assign(temp=future["temp"] * 2)
    shift = model.predict(3, covariates=bumped)["yhat"] - fc["yhat"]
    keys = fc[["series_id", "timestamp"]].merge(future, on=["series_id", "timestamp"])
    expected = np.repeat(beta, 3) * keys["temp"].to_numpy()
    np.testing.assert_allclose(shift, expected)
    gap = (future["series_id"] == "s1") & (future["timestamp"] == "2024-01-17 01:00")
    with pytest.raises(ValueError, match="lack"):
        model.predict(3, covariates=future[~gap])


def test_exog_persist_mode_holds_last_values(exog_df):
    train = exog_df[exog_df["timestamp"] < "2024-01-17"]
    model = SARIMAXForecaster(
        order=(1, 0, 0), exog=["temp"], exog_future="persist", horizon=3, **FAST
    ).fit(train)
    fc = model.predict(3)
    assert model.exog_source_ == "persisted"
    last = train.groupby("series_id").tail(1)[["series_id", "temp"]]
    future = fc[["series_id", "timestamp"]].merge(last, on="series_id")
    held = model.predict(3, covariates=future)
    np.testing.assert_allclose(fc["yhat"], held["yhat"])


@pytest.mark.parametrize("mode", ["require", "persist"])
def test_exog_fast_origins_equal_per_origin_predict(exog_df, mode):
    train = exog_df[exog_df["timestamp"] < "2024-01-15"]
    model = SARIMAXForecaster(
        order=(1, 0, 1), exog=["temp"], exog_future=mode, horizon=3, **FAST
    ).fit(train)
    origins = pd.date_range("2024-01-15", periods=5, freq="5h")
    fast = model.historical_forecasts(exog_df, origins, 3)
    for origin in origins:
        hist = exog_df[exog_df["timestamp"] <= origin]
        cov = None if mode == "persist" else exog_df
        ref = model.predict(3, history_df=hist, covariates=cov)
        got = fast[fast["origin"] == origin].reset_index(drop=True)
        np.testing.assert_allclose(got["yhat"], ref["yhat"], rtol=1e-9)
    # past the end of the frame the future regressor is unknown in require mode
    end = model.historical_forecasts(exog_df, [exog_df["timestamp"].max()], 3)
    assert end["yhat"].isna().all() == (mode == "require")


def test_fast_origins_take_given_future_exog_per_origin(exog_df):
    """covariates= in historical_forecasts: per-origin exog at the target times, exact."""
    train = exog_df[exog_df["timestamp"] < "2024-01-15"]
    model = SARIMAXForecaster(
        order=(1, 0, 1),
        exog=["temp"],
        exog_future="persist",
        horizon=3,
        fourier_terms=1,
        season_length=24,
        **FAST,
    ).fit(train)
    origins = pd.date_range("2024-01-15", periods=4, freq="5h")
    # an "archive of forecasts": each origin has its own (shifted) temp values
    archive = pd.concat(
        [
            exog_df.assign(origin=o, temp=exog_df["temp"] + i)[
                ["series_id", "timestamp", "origin", "temp"]
            ]
            for i, o in enumerate(origins)
        ],
        ignore_index=True,
    )
    fast = model.historical_forecasts(exog_df, origins, 3, covariates=archive)
    assert model.exog_source_ == "covariates"
    for i, origin in enumerate(origins):
        hist = exog_df[exog_df["timestamp"] <= origin]
        ref = model.predict(3, history_df=hist, covariates=exog_df.assign(temp=exog_df["temp"] + i))
        got = fast[fast["origin"] == origin].reset_index(drop=True)
        np.testing.assert_allclose(got["yhat"], ref["yhat"], rtol=1e-9)
    # without an origin column the same rows serve every origin (observed = perfect forecast)
    same = model.historical_forecasts(exog_df, origins, 3, covariates=exog_df)
    require = SARIMAXForecaster(**{**model.get_params(), "exog_future": "require"}).fit(train)
    np.testing.assert_allclose(
        same["yhat"], require.historical_forecasts(exog_df, origins, 3)["yhat"], rtol=1e-9
    )
    # targets the covariates do not cover fall back to exog_future ("persist" here)
    first_step = exog_df[exog_df["timestamp"].isin(origins + pd.Timedelta(hours=1))]
    partial = model.historical_forecasts(exog_df, origins, 3, covariates=first_step)
    persisted = model.historical_forecasts(exog_df, origins, 3)
    step1 = partial["horizon_step"] == 1
    np.testing.assert_allclose(partial.loc[step1, "yhat"], same.loc[step1, "yhat"], rtol=1e-9)
    np.testing.assert_allclose(partial.loc[~step1, "yhat"], persisted.loc[~step1, "yhat"])
    with pytest.raises(ValueError, match="lacks column"):
        model.historical_forecasts(exog_df, origins, 3, covariates=exog_df.drop(columns="temp"))


# ---------------------------------------------------------------------- VAR
def test_var_three_series_limits_and_missing_values(two_weeks):
    df = two_weeks.copy()
    df.loc[df.index[[10, 11, 500]], "value"] = np.nan
    model = VARForecaster(maxlags=3, ic=None, horizon=4, calibration_steps=0).fit(df)
    assert model.coefs_.shape == (3, 3, 3) and model.n_interpolated_ == 3
    fc = model.predict(4)
    assert len(fc) == 12 and fc["yhat"].notna().all()
    with pytest.raises(ValueError, match="max_series=2"):
        VARForecaster(max_series=2, **{"calibration_steps": 0}).fit(df)
    with pytest.raises(ValueError, match="lacks series"):
        model.predict(2, history_df=df[df["series_id"] != "s1"])


def test_var_recovers_cross_series_coefficient():
    rng = np.random.default_rng(3)
    n, y = 1500, np.zeros((1500, 2))
    for t in range(1, n):
        y[t, 0] = 0.5 * y[t - 1, 0] + rng.normal()
        y[t, 1] = 0.6 * y[t - 1, 0] + 0.2 * y[t - 1, 1] + rng.normal()
    ts = pd.date_range("2024-01-01", periods=n, freq="h")
    df = pd.concat(
        [pd.DataFrame({"series_id": f"s{j}", "timestamp": ts, "value": y[:, j]}) for j in range(2)]
    )
    model = VARForecaster(maxlags=1, ic=None, horizon=1, calibration_steps=0).fit(df)
    np.testing.assert_allclose(model.coefs_[0], [[0.5, 0.0], [0.6, 0.2]], atol=0.06)


# ---------------------------------------------------------------------- intervals and I/O
def test_intervals_present_and_nested(two_weeks):
    model = SARIMAXForecaster(order=(1, 0, 0), deseasonalize="day", horizon=3, n_jobs=1)
    fc = model.fit(two_weeks).predict(3, levels=[80, 95])
    for col in ["yhat_lo_80", "yhat_hi_80", "yhat_lo_95", "yhat_hi_95"]:
        assert fc[col].notna().all()
    assert (fc["yhat_lo_95"] <= fc["yhat_lo_80"]).all()
    assert (fc["yhat_lo_80"] < fc["yhat"]).all() and (fc["yhat"] < fc["yhat_hi_80"]).all()
    assert (fc["yhat_hi_80"] <= fc["yhat_hi_95"]).all()


@pytest.mark.parametrize("name", ["sarimax_day", "sarimax_fourier", "ets", "var"])
def test_save_load_round_trip(name, two_weeks, tmp_path):
    model = MODELS[name]().fit(two_weeks)
    path = model.save(tmp_path / name)
    # only parameter vectors and profiles are stored, never statsmodels results/data
    assert (path / "model.pkl").stat().st_size < 200_000
    loaded = type(model).load(path)
    pd.testing.assert_frame_equal(loaded.predict(4), model.predict(4))
    origins = pd.date_range("2024-01-13", periods=3, freq="6h")
    pd.testing.assert_frame_equal(
        loaded.historical_forecasts(two_weeks, origins, 4),
        model.historical_forecasts(two_weeks, origins, 4),
    )


def test_bad_parameters_raise_clear_errors(two_weeks):
    with pytest.raises(ValueError, match="multiplicative"):
        ETSForecaster(trend="mul", **FAST).fit(two_weeks)
    with pytest.raises(ValueError, match="season_length"):
        SARIMAXForecaster(fourier_terms=2, **FAST).fit(two_weeks)
    with pytest.raises(ValueError, match="not in the training frame"):
        SARIMAXForecaster(exog=["rain"], **FAST).fit(two_weeks)
    with pytest.raises(ValueError, match="exog_future"):
        SARIMAXForecaster(exog_future="guess", **FAST).fit(two_weeks)
