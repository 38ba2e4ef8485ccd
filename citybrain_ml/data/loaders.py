"""One entry point per shared dataset, and a registry to load any of them by name.

Every ``load_<name>(root=None, **options)`` reads from ``root`` (the folder holding
``traffic/``, ``air/``, ``incidents/``; default ``$CITYBRAIN_SHARED_DATA`` or
``<repo>/../shared/data``). The bundled slices in ``data_samples/`` have the same layout,
so ``load_sz_taxi(root="data_samples")`` works without the full data.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from citybrain_ml.data.air import load_beijing_multisite, load_beijing_pm25
from citybrain_ml.data.events import load_events, load_events_dataset
from citybrain_ml.data.grid import GridSpec, events_to_grid
from citybrain_ml.data.incidents import (
    load_chicago_accident_grid,
    load_chicago_crime,
    load_toronto_mci,
)
from citybrain_ml.data.schema import SeriesDataset
from citybrain_ml.data.tables import ColumnMapping, load_table
from citybrain_ml.data.traffic import load_bengaluru_metro, load_i94, load_los_loop, load_sz_taxi

#: default cell side for the crime grids: the 3 km of the ST-SHN/STHSL Chicago benchmark
DEFAULT_CELL_M = 3000.0


def load_chicago_crime_grid(
    root: str | Path | None = None,
    cell_size: float = DEFAULT_CELL_M,
    freq: str = "D",
    grid: GridSpec | None = None,
    start=None,
    end=None,
) -> SeriesDataset:
    """Chicago crime events counted per ``cell_size`` m cell per ``freq`` (zeros included)."""
    events = load_chicago_crime(root)
    ds = events_to_grid(events, cell_size, grid, freq, start, end, name="chicago_crime")
    ds.source = "incidents/chicago_crime_2016_2017"
    return ds


def load_toronto_mci_grid(
    root: str | Path | None = None,
    cell_size: float = DEFAULT_CELL_M,
    freq: str = "D",
    grid: GridSpec | None = None,
    start=None,
    end=None,
    min_date: str = "2014-01-01",
) -> SeriesDataset:
    """Toronto major-crime events counted per ``cell_size`` m cell per ``freq``.

    Events that occurred before ``min_date`` are dropped first: the file covers reports
    from 2014 on, and the few late reports of much older occurrences (back to 1966) would
    otherwise stretch the grid over decades of zeros.
    """
    events = load_toronto_mci(root)
    events = events[events["timestamp"] >= pd.Timestamp(min_date)]
    ds = events_to_grid(events, cell_size, grid, freq, start, end, name="toronto_mci")
    ds.source = "incidents/toronto_mci"
    return ds


def _load_table(root=None, *, path, mapping, **options) -> SeriesDataset:
    # `root` is accepted for a uniform signature; a user table is addressed by its path
    return load_table(path, mapping, **options)


#: name -> loader returning a SeriesDataset
DATASETS: dict[str, Callable[..., SeriesDataset]] = {
    "sz_taxi": load_sz_taxi,
    "los_loop": load_los_loop,
    "bengaluru_metro": load_bengaluru_metro,
    "i94": load_i94,
    "beijing_multisite": load_beijing_multisite,
    "beijing_pm25": load_beijing_pm25,
    "chicago_accident_grid": load_chicago_accident_grid,
    "chicago_crime": load_chicago_crime_grid,
    "toronto_mci": load_toronto_mci_grid,
    "table": _load_table,
    # a raw event log of any city: options path, mapping, time_zone, cell_size_m, freq, boundary
    "events": load_events_dataset,
}


def load_dataset(name: str, root: str | Path | None = None, **options) -> SeriesDataset:
    """Load a dataset by registry name.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS` (``"table"`` and ``"events"`` need ``path=`` and
        ``mapping=``).
    root : str or Path, optional
        Data root (see module docstring).
    **options
        Passed to the loader (e.g. ``kind="exits"``, ``cell_size=1000, freq="h"``).

    Returns
    -------
    SeriesDataset

    Raises
    ------
    KeyError
        Unknown name; the message lists the known ones.
    """
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {sorted(DATASETS)}")
    return DATASETS[name](root, **options)


__all__ = [
    "DATASETS",
    "ColumnMapping",
    "GridSpec",
    "events_to_grid",
    "load_bengaluru_metro",
    "load_beijing_multisite",
    "load_beijing_pm25",
    "load_chicago_accident_grid",
    "load_chicago_crime",
    "load_chicago_crime_grid",
    "load_dataset",
    "load_events",
    "load_i94",
    "load_los_loop",
    "load_sz_taxi",
    "load_table",
    "load_toronto_mci",
    "load_toronto_mci_grid",
]
