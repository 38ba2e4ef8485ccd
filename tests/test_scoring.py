"""Scheduled batch scoring: atomic outputs, idempotent reruns, partial success, audit chain,
and the registry's champion/challenger workflow -- each failure mode with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from citybrain_ml.cli.main import app
from citybrain_ml.config import JobConfig
from citybrain_ml.jobs import run_train
from citybrain_ml.scoring import OutputExistsError, audit, run_forecast
from citybrain_ml.tracking.registry import RegistryError, promote, register

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _job(tmp: Path, models: list[dict], name: str = "sz") -> JobConfig:
    return JobConfig.model_validate(
        {
            "name": name,
            "data": {"dataset": "sz_taxi", "root": str(REPO / "data_samples")},
            "horizon": 4,
            "models": models,
            "evaluation": {"method": "backtest", "n_windows": 2, "step": 24},
            "tracking": {"experiment": "scoring-tests"},
            "output": {"dir": str(tmp / "outputs")},
        }
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two quick jobs logged to a private SQLite store; yields (tmp, uri, results, history path)."""
    tmp = tmp_path_factory.mktemp("scoring")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    # on this 2-week slice, 1 h ahead, persistence beats "same time yesterday"
    weak = run_train(
        _job(tmp, [{"type": "seasonal_naive", "params": {"season_length": 96}}]), progress=False
    )
    strong = run_train(_job(tmp, [{"type": "last_value"}]), progress=False)
    from citybrain_ml.data import load_sz_taxi

    history = load_sz_taxi(root=REPO / "data_samples").values
    path = tmp / "history.csv"
    history.to_csv(path, index=False)
    yield tmp, uri, weak, strong, path, history
    mp.undo()


def _uri(result) -> str:
    return f"runs:/{result.outcomes[0].run_id}/model"


def test_forecast_layout_manifest_and_idempotent_rerun(store, tmp_path):
    _, uri, weak, _, path, history = store
    first = run_forecast(_uri(weak), path, tmp_path, "sz", tracking_uri=uri, levels=[90])
    assert first.folder.name.startswith("as_of=") and not first.partial
    manifest = json.loads((first.folder / "manifest.json").read_text())
    assert manifest["series_forecast"] == history["series_id"].nunique()
    assert manifest["previous_manifest_sha256"] is None
    assert set(manifest["files"]) == {"forecast.parquet", "forecast.csv"}
    before = {p.name: p.read_bytes() for p in first.folder.iterdir()}
    again = run_forecast(_uri(weak), path, tmp_path, "sz", tracking_uri=uri, levels=[90])
    assert again.unchanged
    assert before == {p.name: p.read_bytes() for p in again.folder.iterdir()}


def test_different_result_refused_without_overwrite(store, tmp_path):
    _, uri, weak, strong, path, _ = store
    run_forecast(_uri(weak), path, tmp_path, "sz", tracking_uri=uri)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        run_forecast(_uri(strong), path, tmp_path, "sz", tracking_uri=uri)
    replaced = run_forecast(_uri(strong), path, tmp_path, "sz", tracking_uri=uri, overwrite=True)
    assert not replaced.unchanged


def test_hash_chain_and_audit_detects_tampering(store, tmp_path):
    _, uri, weak, _, path, history = store
    last = history["timestamp"].max()
    for as_of in (last - pd.Timedelta("30min"), last - pd.Timedelta("15min"), last):
        run_forecast(_uri(weak), path, tmp_path, "sz", tracking_uri=uri, as_of=str(as_of))
    job = tmp_path / "sz"
    assert audit(job) == []
    folders = sorted(job.iterdir())
    second = json.loads((folders[1] / "manifest.json").read_text())
    assert second["previous_manifest_sha256"] is not None
    csv = folders[1] / "forecast.csv"
    csv.write_text(csv.read_text().replace("road", "ROAD", 1))
    (folders[2] / "forecast.parquet").unlink()
    problems = audit(job)
    assert any("forecast.csv" in p and "tampered" in p for p in problems)
    assert any("forecast.parquet" in p and "missing" in p for p in problems)
    result = runner.invoke(app, ["audit", str(job)])
    assert result.exit_code == 1


def test_partial_success_lists_skipped_series(store, tmp_path):
    _, uri, weak, _, _, history = store
    ids = sorted(history["series_id"].unique())
    bad = history.copy()
    # one series stops 2 hours early (stale), one is hourly instead of 15-minutely
    stale = bad["series_id"].eq(ids[0]) & (
        bad["timestamp"] > bad["timestamp"].max() - pd.Timedelta("2h")
    )
    bad = bad[~stale]
    hourly = bad["series_id"].eq(ids[1]) & (bad["timestamp"].dt.minute != 0)
    bad = bad[~hourly]
    path = tmp_path / "bad.parquet"
    bad.to_parquet(path)
    args = [
        "forecast",
        "--model",
        _uri(weak),
        "--data",
        str(path),
        "--out",
        str(tmp_path / "o"),
        "--name",
        "sz",
        "--tracking-uri",
        uri,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 3, result.output
    folder = next((tmp_path / "o" / "sz").iterdir())
    skipped = json.loads((folder / "manifest.json").read_text())["series_skipped"]
    assert "missing recent history" in skipped[ids[0]]
    assert "wrong frequency" in skipped[ids[1]]
    fc = pd.read_parquet(folder / "forecast.parquet")
    assert set(fc["series_id"]) == set(ids[2:])


def test_missing_alias_and_corrupt_model_are_clear(store, tmp_path):
    tmp, uri, weak, _, path, _ = store
    args = [
        "forecast",
        "--model",
        "models:/nope@champion",
        "--data",
        str(path),
        "--out",
        str(tmp_path),
        "--tracking-uri",
        uri,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "cannot load model models:/nope@champion" in result.output
    assert "Traceback" not in result.output
    # corrupt the pickled model inside the artifact store (next to the SQLite file)
    client = mlflow.MlflowClient(tracking_uri=uri)
    model_id = client.get_run(weak.outcomes[0].run_id).outputs.model_outputs[0].model_id
    pkl = next(p for p in (tmp / "mlartifacts").rglob("model.pkl") if model_id in str(p))
    pkl.write_bytes(b"garbage")
    result = runner.invoke(app, args[:2] + [_uri(weak)] + args[3:])
    assert result.exit_code == 1
    assert "corrupt model file" in result.output or "cannot load model" in result.output


def test_promote_only_when_challenger_wins(store):
    _, uri, weak, strong, _, _ = store
    mlflow.set_tracking_uri(uri)
    v_weak = register(weak.outcomes[0].run_id, "sz-traffic")
    first = promote("sz-traffic", v_weak)
    assert first.promoted and "no champion" in first.reason
    v_strong = register(strong.outcomes[0].run_id, "sz-traffic")
    win = promote("sz-traffic", v_strong, metric="mae_mean")
    assert win.promoted, win.reason
    lose = promote("sz-traffic", v_weak, metric="mae_mean")
    assert not lose.promoted
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("sz-traffic", "champion").version) == v_strong
    tags = client.get_model_version("sz-traffic", v_weak).tags
    assert tags["promotion.decision"] == "rejected" and "does not beat" in tags["promotion.reason"]
    with pytest.raises(RegistryError, match="no metric"):
        promote("sz-traffic", v_weak, metric="nonexistent")


def test_model_from_incompatible_version_is_clear(store, tmp_path):
    tmp, uri, _, strong, path, _ = store
    client = mlflow.MlflowClient(tracking_uri=uri)
    model_id = client.get_run(strong.outcomes[0].run_id).outputs.model_outputs[0].model_id
    meta = next(p for p in (tmp / "mlartifacts").rglob("model_meta.json") if model_id in str(p))
    data = json.loads(meta.read_text())
    data["format_version"] = 99
    meta.write_text(json.dumps(data))
    args = [
        "forecast",
        "--model",
        _uri(strong),
        "--data",
        str(path),
        "--out",
        str(tmp_path),
        "--tracking-uri",
        uri,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "format version 99" in result.output and "Traceback" not in result.output


def test_batch_forecast_applies_decisions_and_privacy(tmp_path, monkeypatch):
    """Scheduled scoring with a job config: hotspot tables and map beside the forecast, cells
    with fewer than k training events suppressed, all of it hashed in the manifest."""
    import yaml

    from citybrain_ml.data import load_chicago_accident_grid

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    job = {
        "name": "incidents_batch",
        "data": {"dataset": "chicago_accident_grid", "root": str(REPO / "data_samples")},
        "horizon": 1,
        "levels": [],
        "models": [{"type": "kde_hotspot", "params": {"bandwidth": 0.5, "window": 336}}],
        "evaluation": {"method": "holdout", "test_ratio": 0.05},
        "select_metric": "rmse",
        "tracking": {"experiment": "incidents-batch"},
        "decisions": [{"type": "hotspots", "params": {"k": 5, "count_method": "nonzero"}}],
        "output": {"dir": str(tmp_path / "train_out")},
    }
    trained = run_train(JobConfig.model_validate(job), progress=False)
    job["output"]["privacy_k"] = 5
    config = tmp_path / "batch.yaml"
    config.write_text(yaml.safe_dump(job))
    history = load_chicago_accident_grid(root=REPO / "data_samples").values
    data = tmp_path / "history.parquet"
    history.to_parquet(data)
    args = [
        "forecast",
        "--model",
        _uri(trained),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "o"),
        "--name",
        "risk",
        "--levels",
        "",
        "--config",
        str(config),
        "--tracking-uri",
        uri,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    folder = next((tmp_path / "o" / "risk").iterdir())
    names = {p.name for p in folder.iterdir()}
    assert {"hotspot_forecast.csv", "hotspot_ranking.parquet", "hotspot_map.png"} <= names
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "hotspot_map.png" in manifest["files"]
    fc = pd.read_parquet(folder / "forecast.parquet")
    assert fc["suppressed"].any() and fc.loc[fc["suppressed"], "yhat"].isna().all()
    assert audit(tmp_path / "o" / "risk") == []
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "unchanged" in again.output


def test_train_runs_log_their_dataset_and_a_description(store):
    _, uri, weak, _, _, history = store
    client = mlflow.MlflowClient(tracking_uri=uri)
    model_run = client.get_run(weak.outcomes[0].run_id)
    inputs = model_run.inputs.dataset_inputs
    assert len(inputs) == 1
    dataset = inputs[0].dataset
    assert dataset.name and dataset.digest == model_run.data.tags["lineage.dataset_sha256"][:16]
    assert "series_id" in dataset.schema and "training" in {t.value for t in inputs[0].tags}
    note = model_run.data.tags["mlflow.note.content"]
    assert f"{history['series_id'].nunique()} series" in note
    assert "rolling-origin backtest, 2 window(s) every 24 steps" in note and "mae" in note
    assert client.get_run(weak.parent_run_id).inputs.dataset_inputs  # the parent run too


def test_series_with_less_history_than_the_features_read_is_named_in_the_manifest(store, tmp_path):
    tmp, uri, _, _, _, history = store
    # a model of its own: another test corrupts the shared ones on disk
    own = run_train(_job(tmp, [{"type": "last_value"}], name="short"), progress=False)
    first = sorted(history["series_id"].unique())[0]
    # last value steps back over up to 288 missing readings: 100 rows is usable but short
    cut = history[
        (history["series_id"] != first)
        | history.index.isin(history[history["series_id"] == first].tail(100).index)
    ]
    path = tmp_path / "short.parquet"
    cut.to_parquet(path)
    run = run_forecast(_uri(own), path, tmp_path / "o", "sz", tracking_uri=uri)
    manifest = json.loads((run.folder / "manifest.json").read_text())
    assert any(f"{first} (100 rows)" in w for w in manifest["warnings"])
    assert manifest["series_forecast"] == history["series_id"].nunique()


def test_unsorted_parquet_and_csv_publish_the_same_forecast_and_skips(store, tmp_path):
    """Row order and file format do not change what is published: Parquet ids are read as
    categoricals and the sorted-aware checks skip re-sorting, but the forecast files and the
    skipped series with their reasons are those of a sorted CSV."""
    _, uri, _, _, _, history = store
    # a model of its own: other tests in this module corrupt the store's two models
    own = run_train(_job(tmp_path, [{"type": "last_value"}], name="order"), progress=False)
    ids = sorted(history["series_id"].unique())
    bad = history[
        ~(
            history["series_id"].eq(ids[0])
            & (history["timestamp"] > history["timestamp"].max() - pd.Timedelta("2h"))
        )
    ]
    bad = bad[~(bad["series_id"].eq(ids[1]) & (bad["timestamp"].dt.minute != 0))]
    inputs = {
        "sorted.csv": bad,
        "sorted.parquet": bad,
        "shuffled.parquet": bad.sample(frac=1.0, random_state=0),
        "shuffled.csv": bad.sample(frac=1.0, random_state=1),
    }
    published = {}
    for name, frame in inputs.items():
        path = tmp_path / name
        if name.endswith(".csv"):
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        run = run_forecast(
            _uri(own), path, tmp_path / name.replace(".", "_"), "sz", tracking_uri=uri
        )
        manifest = json.loads((run.folder / "manifest.json").read_text())
        files = {f: (run.folder / f).read_bytes() for f in ("forecast.csv", "forecast.parquet")}
        published[name] = (files, manifest["series_skipped"], manifest["input_rows"])
    reference = published["sorted.csv"]
    assert set(reference[1]) == {str(ids[0]), str(ids[1])}
    for name, got in published.items():
        assert got == reference, name
