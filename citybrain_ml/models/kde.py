"""Spatial kernel-density hotspot baseline for incident grids.

The classic crime-mapping baseline: the incident rate of every cell is estimated from the
counts around it, weighted by a Gaussian kernel on the distance between cell centres::

    rate_i = sum_j K(d_ij) * r_j / sum_j K(d_ij),     K(d) = exp(-d^2 / (2 bandwidth^2))

with ``r_j`` the mean count of cell ``j`` per step over the training window (or, with
``window`` set, over the last ``window`` steps before each forecast origin: a "prospective"
hotspot map that follows the recent past). Dividing by the kernel mass at ``i`` keeps every
rate on the per-cell scale, so cells at the edge of the grid are not pulled towards zero.

Forecasts are ``rate_i * profile[slot(target)]`` where ``profile`` is the city-wide
time-of-day (or time-of-week) share learnt in training (``time_profile="none"``: flat). The
cell ranking within a period therefore depends only on space, as in the literature baseline.

Cell positions come from ``coordinates`` (``series_id, x, y`` in any unit shared with
``bandwidth``) or, by default, from grid ids ``r{row}_c{col}`` / ``cell_{row}_{col}``
(unit: one cell side).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import FORECAST_COLUMNS, HORIZON_STEP, SERIES_ID, TIMESTAMP, YHAT
from citybrain_ml.features.lag_transforms import to_matrix
from citybrain_ml.models.base import Forecaster

TIME_PROFILES = ("none", "day", "week")
_GRID_ID = re.compile(r"^(?:r|cell_)(\d+)_c?(\d+)$")


class KDEHotspotForecaster(Forecaster):
    """Gaussian-kernel smoothed cell rates, optionally shaped by a city-wide time profile.

    Parameters
    ----------
    horizon : int
        Longest horizon in steps (the forecast does not depend on the step beyond the
        time profile).
    bandwidth : float
        Kernel standard deviation, in the unit of the coordinates (grid ids: cells).
    window : int, optional
        Steps of history before each origin used for the rates; ``None`` uses the whole
        training window and ignores the history at forecast time.
    time_profile : {"none", "day", "week"}
        City-wide multiplicative profile over the hour of day / hour of week.
    coordinates : DataFrame, optional
        ``series_id, x, y`` cell-centre coordinates (e.g. metres on a local projection).
    calibration_steps : int, optional
        Trailing steps held out for split-conformal intervals (None = default, 0 = off).
    """

    def __init__(
        self,
        horizon: int = 1,
        bandwidth: float = 1.0,
        window: int | None = None,
        time_profile: str = "day",
        coordinates: pd.DataFrame | None = None,
        calibration_steps: int | None = 0,
    ):
        self.horizon = horizon
        self.bandwidth = bandwidth
        self.window = window
        self.time_profile = time_profile
        self.coordinates = coordinates
        self.calibration_steps = calibration_steps

    @property
    def min_history(self) -> int:
        return int(self.window or 1)

    # ------------------------------------------------------------------ fit
    def _fit(self, df: pd.DataFrame) -> None:
        if self.time_profile not in TIME_PROFILES:
            raise ValueError(
                f"time_profile must be one of {TIME_PROFILES}, got {self.time_profile!r}"
            )
        if not self.bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0, got {self.bandwidth}")
        grid = to_matrix(df, self.freq_)
        self.ids_ = np.asarray(grid.ids, dtype=object)
        self.kernel_ = self._kernel(self.ids_)
        self.rate_ = pd.Series(self._smooth(np.nanmean(grid.values, axis=0)), index=self.ids_)
        self.profile_ = self._time_profile(grid)

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        if self.coordinates is not None:
            missing = [c for c in (SERIES_ID, "x", "y") if c not in self.coordinates.columns]
            if missing:
                raise ValueError(f"coordinates lacks column(s) {missing}; need series_id, x, y")
            pos = self.coordinates.set_index(SERIES_ID)[["x", "y"]].reindex(ids)
            if pos.isna().any(axis=None):
                bad = pos.index[pos.isna().any(axis=1)][0]
                raise ValueError(f"coordinates has no x/y for series {bad!r}")
            return pos.to_numpy(dtype=float)
        parsed = [_GRID_ID.match(str(i)) for i in ids]
        bad = [i for i, m in zip(ids, parsed, strict=True) if m is None]
        if bad:
            raise ValueError(
                f"series_id {bad[0]!r} is not a grid id (r{{row}}_c{{col}} or "
                "cell_{row}_{col}); pass coordinates=DataFrame(series_id, x, y)"
            )
        # x = column (east), y = row (north), in cells
        return np.array([(int(m.group(2)), int(m.group(1))) for m in parsed], dtype=float)

    def _kernel(self, ids: np.ndarray) -> np.ndarray:
        """Row-normalised Gaussian weights ``(N, N)``: row i averages the cells around i."""
        pos = self._positions(ids)
        d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(axis=-1)
        weights = np.exp(-d2 / (2.0 * float(self.bandwidth) ** 2))
        return weights / weights.sum(axis=1, keepdims=True)

    def _smooth(self, rates: np.ndarray) -> np.ndarray:
        """Kernel-weighted mean of per-cell rates (NaN rates skipped)."""
        seen = ~np.isnan(rates)
        num = self.kernel_ @ np.where(seen, rates, 0.0)
        den = self.kernel_ @ seen.astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)

    def _time_profile(self, grid) -> pd.Series | None:
        if self.time_profile == "none":
            return None
        total = pd.Series(np.nanmean(grid.values, axis=1), index=grid.times)
        slots = _slot(grid.times, self.time_profile)
        overall = total.mean()
        if not overall > 0:
            return None
        return (total.groupby(slots).mean() / overall).rename("profile")

    # ------------------------------------------------------------------ predict
    def _predict(self, history: pd.DataFrame, horizon: int, covariates) -> pd.DataFrame:
        origin = pd.Timestamp(history[TIMESTAMP].max())
        out = self._predict_origins(history, pd.DatetimeIndex([origin]), horizon)
        return out.drop(columns="origin")

    def _predict_origins(self, df: pd.DataFrame, origins, horizon: int) -> pd.DataFrame:
        origins = pd.DatetimeIndex(origins)
        grid = to_matrix(df, self.freq_)
        ids = np.asarray(grid.ids, dtype=object)
        rates = self._origin_rates(grid, origins, ids)  # (n_origins, N)
        offset = pd.Timedelta(pd.tseries.frequencies.to_offset(self.freq_))
        frames = []
        for step in range(1, int(horizon) + 1):
            target = origins + step * offset
            scale = self._profile_at(target)
            frames.append(
                pd.DataFrame(
                    {
                        SERIES_ID: np.tile(ids, len(origins)),
                        TIMESTAMP: np.repeat(target.to_numpy(), len(ids)),
                        HORIZON_STEP: step,
                        YHAT: (rates * scale[:, None]).ravel(),
                        "origin": np.repeat(origins.to_numpy(), len(ids)),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)[[*FORECAST_COLUMNS, "origin"]]

    def _origin_rates(self, grid, origins: pd.DatetimeIndex, ids: np.ndarray) -> np.ndarray:
        if self.window is None:
            fitted = self.rate_.reindex(ids)
            if fitted.isna().any():
                raise ValueError(
                    f"series {fitted.index[fitted.isna()][0]!r} was not in training; "
                    "KDE with window=None only forecasts the fitted cells"
                )
            return np.tile(fitted.to_numpy(), (len(origins), 1))
        rows = grid.times.get_indexer(origins)
        if (rows < 0).any():
            raise ValueError(f"origin {origins[rows < 0][0]} is not a timestamp of the history")
        kernel = self.kernel_ if np.array_equal(ids, self.ids_) else self._kernel(ids)
        observed = ~np.isnan(grid.values)
        cs = np.cumsum(np.where(observed, grid.values, 0.0), axis=0)
        cc = np.cumsum(observed, axis=0).astype(float)
        w = int(self.window)
        start = rows - w
        total = cs[rows] - np.where(start[:, None] >= 0, cs[np.clip(start, 0, None)], 0.0)
        seen = cc[rows] - np.where(start[:, None] >= 0, cc[np.clip(start, 0, None)], 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            local = np.where(seen > 0, total / seen, 0.0)
        return local @ kernel.T

    def _profile_at(self, target: pd.DatetimeIndex) -> np.ndarray:
        if self.profile_ is None:
            return np.ones(len(target))
        slots = _slot(target, self.time_profile)
        return self.profile_.reindex(slots).fillna(1.0).to_numpy()


def _slot(times: pd.DatetimeIndex, profile: str) -> np.ndarray:
    times = pd.DatetimeIndex(times)
    hour = times.hour.to_numpy()
    return times.dayofweek.to_numpy() * 24 + hour if profile == "week" else hour
