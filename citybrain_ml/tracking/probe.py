"""Fail fast on an unusable MLflow tracking store, before any data is read or run created.

MLflow's own client retries a dead HTTP server for minutes; a scheduled job should instead
say in one line, within seconds, that the server did not answer.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

#: seconds to wait for the tracking server's answer
PROBE_TIMEOUT_SECONDS = 4.0


def probe_tracking(uri: str | None = None, timeout: float = PROBE_TIMEOUT_SECONDS) -> str:
    """Check the tracking store answers; returns the URI used.

    HTTP(S) servers get one ``GET <uri>/health`` with ``timeout`` (any HTTP answer, even an
    error status, proves the server is up; authentication is MLflow's business later), and
    MLflow's own retries are capped (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``, 10 s timeout)
    unless the environment sets them. A ``sqlite:///`` store must be in an existing folder.

    Raises
    ------
    TrackingError
        One line: the URI, what failed, and how long it waited.
    """
    from citybrain_ml.tracking.runs import TrackingError, default_tracking_uri

    uri = uri or default_tracking_uri()
    if uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
                pass
        except urllib.error.HTTPError:
            pass  # the server answered
        except (TimeoutError, urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(
                f"MLflow tracking store {uri} is not usable: the server is not answering "
                f"({reason}; waited at most {timeout:.0f} s); check MLFLOW_TRACKING_URI / "
                "--tracking-uri and that the server is running"
            ) from None
    elif uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).expanduser().parent
        if not folder.is_dir():
            raise TrackingError(
                f"MLflow tracking store {uri} is not usable: folder {folder} does not exist"
            )
    return uri


def parse_levels(text: str | None) -> list[int]:
    """``"80,90"`` -> ``[80, 90]``; one clear :class:`ValueError` for anything else."""
    if text is None or not str(text).strip():
        return []
    levels = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise ValueError(
                f"--levels: {part!r} is not a number; give interval levels in percent, "
                "comma separated, e.g. 80,90 ('' for none)"
            ) from None
        if not (0 < value < 100) or value != int(value):
            raise ValueError(
                f"--levels: {part} is not a whole percentage between 1 and 99, e.g. 80,90"
            )
        levels.append(int(value))
    return levels


def check_horizon(horizon: int | None) -> int | None:
    """``None`` (the model's horizon) or a positive number of steps."""
    if horizon is not None and int(horizon) < 1:
        raise ValueError(
            f"--horizon: {horizon} steps ahead forecasts nothing; give 1 or more "
            "(or leave it out for the model's horizon)"
        )
    return horizon


def check_as_of(as_of: str | None) -> str | None:
    """``None`` (the last observed timestamp) or a zone-less date/time."""
    if as_of is None or not str(as_of).strip():
        return None
    import pandas as pd

    try:
        ts = pd.Timestamp(as_of)
    except (ValueError, TypeError):
        raise ValueError(
            f"--as-of: {as_of!r} is not a date/time; use e.g. 2015-01-28T08:00"
        ) from None
    if ts is pd.NaT:
        raise ValueError(f"--as-of: {as_of!r} is not a date/time; use e.g. 2015-01-28T08:00")
    if ts.tzinfo is not None:
        raise ValueError(
            f"--as-of: {as_of!r} carries a time zone; give the origin in the model's local "
            "time without an offset, e.g. 2015-01-28T08:00"
        )
    return as_of
