"""Future covariates (e.g. a weather forecast) travelling with a history frame or file.

A forecast request may carry known-in-advance inputs for the forecast window. Two ways in:

* rows after the forecast origin in the history frame itself, with ``value`` empty and the
  covariate columns filled -- one frame, so a pyfunc batch-scores it unchanged (Spark too);
* a separate file ``series_id, timestamp, <covariates>`` (``data.future_covariates`` in a
  job config).

Models that read future covariates use them where they cover a target hour and fall back to
history-only features elsewhere; the forecast says which mode each row used.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from citybrain_ml.data.io import read_frame
from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE
from citybrain_ml.data.validation import DataValidationError

# forecast column written by models that read future covariates: "future" or "history"
COVARIATE_MODE = "covariate_mode"


def covariate_names(frame: pd.DataFrame) -> list[str]:
    """Columns of a long frame other than ``series_id, timestamp, value``."""
    return [c for c in frame.columns if c not in (SERIES_ID, TIMESTAMP, VALUE)]


def last_observed(frame: pd.DataFrame) -> pd.Timestamp:
    """Latest timestamp with an observed target: the default forecast origin."""
    observed = frame[VALUE].notna().to_numpy()
    if not observed.any():
        raise DataValidationError("history has no observed values (every value is missing)")
    if observed.all():  # the usual case: no copy of a city-scale timestamp column
        return pd.Timestamp(frame[TIMESTAMP].max())
    return pd.Timestamp(frame.loc[observed, TIMESTAMP].max())


def split_future(
    frame: pd.DataFrame, as_of=None
) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.Timestamp]:
    """Split a request frame into history (up to the origin) and future covariates.

    Parameters
    ----------
    frame : DataFrame
        Long frame; rows after the origin carry covariates for the forecast window.
    as_of : str or Timestamp, optional
        Forecast origin; default: the last timestamp with an observed value.

    Returns
    -------
    (history, future, origin)
        ``future`` is ``series_id, timestamp, <covariates>`` after the origin, or None when
        the frame has no covariate columns or no later rows.
    """
    origin = pd.Timestamp(as_of) if as_of else last_observed(frame)
    later = frame[TIMESTAMP] > origin
    if not later.any():  # nothing after the origin: the frame itself, not a copy
        return frame.reset_index(drop=True), None, origin
    history = frame[~later].reset_index(drop=True)
    names = covariate_names(frame)
    if not names:
        return history, None, origin
    future = frame.loc[later, [SERIES_ID, TIMESTAMP, *names]].reset_index(drop=True)
    return history, future, origin


def read_future_covariates(path: str | Path) -> pd.DataFrame:
    """Read a future-covariate file ``series_id, timestamp, <covariates>`` (CSV or Parquet).

    Parameters
    ----------
    path : str or Path
        File with one row per series and forecast timestamp.

    Returns
    -------
    DataFrame
        With parsed timestamps; errors name the file, column and row.
    """
    frame = read_frame(path)
    lacking = [c for c in (SERIES_ID, TIMESTAMP) if c not in frame.columns]
    if lacking:
        raise DataValidationError(f"{path}: future covariates lack column(s) {lacking}")
    if not covariate_names(frame.drop(columns=[VALUE], errors="ignore")):
        raise DataValidationError(f"{path}: no covariate columns besides series_id, timestamp")
    stamps = pd.to_datetime(frame[TIMESTAMP], errors="coerce")
    bad = stamps.isna() & frame[TIMESTAMP].notna()
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise DataValidationError(
            f"{path}: column 'timestamp', row {row + 2}: cannot parse "
            f"{frame[TIMESTAMP].iloc[row]!r} as a timestamp"
        )
    frame = frame.assign(**{TIMESTAMP: stamps}).drop(columns=[VALUE], errors="ignore")
    dup = frame.duplicated([SERIES_ID, TIMESTAMP])
    if dup.any():
        row = int(dup.to_numpy().nonzero()[0][0])
        raise DataValidationError(
            f"{path}: row {row + 2}: duplicate (series_id, timestamp) "
            f"({frame[SERIES_ID].iloc[row]!r}, {frame[TIMESTAMP].iloc[row]})"
        )
    return frame


def forecast_mode(forecast: pd.DataFrame) -> str:
    """``"future"``, ``"history"`` or ``"mixed"``: which inputs a forecast frame used."""
    if COVARIATE_MODE not in forecast.columns or forecast.empty:
        return "history"
    modes = set(forecast[COVARIATE_MODE].astype(str))
    return modes.pop() if len(modes) == 1 else "mixed"
