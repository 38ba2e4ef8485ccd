"""Shared fixtures: paths to bundled samples and (when present) the full shared datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data_samples"
SHARED_DATA = Path(os.environ.get("CITYBRAIN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture
def shared_data() -> Path:
    """Root of ../shared/data; skips the test with a reason where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"full datasets not available at {SHARED_DATA} (only in the developers' checkout)"
        )
    return SHARED_DATA


def make_series(n_series: int = 3, n_steps: int = 24 * 21, freq: str = "h", seed: int = 0):
    """Synthetic long frame with daily + weekly seasonality and noise (deterministic)."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=n_steps, freq=freq)
    hours = ts.hour.to_numpy() + ts.minute.to_numpy() / 60
    frames = []
    for i in range(n_series):
        daily = 10 * np.sin(2 * np.pi * hours / 24 + i)
        weekly = 3 * (ts.day_of_week.to_numpy() >= 5)
        value = 50 + 5 * i + daily - weekly + rng.normal(0, 1, n_steps)
        frames.append(pd.DataFrame({"series_id": f"s{i}", "timestamp": ts, "value": value}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def hourly_df() -> pd.DataFrame:
    return make_series()


@pytest.fixture(scope="session")
def spark():
    """A local[2] Spark session; skips with the reason where pyspark or Java is missing."""
    from citybrain_ml.spark.session import SparkUnavailable, get_spark

    try:
        session = get_spark(
            "local[2]",
            app_name="citybrain-tests",
            conf={
                "spark.sql.shuffle.partitions": "4",
                "spark.default.parallelism": "2",
            },
        )
    except SparkUnavailable as exc:
        pytest.skip(str(exc))
    yield session
    session.stop()
