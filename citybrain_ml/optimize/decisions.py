"""Decision outputs next to forecasts: a small plug-in point for train jobs.

A job config lists ``decisions: [{type: <name>, params: {...}}]``. After the models are
evaluated and the best one has forecast, each decision function receives a
:class:`DecisionContext` and returns a :class:`DecisionOutput` (tables written beside the
forecasts and logged to MLflow, figures logged, metrics logged on the job's run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

import pandas as pd

from citybrain_ml.data.schema import SeriesDataset

# config name -> "module:function"; functions take (DecisionContext) -> DecisionOutput
REGISTRY: dict[str, str] = {
    "air_alerts": "citybrain_ml.optimize.air_alerts:air_alerts_decision",
    "hotspots": "citybrain_ml.optimize.hotspots:hotspots_decision",
}


@dataclass
class DecisionContext:
    """What a decision function may use.

    Attributes
    ----------
    dataset : the validated dataset the job trained on (full history).
    forecast : the best model's forecast of the future (``series_id, timestamp, horizon_step,
        yhat`` + interval/quantile columns).
    scored : the best model's evaluation forecasts joined with actual ``value`` (+ ``origin``).
    model : the fitted best model.
    params : the decision's ``params`` from the config.
    train_end : last timestamp the final model saw.
    """

    dataset: SeriesDataset
    forecast: pd.DataFrame
    scored: pd.DataFrame
    model: Any
    params: dict
    train_end: pd.Timestamp


@dataclass
class DecisionOutput:
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def register_decision(name: str, target: str) -> None:
    """Register ``"module:function"`` under ``name`` (used by config ``decisions.type``)."""
    REGISTRY[name] = target


def run_decision(name: str, ctx: DecisionContext) -> DecisionOutput:
    if name not in REGISTRY:
        raise ValueError(
            f"unknown decision type {name!r}; known: {', '.join(sorted(REGISTRY)) or 'none'}"
        )
    module, func = REGISTRY[name].split(":")
    out = getattr(import_module(module), func)(ctx)
    if not isinstance(out, DecisionOutput):
        raise TypeError(f"decision {name!r} returned {type(out).__name__}, expected DecisionOutput")
    return out
