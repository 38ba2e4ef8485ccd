"""Reliability corpus: publication safety (kill -9, races, stale staging) and tampering.

Every case states its expected outcome; none may end in a traceback, a partial or lost
output, or an undetected tamper. ``experiments/reliability.py`` runs the same corpus and
writes ``experiments/results/reliability.md``.
"""

from __future__ import annotations

import pytest
from publish_cases import publish_cases


@pytest.fixture(autouse=True)
def _ledger_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CITYBRAIN_LEDGER_HOME", str(tmp_path / "anchors"))
    monkeypatch.setenv("CITYBRAIN_LEDGER_KEY", "reliability-test-key")


@pytest.mark.parametrize("case", publish_cases(), ids=lambda c: c.name)
def test_publish_case(case, tmp_path):
    out = case.run(tmp_path)
    assert not out.traceback and not out.partial and not out.lost and not out.silent_wrong, out
    assert out.outcome == case.expected, out


def test_unsigned_ledger_says_so(tmp_path, monkeypatch):
    from publish_cases import audit_job, ledger_file, three_publications

    from citybrain_ml.scoring import audit

    monkeypatch.delenv("CITYBRAIN_LEDGER_KEY")
    job = three_publications(tmp_path)
    notes: list[str] = []
    assert audit(job, notes) == []
    assert any("UNSIGNED" in n for n in notes)
    # the anchor still catches a cut-back ledger without a key
    lines = ledger_file(job).read_text().splitlines()
    ledger_file(job).write_text("\n".join(lines[:-1]) + "\n")
    import shutil

    shutil.rmtree(sorted(job.glob("as_of=*"))[-1])
    assert any("cut back" in p for p in audit_job(job))


def test_signed_entries_need_the_key(tmp_path, monkeypatch):
    from publish_cases import three_publications

    from citybrain_ml.scoring import audit

    job = three_publications(tmp_path)
    monkeypatch.setenv("CITYBRAIN_LEDGER_KEY", "another-key")
    assert any("another key" in p for p in audit(job))
    monkeypatch.delenv("CITYBRAIN_LEDGER_KEY")
    notes: list[str] = []
    assert audit(job, notes) == []
    assert any("NOT verified" in n for n in notes)
