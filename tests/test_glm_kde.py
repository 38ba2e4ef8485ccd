"""GLM (Poisson / negative binomial) and KDE hotspot forecasters: contract, maths, save/load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.data.grid import cell_ids, rook_edges
from citybrain_ml.models import make_model
from citybrain_ml.models.base import Forecaster
from citybrain_ml.models.glm import (
    NegativeBinomialGLMForecaster,
    PoissonGLMForecaster,
    dispersion_alpha,
)
from citybrain_ml.models.kde import KDEHotspotForecaster


def grid_counts(n_rows=3, n_cols=3, n_steps=24 * 30, seed=0, overdispersed=False):
    """Hourly counts whose rate grows with the cell index and peaks in the afternoon."""
    rng = np.random.default_rng(seed)
    ids = cell_ids(n_rows, n_cols)
    times = pd.date_range("2021-01-04", periods=n_steps, freq="h")
    base = np.linspace(0.05, 0.8, len(ids))
    daily = 1 + 0.8 * np.sin(2 * np.pi * (times.hour.to_numpy() - 9) / 24)
    mu = daily[:, None] * base[None, :]
    if overdispersed:
        mu = mu * rng.gamma(shape=0.5, scale=2.0, size=mu.shape)
    y = rng.poisson(mu).astype(float)
    df = pd.DataFrame(
        {
            "series_id": np.repeat(ids, n_steps),
            "timestamp": np.tile(times, len(ids)),
            "value": y.T.ravel(),
        }
    )
    return df, ids, rook_edges(ids, n_rows, n_cols)


SMALL = dict(windows=(24, 72), neighbour_windows=(24,), profile_spans=(3,), harmonics=2)


@pytest.fixture(scope="module")
def panel():
    return grid_counts()


def test_glm_contract_and_rank_order(panel):
    df, ids, edges = panel
    model = PoissonGLMForecaster(horizon=2, adjacency=edges, **SMALL).fit(df)
    fc = model.predict(2)
    assert list(fc.columns[:4]) == ["series_id", "timestamp", "horizon_step", "yhat"]
    assert len(fc) == 2 * len(ids) and (fc["yhat"] > 0).all()
    # the mean over a day of step-1 forecasts must rank the cells as their true rates do
    origins = pd.date_range(df["timestamp"].max() - pd.Timedelta("23h"), periods=24, freq="h")
    origins = origins - pd.Timedelta("1h")
    hist = model.historical_forecasts(df, origins, 1)
    per_cell = hist.groupby("series_id")["yhat"].mean().reindex(ids).to_numpy()
    assert np.corrcoef(per_cell, np.arange(len(ids)))[0, 1] > 0.9
    # its daily cycle must peak in the afternoon, as simulated (peak at 15:00)
    by_hour = hist.groupby(hist["timestamp"].dt.hour)["yhat"].sum()
    assert 11 <= by_hour.idxmax() <= 19


def test_glm_historical_forecasts_match_predict(panel):
    df, ids, edges = panel
    model = PoissonGLMForecaster(horizon=1, adjacency=edges, **SMALL).fit(df)
    origin = df["timestamp"].max() - pd.Timedelta("5h")
    hist = model.historical_forecasts(df, [origin], 1)
    direct = model.predict(1, history_df=df[df["timestamp"] <= origin])
    merged = hist.merge(direct, on=["series_id", "timestamp"], suffixes=("_h", "_p"))
    assert len(merged) == len(ids)
    np.testing.assert_allclose(merged["yhat_h"], merged["yhat_p"], rtol=1e-10)


def test_glm_save_load_round_trip(tmp_path, panel):
    df, _, edges = panel
    model = NegativeBinomialGLMForecaster(horizon=1, adjacency=edges, **SMALL).fit(df)
    model.save(tmp_path / "nb")
    loaded = Forecaster.load(tmp_path / "nb")
    assert isinstance(loaded, NegativeBinomialGLMForecaster)
    pd.testing.assert_frame_equal(model.predict(1), loaded.predict(1))
    assert loaded.alpha_ == model.alpha_


def test_dispersion_alpha_hand_computed():
    y = np.array([0.0, 2.0, 4.0])
    mu = np.array([1.0, 1.0, 2.0])
    # sum((y-mu)^2 - y) = (1-0) + (1-2) + (4-4) = 0 -> floored; scale y to see a slope
    assert dispersion_alpha(y, mu) == pytest.approx(1e-6)
    y = np.array([0.0, 5.0, 0.0, 7.0])
    mu = np.array([1.0, 2.0, 1.0, 2.0])
    expected = ((1 - 0) + (9 - 5) + (1 - 0) + (25 - 7)) / (1 + 4 + 1 + 4)
    assert dispersion_alpha(y, mu) == pytest.approx(expected)


def test_negbin_detects_overdispersion():
    df, _, edges = grid_counts(overdispersed=True, seed=1)
    model = NegativeBinomialGLMForecaster(horizon=1, adjacency=edges, **SMALL).fit(df)
    # gamma(shape 0.5) mixing gives Var = mu + 2 mu^2: alpha near 2, far from Poisson's 0
    assert 1.0 < model.alpha_[1] < 3.5
    df, _, edges = grid_counts(seed=2)
    poisson_like = NegativeBinomialGLMForecaster(horizon=1, adjacency=edges, **SMALL).fit(df)
    assert poisson_like.alpha_[1] < 0.3


def test_glm_rejects_bad_params_and_short_history(panel):
    df, _, _ = panel
    with pytest.raises(ValueError, match="profile"):
        PoissonGLMForecaster(profile="month").fit(df)
    short = df[df["timestamp"] < df["timestamp"].min() + pd.Timedelta("30h")]
    with pytest.raises(ValueError, match="no training rows"):
        PoissonGLMForecaster(**SMALL).fit(short)


def test_registry_names_build_models():
    assert isinstance(make_model("glm_poisson"), PoissonGLMForecaster)
    assert isinstance(make_model("glm_negbin", nb_alpha=0.5), NegativeBinomialGLMForecaster)
    assert isinstance(make_model("kde_hotspot", bandwidth=2.0), KDEHotspotForecaster)


# ---------------------------------------------------------------------- KDE
def line_grid(counts_per_step, n_steps=48):
    """1 x 3 grid (cell_0_0, cell_0_1, cell_0_2) with constant counts per step."""
    ids = cell_ids(1, 3)
    times = pd.date_range("2021-01-04", periods=n_steps, freq="h")
    return pd.DataFrame(
        {
            "series_id": np.repeat(ids, n_steps),
            "timestamp": np.tile(times, 3),
            "value": np.repeat(np.asarray(counts_per_step, float), n_steps),
        }
    )


def test_kde_hand_computed_smoothing():
    df = line_grid([0.0, 3.0, 0.0])
    model = KDEHotspotForecaster(bandwidth=1.0, time_profile="none").fit(df)
    fc = model.predict(1).set_index("series_id")["yhat"]
    k1 = np.exp(-0.5)  # kernel weight at distance 1 cell
    k2 = np.exp(-2.0)  # at distance 2
    edge = 3.0 * k1 / (1 + k1 + k2)
    middle = 3.0 / (1 + 2 * k1)
    assert fc["cell_0_0"] == pytest.approx(edge)
    assert fc["cell_0_2"] == pytest.approx(edge)
    assert fc["cell_0_1"] == pytest.approx(middle)


def test_kde_window_uses_recent_history_and_profile():
    df = line_grid([1.0, 1.0, 1.0], n_steps=72)
    # the last 24 steps of the first cell are 0: a 24-step window sees it, the full mean not
    df.loc[(df["series_id"] == "cell_0_0") & (df.index % 72 >= 48), "value"] = 0.0
    narrow = KDEHotspotForecaster(bandwidth=0.01, window=24, time_profile="none").fit(df)
    wide = KDEHotspotForecaster(bandwidth=0.01, time_profile="none").fit(df)
    assert narrow.predict(1).set_index("series_id").loc["cell_0_0", "yhat"] == pytest.approx(0.0)
    assert wide.predict(1).set_index("series_id").loc["cell_0_0", "yhat"] == pytest.approx(2 / 3)
    # a time profile scales every cell by the city-wide share of the target hour
    df["value"] *= np.where(df["timestamp"].dt.hour < 12, 0.5, 1.5)
    shaped = KDEHotspotForecaster(bandwidth=0.01, time_profile="day").fit(df)
    fc = shaped.predict(1)
    assert fc["timestamp"].iloc[0].hour == 0
    assert (fc.groupby("series_id")["yhat"].first() < 1.0).all()


def test_kde_save_load_and_errors(tmp_path):
    df = line_grid([0.0, 3.0, 1.0])
    model = KDEHotspotForecaster(bandwidth=1.0).fit(df)
    loaded = Forecaster.load(model.save(tmp_path / "kde"))
    pd.testing.assert_frame_equal(model.predict(2), loaded.predict(2))
    bad = df.assign(series_id=df["series_id"].str.replace("cell_", "zone"))
    with pytest.raises(ValueError, match="not a grid id"):
        KDEHotspotForecaster().fit(bad)
    coords = pd.DataFrame({"series_id": ["zone0_0", "zone0_1"], "x": [0, 1], "y": [0, 0]})
    with pytest.raises(ValueError, match="no x/y"):
        KDEHotspotForecaster(coordinates=coords).fit(bad)


# ---------------------------------------------------------------------- units and frequency
def test_kde_bandwidth_in_metres_equals_cells_times_cell_size():
    df = line_grid([0.0, 3.0, 1.0])
    cells = KDEHotspotForecaster(bandwidth=1.0, time_profile="none").fit(df).predict(1)
    metres = KDEHotspotForecaster(bandwidth_m=500.0, cell_size_m=500.0, time_profile="none")
    pd.testing.assert_frame_equal(cells, metres.fit(df).predict(1))
    assert metres.bandwidth_m_ == 500.0
    # an older config's bandwidth in cells on a grid of known size: cells x size
    legacy = KDEHotspotForecaster(bandwidth=2.0, cell_size_m=250.0).fit(df)
    assert legacy.bandwidth_m_ == 500.0
    with pytest.raises(ValueError, match="cell size is unknown"):
        KDEHotspotForecaster(bandwidth_m=500.0).fit(df)
    with pytest.raises(ValueError, match="not both"):
        KDEHotspotForecaster(bandwidth_m=500.0, bandwidth=1.0, cell_size_m=500.0).fit(df)


def test_kde_time_profile_follows_the_frequency():
    hourly = line_grid([1.0, 2.0, 3.0], n_steps=24 * 8)
    assert KDEHotspotForecaster().fit(hourly).time_profile_ == "day"
    daily = line_grid([1.0, 2.0, 3.0], n_steps=28)
    daily["timestamp"] = pd.Timestamp("2021-01-04") + pd.to_timedelta(
        daily.groupby("series_id").cumcount(), unit="D"
    )
    model = KDEHotspotForecaster().fit(daily)
    assert model.time_profile_ == "week" and len(model.profile_) == 7


def test_glm_defaults_follow_the_frequency():
    from citybrain_ml.models.glm import frequency_defaults

    hourly = frequency_defaults("h")
    assert hourly["windows"] == (24, 168, 672, 2016) and hourly["profile"] == "day"
    daily = frequency_defaults("D")
    assert daily["windows"] == (7, 28, 91, 364) and daily["harmonics"] == 0
    assert frequency_defaults("15min")["windows"][0] == 96
    assert frequency_defaults("W")["profile"] == "none"
    # daily counts, defaults only: the model sizes its windows in days, not in hours
    rng = np.random.default_rng(1)
    ids = cell_ids(2, 2)
    times = pd.date_range("2020-01-01", periods=420, freq="D")
    df = pd.DataFrame(
        {
            "series_id": np.repeat(ids, len(times)),
            "timestamp": np.tile(times, len(ids)),
            "value": rng.poisson(np.repeat([0.5, 1.0, 2.0, 4.0], len(times))).astype(float),
        }
    )
    model = PoissonGLMForecaster(adjacency=rook_edges(ids, 2, 2)).fit(df)
    assert model.settings()["windows"] == (7, 28, 91, 364)
    assert model.min_history == 364
    fc = model.predict(1).set_index("series_id")["yhat"]
    assert fc["cell_0_0"] < fc["cell_1_1"]
