"""Model review through a real MLflow server: train + register over HTTP, then open the run's
page in headless Chromium and check a reviewer finds the artifacts (screenshot kept)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from citybrain_ml.cli.main import app

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
runner = CliRunner()

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian chromium not installed (.ci/run installs it)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp / 'server.db'}",
            "--artifacts-destination",
            str(tmp / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=open(tmp / "server.log", "w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    import mlflow

    deadline = time.time() + 120
    while True:
        try:
            mlflow.MlflowClient(tracking_uri=url).search_experiments(max_results=1)
            break
        except Exception:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(
                    f"mlflow server did not start: {(tmp / 'server.log').read_text()[-2000:]}"
                )
            time.sleep(1)
    yield url, tmp
    proc.terminate()
    proc.wait(timeout=30)


def _chromium(url: str, *args: str) -> str:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--user-data-dir=" + str(Path(args[0]).parent / "chrome-profile"),
        "--virtual-time-budget=20000",
        *args[1:],
        url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout


def test_train_register_and_review_in_browser(server, monkeypatch):
    url, tmp = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    cfg = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    cfg["data"]["root"] = str(REPO / "data_samples")
    cfg["models"] = [
        {"type": "seasonal_naive", "params": {"season_length": 96}},
        {"type": "lightgbm", "params": {"n_estimators": 20, "n_jobs": 1}},
    ]
    cfg["evaluation"]["n_windows"] = 2
    cfg["output"] = {"dir": str(tmp / "outputs")}
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["train", "--config", str(path), "--no-progress"])
    assert result.exit_code == 0, result.output

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=url)
    exp = client.get_experiment_by_name("citybrain-quickstart")
    run = client.search_runs([exp.experiment_id], "tags.model_type = 'lightgbm'")[0]
    reg = runner.invoke(app, ["register", "--run-id", run.info.run_id, "--name", "quickstart-lgbm"])
    assert reg.exit_code == 0, reg.output
    prom = runner.invoke(app, ["promote", "--name", "quickstart-lgbm", "--version", "1"])
    assert prom.exit_code == 0 and "promoted" in prom.output

    page = f"{url}/#/experiments/{exp.experiment_id}/runs/{run.info.run_id}/artifacts"
    dom = _chromium(page, str(tmp / "dom"), "--dump-dom")
    for name in ("model_card.md", "feature_importance.csv", "plots", "metrics_by_horizon.csv"):
        assert name in dom, f"{name} not listed on the run page"
    shot = tmp / "run_page.png"
    _chromium(page, str(tmp / "shot"), f"--screenshot={shot}", "--window-size=1400,900")
    assert shot.is_file() and shot.stat().st_size > 10_000
