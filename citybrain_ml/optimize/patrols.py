"""Response-unit placement from forecast incident risk, evaluated on what happened next.

For every test period ``t`` (a day of the Chicago crime grid, say):

1. each forecaster predicts the incidents per cell for ``t`` from data up to ``t - 1``;
2. ``p`` units are placed on cell centroids to maximise the *expected* incidents within
   ``radius_m`` (maximal covering, :func:`citybrain_ml.optimize.placement.maximal_covering`);
3. the placement is scored on the *actual* incidents of ``t``: covered share.

Reference placements scored the same way:

* ``historical_rate`` -- demand = mean count per cell over the ``lookback`` periods before
  ``t`` (what a dispatcher does without a model);
* ``uniform`` -- units spread evenly: the placement covering the most *cells* of the city
  footprint (cells with any incident before the test), the same every period, ignoring risk;
* ``oracle`` -- placed on the actual counts of ``t``: the best any forecast could do (an
  upper bound, not a method).

``citybrain optimize patrols --config configs/patrols_chicago.yaml`` runs this, writes the
placement for the period after the data (fitted on all of it) and the coverage tables, and
logs everything to MLflow with a map.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from citybrain_ml.data.schema import SERIES_ID, TIMESTAMP, VALUE, SeriesDataset
from citybrain_ml.optimize.placement import coverage_matrix, maximal_covering

REFERENCES = ("historical_rate", "uniform", "oracle")


# ---------------------------------------------------------------------------- config
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PatrolDataConfig(_Strict):
    dataset: Literal["chicago_crime", "chicago_accident_grid", "toronto_mci"] = "chicago_crime"
    root: str | None = Field(None, description="data root (default ../shared/data)")
    options: dict[str, Any] = Field(default_factory=dict, description="loader options")


class ForecasterConfig(_Strict):
    type: str = Field(description="model registry name, e.g. historical_average, lightgbm")
    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or self.type


class PlacementConfig(_Strict):
    p: int = Field(5, ge=1, description="units to place")
    radius_m: float = Field(4000.0, gt=0, description="coverage radius (great-circle)")
    solver: Literal["milp", "greedy"] = "milp"
    time_limit_s: float = Field(10.0, gt=0)


class PatrolEvaluationConfig(_Strict):
    test_start: str | None = Field(None, description="first test period (default: test_ratio)")
    test_ratio: float = Field(0.2, gt=0, lt=1)
    max_periods: int | None = Field(None, ge=1, description="score at most this many periods")
    lookback: int = Field(28, ge=1, description="periods averaged by historical_rate")


class PatrolTracking(_Strict):
    experiment: str = "citybrain-patrols"
    tracking_uri: str | None = None


class PatrolsJobConfig(_Strict):
    """``citybrain optimize patrols`` config (YAML)."""

    name: str = "patrols"
    data: PatrolDataConfig = PatrolDataConfig()
    forecasters: list[ForecasterConfig] = Field(
        default_factory=lambda: [ForecasterConfig(type="historical_average")], min_length=1
    )
    placement: PlacementConfig = PlacementConfig()
    evaluation: PatrolEvaluationConfig = PatrolEvaluationConfig()
    seed: int = 0
    output_dir: str = "outputs/patrols"
    tracking: PatrolTracking = PatrolTracking()

    @model_validator(mode="after")
    def _unique_labels(self):
        labels = [f.label for f in self.forecasters]
        clash = sorted({x for x in labels if labels.count(x) > 1} | (set(labels) & set(REFERENCES)))
        if clash:
            raise ValueError(f"forecaster labels must be unique and not {REFERENCES}: {clash}")
        return self


def load_patrols_config(path: str | Path) -> PatrolsJobConfig:
    """Read and validate a patrols job YAML; errors name the file and the field."""
    from citybrain_ml.config import load_yaml_model

    return load_yaml_model(path, PatrolsJobConfig)


# ---------------------------------------------------------------------------- data
def load_incident_grid(cfg: PatrolDataConfig) -> SeriesDataset:
    """The configured incident grid with cell centroids (``sensors``: series_id, lat, lon).

    The accident grid stores rows/cols, not coordinates: its 20x20 cells are given unit
    spacing then, and ``radius_m`` is read in cells (documented limitation).
    """
    from citybrain_ml.data import load_dataset

    ds = load_dataset(cfg.dataset, root=cfg.root, **cfg.options)
    sensors = ds.sensors
    if sensors is None or SERIES_ID not in sensors:
        raise ValueError(f"dataset {cfg.dataset!r} has no sensors table with cell ids")
    return ds


def cell_points(ds: SeriesDataset) -> tuple[pd.DataFrame, str]:
    """Cell centroids aligned to the series, and the distance metric to use with them."""
    sensors = ds.sensors.set_index(SERIES_ID)
    ids = pd.Index(sorted(ds.values[SERIES_ID].unique()))
    missing = ids.difference(sensors.index)
    if len(missing):
        raise ValueError(f"sensors table lacks cells {list(missing[:5])}")
    if {"lat", "lon"} <= set(sensors.columns):
        return sensors.loc[ids, ["lat", "lon"]].astype(float), "haversine"
    if {"row", "col"} <= set(sensors.columns):
        return sensors.loc[ids, ["row", "col"]].astype(float), "euclidean"
    raise ValueError("sensors table needs lat/lon or row/col columns for cell centroids")


def to_matrix(values: pd.DataFrame, cells: pd.Index) -> pd.DataFrame:
    """Long ``series_id, timestamp, value`` -> periods x cells (NaN counts become 0)."""
    wide = values.pivot(index=TIMESTAMP, columns=SERIES_ID, values=VALUE)
    return wide.reindex(columns=cells).fillna(0.0).sort_index()


# ---------------------------------------------------------------------------- evaluation
@dataclass
class PatrolsResult:
    """Coverage per (method, period), its summary, forecast errors and the next placement."""

    config: PatrolsJobConfig
    coverage: pd.DataFrame
    summary: pd.DataFrame
    forecast_errors: pd.DataFrame
    placement: pd.DataFrame
    next_risk: pd.Series
    cells: pd.DataFrame


@dataclass
class Backtest:
    """Demand estimates per method (test periods x cells) and the actual counts they face."""

    demands: dict[str, pd.DataFrame]
    actual: pd.DataFrame
    periods: pd.DatetimeIndex
    points: pd.DataFrame
    metric: str

    def cover(self, radius_m: float):
        """Sites (cell centroids) x cells coverage within ``radius_m``."""
        xy = self.points.to_numpy()
        return coverage_matrix(xy, xy, radius_m, self.metric)

    def score(self, placement: PlacementConfig) -> pd.DataFrame:
        """Coverage of the actual incidents by each method's placement, per period."""
        cover = self.cover(placement.radius_m)
        labels = list(self.points.index)
        return _score(self.demands, self.actual, self.periods, cover, placement, labels)


def forecast_backtest(cfg: PatrolsJobConfig, ds: SeriesDataset) -> Backtest:
    """One-step demand forecasts of every configured model and reference, per test period."""
    points, metric = cell_points(ds)
    cells = points.index
    actual = to_matrix(ds.values, cells)
    periods = _test_periods(actual.index, cfg.evaluation)
    train = ds.values[ds.values[TIMESTAMP] < periods[0]]
    demands = {name: _reference_demand(name, actual, periods, cfg, None) for name in REFERENCES}
    for fcfg in cfg.forecasters:
        model = build_forecaster(fcfg, ds)
        demands[fcfg.label] = _forecast_demand(model, train, ds.values, periods, cells)
    return Backtest(demands, actual, periods, points, metric)


def run_patrols(cfg: PatrolsJobConfig, ds: SeriesDataset | None = None) -> PatrolsResult:
    """Backtest forecast-based placement against the references, then place for next period."""
    from citybrain_ml.tracking.runs import set_seed

    set_seed(cfg.seed)
    ds = ds if ds is not None else load_incident_grid(cfg.data)
    bt = forecast_backtest(cfg, ds)
    coverage = bt.score(cfg.placement)
    errors = _forecast_errors(bt.demands, bt.actual, bt.periods)
    cover = bt.cover(cfg.placement.radius_m)
    placement, next_risk = _next_placement(cfg, ds, bt.points.index, bt.points, cover)
    return PatrolsResult(
        cfg, coverage, summarise_coverage(coverage), errors, placement, next_risk, bt.points
    )


def _test_periods(index: pd.DatetimeIndex, ev: PatrolEvaluationConfig) -> pd.DatetimeIndex:
    if ev.test_start is not None:
        periods = index[index >= pd.Timestamp(ev.test_start)]
    else:
        periods = index[int(len(index) * (1 - ev.test_ratio)) :]
    if ev.max_periods is not None:
        periods = periods[: ev.max_periods]
    if len(periods) == 0 or periods[0] == index[0]:
        raise ValueError(
            f"no test periods with history before them (data {index[0]} .. {index[-1]})"
        )
    return periods


def _reference_demand(name, actual: pd.DataFrame, periods, cfg: PatrolsJobConfig, cover=None):
    """Demand per period (periods x cells) for one reference method."""
    if name == "oracle":
        return actual.loc[periods]
    if name == "uniform":
        # every cell of the city footprint (any incident before the test) weighs the same:
        # maximal *area* coverage, one fixed placement; empty cells (lake, outside the city)
        # would otherwise attract units
        footprint = (actual.loc[actual.index < periods[0]].sum() > 0).astype(float)
        return pd.DataFrame(
            [footprint.to_numpy()] * len(periods), index=periods, columns=actual.columns
        )
    lookback = cfg.evaluation.lookback
    # mean of the lookback periods strictly before each test period
    rate = actual.rolling(lookback, min_periods=1).mean().shift(1)
    return rate.loc[periods].fillna(0.0)


def build_forecaster(fcfg: ForecasterConfig, ds: SeriesDataset):
    """Unfitted one-step model; graph-aware models get the grid's rook adjacency."""
    from citybrain_ml.models import make_model, model_class

    params = dict(fcfg.params)
    params.setdefault("horizon", 1)
    accepts = set(model_class(fcfg.type)._param_names())
    if "adjacency" in accepts and "adjacency" not in params and ds.adjacency is not None:
        params["adjacency"] = ds.adjacency
    return make_model(fcfg.type, **params)


def _forecast_demand(model, train, values, periods, cells) -> pd.DataFrame:
    """One-step-ahead forecasts for every test period from a model fitted before them."""
    model.fit(train)
    freq = pd.tseries.frequencies.to_offset(model.freq_)
    origins = periods - freq
    fc = model.historical_forecasts(values, origins, horizon=1)
    wide = fc.pivot(index=TIMESTAMP, columns=SERIES_ID, values="yhat")
    # counts cannot be negative; an L2 model can dip below zero on empty cells
    return wide.reindex(index=periods, columns=cells).fillna(0.0).clip(lower=0.0)


def _score(demands: dict, actual, periods, cover, pcfg: PlacementConfig, labels) -> pd.DataFrame:
    rows = []
    fixed: dict[str, object] = {}
    for name, demand in demands.items():
        for t in periods:
            truth = actual.loc[t].to_numpy()
            if name == "uniform" and name in fixed:
                res = fixed[name]
            else:
                res = place(demand.loc[t].to_numpy(), cover, pcfg, labels)
                fixed[name] = res
            covered = np.asarray(cover[res.site_index].sum(axis=0)).ravel() > 0
            hit = float(truth[covered].sum())
            rows.append(
                {
                    "method": name,
                    "period": t,
                    "incidents": float(truth.sum()),
                    "covered_incidents": hit,
                    "coverage_share": hit / truth.sum() if truth.sum() > 0 else np.nan,
                    "expected_covered": res.covered_demand,
                    "gap": res.gap,
                    "solver": res.solver,
                    "sites": json.dumps([str(s) for s in res.sites]),
                }
            )
    return pd.DataFrame(rows)


def place(demand: np.ndarray, cover, pcfg: PlacementConfig, labels: list):
    """Maximal covering placement of ``pcfg.p`` units; all-zero demand -> area coverage."""
    if demand.sum() <= 0:
        demand = np.ones_like(demand)  # nothing expected anywhere: spread out
    return maximal_covering(
        demand, labels, cover, pcfg.p, solver=pcfg.solver, time_limit_s=pcfg.time_limit_s
    )


def summarise_coverage(coverage: pd.DataFrame) -> pd.DataFrame:
    """Per method: pooled covered share, mean daily share, and the paired gain vs historical rate.

    ``coverage_pooled`` = covered incidents / incidents over all test periods;
    ``gain_vs_historical`` = mean over periods of (method share - historical_rate share), with
    a normal 95% interval from the paired differences; ``win_rate`` = share of periods where
    the method covered at least as many actual incidents as historical_rate.
    """
    ref = coverage[coverage["method"] == "historical_rate"].set_index("period")
    rows = []
    for name, g in coverage.groupby("method", sort=False):
        g = g.set_index("period")
        diff = (g["coverage_share"] - ref["coverage_share"].reindex(g.index)).dropna()
        half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else np.nan
        wins = (g["covered_incidents"] >= ref["covered_incidents"].reindex(g.index)).mean()
        rows.append(
            {
                "method": name,
                "periods": len(g),
                "coverage_pooled": g["covered_incidents"].sum() / g["incidents"].sum(),
                "coverage_mean": g["coverage_share"].mean(),
                "gain_vs_historical": diff.mean(),
                "gain_ci95_halfwidth": half,
                "win_rate_vs_historical": float(wins),
                "max_gap": g["gap"].max(),
            }
        )
    return pd.DataFrame(rows)


def _forecast_errors(demands: dict, actual: pd.DataFrame, periods) -> pd.DataFrame:
    """MAE and Poisson deviance per cell-period of each demand estimate (oracle excluded)."""
    truth = actual.loc[periods].to_numpy()
    rows = []
    for name, demand in demands.items():
        if name in ("oracle", "uniform"):
            continue
        mu = np.maximum(demand.to_numpy(), 1e-9)
        with np.errstate(divide="ignore", invalid="ignore"):
            term = np.where(truth > 0, truth * np.log(truth / mu), 0.0)
        rows.append(
            {
                "method": name,
                "mae": float(np.abs(truth - demand.to_numpy()).mean()),
                "poisson_deviance": float(2 * np.mean(term - (truth - mu))),
            }
        )
    return pd.DataFrame(rows)


def _next_placement(cfg: PatrolsJobConfig, ds, cells, points, cover):
    """Placement for the period after the data, from the first forecaster fitted on all of it."""
    fcfg = cfg.forecasters[0]
    model = build_forecaster(fcfg, ds).fit(ds.values)
    fc = model.predict(1, history_df=ds.values)
    risk = fc.set_index(SERIES_ID)["yhat"].reindex(cells).fillna(0.0).clip(lower=0.0)
    res = place(risk.to_numpy(), cover, cfg.placement, list(cells))
    covered = np.asarray(cover[res.site_index].sum(axis=0)).ravel() > 0
    table = pd.DataFrame(
        {
            "site": [str(s) for s in res.sites],
            "coord_1": points.iloc[res.site_index, 0].to_numpy(),
            "coord_2": points.iloc[res.site_index, 1].to_numpy(),
            "expected_incidents_in_reach": [
                float(risk.to_numpy()[cover[i].indices].sum()) for i in res.site_index
            ],
        }
    ).rename(columns=dict(zip(["coord_1", "coord_2"], points.columns, strict=True)))
    table.insert(0, "period", fc[TIMESTAMP].iloc[0])
    table.attrs.update(
        forecaster=fcfg.label,
        expected_covered=res.covered_demand,
        expected_share=res.coverage_share,
        gap=res.gap,
        status=res.status,
        cells_covered=int(covered.sum()),
    )
    return table, risk


# ---------------------------------------------------------------------------- outputs
def plot_placement_map(result: PatrolsResult, path: Path) -> Path:
    """Cells coloured by forecast risk, chosen sites and their coverage circles (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from citybrain_ml.data.io import atomic_write_bytes

    pts = result.cells
    lat_lon = list(pts.columns) == ["lat", "lon"]
    x, y = (pts["lon"], pts["lat"]) if lat_lon else (pts.iloc[:, 1], pts.iloc[:, 0])
    fig, ax = plt.subplots(figsize=(5.5, 6))
    sc = ax.scatter(x, y, c=result.next_risk.reindex(pts.index), s=60, marker="s", cmap="OrRd")
    fig.colorbar(sc, ax=ax, label="forecast incidents per cell")
    sites = result.placement
    sx, sy = (sites["lon"], sites["lat"]) if lat_lon else (sites.iloc[:, 3], sites.iloc[:, 2])
    ax.scatter(sx, sy, marker="*", s=220, c="tab:blue", edgecolors="k", label="units")
    radius = result.config.placement.radius_m
    for cx, cy in zip(sx, sy, strict=True):
        # degrees of latitude are ~111.2 km; longitude shrinks with cos(latitude)
        ry = radius / 111_195.0 if lat_lon else radius
        rx = ry / np.cos(np.radians(cy)) if lat_lon else radius
        ax.add_patch(
            matplotlib.patches.Ellipse((cx, cy), 2 * rx, 2 * ry, fill=False, color="tab:blue")
        )
    ax.set_aspect(1 / np.cos(np.radians(float(np.mean(y)))) if lat_lon else 1)
    ax.set_title(
        f"{result.config.placement.p} units, {radius / 1000:g} km reach, "
        f"period {pd.Timestamp(sites['period'].iloc[0]).date()}"
    )
    ax.legend(loc="lower left")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(buffer.getvalue(), path)


def write_patrols_outputs(result: PatrolsResult, out: Path) -> list[Path]:
    """Placement, coverage tables and the map, each written atomically."""
    from citybrain_ml.data.io import atomic_write_frame, atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    meta = {
        k: (float(v) if isinstance(v, np.floating) else v)
        for k, v in result.placement.attrs.items()
    }
    placement = result.placement.copy()
    placement.attrs = {}
    return [
        atomic_write_frame(placement, out / "placement.csv"),
        atomic_write_text(json.dumps(meta, indent=2, default=str), out / "placement_summary.json"),
        atomic_write_frame(result.coverage, out / "coverage_by_period.csv"),
        atomic_write_frame(result.summary, out / "coverage_summary.csv"),
        atomic_write_frame(result.forecast_errors, out / "forecast_errors.csv"),
        plot_placement_map(result, out / "placement_map.png"),
    ]


def run_patrols_job(config_path: str | Path) -> str:
    """``citybrain optimize patrols``: backtest placements, place for next period, log to MLflow.

    Returns
    -------
    str
        Coverage summary per method and where the outputs went.
    """
    import mlflow

    from citybrain_ml.tracking.runs import configure_tracking, log_lineage

    cfg = load_patrols_config(config_path)
    configure_tracking(cfg.tracking.tracking_uri, cfg.tracking.experiment)
    ds = load_incident_grid(cfg.data)
    started = time.perf_counter()
    result = run_patrols(cfg, ds)
    files = write_patrols_outputs(result, Path(cfg.output_dir))
    with mlflow.start_run(run_name=cfg.name) as run:
        mlflow.set_tag("job", "optimize_patrols")
        log_lineage(ds, cfg.model_dump(mode="json"), cfg.seed)
        mlflow.log_params(
            {"p": cfg.placement.p, "radius_m": cfg.placement.radius_m,
             "solver": cfg.placement.solver, "lookback": cfg.evaluation.lookback,
             "forecasters": json.dumps([f.label for f in cfg.forecasters])}
        )  # fmt: skip
        for row in result.summary.itertuples():
            mlflow.log_metric(f"{row.method}.coverage_pooled", float(row.coverage_pooled))
            mlflow.log_metric(f"{row.method}.coverage_mean", float(row.coverage_mean))
        for row in result.forecast_errors.itertuples():
            mlflow.log_metric(f"{row.method}.mae", row.mae)
        mlflow.log_metric("runtime_s", time.perf_counter() - started)
        for path in files:
            mlflow.log_artifact(str(path))
    table = result.summary[
        ["method", "periods", "coverage_pooled", "gain_vs_historical", "win_rate_vs_historical"]
    ].round(4)
    return "\n".join(
        [
            f"{cfg.name}: {cfg.placement.p} units, {cfg.placement.radius_m:g} m reach; coverage of "
            "actual next-period incidents",
            table.to_string(index=False),
            f"MLflow run {run.info.run_id}",
            *[f"wrote {p}" for p in files],
        ]
    )
