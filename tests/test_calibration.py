"""Calibration metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from citybrain_ml.evaluation.calibration import (
    brier_score,
    brier_skill_score,
    expected_calibration_error,
    plot_reliability,
    reliability_table,
)

PROB = np.array([0.1, 0.1, 0.3, 0.7, 0.9, 1.0])
OUTCOME = np.array([0, 1, 0, 1, 1, 1])


def test_reliability_table_bins():
    table = reliability_table(PROB, OUTCOME, n_bins=2)
    # bin 0 [0, 0.5): 0.1, 0.1, 0.3 -> mean 0.5/3, outcomes 0, 1, 0 -> 1/3
    # bin 1 [0.5, 1]: 0.7, 0.9, 1.0 (1.0 in the last bin) -> mean 2.6/3, outcomes all 1
    assert table["count"].tolist() == [3, 3]
    assert table["mean_predicted"].tolist() == pytest.approx([0.5 / 3, 2.6 / 3])
    assert table["observed_frequency"].tolist() == pytest.approx([1 / 3, 1.0])
    ten = reliability_table(PROB, OUTCOME)
    assert len(ten) == 10 and ten["count"].sum() == 6
    assert np.isnan(ten.loc[ten["count"] == 0, "mean_predicted"]).all()


def test_brier_and_skill():
    # squared errors: .01, .81, .09, .09, .01, 0 -> sum 1.01 -> BS = 1.01 / 6
    assert brier_score(PROB, OUTCOME) == pytest.approx(1.01 / 6)
    # climatology 4/6: errors (2/3)^2 twice, (1/3)^2 four times -> (8/9 + 4/9) / 6 = 2/9
    bss = brier_skill_score(PROB, OUTCOME)
    assert bss == pytest.approx(1 - (1.01 / 6) / (2 / 9))
    # reference 0.5 everywhere: BS_ref = 0.25
    assert brier_skill_score(PROB, OUTCOME, 0.5) == pytest.approx(1 - (1.01 / 6) / 0.25)
    assert np.isnan(brier_skill_score([1, 0], [1, 0], [1, 0]))


def test_expected_calibration_error():
    # from the 2-bin table: 3/6 * |0.5/3 - 1/3| + 3/6 * |2.6/3 - 1| = 0.5 * (0.5/3 + 0.4/3)
    assert expected_calibration_error(PROB, OUTCOME, n_bins=2) == pytest.approx(0.15)
    assert expected_calibration_error([0.0, 1.0], [0, 1]) == 0.0


def test_input_checks():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score([1.2], [1])
    with pytest.raises(ValueError, match="0/1"):
        brier_score([0.2], [2])
    with pytest.raises(ValueError, match="NaN"):
        brier_score([np.nan], [1])


def test_plot_reliability_returns_figure():
    pytest.importorskip("matplotlib")
    fig = plot_reliability(reliability_table(PROB, OUTCOME, n_bins=5))
    assert len(fig.axes) == 2
    line = fig.axes[0].lines[1]
    assert len(line.get_xdata()) == 4  # 4 non-empty bins of width 0.2
