"""MLflow python_function flavour for citybrain_ml forecasters.

Unlike flavours whose ``predict`` takes a single config row, ours takes a **history frame**
(long format, any number of series) and returns the **forecast frame**, so one loaded model
batch-scores a whole city and can run per group on Spark (``mapInPandas``/``applyInPandas``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import pandas as pd

from citybrain_ml.data.covariates import split_future
from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE
from citybrain_ml.models.base import Forecaster

MODEL_ARTIFACT = "citybrain_model"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
# the libraries a loaded model may touch; pinned to the versions that trained it
_REQUIREMENTS = (
    "pandas",
    "numpy",
    "pyarrow",
    "scikit-learn",
    "lightgbm",
    "statsmodels",
    "scipy",
    "torch",
    "mlflow",
)


class ForecasterPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: ``predict(history_frame, params={"horizon", "as_of", "levels"})``."""

    def load_context(self, context) -> None:
        self.model = Forecaster.load(context.artifacts[MODEL_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        """Forecast from ``model_input``; rows after the origin carry future covariates.

        The origin is ``params["as_of"]`` or the last timestamp with an observed value; rows
        after it (``value`` empty, covariates such as a weather forecast filled) feed models
        fitted with future covariates and are ignored by the others.
        """
        params = params or {}
        frame = model_input.copy()
        frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP])
        history, future, _ = split_future(frame, params.get("as_of") or None)
        levels = parse_levels(params.get("levels"))
        horizon = int(params.get("horizon") or self.model.horizon)
        return self.model.predict(
            horizon, history_df=history, covariates=future, levels=levels or None
        )


def parse_levels(raw) -> list[int]:
    """Interval levels from ``"80,90"``, ``[80, 90]`` or nothing."""
    if raw is None or raw == "":
        return []
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    return [int(v) for v in items if str(v).strip()]


def pinned_requirements() -> list[str]:
    """``name==version`` for each library the model needs, as installed now."""
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for name in _REQUIREMENTS:
        try:
            v = version(name)
        except PackageNotFoundError:
            continue
        # the CPU torch wheel's local tag (+cpu) is not resolvable from PyPI
        reqs.append(f"{name}=={v.split('+')[0]}")
    return reqs


def log_forecaster(
    model: Forecaster,
    history_example: pd.DataFrame,
    name: str = "model",
    levels: list[int] | None = None,
    registered_model_name: str | None = None,
):
    """Log a fitted forecaster to the active MLflow run as a pyfunc with a signature.

    Parameters
    ----------
    model : Forecaster
        A fitted citybrain_ml model.
    history_example : DataFrame
        A small long-format history frame (used for the input example and signature).
    name : str
        Model name inside the run.
    levels : list of int, optional
        Default interval levels recorded in the signature.
    registered_model_name : str, optional
        Also register the model under this name.

    Returns
    -------
    mlflow.models.model.ModelInfo
    """
    from mlflow.models import infer_signature

    horizon = int(model.horizon)
    # an uncalibrated model serves point forecasts only
    default_levels = list(levels or [80, 90]) if model.conformal_scores_ else []
    # levels travel as "80,90" (a string keeps the signature typed when there are none)
    params = {"horizon": horizon, "as_of": "", "levels": ",".join(map(str, default_levels))}
    example = _example(model, history_example)
    output = model.predict(horizon, history_df=example, levels=default_levels or None)
    signature = infer_signature(example, output, params=params)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = model.save(Path(tmp) / "model")
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=ForecasterPyfunc(),
            artifacts={MODEL_ARTIFACT: str(model_dir)},
            code_paths=[str(PACKAGE_DIR)],
            signature=signature,
            input_example=example,
            pip_requirements=pinned_requirements(),
            registered_model_name=registered_model_name,
        )


def _example(model: Forecaster, history: pd.DataFrame) -> pd.DataFrame:
    # two series, just enough history for the model to forecast from
    need = max(model._history_to_keep(), 1)
    ids = list(pd.unique(history[SERIES_ID]))[:2]
    part = history[history[SERIES_ID].isin(ids)]
    part = part.groupby(SERIES_ID, sort=False).tail(need).reset_index(drop=True)
    cols = [SERIES_ID, TIMESTAMP, VALUE] + [
        c for c in part.columns if c not in (SERIES_ID, TIMESTAMP, VALUE)
    ]
    return part[cols]


def load_forecaster(model_uri: str):
    """Load a logged model as pyfunc, with a clear error for a missing/corrupt model."""
    from citybrain_ml.models.base import ModelError

    try:
        return mlflow.pyfunc.load_model(model_uri)
    except Exception as exc:  # MLflow raises many types: missing alias, bad artifact...
        raise ModelError(f"cannot load model {model_uri}: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
