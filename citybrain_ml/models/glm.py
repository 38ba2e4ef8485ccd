"""Count GLMs for incident grids: Poisson and negative-binomial regression (statsmodels).

One log-linear model per horizon step ``h`` (direct strategy). Each training row is a
(cell, origin) pair; the target is the count ``h`` steps after the origin and the features
describe the cell at the origin and the calendar at the target time:

* recent rates: ``log(rate + 1e-3)`` of the cell's rolling mean over ``windows`` steps
  ending at the origin, and ``log1p`` of its last values (``lags``);
* neighbour rates: the same of the adjacency-weighted mean of the neighbours' rolling means
  (``neighbour_windows``), when ``adjacency`` is given;
* cell x time-of-day (``profile="day"``) or time-of-week (``"week"``) rates: the cell's mean
  in the target's slot over the last ``n`` days (weeks) before the target, for each ``n`` in
  ``profile_spans``, shrunk towards its all-slot mean over the same span with
  ``profile_prior`` pseudo-observations. Sparse cells (most of an incident grid) then borrow
  their own overall level instead of fitting noise. All of these use only data before the
  origin: an in-sample cell effect (target encoding on the training window) leaks the
  target and was measured to overfit badly (it also lowers test recall);
* calendar of the target time: ``harmonics`` sine/cosine pairs of the hour of day, and
  day-of-week dummies;
* optionally numeric covariates at the origin (e.g. taxi inflow/outflow, weather):
  ``log1p`` for non-negative columns, as is otherwise.

Features are standardised with training means/deviations; the fitted state is the
coefficient vector per step (statsmodels results, which hold the training data, are not
kept), so models pickle small.

The negative-binomial variant fixes the dispersion ``alpha`` (variance ``mu + alpha mu^2``)
by the Cameron-Trivedi auxiliary regression on the residuals of a first Poisson fit, then
refits with ``statsmodels.genmod.families.NegativeBinomial(alpha)``. The mean forecast is
usually close to the Poisson one; ``alpha_`` is what the decision layer needs for
``P(count >= 1) = 1 - (1 + alpha mu)^(-1/alpha)``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import (
    FORECAST_COLUMNS,
    HORIZON_STEP,
    LONG_COLUMNS,
    SERIES_ID,
    TIMESTAMP,
    YHAT,
)
from citybrain_ml.features.graph import neighbour_mean, neighbour_weights
from citybrain_ml.features.lag_transforms import Matrix, rolling_features, shift, to_matrix
from citybrain_ml.models.base import Forecaster

PROFILES = ("none", "day", "week")
#: floor on rates before taking logs (a cell never seen with an incident is not impossible)
RATE_FLOOR = 1e-3


class PoissonGLMForecaster(Forecaster):
    """Poisson log-linear regression of counts on recent, neighbour, cell and calendar terms.

    Parameters
    ----------
    horizon : int
        Longest horizon in steps; one GLM per step.
    windows : tuple of int, optional
        Rolling-mean windows (steps, ending at the origin) of the cell's own counts.
        ``None`` (and likewise for ``neighbour_windows``, ``profile``, ``profile_spans``,
        ``harmonics``) takes the default for the data's frequency, see
        :func:`frequency_defaults`.
    lags : tuple of int
        ``lag_k`` = the k-th most recent count (``lag_1`` = the origin's own).
    adjacency : DataFrame, optional
        Edge list ``src, dst, weight`` between cells; enables neighbour rates.
    neighbour_windows : tuple of int
        Rolling-mean windows averaged over each cell's neighbours.
    profile : {"none", "day", "week"}
        Add cell x time-of-day (time-of-week) rates (sub-daily data only for ``"day"``).
    profile_spans : tuple of int
        Days (weeks) of history averaged for each slot-rate feature.
    profile_prior : float
        Pseudo-observations pulling each slot mean towards the cell's all-slot mean.
    harmonics : int
        Sine/cosine pairs of the hour of day (0 = none).
    day_of_week : bool
        Day-of-week dummies of the target time (daily or finer data).
    use_covariates : bool
        Use the frame's numeric covariate columns at the origin.
    max_train_rows : int
        Cap on training rows per step; origins are subsampled (seeded) above it.
    maxiter : int
        IRLS iterations.
    seed : int
        Seed of the subsampling.
    calibration_steps : int, optional
        Trailing steps held out for split-conformal intervals (None = default, 0 = off).

    Notes
    -----
    Targets may be non-integer (e.g. severity-weighted risk): the fit is then the Poisson
    quasi-likelihood, whose mean estimates stay consistent.
    """

    family = "poisson"

    def __init__(
        self,
        horizon: int = 1,
        windows: tuple | None = None,
        lags: tuple = (1,),
        adjacency: pd.DataFrame | None = None,
        neighbour_windows: tuple | None = None,
        profile: str | None = None,
        profile_spans: tuple | None = None,
        profile_prior: float = 2.0,
        harmonics: int | None = None,
        day_of_week: bool = True,
        use_covariates: bool = False,
        max_train_rows: int = 400_000,
        maxiter: int = 50,
        seed: int = 0,
        calibration_steps: int | None = 0,
    ):
        self.horizon = horizon
        self.windows = windows
        self.lags = lags
        self.adjacency = adjacency
        self.neighbour_windows = neighbour_windows
        self.profile = profile
        self.profile_spans = profile_spans
        self.profile_prior = profile_prior
        self.harmonics = harmonics
        self.day_of_week = day_of_week
        self.use_covariates = use_covariates
        self.max_train_rows = max_train_rows
        self.maxiter = maxiter
        self.seed = seed
        self.calibration_steps = calibration_steps

    # ------------------------------------------------------------------ history
    @property
    def min_history(self) -> int:
        spans = self._setting("profile_spans")
        spans = [self._period() * int(n) for n in spans] if self._period() else []
        windows = self._setting("windows")
        return int(max([1, *self.lags, *windows, *self._nbr_windows(), *spans]))

    def _setting(self, name: str):
        """A parameter, or its default for the data's frequency when it is None."""
        value = getattr(self, name)
        if value is not None:
            return value
        # before fit the frequency is unknown: the hourly defaults (the models' origin)
        return frequency_defaults(getattr(self, "freq_", "h"))[name]

    def settings(self) -> dict:
        """The frequency-dependent parameters as used (defaults resolved)."""
        return {name: self._setting(name) for name in FREQUENCY_PARAMS}

    def _period(self) -> int:
        """Steps per profile season (0 = no profile features)."""
        profile = self._setting("profile")
        if profile == "none" or not hasattr(self, "freq_"):
            return 0
        step = _step(self.freq_)
        if step is None:
            return 0
        period = pd.Timedelta(days=1 if profile == "day" else 7) // step
        # a daily profile of daily data is a single slot: nothing to learn
        return int(period) if period >= 2 else 0

    def _history_to_keep(self) -> int:
        return self.min_history

    def _nbr_windows(self) -> tuple:
        return tuple(self._setting("neighbour_windows")) if self.adjacency is not None else ()

    # ------------------------------------------------------------------ fit
    def _fit(self, df: pd.DataFrame) -> None:
        self._check_params()
        self.covariates_ = self._covariate_columns(df)
        grid = to_matrix(df, self.freq_)
        blocks = self._origin_blocks(df, grid)
        self.coef_, self.feature_mean_, self.feature_std_ = {}, {}, {}
        self.alpha_ = {}
        for step in range(1, int(self.horizon) + 1):
            X, y = self._training_rows(grid, blocks, step)
            self._fit_step(step, X, y)

    def _check_params(self) -> None:
        profile = self._setting("profile")
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
        if int(self.horizon) < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        windows = (*self._setting("windows"), *self.lags, *self._setting("neighbour_windows"))
        bad = [w for w in windows if int(w) < 1]
        if bad:
            raise ValueError(f"windows and lags must be >= 1, got {bad}")

    def _covariate_columns(self, df: pd.DataFrame) -> list[str]:
        if not self.use_covariates:
            return []
        return [
            c for c in df.columns if c not in LONG_COLUMNS and pd.api.types.is_numeric_dtype(df[c])
        ]

    def _training_rows(self, grid: Matrix, blocks: dict, step: int):
        n_times = len(grid.times)
        first = self.min_history - 1
        t_idx = np.arange(first, n_times - step)
        t_all = np.repeat(t_idx, grid.values.shape[1])
        n_all = np.tile(np.arange(grid.values.shape[1]), len(t_idx))
        y = grid.values[t_all + step, n_all]
        keep = ~np.isnan(y)
        t_all, n_all, y = t_all[keep], n_all[keep], y[keep]
        if len(y) == 0:
            raise ValueError(
                f"no training rows for horizon step {step}: the series need more than "
                f"{self.min_history} + {step} steps with observed targets"
            )
        if len(y) > self.max_train_rows:
            rng = np.random.default_rng(int(self.seed) + step)
            pick = np.sort(rng.choice(len(y), int(self.max_train_rows), replace=False))
            t_all, n_all, y = t_all[pick], n_all[pick], y[pick]
        X = self._design(grid, blocks, t_all, n_all, step)
        return X, y

    def _fit_step(self, step: int, X: pd.DataFrame, y: np.ndarray) -> None:
        mean = X.mean()
        std = X.std().replace(0, 1.0).fillna(1.0)
        Z = ((X - mean) / std).fillna(0.0).to_numpy()
        Z = np.column_stack([np.ones(len(Z)), Z])
        coef, alpha = self._fit_glm(Z, y)
        self.feature_mean_[step], self.feature_std_[step] = mean, std
        self.coef_[step] = pd.Series(coef, index=["const", *X.columns])
        self.alpha_[step] = alpha

    def _fit_glm(self, Z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        import statsmodels.api as sm

        poisson = _irls(sm.GLM(y, Z, family=sm.families.Poisson()), self.maxiter)
        return poisson.params, 0.0

    # ------------------------------------------------------------------ features
    def _origin_blocks(self, df: pd.DataFrame, grid: Matrix) -> dict[str, np.ndarray]:
        """``(T, N)`` features at every origin (no look-ahead), before calendar/cell terms."""
        y = grid.values
        out = {}
        for k in self.lags:
            out[f"log1p_lag_{int(k)}"] = np.log1p(np.clip(shift(y, int(k) - 1), 0, None))
        rolled = rolling_features(y, tuple(self._setting("windows")), stats=("mean",))
        for name, mat in rolled.items():
            out[f"log_{name}"] = np.log(np.clip(mat, 0, None) + RATE_FLOOR)
        if self._nbr_windows():
            weights = neighbour_weights(self.adjacency, grid.ids)
            for name, mat in rolling_features(y, self._nbr_windows(), stats=("mean",)).items():
                nbr = np.clip(neighbour_mean(mat, weights), 0, None)
                out[f"log_nbr_{name}"] = np.log(nbr + RATE_FLOOR)
        for col in self.covariates_:
            if col not in df.columns:
                raise ValueError(f"history lacks covariate column {col!r} used in training")
            mat = grid.column(df, col)
            nonneg = np.nanmin(mat) >= 0 if np.isfinite(mat).any() else True
            out[f"cov_{col}"] = np.log1p(mat) if nonneg else mat
        return out

    def _slot_terms(self, y: np.ndarray, t_idx, n_idx, step: int) -> dict[str, np.ndarray]:
        """Shrunk cell rate in the target's slot over the last ``n`` seasons, per span."""
        period = self._period()
        out = {}
        if not period:
            return out
        sums, counts = _season_cumsums(y, period)
        # the most recent same-slot step at or before the origin
        base = t_idx + step - period * int(np.ceil(step / period))
        prior = float(self.profile_prior)
        for n in self._setting("profile_spans"):
            first = base - int(n) * period
            total = _take(sums, base, n_idx) - _take(sums, first, n_idx)
            seen = _take(counts, base, n_idx) - _take(counts, first, n_idx)
            level = _window_mean(y, t_idx, n_idx, int(n) * period)
            rate = (total + prior * level) / (seen + prior)
            out[f"log_slot_rate_{int(n)}"] = np.log(np.nan_to_num(rate) + RATE_FLOOR)
        return out

    def _calendar(self, target_times: pd.DatetimeIndex) -> dict[str, np.ndarray]:
        out = {}
        hour = (target_times.hour + target_times.minute / 60.0).to_numpy(dtype=float)
        for k in range(1, int(self._setting("harmonics")) + 1):
            out[f"hod_sin_{k}"] = np.sin(2 * np.pi * k * hour / 24.0)
            out[f"hod_cos_{k}"] = np.cos(2 * np.pi * k * hour / 24.0)
        if self.day_of_week:
            dow = target_times.dayofweek.to_numpy()
            for d in range(1, 7):  # Monday is the reference level
                out[f"dow_{d}"] = (dow == d).astype(float)
        return out

    def _design(self, grid: Matrix, blocks: dict, t_idx, n_idx, step: int) -> pd.DataFrame:
        offset = pd.Timedelta(pd.tseries.frequencies.to_offset(self.freq_))
        target_times = pd.DatetimeIndex(grid.times[t_idx] + step * offset)
        cols = {name: mat[t_idx, n_idx] for name, mat in blocks.items()}
        cols.update(self._slot_terms(grid.values, t_idx, n_idx, step))
        cols.update(self._calendar(target_times))
        return pd.DataFrame(cols)

    # ------------------------------------------------------------------ predict
    def _predict(self, history: pd.DataFrame, horizon: int, covariates) -> pd.DataFrame:
        origin = pd.Timestamp(history[TIMESTAMP].max())
        out = self._predict_origins(history, pd.DatetimeIndex([origin]), horizon)
        return out.drop(columns="origin")

    def _predict_origins(self, df: pd.DataFrame, origins, horizon: int) -> pd.DataFrame:
        if horizon > int(self.horizon):
            raise ValueError(f"fitted for horizon {self.horizon}, asked for {horizon} steps")
        grid = to_matrix(df, self.freq_)
        rows = grid.times.get_indexer(pd.DatetimeIndex(origins))
        if (rows < 0).any():
            missing = pd.DatetimeIndex(origins)[rows < 0][0]
            raise ValueError(f"origin {missing} is not a timestamp of the history frame")
        blocks = self._origin_blocks(df, grid)
        n_cells = len(grid.ids)
        t_idx = np.repeat(rows, n_cells)
        n_idx = np.tile(np.arange(n_cells), len(rows))
        offset = pd.Timedelta(pd.tseries.frequencies.to_offset(self.freq_))
        frames = []
        for step in range(1, horizon + 1):
            X = self._design(grid, blocks, t_idx, n_idx, step)
            frames.append(
                pd.DataFrame(
                    {
                        SERIES_ID: grid.ids[n_idx],
                        TIMESTAMP: grid.times[t_idx] + step * offset,
                        HORIZON_STEP: step,
                        YHAT: self._mean(step, X),
                        "origin": grid.times[t_idx],
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)[[*FORECAST_COLUMNS, "origin"]]

    def _mean(self, step: int, X: pd.DataFrame) -> np.ndarray:
        coef = self.coef_[step]
        Z = ((X[coef.index[1:]] - self.feature_mean_[step]) / self.feature_std_[step]).fillna(0.0)
        eta = coef.iloc[0] + Z.to_numpy() @ coef.iloc[1:].to_numpy()
        # the log link can overflow on wild inputs; 50 is far above any count
        return np.exp(np.clip(eta, -30.0, 50.0))

    def coefficients(self, step: int = 1) -> pd.Series:
        """Fitted coefficients of horizon ``step`` on standardised features (``const`` first)."""
        self._check_fitted()
        if step not in self.coef_:
            raise ValueError(f"no model for horizon step {step}; fitted steps {sorted(self.coef_)}")
        return self.coef_[step].copy()


class NegativeBinomialGLMForecaster(PoissonGLMForecaster):
    """Negative-binomial (NB2) GLM: :class:`PoissonGLMForecaster` with overdispersion.

    Parameters
    ----------
    nb_alpha : float, optional
        Dispersion ``alpha`` of ``Var = mu + alpha mu^2``; ``None`` estimates it per step
        from a first Poisson fit (Cameron-Trivedi auxiliary regression).
    Other parameters : see :class:`PoissonGLMForecaster`.
    """

    family = "negbin"

    def __init__(
        self,
        horizon: int = 1,
        windows: tuple | None = None,
        lags: tuple = (1,),
        adjacency: pd.DataFrame | None = None,
        neighbour_windows: tuple | None = None,
        profile: str | None = None,
        profile_spans: tuple | None = None,
        profile_prior: float = 2.0,
        harmonics: int | None = None,
        day_of_week: bool = True,
        use_covariates: bool = False,
        max_train_rows: int = 400_000,
        maxiter: int = 50,
        seed: int = 0,
        calibration_steps: int | None = 0,
        nb_alpha: float | None = None,
    ):
        super().__init__(
            horizon=horizon,
            windows=windows,
            lags=lags,
            adjacency=adjacency,
            neighbour_windows=neighbour_windows,
            profile=profile,
            profile_spans=profile_spans,
            profile_prior=profile_prior,
            harmonics=harmonics,
            day_of_week=day_of_week,
            use_covariates=use_covariates,
            max_train_rows=max_train_rows,
            maxiter=maxiter,
            seed=seed,
            calibration_steps=calibration_steps,
        )
        self.nb_alpha = nb_alpha

    def _fit_glm(self, Z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        import statsmodels.api as sm

        alpha = self.nb_alpha
        start = None
        if alpha is None:
            poisson = _irls(sm.GLM(y, Z, family=sm.families.Poisson()), self.maxiter)
            alpha = dispersion_alpha(y, poisson.fittedvalues)
            start = poisson.params
        if alpha <= 0:
            raise ValueError(f"nb_alpha must be > 0, got {alpha}")
        family = sm.families.NegativeBinomial(alpha=float(alpha))
        result = _irls(sm.GLM(y, Z, family=family), self.maxiter, start_params=start)
        return result.params, float(alpha)


#: parameters whose ``None`` default depends on the data's frequency
FREQUENCY_PARAMS = ("windows", "neighbour_windows", "profile", "profile_spans", "harmonics")


def frequency_defaults(freq: str) -> dict:
    """Feature windows and seasonal terms that suit data sampled at ``freq``.

    The same spans of time whatever the step, so hourly and daily data get comparable
    features instead of hourly windows counted in days (2,016 hours = 12 weeks, but
    2,016 days = 5.5 years of history before the first training row):

    * below a day: rolling means over 1, 7, 28 and 84 days, neighbours over 7 and 28 days,
      cell x hour-of-day rates over the last 28 and 84 days, 3 hour-of-day harmonics
      (hourly data: windows 24/168/672/2016 steps, the defaults the models were built on);
    * daily: rolling means over 7, 28, 91 and 364 days, neighbours over 28 days, cell x
      day-of-week rates over the last 8 and 26 weeks, no hour harmonics (the settings of
      the crime benchmark, ``experiments/incidents_crime.py``);
    * coarser (weekly, monthly): rolling means over 4, 13 and 52 steps, neighbours over 13,
      no seasonal profile or harmonics.

    Parameters
    ----------
    freq : str
        Pandas frequency of the data.

    Returns
    -------
    dict
        ``windows, neighbour_windows, profile, profile_spans, harmonics``.
    """
    step = _step(freq)
    day = pd.Timedelta(days=1)
    if step is not None and step < day:

        def steps(days: int) -> int:
            return max(1, int(pd.Timedelta(days=days) // step))

        return {
            "windows": tuple(steps(d) for d in (1, 7, 28, 84)),
            "neighbour_windows": (steps(7), steps(28)),
            "profile": "day",
            "profile_spans": (28, 84),
            "harmonics": 3,
        }
    if step == day:
        return {
            "windows": (7, 28, 91, 364),
            "neighbour_windows": (28,),
            "profile": "week",
            "profile_spans": (8, 26),
            "harmonics": 0,
        }
    return {
        "windows": (4, 13, 52),
        "neighbour_windows": (13,),
        "profile": "none",
        "profile_spans": (),
        "harmonics": 0,
    }


def _step(freq: str) -> pd.Timedelta | None:
    """Fixed length of ``freq``, or None for calendar frequencies (``W``, ``MS``)."""
    try:
        return pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    except ValueError:
        return None


def dispersion_alpha(y, mu, floor: float = 1e-6) -> float:
    """NB2 dispersion from a Poisson fit: OLS of ``((y - mu)^2 - y) / mu`` on ``mu``.

    Cameron & Trivedi (1990): under ``Var(y) = mu + alpha mu^2`` the regression through the
    origin has slope ``alpha``. Returns at least ``floor`` (NB needs ``alpha > 0``; a
    non-positive estimate means no overdispersion, i.e. Poisson).
    """
    y = np.asarray(y, float)
    mu = np.asarray(mu, float)
    alpha = float(np.sum((y - mu) ** 2 - y) / np.sum(mu**2))
    return max(alpha, floor)


def _irls(model, maxiter: int, start_params=None):
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # non-integer targets (severity-weighted risk) make the likelihood a quasi-likelihood
        warnings.simplefilter("ignore", category=RuntimeWarning)
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        result = model.fit(maxiter=int(maxiter), start_params=start_params)
    if not np.all(np.isfinite(result.params)):
        raise RuntimeError("GLM fit diverged (non-finite coefficients); simplify the features")
    return result


def _season_cumsums(y: np.ndarray, period: int) -> tuple[np.ndarray, np.ndarray]:
    """Running sums (and observed counts) along each slot: ``out[t] = y[t] + out[t - period]``."""
    observed = ~np.isnan(y)
    n_time, n_cells = y.shape
    pad = (-n_time) % period

    def strided(a):
        a = np.concatenate([a, np.zeros((pad, n_cells))])
        cum = a.reshape(-1, period, n_cells).cumsum(axis=0)
        return cum.reshape(-1, n_cells)[:n_time]

    return strided(np.where(observed, y, 0.0)), strided(observed.astype(float))


def _take(cum: np.ndarray, t_idx: np.ndarray, n_idx: np.ndarray) -> np.ndarray:
    """``cum[t, n]`` with 0 before the start (running sums are 0 there)."""
    t = np.asarray(t_idx)
    return np.where(t >= 0, cum[np.clip(t, 0, None), n_idx], 0.0)


def _window_mean(y: np.ndarray, t_idx, n_idx, window: int) -> np.ndarray:
    """Mean of the ``window`` steps ending at each origin (NaN skipped)."""
    observed = ~np.isnan(y)
    cs = np.cumsum(np.where(observed, y, 0.0), axis=0)
    cc = np.cumsum(observed, axis=0).astype(float)
    total = cs[t_idx, n_idx] - _take(cs, t_idx - window, n_idx)
    seen = cc[t_idx, n_idx] - _take(cc, t_idx - window, n_idx)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(seen > 0, total / seen, 0.0)
