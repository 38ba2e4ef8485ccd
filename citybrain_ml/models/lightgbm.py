"""Global LightGBM forecaster: one model family shared by all series, direct multi-horizon.

Every training row is a (series, origin) pair: features describe the series at the origin
(lags, rolling statistics, EWM, target-aligned seasonal lags, neighbour means, calendar of
the target time, covariates at the origin) and the target is the value ``h`` steps later.

* ``strategy="direct"``: one booster per horizon step ``h = 1..horizon``.
* ``strategy="pooled"``: one booster for all steps with ``horizon_step`` as a feature
  (cheaper for long horizons such as 72 h; origins are subsampled to ``max_train_rows``).
* ``strategy="hybrid"``: direct boosters for steps ``1..direct_steps`` and one pooled booster
  for the longer steps. A pooled booster gives each step only ``1/horizon`` of its rows and
  its leaves mix neighbouring steps, which costs most at the shortest steps, where the
  forecast should stay close to the last value.

Choosing a strategy
-------------------
Training rows are built once for all steps (features at the origin; each step only shifts
the target and adds its target-time features), so the strategies differ in LightGBM time.
Measured on SZ-taxi (``experiments/results/fit_strategies.md``: 4 steps, 370k origins):
direct, pooled and hybrid reach the same MAE within 0.1%, pooled costs about as much as
direct (one booster on ``horizon`` times the rows) and more memory (the stacked rows), and
pooled with ``max_train_rows`` near one step's rows fits in about a quarter of the time for
~0.1% more MAE. Rules of thumb:

* ``direct`` (default): short horizons (up to ~12 steps) and when the first steps matter most.
* ``pooled`` + ``max_train_rows``: long horizons (e.g. 72 hourly steps) or a fit-time budget;
  the cap bounds fit time whatever the horizon.
* ``hybrid``: long horizons whose first steps must stay as sharp as direct boosters make them.

Intervals
---------
Quantile forecasts (``objective="quantile"``) are recalibrated by split-conformal quantile
regression (CQR, Romano et al. 2019) when ``calibration_steps`` is non-zero: a clone fitted
without the last ``calibration_steps`` steps forecasts that tail, and for each horizon step
and each symmetric pair of quantiles ``(q, 1 - q)`` the conformity score
``max(lo - y, y - hi)`` is computed (on the ``log1p`` scale when the target is log-transformed,
so the correction is multiplicative). Forecasts then widen (or narrow) the pair by the
finite-sample ``(1 - 2q)`` quantile of those scores. Scores are kept per covariate mode.

Because features are computed on a time x series matrix, forecasting every origin of a test
period is one feature build plus one ``predict`` call per booster (see
:meth:`LightGBMForecaster.historical_forecasts`).

Covariate modes
---------------
* ``"history"``: covariates enter at their value at the origin (always available).
* ``"future"``: with ``future_covariates`` set, a second family of boosters also sees each
  named covariate at the *target* time (``fut_<name>``), e.g. forecast weather. It is used for
  the (series, target time) rows that the caller's ``covariates`` frame covers; every other
  row falls back to the history boosters. Training uses the observed covariate at the target
  time as a stand-in for its forecast, so future-mode skill assumes accurate forecasts.
  ``covariate_mode_`` and the ``covariate_mode`` column say which mode each forecast used.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import lightgbm as lgb
import numpy as np
import pandas as pd

from citybrain_ml.data.covariates import COVARIATE_MODE, forecast_mode
from citybrain_ml.data.schema import (
    HORIZON_STEP,
    LONG_COLUMNS,
    SERIES_ID,
    TIMESTAMP,
    VALUE,
    YHAT,
    interval_columns,
)
from citybrain_ml.features.calendar import calendar_features
from citybrain_ml.features.graph import neighbour_features
from citybrain_ml.features.lag_transforms import (
    ROLLING_STATS,
    Matrix,
    diff_features,
    ewm_features,
    history_needed,
    lag_features,
    rolling_features,
    to_matrix,
)
from citybrain_ml.features.origin import features_at_rows, neighbour_features_at_rows
from citybrain_ml.models.base import Forecaster, _nearest, conformal_quantile

OBJECTIVES = {
    "l2": "regression",
    "l1": "regression_l1",
    "poisson": "poisson",
    "tweedie": "tweedie",
    "quantile": "quantile",
}
TRANSFORMS = ("none", "log1p", "normalize_per_series")
STRATEGIES = ("direct", "pooled", "hybrid")
# LightGBM's names for its thread count; lgb_params may use any of them
THREAD_PARAMS = ("num_threads", "num_thread", "nthread", "nthreads", "n_jobs")
POOLED = 0  # booster key for the single pooled model


def quantile_column(q: float) -> str:
    """Name of the forecast column for quantile ``q`` (0.05 -> ``yhat_q5``)."""
    return f"yhat_q{round(100 * float(q), 6):g}"


@dataclass
class _Panel:
    """Model-space view of a long frame: transformed values and covariates on a grid."""

    grid: Matrix
    z: np.ndarray  # (T, N) transformed target
    scale: np.ndarray  # (N,) per-series scale (1 unless normalize_per_series)
    covariates: dict[str, np.ndarray]
    first: np.ndarray  # (N,) grid row of each series' first row
    step: pd.Timedelta
    anchor: np.ndarray | None = None  # (T, N) last non-missing z up to each row (delta target)


class LightGBMForecaster(Forecaster):
    """Global gradient-boosted forecaster over lag, window, calendar and graph features.

    Under a service calendar with closed slots (see :mod:`citybrain_ml.data.calendar`)
    origins are open slots only and horizon step ``h`` is the ``h``-th open slot after the
    origin; seasonal lags stay in calendar time (the same slot one day / week earlier).

    Parameters
    ----------
    horizon : int
        Longest horizon in steps; one booster per step (direct), steps 1..horizon pooled,
        or both (hybrid).
    lags : tuple of int
        ``lag_k`` = k-th most recent value at the origin (``lag_1`` = the origin's value).
    rolling_windows : tuple of int
        Rolling ``rolling_stats`` over these many steps ending at the origin.
    rolling_stats : tuple of str
        Any of ``mean, std, min, max``.
    diffs : tuple of int
        ``diff_k`` = origin value minus the value ``k`` steps before.
    ewm_halflives : tuple of float
        Exponentially weighted means with these half-lives (steps).
    seasonal_lags : tuple of int, optional
        Seasons in steps for target-aligned seasonal lags (value one season before the target
        time). ``None`` picks 1 day and 1 week from the frequency, each kept only when the
        training series are at least two seasons long.
    calendar : bool
        Add calendar features of the target timestamp (hour, day of week, weekend, ...).
    holidays : list of str, optional
        Dates (``"2025-12-25"``) flagged as holidays: adds ``is_holiday`` of the target day,
        so a holiday can be learned as its own day type.
    adjacency : DataFrame, optional
        Edge list ``src, dst, weight``; enables neighbour-mean features.
    neighbour_lags, neighbour_windows : tuple of int
        Lags / rolling-mean windows averaged over neighbours (see
        :func:`citybrain_ml.features.graph.neighbour_features`).
    two_hop : bool
        Also neighbour means over the 2-hop ring.
    use_covariates : bool
        Use the numeric covariate columns of the frame at their value at the origin.
    seasonal_residual : bool
        Learn the difference from the seasonal naive forecast (the value one season -- the
        shortest of ``seasonal_lags`` -- before the target, in calendar time) instead of the
        level; forecasts add it back, so a model with little to learn stays close to "same
        slot yesterday". Where no value exists a season back, the last observed value at the
        origin stands in (counted in ``fallbacks_``). Not combined with ``delta_target``.
    delta_target : bool
        Learn the change from the last observed (transformed) value at the origin instead of
        the level; forecasts add it back. Keeps short horizons close to persistence when one
        pooled booster serves all steps. Origins with no observed value yet are skipped.
    future_covariates : tuple of str or "all", optional
        Covariates whose values at the target time the caller can supply at forecast time
        (e.g. forecast weather). Trains a second booster family with ``fut_<name>`` features
        (doubling training cost); see "Covariate modes" in the module docstring.
    target_transform : {"none", "log1p", "normalize_per_series"}
        ``normalize_per_series`` divides each series by its training mean absolute value so
        series of different levels share patterns (unseen series use their given history).
    objective : {"l2", "l1", "poisson", "tweedie", "quantile"}
        LightGBM objective. ``quantile`` fits one booster per quantile per step and adds
        ``yhat_q<100q>`` columns (sorted so they never cross); ``yhat`` is the median.
    quantiles : tuple of float
        Quantiles for ``objective="quantile"``.
    strategy : {"direct", "pooled", "hybrid"}
        See the module docstring.
    direct_steps : int
        With ``strategy="hybrid"``: steps ``1..direct_steps`` get their own boosters; the
        pooled booster covers ``direct_steps + 1..horizon``.
    direct_max_train_rows : int, optional
        Row cap for each direct booster of the hybrid strategy (None = ``max_train_rows``);
        lets short steps use fewer rows than the pooled booster to bound training time.
    lgb_params : dict, optional
        Extra LightGBM parameters; they override everything set here. A thread count given
        here under any LightGBM alias (``num_threads``, ``nthread``, ``n_jobs``, ...)
        replaces ``n_jobs`` for training and prediction alike.
    n_estimators, learning_rate, num_leaves, min_child_samples, colsample, subsample :
        Main LightGBM knobs (``colsample`` = ``feature_fraction``, ``subsample`` =
        ``bagging_fraction`` redrawn every tree; bagging also halves the cost per tree).
    early_stopping_rounds : int, optional
        Pick the number of trees on a time-ordered validation tail (the last
        ``validation_fraction`` of origins), then refit on all rows with that number.
    validation_fraction : float
        Share of the latest origins used for early stopping.
    max_train_rows : int
        Cap on training rows per booster; origins are subsampled (seeded) above it.
    seed : int
        Seed for LightGBM and the subsampling; with ``deterministic=True`` and fixed
        ``n_jobs`` a refit gives identical boosters.
    n_jobs : int
        LightGBM threads (``num_threads``) for every booster this model builds -- fit,
        early stopping, the calibration clone, refits -- and for every ``predict``.
    calibration_steps : int, optional
        Trailing steps for split-conformal intervals (None = default, 0 = off). With
        ``objective="quantile"`` the same tail calibrates the quantile columns (CQR).
    calibration_refit : bool
        True: after calibrating on the tail, refit on all the data (two fits). False: keep
        the clone fitted without the tail as the model (one fit; the tail then only
        calibrates, and forecasts still start from the full history).
    calibration_groups : str, optional
        Regular expression with one capture group, applied to ``series_id``: the quantile
        pairs (CQR) are calibrated separately per captured group, e.g. ``"/(.+)$"`` = per
        pollutant in a multi-pollutant dataset (series ``<station>/<pollutant>``), where
        one pooled correction would leave one pollutant's intervals too narrow and
        another's too wide. Series that do not match, or groups without calibration
        scores, use the pooled correction.

    Notes
    -----
    * Rows with a NaN target are dropped from training; NaN features are left to LightGBM.
    * Covariates (e.g. a holiday flag) are read from the history frame at the origin. Future
      covariates passed to ``predict``/``historical_forecasts`` are used only by a model
      fitted with ``future_covariates``; otherwise they are ignored (mode ``"history"``).
    * Split-conformal intervals are calibrated on history-mode forecasts.
    * Being global, the model forecasts series unseen in training from ``history_df`` when
      each has at least ``max(lags)`` steps; shorter series raise a ``ValueError`` naming them.
    * ``historical_forecasts`` builds the features once for all (series, origin) pairs and
      calls each booster once; it gives the same numbers as ``predict`` per origin.
    """

    service_aware = True

    def __init__(
        self,
        horizon: int = 12,
        lags: tuple = (1, 2, 3, 4, 5, 6, 8, 12),
        rolling_windows: tuple = (4, 12, 48),
        rolling_stats: tuple = ROLLING_STATS,
        diffs: tuple = (1,),
        ewm_halflives: tuple = (2.0, 8.0),
        seasonal_lags: tuple | None = None,
        calendar: bool = True,
        holidays: list | None = None,
        adjacency: pd.DataFrame | None = None,
        neighbour_lags: tuple = (1, 2),
        neighbour_windows: tuple = (4,),
        two_hop: bool = False,
        use_covariates: bool = True,
        future_covariates: tuple | str | None = None,
        delta_target: bool = False,
        seasonal_residual: bool = False,
        target_transform: str = "none",
        objective: str = "l2",
        quantiles: tuple = (0.05, 0.5, 0.95),
        strategy: str = "direct",
        direct_steps: int = 6,
        direct_max_train_rows: int | None = None,
        lgb_params: dict | None = None,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        colsample: float = 0.8,
        subsample: float = 0.7,
        early_stopping_rounds: int | None = None,
        validation_fraction: float = 0.1,
        max_train_rows: int = 2_000_000,
        seed: int = 0,
        n_jobs: int = 2,
        calibration_steps: int | None = None,
        calibration_refit: bool = True,
        calibration_groups: str | None = None,
    ):
        self.horizon = horizon
        self.lags = lags
        self.rolling_windows = rolling_windows
        self.rolling_stats = rolling_stats
        self.diffs = diffs
        self.ewm_halflives = ewm_halflives
        self.seasonal_lags = seasonal_lags
        self.calendar = calendar
        self.holidays = holidays
        self.adjacency = adjacency
        self.neighbour_lags = neighbour_lags
        self.neighbour_windows = neighbour_windows
        self.two_hop = two_hop
        self.use_covariates = use_covariates
        self.future_covariates = future_covariates
        self.delta_target = delta_target
        self.seasonal_residual = seasonal_residual
        self.target_transform = target_transform
        self.objective = objective
        self.quantiles = quantiles
        self.strategy = strategy
        self.direct_steps = direct_steps
        self.direct_max_train_rows = direct_max_train_rows
        self.lgb_params = lgb_params
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.colsample = colsample
        self.subsample = subsample
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.max_train_rows = max_train_rows
        self.seed = seed
        self.n_jobs = n_jobs
        self.calibration_steps = calibration_steps
        self.calibration_refit = calibration_refit
        self.calibration_groups = calibration_groups

    # ------------------------------------------------------------------ history sizes
    @property
    def min_history(self) -> int:
        """Steps a series needs up to its origin: enough to fill every ``lag_k``."""
        return int(max(self.lags, default=1))

    def _history_to_keep(self) -> int:
        seasonal = getattr(self, "seasonal_lags_", None) or self.seasonal_lags or ()
        nbr = (*self.neighbour_lags, *self.neighbour_windows) if self.adjacency is not None else ()
        return history_needed(
            lags=(*self.lags, *nbr),
            windows=self.rolling_windows,
            diffs=self.diffs,
            halflives=self.ewm_halflives,
            seasonal=seasonal,
        )

    def _origin_span(self) -> int:
        """Steps up to an origin that its lag, window, diff, EWM and neighbour features read."""
        nbr = (*self.neighbour_lags, *self.neighbour_windows) if self.adjacency is not None else ()
        return history_needed(
            lags=(*self.lags, *nbr),
            windows=self.rolling_windows,
            diffs=self.diffs,
            halflives=self.ewm_halflives,
        )

    @property
    def bounded_history(self) -> bool:
        """Forecasts read only the last ``_history_to_keep()`` steps, so ``predict`` trims to them.

        Not with ``delta_target`` or ``seasonal_residual`` (their anchor is the last observed
        value, however old) nor ``normalize_per_series`` (an unseen series is scaled on all
        the history it brings).
        """
        anchored = getattr(self, "delta_target", False) or getattr(self, "seasonal_residual", False)
        return not anchored and self.target_transform != "normalize_per_series"

    # ------------------------------------------------------------------ fit
    def _fit(self, df: pd.DataFrame) -> None:
        self._check_params()
        clone = self.__dict__.pop("_calibration_model", None)
        if clone is not None and not self.calibration_refit:
            self._adopt(clone)
            return
        self.covariates_ = self._covariate_columns(df)
        self.seasonal_lags_ = self._auto_seasonal_lags(df)
        if self.seasonal_residual and not self.seasonal_lags_:
            self._fallback(
                "seasonal_residual_off",
                1,
                "seasonal_residual needs two seasons of history (none kept); learning levels",
            )
        grid = to_matrix(df, self.freq_)
        self.scale_ = self._series_scale(grid, len(grid.times))
        panel = self._panel(df, grid, upto=len(grid.times))
        block = self._origin_block(panel)
        t_idx, n_idx = self._origin_rows(panel)
        # series-major rows: neighbouring rows hold similar values, which makes LightGBM's
        # per-leaf histogram passes cache-friendlier (about a fifth less time per tree on SZ-taxi)
        order = np.lexsort((t_idx, n_idx))
        t_idx, n_idx = t_idx[order], n_idx[order]
        base = _gather(block, t_idx, n_idx)
        self.future_covariates_ = self._future_columns()
        self.feature_names_ = [*block, *self._step_feature_names()]
        self.future_feature_names_ = [
            *self.feature_names_,
            *(f"fut_{c}" for c in self.future_covariates_),
        ]
        self.boosters_, self.future_boosters_ = {}, {}
        for step in self._booster_steps():
            X, y, t_row, n_row = self._training_set(panel, base, t_idx, n_idx, step)
            if len(y) == 0:
                raise ValueError(
                    f"no training rows for horizon step {step}: every target is missing or "
                    f"the series are shorter than {self.min_history} + {step} steps"
                )
            for q in self._quantile_levels():
                self.boosters_[(step, q)] = self._train_booster(
                    X, y, t_row, q, seed_offset=step, names=self.feature_names_
                )
            if not self.future_covariates_:
                continue
            # observed covariates at the target time stand in for their forecasts
            fut = np.column_stack(
                [panel.covariates[c][t_row, n_row] for c in self.future_covariates_]
            )
            X = np.hstack([X, fut.astype(np.float32)])
            for q in self._quantile_levels():
                self.future_boosters_[(step, q)] = self._train_booster(
                    X, y, t_row, q, seed_offset=step, names=self.future_feature_names_
                )

    def _booster_steps(self) -> list[int]:
        """Keys of the booster families: horizon steps of direct boosters, POOLED for one."""
        if self.strategy == "pooled":
            return [POOLED]
        if self.strategy == "direct":
            return list(range(1, int(self.horizon) + 1))
        direct = list(range(1, min(int(self.direct_steps), int(self.horizon)) + 1))
        return direct + ([POOLED] if int(self.horizon) > int(self.direct_steps) else [])

    def _booster_key(self, step: int) -> int:
        """Which booster forecasts horizon step ``step``."""
        if self.strategy == "pooled":
            return POOLED
        if self.strategy == "hybrid" and step > int(self.direct_steps):
            return POOLED
        return step

    def _pooled_steps(self) -> range:
        """Horizon steps the pooled booster is trained on."""
        first = int(self.direct_steps) + 1 if self.strategy == "hybrid" else 1
        return range(first, int(self.horizon) + 1)

    def _adopt(self, clone: LightGBMForecaster) -> None:
        """Take the learned state of the calibration clone instead of refitting."""
        keep = {
            "freq_",
            "series_ids_",
            "conformal_scores_",
            "cqr_scores_",
            "cqr_group_scores_",
            "history_",
        }
        for name, value in vars(clone).items():
            if name.endswith("_") and name not in keep:
                setattr(self, name, value)

    def _future_columns(self) -> list[str]:
        """Covariates the future-mode boosters read at the target time (checked names)."""
        spec = self.future_covariates
        if not spec:
            return []
        names = list(self.covariates_) if spec == "all" else [str(c) for c in spec]
        unknown = [c for c in names if c not in self.covariates_]
        if unknown:
            raise ValueError(
                f"future_covariates {unknown} are not numeric covariate columns of the training "
                f"frame (covariates: {self.covariates_}; is use_covariates=False?)"
            )
        return names

    def _check_params(self) -> None:
        checks = {
            "target_transform": (self.target_transform, TRANSFORMS),
            "objective": (self.objective, tuple(OBJECTIVES)),
            "strategy": (self.strategy, STRATEGIES),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if int(self.horizon) < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.strategy == "hybrid" and int(self.direct_steps) < 1:
            raise ValueError(
                f"direct_steps must be >= 1 for strategy='hybrid', got {self.direct_steps}"
            )
        if self.seasonal_residual and self.delta_target:
            raise ValueError("seasonal_residual and delta_target are alternatives; pick one")
        if self.objective == "quantile" and not all(0 < q < 1 for q in self.quantiles):
            raise ValueError(f"quantiles must lie in (0, 1), got {self.quantiles}")

    def _covariate_columns(self, df: pd.DataFrame) -> list[str]:
        if not self.use_covariates:
            return []
        extra = [c for c in df.columns if c not in LONG_COLUMNS]
        return [
            c
            for c in extra
            if pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])
        ]

    def _auto_seasonal_lags(self, df: pd.DataFrame) -> tuple[int, ...]:
        if self.seasonal_lags is not None:
            return tuple(int(m) for m in self.seasonal_lags)
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(self.freq_))
        longest = int(df.groupby(SERIES_ID).size().max())
        seasons = []
        for period in (pd.Timedelta("1D"), pd.Timedelta("7D")):
            m = period / step
            # keep a season only when it is a whole number of steps, longer than one step and
            # at least half the training rows can see one season back
            if m > 1 and float(m).is_integer() and longest >= 2 * m:
                seasons.append(int(m))
        return tuple(seasons)

    def _quantile_levels(self) -> list[float | None]:
        if self.objective != "quantile":
            return [None]
        return sorted({float(q) for q in self.quantiles} | {0.5})

    # ------------------------------------------------------------------ panel + features
    def _series_scale(self, grid: Matrix, upto: int) -> pd.Series:
        """Per-series mean absolute value over grid rows ``< upto`` (1 when undefined)."""
        if self.target_transform != "normalize_per_series":
            return pd.Series(1.0, index=pd.Index(grid.ids, dtype=object))
        with warnings.catch_warnings():
            # all-NaN series warn 'mean of empty slice'; they fall back to scale 1 below
            warnings.simplefilter("ignore", RuntimeWarning)
            scale = np.nanmean(np.abs(grid.values[:upto]), axis=0)
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        return pd.Series(scale, index=pd.Index(grid.ids, dtype=object))

    def _panel(self, df: pd.DataFrame, grid: Matrix, upto: int) -> _Panel:
        """Transform the grid to model space; unseen series are scaled on rows ``< upto``."""
        missing = [c for c in self.covariates_ if c not in df.columns]
        if missing:
            raise ValueError(
                f"history lacks covariate column(s) {missing} that the model was trained with"
            )
        ids = pd.Index(grid.ids, dtype=object)
        scale = self.scale_.reindex(ids).to_numpy(dtype=float, copy=True)
        unseen = np.isnan(scale)
        if unseen.any():
            scale[unseen] = self._series_scale(grid, upto).to_numpy()[unseen]
        z = self._transform(grid.values, scale, grid.ids)
        covs = {c: grid.column(df, c) for c in self.covariates_}
        first = np.argmax(grid.present, axis=0)
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(self.freq_))
        # getattr: models pickled before delta_target existed load as level models
        anchor = (
            pd.DataFrame(z).ffill().to_numpy()
            if getattr(self, "delta_target", False) or self._seasonal_base()
            else None
        )
        return _Panel(grid, z, scale, covs, first, step, anchor)

    def _transform(self, y: np.ndarray, scale: np.ndarray, ids) -> np.ndarray:
        if self.target_transform == "log1p":
            bad = (y < 0).any(axis=0)  # NaN compares False: missing values are fine
            if bad.any():
                raise ValueError(
                    f"target_transform='log1p' needs values >= 0; negative values in series "
                    f"{list(np.asarray(ids)[bad][:10])}"
                )
            return np.log1p(y)
        return y / scale

    def _inverse(self, z: np.ndarray, scale: np.ndarray) -> np.ndarray:
        if self.target_transform == "log1p":
            return np.expm1(z)
        return z * scale

    def _origin_block(self, panel: _Panel) -> dict[str, np.ndarray]:
        """All (T, N) features that do not depend on the horizon step, as float32."""
        z = panel.z
        feats = {
            **lag_features(z, self.lags),
            **rolling_features(z, self.rolling_windows, self.rolling_stats),
            **diff_features(z, self.diffs),
            **ewm_features(z, self.ewm_halflives),
        }
        if self.adjacency is not None:
            feats.update(
                neighbour_features(
                    z,
                    self.adjacency,
                    panel.grid.ids,
                    lags=self.neighbour_lags,
                    windows=self.neighbour_windows,
                    two_hop=self.two_hop,
                )
            )
        feats.update({f"cov_{c}": m for c, m in panel.covariates.items()})
        return {k: v.astype(np.float32, copy=False) for k, v in feats.items()}

    def _offsets(self, panel: _Panel, t_idx, step: int) -> np.ndarray:
        """Grid rows from each origin to its target: ``step``, or the step-th open slot."""
        cal = self._service_calendar()
        if cal is None:
            return np.full(len(t_idx), int(step), dtype=np.int64)
        first = cal.slot_of(panel.grid.times[:1])[0]
        slots = (first + np.asarray(t_idx)) % cal.steps_per_day
        return cal._offset_table(int(step))[slots, int(step) - 1]

    def _seasonal_base(self) -> int | None:
        """The season the residual target is taken over, or None for a level/delta model."""
        if not getattr(self, "seasonal_residual", False):
            return None
        seasons = getattr(self, "seasonal_lags_", ())
        return int(min(seasons)) if seasons else None

    def _reference(self, panel: _Panel, t_idx, n_idx, step: int, count: bool = False):
        """What the target is learned relative to: last value (delta) or seasonal naive."""
        last = panel.anchor[t_idx, n_idx]
        m = self._seasonal_base()
        if m is None:
            return last
        off = self._offsets(panel, t_idx, step)
        src = t_idx + off - m * np.ceil(off / m).astype(np.int64)
        ref = np.full(len(t_idx), np.nan)
        ok = src >= 0
        ref[ok] = panel.z[src[ok], n_idx[ok]]
        gap = np.isnan(ref)
        if count:
            self._fallback(
                "seasonal_reference_last_value",
                int(gap.sum()),
                f"{int(gap.sum())} forecasts at step {step} had no value one season back; "
                "the last observed value stood in for the seasonal naive",
            )
        ref[gap] = last[gap]
        return ref

    def _step_features(self, panel: _Panel, t_idx, n_idx, step: int) -> dict[str, np.ndarray]:
        """Features tied to the target time ``origin + step``: seasonal lags and calendar."""
        out = {}
        off = self._offsets(panel, t_idx, step)
        for m in self.seasonal_lags_:
            back = m * np.ceil(off / m).astype(np.int64) - off
            src = t_idx - back
            vals = np.full(len(t_idx), np.nan, dtype=np.float32)
            ok = src >= 0
            vals[ok] = panel.z[src[ok], n_idx[ok]]
            out[f"seasonal_{m}"] = vals
        if self.calendar:
            target_times = panel.grid.times[0] + (t_idx + off) * panel.step
            cal = calendar_features(target_times, holiday=self._holiday_flags(target_times))
            out.update({c: cal[c].to_numpy(dtype=np.float32) for c in cal.columns})
        if self.strategy != "direct":
            # hybrid: direct boosters see a constant column, which LightGBM never splits on
            out[HORIZON_STEP] = np.full(len(t_idx), step, dtype=np.float32)
        return out

    def _holiday_flags(self, times) -> np.ndarray | None:
        # getattr: models pickled before holidays existed have none
        days = getattr(self, "holidays", None)
        if not days:
            return None
        wanted = pd.DatetimeIndex(pd.to_datetime(list(days))).normalize()
        return pd.DatetimeIndex(times).normalize().isin(wanted)

    def _step_feature_names(self) -> list[str]:
        names = [f"seasonal_{m}" for m in self.seasonal_lags_]
        if self.calendar:
            empty = pd.DatetimeIndex([])
            names += list(calendar_features(empty, holiday=self._holiday_flags(empty)).columns)
        if self.strategy != "direct":
            names.append(HORIZON_STEP)
        return names

    def _design(self, panel: _Panel, base: np.ndarray, t_idx, n_idx, step: int) -> np.ndarray:
        extra = self._step_features(panel, t_idx, n_idx, step)
        if not extra:
            return base
        return np.hstack([base, np.column_stack(list(extra.values()))])

    def _origin_rows(self, panel: _Panel, origins=None) -> tuple[np.ndarray, np.ndarray]:
        """(row, column) grid positions of usable origins: present, with enough history."""
        present = panel.grid.present
        if origins is not None:
            keep = np.zeros(present.shape[0], dtype=bool)
            keep[origins] = True
            present = present & keep[:, None]
        cal = self._service_calendar()
        if cal is not None:  # a closed slot is never an origin
            present = present & cal.is_open(panel.grid.times)[:, None]
        t_idx, n_idx = np.nonzero(present)
        enough = t_idx - panel.first[n_idx] + 1 >= self.min_history
        return t_idx[enough], n_idx[enough]

    # ------------------------------------------------------------------ training
    def _training_set(self, panel: _Panel, base, t_idx, n_idx, step: int):
        """Feature matrix, target, target row and series column of each example for ``step``."""
        steps = self._pooled_steps() if step == POOLED else [step]
        rng = np.random.default_rng(int(self.seed) + step)
        total = len(t_idx) * len(steps)
        cap = self.max_train_rows
        if step != POOLED and self.strategy == "hybrid" and self.direct_max_train_rows:
            cap = self.direct_max_train_rows
        frac = min(1.0, cap / max(total, 1))
        parts = []
        for h in steps:
            target = t_idx + self._offsets(panel, t_idx, h)
            ok = target < panel.z.shape[0]
            y = np.full(len(t_idx), np.nan)
            y[ok] = panel.z[target[ok], n_idx[ok]]
            if panel.anchor is not None:
                y -= self._reference(panel, t_idx, n_idx, h)
            keep = np.flatnonzero(np.isfinite(y))  # NaN targets are masked, not learned
            if frac < 1.0:
                keep = np.sort(rng.choice(keep, size=int(len(keep) * frac), replace=False))
            X = self._design(panel, base[keep], t_idx[keep], n_idx[keep], h)
            parts.append((X, y[keep], target[keep], n_idx[keep]))
        X = np.vstack([p[0] for p in parts])
        return X, *(np.concatenate([p[i] for p in parts]) for i in (1, 2, 3))

    def _lgb_params(self, quantile: float | None, seed_offset: int) -> dict:
        params = {
            "objective": OBJECTIVES[self.objective],
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.colsample,
            "bagging_fraction": self.subsample,
            "bagging_freq": 1 if self.subsample < 1 else 0,
            "seed": int(self.seed) + seed_offset,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        if quantile is not None:
            params["alpha"] = quantile
        extra = dict(self.lgb_params or {})
        for alias in THREAD_PARAMS:
            extra.pop(alias, None)
        params.update(extra)
        # one key only: LightGBM ignores an alias when num_threads is also set
        params["num_threads"] = self._num_threads()
        return params

    def _num_threads(self) -> int:
        """Threads for LightGBM: ``n_jobs`` unless ``lgb_params`` names a thread count."""
        extra = self.lgb_params or {}
        given = [extra[a] for a in THREAD_PARAMS if a in extra]
        return int(given[0]) if given else int(self.n_jobs)

    def _train_booster(self, X, y, target_row, quantile, seed_offset: int, names) -> lgb.Booster:
        if self.objective in ("poisson", "tweedie") and np.nanmin(y) < 0:
            raise ValueError(f"objective={self.objective!r} needs non-negative targets")
        params = self._lgb_params(quantile, seed_offset)
        rounds = int(self.n_estimators)
        if self.early_stopping_rounds:
            rounds = self._early_stopped_rounds(X, y, target_row, params, names)
        data = lgb.Dataset(X, y, feature_name=names, free_raw_data=True)
        return lgb.train(params, data, num_boost_round=rounds)

    def _early_stopped_rounds(self, X, y, target_row, params, names) -> int:
        """Trees chosen on the latest targets; training rows end before validation starts."""
        times = np.unique(target_row)
        cut = times[int(len(times) * (1 - float(self.validation_fraction)))]
        # a gap of one horizon keeps validation targets out of training features
        train = target_row < cut - int(self.horizon)
        valid = target_row >= cut
        if train.sum() == 0 or valid.sum() == 0:
            return int(self.n_estimators)
        dtrain = lgb.Dataset(X[train], y[train], feature_name=names)
        dvalid = lgb.Dataset(X[valid], y[valid], feature_name=names, reference=dtrain)
        booster = lgb.train(
            params,
            dtrain,
            num_boost_round=int(self.n_estimators),
            valid_sets=[dvalid],
            callbacks=[lgb.early_stopping(int(self.early_stopping_rounds), verbose=False)],
        )
        return max(1, int(booster.best_iteration or self.n_estimators))

    # ------------------------------------------------------------------ predict
    def _predict(self, history: pd.DataFrame, horizon: int, covariates) -> pd.DataFrame:
        self._check_horizon(horizon)
        grid = to_matrix(history, self.freq_)
        panel = self._panel(history, grid, upto=len(grid.times))
        last = grid.present.shape[0] - 1 - np.argmax(grid.present[::-1], axis=0)
        short = last - panel.first + 1 < self.min_history
        if short.any():
            raise ValueError(
                f"{type(self).__name__} needs at least {self.min_history} steps of history per "
                f"series; too short: {list(grid.ids[short][:20])}"
            )
        n_idx = np.arange(len(grid.ids))
        out = self._forecast(panel, last, n_idx, horizon, covariates)
        return out.drop(columns="origin")

    def _predict_origins(
        self, df: pd.DataFrame, origins, horizon: int, covariates: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """Vectorised rolling-origin forecasts: one feature build, one call per booster.

        A (series, origin) pair is forecast when the series has a row at the origin and at
        least ``min_history`` steps up to it; other pairs are skipped. Unseen series under
        ``normalize_per_series`` are scaled with their data up to the first origin.
        """
        self._check_horizon(horizon)
        grid = to_matrix(df, self.freq_)
        rows = grid.times.get_indexer(pd.DatetimeIndex(origins))
        rows = np.unique(rows[rows >= 0])
        if len(rows) == 0:
            return pd.DataFrame(columns=[SERIES_ID, TIMESTAMP, HORIZON_STEP, YHAT, "origin"])
        panel = self._panel(df, grid, upto=int(rows.min()) + 1)
        t_idx, n_idx = self._origin_rows(panel, rows)
        return self._forecast(panel, t_idx, n_idx, horizon, covariates)

    def _check_horizon(self, horizon: int) -> None:
        if horizon > int(self.horizon):
            raise ValueError(
                f"this model was trained for horizon {self.horizon}; asked for {horizon} steps. "
                f"Refit with horizon={horizon}"
            )

    def _forecast(
        self, panel: _Panel, t_idx, n_idx, horizon: int, covariates: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        base = self._origin_features(panel, t_idx, n_idx)
        scale = panel.scale[n_idx]
        origin_times = panel.grid.times[0] + t_idx * panel.step
        future = self._future_table(covariates)
        frames = []
        for h in range(1, horizon + 1):
            X = self._design(panel, base, t_idx, n_idx, h)
            key = self._booster_key(h)
            target_times = origin_times + self._offsets(panel, t_idx, h) * panel.step
            if panel.anchor is not None:
                reference = self._reference(panel, t_idx, n_idx, h, count=True)
            fut, covered = _lookup(future, panel.grid.ids[n_idx], target_times, len(t_idx))
            preds = {}
            for q in self._quantile_levels():
                z = self.boosters_[(key, q)].predict(X, num_threads=self._num_threads())
                if covered.any():
                    Xf = np.hstack([X[covered], fut[covered]])
                    z[covered] = self.future_boosters_[(key, q)].predict(
                        Xf, num_threads=self._num_threads()
                    )
                if panel.anchor is not None:
                    z = z + reference
                preds[q] = self._inverse(z, scale)
            frame = pd.DataFrame(
                {
                    SERIES_ID: panel.grid.ids[n_idx],
                    TIMESTAMP: target_times,
                    HORIZON_STEP: h,
                    "origin": origin_times,
                }
            )
            frame = self._add_predictions(frame, preds)
            frame = self._recalibrate(frame, h, covered)
            if self.future_covariates_:
                frame[COVARIATE_MODE] = np.where(covered, "future", "history")
            frames.append(frame)
        out = pd.concat(frames, ignore_index=True)
        self.covariate_mode_ = forecast_mode(out)
        # same column order as the base class: forecast columns, extras, then origin
        return out[[c for c in out.columns if c != "origin"] + ["origin"]]

    def _origin_features(self, panel: _Panel, t_idx, n_idx) -> np.ndarray:
        """Origin features of the ``(t_idx, n_idx)`` pairs, computed at those origins only.

        Training needs the features at every row (:meth:`_origin_block`); a forecast needs them
        at its origins -- one row per series in ``predict`` -- so they are evaluated at the
        distinct origin rows only (:mod:`citybrain_ml.features.origin`), each reading the
        :meth:`_origin_span` rows that end at it. Step features read ``panel.z`` directly.
        """
        names = self.feature_names_[: len(self.feature_names_) - len(self._step_feature_names())]
        if not len(t_idx):
            return _gather(self._origin_block(panel), t_idx, n_idx)
        rows, inv = np.unique(t_idx, return_inverse=True)
        feats = features_at_rows(
            panel.z,
            rows,
            self.lags,
            self.rolling_windows,
            self.rolling_stats,
            self.diffs,
            self.ewm_halflives,
        )
        if self.adjacency is not None:
            feats.update(
                neighbour_features_at_rows(
                    panel.z,
                    rows,
                    self.adjacency,
                    panel.grid.ids,
                    lags=self.neighbour_lags,
                    windows=self.neighbour_windows,
                    two_hop=self.two_hop,
                )
            )
        covs = {f"cov_{c}": m for c, m in panel.covariates.items()}
        if [*feats, *covs] != names:
            # a feature this fast path does not know: build the block on the rows it reads
            return self._origin_block_features(panel, t_idx, n_idx)
        out = np.empty((len(t_idx), len(names)), dtype=np.float32)
        for j, mat in enumerate(feats.values()):
            out[:, j] = mat[inv, n_idx]
        for j, mat in enumerate(covs.values(), start=len(feats)):
            out[:, j] = mat[t_idx, n_idx]
        return out

    def _origin_block_features(self, panel: _Panel, t_idx, n_idx) -> np.ndarray:
        """:meth:`_origin_block` on the rows from the first origin's span to the last origin."""
        lo = max(int(t_idx.min()) - self._origin_span() + 1, 0)
        rows = slice(lo, int(t_idx.max()) + 1)
        # the block reads z, covariates and the series ids only; times stay the full grid's
        window = replace(
            panel, z=panel.z[rows], covariates={c: m[rows] for c, m in panel.covariates.items()}
        )
        return _gather(self._origin_block(window), t_idx - lo, n_idx)

    def _future_table(self, covariates: pd.DataFrame | None) -> pd.DataFrame | None:
        """Future covariates indexed by (series_id, timestamp), or None in history mode."""
        names = getattr(self, "future_covariates_", [])
        if covariates is None or not names:
            return None
        lacking = [c for c in (SERIES_ID, TIMESTAMP, *names) if c not in covariates.columns]
        if lacking:
            raise ValueError(
                f"covariates frame lacks column(s) {lacking}; the model reads future values of "
                f"{names} at each target time"
            )
        table = covariates[[SERIES_ID, TIMESTAMP, *names]]
        keys = pd.MultiIndex.from_arrays(
            [table[SERIES_ID].astype(object), pd.DatetimeIndex(pd.to_datetime(table[TIMESTAMP]))]
        )
        if keys.has_duplicates:
            sid, ts = keys[keys.duplicated()][0]
            raise ValueError(f"covariates frame repeats (series_id, timestamp) = ({sid!r}, {ts})")
        return pd.DataFrame(table[names].to_numpy(dtype=np.float32), index=keys, columns=names)

    def _add_predictions(self, frame: pd.DataFrame, preds: dict) -> pd.DataFrame:
        if self.objective != "quantile":
            frame[YHAT] = preds[None]
            return frame
        levels = sorted(preds)
        # rearrangement: sorting per row makes the quantiles non-crossing
        ordered = np.sort(np.column_stack([preds[q] for q in levels]), axis=1)
        frame[YHAT] = ordered[:, levels.index(0.5)]
        for j, q in enumerate(levels):
            if q in {float(x) for x in self.quantiles}:
                frame[quantile_column(q)] = ordered[:, j]
        return frame

    # ------------------------------------------------------------------ CQR calibration
    def _calibrate(self, df: pd.DataFrame) -> dict[int, np.ndarray] | None:
        """Split-conformal scores for ``yhat`` (as the base class) plus CQR scores.

        Same split as :meth:`Forecaster._calibrate` (clone fitted without the calibration
        tail of in-service steps, at most ~200 origins over the tail), with the quantile
        columns and the future-mode forecasts scored too. Sets ``cqr_scores_`` =
        ``{mode: {(q_lo, q_hi): {step: sorted scores}}}`` and, with ``calibration_groups``,
        ``cqr_group_scores_`` = ``{mode: {group: <same>}}``.
        """
        self._check_calibration_groups()
        self.cqr_scores_ = {}
        self.cqr_group_scores_ = {}
        return super()._calibrate(df)

    def _calibration_scores(self, model, df: pd.DataFrame, origins) -> dict | None:
        horizon = self._max_horizon()
        truth = df[[SERIES_ID, TIMESTAMP, VALUE]]
        modes = {"history": None}
        if model.future_covariates_ and self._cqr_pairs():
            modes["future"] = df[[SERIES_ID, TIMESTAMP, *model.future_covariates_]]
        point = None
        self.cqr_scores_, self.cqr_group_scores_ = {}, {}
        for mode, cov in modes.items():
            fc = model.historical_forecasts(df, origins, horizon, covariates=cov)
            fc = fc.merge(truth, on=[SERIES_ID, TIMESTAMP]).dropna(subset=[VALUE, YHAT])
            if fc.empty:
                continue
            self.cqr_scores_[mode] = self._cqr_scores(fc)
            if self.calibration_groups:
                groups = self._calibration_group(fc[SERIES_ID])
                self.cqr_group_scores_[mode] = {
                    str(g): self._cqr_scores(part) for g, part in fc.groupby(groups)
                }
            if point is None:  # the base-class intervals stay history-mode, as documented
                err = (fc[VALUE] - fc[YHAT]).abs()
                point = {int(h): np.sort(e.to_numpy()) for h, e in err.groupby(fc[HORIZON_STEP])}
        self._calibration_model = model  # reused by _fit when calibration_refit=False
        return point

    def _add_intervals(self, fc: pd.DataFrame, levels: list[int]) -> pd.DataFrame:
        """Levels matching a conformalised quantile pair use that pair; others are symmetric.

        The CQR pair (e.g. P5/P95 for 90%) is asymmetric, follows the predicted spread and,
        for a log1p target, never goes below zero -- unlike +-|residual| quantiles.
        """
        pairs = {}
        if getattr(self, "cqr_scores_", None):
            pairs = {round(100 * (hi - lo), 6): (lo, hi) for lo, hi in self._cqr_pairs()}
        symmetric = [lv for lv in levels if round(float(lv), 6) not in pairs]
        fc = super()._add_intervals(fc, symmetric) if symmetric else fc.copy()
        for level in levels:
            pair = pairs.get(round(float(level), 6))
            if pair is not None:
                lo, hi = interval_columns(level)
                fc[lo] = fc[quantile_column(pair[0])]
                fc[hi] = fc[quantile_column(pair[1])]
        return fc

    def _cqr_pairs(self) -> list[tuple[float, float]]:
        """Symmetric quantile pairs ``(q, 1 - q)`` among ``quantiles`` with ``q < 0.5``."""
        if self.objective != "quantile":
            return []
        qs = {round(float(q), 9) for q in self.quantiles}
        return [(q, round(1 - q, 9)) for q in sorted(qs) if q < 0.5 and round(1 - q, 9) in qs]

    def _cqr_forward(self, x) -> np.ndarray:
        # log scale for log targets: the correction then scales with the level
        x = np.asarray(x, dtype=float)
        return np.log1p(x) if self.target_transform == "log1p" else x

    def _cqr_inverse(self, z: np.ndarray) -> np.ndarray:
        return np.expm1(z) if self.target_transform == "log1p" else z

    def _cqr_scores(self, fc: pd.DataFrame) -> dict:
        """Conformity scores ``max(lo - y, y - hi)`` per quantile pair and horizon step."""
        y = self._cqr_forward(fc[VALUE])
        out = {}
        for q_lo, q_hi in self._cqr_pairs():
            lo = self._cqr_forward(fc[quantile_column(q_lo)])
            hi = self._cqr_forward(fc[quantile_column(q_hi)])
            score = pd.Series(np.maximum(lo - y, y - hi), index=fc.index)
            out[(q_lo, q_hi)] = {
                int(h): np.sort(e.to_numpy()) for h, e in score.groupby(fc[HORIZON_STEP])
            }
        return out

    def _recalibrate(self, frame: pd.DataFrame, step: int, covered: np.ndarray) -> pd.DataFrame:
        """Shift each quantile pair of one horizon step by its CQR correction."""
        scores = getattr(self, "cqr_scores_", None)
        if not scores or not self._cqr_pairs():
            return frame
        groups = self._calibration_group(frame[SERIES_ID]) if self._grouped() else None
        for q_lo, q_hi in self._cqr_pairs():
            shift = np.zeros(len(frame))
            level = 100 * (q_hi - q_lo)
            for mode, rows in (("history", ~covered), ("future", covered)):
                for where, table in self._cqr_tables(mode, (q_lo, q_hi), rows, groups):
                    shift[where] = conformal_quantile(table[_nearest(table, step)], level)
            lo, hi = quantile_column(q_lo), quantile_column(q_hi)
            lo_new = self._cqr_inverse(self._cqr_forward(frame[lo]) - shift)
            hi_new = self._cqr_inverse(self._cqr_forward(frame[hi]) + shift)
            # a negative shift narrows the pair, but never past the median
            frame[lo] = np.minimum(lo_new, frame[YHAT].to_numpy())
            frame[hi] = np.maximum(hi_new, frame[YHAT].to_numpy())
        cols = [quantile_column(q) for q in sorted({float(q) for q in self.quantiles})]
        frame[cols] = np.sort(frame[cols].to_numpy(), axis=1)  # nested pairs stay ordered
        return frame

    def _cqr_tables(self, mode: str, pair, rows: np.ndarray, groups):
        """``(row mask, step -> scores)`` pairs covering ``rows``: per group where calibrated."""
        pooled = (self.cqr_scores_.get(mode) or self.cqr_scores_.get("history") or {}).get(pair)
        if not rows.any():
            return []
        if groups is None:
            return [(rows, pooled)] if pooled else []
        by_group = self.cqr_group_scores_.get(mode) or self.cqr_group_scores_.get("history") or {}
        out, rest = [], rows.copy()
        for name, tables in by_group.items():
            where = rows & (groups == name)
            if where.any() and tables.get(pair):
                out.append((where, tables[pair]))
                rest &= ~where
        if rest.any() and pooled:
            out.append((rest, pooled))
        return out

    def _check_calibration_groups(self) -> None:
        import re

        if not self.calibration_groups:
            return
        try:
            groups = re.compile(self.calibration_groups).groups
        except re.error as exc:
            raise ValueError(f"calibration_groups is not a regular expression: {exc}") from exc
        if groups != 1:
            raise ValueError(
                f"calibration_groups needs exactly one capture group, got {groups}: "
                f"{self.calibration_groups!r} (e.g. '/(.+)$')"
            )

    def _grouped(self) -> bool:
        return bool(self.calibration_groups and getattr(self, "cqr_group_scores_", None))

    def _calibration_group(self, series_ids: pd.Series) -> np.ndarray:
        """The ``calibration_groups`` capture of each series id ("" where it does not match)."""
        found = pd.Series(series_ids).astype(str).str.extract(self.calibration_groups, expand=False)
        return found.fillna("").astype(str).to_numpy(dtype=object)

    # ------------------------------------------------------------------ introspection
    def feature_importance(self, by_step: bool = False) -> pd.DataFrame:
        """Gain and split importance of each feature.

        Parameters
        ----------
        by_step : bool
            One block of rows per booster (``horizon_step``, and ``quantile`` for the quantile
            objective) instead of the mean over boosters.

        Returns
        -------
        DataFrame
            ``feature, gain, split`` (+ ``horizon_step``, ``quantile`` when ``by_step``),
            sorted by gain, largest first. The pooled model reports ``horizon_step`` 0.
        """
        self._check_fitted()
        rows = []
        for (step, q), booster in self.boosters_.items():
            rows.append(
                pd.DataFrame(
                    {
                        HORIZON_STEP: step,
                        "quantile": np.nan if q is None else q,
                        "feature": booster.feature_name(),
                        "gain": booster.feature_importance("gain"),
                        "split": booster.feature_importance("split").astype(float),
                    }
                )
            )
        imp = pd.concat(rows, ignore_index=True)
        if by_step:
            return imp.sort_values(
                [HORIZON_STEP, "gain"], ascending=[True, False], ignore_index=True
            )
        mean = imp.groupby("feature", sort=False)[["gain", "split"]].mean().reset_index()
        return mean.sort_values("gain", ascending=False, ignore_index=True)


# ---------------------------------------------------------------------- helpers
def _lookup(table: pd.DataFrame | None, ids, times, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Future covariate rows for (ids[i], times[i]) and a mask of the rows the table covers."""
    if table is None:
        return np.empty((n, 0), dtype=np.float32), np.zeros(n, dtype=bool)
    wanted = pd.MultiIndex.from_arrays([np.asarray(ids, dtype=object), pd.DatetimeIndex(times)])
    pos = table.index.get_indexer(wanted)
    covered = pos >= 0
    values = np.full((n, table.shape[1]), np.nan, dtype=np.float32)
    values[covered] = table.to_numpy()[pos[covered]]
    return values, covered


def _gather(block: dict[str, np.ndarray], t_idx, n_idx) -> np.ndarray:
    """Rows ``(t_idx[i], n_idx[i])`` of every (T, N) feature, as an (rows, F) float32 matrix."""
    out = np.empty((len(t_idx), len(block)), dtype=np.float32)
    for j, mat in enumerate(block.values()):
        out[:, j] = mat[t_idx, n_idx]
    return out
