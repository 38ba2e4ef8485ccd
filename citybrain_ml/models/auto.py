"""``auto``: the default for a city's own data -- never worse than the obvious baseline.

The candidates are derived from the data alone (frequency and history length; no dataset
names, no tuned values): last value, seasonal naive one day back (sub-daily data) and one
week back (when a week and a day of history exist), the time-of-day/-week average and a global
LightGBM (per-series scaling when series differ by an order of magnitude), also as a model of
the residual over the one-day seasonal naive (sub-daily data, 3+ days). Each candidate is
fitted on the data before a validation window and forecasts every validation origin; for
each horizon step the candidate with the lowest validation MAE is kept, so on validation the
result is never worse than the best baseline at any step. The kept candidates are refitted
on all the data.

The validation window matches the day types the forecast will face: the days whose day type
-- and whose previous day's type, which is what a "same slot yesterday" forecast looks at --
equal those of the first forecast day (a Tuesday after a Monday is validated on earlier
weekday-after-weekday days, not on a Monday after a Sunday). When no such day exists, the
last day is used and the fallback is recorded. Intervals come from the kept candidates'
validation residuals (split conformal, in-service observed targets only).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from citybrain_ml.data.calendar import steps_per_day
from citybrain_ml.data.schema import HORIZON_STEP, SERIES_ID, TIMESTAMP, VALUE, YHAT
from citybrain_ml.models.base import Forecaster, service_times, target_times

#: learned candidates must beat this many days of history before they are tried
MIN_TRAIN_DAYS = 1
#: series whose mean levels differ by more than this factor get per-series scaling
SCALE_RATIO = 10.0
#: a candidate without forecasts for more than this share of validation targets sits out
MAX_MISSING = 0.5
#: fewest validation targets per horizon step; more matching days are taken to reach it
MIN_VALIDATION_ROWS = 200
#: fewest validation targets for a (step, day type) cell to get its own choice
MIN_CELL_ROWS = 30
#: a learned candidate must beat the best baseline by this share to be chosen (less variance)
LEARNED_MARGIN = 0.02
#: a (step, day type) cell overrides the step's choice when its winner is this much better
CELL_MARGIN = 0.10
#: with this many days of history, validate on the last full week (every day type)
FULL_WEEK_DAYS = 15


class AutoForecaster(Forecaster):
    """Per-step choice among baselines and LightGBM on a day-type-matched validation window.

    Parameters
    ----------
    horizon : int
        Longest horizon (service steps under a calendar with closed slots).
    validation_days : int
        How many matching days form the validation window (sub-daily data). Daily and
        coarser data validate on the last ``4 * validation_days`` origins instead.
    max_origins : int
        Cap on validation origins (evenly thinned above it) to bound the cost.
    learned : bool
        Also try LightGBM; ``False`` chooses among baselines only.
    holidays : list of str, optional
        Dates (``"2024-12-25"``) counted as weekend days when matching day types.
    adjacency : DataFrame, optional
        Sensor graph handed to LightGBM (neighbour features).
    n_estimators : int
        Trees of the LightGBM candidate.
    n_jobs : int
        LightGBM threads.
    seed : int
        Seed of the LightGBM candidate.
    calibration_steps : int, optional
        Ignored (intervals come from the validation residuals); kept for the contract.

    Attributes
    ----------
    leaderboard_ : DataFrame
        One row per candidate: validation MAE overall and per step, the steps it serves and
        the reason it was kept or dropped.
    selected_ : dict
        Horizon step -> label of the candidate that forecasts it.
    validation_ : dict
        The validation window: days, day type, origins, and any fallback taken.
    """

    service_aware = True

    def __init__(
        self,
        horizon: int = 12,
        validation_days: int = 2,
        max_origins: int = 96,
        learned: bool = True,
        holidays: list | None = None,
        adjacency: pd.DataFrame | None = None,
        n_estimators: int = 200,
        n_jobs: int = 2,
        seed: int = 0,
        calibration_steps: int | None = None,
    ):
        self.horizon = horizon
        self.validation_days = validation_days
        self.max_origins = max_origins
        self.learned = learned
        self.holidays = holidays
        self.adjacency = adjacency
        self.n_estimators = n_estimators
        self.n_jobs = n_jobs
        self.seed = seed
        self.calibration_steps = calibration_steps

    # ------------------------------------------------------------------ sizes
    @property
    def min_history(self) -> int:
        return max((m.min_history for m in getattr(self, "models_", {}).values()), default=1)

    def _history_to_keep(self) -> int:
        models = getattr(self, "models_", {}).values()
        return max((m._history_to_keep() for m in models), default=1)

    def _calibrate(self, df):
        return None  # done in _fit from the validation forecasts

    # ------------------------------------------------------------------ fit
    def _fit(self, df: pd.DataFrame) -> None:
        specs = self._candidates(df)
        origins = self._validation_origins(df)
        train = df[df[TIMESTAMP] <= origins[0]]
        truth = df[[SERIES_ID, TIMESTAMP, VALUE]]
        forecasts = {}
        for label, (kind, params) in specs.items():
            model = _build(kind, params, self.horizon)
            model.fit(train, freq=self.freq_, calendar=self.calendar_)
            fc = model.historical_forecasts(df, origins, int(self.horizon))
            forecasts[label] = fc.merge(truth, on=[SERIES_ID, TIMESTAMP], how="left")
        table = _aligned(forecasts)
        table["day_type"] = self._target_keys(table[TIMESTAMP])
        self.selected_, self.selected_by_day_, self.leaderboard_ = _choose(table, list(specs))
        # normalised conformal scores: one station's error in its own units, so a quiet
        # station does not borrow a busy one's interval width
        level = train[VALUE].abs().groupby(train[SERIES_ID]).mean()
        self.scale_ = level.where(level > 0).fillna(level[level > 0].median()).fillna(1.0)
        self.nonnegative_ = bool((df[VALUE].dropna() >= 0).all())
        self.conformal_scores_ = self._pool_scores(self._residuals(table))
        keep = {*self.selected_.values(), *self.selected_by_day_.values(), "last_value"}
        self.models_ = {
            label: _build(*specs[label], self.horizon).fit(
                df, freq=self.freq_, calendar=self.calendar_
            )
            for label in specs
            if label in keep
        }

    def _candidates(self, df: pd.DataFrame) -> dict[str, tuple[str, dict]]:
        """Candidate models from the frequency and history length alone."""
        per_day = steps_per_day(self.freq_) or 0
        span = pd.Timestamp(df[TIMESTAMP].max()) - pd.Timestamp(df[TIMESTAMP].min())
        specs: dict[str, tuple[str, dict]] = {"last_value": ("last_value", {})}
        if per_day > 1:
            specs["seasonal_naive_day"] = ("seasonal_naive", {"season_length": per_day})
        week = 7 * per_day if per_day >= 1 else 0
        # a week back must exist before the validation days: one week plus a day
        if week and span >= pd.Timedelta("8D"):
            specs["seasonal_naive_week"] = ("seasonal_naive", {"season_length": week})
        if per_day > 1:
            specs["average_daytype"] = ("historical_average", {"period": "daytype"})
        if week and span >= pd.Timedelta("8D"):
            specs["average_week"] = ("historical_average", {"period": "week"})
        if self.learned:
            params = self._lightgbm_params(df)
            specs["lightgbm"] = ("lightgbm", params)
            if per_day > 1 and span >= pd.Timedelta("3D"):
                # learns what changes since the same slot yesterday: with a few days of
                # history this keeps a learned model near the seasonal naive
                specs["lightgbm_seasonal"] = ("lightgbm", {**params, "seasonal_residual": True})
        return specs

    def _lightgbm_params(self, df: pd.DataFrame) -> dict:
        level = df[VALUE].abs().groupby(df[SERIES_ID]).mean().dropna()
        lo, hi = np.nanpercentile(level, [10, 90]) if len(level) else (1.0, 1.0)
        spread = hi / lo if lo > 0 else np.inf
        params = {
            "n_estimators": int(self.n_estimators),
            "n_jobs": int(self.n_jobs),
            "seed": int(self.seed),
            # series an order of magnitude apart share patterns only once scaled
            "target_transform": "normalize_per_series" if spread > SCALE_RATIO else "none",
            "max_train_rows": 250_000,
            "holidays": self.holidays,
        }
        if self.adjacency is not None:
            params["adjacency"] = self.adjacency
        return params

    # ------------------------------------------------------------------ validation window
    def _validation_origins(self, df: pd.DataFrame) -> pd.DatetimeIndex:
        """In-service origins on the days that match the first forecast day's type."""
        cal = self._service_calendar()
        times = pd.DatetimeIndex(service_times(df, cal))
        if len(times) < 3:
            raise ValueError("auto needs at least 3 observed timestamps to validate on")
        per_day = steps_per_day(self.freq_) or 0
        if per_day <= 1:
            n = min(4 * int(self.validation_days), max(1, len(times) // 5))
            return self._thin(times[-n:], {"days": [], "day_type": "n/a", "fallback": ""})
        first_forecast = pd.Timestamp(target_times(times[-1:], 1, self.freq_, cal)[0, 0])
        want = self._day_key(first_forecast.normalize())
        days = times.normalize().unique()
        if days[-1] - days[0] >= pd.Timedelta(days=FULL_WEEK_DAYS - 1):
            # a whole week: every day type is validated, each (step, day type) chooses its own
            week = list(days[-7:])
            origins = times[times.normalize().isin(week)]
            info = {"days": [str(d.date()) for d in week], "day_type": "all (last 7 days)"}
            return self._thin(origins, {**info, "fallback": ""})
        eligible = [d for d in days[::-1] if d - days[0] >= pd.Timedelta(days=MIN_TRAIN_DAYS)]
        n_series = max(df[SERIES_ID].nunique(), 1)
        per_day_rows = n_series * max(len(times) / max(len(days), 1), 1)
        n_days = max(int(self.validation_days), int(np.ceil(MIN_VALIDATION_ROWS / per_day_rows)))
        chosen, fallback = self._match_days(eligible or [days[-1]], want, n_days)
        if fallback:
            self._fallback("validation_day_type_unmatched", 1, fallback)
        origins = times[times.normalize().isin(chosen)]
        info = {"days": [str(d.date()) for d in sorted(chosen)], "day_type": want}
        return self._thin(origins, {**info, "fallback": fallback})

    def _match_days(self, eligible: list, want: str, n: int) -> tuple[list, str]:
        """Most recent days with the forecast day's key; else the same 'same type as the day
        before' relation (what a one-day seasonal naive depends on); else the last day."""
        exact = [d for d in eligible if self._day_key(d) == want][:n]
        if exact:
            return exact, ""
        same = want.split("<-")[0] == want.split("<-")[1]
        related = [d for d in eligible if self._same_as_before(d) == same][:n]
        if related:
            return related, (
                f"no earlier day has the forecast day's type {want}; validating on "
                f"{', '.join(str(d.date()) for d in related)} ({self._day_key(related[0])}), "
                "which relates to its previous day the same way"
            )
        return eligible[:1], (
            f"no earlier day has the forecast day's type {want}; validating on "
            f"{eligible[0].date()} ({self._day_key(eligible[0])})"
        )

    def _same_as_before(self, day: pd.Timestamp) -> bool:
        return self._day_type(day) == self._day_type(day - pd.Timedelta("1D"))

    def _thin(self, origins: pd.DatetimeIndex, info: dict) -> pd.DatetimeIndex:
        stride = max(1, int(np.ceil(len(origins) / max(int(self.max_origins), 1))))
        origins = origins[::stride]
        self.validation_ = {**info, "origins": len(origins), "first": str(origins[0])}
        return origins

    def _day_key(self, day: pd.Timestamp) -> str:
        """``weekday<-weekday`` style: the day's type and the type of the day before."""
        return f"{self._day_type(day)}<-{self._day_type(day - pd.Timedelta('1D'))}"

    def _day_type(self, day: pd.Timestamp) -> str:
        holidays = {pd.Timestamp(h).normalize() for h in (self.holidays or [])}
        if day.day_of_week >= 5 or day.normalize() in holidays:
            return "weekend"
        return "weekday"

    # ------------------------------------------------------------------ selection
    def _residuals(self, table: pd.DataFrame) -> dict[int, np.ndarray]:
        scored = table.dropna(subset=[VALUE])
        out = {}
        chosen = self._choice(scored[HORIZON_STEP], scored["day_type"])
        yhat = np.full(len(scored), np.nan)
        for label in set(chosen):
            rows = chosen == label
            yhat[rows] = scored.loc[rows, label].to_numpy(dtype=float)
        err = pd.Series(np.abs(scored[VALUE].to_numpy() - yhat), index=scored.index)
        err = err / self._scale_of(scored[SERIES_ID])
        for h, part in err.groupby(scored[HORIZON_STEP]):
            out[int(h)] = np.sort(part.dropna().to_numpy())
        return out

    def _choice(self, steps: pd.Series, keys: pd.Series) -> np.ndarray:
        """The chosen candidate of each row: its (step, day type) cell, else its step."""
        by_day = getattr(self, "selected_by_day_", {})
        last = self.selected_[max(self.selected_)]
        return np.array(
            [
                by_day.get((int(h), k), self.selected_.get(int(h), last))
                for h, k in zip(steps, keys, strict=True)
            ],
            dtype=object,
        )

    def _target_keys(self, timestamps) -> np.ndarray:
        """Day-type key of each target's day (``weekday<-weekday``), "all" for daily data."""
        if (steps_per_day(self.freq_) or 0) <= 1:
            return np.full(len(timestamps), "all", dtype=object)
        days = pd.DatetimeIndex(timestamps).normalize()
        keys = {d: self._day_key(d) for d in days.unique()}
        return np.array([keys[d] for d in days], dtype=object)

    def _scale_of(self, series_ids: pd.Series) -> np.ndarray:
        default = float(self.scale_.median()) if len(self.scale_) else 1.0
        return series_ids.map(self.scale_).fillna(default).to_numpy(dtype=float)

    def _add_intervals(self, fc: pd.DataFrame, levels: list[int]) -> pd.DataFrame:
        """Width = normalised score quantile x the series' level; counts never go below 0."""
        scale = self._scale_of(fc[SERIES_ID])
        fc = fc.assign(**{YHAT: fc[YHAT] / scale})
        fc = super()._add_intervals(fc, levels)
        cols = [
            c
            for c in fc.columns
            if c == YHAT or c.startswith("yhat_lo_") or c.startswith("yhat_hi_")
        ]
        fc[cols] = fc[cols].to_numpy() * scale[:, None]
        if getattr(self, "nonnegative_", False):
            fc[cols] = fc[cols].clip(lower=0)
        return fc

    # ------------------------------------------------------------------ predict
    def _predict(self, history, horizon, covariates):
        parts = {
            label: m._predict(history, horizon, covariates) for label, m in self.models_.items()
        }
        return self._combine(parts, [SERIES_ID, TIMESTAMP, HORIZON_STEP])

    def _predict_origins(self, df, origins, horizon):
        parts = {
            label: m._predict_origins(df, origins, horizon) for label, m in self.models_.items()
        }
        return self._combine(parts, [SERIES_ID, TIMESTAMP, HORIZON_STEP, "origin"])

    def _combine(self, parts: dict[str, pd.DataFrame], keys: list[str]) -> pd.DataFrame:
        """Each step from its chosen candidate; NaN forecasts fall back to last value."""
        base = parts["last_value"][keys].copy()
        for label, part in parts.items():
            base = base.merge(
                part[[*keys, YHAT]].rename(columns={YHAT: label}), on=keys, how="left"
            )
        chosen = pd.Series(
            self._choice(base[HORIZON_STEP], self._target_keys(base[TIMESTAMP])), index=base.index
        )
        yhat = np.full(len(base), np.nan)
        for label in parts:
            rows = (chosen == label).to_numpy()
            yhat[rows] = base.loc[rows, label].to_numpy(dtype=float)
        gap = np.isnan(yhat) & base["last_value"].notna().to_numpy()
        self._fallback(
            "nan_forecast_last_value",
            int(gap.sum()),
            f"{int(gap.sum())} forecasts had no value from the chosen model (too little "
            "history a season back) and use the last value",
        )
        yhat[gap] = base.loc[gap, "last_value"].to_numpy(dtype=float)
        return base[keys].assign(**{YHAT: yhat})


# ---------------------------------------------------------------------- helpers
def _build(kind: str, params: dict, horizon: int) -> Forecaster:
    from citybrain_ml.models import make_model

    return make_model(kind, **{"horizon": int(horizon), **params, "calibration_steps": 0})


def _aligned(forecasts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per (origin, series, step) with each candidate's forecast in its own column."""
    keys = ["origin", SERIES_ID, TIMESTAMP, HORIZON_STEP]
    first = next(iter(forecasts.values()))
    table = first[[*keys, VALUE]]
    for label, fc in forecasts.items():
        table = table.merge(fc[[*keys, YHAT]].rename(columns={YHAT: label}), on=keys, how="outer")
    return table


def _choose(table: pd.DataFrame, labels: list[str]):
    """Per step -- and per (step, day type) where the cell has enough targets -- the candidate
    with the lowest validation MAE; a learned one only when it beats the best baseline there by
    :data:`LEARNED_MARGIN`.

    Candidates are compared on the same rows: those where each of them has a forecast. A
    candidate without a forecast for more than half of the validation targets (a season back
    falls before the data or into a gap) is left out of the comparison, and says so.

    Returns
    -------
    selected : dict
        Step -> label (the default for day types without their own choice).
    selected_by_day : dict
        (step, day type) -> label.
    board : DataFrame
        The leaderboard.
    """
    scored = table.dropna(subset=[VALUE])
    if scored.empty:
        raise ValueError("auto: no observed target in the validation window to compare models")
    missing = scored[labels].isna().mean()
    eligible = [c for c in labels if missing[c] <= MAX_MISSING] or ["last_value"]
    common = scored[eligible].notna().all(axis=1)
    rows = scored[common]
    err = rows[eligible].sub(rows[VALUE], axis=0).abs()
    by_step = err.groupby(rows[HORIZON_STEP]).mean()  # (steps, candidates)
    selected = {int(h): _pick(r) for h, r in by_step.iterrows()}
    cells = err.groupby([rows[HORIZON_STEP], rows["day_type"]])
    sizes = cells.size()
    days = rows[TIMESTAMP].dt.normalize().groupby([rows[HORIZON_STEP], rows["day_type"]])
    n_days = days.nunique()
    selected_by_day = {}
    for (h, k), r in cells.mean().iterrows():
        winner, default = _pick(r), selected[int(h)]
        clear = sizes[(h, k)] >= MIN_CELL_ROWS and r[winner] <= (1 - CELL_MARGIN) * r[default]
        # a day type overrides the step's choice only for a clear difference seen on two
        # days, or where the step's choice looks one day back across a change of day type
        # (Monday's "same slot yesterday" is a Sunday) -- not for one day's noise
        if clear and (n_days[(h, k)] >= 2 or (_crosses_day_type(k) and _one_day_back(default))):
            selected_by_day[(int(h), str(k))] = winner
    overall = err.mean()
    baselines = [c for c in eligible if not c.startswith("lightgbm")]
    best_base = overall[baselines].min() if baselines else np.nan
    own = scored[labels].sub(scored[VALUE], axis=0).abs().mean()  # each on its own rows
    board = []
    for label in labels:
        steps = sorted(h for h, c in selected.items() if c == label)
        cells_won = sorted(f"h{h} {k}" for (h, k), c in selected_by_day.items() if c == label)
        if label not in eligible:
            reason = (
                f"dropped: no forecast for {missing[label]:.0%} of the validation targets "
                "(too little history a season back)"
            )
        elif steps or cells_won:
            reason = "kept" + (f" for steps {_ranges(steps)}" if steps else "")
            if cells_won:
                reason += f"; by day type: {len(cells_won)} cell(s), e.g. {cells_won[0]}"
        else:
            reason = f"dropped: never the lowest validation MAE (overall {overall[label]:.4g})"
        mae = overall.get(label, own[label])
        board.append(
            {
                "model": label,
                "validation_mae": float(mae),
                "skill_vs_best_baseline": float(1 - mae / best_base) if best_base > 0 else np.nan,
                "steps": _ranges(steps),
                "day_type_cells": len(cells_won),
                "missing_share": float(missing[label]),
                "rows_compared": int(common.sum()),
                "reason": reason,
                **{
                    f"mae_h{h}": float(by_step.loc[h, label]) if label in eligible else np.nan
                    for h in by_step.index
                },
            }
        )
    board = pd.DataFrame(board).sort_values("validation_mae", ignore_index=True)
    return selected, selected_by_day, board


def _crosses_day_type(key: str) -> bool:
    today, yesterday = str(key).split("<-") if "<-" in str(key) else (key, key)
    return today != yesterday


def _one_day_back(label: str) -> bool:
    """Candidates whose forecast leans on the same slot one day earlier."""
    return label in ("seasonal_naive_day", "lightgbm_seasonal")


def _pick(mae: pd.Series) -> str:
    """Lowest MAE; a learned candidate must beat the best baseline by LEARNED_MARGIN."""
    base = mae[[c for c in mae.index if not c.startswith("lightgbm")]]
    if base.empty:
        return str(mae.idxmin())
    best = str(mae.idxmin())
    if best.startswith("lightgbm") and mae[best] > (1 - LEARNED_MARGIN) * base.min():
        return str(base.idxmin())
    return best


def _ranges(steps: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    out, start = [], None
    for i, s in enumerate(steps):
        if start is None:
            start = s
        if i == len(steps) - 1 or steps[i + 1] != s + 1:
            out.append(f"{start}" if start == s else f"{start}-{s}")
            start = None
    return ", ".join(out)
