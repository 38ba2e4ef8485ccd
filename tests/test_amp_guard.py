"""Advanced-MP's starvation guard at the decision-function level (no SUMO needed).

The case it guards against (ingolstadt21): a green whose queue cannot leave keeps the
largest pressure for ever, so a smaller queue on another approach is never served.
"""

from __future__ import annotations

import math

import pytest

from citybrain_ml.optimize.simulation import (
    AdvancedMaxPressureConfig,
    AdvancedMaxPressureController,
    Movement,
    choose_advanced_max_pressure,
    starving_green,
    update_red_waits,
)


@pytest.fixture
def three_greens() -> list[list[Movement]]:
    """Green 0: N->S; green 1: E->W and E->S; green 2: E->S only (a protected turn)."""
    return [
        [Movement(("n_0", "n_1"), ("s_0",))],
        [Movement(("e_0",), ("w_0",)), Movement(("e_1",), ("s_1",))],
        [Movement(("e_1",), ("s_1",))],
    ]


def test_movement_key_is_the_edge_pair():
    assert Movement(("a_0", "a_1"), ("b_2",)).key == ("a", "b")
    assert Movement(("x#1_0",), ("y.5_1",)).key == ("x#1", "y.5")


def test_a_stuck_queue_wins_on_pressure_until_the_guard_serves_the_starving_one(three_greens):
    queues = {"n_0": 20, "n_1": 20, "e_0": 3}  # N->S halted and not leaving; E->W waits
    assert choose_advanced_max_pressure(three_greens, queues, {}, current=0) == 0
    # E->W has waited red 119 s: below the bound, pressure still decides
    waited = {("e", "w"): 119.0}
    assert (
        choose_advanced_max_pressure(
            three_greens, queues, {}, current=0, waited=waited, max_red_s=120
        )
        == 0
    )
    # at the bound the starving movement is served, pressure and running vehicles aside
    waited = {("e", "w"): 120.0}
    platoon = {"n_0": 9, "n_1": 9}
    assert (
        choose_advanced_max_pressure(
            three_greens, queues, platoon, current=0, waited=waited, max_red_s=120
        )
        == 1
    )
    # no bound (the default): plain Advanced-MP
    assert choose_advanced_max_pressure(three_greens, queues, {}, current=0, waited=waited) == 0


def test_the_longest_wait_goes_first_and_the_strongest_green_serving_it(three_greens):
    pressures = [40.0, 1.0, 2.0]
    waited = {("e", "s"): 300.0, ("e", "w"): 200.0, ("n", "s"): 10.0}
    # E->S waited longest; greens 1 and 2 serve it, green 2 has the larger pressure
    assert starving_green(three_greens, pressures, set(), waited, 120.0) == 2
    assert starving_green(three_greens, pressures, set(), waited, 400.0) is None
    assert starving_green(three_greens, pressures, set(), {}, 120.0) is None


def test_a_starving_movement_into_a_full_exit_is_not_forced(three_greens):
    waited = {("e", "s"): 300.0, ("e", "w"): 200.0}
    # E->S cannot leave (s_1 full): the next longest wait, E->W, is served instead
    assert starving_green(three_greens, [40.0, 1.0, 2.0], {"s_1"}, waited, 120.0) == 1
    # both exits full: nothing forced
    assert starving_green(three_greens, [40.0, 1.0, 2.0], {"s_1", "w_0"}, waited, 120.0) is None


def test_red_clocks_run_only_while_a_queue_waits_unserved(three_greens):
    red: dict = {}
    queues = {"n_0": 5, "e_0": 2}
    update_red_waits(red, three_greens, queues, current=0, now=100.0)
    assert red == {("e", "w"): 100.0}  # N->S is served, E->S has no queue
    update_red_waits(red, three_greens, queues, current=0, now=150.0)
    assert red == {("e", "w"): 100.0}  # the clock keeps its start
    update_red_waits(red, three_greens, queues, current=None, now=155.0)  # clearance
    assert red == {("e", "w"): 100.0, ("n", "s"): 155.0}
    update_red_waits(red, three_greens, queues, current=1, now=160.0)  # E->W served
    assert red == {("n", "s"): 155.0}
    update_red_waits(red, three_greens, {"e_1": 1}, current=1, now=165.0)  # N->S queue gone
    assert red == {}


def test_max_red_setting_is_checked_and_on_by_default():
    assert AdvancedMaxPressureController().max_red_s == 180.0
    assert AdvancedMaxPressureController(max_red_s=None).max_red_s == math.inf
    assert AdvancedMaxPressureConfig().max_red_s == 180.0
    with pytest.raises(ValueError, match="max_red_s"):
        AdvancedMaxPressureController(max_red_s=0)
