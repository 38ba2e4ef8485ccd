"""Reliability corpus: bad input files on four surfaces, bad CLI usage, bad job configs and
dead tracking servers -- every refusal one clear line, within 10 s, before any work."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from input_cases import config_cases, file_cases, make_store, usage_cases

REPO = Path(__file__).resolve().parents[2]
_STORE = {}


def store():
    if "store" not in _STORE:
        _STORE["store"] = make_store(Path(tempfile.mkdtemp(prefix="reliability-store-")))
    return _STORE["store"]


@pytest.fixture(autouse=True)
def _ledger_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CITYBRAIN_LEDGER_HOME", str(tmp_path / "anchors"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


CASES = file_cases(store) + usage_cases(store) + config_cases(REPO)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_input_case(case, tmp_path):
    out = case.run(tmp_path / "case")
    assert not out.traceback and not out.partial and not out.lost and not out.silent_wrong, out
    assert out.outcome == case.expected, out
    if out.outcome == "refused":
        assert out.seconds < 10, out
