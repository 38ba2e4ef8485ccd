"""Response-unit placement: the maximal covering location problem (MCLP).

Church & ReVelle (1974): choose ``p`` of the candidate sites so as to maximise the expected
incidents (demand) that lie within the response radius of at least one chosen site.

MILP (solved with HiGHS through :func:`scipy.optimize.milp`), with ``y_i`` = 1 if site ``i``
is opened, ``a_ij`` = 1 if site ``i`` covers cell ``j`` and ``w_j`` the cell's demand:

* uncapacitated: ``max sum_j w_j z_j`` s.t. ``z_j <= sum_i a_ij y_i``, ``sum_i y_i = p``,
  ``0 <= z_j <= 1``. ``z`` needs no integrality: with binary ``y`` an optimal ``z_j`` is 0/1.
* capacitated: allocation ``x_ij in [0, 1]`` (share of cell ``j``'s demand served by ``i``,
  only where ``a_ij = 1``): ``max sum_ij w_j x_ij`` s.t. ``sum_i x_ij <= 1``,
  ``sum_j w_j x_ij <= cap_i y_i``, ``x_ij <= y_i`` (tightens the LP bound), ``sum_i y_i = p``.
* district minimum: ``sum_{j in d} w_j (covered share of j) >= share_d * sum_{j in d} w_j``.

The greedy heuristic adds, ``p`` times, the site with the largest gain in covered demand
(first closing any district shortfall); its gap is measured against the LP relaxation.

Every reported ``bound`` is a proven upper bound on the optimum: the MILP's dual bound, the LP
relaxation, or (whichever is tighter) the sum of the ``p`` largest single-site coverages.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.spatial import cKDTree

EARTH_RADIUS_M = 6_371_008.8
_TOL = 1e-9


class InfeasiblePlacementError(ValueError):
    """The district coverage minimums cannot be met with the given sites, ``p`` and capacity."""


@dataclass
class PlacementResult:
    """Outcome of :func:`maximal_covering`.

    ``objective`` is the covered demand the model maximised (for the capacitated model, the
    demand allocated to open sites) and equals ``covered_demand``; ``bound`` is a proven upper
    bound on it and ``gap = (bound - objective) / bound``.
    """

    sites: list
    site_index: list[int]
    covered_demand: float
    total_demand: float
    coverage_share: float
    objective: float
    bound: float
    gap: float
    status: str
    solver: str
    solve_seconds: float
    district_share: dict = field(default_factory=dict)
    allocation: pd.DataFrame | None = None

    def to_dict(self) -> dict:
        """Summary without the allocation table (JSON-ready)."""
        out = {k: v for k, v in self.__dict__.items() if k != "allocation"}
        out["sites"] = [_plain(s) for s in self.sites]
        out["district_share"] = {str(k): float(v) for k, v in self.district_share.items()}
        return out


@dataclass
class _Instance:
    """Validated MCLP inputs as arrays."""

    demand: np.ndarray  # (n_cells,)
    cover: sparse.csr_matrix  # (n_sites, n_cells), 1.0 where site covers cell
    p: int
    capacity: np.ndarray | None  # (n_sites,) or None
    district_of_cell: np.ndarray | None  # (n_cells,) district codes, -1 for none
    district_names: list
    district_min: np.ndarray  # (n_districts,) required covered demand


# ---------------------------------------------------------------------------- coverage
def coverage_matrix(
    site_xy: np.ndarray,
    cell_xy: np.ndarray,
    radius: float,
    metric: str = "euclidean",
) -> sparse.csr_matrix:
    """Sparse boolean matrix ``sites x cells``: True where the cell lies within ``radius``.

    Parameters
    ----------
    site_xy, cell_xy : array of shape (n, 2)
        Projected coordinates in metres (``metric="euclidean"``) or ``(lat, lon)`` in
        degrees (``metric="haversine"``, great-circle distance on a spherical Earth).
    radius : float
        Coverage radius in metres (inclusive).
    metric : {"euclidean", "haversine"}

    Returns
    -------
    scipy.sparse.csr_matrix of bool
    """
    sites = _as_points(site_xy, "site_xy")
    cells = _as_points(cell_xy, "cell_xy")
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if metric == "haversine":
        # great-circle distance d <-> chord 2R sin(d / 2R): a KD-tree on 3-D unit vectors
        # then answers the radius query exactly and scales to large grids
        sites, cells = _unit_vectors(sites), _unit_vectors(cells)
        radius = 2 * math.sin(min(radius / (2 * EARTH_RADIUS_M), math.pi / 2))
    elif metric != "euclidean":
        raise ValueError(f"metric must be 'euclidean' or 'haversine', got {metric!r}")
    neighbours = cKDTree(cells).query_ball_point(sites, r=radius * (1 + 1e-12))
    rows = np.repeat(np.arange(len(sites)), [len(n) for n in neighbours])
    cols = np.concatenate([np.asarray(n, dtype=int) for n in neighbours]) if len(sites) else []
    data = np.ones(len(rows), dtype=bool)
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(sites), len(cells)))


def coverage_within(times_or_distances: np.ndarray, limit: float) -> sparse.csr_matrix:
    """Coverage from a ``sites x cells`` travel-time or distance matrix: ``value <= limit``.

    NaN / inf entries (unreachable) never cover.
    """
    values = np.asarray(times_or_distances, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D sites x cells matrix, got shape {values.shape}")
    return sparse.csr_matrix(np.isfinite(values) & (values <= limit))


def _as_points(xy, name: str) -> np.ndarray:
    arr = np.asarray(xy, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n, 2), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has non-finite coordinates at rows {_bad_rows(arr)}")
    return arr


def _unit_vectors(latlon: np.ndarray) -> np.ndarray:
    lat, lon = np.radians(latlon[:, 0]), np.radians(latlon[:, 1])
    return np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


def evaluate_placement(
    sites: Sequence,
    coverage,
    actual_counts,
    candidate_sites: Sequence | None = None,
) -> float:
    """Share of actual incidents that fall in cells covered by the chosen sites.

    Parameters
    ----------
    sites : sequence
        Chosen sites: row indices of ``coverage``, or labels from ``candidate_sites``.
    coverage : array or sparse matrix, shape (n_sites, n_cells)
    actual_counts : array or Series, shape (n_cells,)
        Observed incidents per cell (e.g. a held-out period).
    candidate_sites : sequence, optional
        Site labels, in ``coverage`` row order; needed when ``sites`` are labels.

    Returns
    -------
    float
        Covered incidents / all incidents.
    """
    counts = _as_vector(actual_counts, "actual_counts")
    cover = _as_coverage(coverage, len(counts))
    rows = _site_rows(sites, candidate_sites, cover.shape[0])
    if counts.sum() <= 0:
        raise ValueError("actual_counts sums to 0: no incidents to evaluate coverage on")
    covered = np.asarray(cover[rows].sum(axis=0)).ravel() > 0
    return float(counts[covered].sum() / counts.sum())


# ---------------------------------------------------------------------------- solver
def maximal_covering(
    demand,
    candidate_sites: Sequence | None,
    coverage,
    p: int,
    *,
    capacity=None,
    min_coverage_by_district: Mapping | None = None,
    cell_district=None,
    solver: str = "milp",
    time_limit_s: float = 30.0,
    mip_rel_gap: float = 1e-4,
) -> PlacementResult:
    """Place ``p`` response units to cover as much expected demand as possible.

    Parameters
    ----------
    demand : array or Series, shape (n_cells,)
        Expected incidents per cell, ``>= 0``. A Series' index names the cells (used to align
        a Series ``cell_district``).
    candidate_sites : sequence or None
        Site labels in ``coverage`` row order; None labels them ``0..n_sites-1``.
    coverage : bool array or sparse matrix, shape (n_sites, n_cells)
        True where a site covers a cell (see :func:`coverage_matrix`, :func:`coverage_within`).
    p : int
        Number of sites to open, ``1 <= p <= n_sites``.
    capacity : float or array (n_sites,), optional
        Most demand one site can serve. Switches to the capacitated model.
    min_coverage_by_district : mapping district -> share, optional
        Each listed district must have at least this share of its demand covered.
    cell_district : array or Series, shape (n_cells,), optional
        District of each cell; required with ``min_coverage_by_district``.
    solver : {"milp", "greedy"}
        ``"milp"`` falls back to greedy automatically when HiGHS stops without any
        feasible solution (time limit or numerical failure).
    time_limit_s : float
        HiGHS time limit. On hitting it the better of HiGHS' incumbent and the greedy
        solution is returned with ``status="time_limit"`` and the gap to HiGHS' dual bound.
        Also limits the LP relaxation that bounds the greedy solution (if that LP does not
        finish, the bound is the sum of the ``p`` largest single-site coverages).
    mip_rel_gap : float
        HiGHS relative gap at which a solution counts as optimal.

    Returns
    -------
    PlacementResult

    Raises
    ------
    InfeasiblePlacementError
        When district minimums cannot be met (named district, or the whole system).
    ValueError
        For malformed inputs (shapes, negative demand, bad ``p``...).
    """
    if solver not in ("milp", "greedy"):
        raise ValueError(f"solver must be 'milp' or 'greedy', got {solver!r}")
    inst, labels = _instance(
        demand, candidate_sites, coverage, p, capacity, min_coverage_by_district, cell_district
    )
    _check_districts_reachable(inst)
    start = time.perf_counter()
    if solver == "milp":
        result = _solve_milp(inst, time_limit_s, mip_rel_gap)
        if result is not None and result[3] == "time_limit":
            result = _keep_better_incumbent(inst, result)
    if solver == "greedy" or result is None:
        result = _solve_greedy(inst, fallback=solver == "milp", time_limit_s=time_limit_s)
    chosen, objective, bound, status, solver_used, x = result
    return _result(inst, labels, chosen, objective, bound, status, solver_used, x, start)


def _instance(demand, candidate_sites, coverage, p, capacity, district_min, cell_district):
    w = _as_vector(demand, "demand")
    if (w < 0).any():
        raise ValueError(f"demand has negative values at cells {_bad_rows(w < 0)}")
    cover = _as_coverage(coverage, len(w))
    n_sites = cover.shape[0]
    labels = list(range(n_sites)) if candidate_sites is None else list(candidate_sites)
    if len(labels) != n_sites:
        raise ValueError(f"{len(labels)} candidate_sites but coverage has {n_sites} rows")
    if isinstance(p, bool) or int(p) != p or not 1 <= p <= n_sites:
        raise ValueError(f"p must be an integer in [1, {n_sites}], got {p}")
    cap = None
    if capacity is not None:
        cap = np.broadcast_to(np.asarray(capacity, dtype=float), (n_sites,)).copy()
        bad = ~(np.isfinite(cap) & (cap >= 0))
        if bad.any():
            raise ValueError(f"capacity must be finite and >= 0, bad at sites {_bad_rows(bad)}")
    codes, names, required = _districts(w, demand, district_min, cell_district)
    return _Instance(w, cover, int(p), cap, codes, names, required), labels


def _districts(w, demand, district_min, cell_district):
    if not district_min:
        return None, [], np.zeros(0)
    if cell_district is None:
        raise ValueError("min_coverage_by_district needs cell_district (a district per cell)")
    if isinstance(cell_district, pd.Series) and isinstance(demand, pd.Series):
        missing = demand.index.difference(cell_district.index)
        if len(missing):
            raise ValueError(f"cell_district has no district for cells {list(missing[:5])}")
        cell_district = cell_district.reindex(demand.index)
    districts = np.asarray(cell_district, dtype=object)
    if districts.shape != w.shape:
        raise ValueError(f"cell_district has {districts.size} entries for {w.size} cells")
    names = list(district_min)
    unknown = [d for d in names if not (districts == d).any()]
    if unknown:
        raise ValueError(f"min_coverage_by_district names district(s) with no cells: {unknown}")
    shares = np.array([float(district_min[d]) for d in names])
    if not ((shares >= 0) & (shares <= 1)).all():
        raise ValueError(f"district shares must be in [0, 1], got {dict(district_min)}")
    codes = np.full(w.size, -1)
    for k, name in enumerate(names):
        codes[districts == name] = k
    totals = np.bincount(codes[codes >= 0], weights=w[codes >= 0], minlength=len(names))
    return codes, names, shares * totals


def _check_districts_reachable(inst: _Instance) -> None:
    """Fail fast, naming the district, when even opening every site cannot meet a minimum."""
    if inst.district_of_cell is None:
        return
    reachable = np.asarray(inst.cover.sum(axis=0)).ravel() > 0
    best = _district_sums(inst, inst.demand * reachable)
    totals = _district_sums(inst, inst.demand)
    for k, name in enumerate(inst.district_names):
        if best[k] < inst.district_min[k] - 1e-9 * max(totals[k], 1):
            raise InfeasiblePlacementError(
                f"district {name!r} requires {inst.district_min[k] / totals[k]:.1%} of its "
                f"demand covered, but even with every candidate site open at most "
                f"{best[k] / totals[k]:.1%} is within reach"
            )


def _district_sums(inst: _Instance, values: np.ndarray) -> np.ndarray:
    codes = inst.district_of_cell
    if codes is None:
        return np.zeros(0)
    mask = codes >= 0
    return np.bincount(codes[mask], weights=values[mask], minlength=len(inst.district_names))


# ---------------------------------------------------------------------------- MILP model
def _model(inst: _Instance):
    """Objective, constraints and integrality of the (un)capacitated MCLP.

    Variables are ``[y (n_sites), v]``. Uncapacitated, ``v = z`` per group of cells that
    share both their covering-site set and their district (the model only sees a group's
    total demand, so merging them is exact and shrinks it); cells nobody covers or with no
    demand are left out. Capacitated, ``v = x`` per covering (site, cell) pair in CSR order of
    ``inst.cover``. All variables lie in ``[0, 1]``.
    """
    n_sites = inst.cover.shape[0]
    if inst.capacity is None:
        rows, weight, codes = _uncapacitated_rows(inst)
    else:
        rows, weight, codes = _capacitated_rows(inst)
    n_v = weight.size
    n_var = n_sites + n_v
    count = np.concatenate([np.ones(n_sites), np.zeros(n_v)])
    rows.append(LinearConstraint(count[None, :], inst.p, inst.p))
    if codes is not None:
        keep = codes >= 0
        per_district = sparse.csr_matrix(
            (weight[keep], (codes[keep], n_sites + np.flatnonzero(keep))),
            shape=(len(inst.district_names), n_var),
        )
        rows.append(LinearConstraint(per_district, inst.district_min, np.inf))
    c = -np.concatenate([np.zeros(n_sites), weight])
    integrality = np.concatenate([np.ones(n_sites), np.zeros(n_v)])
    return c, rows, integrality


def _uncapacitated_rows(inst: _Instance):
    """``z_g - sum_i a_ig y_i <= 0`` per cell group; returns rows, group demand, districts."""
    cover = inst.cover.tocsc()
    codes = inst.district_of_cell
    keys = [
        cover.indices[cover.indptr[j] : cover.indptr[j + 1]].tobytes()
        + (b"" if codes is None else b"|%d" % codes[j])
        for j in range(cover.shape[1])
    ]
    _, first, group = np.unique(
        np.array(keys, dtype=object), return_index=True, return_inverse=True
    )
    weight = np.bincount(group, weights=inst.demand)
    useful = (weight > 0) & (np.diff(cover.indptr)[first] > 0)
    first, weight = first[useful], weight[useful]
    group_cover = cover[:, first]
    link = sparse.hstack([-group_cover.T, sparse.identity(first.size)], format="csr")
    group_codes = None if codes is None else codes[first]
    return [LinearConstraint(link, -np.inf, 0.0)], weight, group_codes


def _capacitated_rows(inst: _Instance):
    """Allocation rows for ``x_ij``; returns rows, demand per pair, district per pair."""
    cover = inst.cover.tocsr()
    n_sites, n_cells = cover.shape
    v_site = np.repeat(np.arange(n_sites), np.diff(cover.indptr))
    v_cell = cover.indices.copy()
    n_v = v_cell.size
    ones = np.ones(n_v)
    # sum_i x_ij <= 1 per cell
    per_cell = sparse.csr_matrix((ones, (v_cell, np.arange(n_v))), shape=(n_cells, n_v))
    # sum_j w_j x_ij - cap_i y_i <= 0 per site
    load = sparse.csr_matrix((inst.demand[v_cell], (v_site, np.arange(n_v))), shape=(n_sites, n_v))
    # x_ij - y_i <= 0: redundant for integers but much tighter LP relaxation
    open_only = sparse.csr_matrix((-ones, (np.arange(n_v), v_site)), shape=(n_v, n_sites))
    rows = [
        LinearConstraint(
            sparse.hstack([sparse.csr_matrix((n_cells, n_sites)), per_cell]), -np.inf, 1.0
        ),
        LinearConstraint(sparse.hstack([-sparse.diags(inst.capacity), load]), -np.inf, 0.0),
        LinearConstraint(sparse.hstack([open_only, sparse.identity(n_v)]), -np.inf, 0.0),
    ]
    codes = None if inst.district_of_cell is None else inst.district_of_cell[v_cell]
    return rows, inst.demand[v_cell], codes


def _solve_milp(inst: _Instance, time_limit_s: float, mip_rel_gap: float):
    """Solve the MILP; None when HiGHS found no feasible solution (caller falls back)."""
    c, rows, integrality = _model(inst)
    res = milp(
        c,
        integrality=integrality,
        bounds=Bounds(0.0, 1.0),
        constraints=rows,
        options={"time_limit": time_limit_s, "mip_rel_gap": mip_rel_gap},
    )
    if res.status == 2:
        within = " within the site capacities" if inst.capacity is not None else ""
        raise InfeasiblePlacementError(
            f"no placement of p={inst.p} sites meets the district minimums "
            f"{dict(zip(inst.district_names, inst.district_min.round(3), strict=True))} "
            f"(covered demand){within}"
        )
    if res.x is None:
        return None
    n_sites = inst.cover.shape[0]
    chosen = np.flatnonzero(res.x[:n_sites] > 0.5)
    objective = -float(res.fun)
    dual = getattr(res, "mip_dual_bound", None)
    bound = -float(dual) if dual is not None and np.isfinite(dual) else objective
    status = "optimal" if res.status == 0 else "time_limit"
    return chosen, objective, max(bound, objective), status, "milp", res.x[n_sites:]


def _keep_better_incumbent(inst: _Instance, milp_result):
    """After a time limit, HiGHS' incumbent can trail the greedy one: keep the better.

    The MILP's dual bound stays valid for either, so the reported gap stays honest.
    """
    try:
        chosen = _greedy_sites(inst)
        objective, v = _evaluate_sites(inst, chosen)
    except InfeasiblePlacementError:
        return milp_result
    if objective <= milp_result[1]:
        return milp_result
    bound = max(milp_result[2], objective)
    return chosen, objective, bound, "time_limit", "greedy", v


# ---------------------------------------------------------------------------- greedy
def _solve_greedy(inst: _Instance, fallback: bool, time_limit_s: float):
    """Greedy site choice, exact evaluation of the chosen set, LP-relaxation bound."""
    chosen = _greedy_sites(inst)
    objective, v = _evaluate_sites(inst, chosen)
    bound = max(_lp_bound(inst, time_limit_s), objective)
    status = "greedy_fallback" if fallback else "heuristic"
    return chosen, objective, bound, status, "greedy", v


def _greedy_sites(inst: _Instance) -> np.ndarray:
    cover = inst.cover
    n_sites = cover.shape[0]
    cap = np.full(n_sites, np.inf) if inst.capacity is None else inst.capacity
    residual = inst.demand.astype(float).copy()
    deficit = inst.district_min.copy()
    onehot = None
    if inst.district_of_cell is not None:
        codes = inst.district_of_cell
        mask = codes >= 0
        onehot = sparse.csr_matrix(
            (np.ones(mask.sum()), (np.flatnonzero(mask), codes[mask])),
            shape=(len(residual), len(deficit)),
        )
    chosen: list[int] = []
    for _ in range(inst.p):
        gain = np.minimum(cover @ residual, cap)
        score = gain.copy()
        if onehot is not None and (deficit > _TOL).any():
            # first close district shortfalls: credit only demand that reduces a deficit
            by_district = cover @ onehot.multiply(residual[:, None]).tocsr()
            by_district = np.asarray(by_district.todense())
            score = np.minimum(np.minimum(by_district, np.maximum(deficit, 0)).sum(axis=1), cap)
        score[chosen] = -np.inf
        best = int(np.lexsort((gain, score))[-1])  # max score, ties by total gain
        chosen.append(best)
        served = _serve(cover, residual, best, cap[best])
        residual -= served
        if onehot is not None:
            deficit -= onehot.T @ served
    return np.array(sorted(chosen))


def _serve(cover: sparse.csr_matrix, residual: np.ndarray, site: int, cap: float) -> np.ndarray:
    """Demand a newly opened site takes: its reachable residual, largest cells first."""
    cells = cover.indices[cover.indptr[site] : cover.indptr[site + 1]]
    cells = cells[np.argsort(-residual[cells], kind="stable")]
    take = residual[cells]
    cumulative = np.cumsum(take)
    # trim so the total does not exceed capacity
    take = np.minimum(take, np.maximum(cap - (cumulative - take), 0.0))
    served = np.zeros_like(residual)
    served[cells] = take
    return served


def _evaluate_sites(inst: _Instance, chosen: np.ndarray):
    """Best covered demand for a fixed site set (an LP when capacitated); checks districts."""
    n_sites = inst.cover.shape[0]
    if inst.capacity is None:
        z = (np.asarray(inst.cover[chosen].sum(axis=0)).ravel() > 0).astype(float)
        got = _district_sums(inst, inst.demand * z)
        if (got < inst.district_min - 1e-9 * max(inst.demand.sum(), 1)).any():
            raise InfeasiblePlacementError(_greedy_infeasible(inst))
        return float(inst.demand @ z), z
    c, rows, _ = _model(inst)
    y = np.zeros(n_sites)
    y[chosen] = 1.0
    lower = np.concatenate([y, np.zeros(len(c) - n_sites)])
    upper = np.concatenate([y, np.ones(len(c) - n_sites)])
    res = milp(c, bounds=Bounds(lower, upper), constraints=rows)
    if res.x is None:
        raise InfeasiblePlacementError(_greedy_infeasible(inst))
    return -float(res.fun), res.x[n_sites:]


def _greedy_infeasible(inst: _Instance) -> str:
    return (
        f"the greedy placement of p={inst.p} sites misses a district minimum "
        f"({dict(zip(inst.district_names, inst.district_min.round(3), strict=True))} covered "
        "demand required); try solver='milp' or a larger p"
    )


def _lp_bound(inst: _Instance, time_limit_s: float) -> float:
    """Upper bound on covered demand from the LP relaxation (inf if it does not finish)."""
    c, rows, _ = _model(inst)
    res = milp(c, bounds=Bounds(0.0, 1.0), constraints=rows, options={"time_limit": time_limit_s})
    if res.status == 2:
        raise InfeasiblePlacementError(_greedy_infeasible(inst))
    return -float(res.fun) if res.status == 0 else math.inf


def _simple_bound(inst: _Instance) -> float:
    """Cheap valid bound: the ``p`` largest single-site coverages, summed (and total demand)."""
    reach = inst.cover @ inst.demand
    if inst.capacity is not None:
        reach = np.minimum(reach, inst.capacity)
    top_p = np.sort(reach)[-inst.p :].sum()
    return float(min(top_p, inst.demand.sum()))


# ---------------------------------------------------------------------------- result
def _result(inst, labels, chosen, objective, bound, status, solver, v, start) -> PlacementResult:
    total = float(inst.demand.sum())
    covered = _covered_per_cell(inst, chosen, v)
    # a time-limited z can under-count what the open sites reach; report the true value
    objective = max(objective, float(covered.sum()))
    # an early-stopped dual bound can be weaker than the trivial one
    bound = max(min(bound, _simple_bound(inst)), objective)
    gap = 0.0 if bound <= _TOL else max(bound - objective, 0.0) / bound
    district_share = {}
    if inst.district_of_cell is not None:
        got, totals = _district_sums(inst, covered), _district_sums(inst, inst.demand)
        district_share = {
            name: float(got[k] / totals[k]) if totals[k] > 0 else float("nan")
            for k, name in enumerate(inst.district_names)
        }
    return PlacementResult(
        sites=[labels[i] for i in chosen],
        site_index=[int(i) for i in chosen],
        covered_demand=float(covered.sum()),
        total_demand=total,
        coverage_share=float(covered.sum() / total) if total > 0 else float("nan"),
        objective=float(objective),
        bound=float(bound),
        gap=float(gap),
        status=status,
        solver=solver,
        solve_seconds=time.perf_counter() - start,
        district_share=district_share,
        allocation=_allocation(inst, labels, v) if inst.capacity is not None else None,
    )


def _covered_per_cell(inst: _Instance, chosen: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Covered demand per cell: within reach (uncapacitated) or allocated (capacitated)."""
    if inst.capacity is None:
        reached = np.asarray(inst.cover[chosen].sum(axis=0)).ravel() > 0
        return inst.demand * reached
    cells = inst.cover.tocsr().indices
    share = np.bincount(cells, weights=np.clip(v, 0, 1), minlength=inst.demand.size)
    return inst.demand * np.minimum(share, 1.0)


def _allocation(inst: _Instance, labels: list, v: np.ndarray) -> pd.DataFrame:
    """Site -> cell shares of the capacitated solution (non-zero entries only)."""
    cover = inst.cover.tocsr()
    site = np.repeat(np.arange(cover.shape[0]), np.diff(cover.indptr))
    keep = v > 1e-9
    cells = cover.indices[keep]
    return pd.DataFrame(
        {
            "site": [labels[i] for i in site[keep]],
            "cell": cells,
            "share": v[keep],
            "demand_served": v[keep] * inst.demand[cells],
        }
    )


# ---------------------------------------------------------------------------- input helpers
def _as_vector(values, name: str) -> np.ndarray:
    arr = np.asarray(values.to_numpy() if isinstance(values, pd.Series) else values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per cell), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has non-finite values at cells {_bad_rows(arr)}")
    return arr


def _as_coverage(coverage, n_cells: int) -> sparse.csr_matrix:
    if isinstance(coverage, pd.DataFrame):
        coverage = coverage.to_numpy()
    matrix = sparse.csr_matrix(coverage, dtype=float)
    if matrix.shape[1] != n_cells:
        raise ValueError(
            f"coverage must be sites x cells with {n_cells} cells, got shape {matrix.shape}"
        )
    matrix.data = (matrix.data != 0).astype(float)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return matrix


def _site_rows(sites: Sequence, candidate_sites: Sequence | None, n_sites: int) -> np.ndarray:
    if candidate_sites is not None:
        position = {label: i for i, label in enumerate(candidate_sites)}
        unknown = [s for s in sites if s not in position]
        if unknown:
            raise ValueError(f"sites {unknown[:5]} are not in candidate_sites")
        return np.array([position[s] for s in sites], dtype=int)
    rows = np.asarray(list(sites), dtype=int)
    if ((rows < 0) | (rows >= n_sites)).any():
        raise ValueError(f"site indices must be in [0, {n_sites}), got {rows.tolist()}")
    return rows


def _bad_rows(arr: np.ndarray) -> list[int]:
    mask = arr if arr.dtype == bool else ~np.isfinite(arr)
    if mask.ndim > 1:
        mask = mask.any(axis=1)
    return np.flatnonzero(mask)[:5].tolist()


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value
