"""The STID network (Shao et al., CIKM 2022) as a plain ``torch.nn.Module``.

"Spatial-Temporal Identity: A Simple yet Effective Baseline for Multivariate Time Series
Forecasting" (arXiv:2208.05233): each node's recent window is embedded by a linear layer and
concatenated with learned identities -- one vector per node, per time-of-day slot and per
day of week -- then a stack of residual MLP blocks maps the result to all horizon steps at
once. Nodes share every weight except their identity vector.

The optional graph branch (not in the paper) embeds the mean of each node's neighbours'
windows, weighted by a row-normalised adjacency, so the MLP also sees what happens upstream
and downstream. This module imports torch at top level; :mod:`citybrain_ml.models.neural`
imports it lazily.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualMLP(nn.Module):
    """``x + fc2(dropout(relu(fc1(x))))`` on the last dimension."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.drop(torch.relu(self.fc1(x))))


class STID(nn.Module):
    """STID: window embedding + node/time identities -> residual MLP -> all horizons.

    Parameters
    ----------
    num_nodes : int
        Number of series (nodes); the node identity table has one row per node.
    input_len, horizon : int
        Steps in the input window and in the output.
    embed_dim, node_dim, tod_dim, dow_dim : int
        Widths of the window embedding and the identity embeddings (0 turns one off).
    steps_per_day : int
        Size of the time-of-day table.
    num_layers : int
        Residual MLP blocks.
    dropout : float
        Dropout inside each block.
    adjacency : Tensor, optional
        ``(num_nodes, num_nodes)`` row-normalised weights; adds the neighbour branch.
    """

    def __init__(
        self,
        num_nodes: int,
        input_len: int,
        horizon: int,
        embed_dim: int,
        node_dim: int,
        tod_dim: int,
        dow_dim: int,
        steps_per_day: int,
        num_layers: int,
        dropout: float,
        adjacency: torch.Tensor | None = None,
    ):
        super().__init__()
        self.series_embed = nn.Linear(input_len, embed_dim)
        self.graph = adjacency is not None
        if self.graph:
            self.register_buffer("adjacency", adjacency.float())
            self.neighbour_embed = nn.Linear(input_len, embed_dim)
        self.node_emb = _table(num_nodes, node_dim)
        self.tod_emb = _table(steps_per_day, tod_dim)
        self.dow_emb = _table(7, dow_dim)
        hidden = embed_dim * (2 if self.graph else 1) + node_dim + tod_dim + dow_dim
        self.encoder = nn.Sequential(*[ResidualMLP(hidden, dropout) for _ in range(num_layers)])
        self.head = nn.Linear(hidden, horizon)

    def forward(self, x: torch.Tensor, tod: torch.Tensor, dow: torch.Tensor) -> torch.Tensor:
        """Forecast all horizon steps.

        Parameters
        ----------
        x : Tensor
            ``(batch, num_nodes, input_len)`` scaled inputs, missing values already filled.
        tod, dow : Tensor
            ``(batch,)`` integer time-of-day slot and day of week of the last input step.

        Returns
        -------
        Tensor
            ``(batch, num_nodes, horizon)`` scaled forecasts.
        """
        batch, nodes, _ = x.shape
        parts = [self.series_embed(x)]
        if self.graph:
            parts.append(self.neighbour_embed(torch.einsum("ij,bjl->bil", self.adjacency, x)))
        if self.node_emb is not None:
            parts.append(self.node_emb.unsqueeze(0).expand(batch, -1, -1))
        for table, index in ((self.tod_emb, tod), (self.dow_emb, dow)):
            if table is not None:
                parts.append(table[index].unsqueeze(1).expand(-1, nodes, -1))
        return self.head(self.encoder(torch.cat(parts, dim=-1)))


def _table(rows: int, dim: int) -> nn.Parameter | None:
    if dim <= 0:
        return None
    weight = torch.empty(rows, dim)
    nn.init.xavier_uniform_(weight)
    return nn.Parameter(weight)
