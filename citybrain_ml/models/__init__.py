"""Forecasters under one contract. ``make_model("lightgbm", horizon=4)`` builds one by name.

Heavy modules (torch, statsmodels, lightgbm) are imported only when their model is asked for.
"""

from __future__ import annotations

from importlib import import_module

from citybrain_ml.models.base import Forecaster, ModelError
from citybrain_ml.models.baselines import HistoricalAverage, LastValue, SeasonalNaive

# config name -> "module:Class"
REGISTRY = {
    "last_value": "citybrain_ml.models.baselines:LastValue",
    "seasonal_naive": "citybrain_ml.models.baselines:SeasonalNaive",
    "historical_average": "citybrain_ml.models.baselines:HistoricalAverage",
    "lightgbm": "citybrain_ml.models.lightgbm:LightGBMForecaster",
    "sarimax": "citybrain_ml.models.statistical:SARIMAXForecaster",
    "ets": "citybrain_ml.models.statistical:ETSForecaster",
    "var": "citybrain_ml.models.statistical:VARForecaster",
    "stid": "citybrain_ml.models.neural:STIDForecaster",
    "glm_poisson": "citybrain_ml.models.glm:PoissonGLMForecaster",
    "glm_negbin": "citybrain_ml.models.glm:NegativeBinomialGLMForecaster",
    "kde_hotspot": "citybrain_ml.models.kde:KDEHotspotForecaster",
    "ensemble": "citybrain_ml.models.ensemble:EnsembleForecaster",
    "auto": "citybrain_ml.models.auto:AutoForecaster",
}


def model_class(name: str) -> type[Forecaster]:
    """The forecaster class registered under ``name`` (clear error listing known names)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model type {name!r}; known: {', '.join(sorted(REGISTRY))}")
    module, cls = REGISTRY[name].split(":")
    return getattr(import_module(module), cls)


def make_model(name: str, **params) -> Forecaster:
    """Build an unfitted forecaster by registry name; unknown params raise a clear error."""
    cls = model_class(name)
    allowed = set(cls._param_names())
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(
            f"model {name!r} has no parameter(s) {unknown}; allowed: {sorted(allowed)}"
        )
    return cls(**params)


__all__ = [
    "Forecaster",
    "ModelError",
    "LastValue",
    "SeasonalNaive",
    "HistoricalAverage",
    "REGISTRY",
    "model_class",
    "make_model",
]
