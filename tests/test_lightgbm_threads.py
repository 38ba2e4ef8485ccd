"""LightGBMForecaster: ``n_jobs`` reaches LightGBM as ``num_threads`` on every booster path."""

from __future__ import annotations

import lightgbm as lgb
import pytest
from conftest import make_series

from citybrain_ml.models.lightgbm import LightGBMForecaster

FAST = dict(n_estimators=8, num_leaves=7, min_child_samples=10)


@pytest.fixture(scope="module")
def df():
    return make_series(n_series=2, n_steps=24 * 14)


@pytest.fixture
def spy(monkeypatch):
    """Records the thread settings of every lgb.train and Booster.predict call."""
    seen = {"train": [], "predict": []}
    train, predict = lgb.train, lgb.Booster.predict

    def fake_train(params, *args, **kwargs):
        seen["train"].append(
            {k: v for k, v in params.items() if k in ("num_threads", "nthread", "n_jobs")}
        )
        return train(params, *args, **kwargs)

    def fake_predict(self, data, *args, **kwargs):
        seen["predict"].append(kwargs.get("num_threads"))
        return predict(self, data, *args, **kwargs)

    monkeypatch.setattr(lgb, "train", fake_train)
    monkeypatch.setattr(lgb.Booster, "predict", fake_predict)
    return seen


@pytest.mark.parametrize(
    "extra",
    [
        dict(strategy="direct"),
        dict(strategy="pooled", early_stopping_rounds=3),
        dict(strategy="hybrid", direct_steps=1, objective="quantile", quantiles=(0.1, 0.5, 0.9)),
        dict(strategy="direct", calibration_refit=False),
    ],
)
def test_n_jobs_reaches_every_train_and_predict(df, spy, extra):
    # calibration_steps: a clone is fitted and scored, then (by default) the model is refitted
    model = LightGBMForecaster(horizon=3, calibration_steps=48, n_jobs=3, **FAST, **extra)
    model.fit(df)
    model.predict(3)
    model.fit(df)  # refit
    assert spy["train"] and spy["predict"]
    assert all(p == {"num_threads": 3} for p in spy["train"])
    assert all(t == 3 for t in spy["predict"])


def test_thread_alias_in_lgb_params_replaces_n_jobs_everywhere(df, spy):
    model = LightGBMForecaster(
        horizon=2, calibration_steps=0, n_jobs=3, lgb_params={"nthread": 1}, **FAST
    )
    model.fit(df).predict(2)
    assert spy["train"] and all(p == {"num_threads": 1} for p in spy["train"])
    assert spy["predict"] and all(t == 1 for t in spy["predict"])
