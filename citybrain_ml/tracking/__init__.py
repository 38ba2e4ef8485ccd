"""MLflow tracking for citybrain_ml: log and load fitted forecasters, run lineage, registry.

>>> import mlflow
>>> from citybrain_ml.tracking import log_model, load_model
>>> with mlflow.start_run():                                  # doctest: +SKIP
...     info = log_model(model)                               # a fitted Forecaster
>>> model = load_model(info.model_uri)                        # doctest: +SKIP

The logged model is also a standard MLflow pyfunc (``mlflow.pyfunc.load_model(uri)``) whose
``predict`` takes a history frame and params ``horizon``, ``as_of``, ``levels``.
"""

from __future__ import annotations

import importlib

# imported on first use: ``citybrain_ml.tracking.runs`` stays importable without MLflow's cost
_EXPORTS = {
    "log_model": "citybrain_ml.tracking.pyfunc",
    "load_model": "citybrain_ml.tracking.pyfunc",
    "log_dataset": "citybrain_ml.tracking.runs",
    "describe_run": "citybrain_ml.tracking.runs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
