"""The one model contract every citybrain_ml forecaster follows.

scikit-learn style: the constructor only stores parameters, ``fit`` returns ``self`` and
learned state ends in ``_``. Subclasses implement two hooks:

* ``_fit(df)`` -- learn from a validated long frame (NaN targets are missing, not zero);
* ``_predict(history, horizon)`` -- forecast ``horizon`` steps after the last timestamp of
  each series in ``history``; return ``series_id, timestamp, horizon_step, yhat``.

Everything else -- input checks, split-conformal intervals per horizon step, rolling-origin
forecasts and save/load -- lives here once.
"""

from __future__ import annotations

import inspect
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import (
    FORECAST_COLUMNS,
    HORIZON_STEP,
    SERIES_ID,
    TIMESTAMP,
    VALUE,
    YHAT,
    interval_columns,
)

MODEL_FILE = "model.pkl"
META_FILE = "model_meta.json"
FORMAT_VERSION = 1


class ModelError(RuntimeError):
    """Raised for misuse of a model (not fitted, corrupt file, incompatible version...)."""


class Forecaster:
    """Base class: shared fit/predict/save/load plumbing.

    Subclasses take ``horizon`` (the longest horizon they are asked for, in steps) and
    ``calibration_steps`` (how many trailing steps per series are held out to calibrate
    split-conformal intervals; ``None`` picks a default, ``0`` turns intervals off).
    """

    #: steps of history a model needs to forecast (subclasses override)
    min_history: int = 1
    #: whether the model can forecast series it was not trained on (global models can)
    handles_new_series: bool = True

    # ------------------------------------------------------------------ params
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self) -> dict:
        """Constructor parameters, as scikit-learn's ``get_params`` (shallow)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def clone(self) -> Forecaster:
        """A new, unfitted model with the same parameters."""
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ fit
    def fit(self, df: pd.DataFrame, freq: str | None = None) -> Forecaster:
        """Fit on a long frame ``series_id, timestamp, value`` (+ covariates).

        Parameters
        ----------
        df : DataFrame
            Training history; NaN values are treated as missing targets.
        freq : str, optional
            Sampling interval; inferred from the timestamps when omitted.

        Returns
        -------
        self
        """
        df = _prepare(df)
        self.freq_ = freq or infer_freq(df)
        self.series_ids_ = list(pd.unique(df[SERIES_ID]))
        self.conformal_scores_ = self._calibrate(df)
        self._fit(df)
        self.history_ = _tail(df, self._history_to_keep())
        return self

    def _history_to_keep(self) -> int:
        return max(self.min_history, 1)

    def _calibration_size(self, df: pd.DataFrame) -> int:
        steps = getattr(self, "calibration_steps", None)
        if steps is not None:
            return int(steps)
        n = df.groupby(SERIES_ID).size().min()
        # default: 10% of the shortest series, at least one horizon, at most 4 weeks of origins
        return int(min(max(self._max_horizon(), n // 10), 500))

    def _max_horizon(self) -> int:
        return int(getattr(self, "horizon", 1) or 1)

    def _calibrate(self, df: pd.DataFrame) -> dict[int, np.ndarray] | None:
        """Split-conformal: fit a clone without the tail, score its forecasts on the tail.

        Returns sorted absolute residuals per horizon step (pooled over series and
        origins), or None when calibration is off or the series are too short.
        """
        size = self._calibration_size(df)
        if size <= 0:
            return None
        times = np.sort(df[TIMESTAMP].unique())
        if len(times) <= size + self.min_history + self._max_horizon():
            return None
        cutoff = times[-size - 1]
        train = df[df[TIMESTAMP] <= cutoff]
        model = self.clone()
        model.calibration_steps = 0
        model.fit(train, freq=self.freq_)
        # origins every step over the tail, capped so calibration stays cheap
        origins = times[-size - 1 : -1]
        stride = max(1, len(origins) // 200)
        fc = model.historical_forecasts(df, origins[::stride], self._max_horizon())
        fc = fc.merge(df[[SERIES_ID, TIMESTAMP, VALUE]], on=[SERIES_ID, TIMESTAMP])
        fc = fc.dropna(subset=[VALUE, YHAT])
        if fc.empty:
            return None
        err = (fc[VALUE] - fc[YHAT]).abs()
        return {int(h): np.sort(e.to_numpy()) for h, e in err.groupby(fc[HORIZON_STEP])}

    # ------------------------------------------------------------------ predict
    def predict(
        self,
        horizon: int,
        history_df: pd.DataFrame | None = None,
        covariates: pd.DataFrame | None = None,
        levels: list[int] | None = None,
    ) -> pd.DataFrame:
        """Forecast ``horizon`` steps after the end of each series.

        Parameters
        ----------
        horizon : int
            Number of steps ahead (1..horizon).
        history_df : DataFrame, optional
            Recent history in long format to forecast from; defaults to the end of the
            training data. Series unseen in training are forecast where the model allows.
        covariates : DataFrame, optional
            Future covariates ``series_id, timestamp, ...`` for models that use them.
        levels : list of int, optional
            Central interval levels in percent, e.g. ``[80, 90]``; adds
            ``yhat_lo_XX`` / ``yhat_hi_XX`` columns.

        Returns
        -------
        DataFrame
            ``series_id, timestamp, horizon_step, yhat`` (+ interval columns).
        """
        self._check_fitted()
        horizon = int(horizon)
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        history = self.history_ if history_df is None else _prepare(history_df)
        out = self._predict(history, horizon, covariates)
        # extra columns a model adds (e.g. quantile forecasts) follow the standard ones
        extra = [c for c in out.columns if c not in FORECAST_COLUMNS]
        out = out[[*FORECAST_COLUMNS, *extra]]
        out = out.sort_values([SERIES_ID, HORIZON_STEP], kind="stable")
        out = out.reset_index(drop=True)
        return self._add_intervals(out, levels) if levels else out

    def historical_forecasts(
        self,
        df: pd.DataFrame,
        origins,
        horizon: int,
        levels: list[int] | None = None,
        covariates: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Forecasts made at each origin using only data at or before it (no refit).

        Parameters
        ----------
        df : DataFrame
            Long history frame; targets after an origin are never used for it.
        origins : sequence of timestamps
            Forecast origins.
        horizon : int
            Steps forecast from each origin.
        levels : list of int, optional
            Split-conformal interval levels.
        covariates : DataFrame, optional
            Future covariates ``series_id, timestamp, ...`` at target times (e.g. archived
            weather forecasts), for models that read them; others ignore them.

        Returns
        -------
        DataFrame
            The forecast frame with an extra ``origin`` column.
        """
        self._check_fitted()
        df = _prepare(df)
        origins = pd.to_datetime(pd.Index(origins))
        if covariates is not None and _takes_covariates(self._predict_origins):
            out = self._predict_origins(df, origins, int(horizon), covariates=covariates)
        else:
            out = self._predict_origins(df, origins, int(horizon))
        out = out.sort_values(["origin", SERIES_ID, HORIZON_STEP], kind="stable")
        out = out.reset_index(drop=True)
        return self._add_intervals(out, levels) if levels else out

    def _predict_origins(self, df: pd.DataFrame, origins, horizon: int) -> pd.DataFrame:
        """Default: one ``_predict`` per origin. Models override with a vectorised path."""
        keep = self._history_to_keep()
        frames = []
        for origin in origins:
            hist = _tail(df[df[TIMESTAMP] <= origin], keep)
            if hist.empty:
                continue
            frames.append(self._predict(hist, horizon, None).assign(origin=origin))
        if not frames:
            return pd.DataFrame(columns=[*FORECAST_COLUMNS, "origin"])
        return pd.concat(frames, ignore_index=True)[[*FORECAST_COLUMNS, "origin"]]

    def _add_intervals(self, fc: pd.DataFrame, levels: list[int]) -> pd.DataFrame:
        scores = getattr(self, "conformal_scores_", None)
        if not scores:
            raise ModelError(
                f"{type(self).__name__} has no calibrated intervals: fit it with "
                "calibration_steps > 0 (or None) on a history longer than the horizon"
            )
        fc = fc.copy()
        steps = fc[HORIZON_STEP].to_numpy()
        for level in sorted(levels):
            if not 0 < level < 100:
                raise ValueError(f"interval level must be in (0, 100), got {level}")
            width = {h: conformal_quantile(scores[_nearest(scores, h)], level) for h in set(steps)}
            w = np.array([width[h] for h in steps])
            lo, hi = interval_columns(level)
            fc[lo] = fc[YHAT] - w
            fc[hi] = fc[YHAT] + w
        return fc

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted model to directory ``path`` (``model.pkl`` + ``model_meta.json``)."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / (MODEL_FILE + ".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(self, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path / MODEL_FILE)
        meta = {
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "format_version": FORMAT_VERSION,
            "citybrain_ml_version": _package_version(),
            "params": {k: repr(v) for k, v in self.get_params().items()},
            "freq": self.freq_,
        }
        (path / META_FILE).write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Forecaster:
        """Load a model written by :meth:`save`; clear errors for missing/corrupt files."""
        path = Path(path)
        meta_path, model_path = path / META_FILE, path / MODEL_FILE
        if not model_path.exists() or not meta_path.exists():
            raise ModelError(
                f"no citybrain_ml model at {path} (expected {MODEL_FILE}, {META_FILE})"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelError(f"corrupt model metadata {meta_path}: {exc}") from exc
        if meta.get("format_version") != FORMAT_VERSION:
            raise ModelError(
                f"model at {path} has format version {meta.get('format_version')}, "
                f"this citybrain_ml reads version {FORMAT_VERSION}; "
                "retrain or install a matching version"
            )
        try:
            with open(model_path, "rb") as fh:
                model = pickle.load(fh)
        except Exception as exc:  # pickle raises many types on corrupt input
            raise ModelError(f"corrupt model file {model_path}: {exc}") from exc
        if not isinstance(model, cls):
            raise ModelError(f"{model_path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    # ------------------------------------------------------------------ hooks
    def _fit(self, df: pd.DataFrame) -> None:
        raise NotImplementedError

    def _predict(self, history: pd.DataFrame, horizon: int, covariates) -> pd.DataFrame:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "history_"):
            raise ModelError(f"{type(self).__name__} is not fitted yet: call fit(df) first")


# ---------------------------------------------------------------------- helpers
def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """Finite-sample split-conformal quantile of sorted absolute residuals."""
    n = len(scores)
    k = int(np.ceil((n + 1) * level / 100.0))
    return float(scores[min(k, n) - 1])


def _nearest(scores: dict, h: int) -> int:
    # horizons beyond the calibrated range reuse the widest calibrated step
    return (
        h if h in scores else max(k for k in scores if k <= h) if min(scores) <= h else min(scores)
    )


def _prepare(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in (SERIES_ID, TIMESTAMP, VALUE) if c not in df.columns]
    if missing:
        raise ValueError(
            f"input frame lacks column(s) {missing}; expected series_id, timestamp, value"
        )
    if not pd.api.types.is_datetime64_any_dtype(df[TIMESTAMP]):
        df = df.assign(**{TIMESTAMP: pd.to_datetime(df[TIMESTAMP])})
    if not df[[SERIES_ID, TIMESTAMP]].apply(lambda s: s.is_monotonic_increasing).all():
        df = df.sort_values([SERIES_ID, TIMESTAMP], kind="stable")
    return df.reset_index(drop=True)


def _tail(df: pd.DataFrame, n: int) -> pd.DataFrame:
    return df.groupby(SERIES_ID, sort=False).tail(n).reset_index(drop=True)


def infer_freq(df: pd.DataFrame) -> str:
    """Most common step between consecutive timestamps, as a pandas offset alias."""
    steps = df.groupby(SERIES_ID)[TIMESTAMP].diff().dropna()
    if steps.empty:
        raise ValueError("cannot infer frequency: every series has a single timestamp")
    step = steps.mode().iloc[0]
    return pd.tseries.frequencies.to_offset(step).freqstr


def future_index(history: pd.DataFrame, horizon: int, freq: str) -> pd.DataFrame:
    """``series_id, timestamp, horizon_step`` for the ``horizon`` steps after each series' end."""
    last = history.groupby(SERIES_ID, sort=False)[TIMESTAMP].max()
    offset = pd.tseries.frequencies.to_offset(freq)
    steps = np.arange(1, horizon + 1)
    sid = np.repeat(last.index.to_numpy(), horizon)
    ts = np.repeat(last.to_numpy(), horizon) + np.tile(steps, len(last)) * pd.Timedelta(offset)
    return pd.DataFrame({SERIES_ID: sid, TIMESTAMP: ts, HORIZON_STEP: np.tile(steps, len(last))})


def _package_version() -> str:
    from citybrain_ml import __version__

    return __version__


def _takes_covariates(method) -> bool:
    """True when a model's rolling-origin path reads future covariates."""
    import inspect

    return "covariates" in inspect.signature(method).parameters
