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

from citybrain_ml.data.covariates import last_observed, split_future
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
        frame = model_input
        if not pd.api.types.is_datetime64_any_dtype(frame[TIMESTAMP]):
            frame = frame.assign(**{TIMESTAMP: pd.to_datetime(frame[TIMESTAMP])})
        as_of = params.get("as_of") or None
        origin = pd.Timestamp(as_of) if as_of else last_observed(frame)
        if frame[TIMESTAMP].max() > origin:
            history, future, _ = split_future(frame, origin)
        else:  # nothing after the origin: no copy of a city-scale frame
            history, future = frame, None
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


def log_model(
    model: Forecaster,
    name: str = "model",
    history_example: pd.DataFrame | None = None,
    levels: list[int] | None = None,
    registered_model_name: str | None = None,
    code: str = "auto",
):
    """Log a fitted forecaster to the active MLflow run, as ``mlflow.<flavor>.log_model`` does.

    The model is logged as an MLflow pyfunc whose ``predict`` takes a history frame (any
    number of series) and params ``horizon``, ``as_of``, ``levels``, with a signature, an
    input example and pinned requirements. Load it back with :func:`load_model` (the
    forecaster) or ``mlflow.pyfunc.load_model`` (the pyfunc).

    Parameters
    ----------
    model : Forecaster
        A fitted citybrain_ml model.
    name : str
        Model name inside the run (its URI is ``runs:/<run_id>/<name>``).
    history_example : DataFrame, optional
        Long-format history for the input example and signature (two series are kept);
        default: the history the model keeps from training.
    levels : list of int, optional
        Default interval levels recorded in the signature (none for an uncalibrated model).
    registered_model_name : str, optional
        Also register the model under this name.
    code : {"auto", "package", "source"}
        How citybrain_ml travels with the model. ``package``: a pinned requirement
        ``citybrain_ml==<version>`` (one line; the scoring environment installs the same
        release). ``source``: a copy of the package's source files (for a development checkout
        whose code no release matches). ``auto``: ``package`` when citybrain_ml is installed
        from a built distribution, else ``source``.

    Returns
    -------
    mlflow.models.model.ModelInfo

    Examples
    --------
    >>> import mlflow
    >>> from citybrain_ml.tracking import log_model, load_model
    >>> with mlflow.start_run():                                        # doctest: +SKIP
    ...     info = log_model(model, name="model")
    >>> forecaster = load_model(info.model_uri)                         # doctest: +SKIP
    """
    from mlflow.models import infer_signature

    model._check_fitted()
    history = model.history_ if history_example is None else history_example
    code_paths, extra = _code_shipping(code)
    horizon = int(model.horizon)
    # an uncalibrated model serves point forecasts only
    default_levels = list(levels or [80, 90]) if model.conformal_scores_ else []
    # levels travel as "80,90" (a string keeps the signature typed when there are none)
    params = {"horizon": horizon, "as_of": "", "levels": ",".join(map(str, default_levels))}
    example = _example(model, history)
    output = model.predict(horizon, history_df=example, levels=default_levels or None)
    signature = infer_signature(example, output, params=params)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = model.save(Path(tmp) / "model")
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=ForecasterPyfunc(),
            artifacts={MODEL_ARTIFACT: str(model_dir)},
            code_paths=code_paths,
            signature=signature,
            input_example=example,
            pip_requirements=[*pinned_requirements(), *extra],
            registered_model_name=registered_model_name,
        )
    mlflow.set_tag(f"{name}.code", "source" if code_paths else "package")
    return info


def log_forecaster(
    model: Forecaster,
    history_example: pd.DataFrame,
    name: str = "model",
    levels: list[int] | None = None,
    registered_model_name: str | None = None,
):
    """Kept for existing callers: :func:`log_model` with the history example first."""
    return log_model(model, name, history_example, levels, registered_model_name)


def load_model(model_uri: str) -> Forecaster:
    """Load a forecaster logged with :func:`log_model` (``runs:/...``, ``models:/...``).

    Parameters
    ----------
    model_uri : str
        ``runs:/<run_id>/model``, ``models:/<name>@<alias>``, ``models:/<name>/<version>``
        or a local path.

    Returns
    -------
    Forecaster
        The fitted model (``predict``, ``historical_forecasts``...). For the pyfunc wrapper
        use ``mlflow.pyfunc.load_model``.

    Raises
    ------
    ModelError
        The URI names no model, or not a citybrain_ml one, or a corrupt/incompatible one.
    """
    from citybrain_ml.models.base import ModelError

    pyfunc = load_forecaster(model_uri)
    try:
        wrapper = pyfunc.unwrap_python_model()
    except Exception as exc:  # not a python_function model built from a PythonModel
        raise ModelError(f"{model_uri} is not a citybrain_ml model: {_first_line(exc)}") from exc
    if not isinstance(getattr(wrapper, "model", None), Forecaster):
        raise ModelError(f"{model_uri} is not a citybrain_ml model ({type(wrapper).__name__})")
    return wrapper.model


def _code_shipping(code: str) -> tuple[list[str] | None, list[str]]:
    """``(code_paths, extra requirements)`` for how citybrain_ml travels with a model."""
    if code not in ("auto", "package", "source"):
        raise ValueError(f"code must be 'auto', 'package' or 'source', got {code!r}")
    if code == "auto":
        code = "package" if _installed_release() else "source"
    if code == "source":
        return [str(PACKAGE_DIR)], []
    from citybrain_ml import __version__

    return None, [f"citybrain_ml=={__version__}"]


def _installed_release() -> bool:
    """True when the running citybrain_ml is a pip-installed build, not a source checkout.

    Editable installs and builds of a local folder have no release that a scoring machine
    could install by version, so their models carry the source instead.
    """
    import json
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("citybrain_ml")
    except PackageNotFoundError:
        return False
    if dist.read_text("INSTALLER") is None:  # egg-info of a source tree
        return False
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    if "dir_info" in direct:  # editable, or built from a local folder
        return False
    installed = Path(str(dist.locate_file("citybrain_ml/__init__.py"))).resolve()
    return installed == PACKAGE_DIR / "__init__.py"


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
