"""Classical statistical forecasters on statsmodels: SARIMAX, ETS (one model per series) and VAR.

Design choices, and why
-----------------------
* **One state-space code path.** SARIMAX and ETS both use statsmodels' state-space (Kalman
  filter) classes (``SARIMAX`` and ``statespace.ExponentialSmoothing``). Only the fitted
  parameter vector of each series is stored; forecasting rebuilds the model on the history
  and runs the filter with those parameters. That keeps pickles small, handles missing
  targets natively (the filter skips NaN) and gives one fast rolling-origin path for both.
* **Fast rolling origins without refitting.** :meth:`historical_forecasts` filters each
  series once over the whole evaluation frame and derives every h-step forecast from the
  filtered state at each origin with the state transition
  (``a[t+h|t] = c + T a[t+h-1|t]``, ``y[t+h|t] = d + Z a[t+h|t]``), vectorised over origins.
  This is exactly what statsmodels' own ``forecast`` computes, for ~600 origins at the cost
  of one filter pass per series.
* **Daily seasonality, cheaply.** A seasonal SARIMAX with period 96 (15-min data) has
  about a hundred states or more, and every filter step costs the square of that, so it is
  impractical for hundreds of series. Two cheap routes are offered:
  ``deseasonalize="day"|"week"`` subtracts a per-series time-of-day (or time-of-week) mean
  profile learned on the training data and models the remainder with a low-order ARMA
  (forecast = profile + ARMA forecast of the remainder); ``fourier_terms=K`` adds K
  sine/cosine pairs of period ``season_length`` as deterministic regressors, estimated
  jointly with the ARMA errors. Both keep the state small (no seasonal lags), and the
  future values of both are known, so neither needs future covariates. The profile route
  is the cheap default: learning it is O(n), the ARMA fit on the remainder is as fast as
  a plain ARMA, it captures sharp rush-hour shapes without extra parameters, and the
  forecast reverts to the historical average at long horizons. Fourier terms cost 2K
  extra MLE parameters (a much slower fit) but give a smoother, jointly estimated
  seasonal shape that is less noisy when each time-of-day slot has few observations; on
  SZ-taxi it was the more accurate of the two, though at 15-60 min a plain ARMA(1,1) with
  a constant came close to it and beat the profile route: at such short horizons the
  recent level matters more than the daily shape (``experiments/sz_taxi_statistical.py``).
  A time-of-week profile needs several weeks of history per slot to beat the daily one.
* **Parallel fits under a time budget.** Series are fitted in worker processes (joblib,
  loky backend). The budget is a wall-clock deadline shared by all workers: a series whose
  fit has not started by the deadline, or whose optimiser is still iterating at it, falls
  back to a simple model; so do series whose fit raises or does not converge. The reasons
  are recorded in ``fallback_series_``. The deadline is checked between optimiser
  iterations, so it is soft by one iteration.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import (
    FORECAST_COLUMNS,
    HORIZON_STEP,
    SERIES_ID,
    TIMESTAMP,
    VALUE,
    YHAT,
)
from citybrain_ml.models.base import Forecaster

EXOG_MODES = ("require", "persist")
FALLBACKS = ("seasonal_naive", "last_value")
PROFILE_PERIODS = ("day", "week")


# ====================================================================== shared helpers
def _step(freq: str) -> pd.Timedelta:
    return pd.Timedelta(pd.tseries.frequencies.to_offset(freq))


def _regular(group: pd.DataFrame, freq: str, columns: list[str]) -> pd.DataFrame:
    """One series' rows on a gap-free grid at ``freq`` (missing steps become NaN rows)."""
    frame = group.set_index(TIMESTAMP)[columns]
    if frame.index.has_duplicates:
        dup = frame.index[frame.index.duplicated()][0]
        raise ValueError(
            f"series {group[SERIES_ID].iloc[0]!r} has duplicate timestamp {dup}; "
            "aggregate duplicates before fitting"
        )
    grid = pd.date_range(frame.index[0], frame.index[-1], freq=freq)
    return frame.reindex(grid)


def _series_grids(df: pd.DataFrame, freq: str, columns: list[str]) -> dict:
    """``series_id -> regular-grid frame`` for every series in ``df`` (order preserved)."""
    return {
        sid: _regular(group, freq, columns)
        for sid, group in df.groupby(SERIES_ID, sort=False, observed=True)
    }


def _ffill(values: np.ndarray) -> np.ndarray:
    """Forward-fill NaN along axis 0 (uses only past values, so no leakage)."""
    return pd.DataFrame(values).ffill().to_numpy()


def _forecast_frame(sid, grid_index, positions, yhat, freq) -> pd.DataFrame:
    """Long forecast rows for origins at ``positions`` of ``grid_index``; yhat is (n, H)."""
    n, horizon = yhat.shape
    steps = np.tile(np.arange(1, horizon + 1), n)
    origin = np.repeat(grid_index[positions].to_numpy(), horizon)
    return pd.DataFrame(
        {
            SERIES_ID: np.repeat(np.array([sid], dtype=object), n * horizon),
            TIMESTAMP: origin + steps * _step(freq),
            HORIZON_STEP: steps,
            YHAT: yhat.ravel(),
            "origin": origin,
        }
    )


def _target_times(index: pd.DatetimeIndex, positions, horizon: int, freq: str) -> pd.DatetimeIndex:
    """Target timestamps (flattened origin-major) of ``horizon`` steps from each position."""
    origin = index.to_numpy()[positions][:, None]
    return pd.DatetimeIndex((origin + np.arange(1, horizon + 1) * _step(freq)).ravel())


def _origin_positions(grid_index: pd.DatetimeIndex, origins) -> tuple[np.ndarray, np.ndarray]:
    """Grid positions of the last timestamp at or before each origin (-1: none)."""
    pos = grid_index.searchsorted(pd.DatetimeIndex(origins), side="right") - 1
    return pos, pos >= 0


def _concat(frames: list[pd.DataFrame], with_origin: bool) -> pd.DataFrame:
    columns = [*FORECAST_COLUMNS, "origin"] if with_origin else FORECAST_COLUMNS
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def naive_forecasts(values, positions, horizon: int, season_length: int | None) -> np.ndarray:
    """Seasonal-naive (or last-value when ``season_length`` is None) forecasts.

    Parameters
    ----------
    values : ndarray
        One series on its regular grid; NaN are filled forward first.
    positions : ndarray of int
        Origin positions in ``values``.
    horizon : int
        Steps ahead.
    season_length : int, optional
        Season in steps; None gives persistence of the last observed value.

    Returns
    -------
    ndarray of shape (len(positions), horizon)
    """
    filled = _ffill(np.asarray(values, dtype=float)[:, None])[:, 0]
    steps = np.arange(1, horizon + 1)
    if season_length:
        m = int(season_length)
        source = positions[:, None] + steps - m * np.ceil(steps / m).astype(int)
    else:
        source = np.repeat(positions[:, None], horizon, axis=1)
    out = filled[np.clip(source, 0, None)]
    return np.where(source >= 0, out, np.nan)


# ---------------------------------------------------------------- seasonal profiles
def _slot(index: pd.DatetimeIndex, period: str) -> np.ndarray:
    """Seconds since the start of the day (or week) for each timestamp."""
    seconds = index.hour * 3600 + index.minute * 60 + index.second
    if period == "week":
        seconds = seconds + index.dayofweek * 86400
    return np.asarray(seconds)


@dataclass
class SeasonalProfile:
    """Mean value per time-of-day/time-of-week slot of one series (training data only).

    Slots never seen in training use the series mean.
    """

    period: str
    slots: np.ndarray
    means: np.ndarray
    overall: float

    @classmethod
    def learn(cls, grid: pd.Series, period: str) -> SeasonalProfile:
        obs = grid.dropna()
        means = obs.groupby(_slot(obs.index, period)).mean()
        return cls(period, means.index.to_numpy(), means.to_numpy(), float(obs.mean()))

    def at(self, index: pd.DatetimeIndex) -> np.ndarray:
        """Profile value at each timestamp."""
        lookup = pd.Series(self.means, index=self.slots)
        vals = lookup.reindex(_slot(index, self.period)).to_numpy(dtype=float)
        return np.where(np.isnan(vals), self.overall, vals)


# ---------------------------------------------------------------- parallel fitting
def _one_blas_thread():
    """Limit BLAS to one thread while filtering.

    The Kalman filter multiplies tiny matrices; threaded BLAS on them spends its time
    synchronising threads (an order of magnitude slower on a busy machine) and
    oversubscribes the cores already used by the worker processes.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


class _BudgetExceeded(Exception):
    """Raised from the optimiser callback when the shared deadline has passed."""


def _fit_guarded(task) -> tuple:
    """Fit one series in a worker; never raises, returns ``(sid, params, reason)``."""
    sid, fit_one, payload, deadline = task
    if deadline is not None and time.time() >= deadline:
        return sid, None, "time budget exhausted before its fit started"

    def callback(*_):
        if deadline is not None and time.time() >= deadline:
            raise _BudgetExceeded

    try:
        with _one_blas_thread():
            return sid, fit_one(payload, callback), None
    except _BudgetExceeded:
        return sid, None, "time budget exhausted during its fit"
    except Exception as exc:  # any statsmodels/numpy failure -> fallback, with the reason
        return sid, None, f"fit failed: {type(exc).__name__}: {exc}"


def fit_in_parallel(fit_one, payloads: dict, n_jobs: int, time_budget_s: float | None):
    """Fit one model per series in worker processes under a shared wall-clock budget.

    Parameters
    ----------
    fit_one : callable
        Module-level (picklable) ``fit_one(payload, callback) -> params``; it must pass
        ``callback`` to the optimiser and raise on non-convergence.
    payloads : dict
        ``series_id -> payload`` (small picklable data: arrays and a spec).
    n_jobs : int
        Worker processes; 1 fits in this process.
    time_budget_s : float, optional
        Total wall-clock seconds for all fits; None means no limit.

    Returns
    -------
    params : dict
        ``series_id -> fitted parameter vector`` for the series that succeeded.
    failures : dict
        ``series_id -> reason`` for the series that must fall back.
    """
    from joblib import Parallel, delayed

    deadline = None if time_budget_s is None else time.time() + float(time_budget_s)
    tasks = [(sid, fit_one, payload, deadline) for sid, payload in payloads.items()]
    if int(n_jobs) == 1 or len(tasks) == 1:
        results = [_fit_guarded(task) for task in tasks]
    else:
        try:
            results = Parallel(n_jobs=int(n_jobs), backend="loky")(
                delayed(_fit_guarded)(task) for task in tasks
            )
        except Exception as exc:  # a crashed worker pool: finish in-process, same deadline
            warnings.warn(
                f"parallel fitting failed ({type(exc).__name__}: {exc}); fitting in-process",
                RuntimeWarning,
                stacklevel=2,
            )
            results = [_fit_guarded(task) for task in tasks]
    params = {sid: p for sid, p, reason in results if reason is None}
    failures = {sid: reason for sid, _, reason in results if reason is not None}
    return params, failures


def _mle_fit(model, callback, fit_kwargs: dict) -> np.ndarray:
    """MLE fit with the budget callback; raise when it did not converge or is not finite."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    kwargs = {"disp": False, "maxiter": 200, **(fit_kwargs or {})}
    with warnings.catch_warnings():
        # non-convergence is read from mle_retvals below; start-param warnings are noise
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        res = model.fit(callback=callback, **kwargs)
    if not res.mle_retvals.get("converged", True):
        raise RuntimeError(f"optimiser did not converge in {kwargs['maxiter']} iterations")
    params = np.asarray(res.params, dtype=float)
    if not np.all(np.isfinite(params)) or not np.isfinite(res.llf):
        raise RuntimeError("non-finite parameters or log-likelihood")
    return params


# ---------------------------------------------------------------- state-space forecasts
def _lean_filter_flags() -> int:
    from statsmodels.tsa.statespace import kalman_filter as kf

    return (
        kf.MEMORY_NO_FORECAST_COV
        | kf.MEMORY_NO_PREDICTED_COV
        | kf.MEMORY_NO_FILTERED_COV
        | kf.MEMORY_NO_GAIN
        | kf.MEMORY_NO_SMOOTHING
        | kf.MEMORY_NO_STD_FORECAST
    )


def _at(matrix: np.ndarray, t: np.ndarray, base_ndim: int) -> np.ndarray:
    """A system matrix at times ``t``: stacked on the last axis if time-varying."""
    if matrix.ndim > base_ndim:
        return matrix[..., t]
    return matrix[..., None]


def _apply(matrix: np.ndarray, state: np.ndarray) -> np.ndarray:
    # matrix (r, k, n) times a batch of states (k, n) -> (r, n)
    return np.einsum("rkn,kn->rn", matrix, state)


def state_space_forecasts(results, positions: np.ndarray, horizon: int) -> np.ndarray:
    """h-step forecasts from the filtered state at each origin position.

    Parameters
    ----------
    results : statsmodels MLEResults
        Output of ``model.filter(params)``; the model's data must extend ``horizon`` steps
        past the last origin (pad the endog with NaN) so time-varying intercepts exist.
    positions : ndarray of int
        Origin positions (0-based) in the filtered data.
    horizon : int
        Steps ahead.

    Returns
    -------
    ndarray (len(positions), horizon)
        ``y[o+h | data up to o]`` -- identical to statsmodels' ``forecast`` from each origin.
    """
    ssm = results.model.ssm
    design, obs_int = ssm["design"], ssm["obs_intercept"]
    transition, state_int = ssm["transition"], ssm["state_intercept"]
    n = len(positions)
    # predicted_state[:, t] is a[t | t-1], so column o + 1 is the one-step state from origin o
    state = results.filter_results.predicted_state[:, positions + 1]
    out = np.empty((n, horizon))
    for h in range(1, horizon + 1):
        t = positions + h
        z = np.broadcast_to(_at(design, t, 2), (*design.shape[:2], n))
        d = np.broadcast_to(_at(obs_int, t, 1), (obs_int.shape[0], n))
        out[:, h - 1] = (_apply(z, state) + d)[0]
        tr = np.broadcast_to(_at(transition, t, 2), (*transition.shape[:2], n))
        c = np.broadcast_to(_at(state_int, t, 1), (state_int.shape[0], n))
        state = c + _apply(tr, state)
    return out


# ====================================================================== per-series base
class _PerSeriesStateSpace(Forecaster):
    """Shared machinery: one state-space model per series, parallel fit, fast origins.

    Subclasses provide ``_fit_function`` (module-level fit), ``_spec`` (picklable model
    description) and ``_build`` (model from endog/exog); exogenous handling is optional.
    """

    def _season(self) -> int | None:
        return int(self.season_length) if self.season_length else None

    def _history_to_keep(self) -> int:
        # long enough for the filter to forget its initialisation and for the fallback
        return max(500, 4 * (self._season() or 0))

    def _check_common(self) -> None:
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {self.fallback!r}")
        if self.deseasonalize not in (None, *PROFILE_PERIODS):
            raise ValueError(
                f"deseasonalize must be None, 'day' or 'week', got {self.deseasonalize!r}"
            )

    # ------------------------------------------------------------ columns and transforms
    def _exog_columns(self) -> list[str]:
        return []

    def _exog_matrix(self, grid: pd.DataFrame, sid) -> np.ndarray | None:
        return None

    def _target(self, sid, grid: pd.DataFrame) -> np.ndarray:
        """Endogenous values the model sees: the remainder after the profile, if any."""
        y = grid[VALUE].to_numpy(dtype=float)
        if self.deseasonalize and sid in self.profiles_:
            y = y - self.profiles_[sid].at(grid.index)
        return y

    def _add_profile(self, sid, targets: pd.DatetimeIndex, yhat: np.ndarray) -> np.ndarray:
        if self.deseasonalize and sid in self.profiles_:
            return yhat + self.profiles_[sid].at(targets).reshape(yhat.shape)
        return yhat

    # ------------------------------------------------------------ fit
    def _fit(self, df: pd.DataFrame) -> None:
        self._check_common()
        grids = _series_grids(df, self.freq_, [VALUE, *self._exog_columns()])
        self.train_start_ = {sid: g.index[0] for sid, g in grids.items()}
        self.profiles_ = {}
        if self.deseasonalize:
            for sid, g in grids.items():
                if g[VALUE].notna().any():
                    self.profiles_[sid] = SeasonalProfile.learn(g[VALUE], self.deseasonalize)
        payloads, short = {}, {}
        for sid, g in grids.items():
            n_obs = int(g[VALUE].notna().sum())
            if n_obs < self._min_observations():
                short[sid] = f"too few observations to fit ({n_obs} < {self._min_observations()})"
                continue
            exog = self._exog_matrix(g, sid)
            payloads[sid] = (self._spec(), self._target(sid, g), exog, dict(self.fit_kwargs or {}))
        started = time.perf_counter()
        params, failures = fit_in_parallel(
            self._fit_function(), payloads, self.n_jobs, self.time_budget_s
        )
        self.fit_seconds_ = time.perf_counter() - started
        self.params_ = params
        self.fallback_series_ = {**short, **failures}

    def _min_observations(self) -> int:
        return 10

    # ------------------------------------------------------------ predict
    def _predict(self, history: pd.DataFrame, horizon: int, covariates) -> pd.DataFrame:
        grids = _series_grids(history, self.freq_, [VALUE, *self._exog_columns()])
        frames = []
        with _one_blas_thread():
            for sid, grid in grids.items():
                future = self._future_exog(sid, grid, horizon, covariates)
                pos = np.array([len(grid) - 1])
                frames.append(self._series_forecasts(sid, grid, pos, horizon, future))
        return _concat(frames, with_origin=False)

    def _predict_origins(
        self, df: pd.DataFrame, origins, horizon: int, covariates: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """One filter pass per series over ``df``; forecasts from every origin (no refit).

        ``covariates`` (models with exog only) give exog values at target times per origin;
        see :meth:`SARIMAXForecaster.historical_forecasts`.
        """
        grids = _series_grids(df, self.freq_, [VALUE, *self._exog_columns()])
        frames = []
        with _one_blas_thread():
            for sid, grid in grids.items():
                pos, ok = _origin_positions(grid.index, origins)
                pos = np.unique(pos[ok])
                if len(pos):
                    given = self._origin_exog(sid, grid, pos, horizon, covariates)
                    frames.append(self._series_forecasts(sid, grid, pos, horizon, None, given))
        return _concat(frames, with_origin=True)

    def _origin_exog(self, sid, grid, positions, horizon, covariates):
        """Exog at the target times of each origin, (n, horizon, k) with NaN where not given."""
        return None

    def _future_exog(self, sid, grid, horizon, covariates):
        return None

    def _series_forecasts(
        self, sid, grid, positions, horizon, future_exog, origin_exog=None
    ) -> pd.DataFrame:
        """Forecast rows for one series from each origin position of its grid."""
        if sid in getattr(self, "params_", {}):
            yhat = self._model_forecasts(sid, grid, positions, horizon, future_exog, origin_exog)
        else:
            season = self._season() if self.fallback == "seasonal_naive" else None
            yhat = naive_forecasts(grid[VALUE].to_numpy(), positions, horizon, season)
        return _forecast_frame(sid, grid.index, positions, yhat, self.freq_)

    def _model_forecasts(
        self, sid, grid, positions, horizon, future_exog, origin_exog=None
    ) -> np.ndarray:
        endog = np.concatenate([self._target(sid, grid), np.full(horizon, np.nan)])
        exog = self._padded_exog(sid, grid, horizon, future_exog)
        offset = int(round((grid.index[0] - self.train_start_[sid]) / _step(self.freq_))) + 1
        model = self._build(self._spec(), endog, exog, offset)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # only the predicted state means are read: skip storing covariances/gains,
            # which for a seasonal ETS (k ~ 100 states) would take hundreds of MB
            results = model.filter(self.params_[sid], conserve_memory=_lean_filter_flags())
        raw = state_space_forecasts(results, positions, horizon)
        given = future_exog is not None
        yhat = self._exog_adjustment(sid, len(grid), exog, positions, raw, given)
        if origin_exog is not None:
            yhat = self._given_exog_adjustment(sid, exog, positions, raw, yhat, origin_exog)
        return self._add_profile(
            sid, _target_times(grid.index, positions, horizon, self.freq_), yhat
        )

    def _padded_exog(self, sid, grid, horizon, future_exog):
        return None

    def _exog_adjustment(self, sid, n_grid, exog, positions, yhat, given_future):
        return yhat

    def _given_exog_adjustment(self, sid, exog, positions, raw, yhat, origin_exog):
        return yhat


# ====================================================================== SARIMAX
@dataclass(frozen=True)
class _SarimaxSpec:
    order: tuple
    seasonal_order: tuple
    trend: str | None


def _build_sarimax(spec: _SarimaxSpec, endog, exog, trend_offset: int = 1):
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    return SARIMAX(
        endog,
        exog=exog,
        order=spec.order,
        seasonal_order=spec.seasonal_order,
        trend=spec.trend,
        trend_offset=trend_offset,
    )


def _fit_sarimax(payload, callback) -> np.ndarray:
    spec, endog, exog, fit_kwargs = payload
    return _mle_fit(_build_sarimax(spec, endog, exog), callback, fit_kwargs)


class SARIMAXForecaster(_PerSeriesStateSpace):
    """One statsmodels SARIMAX per series, fitted in parallel under a time budget.

    Parameters
    ----------
    order : tuple
        ``(p, d, q)`` of the ARIMA part.
    seasonal_order : tuple
        ``(P, D, Q, s)``; long seasons (s = 96 at 15 min) are very slow -- prefer
        ``deseasonalize`` or ``fourier_terms``.
    trend : str, optional
        statsmodels trend ('n', 'c', 't', 'ct'); None = no trend term.
    exog : list of str, optional
        Covariate columns of the history frame used as regressors (regression with ARIMA
        errors). Their future values come from ``covariates`` in :meth:`predict`. In
        :meth:`historical_forecasts`, ``covariates`` (``series_id, timestamp`` + the exog
        columns, optionally ``origin`` for an archive of forecasts issued at each origin)
        give the values at the target times they cover; other targets use the evaluation
        frame's values (``"require"``) or the origin's (``"persist"``). The regression
        part is linear, so swapping exog values after the filter pass is exact.
    exog_future : {"require", "persist"}
        What to do without future covariates: ``"require"`` raises; ``"persist"`` holds
        the last observed exog values (also in :meth:`historical_forecasts`). The mode
        actually used by the last prediction is in ``exog_source_``.
    deseasonalize : {"day", "week"}, optional
        Subtract a per-series time-of-day/-week mean profile learned on the training data
        and model the remainder (see module notes).
    fourier_terms : int
        Number of sine/cosine pairs of period ``season_length`` added as regressors.
    season_length : int, optional
        Season in steps (96 = one day at 15 min); used by ``fourier_terms`` and the
        seasonal-naive fallback.
    fallback : {"seasonal_naive", "last_value"}
        Model for series whose fit fails, does not converge or misses the budget (and for
        series unseen in training); seasonal naive needs ``season_length``, without it
        the last value is repeated.
    n_jobs : int
        Worker processes for fitting.
    time_budget_s : float, optional
        Wall-clock budget for fitting all series (per ``fit``; calibration refits once more).
    fit_kwargs : dict, optional
        Extra arguments to statsmodels ``fit`` (default ``maxiter=200``).
    horizon, calibration_steps : see :class:`~citybrain_ml.models.baselines.LastValue`.

    Attributes
    ----------
    params_ : dict
        ``series_id -> fitted parameter vector`` (statsmodels order, ``param_names_``).
    fallback_series_ : dict
        ``series_id -> reason`` for every series forecast by the fallback model.
    exog_source_ : str
        ``"none"``, ``"covariates"`` or ``"persisted"`` -- exog used by the last forecast.
    """

    def __init__(
        self,
        order: tuple = (1, 0, 1),
        seasonal_order: tuple = (0, 0, 0, 0),
        trend: str | None = None,
        exog: list[str] | None = None,
        exog_future: str = "require",
        deseasonalize: str | None = None,
        fourier_terms: int = 0,
        season_length: int | None = None,
        fallback: str = "seasonal_naive",
        n_jobs: int = 2,
        time_budget_s: float | None = None,
        fit_kwargs: dict | None = None,
        horizon: int = 12,
        calibration_steps: int | None = None,
    ):
        self.order = order
        self.seasonal_order = seasonal_order
        self.trend = trend
        self.exog = exog
        self.exog_future = exog_future
        self.deseasonalize = deseasonalize
        self.fourier_terms = fourier_terms
        self.season_length = season_length
        self.fallback = fallback
        self.n_jobs = n_jobs
        self.time_budget_s = time_budget_s
        self.fit_kwargs = fit_kwargs
        self.horizon = horizon
        self.calibration_steps = calibration_steps

    # ------------------------------------------------------------ spec / build
    def _spec(self) -> _SarimaxSpec:
        return _SarimaxSpec(tuple(self.order), tuple(self.seasonal_order), self.trend)

    def _fit_function(self):
        return _fit_sarimax

    def _build(self, spec, endog, exog, offset):
        return _build_sarimax(spec, endog, exog, offset)

    def _fit(self, df: pd.DataFrame) -> None:
        self._check_exog_params(df)
        super()._fit(df)
        # names/positions of the parameters, from a throw-away model of the same spec
        k = len(self._exog_columns()) + 2 * int(self.fourier_terms)
        noise = np.random.default_rng(0).normal(size=(50, k)) if k else None
        template = _build_sarimax(self._spec(), np.zeros(50), noise)
        self.param_names_ = list(template.param_names)
        self.k_trend_ = int(template.k_trend)
        self.exog_source_ = "none"

    def _check_exog_params(self, df: pd.DataFrame) -> None:
        if self.exog_future not in EXOG_MODES:
            raise ValueError(f"exog_future must be one of {EXOG_MODES}, got {self.exog_future!r}")
        missing = [c for c in self._exog_columns() if c not in df.columns]
        if missing:
            raise ValueError(f"exog column(s) {missing} not in the training frame")
        if self.fourier_terms and not self.season_length:
            raise ValueError("fourier_terms needs season_length (steps per season)")

    # ------------------------------------------------------------ exogenous regressors
    def _exog_columns(self) -> list[str]:
        return list(self.exog or [])

    def _fourier(self, index: pd.DatetimeIndex) -> np.ndarray:
        """K sine/cosine pairs of period ``season_length``, phase fixed to the epoch."""
        k = int(self.fourier_terms)
        # whole steps since the epoch (resolution-independent), so every window agrees
        t = np.asarray((index - pd.Timestamp(0)) // _step(self.freq_), dtype=float)[:, None]
        angle = 2 * np.pi * t * np.arange(1, k + 1) / int(self.season_length)
        return np.hstack([np.sin(angle), np.cos(angle)])

    def _design(self, user: np.ndarray | None, index: pd.DatetimeIndex) -> np.ndarray | None:
        parts = [] if user is None else [user]
        if self.fourier_terms:
            parts.append(self._fourier(index))
        return np.hstack(parts) if parts else None

    def _user_exog(self, grid: pd.DataFrame, sid) -> np.ndarray | None:
        cols = self._exog_columns()
        if not cols:
            return None
        values = grid[cols].to_numpy(dtype=float)
        bad = np.isnan(values)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"exog column {cols[col]!r} of series {sid!r} is missing at {grid.index[row]} "
                f"({int(bad.sum())} missing values, gaps in the timestamps included); "
                "fill covariates before fitting or forecasting"
            )
        return values

    def _exog_matrix(self, grid: pd.DataFrame, sid) -> np.ndarray | None:
        return self._design(self._user_exog(grid, sid), grid.index)

    def _future_exog(self, sid, grid, horizon, covariates):
        """Future user-exog rows (horizon, k) from ``covariates``, or None to persist."""
        cols = self._exog_columns()
        if not cols:
            self.exog_source_ = "none"
            return None
        if covariates is None:
            if self.exog_future == "persist":
                self.exog_source_ = "persisted"
                return None
            raise ValueError(
                f"SARIMAXForecaster uses exog {cols}: pass covariates= with columns "
                f"series_id, timestamp, {', '.join(cols)} for the {horizon} future steps, "
                "or build the model with exog_future='persist' to hold the last values"
            )
        self.exog_source_ = "covariates"
        targets = grid.index[-1] + np.arange(1, horizon + 1) * _step(self.freq_)
        return self._covariate_rows(covariates, sid, pd.DatetimeIndex(targets), cols)

    @staticmethod
    def _covariate_rows(covariates: pd.DataFrame, sid, targets, cols) -> np.ndarray:
        missing_cols = [c for c in (SERIES_ID, TIMESTAMP, *cols) if c not in covariates.columns]
        if missing_cols:
            raise ValueError(f"covariates frame lacks column(s) {missing_cols}")
        rows = covariates[covariates[SERIES_ID] == sid]
        rows = rows.set_index(pd.to_datetime(rows[TIMESTAMP]))[cols]
        future = rows.reindex(targets)
        if future.isna().any().any():
            gap = future.index[future.isna().any(axis=1)][0]
            raise ValueError(
                f"covariates lack {cols} for series {sid!r} at {gap} "
                f"(needed for every step {targets[0]} .. {targets[-1]})"
            )
        return future.to_numpy(dtype=float)

    def _padded_exog(self, sid, grid, horizon, future_exog):
        user = self._user_exog(grid, sid)
        targets = grid.index[-1] + np.arange(1, horizon + 1) * _step(self.freq_)
        full_index = grid.index.append(pd.DatetimeIndex(targets))
        if user is not None:
            # beyond the grid: the given future rows, else the last row (persist mode);
            # in require mode rows past the frame are marked unknown after forecasting
            pad = future_exog if future_exog is not None else np.repeat(user[-1:], horizon, 0)
            user = np.vstack([user, pad])
        return self._design(user, full_index)

    def _exog_adjustment(self, sid, n_grid, exog, positions, yhat, given_future):
        """Persist mode: swap the future exog effect for the one at each origin.

        The filtered forecast used exog at each target step; in persist mode the forecast
        must use the exog at the origin instead. The regression part is linear
        (``d_t = x_t' beta``), so the swap is exact.
        """
        cols = self._exog_columns()
        if not cols:
            return yhat
        k = len(cols)
        beta = self.params_[sid][self._exog_param_slice(k)]
        user = exog[:, :k]
        targets = positions[:, None] + np.arange(1, yhat.shape[1] + 1)
        if given_future:
            return yhat
        if self.exog_future == "persist":
            return yhat + (user[positions][:, None, :] - user[targets]) @ beta
        # require mode: targets past the frame have no known exog values
        return np.where(targets >= n_grid, np.nan, yhat)

    def _exog_param_slice(self, k: int) -> slice:
        # statsmodels SARIMAX orders parameters: trend terms, then exog coefficients
        return slice(self.k_trend_, self.k_trend_ + k)

    def _predict_origins(self, df, origins, horizon, covariates=None):
        cols = self._exog_columns()
        if cols:
            missing = [c for c in cols if c not in df.columns]
            if missing:
                raise ValueError(f"historical_forecasts frame lacks exog column(s) {missing}")
            self.exog_source_ = "persisted" if self.exog_future == "persist" else "covariates"
        if not cols:
            covariates = None  # nothing to read: history-only, like the other models
        if covariates is not None:
            lacking = [c for c in (SERIES_ID, TIMESTAMP, *cols) if c not in covariates.columns]
            if lacking:
                raise ValueError(f"covariates frame lacks column(s) {lacking}")
            self.exog_source_ = "covariates"
        return super()._predict_origins(df, origins, horizon, covariates)

    def _origin_exog(self, sid, grid, positions, horizon, covariates):
        if covariates is None:
            return None
        cols = self._exog_columns()
        rows = covariates[covariates[SERIES_ID] == sid]
        times = pd.to_datetime(rows[TIMESTAMP])
        targets = _target_times(grid.index, positions, horizon, self.freq_)
        if "origin" in rows.columns:
            key = pd.MultiIndex.from_arrays([pd.to_datetime(rows["origin"]), times])
            want = pd.MultiIndex.from_arrays([np.repeat(grid.index[positions], horizon), targets])
        else:
            key, want = pd.DatetimeIndex(times), targets
        table = rows[cols].set_axis(key)
        if not table.index.is_unique:
            raise ValueError(
                f"covariates hold duplicate rows for series {sid!r} "
                "(one row per timestamp, or per origin and timestamp with an origin column)"
            )
        values = table.reindex(want).to_numpy(dtype=float)
        return values.reshape(len(positions), horizon, len(cols))

    def _given_exog_adjustment(self, sid, exog, positions, raw, yhat, origin_exog):
        """Swap the exog effect at covered targets for the given values (exact: linear)."""
        k = len(self._exog_columns())
        beta = self.params_[sid][self._exog_param_slice(k)]
        targets = positions[:, None] + np.arange(1, raw.shape[1] + 1)
        used = exog[:, :k][targets]  # what the filter's forecast used at each target
        covered = ~np.isnan(origin_exog).any(axis=2)
        given = np.where(covered[..., None], origin_exog, used)
        return np.where(covered, raw + (given - used) @ beta, yhat)


# ====================================================================== ETS
@dataclass(frozen=True)
class _EtsSpec:
    trend: bool
    damped_trend: bool
    seasonal: int | None


def _build_ets(spec: _EtsSpec, endog, exog=None, trend_offset: int = 1):
    from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing

    # "heuristic" initial states come from the first seasons of whatever window is
    # filtered, so the fitted parameters apply to any history window (see ETSForecaster)
    return ExponentialSmoothing(
        endog,
        trend=spec.trend,
        damped_trend=spec.damped_trend,
        seasonal=spec.seasonal,
        initialization_method="heuristic",
    )


def _fit_ets(payload, callback) -> np.ndarray:
    spec, endog, _, fit_kwargs = payload
    return _mle_fit(_build_ets(spec, endog), callback, fit_kwargs)


class ETSForecaster(_PerSeriesStateSpace):
    """Additive exponential smoothing (ETS) per series, in state-space form.

    Uses statsmodels' ``statespace.ExponentialSmoothing`` (linear Gaussian ETS) so fitting,
    the time budget, fallbacks, missing values and the fast rolling-origin path are shared
    with :class:`SARIMAXForecaster`. Multiplicative components are not offered: the Kalman
    form is linear (model ``log(value)`` upstream instead). Initial states are set by the
    heuristic from the first seasons of each filtered window rather than estimated, so the
    fitted smoothing parameters transfer to any history window without leaking later data.

    Parameters
    ----------
    trend : {None, "add"}
        Additive trend component.
    damped_trend : bool
        Damp the trend (needs ``trend="add"``).
    seasonal : {None, "add"}
        Additive seasonal component of period ``season_length`` (one state per season
        step: 96 at 15 min is slow -- prefer ``deseasonalize="day"``).
    season_length : int, optional
        Season in steps; also used by the seasonal-naive fallback.
    deseasonalize : {"day", "week"}, optional
        Subtract a per-series time-of-day/-week mean profile before smoothing.
    fallback, n_jobs, time_budget_s, fit_kwargs, horizon, calibration_steps :
        As in :class:`SARIMAXForecaster`.

    Attributes
    ----------
    params_, fallback_series_ : as in :class:`SARIMAXForecaster`.
    """

    def __init__(
        self,
        trend: str | None = None,
        damped_trend: bool = False,
        seasonal: str | None = None,
        season_length: int | None = None,
        deseasonalize: str | None = None,
        fallback: str = "seasonal_naive",
        n_jobs: int = 2,
        time_budget_s: float | None = None,
        fit_kwargs: dict | None = None,
        horizon: int = 12,
        calibration_steps: int | None = None,
    ):
        self.trend = trend
        self.damped_trend = damped_trend
        self.seasonal = seasonal
        self.season_length = season_length
        self.deseasonalize = deseasonalize
        self.fallback = fallback
        self.n_jobs = n_jobs
        self.time_budget_s = time_budget_s
        self.fit_kwargs = fit_kwargs
        self.horizon = horizon
        self.calibration_steps = calibration_steps

    def _spec(self) -> _EtsSpec:
        for name in ("trend", "seasonal"):
            value = getattr(self, name)
            if value not in (None, "add"):
                raise ValueError(
                    f"ETSForecaster {name} must be None or 'add', got {value!r} "
                    "(multiplicative components: model log(value) instead)"
                )
        if self.damped_trend and self.trend is None:
            raise ValueError("damped_trend=True needs trend='add'")
        if self.seasonal and not self.season_length:
            raise ValueError("seasonal='add' needs season_length (steps per season)")
        season = int(self.season_length) if self.seasonal else None
        return _EtsSpec(self.trend == "add", bool(self.damped_trend), season)

    def _fit_function(self):
        return _fit_ets

    def _build(self, spec, endog, exog, offset):
        return _build_ets(spec, endog)

    def _min_observations(self) -> int:
        # the heuristic initialisation needs a few full seasons
        return max(10, 4 * int(self.season_length)) if self.seasonal else 10


# ====================================================================== VAR
class VARForecaster(Forecaster):
    """Vector autoregression over a small set of series fitted jointly (statsmodels VAR).

    Missing values: inside the training data they are filled by linear interpolation
    (both directions at the ends) -- the VAR least-squares fit needs complete rows and a
    few interpolated points barely move it; the count is kept in ``n_interpolated_``. At
    forecast time the lag window is filled forward (past values only, so no leakage).

    Parameters
    ----------
    maxlags : int
        Largest lag order considered.
    ic : {"aic", "bic", "hqic", "fpe"} or None
        Information criterion picking the lag order up to ``maxlags``; None uses ``maxlags``.
    trend : {"c", "n"}
        Constant or no deterministic term.
    max_series : int
        Refuse more series than this (a VAR has ``k^2 * p`` coefficients).
    deseasonalize : {"day", "week"}, optional
        Subtract per-series time-of-day/-week mean profiles before fitting.
    horizon, calibration_steps : see :class:`~citybrain_ml.models.baselines.LastValue`.

    Attributes
    ----------
    coefs_ : ndarray (k_ar, k, k)
        Lag coefficient matrices.
    intercept_ : ndarray (k,)
    k_ar_ : int
        Selected lag order.
    columns_ : list
        Series order of the coefficient matrices.
    """

    def __init__(
        self,
        maxlags: int = 4,
        ic: str | None = "aic",
        trend: str = "c",
        max_series: int = 30,
        deseasonalize: str | None = None,
        horizon: int = 12,
        calibration_steps: int | None = None,
    ):
        self.maxlags = maxlags
        self.ic = ic
        self.trend = trend
        self.max_series = max_series
        self.deseasonalize = deseasonalize
        self.horizon = horizon
        self.calibration_steps = calibration_steps

    def _history_to_keep(self) -> int:
        # lags plus room to fill forward over short gaps
        return 4 * int(self.maxlags) + 96

    def _wide(self, df: pd.DataFrame) -> pd.DataFrame:
        wide = df.pivot(index=TIMESTAMP, columns=SERIES_ID, values=VALUE)
        grid = pd.date_range(wide.index[0], wide.index[-1], freq=self.freq_)
        return wide.reindex(grid)

    def _remainder(self, wide: pd.DataFrame) -> pd.DataFrame:
        if not self.deseasonalize:
            return wide
        prof = {sid: self.profiles_[sid].at(wide.index) for sid in wide.columns}
        return wide - pd.DataFrame(prof, index=wide.index)

    def _fit(self, df: pd.DataFrame) -> None:
        from statsmodels.tsa.api import VAR

        if self.deseasonalize not in (None, *PROFILE_PERIODS):
            raise ValueError(
                f"deseasonalize must be None, 'day' or 'week', got {self.deseasonalize!r}"
            )
        wide = self._wide(df)
        k = wide.shape[1]
        if k > int(self.max_series):
            raise ValueError(
                f"VARForecaster fits all series jointly and is limited to max_series="
                f"{self.max_series}; got {k} series (select a subset or raise max_series)"
            )
        if k < 2:
            raise ValueError("VARForecaster needs at least 2 series; use SARIMAXForecaster")
        empty = [sid for sid in wide.columns if wide[sid].notna().sum() < 2]
        if empty:
            raise ValueError(f"series {empty} have fewer than 2 observed values; drop them")
        self.profiles_ = {
            sid: SeasonalProfile.learn(wide[sid], self.deseasonalize)
            for sid in wide.columns
            if self.deseasonalize
        }
        remainder = self._remainder(wide)
        self.n_interpolated_ = int(remainder.isna().sum().sum())
        filled = remainder.interpolate(method="linear", limit_direction="both")
        flat = [sid for sid in filled.columns if filled[sid].std() == 0]
        if flat:
            raise ValueError(f"series {flat} are constant; a VAR cannot be fitted with them")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = VAR(filled.to_numpy()).fit(
                maxlags=int(self.maxlags), ic=self.ic, trend=self.trend
            )
        self.columns_ = list(wide.columns)
        self.k_ar_ = int(res.k_ar)
        self.coefs_ = np.asarray(res.coefs, dtype=float).reshape(self.k_ar_, k, k)
        self.intercept_ = (
            np.asarray(res.params[0], dtype=float) if self.trend == "c" else np.zeros(k)
        )

    def _forecast(self, values: np.ndarray, positions: np.ndarray, horizon: int) -> np.ndarray:
        """VAR recursion from each origin; ``values`` (T, k) -> forecasts (n, H, k)."""
        filled = _ffill(values)
        p, k = self.k_ar_, len(self.columns_)
        # lags[i] is y[t - i] for every origin t, shape (n, k); too-early origins give NaN
        lags = [
            np.where((positions - i >= 0)[:, None], filled[np.clip(positions - i, 0, None)], np.nan)
            for i in range(p)
        ]
        out = np.empty((len(positions), horizon, k))
        for h in range(horizon):
            y = np.broadcast_to(self.intercept_, (len(positions), k)).copy()
            for i in range(p):
                y += lags[i] @ self.coefs_[i].T
            out[:, h] = y
            lags = [y, *lags[:-1]] if p else lags
        return out

    def _origins_frame(self, wide: pd.DataFrame, positions: np.ndarray, horizon: int):
        missing = [sid for sid in self.columns_ if sid not in wide.columns]
        if missing:
            raise ValueError(f"VAR history lacks series {missing} (all fitted series are needed)")
        wide = wide[self.columns_]
        yhat = self._forecast(self._remainder(wide).to_numpy(dtype=float), positions, horizon)
        targets = _target_times(wide.index, positions, horizon, self.freq_)
        frames = []
        for j, sid in enumerate(self.columns_):
            y = yhat[:, :, j]
            if self.deseasonalize:
                y = y + self.profiles_[sid].at(targets).reshape(y.shape)
            frames.append(_forecast_frame(sid, wide.index, positions, y, self.freq_))
        return _concat(frames, with_origin=True)

    def _predict(self, history, horizon, covariates):
        wide = self._wide(history)
        out = self._origins_frame(wide, np.array([len(wide) - 1]), horizon)
        return out[FORECAST_COLUMNS]

    def _predict_origins(self, df, origins, horizon):
        wide = self._wide(df)
        pos, ok = _origin_positions(wide.index, origins)
        return self._origins_frame(wide, np.unique(pos[ok]), horizon)
