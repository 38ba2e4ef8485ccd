"""README examples run as written (the blocks marked ``<!-- test: run -->``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(
    r"<!-- test: run -->\n```python\n(.*?)```", (REPO / "README.md").read_text(), re.S
)


def test_readme_has_runnable_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    # the examples use repo-relative paths; a user's own file is stood in for by a real slice
    monkeypatch.chdir(REPO)
    code = BLOCKS[index]
    if "my_counts.csv" in code:
        from citybrain_ml.data import load_sz_taxi

        v = load_sz_taxi(root="data_samples").values
        v = v.rename(columns={"series_id": "detector", "timestamp": "time", "value": "flow"})
        path = tmp_path / "my_counts.csv"
        v.to_csv(path, index=False)
        code = code.replace('"my_counts.csv"', repr(os.fspath(path)))
    namespace: dict = {"pd": pd}
    exec(compile(code, f"README block {index}", "exec"), namespace)
