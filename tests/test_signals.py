"""Webster signal plans, green-wave offsets, writers and the max-pressure selector."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from citybrain_ml.optimize.signals import (
    Phase,
    coordinate_offsets,
    max_pressure_phase,
    plans_from_flows,
    plans_to_frame,
    webster_delay,
    webster_plan,
    write_plans_csv,
    write_plans_json,
)


def two_phase(q1=540.0, q2=450.0, s=1800.0, **kwargs):
    return [Phase("NS", q1, s, **kwargs), Phase("EW", q2, s, **kwargs)]


def assert_cycle_adds_up(plan):
    assert sum(p.interval_s for p in plan.phases) == pytest.approx(plan.cycle_s)


# ---------------------------------------------------------------------------- Webster
def test_webster_matches_hand_computation():
    # y = 540/1800 = 0.30 and 450/1800 = 0.25, Y = 0.55; L = 2 phases * 4 s = 8 s
    # C0 = (1.5*8 + 5) / (1 - 0.55) = 17 / 0.45 = 37.777... s
    # effective green to split = C0 - L = 29.777... s
    # g1 = 29.777... * 0.30/0.55 = 16.2424 s ; g2 = 29.777... * 0.25/0.55 = 13.5354 s
    # lost time per phase (4) = yellow (3) + all-red (1), so displayed green = effective green
    plan = webster_plan(two_phase(), lost_time_per_phase_s=4.0, intersection_id="J1")
    assert plan.cycle_s == pytest.approx(37.7778, abs=1e-4)
    assert plan.lost_time_s == 8.0
    assert plan.flow_ratio_sum == pytest.approx(0.55)
    assert [p.green_s for p in plan.phases] == pytest.approx([16.2424, 13.5354], abs=1e-4)
    assert not plan.oversaturated
    assert_cycle_adds_up(plan)
    # Webster's split equalises the degree of saturation x = q C / (s g): 0.3*37.78/16.24
    assert [p.degree_of_saturation for p in plan.phases] == pytest.approx([0.69776] * 2, abs=1e-4)


def test_displayed_green_accounts_for_intergreen_differing_from_lost_time():
    # l = 5 s but yellow + all-red = 4 s: each displayed green is 1 s longer than effective
    phases = two_phase()
    plan = webster_plan(phases, lost_time_per_phase_s=5.0)
    # C0 = (1.5*10 + 5) / 0.45 = 44.444 s
    assert plan.cycle_s == pytest.approx(20 / 0.45)
    for timing in plan.phases:
        assert timing.green_s == pytest.approx(timing.effective_green_s + 1.0)
    assert_cycle_adds_up(plan)


def test_cycle_clamped_to_bounds():
    # Y = 0.1, L = 8: C0 = 17 / 0.9 = 18.9 s  -> raised to min_cycle 30 s
    low = webster_plan(two_phase(90, 90), min_cycle_s=30, max_cycle_s=180)
    assert low.cycle_s == 30.0
    assert_cycle_adds_up(low)
    # 4 phases, Y = 0.88, L = 16: C0 = (24 + 5) / 0.12 = 241.7 s -> capped at 180 s
    phases = [Phase(f"p{k}", 396, 1800) for k in range(4)]
    high = webster_plan(phases, min_cycle_s=30, max_cycle_s=180)
    assert high.cycle_s == 180.0
    assert not high.oversaturated
    # equal flow ratios -> equal greens: (180 - 16) / 4 = 41 s each
    assert [p.green_s for p in high.phases] == pytest.approx([41.0] * 4)


def test_oversaturation_caps_cycle_and_flags():
    # Y = 0.55 + 0.40 = 0.95 >= 0.9
    plan = webster_plan(two_phase(990, 720), max_cycle_s=150)
    assert plan.oversaturated
    assert plan.cycle_s == 150.0
    assert plan.notes and "oversaturated" in plan.notes[0]
    assert_cycle_adds_up(plan)
    # x = q / (s g / C) exceeds 1 for every phase: the queue grows, delay is unbounded
    assert all(p.degree_of_saturation > 1 for p in plan.phases)
    assert all(math.isinf(p.expected_delay_s) for p in plan.phases)
    # and still serialises as valid JSON
    as_json = json.loads(json.dumps(plan.to_dict(), allow_nan=False))
    assert as_json["phases"][0]["expected_delay_s"] is None


def test_min_green_binds_and_rest_is_reassigned():
    # y = 0.01 and 0.5: Webster cycle (1.5*8+5)/0.49 = 34.69 s, raw split of 26.69 s gives
    # the minor phase 0.52 s; it is raised to its 7 s minimum and the major phase gets the rest
    plan = webster_plan([Phase("minor", 18, 1800), Phase("major", 900, 1800)])
    cycle = 17 / 0.49
    assert plan.cycle_s == pytest.approx(cycle)
    minor, major = plan.phases
    assert minor.green_s == pytest.approx(7.0)
    assert major.green_s == pytest.approx(cycle - 8 - 7.0)
    assert_cycle_adds_up(plan)


def test_min_greens_lengthen_cycle_or_raise():
    # 4 phases with 12 s minimum greens need 4 * (12 + 3 + 1) = 64 s > Webster's 30 s
    phases = [Phase(f"p{k}", 50, 1800, min_green_s=12) for k in range(4)]
    plan = webster_plan(phases)
    assert plan.cycle_s == pytest.approx(64.0)
    assert all(p.green_s == pytest.approx(12.0) for p in plan.phases)
    assert any("minimum greens" in note for note in plan.notes)
    with pytest.raises(ValueError, match="minimum greens need a cycle of 64.0 s"):
        webster_plan(phases, max_cycle_s=60)
    with pytest.raises(ValueError, match="above the allowed 50.0 s"):
        webster_plan(phases, cycle_s=50)


def test_phase_rejects_bad_flows():
    with pytest.raises(ValueError, match="'A'.*saturation_flow_veh_h"):
        Phase("A", 100, 0)
    with pytest.raises(ValueError, match="'A'.*critical_flow_veh_h"):
        Phase("A", -1, 1800)
    with pytest.raises(ValueError, match="at least one phase"):
        webster_plan([])


# ---------------------------------------------------------------------------- delay
def test_webster_delay_hand_computed():
    # C = 60, g = 30 -> λ = 0.5; q = 600 veh/h = 1/6 veh/s; s = 1800 -> x = 600/900 = 2/3
    # uniform    = 60 * 0.25 / (2 * (1 - 1/3))             = 11.25
    # overflow   = (4/9) / (2 * (1/6) * (1/3))              = 4.0
    # correction = 0.65 * (60 * 36)^(1/3) * (2/3)^(2+2.5)   = 0.65 * 12.9266 * 0.16131 = 1.3554
    # d = 11.25 + 4.0 - 1.3554 = 13.8946 s/veh
    assert webster_delay(60, 30, 600, 1800) == pytest.approx(13.8946, abs=1e-3)


def test_webster_delay_limits():
    # no traffic: only uniform delay C(1-λ)^2/2 = r^2 / (2C) = 30^2/120 = 7.5 s
    assert webster_delay(60, 30, 0, 1800) == pytest.approx(7.5)
    assert webster_delay(60, 30, 900, 1800) == math.inf  # x = 1
    delays = [webster_delay(60, 30, q, 1800) for q in (100, 300, 600, 800)]
    assert delays == sorted(delays)


# ---------------------------------------------------------------------------- many plans
def flow_table():
    return pd.DataFrame(
        {
            "intersection_id": ["J1", "J1", "J1", "J2", "J2"],
            "phase": ["NS", "NS", "EW", "A", "B"],
            "movement": ["N-S", "S-N", "E-W", "a", "b"],
            # J1/NS: two lane groups, y = 0.2 and 0.3 -> critical is the 0.3 one
            "flow_veh_h": [360.0, 540.0, 450.0, 720.0, 360.0],
            "saturation_flow_veh_h": [1800.0, 1800.0, 1800.0, 1800.0, 1800.0],
            "min_green_s": [7.0, 10.0, 7.0, 7.0, 7.0],
        }
    )


def test_plans_from_flows_picks_critical_lane_group():
    plans = plans_from_flows(flow_table())
    assert [p.intersection_id for p in plans] == ["J1", "J2"]
    j1 = plans[0]
    assert [p.name for p in j1.phases] == ["NS", "EW"]
    assert j1.phases[0].flow_veh_h == 540.0
    assert j1.phases[0].movements == ("N-S", "S-N")
    # same y = (0.3, 0.25) as the hand case -> same cycle
    assert j1.cycle_s == pytest.approx(17 / 0.45)
    assert j1.phases[0].green_s >= 10.0  # the larger minimum of the two lane groups applies
    assert plans[1].cycle_s == pytest.approx(17 / 0.4)  # y = 0.4 + 0.2


def test_plans_from_flows_common_cycle_and_errors():
    plans = plans_from_flows(flow_table(), common_cycle=True)
    assert {round(p.cycle_s, 6) for p in plans} == {round(17 / 0.4, 6)}
    for plan in plans:
        assert_cycle_adds_up(plan)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['saturation_flow_veh_h'\]"):
        plans_from_flows(flow_table().drop(columns="saturation_flow_veh_h"))
    bad = flow_table()
    bad.loc[3, "flow_veh_h"] = -5.0
    with pytest.raises(ValueError, match=r"'flow_veh_h' has invalid values at rows \[3\]"):
        plans_from_flows(bad)


def test_coordinate_offsets_green_wave():
    plans = plans_from_flows(flow_table(), common_cycle=True)
    plans = plans + [plans[1]]
    cycle = plans[0].cycle_s
    out = coordinate_offsets(plans, [20.0, 50.0])
    # offset_k = offset_{k-1} + travel time (mod cycle): 0, 20, 70 mod 42.5
    assert [p.offset_s for p in out] == pytest.approx([0.0, 20.0, 70.0 % cycle])
    # with a named phase, that phase's green start (offset + start in cycle) advances by 20 s
    a = plans_from_flows(flow_table().assign(phase=["X", "X", "Y", "X", "Y"]), common_cycle=True)
    waved = coordinate_offsets(a, [20.0], phase="Y")
    starts = [p.offset_s + p.phase_starts_s()[1] for p in waved]
    assert (starts[1] - starts[0]) % cycle == pytest.approx(20.0)
    with pytest.raises(ValueError, match="common cycle"):
        coordinate_offsets(plans_from_flows(flow_table()), [10.0])
    with pytest.raises(ValueError, match="need 1 travel times"):
        coordinate_offsets(plans[:2], [1.0, 2.0])


# ---------------------------------------------------------------------------- writers
def test_writers_round_trip_and_are_atomic(tmp_path, monkeypatch):
    plans = plans_from_flows(flow_table())
    json_path = write_plans_json(plans, tmp_path / "out" / "plans.json")
    loaded = json.loads(json_path.read_text())
    assert [p["intersection_id"] for p in loaded] == ["J1", "J2"]
    assert loaded[0]["cycle_s"] == pytest.approx(plans[0].cycle_s)
    csv_path = write_plans_csv(plans, tmp_path / "plans.csv")
    table = pd.read_csv(csv_path)
    pd.testing.assert_frame_equal(
        table[["phase", "green_s"]], plans_to_frame(plans)[["phase", "green_s"]], check_dtype=False
    )
    # a failed write leaves the previous file intact and no temp file behind
    before = json_path.read_text()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    from citybrain_ml.data import io

    monkeypatch.setattr(io.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        plans[0].to_json(json_path)
    assert json_path.read_text() == before
    assert sorted(f.name for f in json_path.parent.iterdir()) == ["plans.json"]


# ---------------------------------------------------------------------------- max pressure
def test_max_pressure_picks_highest_pressure_phase():
    queues_in = {"n": 8, "s": 6, "e": 10, "w": 1}
    queues_out = {"S_out": 5, "N_out": 5, "W_out": 0}
    phases = [
        [("n", "S_out"), ("s", "N_out")],  # (8-5) + (6-5) = 4
        [("e", "W_out"), ("w", "E_out")],  # (10-0) + (1-0, E_out leaves the network) = 11
    ]
    assert max_pressure_phase(queues_in, queues_out, phases) == 1
    # a long downstream queue blocks the east-west phase: (10-12) + 1 = -1 < 4
    assert max_pressure_phase(queues_in, {**queues_out, "W_out": 12}, phases) == 0


def test_max_pressure_ties_and_errors():
    phases = [[("a", "x")], [("b", "y")]]
    assert max_pressure_phase({"a": 3, "b": 3}, {}, phases) == 0
    assert max_pressure_phase({"a": 3, "b": 3}, {}, phases, current_phase=1) == 1
    with pytest.raises(KeyError, match="'b' missing from queues_in"):
        max_pressure_phase({"a": 1}, {}, phases)
