"""Value rules for a scheduled batch forecast's input (after :func:`validate_long`).

Rules (each refusal is a :class:`DataValidationError` naming the file and the lines --
line numbers of the file, header = line 1, for CSV; 1-based rows for Parquet):

* **time zones**: timestamps with a zone or UTC offset are refused. Models work on the
  zone-less local time they were trained on; converting silently (e.g. to UTC) would shift
  every feature. Convert to the model's local time and drop the offset first.
* **non-finite values**: ``inf``/``-inf`` are refused by :func:`validate_long` itself.
* **negative values**: the targets forecast here (speeds, flows, counts, concentrations)
  are >= 0, so a negative ``value`` is refused (a sentinel such as ``-1`` or ``-999`` for "no
  reading" belongs in ``missing_value``). ``negative="warn"`` (used by
  ``citybrain data validate``) reports them instead.
* **the clock**: an observed value stamped more than ``clock_tolerance`` (default 1 day)
  after the wall clock is refused -- a clock-skewed row would otherwise become the forecast
  origin -- unless ``--as-of`` names the origin explicitly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE
from citybrain_ml.data.validation import MAX_REPORTED, DataValidationError

#: how far ahead of the wall clock an observed value may be stamped
CLOCK_TOLERANCE = pd.Timedelta("1D")


def first_line(path) -> int:
    """Number of a file's first data row: 2 for CSV (the header is line 1), else 1."""
    from citybrain_ml.data.io import CSV_SUFFIXES

    return 2 if str(path).lower().endswith(CSV_SUFFIXES) else 1


def check_batch_input(
    frame: pd.DataFrame,
    source: str,
    as_of=None,
    negative: str = "refuse",
    now: pd.Timestamp | None = None,
    clock_tolerance: pd.Timedelta = CLOCK_TOLERANCE,
) -> list[str]:
    """Apply the module's rules to a validated (sorted) long frame; returns the warnings
    (``negative="warn"``). Offending rows are named by series and timestamp."""
    warnings = []
    ts = frame[TIMESTAMP]
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise DataValidationError(
            f"{source}: column 'timestamp' carries a time zone ({ts.dtype.tz}); models work in "
            "the zone-less local time they were trained on. Convert to that local time and "
            "drop the offset first (pandas: .dt.tz_convert(<zone>).dt.tz_localize(None))"
        )
    values = frame[VALUE].to_numpy(dtype=float)
    if len(values) and np.isnan(np.fmax.reduce(values)):  # fmax skips NaN: all NaN
        raise DataValidationError(
            f"{source}: column 'value' is missing (empty/NaN) in every row; there is no "
            "history to forecast from"
        )
    lowest = np.fmin.reduce(values) if len(values) else np.nan
    negative_rows = np.flatnonzero(values < 0) if lowest < 0 else np.zeros(0, dtype=np.int64)
    if len(negative_rows) and negative != "allow":
        shown = _describe(frame, negative_rows)
        msg = (
            f"{source}: column 'value' has {len(negative_rows)} negative value(s) ({shown}); "
            "speeds, flows, counts and concentrations are >= 0. If negative numbers mean "
            "'no reading', declare them as the missing value"
        )
        if negative == "refuse":
            raise DataValidationError(msg)
        warnings.append(msg)
    if as_of is None:
        now = pd.Timestamp.now() if now is None else pd.Timestamp(now)
        late = len(ts) and ts.max() > now + clock_tolerance  # one reduction in the usual case
        observed = frame[VALUE].notna().to_numpy() if late else None
        ahead = np.flatnonzero(observed & (ts > now + clock_tolerance).to_numpy()) if late else []
        if len(ahead):
            latest = ts.iloc[ahead].max()
            raise DataValidationError(
                f"{source}: {len(ahead)} observed value(s) are stamped after the clock "
                f"({now:%Y-%m-%d %H:%M}) by more than {clock_tolerance} (latest {latest}): "
                f"{_describe(frame, ahead)}. A skewed clock upstream? Fix the rows, or pass "
                "--as-of to state the forecast origin"
            )
    return warnings


def _describe(frame: pd.DataFrame, positions) -> str:
    parts = []
    for pos in list(positions)[:MAX_REPORTED]:
        parts.append(
            f"series {frame[SERIES_ID].iat[pos]} at {frame[TIMESTAMP].iat[pos]}: "
            f"{frame[VALUE].iat[pos]}"
        )
    more = f" (+{len(positions) - MAX_REPORTED} more)" if len(positions) > MAX_REPORTED else ""
    return "; ".join(parts) + more


def batch_warnings(frame: pd.DataFrame, source: str) -> list[str]:
    """The rules as warnings (for ``citybrain data validate``): what ``forecast`` would
    refuse, and negative values."""
    try:
        return check_batch_input(frame, source, negative="warn")
    except DataValidationError as exc:
        return [f"`citybrain forecast` would refuse this input: {exc}"]
