"""Wind as east/north components: compass labels or degrees (+ speed) -> ``wind_u``, ``wind_v``.

A direction is circular (359 deg and 1 deg are neighbours, "NNW" and "N" too), so models get
the vector instead of the label or angle. Conventions (meteorological):

* the direction is where the wind comes **from**, as a compass bearing: 0/360 = N, 90 = E;
  labels are the 16-point compass ``N NNE NE ENE E ESE SE SSE S SSW SW WSW W WNW NW NNW``
  (8- and 4-point labels are a subset), case-insensitive;
* the components point where the wind blows **towards**: ``u`` (east) = ``-speed * sin(theta)``,
  ``v`` (north) = ``-speed * cos(theta)`` -- so a north wind has ``v = -speed``;
* without a speed the result is the unit vector (speed stays a separate column);
* calm/variable labels (``cv``, ``C``, ``CALM``, ``VRB``) -> ``(0, 0)``: no usable direction;
* a missing direction (or speed) -> NaN; an unknown label or a bearing outside 0..360 -> NaN
  here; :func:`unknown_wind_directions` finds them, and ``load_table`` refuses them with the
  file's line numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: the 16 compass points, clockwise from north, 22.5 degrees apart
COMPASS_POINTS = "N NNE NE ENE E ESE SE SSE S SSW SW WSW W WNW NW NNW".split()
#: labels meaning "calm or variable": no direction, zero vector
CALM_LABELS = ("CV", "C", "CALM", "VRB")

_BEARING = {label: i * 22.5 for i, label in enumerate(COMPASS_POINTS)}


def wind_bearing(direction) -> np.ndarray:
    """Compass bearing in degrees (0 = from the north) from labels or numbers.

    Parameters
    ----------
    direction : array-like
        Compass labels (``"NNE"``, ``"sw"``), bearings in degrees, or a mix of both.

    Returns
    -------
    ndarray
        Degrees in ``[0, 360]``; NaN for missing, calm/variable, unknown labels and
        numbers outside ``[0, 360]``.
    """
    raw = pd.Series(np.asarray(direction, dtype=object))
    numeric = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    labels = raw.where(np.isnan(numeric)).astype("string").str.strip().str.upper()
    bearing = np.where(np.isnan(numeric), labels.map(_BEARING).to_numpy(dtype=float), numeric)
    bearing[(bearing < 0) | (bearing > 360)] = np.nan
    return bearing


def is_calm(direction) -> np.ndarray:
    """True where the direction is a calm/variable label (see :data:`CALM_LABELS`)."""
    raw = pd.Series(np.asarray(direction, dtype=object)).astype("string").str.strip().str.upper()
    return raw.isin(CALM_LABELS).to_numpy(dtype=bool)


def wind_components(direction, speed=None) -> tuple[np.ndarray, np.ndarray]:
    """East/north components of the wind, from the direction it comes from (+ speed).

    Parameters
    ----------
    direction : array-like
        Compass labels (16-point, case-insensitive; ``cv``/``C``/``CALM``/``VRB`` = calm)
        or bearings in degrees (0 = from the north, 90 = from the east).
    speed : array-like, optional
        Wind speed in any unit; the components come out in the same unit. None: unit vector.

    Returns
    -------
    (ndarray, ndarray)
        ``wind_u`` (towards east), ``wind_v`` (towards north); ``(0, 0)`` for calm, NaN for
        missing or unrecognised directions (:func:`unknown_wind_directions` finds them).

    Examples
    --------
    >>> u, v = wind_components(["N", "E", "cv"], speed=[2.0, 3.0, 1.0])
    >>> u.tolist(), v.tolist()
    ([-0.0, -3.0, 0.0], [-2.0, -0.0, 0.0])
    """
    theta = np.radians(wind_bearing(direction))
    u, v = -np.sin(theta), -np.cos(theta)
    calm = is_calm(direction)
    u[calm], v[calm] = 0.0, 0.0
    if speed is not None:
        speed = pd.to_numeric(pd.Series(np.asarray(speed, dtype=object)), errors="coerce")
        u, v = u * speed.to_numpy(dtype=float), v * speed.to_numpy(dtype=float)
    # round away sin/cos noise (cos(90 deg) = 6e-17) so exact comparisons and hashes are stable
    return np.round(u, 12), np.round(v, 12)


def unknown_wind_directions(direction) -> np.ndarray:
    """Positions of values that are present but neither a known label, calm, nor 0..360.

    Parameters
    ----------
    direction : array-like

    Returns
    -------
    ndarray of int
        0-based positions, for error messages.
    """
    raw = pd.Series(np.asarray(direction, dtype=object))
    text = raw.astype("string").str.strip()
    present = (text.notna() & text.ne("")).fillna(False).to_numpy(dtype=bool)
    return np.flatnonzero(present & np.isnan(wind_bearing(raw)) & ~is_calm(raw))


def add_wind_components(
    df: pd.DataFrame,
    direction: str,
    speed: str | None = None,
    prefix: str = "wind",
    drop: bool = False,
) -> pd.DataFrame:
    """Add ``<prefix>_u`` and ``<prefix>_v`` columns computed by :func:`wind_components`.

    Parameters
    ----------
    df : DataFrame
    direction : str
        Column with compass labels or bearings in degrees.
    speed : str, optional
        Column with the wind speed; None adds the unit vector.
    prefix : str
        Name prefix of the new columns.
    drop : bool
        Drop the direction column (a label column cannot be a numeric covariate).

    Returns
    -------
    DataFrame
        A copy with the two new columns.
    """
    u, v = wind_components(df[direction], None if speed is None else df[speed])
    out = df.copy()
    out[f"{prefix}_u"], out[f"{prefix}_v"] = u, v
    return out.drop(columns=direction) if drop else out
