"""Hotspot ranking metrics for grid incident-risk forecasts.

Recall@K and MAP@K follow the accident-risk benchmark code of GSNet (Wang et al., AAAI 2021)
and MGHSTN, matched line by line against

* ``Echohhhhhh/GSNet`` ``lib/metrics.py`` @ e3d61a4686859dae415e2c89eea186b71d57d621
  (functions ``nonzero_num``, ``get_top``, ``Recall``, ``MAP``, ``AP``), and
* ``faceless0124/MGHSTN`` ``lib/metrics.py`` @ 14382ba880345c4f36a7136dd223b35507c5c0af
  (the same code, reformatted),

called from ``predict_and_evaluate`` on inverse-scaled predictions (no rounding, no
clipping). Their behaviour, reproduced here:

* A time step is one sample (their arrays are ``(samples, pre_len=1, W, H)``, flattened per
  sample). Only cells with ``mask >= 1`` count: they add -1000 to cells outside the mask,
  which ranks those last; here they are dropped, which is the same whenever predictions lie
  within 1000 of each other (any risk forecast).
* ``K_t`` = number of in-mask cells with true risk > 0 at step t.
* The predicted top-K list is the ``K_t`` in-mask cells with the highest prediction, ties
  broken by the lower flattened cell index (Python's stable ``sorted(..., reverse=True)``).
* Recall = sum_t hits_t / sum_t K_t (pooled over steps, *not* a mean of per-step recalls;
  steps with K = 0 add nothing). Their code multiplies by 100; we return a fraction.
* AP_t = (sum over ranks n = 1..K_t where the n-th predicted cell is a true cell of
  hits_so_far / n) / K_t, and 0 when there is no hit. MAP = mean of AP_t over *all* steps,
  so steps with K = 0 count as AP = 0 (``empty_steps="zero"``, their behaviour;
  ``"skip"`` averages over steps with K > 0 only).

Also: the Predictive Accuracy Index (:func:`pai`) and Predictive Efficiency Index
(:func:`pei`) of crime-hotspot mapping, and :func:`rank_hotspots` for publishing ranked lists.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import HORIZON_STEP, SERIES_ID, TIMESTAMP, VALUE, YHAT


def _as_steps(array, name: str) -> np.ndarray:
    """``(T, N)`` or ``(T, H, W)`` -> float ``(T, cells)``."""
    arr = np.asarray(array, dtype=float)
    if arr.ndim < 2:
        raise ValueError(f"{name} must be shaped (T, N) or (T, H, W), got shape {arr.shape}")
    return arr.reshape(arr.shape[0], -1)


def _cell_mask(mask, n_cells: int) -> np.ndarray:
    if mask is None:
        return np.ones(n_cells, dtype=bool)
    m = np.asarray(mask, dtype=float).ravel()
    if m.size != n_cells:
        raise ValueError(f"mask has {m.size} cells, the arrays have {n_cells} per step")
    return m >= 1  # GSNet: np.where(region_mask >= 1, 0, -1000)


def topk_table(y_true, y_pred, mask=None) -> pd.DataFrame:
    """Per-step K, hits and average precision of the top-K predicted cells.

    Parameters
    ----------
    y_true, y_pred : array-like
        ``(T, N)`` or ``(T, H, W)`` true risk and predicted risk/score.
    mask : array-like, optional
        ``(N,)`` or ``(H, W)``; cells with ``mask >= 1`` count (default: all).

    Returns
    -------
    DataFrame
        One row per step: ``step, k`` (cells with true risk > 0), ``hits`` (of them in the
        predicted top-K), ``recall`` (hits / k, NaN where k = 0), ``ap`` (0 where k = 0).
    """
    truth, pred = _as_steps(y_true, "y_true"), _as_steps(y_pred, "y_pred")
    if truth.shape != pred.shape:
        raise ValueError(f"y_true {truth.shape} and y_pred {pred.shape} differ in shape")
    keep = _cell_mask(mask, truth.shape[1])
    truth, pred = truth[:, keep], pred[:, keep]
    for name, arr in (("y_true", truth), ("y_pred", pred)):
        if np.isnan(arr).any():
            step = int(np.argwhere(np.isnan(arr))[0, 0])
            raise ValueError(f"{name} has NaN inside the mask (first at step {step})")
    rows = [_step_scores(t, p) for t, p in zip(truth, pred, strict=True)]
    table = pd.DataFrame(rows, columns=["k", "hits", "ap"])
    table.insert(0, "step", np.arange(len(table)))
    with np.errstate(invalid="ignore", divide="ignore"):
        table.insert(3, "recall", table["hits"] / table["k"].where(table["k"] > 0))
    return table


def _step_scores(truth: np.ndarray, pred: np.ndarray) -> tuple[int, int, float]:
    is_true = truth > 0
    k = int(is_true.sum())
    if k == 0:
        return 0, 0, 0.0
    # stable sort on -pred: equal predictions keep the lower cell index first
    top = np.argsort(-pred, kind="stable")[:k]
    hit = is_true[top]
    hits = int(hit.sum())
    ranks = np.arange(1, k + 1)
    precision_at_hits = np.cumsum(hit)[hit] / ranks[hit]
    return k, hits, float(precision_at_hits.sum() / k) if hits else 0.0


def recall_at_k(y_true, y_pred, mask=None, average: str = "micro") -> float:
    """Recall@K with K = number of accident cells per step (GSNet/MGHSTN definition).

    Parameters
    ----------
    y_true, y_pred, mask
        See :func:`topk_table`.
    average : {"micro", "macro"}
        ``"micro"`` (GSNet/MGHSTN): total hits / total accident cells over all steps.
        ``"macro"``: mean of per-step recalls over steps with K > 0.

    Returns
    -------
    float
        Fraction in [0, 1] (the papers report it x 100); NaN if no step has an accident.
    """
    table = topk_table(y_true, y_pred, mask)
    if average == "micro":
        total = table["k"].sum()
        return float(table["hits"].sum() / total) if total else float("nan")
    if average == "macro":
        return float(table["recall"].mean())
    raise ValueError(f"average must be 'micro' or 'macro', got {average!r}")


def map_at_k(y_true, y_pred, mask=None, empty_steps: str = "zero") -> float:
    """MAP@K: mean over steps of the average precision of the top-K list (GSNet/MGHSTN).

    Parameters
    ----------
    y_true, y_pred, mask
        See :func:`topk_table`.
    empty_steps : {"zero", "skip"}
        Steps without accidents: AP = 0 and counted (``"zero"``, their code) or left out.

    Returns
    -------
    float
        MAP in [0, 1]; NaN if there is no step to average.
    """
    table = topk_table(y_true, y_pred, mask)
    if empty_steps == "skip":
        table = table[table["k"] > 0]
    elif empty_steps != "zero":
        raise ValueError(f"empty_steps must be 'zero' or 'skip', got {empty_steps!r}")
    return float(table["ap"].mean()) if len(table) else float("nan")


def _mask_from_ids(mask, ids: pd.Index) -> np.ndarray | None:
    if mask is None:
        return None
    if isinstance(mask, pd.Series):
        if mask.index.duplicated().any():
            raise ValueError("mask Series has duplicate series ids")
        return mask.reindex(ids).fillna(0).astype(float).to_numpy()
    chosen = set(mask)
    unknown = chosen - set(ids)
    if unknown:
        raise ValueError(f"mask names series ids absent from actual_df: {sorted(unknown)[:5]}")
    return ids.isin(chosen).astype(float)


def hotspot_metrics(
    forecast_df: pd.DataFrame,
    actual_df: pd.DataFrame,
    mask=None,
    pred_col: str = YHAT,
    value_col: str = VALUE,
    empty_steps: str = "zero",
) -> pd.DataFrame:
    """Recall@K and MAP@K from long frames, one row per horizon step.

    Parameters
    ----------
    forecast_df : DataFrame
        ``series_id, timestamp, [horizon_step], pred_col``; one forecast per cell and
        timestamp within each horizon step.
    actual_df : DataFrame
        ``series_id, timestamp, value_col``: the true risk of every cell at every timestamp
        (zeros included; a cell missing at a forecast timestamp is an error).
    mask : iterable of series ids or Series (series_id -> 0/1), optional
        Cells that count (the benchmark's risk mask); default all cells in ``actual_df``.
    pred_col, value_col : str
        Column names of the prediction and the truth.
    empty_steps : {"zero", "skip"}
        See :func:`map_at_k`.

    Returns
    -------
    DataFrame
        ``horizon_step, n_steps, n_accident_cells, recall, map`` (fractions).
    """
    for frame, cols, name in (
        (forecast_df, [SERIES_ID, TIMESTAMP, pred_col], "forecast_df"),
        (actual_df, [SERIES_ID, TIMESTAMP, value_col], "actual_df"),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks columns {missing}")
    truth = actual_df.pivot(index=TIMESTAMP, columns=SERIES_ID, values=value_col)
    ids = truth.columns
    cell_mask = _mask_from_ids(mask, ids)
    steps = (
        forecast_df[HORIZON_STEP]
        if HORIZON_STEP in forecast_df
        else pd.Series(1, forecast_df.index)
    )
    rows = []
    for step, part in forecast_df.groupby(steps.to_numpy(), sort=True):
        pred = part.pivot(index=TIMESTAMP, columns=SERIES_ID, values=pred_col).reindex(columns=ids)
        actual = truth.reindex(pred.index)
        _check_complete(actual, pred, cell_mask, step)
        table = topk_table(actual.to_numpy(), pred.fillna(-np.inf).to_numpy(), cell_mask)
        total = table["k"].sum()
        kept = table if empty_steps == "zero" else table[table["k"] > 0]
        rows.append(
            {
                HORIZON_STEP: step,
                "n_steps": len(table),
                "n_accident_cells": int(total),
                "recall": float(table["hits"].sum() / total) if total else float("nan"),
                "map": float(kept["ap"].mean()) if len(kept) else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def _check_complete(actual: pd.DataFrame, pred: pd.DataFrame, cell_mask, step) -> None:
    used = np.ones(actual.shape[1], bool) if cell_mask is None else np.asarray(cell_mask) >= 1
    gaps = actual.loc[:, used].isna()
    if gaps.to_numpy().any():
        ts = gaps.any(axis=1).idxmax()
        raise ValueError(f"actual_df has no value for some cells at {ts} (horizon step {step})")
    gaps = pred.loc[:, used].isna()
    if gaps.to_numpy().any():
        ts = gaps.any(axis=1).idxmax()
        raise ValueError(f"forecast_df has no {ts} forecast for some cells (horizon step {step})")


def _flag_top_area(score: np.ndarray, area: np.ndarray, area_fraction: float) -> np.ndarray:
    """Boolean flag of the top-scored cells until their area reaches ``area_fraction``."""
    if not 0 < area_fraction <= 1:
        raise ValueError(f"area_fraction must be in (0, 1], got {area_fraction}")
    order = np.argsort(-score, kind="stable")
    cum = np.cumsum(area[order]) / area.sum()
    n_flag = int(np.searchsorted(cum, area_fraction - 1e-12) + 1)
    flags = np.zeros(score.size, bool)
    flags[order[:n_flag]] = True
    return flags


def _cells(y_true, y_score, cell_area) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    truth = np.asarray(y_true, dtype=float).ravel()
    score = np.asarray(y_score, dtype=float).ravel()
    if truth.shape != score.shape:
        raise ValueError(f"y_true has {truth.size} cells, y_score {score.size}")
    if np.isnan(truth).any() or np.isnan(score).any():
        raise ValueError("y_true and y_score must not contain NaN")
    area = np.ones_like(truth) if cell_area is None else np.asarray(cell_area, float).ravel()
    if area.shape != truth.shape or (area <= 0).any():
        raise ValueError("cell_area must be positive with one value per cell")
    return truth, score, area


def pai(y_true, y_score, area_fraction: float, cell_area=None) -> float:
    """Predictive Accuracy Index: hit rate divided by the share of area flagged.

    The cells with the highest ``y_score`` are flagged, in order (ties: lower index first),
    until their area first reaches ``area_fraction`` of the total; the denominator is the
    area actually flagged (which can exceed ``area_fraction`` by part of one cell).

    ``PAI = (incidents in flagged cells / all incidents) / (flagged area / total area)``.

    Parameters
    ----------
    y_true : array-like
        Incident counts per cell for one period (any shape; flattened).
    y_score : array-like
        Predicted score per cell, same shape.
    area_fraction : float
        Share of the study area to flag, in (0, 1].
    cell_area : array-like, optional
        Area of each cell (default equal areas).

    Returns
    -------
    float
        PAI (1 = no better than flagging at random); NaN if there are no incidents.
    """
    truth, score, area = _cells(y_true, y_score, cell_area)
    total = truth.sum()
    if total <= 0:
        return float("nan")
    flags = _flag_top_area(score, area, area_fraction)
    return float((truth[flags].sum() / total) / (area[flags].sum() / area.sum()))


def pei(y_true, y_score, area_fraction: float) -> float:
    """Predictive Efficiency Index: incidents captured / the most any same-size flag could.

    With equal-area cells, ``PEI = captured / captured_by_best`` where the best flag takes
    the same number of cells with the highest *true* counts (equivalently PAI / max PAI).

    Parameters
    ----------
    y_true, y_score, area_fraction
        See :func:`pai` (equal cell areas only).

    Returns
    -------
    float
        PEI in [0, 1]; NaN if there are no incidents.
    """
    truth, score, area = _cells(y_true, y_score, None)
    if truth.sum() <= 0:
        return float("nan")
    n_flag = int(_flag_top_area(score, area, area_fraction).sum())
    captured = truth[np.argsort(-score, kind="stable")[:n_flag]].sum()
    best = np.sort(truth)[::-1][:n_flag].sum()
    return float(captured / best)


def rank_hotspots(
    forecast_df: pd.DataFrame,
    top_k: int | None = None,
    by_period: bool = True,
    pred_col: str = YHAT,
) -> pd.DataFrame:
    """Rank cells by forecast expected incident count, per period or over the whole window.

    ``p_at_least_one = 1 - exp(-mu)`` assumes the count in a cell and period is Poisson with
    mean ``mu = expected_count``. Over the whole window (``by_period=False``) ``mu`` is the
    sum of the period means, i.e. periods are treated as independent. This is only meaningful
    when ``pred_col`` is an expected *count*; for severity-weighted risk (as in the GSNet
    grids) read it as a monotone score, not a probability. Negative forecasts (possible from
    regression models) are clipped to 0 before ranking.

    Parameters
    ----------
    forecast_df : DataFrame
        ``series_id, timestamp, pred_col``; one row per cell and timestamp (filter one origin
        and horizon step first if the frame holds several).
    top_k : int, optional
        Keep the ``top_k`` highest per period (default all).
    by_period : bool
        Rank within each timestamp (True) or the total over all timestamps (False).
    pred_col : str
        Column with the expected count.

    Returns
    -------
    DataFrame
        ``period, rank, series_id, expected_count, p_at_least_one``; ``rank`` starts at 1;
        ties ordered by series id. ``period`` is the timestamp, or ``"all"`` when
        ``by_period=False``.
    """
    missing = [c for c in (SERIES_ID, TIMESTAMP, pred_col) if c not in forecast_df.columns]
    if missing:
        raise ValueError(f"forecast_df lacks columns {missing}")
    dup = forecast_df.duplicated([SERIES_ID, TIMESTAMP])
    if dup.any():
        row = forecast_df[dup].iloc[0]
        raise ValueError(
            f"several forecasts for {row[SERIES_ID]!r} at {row[TIMESTAMP]}: keep one origin "
            f"and horizon step before ranking"
        )
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    frame = pd.DataFrame(
        {
            "period": forecast_df[TIMESTAMP] if by_period else "all",
            SERIES_ID: forecast_df[SERIES_ID],
            "expected_count": forecast_df[pred_col].astype(float).clip(lower=0),
        }
    )
    if frame["expected_count"].isna().any():
        raise ValueError(f"forecast_df[{pred_col!r}] has NaN; cannot rank missing forecasts")
    frame = frame.groupby(["period", SERIES_ID], as_index=False, sort=True)["expected_count"].sum()
    frame = frame.sort_values(
        ["period", "expected_count", SERIES_ID], ascending=[True, False, True], kind="stable"
    )
    frame["rank"] = frame.groupby("period").cumcount() + 1
    if top_k is not None:
        frame = frame[frame["rank"] <= top_k]
    frame["p_at_least_one"] = -np.expm1(-frame["expected_count"].to_numpy())
    cols = ["period", "rank", SERIES_ID, "expected_count", "p_at_least_one"]
    return frame[cols].reset_index(drop=True)
