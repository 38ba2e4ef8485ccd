"""Reliability of the batch path: run the corpus in ``tests/reliability/`` and tabulate it.

The corpus (also run by pytest, so CI runs it) holds generated bad input files on four
surfaces (``read_frame``, ``load_table``, ``citybrain data validate``, ``citybrain forecast``),
bad CLI usage, bad job configs, dead tracking servers, kill -9 at every step of a
publication, concurrent publications and tampering with published outputs. Each case states
its expected outcome; this script counts what actually happened.

Usage::

    python experiments/reliability.py            # -> experiments/results/reliability.md
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "reliability"))

from input_cases import config_cases, file_cases, make_store, usage_cases  # noqa: E402
from publish_cases import Outcome, publish_cases  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "experiments" / "results" / "reliability.md"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="citybrain-reliability-"))
    os.environ["CITYBRAIN_LEDGER_HOME"] = str(work / "anchors")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    store = {}

    def get_store():
        if "s" not in store:
            store["s"] = make_store(work / "store")
        return store["s"]

    # the publication/tamper cases with a signing key (the recommended setup)
    signed = publish_cases()
    cases = [("signed", c) for c in signed]
    cases += [("", c) for c in file_cases(get_store) + usage_cases(get_store)]
    cases += [("", c) for c in config_cases(REPO)]
    rows = []
    t_all = time.perf_counter()
    for i, (mode, case) in enumerate(cases):
        tmp = work / f"case{i}"
        if mode == "signed":
            os.environ["CITYBRAIN_LEDGER_KEY"] = "reliability-experiment-key"
        else:
            os.environ.pop("CITYBRAIN_LEDGER_KEY", None)
        t0 = time.perf_counter()
        try:
            out = case.run(tmp)
        except Exception as exc:  # noqa: BLE001 - a harness failure is a traceback too
            out = Outcome("traceback", f"{type(exc).__name__}: {exc}", traceback=True)
        wall = time.perf_counter() - t0
        rows.append((case, out, wall))
        shutil.rmtree(tmp, ignore_errors=True)
    total = time.perf_counter() - t_all
    cold = cold_refusals(work, get_store())
    write_report(rows, total, Path(args.out), cold)
    shutil.rmtree(work, ignore_errors=True)
    bad = [r for r in rows if r[1].outcome != r[0].expected or _flagged(r[1])]
    print(f"{len(rows)} cases, {len(bad)} not as expected -> {args.out}")


def cold_refusals(work: Path, store) -> list[tuple[str, int, float, str]]:
    """Seconds to a refusal for a fresh ``citybrain`` process (imports included)."""
    import socket
    import subprocess

    exe = str(Path(sys.executable).with_name("citybrain"))
    data = work / "cold.csv"
    data.write_text("series_id,timestamp,value\n")
    bad_cfg = work / "cold.yaml"
    bad_cfg.write_text(
        (REPO / "configs" / "quickstart.yaml").read_text().replace("horizon:", "horizn:")
    )
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    hung_uri = f"http://127.0.0.1:{hung.getsockname()[1]}"
    fc = [exe, "forecast", "--model", store.model_uri, "--tracking-uri", store.uri]
    runs = [
        ("forecast --levels abc", fc + ["--data", str(data), "--levels", "abc"]),
        ("forecast, header-only input", fc + ["--data", str(data)]),
        ("train, misspelt key", [exe, "train", "--config", str(bad_cfg)]),
        (
            "forecast, hung tracking server",
            [
                exe,
                "forecast",
                "--model",
                store.model_uri,
                "--data",
                str(data),
                "--tracking-uri",
                hung_uri,
            ],
        ),
    ]
    out = []
    for name, cmd in runs:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
        dt = time.perf_counter() - t0
        last = (proc.stderr.strip().splitlines() or [""])[-1]
        out.append((name, proc.returncode, dt, last))
    hung.close()
    return out


def _flagged(out: Outcome) -> bool:
    return out.traceback or out.partial or out.lost or out.silent_wrong


def write_report(rows, total: float, path: Path, cold=()) -> None:
    n = len(rows)
    refused = [(c, o) for c, o, _ in rows if o.outcome == "refused"]
    clear = [(c, o) for c, o in refused if c.expected == "refused"]
    tamper = [(c, o) for c, o, _ in rows if c.group == "tamper"]
    detected = [1 for c, o in tamper if o.outcome == "detected"]
    slowest = max((o.seconds for _, o in refused), default=0.0)
    as_expected = sum(1 for c, o, _ in rows if o.outcome == c.expected and not _flagged(o))
    lines = [
        "# Reliability of the batch path",
        "",
        "`python experiments/reliability.py` (the same corpus runs under pytest in "
        "`tests/reliability/`). Shared 2-core development machine with other jobs running; "
        f"whole corpus {total:.0f} s.",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        f"| cases | {n} | >= 200 |",
        f"| outcome as expected | {as_expected} of {n} | all |",
        f"| clear refusals (one line naming the file/field, library error type) | "
        f"{len(clear)} | every bad input |",
        f"| tracebacks or foreign exception types | "
        f"{sum(1 for _, o, _ in rows if o.traceback)} | 0 |",
        f"| unclear refusals (several lines, or no file/field named) | "
        f"{sum(1 for _, o, _ in rows if o.outcome == 'unclear')} | 0 |",
        f"| partial outputs left behind | {sum(1 for _, o, _ in rows if o.partial)} | 0 |",
        f"| previous outputs lost | {sum(1 for _, o, _ in rows if o.lost)} | 0 |",
        f"| silent wrong results (bad input accepted, tamper not seen) | "
        f"{sum(1 for _, o, _ in rows if o.silent_wrong)} | 0 |",
        f"| tamper cases detected by `citybrain audit` | {len(detected)} of {len(tamper)} | all |",
        f"| slowest refusal | {slowest:.2f} s | <= 10 s |",
        "",
        "## By group",
        "",
        "| group | cases | as expected | outcomes | slowest refusal (s) |",
        "|---|---|---|---|---|",
    ]
    groups = defaultdict(list)
    for c, o, _ in rows:
        groups[c.group].append((c, o))
    for g, items in sorted(groups.items()):
        counts = Counter(o.outcome for _, o in items)
        ok = sum(1 for c, o in items if o.outcome == c.expected and not _flagged(o))
        slow = max((o.seconds for _, o in items if o.outcome == "refused"), default=0.0)
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        lines.append(f"| {g} | {len(items)} | {ok} | {outcomes} | {slow:.2f} |")
    lines += [
        "",
        "## Seconds to a refusal from a fresh `citybrain` process",
        "",
        "The table above times each case in one warm process (imports done). A scheduled "
        "job starts cold; these include Python start-up and imports:",
        "",
        "| command | exit | s | last line |",
        "|---|---|---|---|",
    ]
    for name, code, dt, last in cold:
        lines.append(f"| {name} | {code} | {dt:.1f} | {_short(last)} |")
    lines += [
        "",
        "## Every case",
        "",
        "| case | expected | got | s | message (first 160 characters) |",
        "|---|---|---|---|---|",
    ]
    for c, o, _ in rows:
        mark = "" if o.outcome == c.expected and not _flagged(o) else " **(!)**"
        msg = _short(o.message)
        lines.append(f"| {c.name} | {c.expected} | {o.outcome}{mark} | {o.seconds:.2f} | {msg} |")
    lines += [
        "",
        "Outcomes: `refused` = one `error:` line (CLI, exit 1/2) or a library error "
        "(`DataValidationError`/`InputFileError`, `FileNotFoundError`, `ConfigError`) naming "
        "the file; `warned` = accepted with a `warning:` line; `skipped` = published with the "
        "unusable series skipped (exit 3, reasons in the manifest); `detected` = `audit` names "
        "the problem; `recovered` = after kill -9 the old or the new output is published, "
        "nothing half-written, audit clean. Temporary paths are shortened to `<tmp>`.",
        "",
        "Not covered by this corpus (known gaps): physical ranges per variable beyond `>= 0`, "
        "the per-series minimum context of the model's features, disk full, corrupt model "
        "artifacts (covered by `tests/test_scoring.py`).",
    ]
    path.write_text("\n".join(lines) + "\n")


def _short(text: str) -> str:
    import re

    text = re.sub(r"/tmp/[^\s:'\"]*/", "<tmp>/", text)  # keep the file's own name
    text = text.replace("|", "\\|").replace("\n", " ")
    return text[:160]


if __name__ == "__main__":
    main()
