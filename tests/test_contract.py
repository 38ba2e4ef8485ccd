"""One contract for every registered model: fit returns self, predict returns the forecast
frame with the right timestamps and steps, intervals are ordered, save/load is lossless and
rolling-origin forecasts use only the past."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLES  # noqa: I001

from citybrain_ml.data.schema import FORECAST_COLUMNS
from citybrain_ml.models import REGISTRY, Forecaster, make_model

H = 6
FAST = {
    "last_value": {},
    "auto": {"n_estimators": 20, "n_jobs": 1, "validation_days": 1, "max_origins": 24},
    "seasonal_naive": {"season_length": 96},
    "historical_average": {},
    "lightgbm": {"n_estimators": 20, "n_jobs": 1, "lags": (1, 2, 3), "rolling_windows": (4,)},
    "sarimax": {"order": (1, 0, 0), "n_jobs": 1},
    "ets": {"n_jobs": 1},
    "var": {"maxlags": 2},
    "stid": {
        "max_epochs": 2,
        "input_len": 6,
        "embed_dim": 8,
        "node_dim": 8,
        "tod_dim": 8,
        "dow_dim": 8,
    },
    "glm_poisson": {
        "windows": (24, 72),
        "neighbour_windows": (),
        "profile_spans": (7,),
        "maxiter": 20,
    },
    "glm_negbin": {
        "windows": (24, 72),
        "neighbour_windows": (),
        "profile_spans": (7,),
        "maxiter": 20,
    },
    "kde_hotspot": {
        "coordinates": pd.DataFrame(
            {"series_id": ["s0", "s1", "s2"], "x": [0, 1, 2], "y": [0, 0, 0]}
        )
    },
    "ensemble": {
        "members": [
            {"type": "last_value"},
            {"type": "seasonal_naive", "params": {"season_length": 96}},
        ],
        "top_k": 1,
        "validation_steps": 48,
    },
}


@pytest.fixture(scope="module")
def data():
    """The bundled SZ-taxi slice: 12 roads x 14 days of 15-minute speeds."""
    from citybrain_ml.data import load_sz_taxi

    return load_sz_taxi(root=SAMPLES).values


def _params(name: str, data: pd.DataFrame) -> dict:
    params = dict(FAST[name])
    if name == "kde_hotspot":  # roads have no grid ids: place them on a line
        ids = sorted(data["series_id"].unique())
        params["coordinates"] = pd.DataFrame({"series_id": ids, "x": range(len(ids)), "y": 0})
    return params


def test_every_registered_model_has_fast_params():
    assert set(REGISTRY) == set(FAST)


@pytest.fixture(scope="module", params=sorted(FAST))
def fitted(request, data):
    model = make_model(
        request.param, horizon=H, calibration_steps=96, **_params(request.param, data)
    )
    assert model.fit(data) is model
    return request.param, model


def test_predict_frame(fitted, data):
    _, model = fitted
    fc = model.predict(H, levels=[80, 90])
    assert list(fc.columns[:4]) == FORECAST_COLUMNS
    assert len(fc) == data["series_id"].nunique() * H
    last = data["timestamp"].max()
    first = fc.groupby("series_id")["timestamp"].min()
    assert (first == last + pd.Timedelta("15min")).all()
    assert sorted(fc["horizon_step"].unique()) == list(range(1, H + 1))
    assert np.isfinite(fc["yhat"]).all()
    assert (fc["yhat_lo_90"] <= fc["yhat_lo_80"]).all() and (
        fc["yhat_hi_80"] <= fc["yhat_hi_90"]
    ).all()


def test_save_load_identical(fitted, tmp_path):
    _, model = fitted
    model.save(tmp_path / "m")
    again = Forecaster.load(tmp_path / "m")
    pd.testing.assert_frame_equal(model.predict(H, levels=[90]), again.predict(H, levels=[90]))


def test_rolling_origin_uses_only_the_past(fitted, data):
    name, model = fitted
    origin = data["timestamp"].max() - pd.Timedelta("8h")
    fc = model.historical_forecasts(data, [origin], H)
    changed = data.copy()
    changed.loc[changed["timestamp"] > origin, "value"] += 1000.0
    fc2 = model.historical_forecasts(changed, [origin], H)
    np.testing.assert_allclose(fc["yhat"].to_numpy(), fc2["yhat"].to_numpy(), rtol=1e-6, atol=1e-6)
