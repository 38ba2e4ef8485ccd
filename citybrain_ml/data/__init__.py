"""Data access: the canonical long format, validation, dataset loaders and gridding."""

from citybrain_ml.data.adjacency import (
    adjacency_from_coordinates,
    expand_sensors,
    expand_station_graph,
    read_adjacency,
    station_series_ids,
)
from citybrain_ml.data.grid import GridSpec, events_to_grid
from citybrain_ml.data.loaders import (
    DATASETS,
    load_beijing_multisite,
    load_beijing_pm25,
    load_bengaluru_metro,
    load_chicago_accident_grid,
    load_chicago_crime,
    load_chicago_crime_grid,
    load_dataset,
    load_i94,
    load_los_loop,
    load_sz_taxi,
    load_toronto_mci,
    load_toronto_mci_grid,
)
from citybrain_ml.data.quality import duplicate_series
from citybrain_ml.data.schema import SeriesDataset, matrix_to_edges, wide_to_long
from citybrain_ml.data.tables import ColumnMapping, load_table
from citybrain_ml.data.validation import DataValidationError, validate_dataset, validate_long

__all__ = [
    "DATASETS",
    "ColumnMapping",
    "DataValidationError",
    "GridSpec",
    "SeriesDataset",
    "adjacency_from_coordinates",
    "duplicate_series",
    "events_to_grid",
    "expand_sensors",
    "expand_station_graph",
    "load_beijing_multisite",
    "load_beijing_pm25",
    "load_bengaluru_metro",
    "load_chicago_accident_grid",
    "load_chicago_crime",
    "load_chicago_crime_grid",
    "load_dataset",
    "load_i94",
    "load_los_loop",
    "load_sz_taxi",
    "load_table",
    "load_toronto_mci",
    "load_toronto_mci_grid",
    "matrix_to_edges",
    "read_adjacency",
    "station_series_ids",
    "validate_dataset",
    "validate_long",
    "wide_to_long",
]
