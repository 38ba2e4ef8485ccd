"""Many models: one fitted copy of a forecaster per series, served as one model.

:class:`PerSeriesModel` wraps a template forecaster (a seasonal baseline, ETS, SARIMAX...)
and keeps one clone fitted on each series alone. ``predict`` routes each series of the
history to its own model, so the ensemble follows the same contract as any
:class:`~citybrain_ml.models.base.Forecaster` (and logs with
:func:`citybrain_ml.tracking.log_model` as one MLflow pyfunc). The per-series fits are
independent, which is what lets :func:`citybrain_ml.spark.training.fit_many_models` run
them on Spark workers (``applyInPandas``) and give the same models as :meth:`PerSeriesModel.fit`
in one process: both call :func:`fit_one_series` on the same rows.

Each series also gets its own split-conformal intervals (calibrated on that series only).
"""

from __future__ import annotations

import pandas as pd

from citybrain_ml.data.schema import FORECAST_COLUMNS, HORIZON_STEP, SERIES_ID
from citybrain_ml.models.base import Forecaster, ModelError, _prepare, infer_freq


def fit_one_series(model: Forecaster, frame: pd.DataFrame, freq: str, calendar=None) -> Forecaster:
    """A clone of ``model`` fitted on one series' rows (the unit of work of many models)."""
    return model.clone().fit(frame, freq=freq, calendar=calendar)


class PerSeriesModel(Forecaster):
    """One clone of ``model`` per series; forecasts are routed by ``series_id``.

    Parameters
    ----------
    model : Forecaster
        Unfitted template (its parameters are used for every series).

    Attributes
    ----------
    models_ : dict
        ``series_id -> fitted clone``.
    fit_errors_ : dict
        ``series_id -> reason`` for series whose fit raised (they get no forecasts).
    """

    handles_new_series = False

    def __init__(self, model: Forecaster):
        self.model = model

    @property
    def horizon(self) -> int:
        return int(getattr(self.model, "horizon", 1) or 1)

    def _history_to_keep(self) -> int:
        models = getattr(self, "models_", None)
        if models:
            return max(m._history_to_keep() for m in models.values())
        return self.model._history_to_keep()

    # ------------------------------------------------------------------ fit
    def fit(self, df: pd.DataFrame, freq: str | None = None, calendar=None) -> PerSeriesModel:
        """Fit one clone of ``model`` per series, in this process.

        Parameters
        ----------
        df : DataFrame
            Long frame ``series_id, timestamp, value`` (+ covariates).
        freq : str, optional
            Sampling interval shared by all series; inferred from the whole frame if omitted.
        calendar : ServiceCalendar or str, optional
            Passed to every series' fit (None: each series detects its own).
        """
        df = _prepare(df)
        freq = freq or infer_freq(df)
        fitted, errors = {}, {}
        for sid, group in df.groupby(SERIES_ID, sort=False):
            try:
                fitted[sid] = fit_one_series(
                    self.model, group.reset_index(drop=True), freq, calendar
                )
            except Exception as exc:  # one bad series must not sink a city of them
                errors[sid] = f"{type(exc).__name__}: {exc}"
        return self._assemble(fitted, freq, errors)

    def _assemble(self, fitted: dict, freq: str, errors: dict | None = None) -> PerSeriesModel:
        """Set the fitted state from per-series models (also used by the Spark path)."""
        if not fitted:
            raise ModelError(f"no series could be fitted: {dict(list((errors or {}).items())[:5])}")
        self.freq_ = freq
        self.calendar_ = None  # every series model keeps its own
        self.models_ = dict(sorted(fitted.items(), key=lambda kv: str(kv[0])))
        self.series_ids_ = list(self.models_)
        self.fit_errors_ = dict(errors or {})
        self.fallbacks_ = {}
        for m in self.models_.values():
            for kind, count in (getattr(m, "fallbacks_", None) or {}).items():
                self.fallbacks_[kind] = self.fallbacks_.get(kind, 0) + count
        if self.fit_errors_:
            self._fallback(
                "series_fit_failed",
                len(self.fit_errors_),
                f"{len(self.fit_errors_)} series could not be fitted and get no forecasts "
                f"(e.g. {next(iter(self.fit_errors_.items()))})",
            )
        scores = {sid: m.conformal_scores_ for sid, m in self.models_.items()}
        # per-series intervals: served only when every series was calibrated
        self.conformal_scores_ = scores if all(scores.values()) else None
        self.history_ = _prepare(
            pd.concat([m.history_ for m in self.models_.values()], ignore_index=True)
        )
        return self

    # ------------------------------------------------------------------ predict
    def _routed(self, frame: pd.DataFrame, call, covariates: pd.DataFrame | None):
        frames, unseen = [], []
        cov = None if covariates is None else dict(tuple(covariates.groupby(SERIES_ID, sort=False)))
        for sid, group in frame.groupby(SERIES_ID, sort=False):
            model = self.models_.get(sid)
            if model is None:
                unseen.append(sid)
                continue
            frames.append(
                call(model, group.reset_index(drop=True), None if cov is None else cov.get(sid))
            )
        if unseen:
            self._fallback(
                "unseen_series_skipped",
                len(unseen),
                f"{len(unseen)} series have no model of their own (e.g. {unseen[:3]}) and get "
                "no forecasts",
            )
        return frames

    def predict(self, horizon, history_df=None, covariates=None, levels=None) -> pd.DataFrame:
        """As :meth:`Forecaster.predict`; each series is forecast by its own model."""
        self._check_fitted()
        horizon = int(horizon)
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        history = self.history_ if history_df is None else _prepare(history_df)
        frames = self._routed(
            history,
            lambda m, g, c: m.predict(horizon, history_df=g, covariates=c, levels=levels),
            covariates,
        )
        if not frames:
            return pd.DataFrame(columns=FORECAST_COLUMNS)
        out = pd.concat(frames, ignore_index=True)
        return out.sort_values([SERIES_ID, HORIZON_STEP], kind="stable").reset_index(drop=True)

    def historical_forecasts(self, df, origins, horizon, levels=None, covariates=None):
        """As :meth:`Forecaster.historical_forecasts`, series by series."""
        self._check_fitted()
        frames = self._routed(
            _prepare(df),
            lambda m, g, c: m.historical_forecasts(g, origins, horizon, levels, c),
            covariates,
        )
        if not frames:
            return pd.DataFrame(columns=[*FORECAST_COLUMNS, "origin"])
        out = pd.concat(frames, ignore_index=True)
        out = out.sort_values(["origin", SERIES_ID, HORIZON_STEP], kind="stable")
        return out.reset_index(drop=True)

    def _fit(self, df):  # fit() is overridden; kept for the base-class contract
        raise NotImplementedError

    def _predict(self, history, horizon, covariates):
        return self.predict(horizon, history_df=history, covariates=covariates)


__all__ = ["PerSeriesModel", "fit_one_series"]
