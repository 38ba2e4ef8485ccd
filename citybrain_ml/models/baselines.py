"""Baselines every learned model must beat: last value, seasonal naive, time-of-week average.

All three count horizons in service steps under a calendar with closed slots: step ``h`` is
the ``h``-th open slot after the origin, and the seasonal naive looks back whole seasons in
calendar time (the same slot one day earlier).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from citybrain_ml.data.calendar import steps_per_day
from citybrain_ml.data.schema import HORIZON_STEP, SERIES_ID, TIMESTAMP, VALUE, YHAT
from citybrain_ml.models.base import Forecaster, future_index, target_times


def _grid(df: pd.DataFrame, freq: str) -> pd.DataFrame:
    """Timestamps x series matrix on the full regular grid (NaN where missing)."""
    wide = df.pivot(index=TIMESTAMP, columns=SERIES_ID, values=VALUE)
    full = pd.date_range(wide.index.min(), wide.index.max(), freq=freq)
    return wide.reindex(full)


def _origin_frame(
    wide: pd.DataFrame, origins, horizon: int, freq: str, values, calendar=None
) -> pd.DataFrame:
    """Long forecast frame from ``values[o, h, n]`` for origins x steps x series."""
    origins = pd.DatetimeIndex(origins)
    targets = target_times(origins, horizon, freq, calendar)
    n_o, n_s = len(origins), wide.shape[1]
    steps = np.arange(1, horizon + 1)
    o_idx = np.repeat(np.arange(n_o), horizon * n_s)
    h_idx = np.tile(np.repeat(steps, n_s), n_o)
    s_idx = np.tile(np.arange(n_s), n_o * horizon)
    return pd.DataFrame(
        {
            SERIES_ID: wide.columns.to_numpy()[s_idx],
            TIMESTAMP: targets[o_idx, h_idx - 1],
            HORIZON_STEP: h_idx,
            YHAT: np.asarray(values, dtype=float).reshape(-1),
            "origin": origins.to_numpy()[o_idx],
        }
    )


def _grid_offsets(origins, horizon: int, freq: str, calendar) -> np.ndarray:
    """``(n_origins, horizon)`` grid steps from each origin to its targets."""
    if calendar is not None and calendar.has_closed:
        return calendar.offsets(origins, horizon)
    return np.broadcast_to(np.arange(1, horizon + 1), (len(origins), horizon))


def default_season(freq: str) -> int:
    """One day in steps for sub-daily data, one week for daily data, else 1."""
    per_day = steps_per_day(freq)
    if per_day and per_day > 1:
        return per_day
    return 7 if per_day == 1 else 1


def _positions(wide: pd.DataFrame, origins) -> np.ndarray:
    pos = wide.index.get_indexer(pd.DatetimeIndex(origins))
    if (pos < 0).any():
        bad = pd.DatetimeIndex(origins)[pos < 0][:3]
        raise ValueError(f"origins {list(bad)} are not on the data's time grid")
    return pos


class LastValue(Forecaster):
    """Persistence: every future step equals the last observed (non-missing) value.

    Parameters
    ----------
    horizon : int
        Longest horizon used to calibrate intervals.
    calibration_steps : int, optional
        Trailing steps held out for split-conformal intervals (None = default, 0 = off).
    """

    service_aware = True

    def __init__(self, horizon: int = 12, calibration_steps: int | None = None):
        self.horizon = horizon
        self.calibration_steps = calibration_steps

    def _history_to_keep(self) -> int:
        # enough to step back over a run of missing readings
        return 288

    def _fit(self, df: pd.DataFrame) -> None:
        pass

    def _predict_origins(self, df, origins, horizon):
        wide = _grid(df, self.freq_)
        last = wide.ffill().to_numpy()[_positions(wide, origins)]  # (origins, series)
        values = np.repeat(last[:, None, :], horizon, axis=1)
        return _origin_frame(wide, origins, horizon, self.freq_, values, self._service_calendar())

    def _predict(self, history, horizon, covariates):
        last = history.dropna(subset=[VALUE]).groupby(SERIES_ID, sort=False)[VALUE].last()
        out = future_index(history, horizon, self.freq_, self._service_calendar())
        out[YHAT] = out[SERIES_ID].map(last).to_numpy(dtype=float)
        return out


class SeasonalNaive(Forecaster):
    """Each future step repeats the value one season earlier.

    Parameters
    ----------
    season_length : int, optional
        Grid steps per season in calendar time (96 = one day at 15 min, 168 = a week at
        1 h), also under a service calendar: closed slots are grid steps too. ``None`` = one
        day for sub-daily data, one week for daily data.
    horizon, calibration_steps : see :class:`LastValue`.
    """

    service_aware = True

    def __init__(
        self,
        season_length: int | None = None,
        horizon: int = 12,
        calibration_steps: int | None = None,
    ):
        self.season_length = season_length
        self.horizon = horizon
        self.calibration_steps = calibration_steps

    def _season(self) -> int:
        if self.season_length is not None:
            return int(self.season_length)
        freq = getattr(self, "freq_", None)
        return default_season(freq) if freq else 1

    @property
    def min_history(self) -> int:
        return self._season()

    def _fit(self, df: pd.DataFrame) -> None:
        pass

    def _predict_origins(self, df, origins, horizon):
        m = self._season()
        wide = _grid(df, self.freq_)
        arr = wide.to_numpy()
        pos = _positions(wide, origins)
        off = _grid_offsets(origins, horizon, self.freq_, self._service_calendar())
        src = pos[:, None] + off - m * np.ceil(off / m).astype(int)
        values = np.where((src >= 0)[..., None], arr[np.clip(src, 0, None)], np.nan)
        return _origin_frame(wide, origins, horizon, self.freq_, values, self._service_calendar())

    def _predict(self, history, horizon, covariates):
        m = self._season()
        out = future_index(history, horizon, self.freq_, self._service_calendar())
        offset = pd.Timedelta(pd.tseries.frequencies.to_offset(self.freq_))
        last = out[SERIES_ID].map(history.groupby(SERIES_ID, sort=False)[TIMESTAMP].max())
        steps = ((out[TIMESTAMP] - last) // offset).to_numpy(dtype=np.int64)
        back = m * np.ceil(steps / m).astype(int)
        lookup = history.set_index([SERIES_ID, TIMESTAMP])[VALUE]
        keys = pd.MultiIndex.from_arrays(
            [out[SERIES_ID].to_numpy(), out[TIMESTAMP].to_numpy() - back * offset]
        )
        out[YHAT] = lookup.reindex(keys).to_numpy(dtype=float)
        return out


class HistoricalAverage(Forecaster):
    """Mean of the training values in the same time-of-week slot, per series.

    Falls back to the series mean for slots never seen in training.

    Parameters
    ----------
    period : {"week", "daytype", "day"}
        Seasonal profile to average over: time of week, time of day separately for
        weekdays and weekends (``"daytype"``, for histories shorter than two weeks), or
        time of day.
    horizon, calibration_steps : see :class:`LastValue`.
    """

    service_aware = True

    def __init__(
        self, period: str = "week", horizon: int = 12, calibration_steps: int | None = None
    ):
        self.period = period
        self.horizon = horizon
        self.calibration_steps = calibration_steps

    def _slot(self, ts: pd.Series) -> np.ndarray:
        ts = pd.DatetimeIndex(ts)
        seconds = ts.hour * 3600 + ts.minute * 60 + ts.second
        if self.period == "week":
            seconds = seconds + ts.day_of_week * 86400
        elif self.period == "daytype":
            seconds = seconds + (ts.day_of_week >= 5) * 86400
        elif self.period != "day":
            raise ValueError(f"period must be 'week', 'daytype' or 'day', got {self.period!r}")
        return np.asarray(seconds)

    def _fit(self, df: pd.DataFrame) -> None:
        obs = df.dropna(subset=[VALUE])
        slot = self._slot(obs[TIMESTAMP])
        self.profile_ = obs.groupby([obs[SERIES_ID].to_numpy(), slot])[VALUE].mean()
        self.series_mean_ = obs.groupby(SERIES_ID)[VALUE].mean()

    def _predict_origins(self, df, origins, horizon):
        wide = _grid(df, self.freq_)
        zeros = np.zeros((len(origins), horizon, wide.shape[1]))
        frame = _origin_frame(wide, origins, horizon, self.freq_, zeros, self._service_calendar())
        frame[YHAT] = self._lookup(frame)
        return frame

    def _lookup(self, out: pd.DataFrame) -> np.ndarray:
        keys = pd.MultiIndex.from_arrays([out[SERIES_ID].to_numpy(), self._slot(out[TIMESTAMP])])
        yhat = self.profile_.reindex(keys).to_numpy(dtype=float)
        unseen = np.isnan(yhat)
        self._fallback(
            "unseen_slot_series_mean",
            int(unseen.sum()),
            f"{int(unseen.sum())} of {len(yhat)} forecasts are for {self.period} slots never "
            "seen in training and use the series mean instead",
        )
        fallback = out[SERIES_ID].map(self.series_mean_).to_numpy(dtype=float)
        return np.where(unseen, fallback, yhat)

    def _predict(self, history, horizon, covariates):
        out = future_index(history, horizon, self.freq_, self._service_calendar())
        out[YHAT] = self._lookup(out)
        return out
