"""Tamper-evident publication ledger for batch forecasts, with an anchored head.

Every publication into a job folder ``<out>/<name>/`` (first publish, ``--overwrite``,
out-of-order backfill) appends one line to ``<out>/.citybrain-ledger/<name>.jsonl``, in
publication order. Each entry records the as-of folder, the SHA-256 of its manifest and of
every file in it, the hash of the previous entry (a hash chain) and, when a key is configured,
an HMAC-SHA256 signature:

* key: ``$CITYBRAIN_LEDGER_KEY`` (the secret itself) or ``$CITYBRAIN_LEDGER_KEY_FILE`` (a file
  holding it, e.g. a mounted secret). Without either, entries are **unsigned**: the hash chain
  and the anchor still detect edits, truncation and rollback, but anyone who can write both
  the output folder and the anchor can forge a consistent history; ``audit`` says so.
* head anchor: the last entry's number and hash are also written *outside* the output folder,
  to ``$CITYBRAIN_LEDGER_HOME/<job>-<hash of the job path>.json`` (default
  ``$XDG_STATE_HOME/citybrain/ledger`` or ``~/.local/state/citybrain/ledger``), so deleting
  the latest as-of folder together with its ledger line is detected.

Publication is a small transaction under an exclusive lock (``<name>.lock`` beside the
ledger): write the intent (``<name>.pending.json``), swap the new folder in (an atomic
exchange with the old one on Linux; elsewhere old renamed aside, new renamed in), append
the ledger entry (the commit point), update the anchor, delete the old folder. A process
killed at any point leaves either the old or the new folder published; the next publication
(or :func:`recover`) rolls an uncommitted swap back and removes stale staging folders.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

#: beside the job folders (not inside one, which holds only ``as_of=`` folders):
#: ``<out>/.citybrain-ledger/<name>.jsonl`` (+ ``<name>.lock``, ``<name>.pending.json``)
LEDGER_DIR = ".citybrain-ledger"
MANIFEST = "manifest.json"
KEY_ENV = "CITYBRAIN_LEDGER_KEY"
KEY_FILE_ENV = "CITYBRAIN_LEDGER_KEY_FILE"
HOME_ENV = "CITYBRAIN_LEDGER_HOME"
#: staging folders of dead processes (or older than this) are removed by the next publish
STALE_STAGING_SECONDS = 6 * 3600
#: how long a publication waits for another one holding the job's lock
LOCK_TIMEOUT_SECONDS = 120.0
#: test hook: ``CITYBRAIN_CRASH_AT=<point>`` makes the process die (``os._exit(137)``,
#: like ``kill -9``: no cleanup) at that point of a publication
CRASH_ENV = "CITYBRAIN_CRASH_AT"


class LedgerError(RuntimeError):
    """The ledger cannot be read, written or locked."""


# ---------------------------------------------------------------------- keys and anchors
def signing_key() -> tuple[bytes | None, str]:
    """The HMAC key from the environment and where it came from (``None``: unsigned)."""
    raw = os.environ.get(KEY_ENV)
    if raw:
        return raw.encode("utf-8"), f"${KEY_ENV}"
    path = os.environ.get(KEY_FILE_ENV)
    if path:
        try:
            data = Path(path).read_bytes().strip()
        except OSError as exc:
            raise LedgerError(f"${KEY_FILE_ENV}={path}: cannot read the key file: {exc}") from exc
        if not data:
            raise LedgerError(f"${KEY_FILE_ENV}={path}: the key file is empty")
        return data, f"${KEY_FILE_ENV} ({path})"
    return None, "none"


def key_id(key: bytes) -> str:
    """A short, non-secret fingerprint of the key (which key signed an entry)."""
    return hashlib.sha256(b"citybrain-ledger-key-id:" + key).hexdigest()[:12]


def anchor_home() -> Path:
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "citybrain" / "ledger"


def anchor_path(job_dir: str | Path) -> Path:
    """Where the head of ``job_dir``'s ledger is anchored (outside the output folder)."""
    resolved = Path(job_dir).resolve()
    digest = hashlib.sha256(str(resolved).encode("utf-8")).hexdigest()[:16]
    return anchor_home() / f"{resolved.name}-{digest}.json"


def ledger_path(job_dir: str | Path) -> Path:
    return _ledger_file(job_dir, ".jsonl")


def lock_path(job_dir: str | Path) -> Path:
    return _ledger_file(job_dir, ".lock")


def pending_path(job_dir: str | Path) -> Path:
    return _ledger_file(job_dir, ".pending.json")


def _ledger_file(job_dir: str | Path, suffix: str) -> Path:
    job_dir = Path(job_dir)
    return job_dir.parent / LEDGER_DIR / f"{job_dir.name}{suffix}"


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sign(key: bytes, body: dict) -> str:
    return hmac.new(key, _canonical(body).encode("utf-8"), hashlib.sha256).hexdigest()


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os._exit(137)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_json_atomic(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(obj, indent=2, sort_keys=True))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------- reading
@dataclass
class Entry:
    line: int  # 1-based line number in ledger.jsonl
    data: dict
    sha256: str  # hash of the line: what the next entry and the anchor refer to


def read_entries(job_dir: str | Path) -> tuple[list[Entry], list[str]]:
    """The ledger's entries and the problems met reading them (unparseable lines)."""
    path = ledger_path(job_dir)
    if not path.is_file():
        return [], []
    entries, problems = [], []
    for i, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            problems.append(f"{path}: line {i}: not a valid ledger entry ({exc}) (edited?)")
            continue
        entries.append(Entry(i, data, _sha(raw.strip())))
    return entries, problems


def read_anchor(job_dir: str | Path) -> dict | None:
    path = anchor_path(job_dir)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return {"invalid": True}


# ---------------------------------------------------------------------- writing
@contextlib.contextmanager
def job_lock(job_dir: str | Path, timeout: float = LOCK_TIMEOUT_SECONDS):
    """Exclusive lock on a job folder's publications (released by the OS if killed)."""
    import fcntl

    path = lock_path(job_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")  # noqa: SIM115 - held for the block
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise LedgerError(
                        f"{job_dir}: another publication has held the lock for more than "
                        f"{timeout:.0f} s ({path})"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        fh.close()


def append(job_dir: str | Path, record: dict) -> Entry:
    """Append a (signed) entry; the caller holds :func:`job_lock`. Updates the anchor."""
    job_dir = Path(job_dir)
    entries, problems = read_entries(job_dir)
    if problems:
        raise LedgerError(
            f"{ledger_path(job_dir)} is damaged, refusing to extend it: {problems[0]}; "
            "run `citybrain audit` and restore the ledger from a backup"
        )
    key, _ = signing_key()
    body = dict(record)
    body["seq"] = len(entries) + 1
    body["prev_entry_sha256"] = entries[-1].sha256 if entries else None
    body["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body["key_id"] = key_id(key) if key else None
    line = dict(body)
    if key:
        line["hmac_sha256"] = _sign(key, body)
    text = _canonical(line)
    path = ledger_path(job_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        fh.write(text.encode("utf-8") + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    entry = Entry(body["seq"], line, _sha(text.encode("utf-8")))
    _crash_point("before_anchor")
    write_anchor(job_dir, entry)
    return entry


def write_anchor(job_dir: Path, entry: Entry) -> None:
    _write_json_atomic(
        {
            "job_dir": str(Path(job_dir).resolve()),
            "seq": entry.data["seq"],
            "entry_sha256": entry.sha256,
            "time": entry.data.get("time"),
        },
        anchor_path(job_dir),
    )


def staging_dir(target: Path) -> Path:
    """A fresh staging folder beside ``target``, named so a later run can tell if its
    writer is still alive: ``.<target>.<host>.<pid>.<n>.staging``."""
    host = socket.gethostname().replace(".", "_")
    for n in range(1000):
        path = target.parent / f".{target.name}.{host}.{os.getpid()}.{n}.staging"
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise LedgerError(f"cannot create a staging folder beside {target}")


def _folder_record(event: str, folder: Path, replaced: str | None = None) -> dict:
    files = {name: sha256_file(folder / name) for name in folder_files(folder)}
    return {
        "event": event,
        "folder": folder.name,
        "manifest_sha256": files.get(MANIFEST),
        "files": {k: v for k, v in files.items() if k != MANIFEST},
        "replaced_manifest_sha256": replaced,
    }


def folder_files(folder: Path) -> list[str]:
    """Every file under ``folder``, ``/``-separated relative paths, sorted: the flat
    single-process layout, or part files inside ``forecast.parquet/`` (Spark engine)."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    return [p.relative_to(folder).as_posix() for p in files]


def adopt_existing(job_dir: Path) -> list[Entry]:
    """Record as-of folders published before the ledger existed (event ``adopt``)."""
    if ledger_path(job_dir).is_file():
        return []
    out = []
    for folder in sorted(p for p in job_dir.iterdir() if p.is_dir() and _is_as_of(p.name)):
        if (folder / MANIFEST).is_file():
            out.append(append(job_dir, _folder_record("adopt", folder)))
    return out


def swap_in(staging: Path, target: Path) -> Entry:
    """Publish ``staging`` as ``target`` (replacing it if present); caller holds the lock.

    Order: intent -> new in (an atomic exchange with the old folder where the OS has
    ``renameat2(RENAME_EXCHANGE)``, so ``target`` always exists; else old renamed aside,
    new renamed in) -> ledger entry (the commit point) -> anchor -> old deleted.
    """
    job_dir = target.parent
    for name in folder_files(staging):
        with open(staging / name, "rb+") as fh:
            os.fsync(fh.fileno())
    for sub in [p for p in staging.rglob("*") if p.is_dir()] + [staging]:
        _fsync_dir(sub)
    adopt_existing(job_dir)
    entries, _ = read_entries(job_dir)
    aside = job_dir / f".{target.name}.replaced"
    replacing = target.exists()
    replaced = None
    if replacing and (target / MANIFEST).is_file():
        replaced = sha256_file(target / MANIFEST)
    record = _folder_record("overwrite" if replacing else "publish", staging, replaced)
    record["folder"] = target.name
    pending = {
        "target": target.name,
        # where the old folder may be: the staging path (after an exchange) or the aside
        "asides": [staging.name, aside.name] if replacing else [],
        "manifest_sha256": record["manifest_sha256"],
        "seq": len(entries) + 1,
    }
    _write_json_atomic(pending, pending_path(job_dir))
    old = None
    if replacing and _exchange(staging, target):
        old = staging  # now holds the previous output
    else:
        if replacing:
            if aside.exists():
                shutil.rmtree(aside)
            os.rename(target, aside)
            old = aside
            _crash_point("after_aside")
        os.rename(staging, target)
    _fsync_dir(job_dir)
    _crash_point("after_rename_in")
    entry = append(job_dir, record)
    _crash_point("after_commit")
    (pending_path(job_dir)).unlink(missing_ok=True)
    if old is not None and old.exists():
        shutil.rmtree(old, ignore_errors=True)
    return entry


#: use renameat2(RENAME_EXCHANGE) when the OS offers it (tests switch it off to exercise
#: the rename-aside path)
USE_EXCHANGE = True


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux >= 3.15); False when unsupported here."""
    if not USE_EXCHANGE:
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


# ---------------------------------------------------------------------- recovery
def recover(job_dir: str | Path) -> list[str]:
    """Finish or roll back an interrupted publication and remove stale staging folders.

    The caller holds :func:`job_lock`. Returns what was done (one line each).
    """
    job_dir = Path(job_dir)
    done = []
    ppath = pending_path(job_dir)
    if ppath.is_file():
        try:
            pending = json.loads(ppath.read_text(encoding="utf-8"))
            done.extend(_resolve_pending(job_dir, pending))
        except (ValueError, KeyError, TypeError):
            done.append(f"{ppath}: unreadable intent record removed")
        ppath.unlink(missing_ok=True)
    # an aside folder without an intent record: the old folder wins if the new is missing
    for aside in job_dir.glob(".as_of=*.replaced"):
        target = job_dir / aside.name[1 : -len(".replaced")]
        if not target.exists():
            os.rename(aside, target)
            done.append(f"{target.name}: restored the previous publication")
        else:
            shutil.rmtree(aside, ignore_errors=True)
    done.extend(_clean_staging(job_dir))
    entries, problems = read_entries(job_dir)
    anchor = read_anchor(job_dir)
    if entries and not problems and anchor and not anchor.get("invalid"):
        seq = anchor.get("seq", 0)
        behind = 0 < seq < entries[-1].data.get("seq", 0)
        if behind and entries[seq - 1].sha256 == anchor.get("entry_sha256"):
            write_anchor(job_dir, entries[-1])
            done.append(f"anchor moved to ledger entry {entries[-1].data['seq']}")
    return done


def _resolve_pending(job_dir: Path, pending: dict) -> list[str]:
    target = job_dir / pending["target"]
    asides = [job_dir / a for a in pending.get("asides") or [] if (job_dir / a).is_dir()]
    entries, _ = read_entries(job_dir)
    committed = any(
        e.data.get("seq") == pending["seq"]
        and e.data.get("folder") == pending["target"]
        and e.data.get("manifest_sha256") == pending["manifest_sha256"]
        for e in entries
    )
    if committed:
        for aside in asides:
            shutil.rmtree(aside, ignore_errors=True)
        anchor = read_anchor(job_dir)
        if entries and (not anchor or anchor.get("seq", 0) < entries[-1].data["seq"]):
            write_anchor(job_dir, entries[-1])
        return [f"{target.name}: completed an interrupted publication"]
    # not committed: the new folder (if it got in) was never acknowledged -> roll back
    new_in = (target / MANIFEST).is_file() and sha256_file(target / MANIFEST) == pending[
        "manifest_sha256"
    ]
    # the previous output: an aside folder whose manifest is not the new one
    old = next(
        (
            a
            for a in asides
            if (a / MANIFEST).is_file() and sha256_file(a / MANIFEST) != pending["manifest_sha256"]
        ),
        None,
    )
    if old is not None and new_in and _exchange(old, target):
        shutil.rmtree(old, ignore_errors=True)  # now holds the unacknowledged new output
        return [f"{target.name}: rolled back an interrupted overwrite (previous output kept)"]
    if new_in:
        trash = job_dir / f".{target.name}.rolledback.{os.getpid()}.staging"
        os.rename(target, trash)
        shutil.rmtree(trash, ignore_errors=True)
    if old is not None and not target.exists():
        os.rename(old, target)
        return [f"{target.name}: rolled back an interrupted overwrite (previous output kept)"]
    return [f"{target.name}: rolled back an interrupted publication"]


def _is_as_of(name: str) -> bool:
    return name.startswith("as_of=")


def _clean_staging(job_dir: Path) -> list[str]:
    done, now, host = [], time.time(), socket.gethostname().replace(".", "_")
    for p in job_dir.iterdir():
        if not (p.is_dir() and p.name.startswith(".as_of=")) or p.name.endswith(".replaced"):
            continue
        parts = p.name.split(".")
        alive = False
        if p.name.endswith(".staging") and len(parts) >= 5 and parts[-4] == host:
            alive = _pid_alive(parts[-3])
        elif p.name.endswith(".staging"):
            alive = now - p.stat().st_mtime < STALE_STAGING_SECONDS  # other host: by age
        else:  # staging of older versions (tempfile names): by age
            alive = now - p.stat().st_mtime < 600
        if not alive:
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed stale staging folder {p.name}")
    return done


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return int(pid) > 0


# ---------------------------------------------------------------------- audit
@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def verify(job_dir: str | Path) -> Report | None:
    """Check a job folder against its ledger; ``None`` when the job has no ledger.

    Problems (tampering, loss): an unparseable, edited, reordered, forged or truncated ledger;
    a head that does not match the anchor; a published folder missing; a manifest or file
    that differs from what was recorded; a file nobody published; an as-of folder the ledger
    does not know. Notes: unsigned entries, signatures not checkable without the key, an
    interrupted publication the next run will roll back.
    """
    job_dir = Path(job_dir)
    lpath = ledger_path(job_dir)
    if not lpath.is_file():
        if read_anchor(job_dir) is not None:
            return Report([f"{lpath}: the ledger is missing (deleted?)"])
        return None
    rep = Report()
    entries, rep.problems = read_entries(job_dir)
    key, key_source = signing_key()
    _check_chain(entries, lpath, key, rep)
    _check_anchor(job_dir, entries, lpath, rep)
    state: dict[str, Entry] = {}
    for e in entries:
        state[str(e.data.get("folder"))] = e
    on_disk = {p.name for p in job_dir.iterdir() if p.is_dir() and _is_as_of(p.name)}
    for name, e in sorted(state.items()):
        _check_folder(job_dir / name, e, lpath, rep)
    for name in sorted(on_disk - set(state)):
        rep.problems.append(
            f"{job_dir / name}: not in the ledger {lpath} (not published by citybrain, or the "
            "ledger was cut back)"
        )
    if (pending_path(job_dir)).is_file():
        rep.notes.append(
            f"{pending_path(job_dir)}: a publication was interrupted; the next "
            "`citybrain forecast` into this folder rolls it back"
        )
    leftovers = [p.name for p in job_dir.iterdir() if p.name.startswith(".as_of=")]
    if leftovers:
        rep.notes.append(
            f"{job_dir}: {len(leftovers)} staging folder(s) left by interrupted runs "
            f"({', '.join(sorted(leftovers)[:3])}); the next publication removes them"
        )
    unsigned = sum(1 for e in entries if not e.data.get("hmac_sha256"))
    if unsigned:
        rep.notes.append(
            f"{lpath}: {unsigned} of {len(entries)} entries are UNSIGNED (published without "
            f"${KEY_ENV} / ${KEY_FILE_ENV}): protected by the hash chain and the anchor only"
        )
    if key is None and unsigned < len(entries):
        rep.notes.append(
            f"{lpath}: signatures NOT verified: no key (set ${KEY_ENV} or ${KEY_FILE_ENV})"
        )
    elif key is not None and unsigned < len(entries):
        rep.notes.append(f"signatures verified with the key from {key_source}")
    return rep


def _check_chain(entries: list[Entry], lpath: Path, key: bytes | None, rep: Report) -> None:
    prev = None
    for n, e in enumerate(entries, start=1):
        d = e.data
        if d.get("seq") != n or d.get("prev_entry_sha256") != prev:
            rep.problems.append(
                f"{lpath}: line {e.line}: hash chain broken (an entry before it was edited, "
                "removed or reordered)"
            )
        sig = d.get("hmac_sha256")
        if sig and key is not None:
            body = {k: v for k, v in d.items() if k != "hmac_sha256"}
            if d.get("key_id") != key_id(key):
                rep.problems.append(
                    f"{lpath}: line {e.line}: signed with another key (key id {d.get('key_id')}, "
                    f"configured key {key_id(key)})"
                )
            elif not hmac.compare_digest(sig, _sign(key, body)):
                rep.problems.append(
                    f"{lpath}: line {e.line}: signature does not match (entry forged or edited)"
                )
        elif not sig and key is not None and d.get("key_id"):
            rep.problems.append(f"{lpath}: line {e.line}: signature removed")
        prev = e.sha256


def _check_anchor(job_dir: Path, entries: list[Entry], lpath: Path, rep: Report) -> None:
    apath = anchor_path(job_dir)
    anchor = read_anchor(job_dir)
    if anchor is None:
        rep.problems.append(
            f"{apath}: no head anchor for {job_dir} (deleted, or audited on another host: set "
            f"${HOME_ENV} to the publishing host's anchor folder); the newest publications "
            "cannot be verified"
        )
        return
    if anchor.get("invalid"):
        rep.problems.append(f"{apath}: the head anchor is not valid JSON (edited?)")
        return
    seq, head = anchor.get("seq", 0), anchor.get("entry_sha256")
    last = entries[-1].data.get("seq", 0) if entries else 0
    if seq > len(entries):
        rep.problems.append(
            f"{lpath}: ledger cut back: the anchor {apath} records {seq} entries, the ledger "
            f"has {len(entries)} (latest publications removed?)"
        )
    elif seq < 1 or entries[seq - 1].sha256 != head:
        rep.problems.append(
            f"{lpath}: entry {seq} differs from the anchored head {apath} (ledger rewritten)"
        )
    elif last == seq + 1:
        rep.notes.append(
            f"{apath}: the anchor is one entry behind the ledger (publication interrupted "
            "before anchoring; the next publication re-anchors)"
        )
    elif last > seq + 1:
        rep.problems.append(
            f"{lpath}: {last - seq} entries after the anchored head {seq} ({apath}): appended "
            "outside citybrain?"
        )


def _check_folder(folder: Path, e: Entry, lpath: Path, rep: Report) -> None:
    where = f"(ledger {lpath} line {e.line})"
    if not folder.is_dir():
        rep.problems.append(f"{folder}: published {where} but missing (deleted?)")
        return
    mpath = folder / MANIFEST
    if not mpath.is_file():
        rep.problems.append(f"{mpath}: missing {where}")
    else:
        raw = mpath.read_bytes()
        if _sha(raw) != e.data.get("manifest_sha256"):
            rep.problems.append(
                f"{mpath}: differs from the manifest recorded {where} (edited or replaced)"
            )
        try:
            manifest = json.loads(raw)
            listed = manifest.get("files", {}) if isinstance(manifest, dict) else {}
        except ValueError as exc:
            rep.problems.append(f"{mpath}: not valid JSON ({exc})")
            listed = {}
        if listed and listed != e.data.get("files"):
            rep.problems.append(f"{mpath}: its file list differs from the ledger {where}")
    recorded = e.data.get("files") or {}
    for fname, digest in sorted(recorded.items()):
        fpath = folder / fname
        if not fpath.is_file():
            rep.problems.append(f"{fpath}: missing {where}")
        elif sha256_file(fpath) != digest:
            rep.problems.append(f"{fpath}: content does not match its recorded hash (tampered)")
    for name in folder_files(folder):
        if name not in recorded and name != MANIFEST:
            rep.problems.append(
                f"{folder / name}: not listed in the manifest or the ledger (added later)"
            )
