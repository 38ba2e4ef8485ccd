"""Average of the best member models, chosen on a time-ordered validation tail.

Selection and intervals come from the same out-of-sample forecasts: members are fitted on
the data before the validation tail, scored there, the ``top_k`` best (by MAE) are kept and
their averaged validation residuals calibrate split-conformal intervals; the kept members
are then refitted on all the data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import HORIZON_STEP, SERIES_ID, TIMESTAMP, VALUE, YHAT
from citybrain_ml.models.base import Forecaster


class EnsembleForecaster(Forecaster):
    """Mean forecast of the ``top_k`` members with the lowest validation MAE.

    Parameters
    ----------
    members : list of dict
        ``{"type": <registry name>, "params": {...}}`` for each candidate model.
    top_k : int
        How many of the best members to average.
    validation_steps : int
        Trailing steps per series used to select members and calibrate intervals.
    stride : int
        Score every ``stride``-th validation origin (cheaper selection).
    horizon : int
        Longest horizon (steps).
    calibration_steps : int, optional
        Ignored (intervals come from the validation tail); kept for the common contract.
    adjacency : DataFrame, optional
        Sensor graph (``src, dst, weight``) handed to members that take one.
    """

    def __init__(
        self,
        members: list[dict] | None = None,
        top_k: int = 2,
        validation_steps: int = 192,
        stride: int = 1,
        horizon: int = 12,
        calibration_steps: int | None = None,
        adjacency: pd.DataFrame | None = None,
    ):
        self.adjacency = adjacency
        self.members = members
        self.top_k = top_k
        self.validation_steps = validation_steps
        self.stride = stride
        self.horizon = horizon
        self.calibration_steps = calibration_steps

    @property
    def min_history(self) -> int:
        return max((m.min_history for m in getattr(self, "models_", [])), default=1)

    def _history_to_keep(self) -> int:
        return max((m._history_to_keep() for m in getattr(self, "models_", [])), default=1)

    def _calibrate(self, df):
        return None  # done in _fit from the validation forecasts

    def _build(self) -> list[Forecaster]:
        from citybrain_ml.models import make_model, model_class

        if not self.members:
            raise ValueError("EnsembleForecaster needs at least one member")
        built = []
        for spec in self.members:
            # members never calibrate: the ensemble's intervals come from its validation tail
            params = {"horizon": self.horizon, **spec.get("params", {}), "calibration_steps": 0}
            takes_graph = "adjacency" in model_class(spec["type"])._param_names()
            if takes_graph and self.adjacency is not None:
                params.setdefault("adjacency", self.adjacency)
            built.append(make_model(spec["type"], **params))
        return built

    def _fit(self, df: pd.DataFrame) -> None:
        times = np.sort(df[TIMESTAMP].unique())
        cutoff = times[-self.validation_steps - 1]
        origins = times[-self.validation_steps - 1 : -self.horizon : self.stride]
        train = df[df[TIMESTAMP] <= cutoff]
        scores, forecasts = [], []
        for model in self._build():
            model.fit(train, freq=self.freq_)
            fc = model.historical_forecasts(df, origins, self.horizon)
            fc = fc.merge(df[[SERIES_ID, TIMESTAMP, VALUE]], on=[SERIES_ID, TIMESTAMP])
            ok = fc[VALUE].notna() & fc[YHAT].notna()
            scores.append(float((fc.loc[ok, VALUE] - fc.loc[ok, YHAT]).abs().mean()))
            forecasts.append(fc)
        order = np.argsort(scores)[: self.top_k]
        self.validation_mae_ = {self._label(i): scores[i] for i in range(len(scores))}
        self.selected_ = [self._label(i) for i in order]
        self.conformal_scores_ = self._residual_scores([forecasts[i] for i in order])
        fresh = self._build()
        self.models_ = [fresh[i].fit(df, freq=self.freq_) for i in order]

    def _label(self, i: int) -> str:
        return f"{i}:{self.members[i]['type']}"

    def _residual_scores(self, forecasts: list[pd.DataFrame]) -> dict[int, np.ndarray]:
        keys = [SERIES_ID, TIMESTAMP, "origin", HORIZON_STEP]
        mean = pd.concat([f.set_index(keys)[YHAT] for f in forecasts], axis=1).mean(axis=1)
        actual = forecasts[0].set_index(keys)[VALUE]
        err = (actual - mean).abs().dropna()
        steps = err.index.get_level_values(HORIZON_STEP)
        return {int(h): np.sort(e.to_numpy()) for h, e in err.groupby(steps)}

    def _predict(self, history, horizon, covariates):
        parts = [m._predict(history, horizon, covariates) for m in self.models_]
        return self._average(parts)

    def _predict_origins(self, df, origins, horizon):
        parts = [m._predict_origins(df, origins, horizon) for m in self.models_]
        return self._average(parts, extra=["origin"])

    @staticmethod
    def _average(parts: list[pd.DataFrame], extra: list[str] | None = None) -> pd.DataFrame:
        keys = [SERIES_ID, TIMESTAMP, HORIZON_STEP, *(extra or [])]
        stacked = pd.concat([p[[*keys, YHAT]] for p in parts], ignore_index=True)
        return stacked.groupby(keys, sort=False, as_index=False)[YHAT].mean()
