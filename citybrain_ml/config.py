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
    service_hours: str = Field(
        "auto",
        description="when the series can be observed: 'auto' detects daily closed hours (slots "
        "no series is ever observed in), 'always', or operating hours such as '05:30-23:00'. "
        "Closed slots are never origins, calibration points, scored targets or forecast rows",
    )
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

    @model_validator(mode="after")
    def _no_registering_suppressed_models(self):
        # a k-suppressed job logs no model: refuse before any work, not after the registry
        # has been given an empty registered model
        if self.tracking.register_as and self.output.privacy_k:
            raise ValueError(
                "tracking.register_as cannot be combined with output.privacy_k: a k-suppressed "
                "job logs no model to register"
            )
        return self


def load_config(path: str | Path) -> JobConfig:
    """Read and validate a YAML job config; errors name the file and the field.

    Every value is checked here (see :func:`check_config`), before any data load or run.
    """
    return check_config(load_yaml_model(path, JobConfig), path)


def load_yaml_model(path: str | Path, model: type[BaseModel]):
    """Read a YAML file into the pydantic ``model``; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML: {problem}{where}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        # a misspelt key also makes the right one "missing": name the unknown key first
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        if first["type"] == "extra_forbidden":
            key = str(first["loc"][-1])
            known = _fields_at(model, first["loc"][:-1])
            section = ".".join(str(p) for p in first["loc"][:-1])
            msg = f"unknown key '{key}'" + (f" in '{section}'" if section else "")
            hint = _did_you_mean(key, known)
            # the misspelt key's intended field is "missing" too: not a separate problem
            others = [
                e
                for e in errors[1:]
                if not (e["type"] == "missing" and f"'{e['loc'][-1]}'" in hint)
            ]
            more = f" (+{len(others)} more)" if others else ""
            raise ConfigError(f"{path}: {msg}{hint}{more}") from exc
        raise ConfigError(f"{path}: field '{where}': {first['msg']}{more}") from exc


def _did_you_mean(word: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f"; known: {', '.join(sorted(str(c) for c in choices))}" if choices else ""


def _fields_at(model: type[BaseModel], loc) -> list[str]:
    """Field names of the (nested) pydantic model at ``loc`` (list indices skipped)."""
    import typing

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = field.annotation
        # unwrap list[X] / X | None down to a model class
        for _ in range(3):
            args = [a for a in typing.get_args(current) if a is not type(None)]
            if isinstance(current, type) and issubclass(current, BaseModel):
                break
            if not args:
                break
            current = args[0]
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


#: metrics every evaluation table carries (``select_metric`` must be one of them)
SELECT_METRICS = ("mae", "rmse", "mape", "smape")


def check_config(cfg: JobConfig, path: str | Path = "<config>") -> JobConfig:
    """Check every value that pydantic's types cannot: model types and their parameters,
    the dataset name, the selection metric, decision types, levels and paths -- before any
    data is loaded or any MLflow run exists. Raises :class:`ConfigError` naming the field.
    """
    from citybrain_ml.data.loaders import DATASETS
    from citybrain_ml.models import model_class
    from citybrain_ml.optimize.decisions import REGISTRY as DECISIONS

    problems = []
    if cfg.data.dataset not in DATASETS:
        problems.append(
            f"data.dataset: unknown dataset '{cfg.data.dataset}'"
            f"{_did_you_mean(cfg.data.dataset, DATASETS)}"
        )
    if cfg.data.root is not None and not Path(cfg.data.root).expanduser().is_dir():
        problems.append(f"data.root: folder not found: {cfg.data.root}")
    for i, m in enumerate(cfg.models):
        try:
            cls = model_class(m.type)
        except (ValueError, KeyError):
            from citybrain_ml.models import REGISTRY as MODELS

            problems.append(
                f"models[{i}].type: unknown model type '{m.type}'{_did_you_mean(m.type, MODELS)}"
            )
            continue
        allowed = set(cls._param_names())
        for key in sorted(set(m.params) - allowed):
            problems.append(
                f"models[{i}].params: model '{m.type}' has no parameter '{key}'"
                f"{_did_you_mean(key, allowed)}"
            )
    if cfg.select_metric not in SELECT_METRICS:
        problems.append(
            f"select_metric: unknown metric '{cfg.select_metric}'"
            f"{_did_you_mean(cfg.select_metric, SELECT_METRICS)}; choose from "
            f"{', '.join(SELECT_METRICS)}"
        )
    for i, level in enumerate(cfg.levels):
        if not 0 < level < 100:
            problems.append(f"levels[{i}]: {level} is not a percentage between 0 and 100")
    for i, d in enumerate(cfg.decisions):
        if d.type not in DECISIONS:
            problems.append(
                f"decisions[{i}].type: unknown decision type '{d.type}'"
                f"{_did_you_mean(d.type, DECISIONS)}"
            )
    if problems:
        more = f" (+{len(problems) - 1} more: {'; '.join(problems[1:])})" if problems[1:] else ""
        raise ConfigError(f"{path}: {problems[0]}{more}")
    return cfg
