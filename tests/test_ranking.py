"""Hotspot ranking metrics: hand-computed cases and a naive GSNet-style reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from citybrain_ml.evaluation.ranking import (
    hotspot_metrics,
    map_at_k,
    pai,
    pei,
    rank_hotspots,
    recall_at_k,
    topk_table,
)

# --- a naive, loop-by-loop restatement of GSNet lib/metrics.py (Recall, MAP, AP) ---------


def _reference_topk(data, ks):
    tops = []
    for row, k in zip(data, ks, strict=True):
        scores = dict(enumerate(row))
        ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
        tops.append([cell for cell, _ in ranked[: int(k)]])
    return tops


def _reference_metrics(y_true, y_pred, region_mask):
    """(recall in %, MAP) exactly as GSNet's Recall() and MAP() compute them."""
    offset = np.where(region_mask >= 1, 0, -1000)
    truth = (y_true + offset).reshape(len(y_true), -1)
    pred = (y_pred + offset).reshape(len(y_pred), -1)
    ks = [(row > 0).sum() for row in truth]
    true_top, pred_top = _reference_topk(truth, ks), _reference_topk(pred, ks)
    hit_sum = sum(len([v for v in t if v in p]) for t, p in zip(true_top, pred_top, strict=True))
    recall = hit_sum / sum(ks) * 100
    aps = []
    for labels, preds in zip(true_top, pred_top, strict=True):
        hits, total = 0, 0.0
        for n, cell in enumerate(preds):
            if cell in labels:
                hits += 1
                total += hits / (n + 1.0)
        aps.append(total / len(labels) if hits > 0 else 0)
    return recall, sum(aps) / len(aps)


# --- hand-computed cases -----------------------------------------------------------------


def test_hand_computed_recall_and_map():
    # step 0: accidents in cells 0 and 2 (K=2); predicted order 2, 1, 0, 3 -> top-2 = {2, 1}
    #   hits = 1 (cell 2 at rank 1) -> AP = (1/1) / 2 = 0.5
    # step 1: accident in cell 3 (K=1); top-1 = cell 3 -> hit, AP = 1
    # step 2: no accident (K=0): AP = 0, adds nothing to recall
    y_true = np.array([[1, 0, 2, 0], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=float)
    y_pred = np.array([[0.5, 0.6, 0.9, 0.1], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    # recall (pooled) = (1 + 1) / (2 + 1) = 2/3
    assert recall_at_k(y_true, y_pred) == pytest.approx(2 / 3)
    # macro recall = mean(1/2, 1/1) = 0.75
    assert recall_at_k(y_true, y_pred, average="macro") == pytest.approx(0.75)
    # MAP (their code) = (0.5 + 1 + 0) / 3 = 0.5; skipping the empty step: 0.75
    assert map_at_k(y_true, y_pred) == pytest.approx(0.5)
    assert map_at_k(y_true, y_pred, empty_steps="skip") == pytest.approx(0.75)
    table = topk_table(y_true, y_pred)
    assert list(table["k"]) == [2, 1, 0] and list(table["hits"]) == [1, 1, 0]


def test_ap_counts_rank_of_each_hit():
    # K=3 true cells {0, 1, 2}; predicted order 0, 3, 1 (top-3): hits at ranks 1 and 3
    # AP = (1/1 + 2/3) / 3 = 5/9
    y_true = np.array([[1, 1, 1, 0]], dtype=float)
    y_pred = np.array([[0.9, 0.5, 0.1, 0.8]])
    assert map_at_k(y_true, y_pred) == pytest.approx(5 / 9)
    assert recall_at_k(y_true, y_pred) == pytest.approx(2 / 3)


def test_mask_excludes_cells_and_ties_take_lower_index():
    # (T, H, W) = (1, 2, 2); mask drops cell (0, 1), whose prediction is the highest
    y_true = np.array([[[1, 5], [0, 0]]], dtype=float)
    y_pred = np.array([[[0.2, 9.0], [0.2, 0.0]]])
    mask = np.array([[1, 0], [1, 1]])
    # in mask: cells 0, 2, 3 with truth 1, 0, 0 -> K=1; predictions tie 0.2 at cells 0 and 2,
    # the stable order puts cell 0 first -> hit
    assert recall_at_k(y_true, y_pred, mask) == 1.0
    # without the mask cell 1 (pred 9) is true as well: K=2, top-2 = {1, 0} -> both hit
    assert recall_at_k(y_true, y_pred) == 1.0
    y_pred_swapped = np.array([[[0.2, 9.0], [0.3, 0.0]]])
    assert recall_at_k(y_true, y_pred_swapped, mask) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_gsnet_reference_on_random_grid(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.poisson(0.15, size=(30, 1, 5, 6)).astype(float) * rng.uniform(1, 3, (30, 1, 5, 6))
    # rounded predictions create many ties, which the reference breaks by lower index
    y_pred = np.round(rng.uniform(0, 1, size=(30, 1, 5, 6)), 1)
    mask = (rng.uniform(size=(5, 6)) > 0.2).astype(float)
    ref_recall, ref_map = _reference_metrics(y_true, y_pred, mask)
    assert recall_at_k(y_true[:, 0], y_pred[:, 0], mask) * 100 == pytest.approx(ref_recall)
    assert map_at_k(y_true[:, 0], y_pred[:, 0], mask) == pytest.approx(ref_map)


def test_nan_and_shape_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        topk_table(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN inside the mask"):
        topk_table(np.zeros((2, 3)), np.array([[0, np.nan, 0], [0, 0, 0]]))
    assert np.isnan(recall_at_k(np.zeros((2, 3)), np.ones((2, 3))))


def _long(matrix, ids, times, col):
    frame = pd.DataFrame(matrix, index=times, columns=ids)
    frame.index.name, frame.columns.name = "timestamp", "series_id"
    return frame.stack().rename(col).reset_index()


def test_hotspot_metrics_long_frames_match_arrays():
    rng = np.random.default_rng(3)
    y_true = rng.poisson(0.3, (12, 8)).astype(float)
    y_pred = rng.uniform(size=(12, 8))
    ids = [f"cell_0_{j}" for j in range(8)]
    times = pd.date_range("2016-02-01", periods=12, freq="h")
    actual = _long(y_true, ids, times, "value")
    forecast = _long(y_pred, ids, times, "yhat").sample(frac=1.0, random_state=0)
    mask_ids = ids[:6]
    out = hotspot_metrics(forecast, actual, mask=mask_ids)
    mask = np.r_[np.ones(6), np.zeros(2)]
    assert out["recall"].iloc[0] == pytest.approx(recall_at_k(y_true, y_pred, mask))
    assert out["map"].iloc[0] == pytest.approx(map_at_k(y_true, y_pred, mask))
    with pytest.raises(ValueError, match="no .* forecast for some cells"):
        hotspot_metrics(forecast[forecast["series_id"] != ids[0]], actual, mask=mask_ids)


def test_pai_and_pei_hand_computed():
    # 10 equal cells, 20 incidents; flag 20% = the 2 top-scored cells (0 and 1) holding 8 + 2
    # PAI = (10 / 20) / (2 / 10) = 2.5; best 2 cells hold 8 + 6 = 14 -> PEI = 10 / 14
    y_true = np.array([8, 2, 6, 0, 1, 1, 0, 1, 1, 0])
    y_score = np.array([0.9, 0.8, 0.1, 0.3, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert pai(y_true, y_score, 0.2) == pytest.approx(2.5)
    assert pei(y_true, y_score, 0.2) == pytest.approx(10 / 14)
    # 25% of the area is reached after 3 cells (30%): cells 0, 1, 3 (score 0.3, 0 incidents)
    # PAI = ((8 + 2 + 0) / 20) / (3 / 10) = 5/3
    assert pai(y_true, y_score, 0.25) == pytest.approx(5 / 3)
    # unequal areas: cell 0 is half the map (area 5 of 10): flag it alone for 50%
    area = np.r_[5, np.full(9, 5 / 9)]
    assert pai(y_true, y_score, 0.5, cell_area=area) == pytest.approx((8 / 20) / 0.5)


def test_rank_hotspots_poisson_probability_and_ties():
    times = pd.to_datetime(["2024-01-01 00:00", "2024-01-01 01:00"])
    forecast = pd.DataFrame(
        {
            "series_id": ["b", "a", "c", "a", "b", "c"],
            "timestamp": [times[0]] * 3 + [times[1]] * 3,
            "yhat": [1.0, 1.0, 0.5, 0.2, -0.1, 2.0],
        }
    )
    ranked = rank_hotspots(forecast, top_k=2)
    first = ranked[ranked["period"] == times[0]]
    # tie a/b at 1.0 -> ordered by id; p = 1 - exp(-1) = 0.6321
    assert list(first["series_id"]) == ["a", "b"] and list(first["rank"]) == [1, 2]
    assert first["p_at_least_one"].iloc[0] == pytest.approx(1 - np.exp(-1.0))
    total = rank_hotspots(forecast, by_period=False)
    # totals: a 1.2, b 1.0 + 0 (negative clipped), c 2.5
    assert list(total["series_id"]) == ["c", "a", "b"]
    assert total["expected_count"].tolist() == pytest.approx([2.5, 1.2, 1.0])
    with pytest.raises(ValueError, match="several forecasts"):
        rank_hotspots(pd.concat([forecast, forecast.iloc[:1]]))
