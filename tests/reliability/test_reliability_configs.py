"""Fail-fast config checks must not refuse the job configs shipped in ``configs/``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from citybrain_ml.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
JOBS = [
    p
    for p in sorted((REPO / "configs").glob("*.yaml"))
    if isinstance(yaml.safe_load(p.read_text()), dict) and "models" in yaml.safe_load(p.read_text())
]


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_shipped_job_configs_pass_every_check(path):
    load_config(path)


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    text = (REPO / "configs" / "quickstart.yaml").read_text().replace("horizon:", "horizn:")
    path = tmp_path / "job.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"unknown key 'horizn' \(did you mean 'horizon'\?\)"):
        load_config(path)
