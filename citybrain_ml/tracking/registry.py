"""Model registry workflow: register a run's model, promote a challenger only if it wins.

Champion and challenger are compared on the metric their training runs logged, and only when
both were evaluated on the same windows (same ``evaluation_key`` tag: dataset hash +
evaluation config + horizon). Every decision is recorded as tags on the model version.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException

CHAMPION = "champion"


class RegistryError(RuntimeError):
    """A registry operation cannot go ahead (missing run/version, incomparable runs...)."""


@dataclass
class PromotionDecision:
    name: str
    challenger_version: str
    champion_version: str | None
    metric: str
    challenger_score: float
    champion_score: float | None
    promoted: bool
    reason: str


def register(run_id: str, name: str, artifact: str = "model") -> str:
    """Register ``runs:/<run_id>/<artifact>`` under ``name``; returns the new version.

    Every check runs before the registry is touched, so a refused run leaves no empty
    registered model behind.

    Parameters
    ----------
    run_id : str
        The training run (a model run of a job).
    name : str
        Registered model name.
    artifact : str
        Artifact path of the model inside the run.

    Returns
    -------
    str
        The new version.

    Raises
    ------
    RegistryError
        Unknown run; a run trained under k-suppression (``output.privacy_k``: no model is
        logged, since a model keeps recent per-cell history); a run without the model
        artifact (e.g. from ``citybrain backtest``).
    """
    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise RegistryError(f"run {run_id} not found in {mlflow.get_tracking_uri()}") from exc
    k = suppression_k(run)
    if k is not None:
        raise RegistryError(
            f"run {run_id} was trained under k-suppression (output.privacy_k={k}): its model "
            "keeps recent per-cell counts, so none is logged and none can be registered; train "
            "without privacy_k into a restricted tracking store to register a model"
        )
    if not _has_model(client, run, artifact):
        raise RegistryError(
            f"run {run_id} has no '{artifact}' artifact to register (backtest runs and runs with "
            "tracking.log_models: false log none); pick a model run of a train job"
        )
    mv = mlflow.register_model(f"runs:/{run_id}/{artifact}", name)
    return str(mv.version)


def suppression_k(run) -> int | None:
    """The ``output.privacy_k`` a run was trained with (from its ``config.json``), or None."""
    try:
        config = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/config.json")
    except Exception:  # no config logged (a run made outside citybrain jobs): not suppressed
        return None
    k = (config.get("output") or {}).get("privacy_k")
    return int(k) if k else None


def _has_model(client, run, artifact: str) -> bool:
    """Whether ``runs:/<run>/<artifact>`` resolves: a logged model (MLflow 3) or artifacts."""
    try:
        logged = mlflow.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"source_run_id = '{run.info.run_id}' AND name = '{artifact}'",
            output_format="list",
        )
        if logged:
            return True
    except (AttributeError, MlflowException):  # MLflow 2: models are plain run artifacts
        pass
    parent, _, leaf = artifact.rstrip("/").rpartition("/")
    listed = client.list_artifacts(run.info.run_id, parent or None)
    return any(a.path.rstrip("/").rpartition("/")[2] == leaf for a in listed)


def promote(
    name: str,
    version: str,
    metric: str = "mae_mean",
    min_improvement: float = 0.0,
    alias: str = CHAMPION,
) -> PromotionDecision:
    """Move ``alias`` to ``version`` if it beats the current holder on ``metric``.

    Parameters
    ----------
    name, version : registered model name and challenger version.
    metric : run metric to compare (lower is better), logged by the training job.
    min_improvement : relative improvement required, e.g. 0.02 = challenger must be 2% better.
    alias : the alias to move (default ``champion``).
    """
    client = mlflow.MlflowClient()
    challenger = _version(client, name, version)
    ch_run = client.get_run(challenger.run_id)
    ch_score = _metric(ch_run, metric, f"{name} v{version}")
    try:
        champion = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        champion = None
    if champion is None:
        decision = PromotionDecision(
            name,
            str(version),
            None,
            metric,
            ch_score,
            None,
            True,
            f"no {alias} yet; v{version} becomes {alias}",
        )
    elif str(champion.version) == str(version):
        decision = PromotionDecision(
            name,
            str(version),
            str(version),
            metric,
            ch_score,
            ch_score,
            False,
            f"v{version} already holds {alias}",
        )
    else:
        decision = _compare(
            client, name, challenger, ch_run, ch_score, champion, metric, min_improvement
        )
    if decision.promoted:
        client.set_registered_model_alias(name, alias, str(version))
    _record(client, decision)
    return decision


def _compare(client, name, challenger, ch_run, ch_score, champion, metric, min_improvement):
    cp_run = client.get_run(champion.run_id)
    key_ch = ch_run.data.tags.get("evaluation_key")
    key_cp = cp_run.data.tags.get("evaluation_key")
    if not key_ch or key_ch != key_cp:
        raise RegistryError(
            f"{name}: v{challenger.version} and champion v{champion.version} were not evaluated on "
            f"the same windows (evaluation_key {key_ch} vs {key_cp}); re-run both on one config"
        )
    cp_score = _metric(cp_run, metric, f"{name} v{champion.version}")
    needed = cp_score * (1 - min_improvement)
    wins = ch_score < needed
    verdict = "beats" if wins else "does not beat"
    reason = (
        f"v{challenger.version} {metric}={ch_score:.4g} {verdict} champion v{champion.version} "
        f"{metric}={cp_score:.4g} (needs < {needed:.4g}, min_improvement={min_improvement})"
    )
    return PromotionDecision(
        name,
        str(challenger.version),
        str(champion.version),
        metric,
        ch_score,
        cp_score,
        wins,
        reason,
    )


def _version(client, name, version):
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"model {name} has no version {version}") from exc


def _metric(run, metric: str, label: str) -> float:
    if metric not in run.data.metrics:
        known = ", ".join(sorted(run.data.metrics)[:12])
        raise RegistryError(
            f"{label}: run {run.info.run_id} has no metric {metric!r} (has: {known})"
        )
    return float(run.data.metrics[metric])


def _record(client, d: PromotionDecision) -> None:
    tags = {
        "promotion.decision": "promoted" if d.promoted else "rejected",
        "promotion.reason": d.reason,
        "promotion.metric": d.metric,
        "promotion.compared_to": d.champion_version or "none",
    }
    for key, value in tags.items():
        client.set_model_version_tag(d.name, d.challenger_version, key, value)
