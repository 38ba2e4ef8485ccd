"""STIDForecaster: the model contract, determinism, persistence, missing data, graph branch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_series

pytest.importorskip("torch")

from citybrain_ml.models.neural import STIDForecaster  # noqa: E402

# tiny network and a few epochs: these tests check behaviour, not accuracy
FAST = dict(
    horizon=4,
    input_len=8,
    embed_dim=8,
    node_dim=4,
    tod_dim=4,
    dow_dim=4,
    num_layers=1,
    max_epochs=3,
    batch_size=32,
    calibration_steps=0,
    num_threads=1,  # a second thread only waits on a shared CI core
)


@pytest.fixture(scope="module")
def small_df() -> pd.DataFrame:
    return make_series(n_series=3, n_steps=24 * 10)


@pytest.fixture(scope="module")
def fitted(small_df) -> STIDForecaster:
    return STIDForecaster(**FAST).fit(small_df)


def test_predict_contract(fitted, small_df):
    fc = fitted.predict(4)
    assert list(fc.columns) == ["series_id", "timestamp", "horizon_step", "yhat"]
    assert len(fc) == 3 * 4
    assert fc["yhat"].notna().all()
    last = small_df["timestamp"].max()
    first = fc[fc["series_id"] == "s1"]
    expected = pd.date_range(last + pd.Timedelta("1h"), periods=4, freq="h")
    assert list(first["timestamp"]) == list(expected)
    assert list(first["horizon_step"]) == [1, 2, 3, 4]
    # forecasts sit on the scale of the data, not of the scaled training targets
    assert fc["yhat"].between(20, 90).all()


def test_records_training_state(fitted):
    assert fitted.train_seconds_ > 0
    assert 1 <= fitted.best_epoch_ <= FAST["max_epochs"]
    assert len(fitted.history_losses_) == FAST["max_epochs"]
    assert all(
        np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) for h in fitted.history_losses_
    )


def test_same_seed_same_forecasts(fitted, small_df):
    again = STIDForecaster(**FAST).fit(small_df)
    other = STIDForecaster(**FAST, seed=1).fit(small_df)
    np.testing.assert_array_equal(fitted.predict(4)["yhat"], again.predict(4)["yhat"])
    assert not np.allclose(fitted.predict(4)["yhat"], other.predict(4)["yhat"])


def test_save_load_round_trip(fitted, small_df, tmp_path):
    fitted.save(tmp_path / "stid")
    loaded = STIDForecaster.load(tmp_path / "stid")
    assert "_module" not in loaded.__dict__  # weights travel as arrays, the module is rebuilt
    history = small_df[small_df["timestamp"] <= small_df["timestamp"].max() - pd.Timedelta("5h")]
    pd.testing.assert_frame_equal(fitted.predict(4), loaded.predict(4))
    pd.testing.assert_frame_equal(
        fitted.predict(4, history_df=history), loaded.predict(4, history_df=history)
    )


def test_unseen_series_named_in_error(fitted, small_df):
    stranger = small_df[small_df["series_id"] == "s0"].assign(series_id="new_road")
    with pytest.raises(ValueError, match="new_road"):
        fitted.predict(2, history_df=pd.concat([small_df, stranger]))


def test_horizon_beyond_training_rejected(fitted):
    with pytest.raises(ValueError, match="horizon=4"):
        fitted.predict(5)


def test_nan_targets_are_ignored(small_df):
    rng = np.random.default_rng(3)
    holes = small_df.assign(value=small_df["value"].mask(rng.random(len(small_df)) < 0.2))
    model = STIDForecaster(**FAST).fit(holes)
    losses = [h["train_loss"] for h in model.history_losses_]
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0]  # it learns despite the gaps
    # learning NaN as zero would drag forecasts towards 0; the series live around 40-70
    assert model.predict(4)["yhat"].between(20, 90).all()


def test_nan_in_input_window_still_forecasts(fitted, small_df):
    last = small_df["timestamp"].max()
    gappy = small_df.assign(
        value=small_df["value"].where(small_df["timestamp"] < last - pd.Timedelta("3h"))
    )
    fc = fitted.predict(4, history_df=gappy)
    assert fc["yhat"].notna().all()


def test_vectorised_historical_forecasts_match_predict(fitted, small_df):
    times = np.sort(small_df["timestamp"].unique())
    origins = times[-30:-4:5]
    hf = fitted.historical_forecasts(small_df, origins, 4)
    assert len(hf) == len(origins) * 3 * 4
    for origin in origins:
        one = fitted.predict(4, history_df=small_df[small_df["timestamp"] <= origin])
        got = hf[hf["origin"] == origin].drop(columns="origin").reset_index(drop=True)
        pd.testing.assert_frame_equal(
            got[["series_id", "timestamp", "horizon_step"]], one.iloc[:, :3]
        )
        np.testing.assert_allclose(got["yhat"], one["yhat"], rtol=1e-5)


def test_intervals_when_levels_given(small_df):
    model = STIDForecaster(**{**FAST, "calibration_steps": 24, "max_epochs": 2}).fit(small_df)
    fc = model.predict(4, levels=[80, 95])
    for col in ["yhat_lo_80", "yhat_hi_80", "yhat_lo_95", "yhat_hi_95"]:
        assert col in fc.columns
    assert (fc["yhat_lo_95"] <= fc["yhat_lo_80"]).all()
    assert (fc["yhat_lo_80"] <= fc["yhat"]).all() and (fc["yhat"] <= fc["yhat_hi_80"]).all()


def test_graph_branch_runs_with_adjacency(small_df):
    edges = pd.DataFrame({"src": ["s0", "s1"], "dst": ["s1", "s2"], "weight": [1.0, 0.5]})
    model = STIDForecaster(**FAST, graph=True, adjacency=edges).fit(small_df)
    adj = model.adjacency_matrix_
    np.testing.assert_allclose(adj.sum(axis=1), 1.0)  # row-normalised, every node has a neighbour
    assert adj[0, 1] > 0 and adj[1, 0] > 0  # edges are used in both directions
    assert model.predict(4)["yhat"].notna().all()


def test_graph_without_adjacency_rejected(small_df):
    with pytest.raises(ValueError, match="adjacency"):
        STIDForecaster(**FAST, graph=True).fit(small_df)


def test_bad_loss_rejected(small_df):
    with pytest.raises(ValueError, match="loss"):
        STIDForecaster(**{**FAST, "loss": "rmse"}).fit(small_df)


def test_constructor_only_stores():
    model = STIDForecaster(horizon=3, embed_dim=7)
    assert model.get_params()["embed_dim"] == 7
    assert not hasattr(model, "weights_")
    assert model.clone().get_params() == model.get_params()


def test_import_does_not_load_torch():
    import subprocess
    import sys

    code = "import sys, citybrain_ml.models.neural; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_weekdays_unseen_in_training_get_average_embedding():
    weekdays = make_series(n_series=2, n_steps=24 * 4)  # Monday..Thursday only
    model = STIDForecaster(**FAST).fit(weekdays)
    dow = model.weights_["dow_emb"]
    for unseen in (4, 5, 6):  # Friday..Sunday share one fallback: the mean of the seen days
        np.testing.assert_allclose(dow[unseen], dow[:4].mean(axis=0), rtol=1e-5, atol=1e-7)
