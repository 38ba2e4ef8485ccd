"""Station graphs from your own files: read, expand to multi-variable series, or build from
coordinates.

Every function returns the library's canonical edge list ``src, dst, weight`` between series
ids (see :class:`~citybrain_ml.data.schema.SeriesDataset`): an edge ``src -> dst`` makes
``src`` a neighbour of ``dst``; self-loops and zero weights are dropped.

* :func:`read_adjacency` -- a dense matrix (CSV with or without an id header, ``.npy``,
  ``.npz``), the pickled ``(ids, id_to_index, matrix)`` triple of the traffic benchmarks
  (METR-LA / PEMS-BAY ``adj_mx.pkl``), or an edge list (CSV/Parquet with ``src, dst[, weight]``).
* :func:`expand_station_graph` -- a graph between stations -> a graph between the series
  ``<station>/<variable>`` (e.g. ``A/in``, ``A/out``) of a multi-variable panel.
* :func:`adjacency_from_coordinates` -- sensors with ``lat``/``lon`` -> edges within a distance
  and/or to the k nearest, Gaussian-kernel or 0/1 weights.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import EDGE_COLUMNS, SERIES_ID, matrix_to_edges
from citybrain_ml.data.validation import DataValidationError

#: separator between station and variable in expanded series ids (``"A/in"``)
STATION_SEPARATOR = "/"
#: mean Earth radius (m), as in the IUGG value used by most GIS tools
EARTH_RADIUS_M = 6_371_008.8

_MATRIX_SUFFIXES = (".npy", ".npz")
_PICKLE_SUFFIXES = (".pkl", ".pickle")
_TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".txt", ".parquet", ".pq")
# accepted names of the two endpoint columns of an edge list, in order of preference
_EDGE_NAMES = (("src", "dst"), ("source", "target"), ("from", "to"))
_NPZ_KEYS = ("adj", "adj_mx", "adjacency", "matrix", "W", "A")
_NPZ_ID_KEYS = ("ids", "sensor_ids", "station_ids")


# ------------------------------------------------------------------------- read
def read_adjacency(path: str | Path, ids: Sequence | None = None) -> pd.DataFrame:
    """Read a station graph from a matrix or edge-list file into an edge list.

    Parameters
    ----------
    path : str or Path
        One of:

        * ``.csv``/``.tsv``/``.txt`` dense matrix: ``n x n`` numbers, optionally with a header
          row of ids and/or a first column of ids (``DataFrame.to_csv()`` output);
        * ``.csv``/``.parquet`` edge list: columns ``src, dst`` (or ``source, target`` or
          ``from, to``) and optional ``weight`` (default 1);
        * ``.npy`` matrix, or ``.npz`` holding one matrix (or a key ``adj``/``adj_mx``/...)
          and optionally its ids under ``ids``/``sensor_ids``;
        * ``.pkl``/``.pickle``: ``(ids, id_to_index, matrix)`` as in the DCRNN traffic
          benchmarks (Python 2 pickles are read too), or a bare matrix. Only open pickles you
          trust: unpickling can run code.
    ids : sequence, optional
        The station/series id of each matrix row, in row order. Required for a matrix without
        ids (``.npy``, header-less CSV); when the file has its own ids, they must be the same
        set (the file's order wins). For an edge list, every endpoint must be in ``ids``.

    Returns
    -------
    DataFrame
        ``src, dst, weight`` with string ids; ``matrix[i, j] = w`` becomes ``ids[i] ->
        ids[j]`` (row = source, like :func:`~citybrain_ml.data.schema.matrix_to_edges`).

    Raises
    ------
    FileNotFoundError
        No such file.
    DataValidationError
        The message names the file and what is wrong: not square, ids missing or not
        matching the matrix, non-numeric or missing cells (with line numbers), unknown
        endpoints in an edge list.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"adjacency file {path} not found")
    ids = None if ids is None else [str(i) for i in ids]
    name = path.name.lower()
    if name.endswith(_TABLE_SUFFIXES):
        table = _read_table(path)
        headerless = not name.endswith((".parquet", ".pq"))
        if _edge_columns(table, headerless) is not None:
            return _edges_from_table(table, path, ids, headerless)
        if not headerless:
            table = _parquet_matrix_as_text(table)
        file_ids, matrix, where = _matrix_from_table(table, path)
    elif name.endswith(_MATRIX_SUFFIXES):
        (file_ids, matrix), where = _read_numpy(path), "id array"
    elif name.endswith(_PICKLE_SUFFIXES):
        (file_ids, matrix), where = _read_pickle(path), "id list"
    else:
        raise DataValidationError(
            f"{path}: unsupported adjacency file type; use one of "
            f"{_TABLE_SUFFIXES + _MATRIX_SUFFIXES + _PICKLE_SUFFIXES}"
        )
    row_ids = _matrix_ids(path, matrix, file_ids, ids, where)
    return matrix_to_edges(matrix, row_ids)


def _read_table(path: Path) -> pd.DataFrame:
    if path.name.lower().endswith((".parquet", ".pq")):
        return pd.read_parquet(path)
    sep = "\t" if path.name.lower().endswith(".tsv") else ","
    # header=None + str: a dense matrix may or may not carry an id header, decided below
    return pd.read_csv(path, sep=sep, header=None, dtype=str, skipinitialspace=True)


def _parquet_matrix_as_text(table: pd.DataFrame) -> pd.DataFrame:
    """A Parquet matrix has its ids as column names: lay it out like a CSV with a header."""
    header = pd.DataFrame([[str(c) for c in table.columns]], columns=range(table.shape[1]))
    body = table.astype(str).set_axis(range(table.shape[1]), axis=1)
    return pd.concat([header, body], ignore_index=True)


def _edge_columns(table: pd.DataFrame, headerless: bool) -> tuple | None:
    """The (src, dst) names when ``table`` is an edge list (header row or Parquet columns)."""
    if headerless and not len(table):
        return None
    header = table.iloc[0] if headerless else table.columns
    names = [str(c).strip().lower() for c in header]
    for src, dst in _EDGE_NAMES:
        if src in names and dst in names:
            return src, dst
    return None


def _edges_from_table(
    table: pd.DataFrame, path: Path, ids: list | None, headerless: bool
) -> pd.DataFrame:
    src_name, dst_name = _edge_columns(table, headerless)
    # CSV: row 0 is the header and data row i is on line i + 2; Parquet: row i is row i + 1
    first_line = 2 if headerless else 1
    if headerless:
        table = table.iloc[1:].set_axis([str(c).strip() for c in table.iloc[0]], axis=1)
        table = table.reset_index(drop=True)
    lower = {str(c).strip().lower(): c for c in table.columns}
    src = table[lower[src_name]].astype(str).str.strip()
    dst = table[lower[dst_name]].astype(str).str.strip()
    weight = _edge_weights(table, lower, path, first_line)
    keep = src.to_numpy() != dst.to_numpy()  # self-loops carry no neighbour information
    edges = pd.DataFrame({"src": src, "dst": dst, "weight": weight})
    bad = np.flatnonzero(edges.duplicated(["src", "dst"], keep=False).to_numpy())
    if len(bad):
        raise DataValidationError(
            f"{path}: edge list repeats (src, dst) pairs on {_lines(bad, first_line)}; "
            "keep one row per edge"
        )
    if ids is not None:
        known = set(ids)
        unknown = np.flatnonzero(~(src.isin(known) & dst.isin(known)).to_numpy())
        if len(unknown):
            shown = [f"{src.iat[i]} -> {dst.iat[i]}" for i in unknown[:5]]
            raise DataValidationError(
                f"{path}: {len(unknown)} edge(s) name ids that are not among the {len(ids)} "
                f"given ids, on {_lines(unknown, first_line)}: {shown}"
            )
    edges = edges[keep & (edges["weight"].to_numpy() != 0)]
    return edges[EDGE_COLUMNS].reset_index(drop=True)


def _edge_weights(table: pd.DataFrame, lower: dict, path: Path, first_line: int) -> np.ndarray:
    if "weight" not in lower:
        return np.ones(len(table))
    raw = table[lower["weight"]]
    weight = pd.to_numeric(raw, errors="coerce")
    bad = np.flatnonzero(weight.isna().to_numpy())
    if len(bad):
        shown = [raw.iat[i] for i in bad[:5]]
        raise DataValidationError(
            f"{path}: column 'weight' is missing or not a number on "
            f"{_lines(bad, first_line)}: {shown}"
        )
    return weight.to_numpy(dtype=float)


def _lines(positions, first_line: int) -> str:
    shown = ", ".join(str(int(p) + first_line) for p in list(positions)[:5])
    more = f" (+{len(positions) - 5} more)" if len(positions) > 5 else ""
    return f"line(s) {shown}{more}"


def _matrix_from_table(table: pd.DataFrame, path: Path) -> tuple[list | None, np.ndarray, str]:
    """Dense matrix from a header-less read: decide whether row 0 / column 0 hold ids."""
    n_rows, n_cols = table.shape
    numeric = table.apply(lambda c: pd.to_numeric(c.str.strip(), errors="coerce"))
    corner_empty = table.iat[0, 0] is None or pd.isna(table.iat[0, 0]) if n_rows else False
    first_row_text = numeric.iloc[0, 1:].isna().any() if n_rows else False
    first_col_text = numeric.iloc[1:, 0].isna().any() if n_rows > 1 else False
    # the shape says which margins are ids: (n+1, n) header, (n, n+1) index, else both or none
    if n_rows == n_cols + 1 and _looks_like_ids(table.iloc[0], numeric.iloc[0]):
        header, index = True, False
    elif n_cols == n_rows + 1 and _looks_like_ids(table.iloc[:, 0], numeric.iloc[:, 0]):
        header, index = False, True
    elif n_rows == n_cols and (corner_empty or first_row_text or first_col_text):
        header, index = True, True
    elif n_rows == n_cols:
        header, index = False, False
    else:
        raise DataValidationError(
            f"{path}: adjacency matrix is not square: {n_rows} rows x {n_cols} columns "
            "(counting any id header row / id column)"
        )
    body = numeric.iloc[int(header) :, int(index) :]
    text = table.iloc[int(header) :, int(index) :]
    bad = body.isna().to_numpy()
    if bad.any():
        rows, cols = np.nonzero(bad)
        shown = [
            f"line {r + 1 + int(header)} column {c + 1 + int(index)}: {text.iat[r, c]!r}"
            for r, c in zip(rows[:5], cols[:5], strict=True)
        ]
        raise DataValidationError(
            f"{path}: adjacency matrix has {int(bad.sum())} missing or non-numeric cell(s): "
            f"{'; '.join(shown)}"
        )
    col_ids = [str(v).strip() for v in table.iloc[0, int(index) :]] if header else None
    row_ids = [str(v).strip() for v in table.iloc[int(header) :, 0]] if index else None
    if col_ids is not None and row_ids is not None and col_ids != row_ids:
        raise DataValidationError(
            f"{path}: the id header row and the id column differ "
            f"(first mismatch at position {_first_mismatch(col_ids, row_ids)}); "
            "rows and columns must list the same ids in the same order"
        )
    where = {(True, True): "header row and first column", (True, False): "header row"}.get(
        (header, index), "first column"
    )
    return col_ids or row_ids, body.to_numpy(dtype=float), f"{where} ({n_rows} x {n_cols} cells)"


def _looks_like_ids(text: pd.Series, numeric: pd.Series) -> bool:
    """Ids are text, or distinct whole numbers (METR-LA sensor ids); weights are not."""
    if numeric.isna().any():
        return text.notna().all()
    values = numeric.to_numpy(dtype=float)
    return bool((values == np.round(values)).all() and len(set(values)) == len(values))


def _first_mismatch(a: list, b: list) -> int:
    return next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)


def _read_numpy(path: Path) -> tuple[list | None, np.ndarray]:
    if path.name.lower().endswith(".npy"):
        return None, np.load(path, allow_pickle=False)
    with np.load(path, allow_pickle=False) as npz:
        keys = list(npz.files)
        matrices = [k for k in keys if npz[k].ndim == 2]
        key = next((k for k in _NPZ_KEYS if k in keys), None)
        if key is None and len(matrices) == 1:
            key = matrices[0]
        if key is None:
            raise DataValidationError(
                f"{path}: cannot tell which array is the adjacency matrix among {keys}; "
                f"name it one of {list(_NPZ_KEYS)}"
            )
        id_key = next((k for k in _NPZ_ID_KEYS if k in keys), None)
        ids = None if id_key is None else [str(i) for i in npz[id_key]]
        return ids, npz[key]


def _read_pickle(path: Path) -> tuple[list | None, np.ndarray]:
    with open(path, "rb") as fh:
        try:
            obj = pickle.load(fh)
        except UnicodeDecodeError:
            # DCRNN's adj_mx.pkl files were written by Python 2
            fh.seek(0)
            obj = pickle.load(fh, encoding="latin1")
    if isinstance(obj, np.ndarray):
        return None, obj
    if isinstance(obj, (tuple, list)) and len(obj) == 3:
        ids, id_to_index, matrix = obj
        return _ids_by_index(path, ids, id_to_index), np.asarray(matrix)
    raise DataValidationError(
        f"{path}: expected a pickled (ids, id_to_index, matrix) triple or a matrix, "
        f"got {type(obj).__name__}"
    )


def _ids_by_index(path: Path, ids, id_to_index: dict) -> list[str]:
    """Row order from ``id_to_index`` (authoritative), checked against the ``ids`` list."""
    order = sorted(id_to_index, key=id_to_index.get)
    if sorted(id_to_index.values()) != list(range(len(order))):
        raise DataValidationError(
            f"{path}: id_to_index does not map the ids onto rows 0..{len(order) - 1}"
        )
    if set(map(str, ids)) != set(map(str, order)):
        raise DataValidationError(f"{path}: the ids list and the keys of id_to_index differ")
    return [str(i) for i in order]


def _matrix_ids(
    path: Path, matrix: np.ndarray, file_ids: list | None, ids: list | None, where: str
) -> list[str]:
    """The id of each matrix row, checking shape and agreement of file and caller ids."""
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise DataValidationError(f"{path}: adjacency matrix is not square: shape {matrix.shape}")
    n = matrix.shape[0]
    if not np.isfinite(matrix).all():
        rows, cols = np.nonzero(~np.isfinite(matrix))
        raise DataValidationError(
            f"{path}: adjacency matrix has {len(rows)} NaN/inf cell(s), e.g. at "
            f"(row {rows[0]}, column {cols[0]}) (0-based); use 0 for 'no edge'"
        )
    if file_ids is None and ids is None:
        raise DataValidationError(
            f"{path}: the {n} x {n} matrix has no ids; pass ids= (the id of each row, in order)"
        )
    if file_ids is not None and len(file_ids) != n:
        raise DataValidationError(f"{path}: {len(file_ids)} ids for a {n} x {n} matrix")
    if file_ids is None and len(ids) != n:
        raise DataValidationError(
            f"{path}: adjacency matrix is {n} x {n} but {len(ids)} ids were given"
        )
    if len(set(file_ids or ids)) != n:
        raise DataValidationError(f"{path}: the ids of the {n} matrix rows are not unique")
    if file_ids is None:
        return ids
    if ids is not None and set(ids) != set(file_ids):
        only_file = sorted(set(file_ids) - set(ids))[:5]
        only_given = sorted(set(ids) - set(file_ids))[:5]
        raise DataValidationError(
            f"{path}: the ids in the file's {where} do not match the given ids: in the file only "
            f"{only_file}, given only {only_given}"
        )
    return file_ids


# ----------------------------------------------------------------------- expand
def station_series_ids(
    stations: Sequence, variables: Sequence[str], separator: str = STATION_SEPARATOR
) -> list[str]:
    """``["A", "B"] x ["in", "out"]`` -> ``["A/in", "A/out", "B/in", "B/out"]``."""
    return [f"{s}{separator}{v}" for s in stations for v in variables]


def expand_station_graph(
    edges: pd.DataFrame,
    variables: Sequence[str],
    separator: str = STATION_SEPARATOR,
    link_variables: float | None = None,
    stations: Sequence | None = None,
) -> pd.DataFrame:
    """Turn a graph between stations into one between their series ``<station>/<variable>``.

    A metro station measured as inflow and outflow, or an air station measured for several
    pollutants, is one node of the station graph but several series. Each station edge
    ``A -> B`` (weight ``w``) becomes ``A/v -> B/v`` (weight ``w``) for every variable ``v``:
    a series is informed by the same quantity at neighbouring stations.

    Parameters
    ----------
    edges : DataFrame
        Station edge list ``src, dst, weight`` (e.g. from :func:`read_adjacency`).
    variables : sequence of str
        Suffixes of the series, e.g. ``["in", "out"]``.
    separator : str
        Between station and variable: ``"/"`` gives ``"A/in"``.
    link_variables : float, optional
        Also link each station's own variables to each other (``A/in <-> A/out``) with this
        weight; None (default) adds no such edges.
    stations : sequence, optional
        All stations, so that stations without any edge still get their variable links.
        Default: the stations that appear in ``edges``.

    Returns
    -------
    DataFrame
        ``src, dst, weight`` between series ids.

    Examples
    --------
    >>> station_edges = pd.DataFrame({"src": ["A"], "dst": ["B"], "weight": [0.5]})
    >>> expand_station_graph(station_edges, ["in", "out"]).values.tolist()
    [['A/in', 'B/in', 0.5], ['A/out', 'B/out', 0.5]]
    """
    variables = list(variables)
    if not variables or len(set(variables)) != len(variables):
        raise ValueError(f"variables must be distinct and non-empty, got {variables}")
    missing = [c for c in EDGE_COLUMNS if c not in edges.columns]
    if missing:
        raise ValueError(f"station edges lack column(s) {missing}; expected {EDGE_COLUMNS}")
    src, dst = edges["src"].astype(str).to_numpy(), edges["dst"].astype(str).to_numpy()
    weight = edges["weight"].to_numpy(dtype=float)
    parts = [
        pd.DataFrame(
            {"src": np.char.add(src, f"{separator}{v}"), "dst": np.char.add(dst, f"{separator}{v}")}
        ).assign(weight=weight)
        for v in variables
    ]
    if link_variables is not None and len(variables) > 1:
        if stations is None:
            stations = pd.unique(np.concatenate([src, dst]))
        pairs = [(a, b) for a in variables for b in variables if a != b]
        stations = [str(s) for s in stations]
        parts.append(
            pd.DataFrame(
                {
                    "src": [f"{s}{separator}{a}" for s in stations for a, _ in pairs],
                    "dst": [f"{s}{separator}{b}" for s in stations for _, b in pairs],
                    "weight": float(link_variables),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)[EDGE_COLUMNS]


def expand_sensors(
    sensors: pd.DataFrame,
    variables: Sequence[str],
    separator: str = STATION_SEPARATOR,
    id_column: str = SERIES_ID,
) -> pd.DataFrame:
    """One sensor row per station and variable: ``series_id = <station>/<variable>``.

    Parameters
    ----------
    sensors : DataFrame
        One row per station, with ``id_column`` and any metadata (``lat``, ``lon``, ...).
    variables : sequence of str
    separator : str
    id_column : str
        Column holding the station id.

    Returns
    -------
    DataFrame
        ``series_id, station, variable`` + the other metadata columns, station-major.
    """
    rows = sensors.rename(columns={id_column: "station"}).reset_index(drop=True)
    rows["station"] = rows["station"].astype(str)
    out = rows.loc[np.repeat(rows.index.to_numpy(), len(variables))].reset_index(drop=True)
    out.insert(1, "variable", list(variables) * len(rows))
    out.insert(0, SERIES_ID, out["station"] + separator + out["variable"].astype(str))
    return out


# ------------------------------------------------------------------ coordinates
def haversine_m(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in metres between points given in degrees (broadcasts)."""
    lat1, lon1, lat2, lon2 = map(np.radians, (lat1, lon1, lat2, lon2))
    a = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def adjacency_from_coordinates(
    sensors: pd.DataFrame,
    threshold_m: float | None = None,
    k: int | None = None,
    weights: str = "gaussian",
    sigma_m: float | None = None,
    id_column: str = SERIES_ID,
    lat: str = "lat",
    lon: str = "lon",
) -> pd.DataFrame:
    """Edges between sensors that are close on the map.

    Distances are great-circle (haversine) metres. A sensor's neighbours are the others
    within ``threshold_m``, or its ``k`` nearest, or (both given) its ``k`` nearest within
    ``threshold_m``.

    Parameters
    ----------
    sensors : DataFrame
        One row per sensor: ``id_column``, ``lat``, ``lon`` (WGS84 degrees).
    threshold_m : float, optional
        Maximum distance in metres.
    k : int, optional
        Number of nearest neighbours per sensor (ties: the earlier row wins). The k-NN
        relation is not symmetric: edge ``j -> i`` means ``j`` is among ``i``'s nearest.
    weights : {"gaussian", "binary"}
        ``"gaussian"``: ``w = exp(-(d / sigma)^2)`` -- 1 at distance 0, ``exp(-1) = 0.37`` at
        ``sigma`` -- the thresholded Gaussian kernel of DCRNN/Graph WaveNet; ``"binary"``:
        ``w = 1`` for every edge.
    sigma_m : float, optional
        Kernel width in metres; default the standard deviation of all pairwise distances
        (DCRNN's convention, so the weights do not depend on the unit or the city's size),
        or their mean where they are all equal (two sensors). 0 (all sensors at one
        place): every weight is 1.
    id_column, lat, lon : str
        Column names.

    Returns
    -------
    DataFrame
        ``src, dst, weight`` (no self-loops).

    Raises
    ------
    DataValidationError
        Missing columns, missing/out-of-range coordinates or duplicate ids (named).
    ValueError
        Neither ``threshold_m`` nor ``k``, or an unknown ``weights``.
    """
    if threshold_m is None and k is None:
        raise ValueError("give threshold_m (metres), k (nearest neighbours) or both")
    if weights not in ("gaussian", "binary"):
        raise ValueError(f"weights must be 'gaussian' or 'binary', got {weights!r}")
    ids, la, lo = _coordinates(sensors, id_column, lat, lon)
    dist = haversine_m(la[:, None], lo[:, None], la[None, :], lo[None, :])
    n = len(ids)
    # keep[i, j]: j is a neighbour of i (edge j -> i)
    keep = ~np.eye(n, dtype=bool)
    if threshold_m is not None:
        keep &= dist <= threshold_m
    if k is not None:
        keep &= _nearest(dist, keep, int(k))
    src, dst = np.nonzero(keep.T)
    d = dist[src, dst]
    if weights == "binary":
        w = np.ones(len(d))
    else:
        sigma = sigma_m if sigma_m is not None else _default_sigma(dist)
        w = np.exp(-((d / sigma) ** 2)) if sigma > 0 else np.ones(len(d))
    return pd.DataFrame({"src": ids[src], "dst": ids[dst], "weight": w})


def _default_sigma(dist: np.ndarray) -> float:
    """Std of the pairwise distances; their mean when they are all equal (e.g. 2 sensors)."""
    off = dist[~np.eye(len(dist), dtype=bool)]
    if not len(off):
        return 0.0
    return float(off.std() or off.mean())


def _coordinates(sensors: pd.DataFrame, id_column: str, lat: str, lon: str):
    missing = [c for c in (id_column, lat, lon) if c not in sensors.columns]
    if missing:
        raise DataValidationError(
            f"sensors table lacks column(s) {missing}; found {list(sensors.columns)}"
        )
    ids = sensors[id_column].astype(str).to_numpy()
    dup = pd.Series(ids).duplicated(keep=False).to_numpy()
    if dup.any():
        raise DataValidationError(f"sensors table repeats ids {sorted(set(ids[dup]))[:5]}")
    la = pd.to_numeric(sensors[lat], errors="coerce").to_numpy(dtype=float)
    lo = pd.to_numeric(sensors[lon], errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(la) | np.isnan(lo) | (np.abs(la) > 90) | (np.abs(lo) > 180)
    if bad.any():
        raise DataValidationError(
            f"sensors table: {int(bad.sum())} sensor(s) without valid {lat}/{lon} degrees "
            f"(|lat| <= 90, |lon| <= 180): {list(ids[bad][:5])}"
        )
    return ids, la, lo


def _nearest(dist: np.ndarray, allowed: np.ndarray, k: int) -> np.ndarray:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    masked = np.where(allowed, dist, np.inf)
    order = np.argsort(masked, axis=1, kind="stable")[:, :k]
    out = np.zeros_like(allowed)
    np.put_along_axis(out, order, True, axis=1)
    return out & allowed
