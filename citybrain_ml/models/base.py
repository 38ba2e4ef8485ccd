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
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.data.calendar import ServiceCalendar, resolve_calendar
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
#: fewest calibration residuals per horizon step before the window is widened or steps pooled
MIN_RESIDUALS = 50


class ModelError(RuntimeError):
    """Raised for misuse of a model (not fitted, corrupt file, incompatible version...)."""


class FallbackWarning(UserWarning):
    """A model fell back to a simpler rule somewhere; counted in ``fallbacks_`` too."""


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
    #: whether horizons count service steps under a calendar with closed slots; other models
    #: count grid steps and their forecasts for closed slots are dropped (and counted)
    service_aware: bool = False
    #: whether forecasts read nothing before each series' last ``_history_to_keep()`` steps;
    #: ``predict`` then trims longer histories first (a 30-day frame costs what 2 days do)
    bounded_history: bool = False

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
    def fit(
        self,
        df: pd.DataFrame,
        freq: str | None = None,
        calendar: ServiceCalendar | str | None = None,
    ) -> Forecaster:
        """Fit on a long frame ``series_id, timestamp, value`` (+ covariates).

        Parameters
        ----------
        df : DataFrame
            Training history; NaN values are treated as missing targets.
        freq : str, optional
            Sampling interval; inferred from the timestamps when omitted.
        calendar : ServiceCalendar or str, optional
            When the series can be observed (operating hours such as ``"05:30-23:00"``);
            detected from the data when omitted (see :mod:`citybrain_ml.data.calendar`).
            Closed slots are never origins, calibration points or forecast rows.

        Returns
        -------
        self
        """
        df = _prepare(df)
        self.freq_ = freq or infer_freq(df)
        self.calendar_ = resolve_calendar(calendar, df, self.freq_)
        self.fallbacks_ = {}
        self.series_ids_ = list(pd.unique(df[SERIES_ID]))
        self.conformal_scores_ = self._calibrate(df)
        self._fit(df)
        self.history_ = _tail(df, self._history_to_keep())
        return self

    # ------------------------------------------------------------------ fallbacks
    def _fallback(self, kind: str, count: int, message: str) -> None:
        """Count a fallback in ``fallbacks_`` and say it aloud (a :class:`FallbackWarning`)."""
        if count <= 0:
            return
        notes = self.__dict__.setdefault("fallbacks_", {})
        notes[kind] = notes.get(kind, 0) + int(count)
        warnings.warn(f"{type(self).__name__}: {message}", FallbackWarning, stacklevel=3)

    def _service_calendar(self) -> ServiceCalendar | None:
        # models pickled before calendars existed have none: every slot is open
        cal = getattr(self, "calendar_", None)
        return cal if cal is not None and cal.has_closed else None

    def _history_to_keep(self) -> int:
        return max(self.min_history, 1)

    def _calibration_size(self, times: np.ndarray) -> int:
        """Service steps held out for calibration (``times``: the in-service timestamps)."""
        steps = getattr(self, "calibration_steps", None)
        if steps is not None:
            return int(steps)
        # default: 10% of the history, at least one horizon and -- where the history allows
        # it -- one whole service day, so the residuals span every time of day
        day = len(self.calendar_.open_slots) if getattr(self, "calendar_", None) else 0
        size = max(self._max_horizon(), len(times) // 10)
        if day and len(times) >= 3 * day:
            size = max(size, day)
        return int(min(size, 500))

    def _max_horizon(self) -> int:
        return int(getattr(self, "horizon", 1) or 1)

    def _calibration_splits(self, df: pd.DataFrame):
        """Yield ``(cutoff, origins)`` splits for calibration, the second one twice as long.

        Origins are in-service timestamps with at least one observed value; the caller stops
        after the first split that gives :data:`MIN_RESIDUALS` residuals per step.
        """
        times = service_times(df, self._service_calendar())
        size = self._calibration_size(times)
        if size <= 0:
            return
        for _ in range(2):
            if len(times) <= size + self.min_history + self._max_horizon():
                return
            origins = times[-size - 1 : -1]
            # every step over the tail, capped so calibration stays cheap
            yield times[-size - 1], origins[:: max(1, len(origins) // 200)]
            if getattr(self, "calibration_steps", None) is not None:
                return  # an explicit size is kept as given
            size = min(2 * size, len(times) // 2)

    def _calibrate(self, df: pd.DataFrame) -> dict[int, np.ndarray] | None:
        """Split-conformal: fit a clone without the tail, score its forecasts on the tail.

        Returns sorted absolute residuals per horizon step (pooled over series and
        origins), or None when calibration is off or the series are too short. Only
        in-service, observed targets count; a step with fewer than :data:`MIN_RESIDUALS`
        residuals first widens the window once, then pools all steps (both counted in
        ``fallbacks_``).
        """
        scores = None
        for cutoff, origins in self._calibration_splits(df):
            model = self.clone()
            model.calibration_steps = 0
            model.fit(df[df[TIMESTAMP] <= cutoff], freq=self.freq_, calendar=self.calendar_)
            found = self._calibration_scores(model, df, origins)
            if not found:
                continue
            scores = found
            if min(len(v) for v in scores.values()) >= MIN_RESIDUALS:
                return scores
            self._fallback(
                "calibration_window_widened",
                1,
                f"fewer than {MIN_RESIDUALS} calibration residuals per step; widening the window",
            )
        return self._pool_scores(scores)

    def _calibration_scores(self, model: Forecaster, df: pd.DataFrame, origins) -> dict | None:
        """Sorted absolute residuals per step of ``model``'s forecasts from ``origins``."""
        fc = model.historical_forecasts(df, origins, self._max_horizon())
        fc = fc.merge(df[[SERIES_ID, TIMESTAMP, VALUE]], on=[SERIES_ID, TIMESTAMP])
        fc = fc.dropna(subset=[VALUE, YHAT])
        if fc.empty:
            return None
        err = (fc[VALUE] - fc[YHAT]).abs()
        return {int(h): np.sort(e.to_numpy()) for h, e in err.groupby(fc[HORIZON_STEP])}

    def _pool_scores(self, scores: dict | None) -> dict | None:
        """Steps with too few residuals borrow those of the nearest steps until they have
        :data:`MIN_RESIDUALS` (so interval widths still grow with the horizon)."""
        if not scores or min(len(v) for v in scores.values()) >= MIN_RESIDUALS:
            return scores
        steps = sorted(scores)
        pooled = {}
        for h in steps:
            parts, total = [], 0
            for k in sorted(steps, key=lambda k: (abs(k - h), k)):
                if total >= MIN_RESIDUALS:
                    break
                parts.append(scores[k])
                total += len(scores[k])
            pooled[h] = np.sort(np.concatenate(parts))
        short = [h for h in steps if len(scores[h]) < MIN_RESIDUALS]
        self._fallback(
            "calibration_steps_pooled",
            len(short),
            f"steps {short[:5]}{'...' if len(short) > 5 else ''} had fewer than "
            f"{MIN_RESIDUALS} calibration residuals (fewest {min(len(scores[h]) for h in short)}); "
            "they borrow the residuals of the nearest steps",
        )
        return pooled

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
        if history_df is None:
            history, starts = self.history_, None
        else:
            history, starts = _prepare_blocks(history_df)
        trimmed = self._trim_closed_tail(history)
        # series starts found while checking the order are reused, unless rows were dropped
        history = self._trim_history(trimmed, starts if trimmed is history else None)
        out = self._drop_closed_targets(self._predict(history, horizon, covariates))
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
        origins = self._service_origins(pd.to_datetime(pd.Index(origins)))
        if covariates is not None and _takes_covariates(self._predict_origins):
            out = self._predict_origins(df, origins, int(horizon), covariates=covariates)
        else:
            out = self._predict_origins(df, origins, int(horizon))
        out = self._drop_closed_targets(out)
        out = out.sort_values(["origin", SERIES_ID, HORIZON_STEP], kind="stable")
        out = out.reset_index(drop=True)
        return self._add_intervals(out, levels) if levels else out

    # ------------------------------------------------------------------ service calendar
    def _service_origins(self, origins: pd.DatetimeIndex) -> pd.DatetimeIndex:
        """Origins in closed slots are not forecast from (a closed metro has no 'now')."""
        cal = self._service_calendar()
        if cal is None:
            return origins
        return origins[cal.is_open(origins)]

    def _trim_history(
        self, history: pd.DataFrame, starts: np.ndarray | None = None
    ) -> pd.DataFrame:
        """Each series' last ``_history_to_keep()`` rows, for ``bounded_history`` models.

        ``starts``: the first row of each series in ``history`` (sorted by series), when known.
        """
        from citybrain_ml.data.sorted_frames import tail_rows, take_rows

        if not self.bounded_history or history.empty:
            return history
        rows = tail_rows(history, self._history_to_keep(), starts)  # sorted by series
        return history if len(rows) == len(history) else take_rows(history, rows)

    def _trim_closed_tail(self, history: pd.DataFrame) -> pd.DataFrame:
        """Drop each series' trailing closed-slot rows: the origin is its last open slot."""
        cal = self._service_calendar()
        if cal is None or history.empty:
            return history
        is_open = cal.is_open(history[TIMESTAMP])
        if is_open.all():
            return history
        last_open = history[TIMESTAMP].where(is_open).groupby(history[SERIES_ID]).transform("max")
        keep = (history[TIMESTAMP] <= last_open).to_numpy()
        return history[keep].reset_index(drop=True)

    def _drop_closed_targets(self, fc: pd.DataFrame) -> pd.DataFrame:
        """Models that count grid steps forecast closed slots too; those rows are dropped."""
        cal = self._service_calendar()
        if cal is None or self.service_aware or fc.empty:
            return fc
        is_open = cal.is_open(fc[TIMESTAMP])
        if is_open.all():
            return fc
        self._fallback(
            "closed_slot_forecasts_dropped",
            int((~is_open).sum()),
            f"{int((~is_open).sum())} forecast rows fall in closed hours ({cal.describe()}) and "
            "were dropped; this model's horizon_step counts grid steps, not service steps",
        )
        return fc[is_open].reset_index(drop=True)

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
    return _prepare_blocks(df)[0]


def _prepare_blocks(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """:func:`_prepare`, plus the first row of each series in the returned frame."""
    missing = [c for c in (SERIES_ID, TIMESTAMP, VALUE) if c not in df.columns]
    if missing:
        raise ValueError(
            f"input frame lacks column(s) {missing}; expected series_id, timestamp, value"
        )
    if not pd.api.types.is_datetime64_any_dtype(df[TIMESTAMP]):
        df = df.assign(**{TIMESTAMP: pd.to_datetime(df[TIMESTAMP])})
    from citybrain_ml.data.sorted_frames import series_starts, sorted_series_starts

    # order by (series_id, timestamp), not per column: a sorted multi-series frame is not
    # re-sorted (a sort of a city-scale frame costs more than the forecast)
    starts = sorted_series_starts(df)
    if starts is None:
        df = df.sort_values([SERIES_ID, TIMESTAMP], kind="stable")
        starts = series_starts(df)
    return df.reset_index(drop=True), starts


def _tail(df: pd.DataFrame, n: int) -> pd.DataFrame:
    return df.groupby(SERIES_ID, sort=False).tail(n).reset_index(drop=True)


def infer_freq(df: pd.DataFrame) -> str:
    """Most common step between consecutive timestamps, as a pandas offset alias."""
    steps = df.groupby(SERIES_ID)[TIMESTAMP].diff().dropna()
    if steps.empty:
        raise ValueError("cannot infer frequency: every series has a single timestamp")
    step = steps.mode().iloc[0]
    return pd.tseries.frequencies.to_offset(step).freqstr


def future_index(
    history: pd.DataFrame, horizon: int, freq: str, calendar: ServiceCalendar | None = None
) -> pd.DataFrame:
    """``series_id, timestamp, horizon_step`` for the ``horizon`` steps after each series' end.

    With a ``calendar`` that has closed slots, step ``h`` is the ``h``-th *open* slot.
    """
    last = history.groupby(SERIES_ID, sort=False)[TIMESTAMP].max()
    steps = np.arange(1, horizon + 1)
    sid = np.repeat(last.index.to_numpy(), horizon)
    ts = target_times(last.to_numpy(), horizon, freq, calendar).reshape(-1)
    return pd.DataFrame({SERIES_ID: sid, TIMESTAMP: ts, HORIZON_STEP: np.tile(steps, len(last))})


def target_times(
    origins, horizon: int, freq: str, calendar: ServiceCalendar | None = None
) -> np.ndarray:
    """``(n_origins, horizon)`` target timestamps: grid steps, or open slots under a calendar."""
    if calendar is not None and calendar.has_closed:
        return calendar.target_times(origins, horizon)
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    origins = pd.DatetimeIndex(origins).to_numpy()
    return origins[:, None] + np.arange(1, horizon + 1)[None, :] * step


def service_times(df: pd.DataFrame, calendar: ServiceCalendar | None = None) -> np.ndarray:
    """Sorted unique timestamps in service at which at least one series has a value."""
    observed = df.loc[df[VALUE].notna(), TIMESTAMP]
    times = np.sort(observed.unique())
    if calendar is not None and calendar.has_closed:
        times = times[calendar.is_open(times)]
    return times


def _package_version() -> str:
    from citybrain_ml import __version__

    return __version__


def _takes_covariates(method) -> bool:
    """True when a model's rolling-origin path reads future covariates."""
    import inspect

    return "covariates" in inspect.signature(method).parameters
