"""Neural spatio-temporal forecaster: STID (Shao et al., CIKM 2022) trained on CPU.

One network forecasts every series at once from the last ``input_len`` steps of each, plus
learned identities for the series, the time of day and the day of week. The model is bound
to the series it was trained on (each has its own identity vector).

Missing data: NaN targets are left out of the loss (they are never learned as zeros). NaN
inputs are filled with 0 after scaling -- the series' own training mean with the default
per-series scaler (the pooled mean with ``scaler="global"``) -- so a forecast is always
produced, and the training windows see the same filling as forecasts do.

torch is imported inside the functions that need it, so ``import citybrain_ml`` stays light.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pandas as pd

from citybrain_ml.data.schema import HORIZON_STEP, SERIES_ID, TIMESTAMP, VALUE, YHAT
from citybrain_ml.models.base import FORECAST_COLUMNS, Forecaster

LOSSES = ("mae", "mse", "huber")
SCALERS = ("standard", "global", "none")
PREDICT_BATCH = 256


class STIDForecaster(Forecaster):
    """STID-style MLP forecaster for a fixed set of related series (e.g. road sensors).

    Parameters
    ----------
    horizon : int
        Steps forecast at once (the network's output width); ``predict`` accepts up to this.
    input_len : int
        Steps of history per series fed to the network.
    embed_dim, node_dim, tod_dim, dow_dim : int
        Widths of the input-window embedding and of the series, time-of-day and day-of-week
        identity embeddings; 0 turns an identity off. 16 each matched 32 each on SZ-taxi at
        a third of the time per epoch (``experiments/tune_neural.py``).
    num_layers : int
        Residual MLP blocks.
    dropout : float
        Dropout inside each block.
    lr, weight_decay : float
        AdamW learning rate and weight decay.
    batch_size : int
        Training windows per step (each window holds every series).
    max_epochs, patience : int
        Epoch cap, and epochs without validation improvement before stopping early.
    val_fraction : float
        Time-ordered tail of the training windows used for early stopping.
    scaler : {"standard", "global", "none"}
        Per-series z-score, one z-score over all series, or raw values; fitted on the
        training part only (the validation tail excluded).
    loss : {"mae", "mse", "huber"}
        Training loss, masked so NaN targets do not count.
    adjacency : DataFrame, optional
        Edge list ``src, dst, weight`` between series ids (as ``SeriesDataset.adjacency``);
        treated as undirected. Needed when ``graph=True``.
    graph : bool
        Add the neighbour branch: each series also sees the adjacency-weighted mean of its
        neighbours' windows.
    seed : int
        Seed for weights, dropout and shuffling; same seed and data give the same forecasts.
    num_threads : int
        torch CPU threads while training and predicting (restored afterwards). 1 by default:
        on a shared 2-core machine a second thread mostly waits for a busy core, which we
        measured at 10-20x slower per step.
    time_budget_s : float, optional
        Stop training after this many seconds (best epoch so far is kept).
    calibration_steps : int, optional
        Trailing steps held out for split-conformal intervals (None = default, 0 = off).
        Calibration fits a second network, so it roughly doubles training time.
    verbose : bool
        Print one line per epoch.
    """

    def __init__(
        self,
        horizon: int = 12,
        input_len: int = 12,
        embed_dim: int = 16,
        node_dim: int = 16,
        tod_dim: int = 16,
        dow_dim: int = 16,
        num_layers: int = 3,
        dropout: float = 0.1,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 64,
        max_epochs: int = 100,
        patience: int = 10,
        val_fraction: float = 0.1,
        scaler: str = "standard",
        loss: str = "mae",
        adjacency: pd.DataFrame | None = None,
        graph: bool = False,
        seed: int = 0,
        num_threads: int = 1,
        time_budget_s: float | None = None,
        calibration_steps: int | None = None,
        verbose: bool = False,
    ):
        self.horizon = horizon
        self.input_len = input_len
        self.embed_dim = embed_dim
        self.node_dim = node_dim
        self.tod_dim = tod_dim
        self.dow_dim = dow_dim
        self.num_layers = num_layers
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.scaler = scaler
        self.loss = loss
        self.adjacency = adjacency
        self.graph = graph
        self.seed = seed
        self.num_threads = num_threads
        self.time_budget_s = time_budget_s
        self.calibration_steps = calibration_steps
        self.verbose = verbose

    #: node embeddings tie the model to the training sensors (batch scoring skips others)
    handles_new_series = False

    @property
    def min_history(self) -> int:
        return int(self.input_len)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict:
        # the live module is rebuilt from weights_ (numpy arrays) on first use after loading
        state = self.__dict__.copy()
        state.pop("_module", None)
        return state

    # ------------------------------------------------------------------ fit
    def _fit(self, df: pd.DataFrame) -> None:
        self._check_params()
        wide = _to_grid(df, self.series_ids_, self.freq_)
        self.steps_per_day_ = _steps_per_day(self.freq_)
        n_train, n_val_anchor = self._split(len(wide))
        self._fit_scaler(wide.to_numpy()[:n_train])
        self.adjacency_matrix_ = self._adjacency_matrix() if self.graph else None
        with _torch_settings(self.num_threads, self.seed) as torch:
            module = self._build_module()
            data = self._windows(wide, torch)
            anchors = np.arange(self.input_len - 1, len(wide) - self.horizon)
            train = anchors[anchors + self.horizon < n_val_anchor + 1]
            val = anchors[anchors >= n_val_anchor]
            self._train(module, data, train, val, torch)
            _average_unseen_slots(module, data, train, torch)
        self._module = module
        self.weights_ = {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}

    def _check_params(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.scaler not in SCALERS:
            raise ValueError(f"scaler must be one of {SCALERS}, got {self.scaler!r}")
        if self.graph and self.adjacency is None:
            raise ValueError("graph=True needs an adjacency edge list (columns src, dst, weight)")
        if int(self.input_len) < 1 or int(self.horizon) < 1:
            raise ValueError(
                f"input_len and horizon must be >= 1, got {self.input_len}, {self.horizon}"
            )
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")

    def _split(self, n_steps: int) -> tuple[int, int]:
        """Rows of the training part and the first validation anchor (last input step)."""
        n_windows = n_steps - self.input_len - self.horizon + 1
        if n_windows < 4:
            raise ValueError(
                f"{n_steps} time steps are too few for input_len={self.input_len} and "
                f"horizon={self.horizon}: need at least {self.input_len + self.horizon + 3}"
            )
        n_val = max(1, int(round(n_windows * self.val_fraction)))
        first_val_anchor = n_steps - self.horizon - n_val
        # scaler sees only data before the first validation target
        return first_val_anchor + 1, first_val_anchor

    def _fit_scaler(self, train: np.ndarray) -> None:
        with np.errstate(all="ignore"), _quiet_nan_warnings():
            if self.scaler == "standard":
                mean, std = np.nanmean(train, axis=0), np.nanstd(train, axis=0)
                overall = np.nanmean(train)
                # series with no training data fall back to the pooled statistics
                mean = np.where(np.isnan(mean), overall, mean)
                std = np.where(np.isnan(std) | (std < 1e-8), np.nanstd(train) or 1.0, std)
            elif self.scaler == "global":
                mean = np.full(train.shape[1], np.nanmean(train))
                std = np.full(train.shape[1], np.nanstd(train) or 1.0)
            else:
                mean, std = np.zeros(train.shape[1]), np.ones(train.shape[1])
        if np.isnan(mean).any():
            raise ValueError("the training data has no observed values")
        self.scale_mean_ = mean.astype(np.float32)
        self.scale_std_ = std.astype(np.float32)

    def _adjacency_matrix(self) -> np.ndarray:
        """Row-normalised, symmetrised weights over ``series_ids_`` (isolated rows stay 0)."""
        edges = self.adjacency
        missing = [c for c in ("src", "dst", "weight") if c not in edges.columns]
        if missing:
            raise ValueError(f"adjacency lacks column(s) {missing}; expected src, dst, weight")
        pos = {s: i for i, s in enumerate(self.series_ids_)}
        edges = edges[edges["src"].isin(pos) & edges["dst"].isin(pos)]
        n = len(pos)
        mat = np.zeros((n, n))
        mat[edges["src"].map(pos).to_numpy(int), edges["dst"].map(pos).to_numpy(int)] = edges[
            "weight"
        ].to_numpy(float)
        mat = np.maximum(mat, mat.T)
        np.fill_diagonal(mat, 0.0)  # the node's own window has its own branch
        deg = mat.sum(axis=1, keepdims=True)
        return np.divide(mat, deg, out=np.zeros_like(mat), where=deg > 0).astype(np.float32)

    def _build_module(self):
        import torch

        from citybrain_ml.models.stid import STID

        adj = self.adjacency_matrix_
        return STID(
            num_nodes=len(self.series_ids_),
            input_len=int(self.input_len),
            horizon=int(self.horizon),
            embed_dim=int(self.embed_dim),
            node_dim=int(self.node_dim),
            tod_dim=int(self.tod_dim) if self.steps_per_day_ > 1 else 0,
            dow_dim=int(self.dow_dim),
            steps_per_day=self.steps_per_day_,
            num_layers=int(self.num_layers),
            dropout=float(self.dropout),
            adjacency=None if adj is None else torch.from_numpy(adj),
        )

    def _windows(self, wide: pd.DataFrame, torch) -> dict:
        """Scaled series as tensors; a window is a slice, so nothing is copied per sample."""
        scaled = (wide.to_numpy(dtype=np.float32) - self.scale_mean_) / self.scale_std_
        tod, dow = _calendar(wide.index, self.freq_, self.steps_per_day_)
        return {
            "x": torch.from_numpy(np.nan_to_num(scaled, nan=0.0)),
            "y": torch.from_numpy(scaled),
            "tod": torch.from_numpy(tod),
            "dow": torch.from_numpy(dow),
        }

    def _batch(self, data: dict, anchors: np.ndarray, torch):
        idx = torch.from_numpy(anchors)
        back = torch.arange(-int(self.input_len) + 1, 1)
        ahead = torch.arange(1, int(self.horizon) + 1)
        x = data["x"][idx[:, None] + back].permute(0, 2, 1)  # (B, N, L)
        y = data["y"][idx[:, None] + ahead].permute(0, 2, 1)  # (B, N, H)
        return x, y, data["tod"][idx], data["dow"][idx]

    def _train(self, module, data: dict, train: np.ndarray, val: np.ndarray, torch) -> None:
        if len(train) == 0:
            raise ValueError("no training windows left after carving out the validation tail")
        optim = torch.optim.AdamW(module.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        gen = torch.Generator().manual_seed(int(self.seed))
        best, best_state, best_epoch, stale = np.inf, None, 0, 0
        self.history_losses_ = []
        start = time.perf_counter()
        for epoch in range(1, int(self.max_epochs) + 1):
            module.train()
            order = train[torch.randperm(len(train), generator=gen).numpy()]
            train_loss = self._run_epoch(module, data, order, torch, optim)
            module.eval()
            with torch.no_grad():
                val_loss = self._run_epoch(module, data, val, torch)
            self.history_losses_.append(
                {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss}
            )
            if self.verbose:
                print(f"epoch {epoch:3d} train {train_loss:.4f} val {val_loss:.4f}")
            if val_loss < best - 1e-6:
                best, best_epoch, stale = val_loss, epoch, 0
                best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            else:
                stale += 1
            elapsed = time.perf_counter() - start
            over_budget = self.time_budget_s is not None and elapsed > self.time_budget_s
            if stale >= self.patience or over_budget:
                break
        if best_state is not None:
            module.load_state_dict(best_state)
        module.eval()
        self.best_epoch_ = best_epoch
        self.train_seconds_ = time.perf_counter() - start

    def _run_epoch(self, module, data, anchors, torch, optim=None) -> float:
        """Mean masked loss over ``anchors``; takes optimiser steps when ``optim`` is given."""
        total, count = 0.0, 0
        for lo in range(0, len(anchors), int(self.batch_size)):
            x, y, tod, dow = self._batch(data, anchors[lo : lo + int(self.batch_size)], torch)
            loss_sum, n = _masked_loss(module(x, tod, dow), y, self.loss, torch)
            if n == 0:
                continue
            if optim is not None:
                optim.zero_grad()
                (loss_sum / n).backward()
                optim.step()
            total += float(loss_sum.detach())
            count += int(n)
        return total / count if count else float("nan")

    # ------------------------------------------------------------------ predict
    def _predict(self, history: pd.DataFrame, horizon: int, covariates) -> pd.DataFrame:
        self._check_horizon(horizon)
        present = self._check_series(history)
        wide = _to_grid(history, self.series_ids_, self.freq_)
        ends = history.groupby(SERIES_ID, sort=False)[TIMESTAMP].max()
        frames = []
        # series normally share one end; each distinct end is one forward pass
        for end, ids in ends.groupby(ends, sort=True):
            yhat = self._forecast(wide, pd.DatetimeIndex([end]))[0]
            frames.append(self._frame(yhat, end, horizon, list(ids.index)))
        out = pd.concat(frames, ignore_index=True)
        order = {s: i for i, s in enumerate(present)}
        return out.sort_values(SERIES_ID, key=lambda s: s.map(order), kind="stable")

    def _predict_origins(self, df: pd.DataFrame, origins, horizon: int) -> pd.DataFrame:
        """All origins in one batched pass over ``(n_origins, N, input_len)`` windows.

        Each origin forecasts every series that has a row at or before it, starting from the
        origin itself (the canonical frame is regular, so that is the series' last step).
        """
        self._check_horizon(horizon)
        self._check_series(df)
        wide = _to_grid(df, self.series_ids_, self.freq_)
        origins = pd.DatetimeIndex(origins)
        origins = origins[origins.isin(wide.index)]
        if len(origins) == 0:
            return pd.DataFrame(columns=[*FORECAST_COLUMNS, "origin"])
        yhat = self._forecast(wide, origins)  # (O, N, H)
        first = df.groupby(SERIES_ID, sort=False)[TIMESTAMP].min()
        ids = np.array(self.series_ids_, dtype=object)
        n, h = len(ids), horizon
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(self.freq_))
        origin_col = np.repeat(origins.to_numpy(), n * h)
        steps = np.tile(np.arange(1, h + 1), len(origins) * n)
        out = pd.DataFrame(
            {
                SERIES_ID: np.tile(np.repeat(ids, h), len(origins)),
                TIMESTAMP: origin_col + steps * step,
                HORIZON_STEP: steps,
                YHAT: yhat[:, :, :h].reshape(-1).astype(float),
                "origin": origin_col,
            }
        )
        starts = out[SERIES_ID].map(first)
        return out[starts.notna() & (starts <= out["origin"])].reset_index(drop=True)

    def _check_horizon(self, horizon: int) -> None:
        if horizon > int(self.horizon):
            raise ValueError(
                f"{type(self).__name__} was trained for horizon={self.horizon} steps; "
                f"asked for {horizon}. Refit with a larger horizon."
            )

    def _check_series(self, df: pd.DataFrame) -> list:
        present = list(pd.unique(df[SERIES_ID]))
        unseen = [s for s in present if s not in set(self.series_ids_)]
        if unseen:
            shown = ", ".join(map(str, unseen[:10])) + (" ..." if len(unseen) > 10 else "")
            raise ValueError(
                f"{type(self).__name__} only forecasts the {len(self.series_ids_)} series it was "
                f"trained on (one learned embedding each); unseen series_id: {shown}"
            )
        return present

    def _forecast(self, wide: pd.DataFrame, origins: pd.DatetimeIndex) -> np.ndarray:
        """``(n_origins, N, horizon)`` forecasts in original units from a regular grid."""
        pos = wide.index.get_indexer(origins)
        values = wide.to_numpy(dtype=np.float32)
        scaled = np.nan_to_num((values - self.scale_mean_) / self.scale_std_, nan=0.0)
        # pad the front so origins earlier than input_len steps still get a (mean-filled) window
        pad = int(self.input_len) - 1
        scaled = np.concatenate([np.zeros((pad, scaled.shape[1]), np.float32), scaled])
        windows = pos[:, None] + np.arange(int(self.input_len))[None, :]
        tod, dow = _calendar(origins, self.freq_, self.steps_per_day_)
        module = self._get_module()
        out = []
        with _torch_settings(self.num_threads, None) as torch:
            x_all = torch.from_numpy(scaled[windows].transpose(0, 2, 1).copy())
            with torch.no_grad():
                for lo in range(0, len(origins), PREDICT_BATCH):
                    sl = slice(lo, lo + PREDICT_BATCH)
                    pred = module(x_all[sl], torch.from_numpy(tod[sl]), torch.from_numpy(dow[sl]))
                    out.append(pred.numpy())
        return (
            np.concatenate(out) * self.scale_std_[None, :, None] + self.scale_mean_[None, :, None]
        )

    def _frame(self, yhat: np.ndarray, end, horizon: int, ids: list) -> pd.DataFrame:
        pos = [self.series_ids_.index(s) for s in ids]
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(self.freq_))
        steps = np.tile(np.arange(1, horizon + 1), len(ids))
        return pd.DataFrame(
            {
                SERIES_ID: np.repeat(np.array(ids, dtype=object), horizon),
                TIMESTAMP: pd.Timestamp(end) + steps * step,
                HORIZON_STEP: steps,
                YHAT: yhat[pos, :horizon].reshape(-1).astype(float),
            }
        )

    def _get_module(self):
        module = getattr(self, "_module", None)
        if module is None:
            import torch

            module = self._build_module()
            module.load_state_dict({k: torch.from_numpy(v) for k, v in self.weights_.items()})
            module.eval()
            self._module = module
        return module


# ---------------------------------------------------------------------- helpers
def _to_grid(df: pd.DataFrame, series_ids: list, freq: str) -> pd.DataFrame:
    """Timestamps x series on a regular grid at ``freq`` (gaps and absent series are NaN)."""
    wide = df.pivot_table(index=TIMESTAMP, columns=SERIES_ID, values=VALUE, dropna=False)
    grid = pd.date_range(wide.index.min(), wide.index.max(), freq=freq)
    return wide.reindex(index=grid, columns=series_ids).astype(float)


def _steps_per_day(freq: str) -> int:
    """Time-of-day slots: one day divided by the sampling interval (1 for daily or coarser)."""
    try:
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    except ValueError:  # calendar offsets such as month starts have no fixed length
        return 1
    return max(1, int(pd.Timedelta("1D") // step))


def _calendar(index: pd.DatetimeIndex, freq: str, steps_per_day: int):
    """Integer time-of-day slot and day of week of each timestamp."""
    index = pd.DatetimeIndex(index)
    if steps_per_day > 1:
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
        tod = ((index - index.normalize()) // step).to_numpy().astype(np.int64)
        tod = np.clip(tod, 0, steps_per_day - 1)
    else:
        tod = np.zeros(len(index), np.int64)
    return tod, index.dayofweek.to_numpy().astype(np.int64)


def _average_unseen_slots(module, data: dict, anchors: np.ndarray, torch) -> None:
    """Give time-of-day / day-of-week slots absent from training the mean seen embedding.

    Their rows would otherwise keep their random initial values; short histories hit this,
    e.g. Los-loop trains on Thursday..Tuesday and is tested on a Wednesday.
    """
    for table, key in ((module.tod_emb, "tod"), (module.dow_emb, "dow")):
        if table is None:
            continue
        seen = torch.zeros(table.shape[0], dtype=torch.bool)
        seen[torch.unique(data[key][torch.from_numpy(anchors)])] = True
        if not seen.all():
            with torch.no_grad():
                table[~seen] = table[seen].mean(dim=0)


def _masked_loss(pred, target, kind: str, torch):
    """Sum of the element loss over observed targets, and how many there were."""
    mask = ~torch.isnan(target)
    err = pred[mask] - target[mask]
    if kind == "mae":
        loss = err.abs()
    elif kind == "mse":
        loss = err.pow(2)
    else:
        loss = torch.nn.functional.huber_loss(err, torch.zeros_like(err), reduction="none")
    return loss.sum(), int(mask.sum())


@contextlib.contextmanager
def _torch_settings(num_threads: int, seed: int | None):
    """Fix threads, seed and deterministic kernels for a block; restore the old settings."""
    import torch

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(int(num_threads))
    torch.use_deterministic_algorithms(True, warn_only=True)
    if seed is not None:
        torch.manual_seed(int(seed))
    try:
        yield torch
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


@contextlib.contextmanager
def _quiet_nan_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        yield
