"""citybrain_ml: forecasting and optimisation models for a city's traffic, air and incident data.

The public API is small and flat; everything speaks the long format
``series_id, timestamp, value`` (+ covariate columns).
"""

from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE, SeriesDataset

__version__ = "0.1.0"

__all__ = ["SERIES_ID", "TIMESTAMP", "VALUE", "SeriesDataset", "__version__"]
