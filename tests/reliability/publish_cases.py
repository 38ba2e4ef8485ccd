"""Reliability corpus, part 1: publication safety and tampering (no MLflow needed).

Each case builds a small job folder with :func:`citybrain_ml.scoring.publish`, does one
thing an operator or an attacker could do (kill -9 mid-publish, race, edit a file, cut the
ledger back, ...) and reports what happened as an :class:`Outcome`. ``expected`` says what a
correct library does: ``ok`` (published / unchanged), ``recovered`` (old or new output intact
after a crash) or ``detected`` (``audit`` names the problem).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    outcome: str  # ok | recovered | detected | refused | skipped | wrong | lost | traceback
    message: str = ""
    seconds: float = 0.0
    traceback: bool = False
    partial: bool = False  # a half-written output visible as published
    lost: bool = False  # neither the old nor the new output is published
    silent_wrong: bool = False
    extra: dict = field(default_factory=dict)


@dataclass
class Case:
    name: str
    group: str
    expected: str
    run: object  # callable(tmp: Path) -> Outcome


def forecast_frame(value: float, as_of: str = "2024-01-01T00:00") -> pd.DataFrame:
    ts = pd.Timestamp(as_of) + pd.Timedelta("15min")
    return pd.DataFrame(
        {
            "series_id": ["a", "b", "c"],
            "timestamp": [ts] * 3,
            "horizon_step": [1, 1, 1],
            "yhat": [value, value + 1.0, value + 2.0],
        }
    )


def do_publish(job: Path, as_of: str, value: float, overwrite: bool = False):
    from citybrain_ml.scoring import publish

    target = job / f"as_of={as_of.replace(':', '')}"
    manifest = {"as_of": as_of, "model_uri": "runs:/test/model"}
    return publish(forecast_frame(value, as_of), manifest, target, overwrite)


def audit_job(job: Path) -> list[str]:
    from citybrain_ml.scoring import audit

    return audit(job)


def three_publications(tmp: Path) -> Path:
    job = tmp / "out" / "traffic"
    for i, as_of in enumerate(("2024-01-01T00:00", "2024-01-01T00:15", "2024-01-01T00:30")):
        do_publish(job, as_of, 10.0 + i)
    return job


def _folders(job: Path) -> list[Path]:
    return sorted(p for p in job.iterdir() if p.name.startswith("as_of="))


# ---------------------------------------------------------------------- tampering
def _tamper(action):
    def run(tmp: Path) -> Outcome:
        job = three_publications(tmp)
        assert audit_job(job) == [], audit_job(job)
        action(job)
        t0 = time.perf_counter()
        problems = audit_job(job)
        dt = time.perf_counter() - t0
        if problems:
            return Outcome("detected", problems[0], dt)
        return Outcome("ok", "audit reported nothing", dt, silent_wrong=True)

    return run


def _edit_csv(folder_index: int, rehash: bool = False):
    def act(job: Path):
        folder = _folders(job)[folder_index]
        csv = folder / "forecast.csv"
        lines = csv.read_text().splitlines()
        lines[1] = lines[1].rsplit(",", 1)[0] + ",99.0"  # the first row's yhat
        csv.write_text("\n".join(lines) + "\n")
        if rehash:
            from citybrain_ml.data.io import sha256_file

            m = json.loads((folder / "manifest.json").read_text())
            m["files"]["forecast.csv"] = sha256_file(csv)
            (folder / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True))

    return act


def _edit_manifest_field(folder_index: int):
    def act(job: Path):
        path = _folders(job)[folder_index] / "manifest.json"
        m = json.loads(path.read_text())
        m["model_uri"] = "runs:/someone-else/model"
        path.write_text(json.dumps(m, indent=2, sort_keys=True))

    return act


def _delete_folder(folder_index: int):
    return lambda job: shutil.rmtree(_folders(job)[folder_index])


def _delete_file(folder_index: int, name: str):
    return lambda job: (_folders(job)[folder_index] / name).unlink()


def _extra_file(job: Path):
    (_folders(job)[-1] / "notes.txt").write_text("added later\n")


def _manifest_not_json(job: Path):
    (_folders(job)[-1] / "manifest.json").write_text("{not json")


def _swap_folders(job: Path):
    a, b = _folders(job)[1], _folders(job)[2]
    tmp = a.with_name("swap")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)


def _planted_folder(job: Path):
    shutil.copytree(_folders(job)[-1], job / "as_of=2024-01-01T004500")


def ledger_file(job: Path) -> Path:
    from citybrain_ml.ledger import ledger_path

    return ledger_path(job)


def _ledger_lines(job: Path) -> list[str]:
    return ledger_file(job).read_text().splitlines()


def _write_ledger(job: Path, lines: list[str]) -> None:
    ledger_file(job).write_text("".join(line + "\n" for line in lines))


def _cut_ledger_and_latest(job: Path):
    shutil.rmtree(_folders(job)[-1])
    _write_ledger(job, _ledger_lines(job)[:-1])


def _edit_ledger_entry(job: Path):
    lines = _ledger_lines(job)
    entry = json.loads(lines[1])
    entry["files"]["forecast.csv"] = "0" * 64
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    _write_ledger(job, lines)


def _rewrite_ledger_consistently(job: Path):
    """Tamper with the latest CSV, then rebuild a self-consistent chain (no key)."""
    import hashlib

    folder = _folders(job)[-1]
    _edit_csv(-1, rehash=True)(job)
    from citybrain_ml.data.io import sha256_file

    lines = [json.loads(x) for x in _ledger_lines(job)]
    lines[-1]["files"]["forecast.csv"] = sha256_file(folder / "forecast.csv")
    lines[-1]["manifest_sha256"] = sha256_file(folder / "manifest.json")
    lines[-1].pop("hmac_sha256", None)
    lines[-1]["key_id"] = None
    prev = lines[-2]
    text_prev = json.dumps(prev, sort_keys=True, separators=(",", ":"))
    lines[-1]["prev_entry_sha256"] = hashlib.sha256(text_prev.encode()).hexdigest()
    _write_ledger(job, [json.dumps(x, sort_keys=True, separators=(",", ":")) for x in lines])


def _delete_ledger(job: Path):
    ledger_file(job).unlink()


def _rollback_whole_job(tmp_job_copy):
    def act(job: Path):
        pass

    return act


def _replace_job_with_older_copy(tmp: Path) -> Outcome:
    """Restore a backup of the job folder taken before the last publication (rollback)."""
    job = tmp / "out" / "traffic"
    do_publish(job, "2024-01-01T00:00", 10.0)
    do_publish(job, "2024-01-01T00:15", 11.0)
    backup = tmp / "backup"
    shutil.copytree(job, backup)
    do_publish(job, "2024-01-01T00:30", 12.0)
    shutil.rmtree(job)
    shutil.copytree(backup, job)
    t0 = time.perf_counter()
    problems = audit_job(job)
    dt = time.perf_counter() - t0
    if problems:
        return Outcome("detected", problems[0], dt)
    return Outcome("ok", "audit reported nothing", dt, silent_wrong=True)


def _forged_entry(job: Path):
    """Append an entry for a planted folder with a made-up signature."""
    lines = [json.loads(x) for x in _ledger_lines(job)]
    planted = job / "as_of=2024-01-01T004500"
    shutil.copytree(_folders(job)[-1], planted)
    import hashlib

    new = dict(lines[-1])
    new["seq"] = len(lines) + 1
    new["folder"] = planted.name
    text_prev = json.dumps(lines[-1], sort_keys=True, separators=(",", ":"))
    new["prev_entry_sha256"] = hashlib.sha256(text_prev.encode()).hexdigest()
    new["hmac_sha256"] = "f" * 64
    lines.append(new)
    _write_ledger(job, [json.dumps(x, sort_keys=True, separators=(",", ":")) for x in lines])


TAMPER = [
    ("edit forecast.csv of a middle as-of", _edit_csv(1)),
    ("edit forecast.csv of the latest as-of", _edit_csv(-1)),
    ("rewrite latest forecast.csv together with its manifest hash", _edit_csv(-1, rehash=True)),
    ("delete forecast.parquet of the latest as-of", _delete_file(-1, "forecast.parquet")),
    ("delete manifest.json of a middle as-of", _delete_file(1, "manifest.json")),
    ("delete a middle as-of folder", _delete_folder(1)),
    ("delete the latest as-of folder", _delete_folder(-1)),
    ("edit a field of the latest manifest", _edit_manifest_field(-1)),
    ("edit a field of the first manifest", _edit_manifest_field(0)),
    ("extra unlisted file in the latest as-of", _extra_file),
    ("latest manifest is not JSON", _manifest_not_json),
    ("swap two as-of folders", _swap_folders),
    ("plant a copied as-of folder", _planted_folder),
    ("delete the latest folder and cut its ledger line", _cut_ledger_and_latest),
    ("edit a ledger entry", _edit_ledger_entry),
    ("tamper and rebuild a consistent unsigned ledger", _rewrite_ledger_consistently),
    ("delete the ledger", _delete_ledger),
    ("forge a signed ledger entry for a planted folder", _forged_entry),
]


# ---------------------------------------------------------------------- crashes and races
def forked(fn, env: dict | None = None) -> int:
    """Run ``fn()`` in a forked child (``os._exit`` there skips every cleanup, like kill -9);
    its stdout line and traceback go to files. Returns the child's pid."""
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.environ.update(env or {})
            print(fn(), flush=True)
        except BaseException:  # noqa: BLE001 - reported to the parent via stderr
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
            code = 1
        os._exit(code)
    return pid


def wait_code(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _publish_in_child(job: Path, value: float, overwrite: bool, point: str, exchange: bool):
    def child():
        from citybrain_ml import ledger

        ledger.USE_EXCHANGE = exchange
        return do_publish(job, "2024-01-01T00:00", value, overwrite=overwrite)

    return forked(child, {"CITYBRAIN_CRASH_AT": point})


def _crash(point: str, overwrite: bool, exchange: bool = True):
    """kill -9 (os._exit, no cleanup) at ``point`` of a publication, then a normal rerun."""

    def run(tmp: Path) -> Outcome:
        job = tmp / "out" / "traffic"
        if overwrite:
            do_publish(job, "2024-01-01T00:00", 10.0)
        pid = _publish_in_child(job, 20.0, overwrite, point, exchange)
        if wait_code(pid) != 137:
            return Outcome("traceback", f"the publication did not reach {point}", traceback=True)
        target = job / "as_of=2024-01-01T0000"
        published = target.is_dir() and (target / "manifest.json").is_file()
        if not published and overwrite:
            # right after the crash nothing is published until the next run recovers
            pass
        # the next scheduled run (same content as the killed one) recovers and publishes
        t0 = time.perf_counter()
        do_publish(job, "2024-01-01T00:00", 20.0, overwrite=True)
        dt = time.perf_counter() - t0
        problems = audit_job(job)
        leftovers = [p.name for p in job.iterdir() if p.name.startswith(".")]
        yhat = pd.read_csv(target / "forecast.csv")["yhat"].iloc[0]
        ok = not problems and not leftovers and yhat == 20.0
        return Outcome(
            "recovered" if ok else "lost",
            "; ".join(problems + leftovers) or f"published yhat {yhat}",
            dt,
            lost=not ok,
            extra={"published_right_after_crash": published},
        )

    return run


def _crash_state_before_rerun(point: str, exchange: bool = True):
    """After a kill -9 mid-overwrite, is the old or the new output in place once recovered?
    With an atomic exchange the as-of folder must be readable even before any recovery."""

    def run(tmp: Path) -> Outcome:
        from citybrain_ml import ledger

        job = tmp / "out" / "traffic"
        do_publish(job, "2024-01-01T00:00", 10.0)
        wait_code(_publish_in_child(job, 20.0, True, point, exchange))
        visible = (job / "as_of=2024-01-01T0000" / "forecast.csv").is_file()
        if exchange and not visible:
            return Outcome("lost", "nothing published between the crash and recovery", lost=True)
        t0 = time.perf_counter()
        with ledger.job_lock(job):
            ledger.recover(job)
        dt = time.perf_counter() - t0
        target = job / "as_of=2024-01-01T0000"
        if not (target / "forecast.csv").is_file():
            return Outcome("lost", "neither old nor new published after recovery", dt, lost=True)
        problems = audit_job(job)
        yhat = pd.read_csv(target / "forecast.csv")["yhat"].iloc[0]
        if problems:
            return Outcome("lost", problems[0], dt, lost=True)
        return Outcome("recovered", f"published yhat {yhat} (old 10, new 20)", dt)

    return run


def _stale_staging(tmp: Path) -> Outcome:
    job = tmp / "out" / "traffic"
    do_publish(job, "2024-01-01T00:00", 10.0)
    # a staging folder of a dead process and one from an older version (tempfile name)
    dead = job / ".as_of=2024-01-01T0015.nohost.999999.0.staging"
    dead.mkdir()
    (dead / "forecast.csv").write_text("partial")
    old = job / ".as_of=2024-01-01T0015.k3j4h5"
    old.mkdir()
    past = time.time() - 7200
    os.utime(old, (past, past))
    os.utime(dead, (past - 7 * 3600, past - 7 * 3600))
    t0 = time.perf_counter()
    do_publish(job, "2024-01-01T00:15", 11.0)
    dt = time.perf_counter() - t0
    left = [p.name for p in job.iterdir() if p.name.startswith(".")]
    if left:
        return Outcome("partial", f"left behind: {left}", dt, partial=True)
    return Outcome("ok", "stale staging folders removed", dt)


def _race(identical: bool):
    def run(tmp: Path) -> Outcome:
        job = tmp / "out" / "traffic"
        job.mkdir(parents=True)
        logs = []
        for i in range(4):
            value = 10.0 if identical else 10.0 + i
            out, err = tmp / f"out{i}.txt", tmp / f"err{i}.txt"
            logs.append((out, err))

            def one(value=value, out=out, err=err):
                sys.stdout = open(out, "w")  # noqa: SIM115 - the child exits right after
                sys.stderr = open(err, "w")  # noqa: SIM115
                run = do_publish(job, "2024-01-01T00:00", value)
                return "unchanged" if run.unchanged else "written"

            logs[-1] = (out, err, forked(one))
        t0 = time.perf_counter()
        codes = [wait_code(pid) for _, _, pid in logs]
        dt = time.perf_counter() - t0
        outs = sorted(o.read_text().strip() for o, _, _ in logs)
        errs = [e.read_text() for (_, e, _), c in zip(logs, codes, strict=True) if c != 0]
        if any("Traceback" in e and "OutputExistsError" not in e for e in errs):
            return Outcome("traceback", errs[0][-300:], dt, traceback=True)
        if identical:
            ok = codes == [0] * 4 and outs == ["unchanged"] * 3 + ["written"]
        else:  # one wins, the others are refused clearly (different content, no --overwrite)
            ok = outs.count("written") == 1 and all("--overwrite" in e for e in errs)
        problems = audit_job(job)
        if ok and not problems:
            return Outcome("ok", f"{outs}", dt)
        return Outcome("wrong", f"{codes} {outs} {problems} {errs[:1]}", dt, silent_wrong=True)

    return run


def _backfill_and_middle_overwrite(tmp: Path) -> Outcome:
    """Out-of-order backfill and an --overwrite of a middle as-of: legitimate, audit ok."""
    job = tmp / "out" / "traffic"
    do_publish(job, "2024-01-01T00:30", 12.0)
    do_publish(job, "2024-01-01T00:00", 10.0)  # backfill, older as-of after a newer one
    do_publish(job, "2024-01-01T00:15", 11.0)
    do_publish(job, "2024-01-01T00:15", 11.5, overwrite=True)
    t0 = time.perf_counter()
    problems = audit_job(job)
    dt = time.perf_counter() - t0
    if problems:
        return Outcome("wrong", problems[0], dt, silent_wrong=False)
    return Outcome("ok", "backfill + middle overwrite recorded in the ledger", dt)


def _identical_rerun(tmp: Path) -> Outcome:
    job = tmp / "out" / "traffic"
    do_publish(job, "2024-01-01T00:00", 10.0)
    before = {p.name: p.read_bytes() for p in (job / "as_of=2024-01-01T0000").iterdir()}
    lines = ledger_file(job).read_text()
    run = do_publish(job, "2024-01-01T00:00", 10.0)
    after = {p.name: p.read_bytes() for p in (job / "as_of=2024-01-01T0000").iterdir()}
    same_ledger = lines == ledger_file(job).read_text()
    if run.unchanged and before == after and same_ledger:
        return Outcome("ok", "unchanged")
    return Outcome("wrong", "rerun changed the output or the ledger", silent_wrong=True)


def _refused_without_overwrite(tmp: Path) -> Outcome:
    from citybrain_ml.scoring import OutputExistsError

    job = tmp / "out" / "traffic"
    do_publish(job, "2024-01-01T00:00", 10.0)
    t0 = time.perf_counter()
    try:
        do_publish(job, "2024-01-01T00:00", 11.0)
    except OutputExistsError as exc:
        left = [p.name for p in job.iterdir() if p.name.startswith(".")]
        if left or audit_job(job):
            return Outcome("partial", f"{left}", partial=True)
        return Outcome("refused", str(exc), time.perf_counter() - t0)
    return Outcome("wrong", "different content published without --overwrite", silent_wrong=True)


def _legacy_job_adopted(tmp: Path) -> Outcome:
    """A job folder published before the ledger existed: the next publication adopts it."""
    job = three_publications(tmp)
    ledger_file(job).unlink()
    from citybrain_ml import ledger

    ledger.anchor_path(job).unlink()
    do_publish(job, "2024-01-01T00:45", 13.0)
    problems = audit_job(job)
    entries, _ = ledger.read_entries(job)
    events = [e.data["event"] for e in entries]
    if not problems and events == ["adopt"] * 3 + ["publish"]:
        return Outcome("ok", "legacy folders adopted")
    return Outcome("wrong", f"{problems} {events}", silent_wrong=True)


def publish_cases() -> list[Case]:
    cases = [Case(f"tamper: {n}", "tamper", "detected", _tamper(a)) for n, a in TAMPER]
    cases.append(
        Case(
            "tamper: restore an older backup of the job",
            "tamper",
            "detected",
            _replace_job_with_older_copy,
        )
    )
    for point in ("after_rename_in", "before_anchor", "after_commit"):
        cases += [
            Case(
                f"kill -9 {point} (--overwrite), rerun", "crash", "recovered", _crash(point, True)
            ),
            Case(
                f"kill -9 {point} (first publish), rerun",
                "crash",
                "recovered",
                _crash(point, False),
            ),
            Case(
                f"kill -9 {point} (--overwrite), recover only",
                "crash",
                "recovered",
                _crash_state_before_rerun(point),
            ),
        ]
    # without renameat2 (other OSes): old folder renamed aside, new renamed in
    for point in ("after_aside", "after_rename_in", "before_anchor", "after_commit"):
        cases += [
            Case(
                f"kill -9 {point} (--overwrite, rename-aside), rerun",
                "crash",
                "recovered",
                _crash(point, True, exchange=False),
            ),
            Case(
                f"kill -9 {point} (--overwrite, rename-aside), recover only",
                "crash",
                "recovered",
                _crash_state_before_rerun(point, exchange=False),
            ),
        ]
    cases += [
        Case("stale staging folders cleaned", "publish", "ok", _stale_staging),
        Case("4 concurrent identical publications", "race", "ok", _race(True)),
        Case("4 concurrent different publications", "race", "ok", _race(False)),
        Case(
            "backfill + overwrite of a middle as-of",
            "publish",
            "ok",
            _backfill_and_middle_overwrite,
        ),
        Case("identical rerun", "publish", "ok", _identical_rerun),
        Case(
            "different content without --overwrite",
            "publish",
            "refused",
            _refused_without_overwrite,
        ),
        Case("legacy job folder adopted into a ledger", "publish", "ok", _legacy_job_adopted),
    ]
    return cases
