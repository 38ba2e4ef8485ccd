"""Neighbour features from a sensor graph: what the roads/sensors next to a series are doing.

The graph is the canonical edge list ``src, dst, weight`` (see
:class:`citybrain_ml.data.schema.SeriesDataset` and ``matrix_to_edges``). For every series
``i`` the features are weighted means over its neighbours ``j``::

    nbr(i, t) = sum_j w_ij * x_j(t) / sum_j w_ij      (j observed at t)

* Missing readings are skipped and the weights renormalised over the neighbours observed.
* A node without neighbours (or whose neighbours are all missing at ``t``) gets **NaN**, not
  its own value: "no information" stays visible to the model (LightGBM routes NaN on its
  own) instead of silently duplicating the node's lag features.
* ``symmetric=True`` (default) treats every edge as two-way, which is right for road
  adjacency; with ``symmetric=False`` an edge ``src -> dst`` makes ``src`` a neighbour of
  ``dst`` (upstream sensors inform downstream ones).
* The 2-hop ring holds nodes reachable in two steps that are neither the node itself nor a
  direct neighbour, weighted by the sum over paths of the product of edge weights.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from citybrain_ml.data.schema import EDGE_COLUMNS, VALUE
from citybrain_ml.features.lag_transforms import rolling_features, shift, to_matrix


def neighbour_weights(
    edges: pd.DataFrame, ids, symmetric: bool = True, hops: int = 1
) -> sparse.csr_matrix:
    """Sparse ``(N, N)`` weights, row ``i`` = the neighbours of ``ids[i]``.

    Parameters
    ----------
    edges : DataFrame
        Edge list ``src, dst, weight``; edges touching ids not in ``ids`` are ignored,
        self-loops are dropped.
    ids : sequence
        Series ids, defining the row/column order.
    symmetric : bool
        Treat every edge as two-way (weights of a pair in both directions are summed).
    hops : {1, 2}
        1 = direct neighbours; 2 = the ring of nodes exactly two hops away.

    Returns
    -------
    scipy.sparse.csr_matrix
    """
    missing = [c for c in EDGE_COLUMNS if c not in edges.columns]
    if missing:
        raise ValueError(f"adjacency lacks column(s) {missing}; expected {EDGE_COLUMNS}")
    if hops not in (1, 2):
        raise ValueError(f"hops must be 1 or 2, got {hops}")
    pos = pd.Series(np.arange(len(ids)), index=pd.Index(list(ids), dtype=object))
    keep = edges["src"].isin(pos.index) & edges["dst"].isin(pos.index)
    keep &= edges["src"] != edges["dst"]
    e = edges[keep]
    src = pos.reindex(e["src"].to_numpy()).to_numpy()
    dst = pos.reindex(e["dst"].to_numpy()).to_numpy()
    w = pd.to_numeric(e["weight"]).to_numpy(dtype=float)
    n = len(ids)
    # row = receiving node (dst), column = neighbour (src)
    adj = sparse.csr_matrix((w, (dst, src)), shape=(n, n))
    if symmetric:
        adj = (adj + adj.T).tocsr()
    if hops == 1:
        return adj
    two = (adj @ adj).tolil()
    two.setdiag(0)
    two = two.tocsr()
    # drop direct neighbours: keep only the ring exactly two hops out
    direct = adj.copy()
    direct.data = np.ones_like(direct.data)
    ring = two - two.multiply(direct)
    ring.eliminate_zeros()
    return ring.tocsr()


def neighbour_mean(a: np.ndarray, weights: sparse.spmatrix) -> np.ndarray:
    """NaN-aware weighted mean of the neighbours' columns of ``a``.

    Parameters
    ----------
    a : ndarray
        ``(T, N)`` values.
    weights : sparse matrix
        ``(N, N)`` from :func:`neighbour_weights`.

    Returns
    -------
    ndarray
        ``(T, N)``; NaN where a node has no observed neighbour.
    """
    observed = ~np.isnan(a)
    filled = np.where(observed, a, 0.0)
    weights = sparse.csr_matrix(weights)
    # (N, N) sparse @ (N, T) dense -> (N, T); transpose back to time x series
    num = np.asarray(weights @ filled.T).T
    den = np.asarray(weights @ observed.T.astype(float)).T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def neighbour_features(
    a: np.ndarray,
    edges: pd.DataFrame,
    ids,
    lags=(1,),
    windows=(4,),
    two_hop: bool = False,
    symmetric: bool = True,
) -> dict[str, np.ndarray]:
    """Neighbour means of lagged values and of short rolling means, at each origin.

    Parameters
    ----------
    a : ndarray
        ``(T, N)`` values, columns in the order of ``ids``.
    edges : DataFrame
        Edge list ``src, dst, weight``.
    ids : sequence
        Series id of each column of ``a``.
    lags : iterable of int
        ``nbr_lag_k`` = neighbour mean of ``lag_k`` (``lag_1`` = value at the origin).
    windows : iterable of int
        ``nbr_roll_mean_w`` = neighbour mean of each neighbour's rolling mean over ``w``.
    two_hop : bool
        Also ``nbr2_lag_k`` over the 2-hop ring.
    symmetric : bool
        See :func:`neighbour_weights`.

    Returns
    -------
    dict
        ``{name: (T, N) array}``.
    """
    w1 = neighbour_weights(edges, ids, symmetric=symmetric, hops=1)
    now = neighbour_mean(a, w1)
    out = {f"nbr_lag_{int(k)}": shift(now, int(k) - 1) for k in lags}
    rolled = rolling_features(a, windows, stats=("mean",))
    for name, mat in rolled.items():
        out[f"nbr_{name}"] = neighbour_mean(mat, w1)
    if two_hop:
        ring = neighbour_mean(a, neighbour_weights(edges, ids, symmetric=symmetric, hops=2))
        out.update({f"nbr2_lag_{int(k)}": shift(ring, int(k) - 1) for k in lags})
    return out


def add_neighbour_features(
    df: pd.DataFrame,
    edges: pd.DataFrame,
    freq: str,
    lags=(1,),
    windows=(4,),
    two_hop: bool = False,
    symmetric: bool = True,
    column: str = VALUE,
) -> pd.DataFrame:
    """Return the long frame ``df`` with neighbour feature columns (each row an origin).

    Parameters are those of :func:`neighbour_features`; ``freq`` is the sampling interval and
    ``column`` the column to average.
    """
    m = to_matrix(df, freq, column)
    feats = neighbour_features(m.values, edges, m.ids, lags, windows, two_hop, symmetric)
    out = df.copy()
    for name, mat in feats.items():
        out[name] = mat[m.row_pos, m.col_pos]
    return out
