"""Hotspot decision outputs for incident grids: expected counts, P(>=1), ranked hotspots.

Registered as decision ``hotspots`` (see :mod:`citybrain_ml.optimize.decisions`). From the
best model's forecast it publishes, per cell and future period:

* ``hotspot_forecast``: ``expected_count`` and ``p_at_least_one``;
* ``hotspot_ranking``: the ``top_k`` cells per period by expected count;

and from its evaluation forecasts (the held-out part of the job) logs Recall@K / MAP@K
(GSNet definition, see :mod:`citybrain_ml.evaluation.ranking`), PAI at 1/5/10% of the area,
Poisson deviance and the calibration of ``P(>=1)``, with a hotspot map and a reliability
diagram as figures.

The metrics are computed on a **mask** of cells, by default (``mask="auto"``) the dataset's
own area (``sensors.in_mask``: a GeoJSON boundary, the GSNet risk mask) or else the cells
with at least one event *before the first evaluated period* ("history"). Scoring every cell
of a bounding box (lake, other jurisdictions) inflates PAI, whose denominator is the area:
on Chicago's 3 km crime grid the Poisson GLM's PAI@5% is 5.91 over the 180-cell box and 3.60
over the 95 cells with history (``experiments/results/incidents_crime.md``). The
mask is recorded on the run (tag ``hotspots.mask``, metrics ``n_cells_scored`` and
``n_cells_grid``); :func:`count_metrics` scores any model's forecasts the same way (model
cards).

Disclosure control: every table is passed through
:func:`~citybrain_ml.data.privacy.suppress_small_cells` with the training-window event count
of each cell (cells with fewer than ``k`` events are masked, or pooled into blocks with
``mode="merge"``) and checked by :func:`~citybrain_ml.data.privacy.assert_no_raw_coordinates`.
Suppressed cells are left out of the ranking (a rank would reveal their order) and drawn
blank on the map. Metrics are aggregates over all cells and periods and are logged as is.

``P(>=1)`` is ``1 - exp(-mu)`` (Poisson), or ``1 - (1 + alpha mu)^(-1/alpha)`` when the model
exposes a negative-binomial dispersion ``alpha_`` (e.g.
:class:`~citybrain_ml.models.glm.NegativeBinomialGLMForecaster`). For severity-weighted
risk (the GSNet grids) ``mu`` is a risk, not a count: read ``P(>=1)`` as a score there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from citybrain_ml.data.privacy import assert_no_raw_coordinates, suppress_small_cells
from citybrain_ml.data.schema import HORIZON_STEP, SERIES_ID, TIMESTAMP, VALUE, YHAT
from citybrain_ml.evaluation.calibration import (
    brier_score,
    expected_calibration_error,
    plot_reliability,
    reliability_table,
)
from citybrain_ml.evaluation.metrics import poisson_deviance
from citybrain_ml.evaluation.ranking import map_at_k, pai, recall_at_k
from citybrain_ml.optimize.decisions import DecisionContext, DecisionOutput

DEFAULTS = {
    "k": 5,
    "mode": "suppress",
    "top_k": 10,
    "count_method": "auto",
    "mask": "auto",
    "use_mask": None,
    "pai_areas": (0.01, 0.05, 0.10),
    "n_bins": 10,
}
_GRID_ID = re.compile(r"^(?:r|cell_)(\d+)_c?(\d+)$")
MASKS = ("auto", "dataset", "history", "none")
#: model types whose targets are counts: their cards show count metrics, not MAPE
COUNT_MODELS = ("glm_poisson", "glm_negbin", "kde_hotspot")


@dataclass
class HotspotOutput(DecisionOutput):
    """:class:`DecisionOutput` plus tags for the job's run (how the metrics were scored)."""

    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoringMask:
    """The cells hotspot metrics are computed on, and why.

    Attributes
    ----------
    cells : list
        Series ids scored.
    kind : str
        ``"dataset"`` (``sensors.in_mask``), ``"history"`` or ``"none"``.
    description : str
        One line for run tags and model cards.
    n_grid : int
        Cells forecast (the whole grid).
    """

    cells: list
    kind: str
    description: str
    n_grid: int


def hotspots_decision(ctx: DecisionContext) -> DecisionOutput:
    """Publishable hotspot tables, figures and metrics for a job's best model.

    Parameters (``ctx.params``)
    ---------------------------
    k : int
        Minimum training-window events for a cell to be published (default 5).
    mode : {"suppress", "merge"}
        How small cells are treated (see :func:`suppress_small_cells`).
    top_k : int
        Cells listed per period in ``hotspot_ranking`` (default 10).
    count_method : {"auto", "sum", "nonzero"}
        How training-window events per cell are counted: the sum of the values (counts) or
        the number of periods with a non-zero value (a lower bound on the events of a
        severity-weighted series). ``auto`` sums integer-valued data, else counts non-zero.
    mask : {"auto", "dataset", "history", "none"}
        Cells the metrics are computed on (see :func:`scoring_mask`); default ``auto``.
    use_mask : bool, optional
        Older spelling: ``true`` = ``mask: dataset``, ``false`` = ``mask: none``.
    pai_areas : list of float
        Area shares for PAI (default 1%, 5%, 10%).
    n_bins : int
        Bins of the reliability diagram.

    Returns
    -------
    HotspotOutput
        tables ``hotspot_forecast``, ``hotspot_ranking``; figures ``hotspot_map``,
        ``calibration`` (when there are evaluation forecasts); metrics; tag ``mask``.
    """
    params = _params(ctx.params)
    events = training_event_counts(ctx.dataset.values, ctx.train_end, params["count_method"])
    alpha = _dispersion(ctx.model)
    forecast = expected_counts(ctx.forecast, alpha)
    published = publish(forecast, events, params["k"], params["mode"], ctx.dataset.sensors)
    ranking = published_ranking(published, params["top_k"])
    cell_events = events.reindex(pd.unique(forecast[SERIES_ID])).fillna(0)
    out = HotspotOutput(
        tables={"hotspot_forecast": published, "hotspot_ranking": ranking},
        metrics={
            "k": float(params["k"]),
            "n_cells_suppressed": float((cell_events < params["k"]).sum()),
        },
    )
    for name, table in out.tables.items():
        assert_no_raw_coordinates(table, name)
    out.figures["hotspot_map"] = plot_hotspot_map(published, ctx.dataset.sensors)
    if ctx.scored is not None and len(ctx.scored):
        scored = _first_step(ctx.scored)
        mask = scoring_mask(scored, ctx.dataset, params["mask"])
        scored = scored[scored[SERIES_ID].isin(mask.cells)]
        out.metrics.update(evaluation_metrics(scored, alpha, params["pai_areas"]))
        out.metrics.update({"n_cells_scored": len(mask.cells), "n_cells_grid": mask.n_grid})
        out.tags["mask"] = mask.description
        table = reliability_table(
            p_at_least_one(scored[YHAT].clip(lower=0).to_numpy(), alpha),
            (scored[VALUE].to_numpy() > 0).astype(float),
            n_bins=int(params["n_bins"]),
        )
        out.figures["calibration"] = plot_reliability(table, label="P(at least one)")
    return out


def _params(raw: dict) -> dict:
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"hotspots decision: unknown params {unknown}; known {sorted(DEFAULTS)}")
    params = {**DEFAULTS, **raw}
    if params["use_mask"] is not None:  # the older boolean spelling wins when given
        params["mask"] = "dataset" if params["use_mask"] else "none"
    if params["mask"] not in MASKS:
        raise ValueError(f"hotspots decision: mask must be one of {MASKS}, got {params['mask']!r}")
    if int(params["k"]) < 1:
        raise ValueError(f"hotspots decision: k must be >= 1, got {params['k']}")
    if params["count_method"] not in ("auto", "sum", "nonzero"):
        raise ValueError(
            f"hotspots decision: count_method must be auto, sum or nonzero, "
            f"got {params['count_method']!r}"
        )
    return params


# ---------------------------------------------------------------------- building blocks
def training_event_counts(values: pd.DataFrame, train_end, method: str = "auto") -> pd.Series:
    """Events per cell in the training window (timestamps ``<= train_end``).

    Parameters
    ----------
    values : DataFrame
        Long frame ``series_id, timestamp, value``.
    train_end : timestamp-like
        Last timestamp of the training window.
    method : {"auto", "sum", "nonzero"}
        See :func:`hotspots_decision`.

    Returns
    -------
    Series
        Indexed by ``series_id``.
    """
    part = values[values[TIMESTAMP] <= pd.Timestamp(train_end)]
    v = part[VALUE].fillna(0.0)
    if method == "auto":
        method = "sum" if np.allclose(v, np.round(v)) else "nonzero"
    per_row = v if method == "sum" else (v > 0).astype(float)
    return per_row.groupby(part[SERIES_ID].to_numpy()).sum()


def p_at_least_one(mu, alpha: float = 0.0) -> np.ndarray:
    """``P(N >= 1)`` for a Poisson (``alpha = 0``) or NB2 count with mean ``mu``."""
    mu = np.clip(np.asarray(mu, dtype=float), 0.0, None)
    if alpha and alpha > 0:
        return 1.0 - (1.0 + alpha * mu) ** (-1.0 / alpha)
    return -np.expm1(-mu)


def expected_counts(forecast: pd.DataFrame, alpha: float = 0.0) -> pd.DataFrame:
    """``series_id, timestamp, horizon_step, expected_count, p_at_least_one`` from a forecast."""
    missing = [c for c in (SERIES_ID, TIMESTAMP, YHAT) if c not in forecast.columns]
    if missing:
        raise ValueError(f"forecast lacks columns {missing}")
    mu = forecast[YHAT].astype(float).clip(lower=0)
    out = pd.DataFrame(
        {
            SERIES_ID: forecast[SERIES_ID].to_numpy(),
            TIMESTAMP: forecast[TIMESTAMP].to_numpy(),
            HORIZON_STEP: forecast[HORIZON_STEP].to_numpy() if HORIZON_STEP in forecast else 1,
            "expected_count": mu.to_numpy(),
            "p_at_least_one": p_at_least_one(mu.to_numpy(), alpha),
        }
    )
    return out


def publish(
    forecast: pd.DataFrame,
    events: pd.Series,
    k: int = 5,
    mode: str = "suppress",
    sensors: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Apply k-suppression to an expected-count table (NaN values, ``suppressed`` flag).

    In ``merge`` mode ``p_at_least_one`` of a pooled block is recomputed from its summed
    expected count (a probability does not add up).
    """
    values = ["expected_count", "p_at_least_one"]
    merge_sensors = sensors if mode == "merge" and _has_rowcol(sensors) else None
    out = suppress_small_cells(
        forecast, events, k=int(k), mode=mode, sensors=merge_sensors, value_cols=values
    )
    if mode == "merge" and "merged" in out.columns:
        pooled = out["merged"].to_numpy()
        out.loc[pooled, "p_at_least_one"] = p_at_least_one(out.loc[pooled, "expected_count"])
    return out


def published_ranking(published: pd.DataFrame, top_k: int = 10) -> pd.DataFrame:
    """Top cells per period by expected count, over published (unsuppressed) rows only."""
    rows = published[~published["suppressed"].astype(bool)]
    rows = rows.dropna(subset=["expected_count"])
    ranked = rows.sort_values(
        [TIMESTAMP, "expected_count", SERIES_ID], ascending=[True, False, True], kind="stable"
    )
    ranked = ranked.assign(rank=ranked.groupby(TIMESTAMP).cumcount() + 1)
    ranked = ranked[ranked["rank"] <= int(top_k)]
    cols = ["period", "rank", SERIES_ID, HORIZON_STEP, "expected_count", "p_at_least_one"]
    ranked = ranked.rename(columns={TIMESTAMP: "period"})
    return ranked[cols].reset_index(drop=True)


def evaluation_metrics(scored: pd.DataFrame, alpha: float, areas=(0.01, 0.05, 0.10)) -> dict:
    """Recall@K, MAP@K, PAI, Poisson deviance and P(>=1) calibration on evaluation forecasts.

    ``scored`` holds one forecast per cell and timestamp (``series_id, timestamp, yhat,
    value``). PAI is averaged over periods with at least one incident.
    """
    scored = scored.dropna(subset=[VALUE, YHAT])
    truth = scored.pivot(index=TIMESTAMP, columns=SERIES_ID, values=VALUE)
    pred = scored.pivot(index=TIMESTAMP, columns=SERIES_ID, values=YHAT).reindex_like(truth)
    complete = truth.notna().all(axis=1) & pred.notna().all(axis=1)
    y, p = truth[complete].to_numpy(), pred[complete].to_numpy()
    mu = np.clip(scored[YHAT].to_numpy(dtype=float), 1e-9, None)
    prob = p_at_least_one(scored[YHAT].clip(lower=0).to_numpy(), alpha)
    hit = (scored[VALUE].to_numpy() > 0).astype(float)
    metrics = {
        "recall_at_k": recall_at_k(y, p),
        "map_at_k": map_at_k(y, p),
        "poisson_deviance": poisson_deviance(np.clip(scored[VALUE].to_numpy(), 0, None), mu),
        "brier_p_at_least_one": brier_score(prob, hit),
        "ece_p_at_least_one": expected_calibration_error(prob, hit),
    }
    for area in areas:
        scores = [pai(yt, pt, float(area)) for yt, pt in zip(y, p, strict=True) if yt.sum() > 0]
        metrics[f"pai_{round(100 * float(area)):g}pct"] = (
            float(np.mean(scores)) if scores else float("nan")
        )
    return metrics


def plot_hotspot_map(published: pd.DataFrame, sensors: pd.DataFrame | None = None):
    """Grid image of the first forecast period's expected counts; suppressed cells blank.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    first = published[published[TIMESTAMP] == published[TIMESTAMP].min()]
    first = first[~first[SERIES_ID].astype(str).str.startswith("block")]
    pos = cell_positions(first[SERIES_ID].unique(), sensors)
    n_rows, n_cols = int(pos["row"].max()) + 1, int(pos["col"].max()) + 1
    image = np.full((n_rows, n_cols), np.nan)
    at = pos.reindex(first[SERIES_ID].to_numpy())
    image[at["row"].to_numpy(), at["col"].to_numpy()] = first["expected_count"].to_numpy()
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    shown = ax.imshow(np.ma.masked_invalid(image), origin="lower", cmap="inferno_r")
    fig.colorbar(shown, ax=ax, label="expected count")
    ax.set_title(f"Expected incidents, {pd.Timestamp(first[TIMESTAMP].min())} (blank: suppressed)")
    ax.set_xlabel("column (west to east)")
    ax.set_ylabel("row (south to north)")
    return fig


def cell_positions(ids, sensors: pd.DataFrame | None = None) -> pd.DataFrame:
    """``row, col`` per series id, from ``sensors`` or parsed from grid ids."""
    ids = pd.Index(list(ids), dtype=object)
    if _has_rowcol(sensors):
        pos = sensors.set_index(SERIES_ID)[["row", "col"]].reindex(ids)
        if not pos.isna().any(axis=None):
            return pos.astype(int)
    parsed = [_GRID_ID.match(str(i)) for i in ids]
    bad = [i for i, m in zip(ids, parsed, strict=True) if m is None]
    if bad:
        raise ValueError(
            f"cannot place series {bad[0]!r} on a grid: give sensors with row/col or use "
            "r{row}_c{col} / cell_{row}_{col} ids"
        )
    rows = [(int(m.group(1)), int(m.group(2))) for m in parsed]
    return pd.DataFrame(rows, index=ids, columns=["row", "col"])


def _has_rowcol(sensors) -> bool:
    return sensors is not None and {SERIES_ID, "row", "col"}.issubset(sensors.columns)


def _dispersion(model) -> float:
    alpha = getattr(model, "alpha_", None)
    if isinstance(alpha, dict):  # per horizon step: the first step's
        alpha = alpha.get(1, next(iter(alpha.values()), 0.0)) if alpha else 0.0
    return float(alpha or 0.0)


def _first_step(scored: pd.DataFrame) -> pd.DataFrame:
    part = scored[scored[HORIZON_STEP] == 1] if HORIZON_STEP in scored else scored
    if "origin" in part.columns and part.duplicated([SERIES_ID, TIMESTAMP]).any():
        part = part.sort_values("origin").drop_duplicates([SERIES_ID, TIMESTAMP], keep="last")
    return part


def scoring_mask(scored: pd.DataFrame, dataset, mask: str = "auto") -> ScoringMask:
    """The cells to score evaluation forecasts on.

    Parameters
    ----------
    scored : DataFrame
        Evaluation forecasts (``series_id, timestamp, ...``).
    dataset : SeriesDataset
        The job's data (``values``, ``sensors``, ``extras``).
    mask : {"auto", "dataset", "history", "none"}
        ``dataset``: cells with ``sensors.in_mask`` (a boundary, the GSNet risk mask);
        ``history``: cells with an event before the first evaluated period (only past data,
        so the mask does not peek at the test period); ``none``: every forecast cell;
        ``auto``: ``dataset`` when the dataset carries an area mask, else ``history``.

    Returns
    -------
    ScoringMask
    """
    if mask not in MASKS:
        raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
    cells = list(pd.unique(scored[SERIES_ID]))
    sensors = dataset.sensors
    has_area = sensors is not None and "in_mask" in sensors.columns
    if mask == "auto":
        # an events dataset's "history" in_mask saw the test period: recompute it instead
        from_history = dataset.extras.get("mask_kind") == "history" or not has_area
        mask = "history" if from_history else "dataset"
    if mask == "none":
        return ScoringMask(cells, "none", f"none: all {len(cells)} cells", len(cells))
    if mask == "dataset":
        if not has_area:
            raise ValueError("mask 'dataset' needs dataset.sensors with an in_mask column")
        inside = set(sensors.loc[sensors["in_mask"].astype(bool), SERIES_ID])
        kept = [c for c in cells if c in inside]
        where = dataset.extras.get("boundary") or "sensors.in_mask"
        text = f"dataset: {len(kept)} of {len(cells)} cells inside {where}"
        return ScoringMask(kept, "dataset", text, len(cells))
    first = pd.Timestamp(scored[TIMESTAMP].min())
    past = dataset.values[dataset.values[TIMESTAMP] < first]
    active = (past[VALUE].fillna(0) > 0).groupby(past[SERIES_ID].to_numpy()).any()
    kept = [c for c in cells if bool(active.get(c, False))]
    text = f"history: {len(kept)} of {len(cells)} cells with an event before {first}"
    return ScoringMask(kept, "history", text, len(cells))


def count_metrics(
    scored: pd.DataFrame,
    dataset,
    mask: str = "auto",
    alpha: float = 0.0,
    areas=(0.01, 0.05, 0.10),
) -> tuple[dict, ScoringMask]:
    """Count metrics of one model's evaluation forecasts on the scoring mask.

    Poisson deviance, MAE, Recall@K, MAP@K and PAI of the first horizon step: what a
    model card of a count model shows instead of MAPE/sMAPE (undefined or meaningless on
    zero-heavy counts).

    Parameters
    ----------
    scored : DataFrame
        Evaluation forecasts joined with ``value``.
    dataset : SeriesDataset
        The job's data (for the mask).
    mask : str
        See :func:`scoring_mask`.
    alpha : float
        Negative-binomial dispersion for the ``P(>=1)`` calibration terms.
    areas : tuple of float
        Area shares for PAI.

    Returns
    -------
    metrics : dict
    mask : ScoringMask
    """
    first = _first_step(scored)
    cells = scoring_mask(first, dataset, mask)
    part = first[first[SERIES_ID].isin(cells.cells)]
    metrics = evaluation_metrics(part, alpha, areas)
    part = part.dropna(subset=[VALUE, YHAT])
    metrics["mae"] = float((part[VALUE] - part[YHAT]).abs().mean())
    metrics["n_cells_scored"] = float(len(cells.cells))
    return metrics, cells


def job_count_metrics(decisions, model_type: str, dataset, scored, model=None):
    """Count metrics for a model card, or None when the job is not about counts.

    A job is about counts when it has a ``hotspots`` decision (its ``mask`` and
    ``pai_areas`` params are used) or the model is a count model (:data:`COUNT_MODELS`).
    ``model`` (fitted) supplies a negative-binomial dispersion when it has one.

    Returns
    -------
    (dict, ScoringMask) or None
    """
    spec = next((d for d in decisions if getattr(d, "type", None) == "hotspots"), None)
    if spec is None and model_type not in COUNT_MODELS:
        return None
    if scored is None or scored.empty:
        return None
    params = _params(dict(spec.params) if spec is not None else {})
    alpha = _dispersion(model)
    return count_metrics(scored, dataset, params["mask"], alpha, params["pai_areas"])
