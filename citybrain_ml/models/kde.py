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

Cell positions come from ``coordinates`` (``series_id, x, y`` in metres) or, by default,
from grid ids ``r{row}_c{col}`` / ``cell_{row}_{col}`` times ``cell_size_m``. The kernel
width is ``bandwidth_m`` metres; ``bandwidth`` (older configs) is the same width in cell
sides (in the coordinates' unit when ``coordinates`` are given), and the only way to set it
on a grid of unknown cell size (the GSNet accident grid). A job on an events grid passes
its ``cell_size_m`` to the model.

``time_profile="auto"`` (default) follows the data's frequency: the hour-of-day share for
sub-daily data, the day-of-week share for daily data, none for coarser periods.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import FORECAST_COLUMNS, HORIZON_STEP, SERIES_ID, TIMESTAMP, YHAT
from citybrain_ml.features.lag_transforms import to_matrix
from citybrain_ml.models.base import Forecaster

TIME_PROFILES = ("auto", "none", "day", "week")
_GRID_ID = re.compile(r"^(?:r|cell_)(\d+)_c?(\d+)$")


class KDEHotspotForecaster(Forecaster):
    """Gaussian-kernel smoothed cell rates, optionally shaped by a city-wide time profile.

    Parameters
    ----------
    horizon : int
        Longest horizon in steps (the forecast does not depend on the step beyond the
        time profile).
    bandwidth_m : float, optional
        Kernel standard deviation in metres; needs ``cell_size_m`` (grid ids) or metric
        ``coordinates``.
    bandwidth : float, optional
        The same in cell sides (or the unit of ``coordinates``), kept for older configs and
        grids without a metric size. Give one of the two; neither means one cell side.
    window : int, optional
        Steps of history before each origin used for the rates; ``None`` uses the whole
        training window and ignores the history at forecast time.
    time_profile : {"auto", "none", "day", "week"}
        City-wide multiplicative profile over the hour of day / hour of week; ``auto``
        picks from the data's frequency (``day`` below a day, ``week`` for daily data,
        ``none`` above).
    coordinates : DataFrame, optional
        ``series_id, x, y`` cell-centre coordinates in metres (local projection).
    cell_size_m : float, optional
        Side of a grid-id cell in metres (set by jobs from an events grid).
    calibration_steps : int, optional
        Trailing steps held out for split-conformal intervals (None = default, 0 = off).
    """

    def __init__(
        self,
        horizon: int = 1,
        bandwidth_m: float | None = None,
        bandwidth: float | None = None,
        window: int | None = None,
        time_profile: str = "auto",
        coordinates: pd.DataFrame | None = None,
        cell_size_m: float | None = None,
        calibration_steps: int | None = 0,
    ):
        self.horizon = horizon
        self.bandwidth_m = bandwidth_m
        self.bandwidth = bandwidth
        self.window = window
        self.time_profile = time_profile
        self.coordinates = coordinates
        self.cell_size_m = cell_size_m
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
        self.time_profile_ = resolve_time_profile(self.time_profile, self.freq_)
        self.width_, self.unit_ = self._width()
        grid = to_matrix(df, self.freq_)
        self.ids_ = np.asarray(grid.ids, dtype=object)
        self.kernel_ = self._kernel(self.ids_)
        self.rate_ = pd.Series(self._smooth(np.nanmean(grid.values, axis=0)), index=self.ids_)
        self.profile_ = self._time_profile(grid)

    def _width(self) -> tuple[float, str]:
        """Kernel width in the unit of :meth:`_positions`, and that unit."""
        if self.bandwidth_m is not None and self.bandwidth is not None:
            raise ValueError("give bandwidth_m (metres) or bandwidth (cells), not both")
        if self.cell_size_m is not None and not self.cell_size_m > 0:
            raise ValueError(f"cell_size_m must be > 0, got {self.cell_size_m}")
        width = self.bandwidth_m if self.bandwidth_m is not None else self.bandwidth
        if width is not None and not width > 0:
            raise ValueError(f"bandwidth must be > 0, got {width}")
        if self.coordinates is not None:
            # coordinates are metres; an older `bandwidth` was in their unit as well
            return float(width if width is not None else 1.0), "m"
        if self.cell_size_m is None:
            if self.bandwidth_m is not None:
                raise ValueError(
                    "bandwidth_m is in metres but the grid's cell size is unknown: give "
                    "cell_size_m, coordinates (x, y in metres) or bandwidth in cells"
                )
            return float(width if width is not None else 1.0), "cells"
        if self.bandwidth_m is not None:
            return float(self.bandwidth_m), "m"
        cells = 1.0 if self.bandwidth is None else float(self.bandwidth)
        return cells * float(self.cell_size_m), "m"

    @property
    def bandwidth_m_(self) -> float | None:
        """Fitted kernel width in metres (None on a grid of unknown cell size)."""
        self._check_fitted()
        return self.width_ if self.unit_ == "m" else None

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
        # x = column (east), y = row (north), in cells (metres with a known cell size)
        cells = np.array([(int(m.group(2)), int(m.group(1))) for m in parsed], dtype=float)
        return cells * float(self.cell_size_m) if self.cell_size_m is not None else cells

    def _kernel(self, ids: np.ndarray) -> np.ndarray:
        """Row-normalised Gaussian weights ``(N, N)``: row i averages the cells around i."""
        pos = self._positions(ids)
        d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(axis=-1)
        weights = np.exp(-d2 / (2.0 * self.width_**2))
        return weights / weights.sum(axis=1, keepdims=True)

    def _smooth(self, rates: np.ndarray) -> np.ndarray:
        """Kernel-weighted mean of per-cell rates (NaN rates skipped)."""
        seen = ~np.isnan(rates)
        num = self.kernel_ @ np.where(seen, rates, 0.0)
        den = self.kernel_ @ seen.astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)

    def _time_profile(self, grid) -> pd.Series | None:
        if self.time_profile_ == "none":
            return None
        total = pd.Series(np.nanmean(grid.values, axis=1), index=grid.times)
        slots = _slot(grid.times, self.time_profile_)
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
        slots = _slot(target, self.time_profile_)
        return self.profile_.reindex(slots).fillna(1.0).to_numpy()


def resolve_time_profile(profile: str, freq: str) -> str:
    """``auto`` -> ``day`` below a day, ``week`` for daily (up to weekly), else ``none``.

    A profile over the hour of day is flat on daily data, and one over the hour of week
    is the day-of-week profile there: pick what the data can show.
    """
    if profile != "auto":
        return profile
    step = step_of(freq)
    if step is None or step > pd.Timedelta(days=1):
        return "none"
    return "day" if step < pd.Timedelta(days=1) else "week"


def step_of(freq: str) -> pd.Timedelta | None:
    """The fixed length of a pandas frequency, or None for calendar ones (``W``, ``MS``)."""
    offset = pd.tseries.frequencies.to_offset(freq)
    try:
        return pd.Timedelta(offset)
    except ValueError:
        return None


def _slot(times: pd.DatetimeIndex, profile: str) -> np.ndarray:
    times = pd.DatetimeIndex(times)
    hour = times.hour.to_numpy()
    return times.dayofweek.to_numpy() * 24 + hour if profile == "week" else hour
