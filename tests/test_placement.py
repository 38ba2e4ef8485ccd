"""Maximal covering location problem: MILP vs brute force, capacity, districts, greedy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import OptimizeResult

from citybrain_ml.optimize import placement
from citybrain_ml.optimize.placement import (
    InfeasiblePlacementError,
    coverage_matrix,
    coverage_within,
    evaluate_placement,
    maximal_covering,
)


def random_instance(seed=0, n_sites=7, n_cells=25, density=0.25):
    rng = np.random.default_rng(seed)
    cover = rng.random((n_sites, n_cells)) < density
    demand = rng.gamma(2.0, 1.5, n_cells)
    return demand, cover


def covered(demand, cover, sites, mask=None):
    reached = cover[list(sites)].any(axis=0)
    if mask is not None:
        reached &= mask
    return float(demand[reached].sum())


def brute_force(demand, cover, p, feasible=lambda sites: True):
    """Best covered demand over all feasible p-subsets, and the subsets achieving it."""
    best, argbest = -1.0, []
    for sites in itertools.combinations(range(cover.shape[0]), p):
        if not feasible(sites):
            continue
        value = covered(demand, cover, sites)
        if value > best + 1e-9:
            best, argbest = value, [sites]
        elif abs(value - best) <= 1e-9:
            argbest.append(sites)
    return best, argbest


# ---------------------------------------------------------------------------- exact MILP
@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_milp_matches_brute_force(p, seed):
    demand, cover = random_instance(seed)
    best, argbest = brute_force(demand, cover, p)
    result = maximal_covering(demand, None, cover, p)
    assert result.status == "optimal"
    assert result.solver == "milp"
    assert tuple(result.site_index) in argbest
    assert result.covered_demand == pytest.approx(best, rel=1e-4)
    assert result.objective == pytest.approx(result.covered_demand)
    assert result.coverage_share == pytest.approx(best / demand.sum(), rel=1e-4)
    assert result.bound >= result.objective - 1e-9
    assert 0 <= result.gap <= 1e-4


def test_labels_series_and_sparse_inputs():
    demand, cover = random_instance(2)
    names = [f"station_{i}" for i in range(cover.shape[0])]
    cells = pd.Series(demand, index=[f"cell{j}" for j in range(demand.size)])
    result = maximal_covering(cells, names, coverage_within(np.where(cover, 1.0, 9.0), 5.0), 2)
    reference = maximal_covering(demand, None, cover, 2)
    assert result.sites == [names[i] for i in reference.site_index]
    assert result.covered_demand == pytest.approx(reference.covered_demand)
    assert result.to_dict()["sites"] == result.sites


# ---------------------------------------------------------------------------- capacity
def test_capacity_binding_changes_the_choice():
    # cells: c0 = 6, c1 = 6, c2 = 5.  A covers {c0, c1}, B covers {c0}, C covers {c2}.
    # uncapacitated, p=2: {A, C} = 17 (best; {A, B} = 12, {B, C} = 11)
    # capacity 6 per site: {A, C} serves 6 + 5 = 11, {A, B} serves 6 + 6 = 12 -> {A, B}
    demand = np.array([6.0, 6.0, 5.0])
    cover = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=bool)
    free = maximal_covering(demand, ["A", "B", "C"], cover, 2)
    assert free.sites == ["A", "C"] and free.covered_demand == pytest.approx(17.0)
    capped = maximal_covering(demand, ["A", "B", "C"], cover, 2, capacity=6.0)
    assert capped.sites == ["A", "B"]
    assert capped.covered_demand == pytest.approx(12.0)
    assert capped.gap == pytest.approx(0.0, abs=1e-4)
    load = capped.allocation.groupby("site")["demand_served"].sum()
    assert (load <= 6.0 + 1e-6).all()
    assert capped.allocation["demand_served"].sum() == pytest.approx(12.0)
    # no cell is served more than once
    assert (capped.allocation.groupby("cell")["share"].sum() <= 1 + 1e-6).all()


def test_capacity_per_site_array_and_greedy():
    demand, cover = random_instance(3)
    capacity = np.full(cover.shape[0], 4.0)
    exact = maximal_covering(demand, None, cover, 2, capacity=capacity)
    greedy = maximal_covering(demand, None, cover, 2, capacity=capacity, solver="greedy")
    assert exact.covered_demand <= 8.0 + 1e-6
    assert greedy.covered_demand <= exact.covered_demand + 1e-6
    assert greedy.bound >= exact.covered_demand - 1e-6
    assert greedy.gap >= 0


# ---------------------------------------------------------------------------- districts
def district_instance():
    # north cells 0-2 (demand 5 each), south cells 3-4 (demand 2 each)
    demand = np.array([5.0, 5.0, 5.0, 2.0, 2.0])
    district = np.array(["N", "N", "N", "S", "S"])
    cover = np.array(
        [
            [1, 1, 1, 0, 0],  # site 0: all of the north (15)
            [0, 1, 1, 1, 1],  # site 1: 2 north cells + the south (14)
            [0, 0, 0, 1, 0],  # site 2: one south cell (2)
        ],
        dtype=bool,
    )
    return demand, district, cover


def test_district_minimum_changes_choice():
    demand, district, cover = district_instance()
    assert maximal_covering(demand, None, cover, 1).site_index == [0]
    minimum = {"S": 0.5}
    south = district == "S"
    best, argbest = brute_force(
        demand, cover, 1, lambda s: covered(demand, cover, s, south) >= 0.5 * demand[south].sum()
    )
    result = maximal_covering(
        demand, None, cover, 1, min_coverage_by_district=minimum, cell_district=district
    )
    assert [tuple(result.site_index)] == argbest == [(1,)]
    assert result.covered_demand == pytest.approx(best)
    assert result.district_share["S"] == pytest.approx(1.0)


def test_district_with_series_alignment():
    demand, district, cover = district_instance()
    cells = [f"c{j}" for j in range(demand.size)]
    shuffled = pd.Series(district, index=cells).iloc[::-1]  # aligned by label, not position
    result = maximal_covering(
        pd.Series(demand, index=cells),
        None,
        cover,
        1,
        min_coverage_by_district={"S": 0.5},
        cell_district=shuffled,
    )
    assert result.site_index == [1]


def test_unreachable_district_minimum_names_the_district():
    demand, district, cover = district_instance()
    cover = cover.copy()
    cover[:, 4] = False  # south cell 4 (half of the south's demand) is out of every radius
    with pytest.raises(InfeasiblePlacementError, match=r"district 'S' requires 75.0%.*50.0%"):
        maximal_covering(
            demand, None, cover, 2, min_coverage_by_district={"S": 0.75}, cell_district=district
        )


def test_infeasible_combination_of_districts_is_a_clear_error():
    # each district alone is reachable, but with p=1 no single site serves both minimums
    demand = np.array([4.0, 4.0])
    cover = np.eye(2, dtype=bool)
    with pytest.raises(InfeasiblePlacementError, match="no placement of p=1 sites"):
        maximal_covering(
            demand,
            None,
            cover,
            1,
            min_coverage_by_district={"A": 1.0, "B": 1.0},
            cell_district=["A", "B"],
        )


# ---------------------------------------------------------------------------- greedy
def greedy_trap():
    # four cells of 3 plus a cell of 1. "mid" covers cells 1, 2, 4 (7), "left" 0, 1 (6),
    # "right" 2, 3 (6). Greedy takes mid then left/right (10); the optimum is left+right (12).
    demand = np.array([3.0, 3.0, 3.0, 3.0, 1.0])
    cover = np.array([[0, 1, 1, 0, 1], [1, 1, 0, 0, 0], [0, 0, 1, 1, 0]], dtype=bool)
    return demand, cover


def test_greedy_is_feasible_and_reports_a_valid_gap():
    demand, cover = greedy_trap()
    optimum, _ = brute_force(demand, cover, 2)
    greedy = maximal_covering(demand, ["mid", "left", "right"], cover, 2, solver="greedy")
    assert greedy.solver == "greedy" and greedy.status == "heuristic"
    assert len(set(greedy.sites)) == 2 and "mid" in greedy.sites
    assert greedy.covered_demand == pytest.approx(covered(demand, cover, greedy.site_index))
    assert greedy.covered_demand == pytest.approx(10.0)
    # the LP bound is a true upper bound, so the reported gap covers the real shortfall
    assert greedy.bound >= optimum - 1e-9
    assert greedy.gap >= (optimum - greedy.covered_demand) / greedy.bound - 1e-9 > 0
    exact = maximal_covering(demand, ["mid", "left", "right"], cover, 2)
    assert sorted(exact.sites) == ["left", "right"] and exact.covered_demand == optimum


def test_greedy_respects_district_minimum():
    demand, district, cover = district_instance()
    result = maximal_covering(
        demand,
        None,
        cover,
        1,
        min_coverage_by_district={"S": 0.5},
        cell_district=district,
        solver="greedy",
    )
    assert result.site_index == [1]
    assert result.district_share["S"] >= 0.5
    assert result.gap >= 0


def test_milp_without_solution_falls_back_to_greedy(monkeypatch):
    real_milp = placement.milp

    def no_incumbent(c, integrality=None, **kwargs):
        if integrality is not None and np.any(integrality):
            return OptimizeResult(status=1, x=None, fun=None, message="time limit reached")
        return real_milp(c, integrality=integrality, **kwargs)

    monkeypatch.setattr(placement, "milp", no_incumbent)
    demand, cover = greedy_trap()
    result = maximal_covering(demand, None, cover, 2, time_limit_s=0.01)
    assert result.solver == "greedy" and result.status == "greedy_fallback"
    assert result.gap > 0


# ---------------------------------------------------------------------------- coverage
def test_coverage_matrix_euclidean_matches_pairwise_distances():
    rng = np.random.default_rng(4)
    sites, cells = rng.uniform(0, 5000, (6, 2)), rng.uniform(0, 5000, (40, 2))
    expected = np.linalg.norm(sites[:, None, :] - cells[None, :, :], axis=2) <= 1500
    np.testing.assert_array_equal(coverage_matrix(sites, cells, 1500).toarray(), expected)


def test_coverage_matrix_haversine():
    # one degree of latitude on a sphere of radius 6371.0088 km is 111.195 km
    site, cell = np.array([[40.0, -74.0]]), np.array([[41.0, -74.0]])
    assert not coverage_matrix(site, cell, 111_100, metric="haversine")[0, 0]
    assert coverage_matrix(site, cell, 111_300, metric="haversine")[0, 0]
    rng = np.random.default_rng(5)
    sites = np.column_stack([rng.uniform(40.5, 40.9, 5), rng.uniform(-74.1, -73.7, 5)])
    cells = np.column_stack([rng.uniform(40.5, 40.9, 50), rng.uniform(-74.1, -73.7, 50)])
    lat1, lon1 = np.radians(sites[:, None, 0]), np.radians(sites[:, None, 1])
    lat2, lon2 = np.radians(cells[None, :, 0]), np.radians(cells[None, :, 1])
    h = np.sin((lat2 - lat1) / 2) ** 2
    h += np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    distance = 2 * 6_371_008.8 * np.arcsin(np.sqrt(h))
    got = coverage_matrix(sites, cells, 8000, metric="haversine").toarray()
    np.testing.assert_array_equal(got, distance <= 8000)


def test_evaluate_placement_on_actual_counts():
    cover = np.array([[1, 1, 0, 0], [0, 0, 1, 0]], dtype=bool)
    counts = np.array([2, 3, 5, 10])
    assert evaluate_placement([0], cover, counts) == pytest.approx(5 / 20)
    assert evaluate_placement(["b", "a"], cover, counts, candidate_sites=["a", "b"]) == 0.5
    with pytest.raises(ValueError, match="no incidents"):
        evaluate_placement([0], cover, np.zeros(4))


# ---------------------------------------------------------------------------- input errors
def test_bad_inputs_are_named():
    demand, cover = random_instance(0)
    with pytest.raises(ValueError, match=r"p must be an integer in \[1, 7\]"):
        maximal_covering(demand, None, cover, 8)
    with pytest.raises(ValueError, match="25 cells, got shape"):
        maximal_covering(demand, None, cover[:, :-1], 2)
    negative = demand.copy()
    negative[3] = -1
    with pytest.raises(ValueError, match=r"negative values at cells \[3\]"):
        maximal_covering(negative, None, cover, 2)
    with pytest.raises(ValueError, match="needs cell_district"):
        maximal_covering(demand, None, cover, 2, min_coverage_by_district={"N": 0.1})
    with pytest.raises(ValueError, match="solver must be"):
        maximal_covering(demand, None, cover, 2, solver="cplex")
    assert math.isfinite(maximal_covering(demand, None, cover, 2).solve_seconds)


def test_time_limit_keeps_the_better_incumbent_and_solver_bound(monkeypatch):
    demand, cover = random_instance(1)
    optimum, _ = brute_force(demand, cover, 2)
    reach = cover @ demand
    worst = np.argsort(reach)[:2]
    weak_value = covered(demand, cover, worst)
    real_milp = placement.milp

    def stopped_early(c, integrality=None, **kwargs):
        if integrality is None or not np.any(integrality):
            return real_milp(c, integrality=integrality, **kwargs)
        x = np.zeros(len(c))
        x[worst] = 1.0
        return OptimizeResult(
            status=1, x=x, fun=-weak_value, mip_dual_bound=-optimum, message="time limit"
        )

    monkeypatch.setattr(placement, "milp", stopped_early)
    result = maximal_covering(demand, None, cover, 2)
    greedy = maximal_covering(demand, None, cover, 2, solver="greedy")
    assert result.status == "time_limit" and result.solver == "greedy"
    assert result.covered_demand == pytest.approx(greedy.covered_demand)
    assert result.covered_demand > weak_value
    assert result.bound == pytest.approx(optimum)
    assert result.gap == pytest.approx((optimum - result.covered_demand) / optimum)
