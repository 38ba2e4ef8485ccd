"""Rolling-origin backtests, the fixed-split protocol, and the diagnostic plots."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import make_series

from citybrain_ml.data.schema import SeriesDataset
from citybrain_ml.evaluation import (
    backtest,
    evaluate_protocol,
    plot_coverage,
    plot_forecast_vs_actual,
    plot_metrics_by_horizon,
    plot_residuals,
    save_figure,
)
from citybrain_ml.models.baselines import HistoricalAverage, LastValue, SeasonalNaive

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def small_df() -> pd.DataFrame:
    return make_series(n_series=2, n_steps=24 * 8)


class FitSpy(LastValue):
    """LastValue that records the newest timestamp each fit saw (class-level log)."""

    seen: list = []

    def _fit(self, df):
        FitSpy.seen.append(df["timestamp"].max())


def _assert_last_value_uses_origin(result, df):
    """Every LastValue forecast equals the series' value at its own origin (no look-ahead)."""
    at_origin = result.forecasts.merge(
        df.rename(columns={"timestamp": "origin", "value": "at_origin"})[
            ["series_id", "origin", "at_origin"]
        ],
        on=["series_id", "origin"],
        how="left",
    )
    np.testing.assert_allclose(at_origin["yhat"], at_origin["at_origin"])


@pytest.mark.parametrize("refit", [True, False])
def test_last_value_backtest_forecasts_the_value_at_each_origin(small_df, refit):
    FitSpy.seen = []
    result = backtest(
        FitSpy(calibration_steps=0), small_df, horizon=3, n_windows=4, refit=refit, progress=False
    )
    times = pd.DatetimeIndex(small_df["timestamp"].unique()).sort_values()
    assert result.origins == list(times[-3 - 9 - 1 :: 3][:4])  # last window ends at the end
    _assert_last_value_uses_origin(result, small_df)
    # targets lie strictly after their origin, within the horizon
    lead = (result.forecasts["timestamp"] - result.forecasts["origin"]) / pd.Timedelta("1h")
    assert (lead == result.forecasts["horizon_step"]).all()
    # each fit saw data up to its origin only: once per window, or once in total
    assert FitSpy.seen == (result.origins if refit else result.origins[:1])
    assert len(result.forecasts) == 2 * 3 * 4  # series x steps x windows
    assert result.fit_seconds >= 0 and result.predict_seconds >= 0


def test_backtest_metric_tables(small_df):
    result = backtest(
        HistoricalAverage("day", calibration_steps=0),
        small_df,
        horizon=4,
        n_windows=3,
        progress=False,
    )
    assert list(result.metrics["horizon_step"]) == [1, 2, 3, 4]
    assert (result.metrics["n"] == 2 * 3).all()  # series x windows per step
    assert len(result.per_window) == 3
    # per-window MAE is the plain mean |error| of that window's rows
    fc = result.forecasts
    first = fc[fc["origin"] == result.origins[0]]
    expected = np.mean(np.abs(first["value"] - first["yhat"]))
    assert result.per_window.loc[0, "mae"] == pytest.approx(expected)
    assert result.summary().loc[0, "n"] == 24


def test_backtest_intervals_and_dataset_input(small_df):
    ds = SeriesDataset(values=small_df, freq="h")
    result = backtest(
        SeasonalNaive(season_length=24, horizon=3),
        ds,
        horizon=3,
        n_windows=2,
        levels=[80],
        progress=True,
    )
    assert {"yhat_lo_80", "yhat_hi_80", "origin", "value"} <= set(result.forecasts.columns)
    assert result.metrics["coverage_80"].between(0, 100).all()
    assert (result.metrics["width_80"] > 0).all()


def test_backtest_skips_missing_targets(small_df):
    df = small_df.copy()
    last = df["timestamp"].max()
    df.loc[(df["series_id"] == "s0") & (df["timestamp"] == last), "value"] = np.nan
    result = backtest(LastValue(calibration_steps=0), df, horizon=2, n_windows=2, progress=False)
    # the missing target is the step-2 target of the last window for s0
    assert result.metrics.set_index("horizon_step")["n"].to_dict() == {1: 4, 2: 3}
    assert result.forecasts["value"].isna().sum() == 1
    # a 0 reading declared missing via null_value is skipped too, in summary() as well
    df.loc[(df["series_id"] == "s1") & (df["timestamp"] == last), "value"] = 0.0
    result = backtest(
        LastValue(calibration_steps=0), df, horizon=2, n_windows=2, progress=False, null_value=0.0
    )
    assert result.metrics.set_index("horizon_step")["n"].to_dict() == {1: 4, 2: 2}
    assert result.summary().loc[0, "n"] == 6


def test_evaluate_protocol_scores_every_test_window_without_refit(small_df):
    FitSpy.seen = []
    times = pd.DatetimeIndex(small_df["timestamp"].unique()).sort_values()
    test_start = times[-48]  # last two days are the test period
    result = evaluate_protocol(FitSpy(calibration_steps=0), small_df, test_start, horizon=3)
    assert FitSpy.seen == [times[-49]]  # one fit, on data strictly before test_start
    # origins: from the last training step to 3 steps before the end -> 48 - 3 + 1 = 46
    assert result.origins == list(times[-49:-3])
    fc = result.forecasts
    assert fc["timestamp"].min() == test_start and fc["timestamp"].max() == times[-1]
    # only complete windows: every test step but the last horizon - 1 is a 1-step target once
    for _, step1 in fc[fc["horizon_step"] == 1].groupby("series_id"):
        assert list(step1["timestamp"]) == list(times[-48:-2])
    _assert_last_value_uses_origin(result, small_df)
    assert len(result.per_window) == 46
    strided = evaluate_protocol(LastValue(calibration_steps=0), small_df, test_start, 3, stride=5)
    assert strided.origins == list(times[-49:-3:5])


def test_evaluate_protocol_errors(small_df):
    with pytest.raises(ValueError, match="outside the data"):
        evaluate_protocol(LastValue(), small_df, "2030-01-01", horizon=3)
    last = small_df["timestamp"].max()
    with pytest.raises(ValueError, match="fewer than horizon 3"):
        evaluate_protocol(LastValue(), small_df, last, horizon=3)


# ---------------------------------------------------------------------- plots
@pytest.fixture
def scored(small_df):
    return backtest(
        SeasonalNaive(season_length=24, horizon=6),
        small_df,
        horizon=6,
        n_windows=2,
        levels=[50, 90],
        progress=False,
    )


def test_plots_write_png_files_atomically(scored, small_df, tmp_path):
    history = small_df[small_df["timestamp"] <= scored.origins[0]].groupby("series_id").tail(48)
    figures = {
        "forecast.png": plot_forecast_vs_actual(
            history, scored.forecasts, actuals=small_df, max_series=1
        ),
        "mae.png": plot_metrics_by_horizon(scored.metrics, "mae"),
        "residuals.png": plot_residuals(scored.forecasts),
        "coverage.png": plot_coverage(scored.metrics),
    }
    for name, fig in figures.items():
        path = save_figure(fig, tmp_path / "plots" / name)
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(
        figures
    )  # no temp files left


def test_forecast_plot_draws_one_panel_per_series_and_interval_bands(scored):
    fig = plot_forecast_vs_actual(None, scored.forecasts, series_ids=["s0", "s1"])
    assert len(fig.axes) == 2
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["90% interval", "50% interval", "forecast"]
    point_only = scored.forecasts[["series_id", "timestamp", "horizon_step", "yhat"]]
    fig = plot_forecast_vs_actual(None, point_only, levels=[90], max_series=1)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["forecast"]


def test_metrics_plot_one_line_per_model_and_clear_errors(scored):
    both = pd.concat([scored.metrics.assign(model="a"), scored.metrics.assign(model="b")])
    fig = plot_metrics_by_horizon(both, "rmse", hue="model")
    assert len(fig.axes[0].get_lines()) == 2
    with pytest.raises(ValueError, match="no column 'mase'"):
        plot_metrics_by_horizon(scored.metrics, "mase")
    with pytest.raises(ValueError, match="suffix"):
        save_figure(fig, "no_suffix")


def test_importing_the_package_does_not_import_matplotlib():
    code = "import sys, citybrain_ml.evaluation; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
