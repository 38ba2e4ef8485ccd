"""CSV bytes equal to ``DataFrame.to_csv(index=False)``, several times faster on forecasts.

A published forecast is mostly floats and a few repeated keys (series ids, 12 timestamps,
12 steps). pandas formats every cell in Python-level chunks; here

* repeated columns (ids, timestamps, steps, flags) are factorised and only their distinct
  values go through pandas' own ``to_csv`` -- the same text and quoting by construction;
* floats are formatted by Arrow where its shortest round-trip text equals Python's
  ``repr`` (non-integral values with 1e-4 <= |x| < 1e9, where both write plain decimals) and
  by numpy (pandas' own formatter) everywhere else;
* rows are joined by Arrow's ``binary_join_element_wise``.

Anything it cannot reproduce exactly (a value whose text holds a line break, duplicate or
non-string column names, a single column) goes to ``to_csv`` itself. The result is checked
byte for byte against ``to_csv`` in ``tests/test_csv_writer.py``.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

# both write plain shortest decimals here (Arrow switches to exponents from ~1e10 with many
# digits, Python below 1e-4 and from 1e16; checked on millions of random values)
_PLAIN_LOW, _PLAIN_HIGH = 1e-4, 1e9
# a column with more distinct values than this share of its rows is formatted row by row
_MAX_DISTINCT_SHARE = 0.5


def csv_bytes(df: pd.DataFrame) -> bytes:
    """``df.to_csv(index=False).encode("utf-8")``, byte for byte, faster.

    Parameters
    ----------
    df : DataFrame

    Returns
    -------
    bytes
    """
    if not _supported(df):
        return df.to_csv(index=False).encode("utf-8")
    import pyarrow as pa
    import pyarrow.compute as pc

    header = df.head(0).to_csv(index=False).encode("utf-8")
    if not len(df):
        return header
    columns = []
    for name in df.columns:
        text = _column_text(df[name])
        if text is None:  # a value needs quoting over lines: pandas writes the whole file
            return df.to_csv(index=False).encode("utf-8")
        columns.append(text)
    rows = pc.binary_join_element_wise(
        *columns, pa.scalar(",", pa.large_string()), null_handling="replace", null_replacement=""
    )
    # pandas ends lines with os.linesep by default (its header above did)
    lines = pc.binary_join_element_wise(
        rows, pa.scalar("", pa.large_string()), pa.scalar(os.linesep, pa.large_string())
    )
    return header + _string_data(lines)


def _supported(df: pd.DataFrame) -> bool:
    # one column: the csv module quotes an empty line (""), which a join cannot know
    names_ok = df.columns.is_unique and all(isinstance(c, str) for c in df.columns)
    return names_ok and df.shape[1] > 1


def _column_text(col: pd.Series):
    """An Arrow string array with the column's CSV text (null = empty), or ``None``."""
    if col.dtype == np.float64:  # float32 and nullable floats print differently: pandas
        return _float_text(col.to_numpy())
    return _repeated_text(col)


def _float_text(values: np.ndarray):
    import pyarrow as pa
    import pyarrow.compute as pc

    finite = np.isfinite(values)
    size = np.abs(values, where=finite, out=np.zeros_like(values))
    plain = finite & (size >= _PLAIN_LOW) & (size < _PLAIN_HIGH) & (values != np.trunc(values))
    text = pc.cast(pa.array(values, mask=~plain), pa.large_string())
    other = ~plain & ~np.isnan(values)  # integral, tiny, huge, inf: numpy writes "42.0"
    if other.any():
        out = text.to_numpy(zero_copy_only=False)
        out[other] = values[other].astype(str)
        text = pa.array(out, type=pa.large_string())
    return text


def _repeated_text(col: pd.Series):
    import pyarrow as pa

    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    if len(uniques) > max(_MAX_DISTINCT_SHARE * len(col), 64):
        codes, uniques = np.arange(len(col)), col.reset_index(drop=True)
    if not len(uniques):
        return pa.nulls(len(col), pa.large_string())
    # pandas formats the distinct values exactly as it would the column (dates-only
    # timestamps, fractional seconds, booleans, quoting of ids with commas)
    # (a leading column, so an empty string is not quoted as the only field of a line)
    sample = pd.DataFrame({"k": 0, "v": pd.Series(uniques, dtype=col.dtype)})
    lines = sample.to_csv(index=False, header=False, lineterminator="\n").split("\n")[:-1]
    if len(lines) != len(uniques):
        return None
    text = pa.array([line[2:] for line in lines], type=pa.large_string())
    return text.take(pa.array(codes, mask=codes < 0))


def _string_data(arr) -> bytes:
    """The concatenated bytes of a null-free Arrow large_string array."""
    offsets = np.frombuffer(
        arr.buffers()[1], dtype=np.int64, count=len(arr) + 1, offset=8 * arr.offset
    )
    start, end = int(offsets[0]), int(offsets[-1])
    return bytes(memoryview(arr.buffers()[2])[start:end])
