"""Turn point events (crimes, accidents) into counts per grid cell per period.

Cells are squares of ``cell_size_m`` metres on a local equirectangular projection: metres
north are ``(lat - lat0) * M_PER_DEG`` and metres east are ``(lon - lon0) * M_PER_DEG *
cos(ref_lat)`` with ``ref_lat`` the latitude of the grid's centre. Over a city (tens of km)
the distortion is far below a cell. Row 0 is the southern edge, column 0 the western edge.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE, SeriesDataset

#: metres per degree of latitude on a sphere of the mean Earth radius (6,371,008.8 m)
M_PER_DEG = np.pi * 6_371_008.8 / 180.0


@dataclass(frozen=True)
class GridSpec:
    """A regular grid of square cells.

    Parameters
    ----------
    lat0, lon0 : float
        South-west corner of cell (row 0, col 0), degrees.
    cell_size_m : float
        Side of a cell in metres.
    n_rows, n_cols : int
        Cells north-south and west-east.
    """

    lat0: float
    lon0: float
    cell_size_m: float
    n_rows: int
    n_cols: int

    @property
    def ref_lat(self) -> float:
        """Latitude of the grid centre, where east-west metres are measured."""
        return self.lat0 + self.n_rows * self.cell_size_m / (2 * M_PER_DEG)

    def cell_of(self, lat, lon) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of each point (may be outside ``0..n-1``)."""
        north = (np.asarray(lat, float) - self.lat0) * M_PER_DEG
        east = (np.asarray(lon, float) - self.lon0) * M_PER_DEG * np.cos(np.radians(self.ref_lat))
        return (
            np.floor(north / self.cell_size_m).astype(np.int64),
            np.floor(east / self.cell_size_m).astype(np.int64),
        )

    def centroids(self) -> tuple[np.ndarray, np.ndarray]:
        """Latitude and longitude of every cell centre, row-major ``(n_rows * n_cols,)``."""
        rows, cols = np.divmod(np.arange(self.n_rows * self.n_cols), self.n_cols)
        lat = self.lat0 + (rows + 0.5) * self.cell_size_m / M_PER_DEG
        lon = self.lon0 + (cols + 0.5) * self.cell_size_m / (
            M_PER_DEG * np.cos(np.radians(self.ref_lat))
        )
        return lat, lon

    @classmethod
    def covering(cls, lat, lon, cell_size_m: float) -> GridSpec:
        """The smallest grid anchored at the points' south-west corner that covers them all."""
        lat = np.asarray(lat, float)
        lon = np.asarray(lon, float)
        lat0, lon0 = float(lat.min()), float(lon.min())
        n_rows = int(np.floor((lat.max() - lat0) * M_PER_DEG / cell_size_m)) + 1
        probe = cls(lat0, lon0, cell_size_m, n_rows, 1)
        n_cols = int(probe.cell_of(lat, lon)[1].max()) + 1
        return cls(lat0, lon0, float(cell_size_m), n_rows, n_cols)


def cell_ids(n_rows: int, n_cols: int, prefix: str = "cell_", sep: str = "_") -> np.ndarray:
    """Row-major cell names, zero-padded so that string order equals grid order."""
    rows, cols = np.divmod(np.arange(n_rows * n_cols), n_cols)
    wr, wc = len(str(n_rows - 1)), len(str(n_cols - 1))
    return np.array([f"{prefix}{r:0{wr}d}{sep}{c:0{wc}d}" for r, c in zip(rows, cols, strict=True)])


def rook_edges(ids: np.ndarray, n_rows: int, n_cols: int) -> pd.DataFrame:
    """Edges ``src, dst, weight=1`` between cells sharing a side, both directions."""
    index = np.arange(n_rows * n_cols).reshape(n_rows, n_cols)
    pairs = [
        (index[:, :-1].ravel(), index[:, 1:].ravel()),  # east neighbour
        (index[:-1, :].ravel(), index[1:, :].ravel()),  # north neighbour
    ]
    src = np.concatenate([p[0] for p in pairs] + [p[1] for p in pairs])
    dst = np.concatenate([p[1] for p in pairs] + [p[0] for p in pairs])
    order = np.lexsort((dst, src))
    return pd.DataFrame(
        {"src": ids[src[order]], "dst": ids[dst[order]], "weight": np.ones(len(src))}
    )


def events_to_grid(
    events: pd.DataFrame,
    cell_size: float | None = None,
    grid: GridSpec | None = None,
    freq: str = "D",
    start=None,
    end=None,
    weight: str | None = None,
    name: str = "events_grid",
) -> SeriesDataset:
    """Count (or sum a weight of) events per grid cell per period, zeros included.

    Parameters
    ----------
    events : DataFrame
        Event table with ``timestamp, lat, lon`` (as returned by the event loaders).
    cell_size : float, optional
        Cell side in metres; the grid then covers the events' bounding box.
    grid : GridSpec, optional
        A fixed grid (events outside it are dropped with a warning). Give this or
        ``cell_size``.
    freq : str
        Period length: a fixed pandas alias (``"h"``, ``"6h"``, ``"D"``) or a calendar one
        (``"W"``, ``"MS"``), periods labelled by their start.
    start, end : timestamp-like, optional
        First and last period (inclusive); default the events' first and last period.
        Events outside are dropped.
    weight : str, optional
        Column to sum instead of counting (e.g. ``"severity"``).
    name : str
        Dataset name.

    Returns
    -------
    SeriesDataset
        One series ``cell_{row}_{col}`` per cell with a value for every period,
        ``sensors`` = cell centroids (``row, col, lat, lon``), ``adjacency`` = rook
        neighbours, ``extras["grid"]`` = the :class:`GridSpec`.
    """
    _check_event_columns(events, weight)
    if grid is None:
        if cell_size is None or cell_size <= 0:
            raise ValueError("events_to_grid needs cell_size (metres, > 0) or grid=GridSpec(...)")
        grid = GridSpec.covering(events["lat"], events["lon"], cell_size)
    ts = pd.to_datetime(events[TIMESTAMP])
    periods, period_code = _period_codes(ts, freq, start, end)
    rows, cols = grid.cell_of(events["lat"], events["lon"])
    inside = (rows >= 0) & (rows < grid.n_rows) & (cols >= 0) & (cols < grid.n_cols)
    keep = inside & (period_code >= 0) & (period_code < len(periods))
    if (~keep).any():
        warnings.warn(
            f"events_to_grid: dropped {int((~keep).sum())} of {len(keep)} events outside the "
            f"grid ({int((~inside).sum())}) or the period range",
            stacklevel=2,
        )
    n_cells = grid.n_rows * grid.n_cols
    flat = period_code[keep] * n_cells + rows[keep] * grid.n_cols + cols[keep]
    w = None if weight is None else events[weight].to_numpy(float)[keep]
    totals = np.bincount(flat, weights=w, minlength=len(periods) * n_cells)
    matrix = totals.reshape(len(periods), n_cells).astype(float)
    return _grid_dataset(matrix, periods, grid, freq, name)


def _check_event_columns(events: pd.DataFrame, weight: str | None) -> None:
    needed = [TIMESTAMP, "lat", "lon"] + ([weight] if weight else [])
    missing = [c for c in needed if c not in events.columns]
    if missing:
        raise ValueError(f"event table lacks column(s) {missing}; found {list(events.columns)}")
    bad = events[["lat", "lon"]].isna().any(axis=1)
    if bad.any():
        raise ValueError(
            f"event table has {int(bad.sum())} rows without lat/lon "
            f"(first rows {list(np.flatnonzero(bad.to_numpy())[:5] + 1)}); drop them first"
        )


def _period_codes(ts: pd.Series, freq: str, start, end) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """The period start times and each event's period number (-1/len for out of range)."""
    offset = pd.tseries.frequencies.to_offset(freq)
    try:
        step = pd.Timedelta(offset)
    except ValueError:
        step = None
    if step is not None:
        first = pd.Timestamp(start).floor(step) if start is not None else ts.min().floor(step)
        last = pd.Timestamp(end).floor(step) if end is not None else ts.max().floor(step)
        periods = pd.date_range(first, last, freq=step)
        code = ((ts - first) // step).to_numpy(dtype=np.int64)
        # events before `first` get negative codes from floor division: dropped later
        return periods, code
    ev = ts.dt.to_period(offset)
    first = pd.Period(start, freq=offset) if start is not None else ev.min()
    last = pd.Period(end, freq=offset) if end is not None else ev.max()
    pidx = pd.period_range(first, last, freq=offset)
    code = (ev.array.asi8 - first.ordinal).astype(np.int64)
    return pidx.start_time, code


def _grid_dataset(matrix, periods, grid: GridSpec, freq: str, name: str) -> SeriesDataset:
    ids = cell_ids(grid.n_rows, grid.n_cols)
    n_periods, n_cells = matrix.shape
    values = pd.DataFrame(
        {
            SERIES_ID: np.repeat(ids, n_periods),
            TIMESTAMP: np.tile(periods.to_numpy(), n_cells),
            VALUE: matrix.T.ravel(),
        }
    )
    rows, cols = np.divmod(np.arange(n_cells), grid.n_cols)
    lat, lon = grid.centroids()
    sensors = pd.DataFrame({SERIES_ID: ids, "row": rows, "col": cols, "lat": lat, "lon": lon})
    return SeriesDataset(
        values=values,
        freq=freq,
        sensors=sensors,
        adjacency=rook_edges(ids, grid.n_rows, grid.n_cols),
        name=name,
        source="events",
        extras={"grid": grid},
    )


# ---------------------------------------------------------------------- boundaries
@dataclass(frozen=True)
class Boundary:
    """An area (a city limit, a police district) as polygons in longitude/latitude.

    Parameters
    ----------
    polygons : tuple
        One entry per polygon: a tuple of rings, each an ``(n, 2)`` array of
        ``(lon, lat)`` vertices; the first ring is the outer edge, the others are holes.
    source : str
        Where the polygons came from (used in messages and run records).
    """

    polygons: tuple
    source: str = ""

    @classmethod
    def from_geojson(cls, path) -> Boundary:
        """Read every Polygon/MultiPolygon of a GeoJSON file (Feature, FeatureCollection...).

        Raises
        ------
        DataValidationError
            Unreadable file, no polygon in it, or coordinates that are not WGS84 lon/lat.
        """
        import json
        from pathlib import Path

        from citybrain_ml.data.validation import DataValidationError

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"boundary file {path} not found")
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DataValidationError(f"{path}: not a readable GeoJSON file: {exc}") from exc
        polygons = []
        for geometry in _geometries(doc):
            if geometry.get("type") == "Polygon":
                polygons.append(geometry.get("coordinates") or [])
            elif geometry.get("type") == "MultiPolygon":
                polygons.extend(geometry.get("coordinates") or [])
        rings = tuple(
            tuple(np.asarray(ring, dtype=float)[:, :2] for ring in poly if len(ring) >= 3)
            for poly in polygons
        )
        rings = tuple(p for p in rings if p)
        if not rings:
            raise DataValidationError(
                f"{path}: no Polygon or MultiPolygon geometry found; a boundary must be an area"
            )
        points = np.concatenate([ring for poly in rings for ring in poly])
        if (np.abs(points[:, 0]) > 180).any() or (np.abs(points[:, 1]) > 90).any():
            raise DataValidationError(
                f"{path}: coordinates out of longitude/latitude range (e.g. {points[0].tolist()});"
                " GeoJSON boundaries must be WGS84 [lon, lat], not projected metres"
            )
        return cls(rings, str(path))

    def bounds(self) -> tuple[float, float, float, float]:
        """``(lat_min, lat_max, lon_min, lon_max)`` of the outer rings."""
        outer = np.concatenate([poly[0] for poly in self.polygons])
        return outer[:, 1].min(), outer[:, 1].max(), outer[:, 0].min(), outer[:, 0].max()

    def contains(self, lat, lon) -> np.ndarray:
        """Whether each point lies inside (even-odd rule per polygon, so holes are outside)."""
        from matplotlib.path import Path as MplPath

        points = np.column_stack([np.asarray(lon, float), np.asarray(lat, float)])
        inside = np.zeros(len(points), dtype=bool)
        for poly in self.polygons:
            parity = np.zeros(len(points), dtype=bool)
            for ring in poly:
                parity ^= MplPath(ring).contains_points(points)
            inside |= parity
        return inside

    def cell_share(self, grid: GridSpec, samples: int = 5) -> np.ndarray:
        """Approximate share of each cell's area inside, row-major ``(n_rows * n_cols,)``.

        Measured on a ``samples x samples`` lattice of points per cell: a cell that the
        boundary only clips keeps a share between 0 and 1.
        """
        offsets = (np.arange(samples) + 0.5) / samples
        rows, cols = np.divmod(np.arange(grid.n_rows * grid.n_cols), grid.n_cols)
        north = (rows[:, None, None] + offsets[None, :, None]) * grid.cell_size_m
        east = (cols[:, None, None] + offsets[None, None, :]) * grid.cell_size_m
        north, east = np.broadcast_arrays(north, east)
        lat = grid.lat0 + north / M_PER_DEG
        lon = grid.lon0 + east / (M_PER_DEG * np.cos(np.radians(grid.ref_lat)))
        inside = self.contains(lat.ravel(), lon.ravel())
        return inside.reshape(len(rows), -1).mean(axis=1)


def _geometries(doc) -> list[dict]:
    """The geometries of a GeoJSON object, flattened out of features and collections."""
    if not isinstance(doc, dict):
        return []
    kind = doc.get("type")
    if kind == "FeatureCollection":
        return [g for f in doc.get("features") or [] for g in _geometries(f)]
    if kind == "Feature":
        return _geometries(doc.get("geometry"))
    if kind == "GeometryCollection":
        return [g for sub in doc.get("geometries") or [] for g in _geometries(sub)]
    return [doc]


def boundary_grid(boundary: Boundary, cell_size_m: float) -> GridSpec:
    """The smallest grid anchored at the boundary's south-west corner that covers it."""
    lat_min, lat_max, lon_min, lon_max = boundary.bounds()
    return GridSpec.covering([lat_min, lat_max], [lon_min, lon_max], cell_size_m)
