"""Atomic file output: write to a temp file beside the target, then rename.

A job killed mid-write leaves the previous file (or nothing), never a truncated one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pandas as pd

from citybrain_ml.data.validation import DataValidationError


def atomic_write_bytes(data: bytes, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(text: str, path: str | Path) -> Path:
    return atomic_write_bytes(text.encode("utf-8"), path)


def frame_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    """Serialise deterministically (same frame -> same bytes) as ``parquet`` or ``csv``."""
    if fmt == "csv":
        from citybrain_ml.data.csv_writer import csv_bytes

        return csv_bytes(df)  # the bytes of df.to_csv(index=False), faster
    if fmt == "parquet":
        import io

        buf = io.BytesIO()
        df.to_parquet(buf, index=False, engine="pyarrow")
        return buf.getvalue()
    raise ValueError(f"unknown output format {fmt!r}; use parquet or csv")


def atomic_write_frame(df: pd.DataFrame, path: str | Path, fmt: str | None = None) -> Path:
    path = Path(path)
    return atomic_write_bytes(frame_bytes(df, fmt or path.suffix.lstrip(".")), path)


class InputFileError(DataValidationError):
    """An input file cannot be read as a table (empty, truncated, corrupt, not UTF-8, ...).

    The message names the file, the line where that is known, and what to do; a
    :class:`DataValidationError`, so one ``except`` catches every input problem.
    """


CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz", ".tsv", ".txt", ".gz")
PARQUET_SUFFIXES = (".parquet", ".pq")


def read_frame(
    path: str | Path, require_rows: bool = True, categorical_ids: bool = False
) -> pd.DataFrame:
    """Read a CSV (optionally compressed) or Parquet file by its suffix.

    Every failure is a :class:`FileNotFoundError` or an :class:`InputFileError` naming the
    file (and the line, for CSV): empty file, header without rows (``require_rows``),
    truncated gzip or Parquet, bytes that are not UTF-8, malformed CSV lines.

    ``categorical_ids``: read a Parquet file's string ``series_id`` column as a categorical
    whose categories are in sorted order (Parquet stores it dictionary-encoded: no string per
    row is built, and per-series checks compare integer codes). The frame sorts as with
    string ids; ``ids.astype(ids.cat.categories.dtype)`` gives the strings back. CSV files
    are read as usual.
    """
    path = Path(path)
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder, not a file; give the CSV/Parquet file")
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    name = path.name.lower()
    if path.stat().st_size == 0:
        raise InputFileError(f"{path}: the file is empty (0 bytes); expected a header line")
    if name.endswith(PARQUET_SUFFIXES):
        if categorical_ids:
            df = _read_parquet_lean(path)
        else:
            df = read_parquet_checked(path)
    elif name.endswith(CSV_SUFFIXES):
        df = read_csv_checked(path, sep="\t" if name.endswith(".tsv") else ",")
    else:
        raise InputFileError(
            f"{path}: unsupported file type {path.suffix!r}; use .csv, .csv.gz or .parquet"
        )
    if require_rows and len(df) == 0:
        raise InputFileError(f"{path}: no data rows (only the header {list(df.columns)})")
    return df


def read_csv_checked(path: str | Path, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` with the library's errors (see :func:`read_frame`)."""
    import zlib

    path = Path(path)
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder, not a file; give the CSV/Parquet file")
    try:
        return pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise InputFileError(
            f"{path}: no header line (the file holds no CSV text); expected a header such as "
            "series_id,timestamp,value"
        ) from None
    except UnicodeDecodeError as exc:
        raise InputFileError(_not_utf8(path, exc)) from None
    except pd.errors.ParserError as exc:
        reason = str(exc).strip().splitlines()[-1]
        raise InputFileError(
            f"{path}: not a well-formed CSV ({reason}); line numbers count the header as line 1"
        ) from None
    except (EOFError, zlib.error, OSError) as exc:
        raise InputFileError(
            f"{path}: compressed data is truncated or corrupt ({type(exc).__name__}: {exc}); "
            "the file was probably cut off while being written or copied -- fetch it again"
        ) from None


def read_parquet_checked(path: str | Path, **kwargs) -> pd.DataFrame:
    """``pd.read_parquet`` with the library's errors (see :func:`read_frame`)."""
    import pyarrow as pa

    path = Path(path)
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder, not a file; give the CSV/Parquet file")
    try:
        return pd.read_parquet(path, **kwargs)
    except (pa.ArrowException, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputFileError(
            f"{path}: not a readable Parquet file ({reason}); it may be truncated (copied while "
            "being written) or not Parquet at all -- fetch or export it again"
        ) from None


def _read_parquet_lean(path: Path) -> pd.DataFrame:
    """Parquet with its string ids read as sorted categoricals (from the file's dictionary
    encoding: one string per series instead of one per row)."""
    options = _dictionary_ids(path)
    df = read_parquet_checked(path, **options)
    return _sorted_categories(df) if "read_dictionary" in options else df


def _dictionary_ids(path: Path) -> dict:
    """``read_dictionary`` for a Parquet file whose ``series_id`` column holds strings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from citybrain_ml.data.schema import SERIES_ID

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError, ValueError):
        return {}  # read_parquet_checked names the problem
    if SERIES_ID not in schema.names:
        return {}
    kind = schema.field(SERIES_ID).type
    return (
        {"read_dictionary": [SERIES_ID]}
        if pa.types.is_string(kind) or pa.types.is_large_string(kind)
        else {}
    )


def _sorted_categories(df: pd.DataFrame) -> pd.DataFrame:
    """Categorical ``series_id`` with its categories sorted, so codes order as the strings."""
    from citybrain_ml.data.schema import SERIES_ID

    col = df.get(SERIES_ID)
    if col is None or not isinstance(col.dtype, pd.CategoricalDtype):
        return df
    cats = col.cat.categories
    if not cats.is_monotonic_increasing:
        df[SERIES_ID] = col.cat.reorder_categories(cats.sort_values())
    return df


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> str:
    """'<file>: line 7: byte 0xe9 is not UTF-8 ...' (line counted in the decoded file)."""
    import gzip

    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as fh:
            data = fh.read()
        data.decode("utf-8")
        where = ""
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        where = f"line {line}, column {col}: byte 0x{data[err.start]:02x} "
    except OSError:
        where = ""
    return (
        f"{path}: {where}is not UTF-8 text ({exc.reason}); re-save the file as UTF-8 "
        "(e.g. `iconv -f latin1 -t utf-8`)"
    )


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_stem(path: Path, suffixes) -> str:
    """File name without the first matching (possibly double) suffix: ``a.csv.gz`` -> ``a``."""
    name = Path(path).name
    for suffix in suffixes:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem
