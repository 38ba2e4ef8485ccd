"""Feature builders shared by the tabular models.

Everything is computed at a forecast origin from data at or before it:

* :mod:`~citybrain_ml.features.lag_transforms` -- lags, rolling stats, diffs, EWM, seasonal lags;
* :mod:`~citybrain_ml.features.calendar` -- hour, day of week, weekend, time-of-day cycle;
* :mod:`~citybrain_ml.features.graph` -- neighbour means over the sensor adjacency;
* :mod:`~citybrain_ml.features.wind` -- wind direction labels/degrees (+ speed) -> u/v.
"""

from citybrain_ml.features.calendar import add_calendar_features, calendar_features
from citybrain_ml.features.graph import (
    add_neighbour_features,
    neighbour_features,
    neighbour_mean,
    neighbour_weights,
)
from citybrain_ml.features.lag_transforms import (
    Matrix,
    add_lag_features,
    diff_features,
    ewm_features,
    lag_features,
    rolling_features,
    seasonal_lag,
    to_matrix,
)
from citybrain_ml.features.wind import add_wind_components, wind_bearing, wind_components

__all__ = [
    "Matrix",
    "add_calendar_features",
    "add_lag_features",
    "add_neighbour_features",
    "add_wind_components",
    "calendar_features",
    "diff_features",
    "ewm_features",
    "lag_features",
    "neighbour_features",
    "neighbour_mean",
    "neighbour_weights",
    "rolling_features",
    "seasonal_lag",
    "to_matrix",
    "wind_bearing",
    "wind_components",
]
