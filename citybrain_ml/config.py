"""Job configs (YAML) validated with pydantic: a typo fails at load time, naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A job config file is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """Which data to load: a named dataset (``load_dataset``) or a user table."""

    dataset: str = Field(description="registry name, e.g. sz_taxi, beijing_multisite, table")
    root: str | None = Field(
        None, description="folder holding traffic/ air/ incidents/ (default ../shared/data)"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="loader keyword options")
    series: list[str] | None = Field(None, description="keep only these series ids")
    start: str | None = None
    end: str | None = None
    future_covariates: str | None = Field(
        None,
        description="CSV/Parquet 'series_id, timestamp, <covariates>' for the forecast window "
        "(e.g. a weather forecast); models fitted with future covariates use it for the job's "
        "final forecast. Relative paths are read from the working directory",
    )


class ModelConfig(_Strict):
    type: str = Field(description="model registry name, e.g. lightgbm, seasonal_naive")
    name: str | None = Field(None, description="label for runs and outputs (default: type)")
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or self.type


class EvaluationConfig(_Strict):
    """``backtest``: rolling origin with refits; ``holdout``: fixed split, every test origin."""

    method: Literal["backtest", "holdout"] = "backtest"
    n_windows: int = Field(3, ge=1)
    step: int | None = Field(
        None, ge=1, description="steps between backtest origins (default horizon)"
    )
    test_ratio: float | None = Field(None, gt=0, lt=1)
    test_start: str | None = None
    stride: int = Field(1, ge=1, description="holdout: score every stride-th origin")
    null_value: float | None = Field(
        None, description="target value that means missing (masked in metrics)"
    )
    plot_series: int = Field(4, ge=0)
    future_covariates: Literal["none", "observed"] = Field(
        "none",
        description="'observed': score models that read future covariates with the observed "
        "values at target times (a perfect-forecast bound, tagged on the run); 'none': "
        "history only",
    )

    @model_validator(mode="after")
    def _holdout_needs_split(self):
        if self.method == "holdout" and self.test_ratio is None and self.test_start is None:
            raise ValueError("evaluation.method=holdout needs test_ratio or test_start")
        return self


class TrackingConfig(_Strict):
    experiment: str = "citybrain"
    tracking_uri: str | None = Field(
        None, description="default: $MLFLOW_TRACKING_URI or ./mlflow.db"
    )
    log_models: bool = True
    register_as: str | None = Field(None, description="register the best model under this name")


class OutputConfig(_Strict):
    dir: str = "outputs"
    formats: list[Literal["parquet", "csv"]] = ["parquet", "csv"]
    privacy_k: int | None = Field(
        None,
        ge=1,
        description="k-suppression for event counts: cells with fewer than k training events are "
        "masked in every published forecast, no per-cell plots or model artifacts are logged",
    )


class DecisionConfig(_Strict):
    """A decision output computed from the best model's forecasts (see optimize.decisions)."""

    type: str
    params: dict[str, Any] = Field(default_factory=dict)


class JobConfig(_Strict):
    name: str
    data: DataConfig
    models: list[ModelConfig] = Field(min_length=1)
    horizon: int = Field(ge=1)
    levels: list[int] = [80, 90]
    seed: int = 0
    evaluation: EvaluationConfig = EvaluationConfig()
    tracking: TrackingConfig = TrackingConfig()
    output: OutputConfig = OutputConfig()
    select_metric: str = Field("mae", description="metric used to pick the best model")
    decisions: list[DecisionConfig] = Field(default_factory=list)


def load_config(path: str | Path) -> JobConfig:
    """Read and validate a YAML job config; errors name the file and the field."""
    return load_yaml_model(path, JobConfig)


def load_yaml_model(path: str | Path, model: type[BaseModel]):
    """Read a YAML file into the pydantic ``model``; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{path}: field '{where}': {first['msg']}{more}") from exc
