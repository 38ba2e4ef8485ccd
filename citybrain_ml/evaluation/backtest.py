"""Rolling-origin backtests and the fixed-split protocol of the traffic literature.

* :func:`backtest` -- a few windows; at each origin a fresh clone is fitted on data up to
  the origin (or once, at the first origin, with ``refit=False``) and forecasts
  ``horizon`` steps. This is the honest estimate of how a retrained-on-schedule model does.
* :func:`evaluate_protocol` -- fit once before ``test_start``, then score a forecast from
  every origin in the test period (T-GCN / GSNet / DCRNN style: every test window, no refit).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from citybrain_ml.data.schema import HORIZON_STEP, SERIES_ID, TIMESTAMP, VALUE, YHAT, SeriesDataset
from citybrain_ml.data.splits import rolling_origins, unique_timestamps
from citybrain_ml.evaluation.metrics import evaluate
from citybrain_ml.models.base import Forecaster

ORIGIN = "origin"


@dataclass
class BacktestResult:
    """Outcome of :func:`backtest` or :func:`evaluate_protocol`.

    Attributes
    ----------
    forecasts : DataFrame
        ``series_id, timestamp, horizon_step, yhat`` (+ intervals), ``origin`` and the
        actual ``value`` (NaN where the target is missing).
    metrics : DataFrame
        Metrics per horizon step (see :func:`~citybrain_ml.evaluation.evaluate`).
    per_window : DataFrame
        Metrics per origin.
    fit_seconds, predict_seconds : float
        Wall-clock time spent fitting and forecasting, summed over windows.
    origins : list of Timestamp
        Forecast origins, oldest first.
    model : Forecaster, optional
        The last fitted model.
    null_value : float, optional
        Target value treated as missing when scoring (kept for :meth:`summary`).
    dropped_forecasts : int
        Rows with an observed target but no forecast (NaN), left out of every metric; said
        aloud as a :class:`~citybrain_ml.models.base.FallbackWarning` too.
    """

    forecasts: pd.DataFrame
    metrics: pd.DataFrame
    per_window: pd.DataFrame
    fit_seconds: float
    predict_seconds: float
    origins: list = field(default_factory=list)
    model: Forecaster | None = None
    null_value: float | None = None
    dropped_forecasts: int = 0

    def summary(self) -> pd.DataFrame:
        """One overall row pooling every window, series and step."""
        levels = [c.removeprefix("coverage_") for c in self.metrics if c.startswith("coverage_")]
        return evaluate(
            self.forecasts,
            levels=[int(x) for x in levels],
            by=(),
            null_value=self.null_value,
            missing_forecast="drop",
        )


def backtest(
    model: Forecaster,
    data: pd.DataFrame | SeriesDataset,
    horizon: int,
    n_windows: int,
    step: int | None = None,
    refit: bool = True,
    levels: Sequence[int] | None = None,
    progress: bool = True,
    null_value: float | None = None,
    future_covariates: str = "none",
    calendar=None,
) -> BacktestResult:
    """Rolling-origin backtest of ``model`` over the last ``n_windows`` windows of ``data``.

    Parameters
    ----------
    model : Forecaster
        Template; it is cloned (``model.clone()``) and never fitted itself.
    data : DataFrame or SeriesDataset
        Long frame ``series_id, timestamp, value`` (+ covariates).
    horizon : int
        Steps forecast from each origin.
    n_windows : int
        Number of origins; the last window ends at the last timestamp.
    step : int, optional
        Steps between origins; default ``horizon`` (non-overlapping windows).
    refit : bool
        True: fit a fresh clone on the data up to each origin. False: fit once on data up
        to the first origin and forecast every later origin from that model.
    levels : sequence of int, optional
        Interval levels (percent) to forecast and score.
    progress : bool
        Show a progress bar over windows (rich, or tqdm if rich is missing).
    null_value : float, optional
        Target value that means "missing" when scoring (e.g. 0 on METR-LA).
    future_covariates : {"none", "observed"}
        ``"observed"``: models that read future covariates get the *observed* covariate
        values at target times, a perfect-forecast stand-in (an optimistic bound; label it).
        ``"none"``: forecasts use history only.
    calendar : ServiceCalendar or str, optional
        Operating hours; detected when omitted (a SeriesDataset's own calendar is used).
        Origins are in-service timestamps with an observed value.

    Returns
    -------
    BacktestResult
        Forecast rows whose target is missing are kept in ``forecasts`` but not scored; a
        NaN forecast at a known target (e.g. seasonal naive over a gap) is not scored
        either, so compare models on the ``n`` column of the metric tables too.
    """
    df, freq = _unpack(data)
    calendar = _calendar_of(data, df, freq, calendar)
    origins = rolling_origins(_origin_axis(df, calendar), horizon, n_windows, step)
    levels = list(levels) if levels else None
    observed = observed_covariates(df, future_covariates)
    if refit:
        fitted, forecasts, fit_s, pred_s = _refit_windows(
            model, df, (freq, calendar), origins, horizon, levels, progress, observed
        )
    else:
        fitted, fit_s = _fit_timed(model, df[df[TIMESTAMP] <= origins[0]], (freq, calendar))
        start = time.perf_counter()
        forecasts = fitted.historical_forecasts(
            df, origins, horizon, levels=levels, covariates=observed
        )
        pred_s = time.perf_counter() - start
    return _result(forecasts, df, levels, null_value, fit_s, pred_s, origins, fitted)


def evaluate_protocol(
    model: Forecaster,
    data: pd.DataFrame | SeriesDataset,
    test_start,
    horizon: int,
    stride: int = 1,
    levels: Sequence[int] | None = None,
    null_value: float | None = None,
    future_covariates: str = "none",
    calendar=None,
) -> BacktestResult:
    """Fixed-split protocol: fit once before ``test_start``, score every test window.

    Origins run from the last timestamp before ``test_start`` onward, every ``stride``
    steps, as long as all ``horizon`` targets fall inside the test period (complete windows
    only); so with ``stride=1`` every test timestamp except the last ``horizon - 1`` is a
    1-step target exactly once, and every step is scored on the same windows. Inputs before
    ``test_start`` may be used as history (they are in the past at every origin). T-GCN /
    GSNet instead build test windows from test data alone, so their first ``seq_len`` test
    timestamps are never targets; the windows scored otherwise coincide.

    Parameters
    ----------
    model : Forecaster
        Template; a clone is fitted on data strictly before ``test_start``.
    data : DataFrame or SeriesDataset
        Whole series (train and test periods).
    test_start : str or Timestamp
        First timestamp of the test period.
    horizon : int
        Steps forecast from each origin.
    stride : int
        Steps between scored origins.
    levels : sequence of int, optional
        Interval levels to forecast and score.
    null_value : float, optional
        Target value that means "missing" (e.g. 0 on METR-LA).
    future_covariates : {"none", "observed"}
        As in :func:`backtest`: ``"observed"`` hands models the observed covariates at
        target times (perfect-forecast bound); ``"none"`` keeps forecasts history-only.

    Returns
    -------
    BacktestResult
        ``fit_seconds`` is the single fit; ``per_window`` has one row per origin.
    """
    df, freq = _unpack(data)
    calendar = _calendar_of(data, df, freq, calendar)
    horizon, stride = int(horizon), int(stride)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    axis = pd.DatetimeIndex(_origin_axis(df, calendar))
    origins = _protocol_origins(axis, pd.Timestamp(test_start), horizon, stride)
    train = df[df[TIMESTAMP] < pd.Timestamp(test_start)]
    fitted, fit_s = _fit_timed(model, train, (freq, calendar))
    start = time.perf_counter()
    forecasts = fitted.historical_forecasts(
        df,
        origins,
        horizon,
        levels=list(levels) if levels else None,
        covariates=observed_covariates(df, future_covariates),
    )
    pred_s = time.perf_counter() - start
    return _result(forecasts, df, levels, null_value, fit_s, pred_s, origins, fitted)


# ---------------------------------------------------------------------- helpers
COVARIATE_SOURCES = ("none", "observed")


def observed_covariates(df: pd.DataFrame, source: str) -> pd.DataFrame | None:
    """The covariate columns of ``df`` as future covariates, or None for history-only runs.

    Parameters
    ----------
    df : DataFrame
        Long frame ``series_id, timestamp, value`` + covariate columns.
    source : {"none", "observed"}
        ``"observed"`` returns ``series_id, timestamp`` + every covariate column.

    Returns
    -------
    DataFrame or None
    """
    if source not in COVARIATE_SOURCES:
        raise ValueError(f"future_covariates must be one of {COVARIATE_SOURCES}, got {source!r}")
    names = [c for c in df.columns if c not in (SERIES_ID, TIMESTAMP, VALUE)]
    if source == "none" or not names:
        return None
    return df[[SERIES_ID, TIMESTAMP, *names]]


def _unpack(data) -> tuple[pd.DataFrame, str | None]:
    if isinstance(data, SeriesDataset):
        return data.values, data.freq
    if not isinstance(data, pd.DataFrame):
        raise TypeError(
            f"data must be a long DataFrame or a SeriesDataset, got {type(data).__name__}"
        )
    lacking = [c for c in (SERIES_ID, TIMESTAMP, VALUE) if c not in data.columns]
    if lacking:
        raise ValueError(f"data lacks column(s) {lacking}; expected series_id, timestamp, value")
    if not pd.api.types.is_datetime64_any_dtype(data[TIMESTAMP]):
        data = data.assign(**{TIMESTAMP: pd.to_datetime(data[TIMESTAMP])})
    return data, None


def _calendar_of(data, df: pd.DataFrame, freq, calendar):
    """The calendar to evaluate under: given, the dataset's own, or detected once here."""
    from citybrain_ml.data.calendar import resolve_calendar
    from citybrain_ml.models.base import infer_freq

    if calendar is None and isinstance(data, SeriesDataset):
        calendar = data.calendar
    return resolve_calendar(calendar, df, freq or infer_freq(df))


def _origin_axis(df: pd.DataFrame, calendar) -> pd.Series:
    """Timestamps that can be origins: in service, with at least one observed value."""
    from citybrain_ml.models.base import service_times

    return pd.Series(service_times(df, calendar))


def _fit_timed(model: Forecaster, train: pd.DataFrame, freq_cal) -> tuple[Forecaster, float]:
    if train.empty:
        raise ValueError("no training data before the first origin")
    freq, calendar = freq_cal
    start = time.perf_counter()
    fitted = model.clone().fit(train, freq=freq, calendar=calendar)
    return fitted, time.perf_counter() - start


def _refit_windows(model, df, freq, origins, horizon, levels, progress, observed):
    """Fit a fresh clone at each origin and forecast from it; returns timings too."""
    times = unique_timestamps(df)
    frames, fit_s, pred_s, fitted = [], 0.0, 0.0, None
    for origin in _progress(origins, len(origins), f"backtest {type(model).__name__}", progress):
        fitted, seconds = _fit_timed(model, df[df[TIMESTAMP] <= origin], freq)
        fit_s += seconds
        covariates = None
        if observed is not None:
            # covariates for the forecast window only; the target itself stays hidden
            pos = times.get_loc(origin)
            covariates = observed[observed[TIMESTAMP].isin(times[pos + 1 : pos + 1 + horizon])]
        start = time.perf_counter()
        fc = fitted.predict(horizon, covariates=covariates, levels=levels)
        pred_s += time.perf_counter() - start
        frames.append(fc.assign(**{ORIGIN: origin}))
    return fitted, pd.concat(frames, ignore_index=True), fit_s, pred_s


def _protocol_origins(times: pd.DatetimeIndex, test_start, horizon: int, stride: int) -> list:
    if times.tz is not None and test_start.tzinfo is None:
        test_start = test_start.tz_localize(times.tz)
    if not times[0] < test_start <= times[-1]:
        raise ValueError(
            f"test_start {test_start} is outside the data ({times[0]} .. {times[-1]}); "
            "it must leave some training data before it"
        )
    first = int(times.searchsorted(test_start, side="left")) - 1
    last = len(times) - 1 - horizon
    if last < first:
        raise ValueError(
            f"test period from {test_start} has {len(times) - 1 - first} timestamps, fewer than "
            f"horizon {horizon}"
        )
    return list(times[first : last + 1 : stride])


def _result(forecasts, df, levels, null_value, fit_s, pred_s, origins, fitted) -> BacktestResult:
    truth = df[[SERIES_ID, TIMESTAMP, VALUE]]
    forecasts = forecasts.merge(truth, on=[SERIES_ID, TIMESTAMP], how="left")
    forecasts = forecasts.sort_values([ORIGIN, SERIES_ID, HORIZON_STEP], kind="stable")
    forecasts = forecasts.reset_index(drop=True)
    dropped = int((forecasts[YHAT].isna() & forecasts[VALUE].notna()).sum())
    if dropped:
        import warnings

        from citybrain_ml.models.base import FallbackWarning

        warnings.warn(
            f"{type(fitted).__name__}: {dropped} of {len(forecasts)} forecasts at observed "
            "targets are NaN and are left out of the metrics (compare models on the n column)",
            FallbackWarning,
            stacklevel=3,
        )
    kwargs = {"levels": levels, "null_value": null_value, "missing_forecast": "drop"}
    return BacktestResult(
        forecasts=forecasts,
        metrics=evaluate(forecasts, **kwargs),
        per_window=evaluate(forecasts, by=(ORIGIN,), **kwargs),
        fit_seconds=float(fit_s),
        predict_seconds=float(pred_s),
        origins=list(origins),
        model=fitted,
        null_value=null_value,
        dropped_forecasts=dropped,
    )


def _progress(items: Iterable, total: int, description: str, enabled: bool):
    """Iterate ``items`` with a progress bar when enabled and a bar library is installed."""
    if not enabled:
        yield from items
        return
    try:
        from rich.progress import track
    except ImportError:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            yield from items
            return
        yield from tqdm(items, total=total, desc=description)
        return
    yield from track(items, total=total, description=description, transient=True)
